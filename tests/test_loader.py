"""Kline loading: every data fault named by file and line, ms/µs, zip/csv, header, gaps, cache."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from forge.core.errors import DataError
from forge.data.loader import load_bars, load_klines, load_sample, read_kline_file
from forge.data.schema import BAR_SCHEMA

SHARED = Path(os.environ.get("FORGE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPOT = SHARED / "binance" / "spot" / "BTCUSDT" / "1m"
needs_shared = pytest.mark.skipif(not SPOT.is_dir(), reason="../shared/data not present")

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, ms


def _row(i: int, unit: int = 1, o=100.0, h=101.0, lo=99.0, c=100.5) -> str:
    t = (T0 + i * 60_000) * unit
    return f"{t},{o},{h},{lo},{c},1.5,{t + 59_999 * unit},150.0,12,0.7,70.0,0"


def _write(path: Path, rows: list[str], header: bool = False) -> Path:
    head = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
            "taker_buy_quote_volume,ignore"] if header else []
    path.write_text("\n".join(head + rows) + "\n")
    return path


def test_good_file_ms_us_header_zip_all_equal(tmp_path):
    rows = [_row(i) for i in range(5)]
    a, info_a = read_kline_file(_write(tmp_path / "BTCUSDT-1m-2024-01-01.csv", rows))
    b, info_b = read_kline_file(_write(tmp_path / "us.csv", [_row(i, unit=1000) for i in range(5)]))
    c, info_c = read_kline_file(_write(tmp_path / "fut.csv", rows, header=True))
    z = tmp_path / "BTCUSDT-1m-2024-01-01.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("BTCUSDT-1m-2024-01-01.csv", "\n".join(rows) + "\n")
    d, _ = read_kline_file(z)
    assert a.schema == BAR_SCHEMA
    assert a.equals(b) and a.equals(c) and a.equals(d)
    assert (info_a.time_unit, info_b.time_unit, info_c.has_header) == ("ms", "us", True)
    assert int(b["close_time"][0]) == T0 + 59_999


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ("1704067440000,100,101,99", "4 fields; expected 12"),
        ("1704067440000,100,abc,99,100.5,1.5,1704067499999,150,12,0.7,70,0", "'high' is 'abc'"),
        (_row(3, o=100, h=98, lo=99, c=98.5), "high < low"),
        ("1704067440000,100,101,99,100.5,1.5,1704067499999,150,12.5,0.7,70,0", "'count' is '12.5'"),
    ],
)
def test_faults_name_file_and_line(tmp_path, bad_line, expected):
    rows = [_row(0), _row(1), _row(2), bad_line, _row(4)]
    p = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=expected) as err:
        read_kline_file(p)
    assert err.value.file == str(p) and err.value.line == 4
    assert f"{p}:4" in str(err.value)


def test_fault_line_counts_the_header(tmp_path):
    p = _write(tmp_path / "fut.csv", [_row(0), _row(1, h=98, lo=99, c=98.5, o=98.6)], header=True)
    with pytest.raises(DataError) as err:
        read_kline_file(p)
    assert err.value.line == 3


def test_empty_missing_and_bad_zip(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_kline_file(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="no such file"):
        read_kline_file(tmp_path / "nope.csv")
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(DataError, match="no .csv"):
        read_kline_file(z)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        read_kline_file(tmp_path / "junk.zip")


def test_gaps_duplicates_nonmonotonic_and_cache(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    _write(d / "a.csv", [_row(i) for i in (0, 1, 2, 3)])
    _write(d / "b.csv", [_row(i) for i in (3, 4, 10, 9, 11)])  # dup of 3, gap 5..8, one row out of order
    bars, cov = load_klines([d], cache_dir=tmp_path / "cache")
    t = bars["open_time"].to_numpy()
    assert np.all(np.diff(t) > 0) and bars.height == 8
    assert cov.duplicates == 1 and cov.non_monotonic == 1
    assert [(g.missing_bars) for g in cov.gaps] == [4]
    assert cov.expected_bars == 12 and cov.missing_bars == 4
    again, cov2 = load_klines([d], cache_dir=tmp_path / "cache")
    assert again.equals(bars) and cov2.duplicates == 1
    assert list((tmp_path / "cache").glob("*.parquet"))


def test_conflicting_duplicate_is_an_error(tmp_path):
    _write(tmp_path / "a.csv", [_row(0), _row(1)])
    _write(tmp_path / "b.csv", [_row(1, c=100.7)])
    with pytest.raises(DataError, match="appears twice with different values"):
        load_klines([tmp_path / "a.csv", tmp_path / "b.csv"], use_cache=False)


def test_sample_and_load_bars_default():
    bars, cov = load_sample()
    assert bars.height == 20160 and cov.n_bars == 20160 and not cov.gaps
    assert bars.schema == BAR_SCHEMA
    same, _ = load_bars(None)
    assert same.equals(bars)


@needs_shared
def test_real_spot_history():
    bars, cov = load_klines([SPOT])
    t = bars["open_time"].to_numpy()
    assert np.all(np.diff(t) > 0)
    assert {f.time_unit for f in cov.files} == {"ms", "us"}
    day = bars.filter((bars["open_time"] >= 1679616000000) & (bars["open_time"] < 1679702400000))  # 2023-03-24
    assert day.height == 1360
    y2025 = [f for f in cov.files if "2025-01-01" in f.path][0]
    assert y2025.time_unit == "us" and y2025.first_ms == 1735689600000


def test_synthetic_specs_load_and_bad_fields_are_named():
    """A ``synthetic:`` spec is accepted wherever bars are (preflight leaves it to the loader) and the same spec
    gives the same bars; a bad field is a DataError naming the spec and the field."""
    from forge.data.loader import load_bars
    from commands.preflight import check_data_paths

    spec = "synthetic:planted?seed=3&days=2&strength=0.2"
    assert check_data_paths([spec]) == {}
    a, cov = load_bars([spec])
    assert a.height == 2 * 1440 and cov.source == spec and a.equals(load_bars([spec])[0])
    for bad, field in (("synthetic:planted?seed=x", "seed"), ("synthetic:planted?days=2", "strength > 0"),
                       ("synthetic:nope", "kind"), ("synthetic:null?colour=1", "colour")):
        with pytest.raises(DataError, match=field):
            load_bars([bad])
    with pytest.raises(DataError, match="cannot be combined"):
        load_bars([spec, spec])
