"""Every kline column and the UTC clock as base features (issue 30 parts 2 and 3): reference values,
no look-ahead (truncation), gaps, and the funding interval from a funding history."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from forge.backtest.costs import FUNDING_PERIOD_MS, funding_interval_ms
from forge.core.errors import ConfigError, DataError
from forge.data.funding import funding_interval_hours, load_funding_history, read_funding_file
from forge.data.gaps import bars_since_gap
from forge.data.loader import load_sample
from forge.features import DEFAULT_FEATURES, FEATURES, BarArrays, compute_features
from forge.features.registry import default_features, funding_feature

NEW = ("count_z_60", "qvol_z_60", "tbqvol_z_60", "avg_trade_z_60", "mod_sin", "mod_cos", "how_sin", "how_cos",
       "hour_utc", "funding_min_1h", "funding_min_2h", "funding_min_4h", "funding_min_8h")


@pytest.fixture(scope="module")
def bars():
    return load_sample()[0].head(3000)


def _ms(s: str) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp() * 1000)


def test_new_terminals_are_registered_and_default():
    for n in NEW:
        assert n in FEATURES
    for n in NEW[:9]:
        assert n in DEFAULT_FEATURES
    assert not any(n.startswith("funding_min") for n in DEFAULT_FEATURES)  # only a perpetual's run adds one
    assert default_features("futures", 4)[-1] == "funding_min_4h"
    assert default_features("futures")[-1] == "funding_min_8h"
    assert default_features("spot") == DEFAULT_FEATURES
    with pytest.raises(ConfigError, match="3 h"):
        funding_feature(3)


@pytest.mark.parametrize("name", NEW)
def test_truncation_never_changes_values_at_t(bars, name):
    """Values at t are unchanged when every bar after t is removed (no look-ahead)."""
    full = compute_features(bars, (name,)).values[0]
    for cut in (61, 500, 1439, 1441, 2999):
        part = compute_features(bars.head(cut), (name,)).values[0]
        np.testing.assert_array_equal(part, full[:cut], err_msg=f"{name} at cut {cut}")


def test_column_zscores_match_polars(bars):
    fm = compute_features(bars, NEW[:4])
    qv, n, tbq = (bars[c].to_numpy().astype(float) for c in ("quote_volume", "count", "taker_buy_quote_volume"))
    avg = np.where(n > 0, qv / np.maximum(n, 1), 0.0)
    for name, x in (("count_z_60", n), ("qvol_z_60", qv), ("tbqvol_z_60", tbq), ("avg_trade_z_60", avg)):
        s = pl.Series(np.log1p(x))
        ref = ((s - s.rolling_mean(60)) / s.rolling_std(60)).to_numpy()
        got = fm.row(name)
        assert np.isnan(got[:59]).all(), name
        np.testing.assert_allclose(got[59:], ref[59:], rtol=1e-8, atol=1e-10, err_msg=name)


def test_column_features_read_columns_no_other_feature_reads(bars):
    """Doubling the trade count (prices and base volume unchanged) moves count_z only through its column."""
    base = compute_features(bars, DEFAULT_FEATURES)
    rng = np.random.default_rng(0)
    alt = bars.with_columns(pl.Series("count", (bars["count"].to_numpy() * rng.uniform(0.5, 2, bars.height)
                                                ).astype(np.int64)))
    moved = compute_features(alt, DEFAULT_FEATURES)
    for i, name in enumerate(DEFAULT_FEATURES):
        same = np.array_equal(base.values[i], moved.values[i], equal_nan=True)
        assert same == (name not in ("count_z_60", "avg_trade_z_60")), name


def test_clock_values_at_known_times():
    t = np.array([_ms("2024-02-05T00:00:00"),  # a Monday, midnight
                  _ms("2024-02-05T06:00:00"), _ms("2024-02-07T12:00:00"), _ms("2024-02-11T23:59:00")], np.int64)
    n = t.size
    one = np.ones(n)
    b = BarArrays(t, one, one, one, one, one, one, bars_since_gap(t))
    vals = {k: FEATURES[k].compute(b) for k in NEW[4:]}
    np.testing.assert_allclose(vals["mod_sin"][:2], [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(vals["mod_cos"][:2], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(vals["how_sin"][0], 0.0, atol=1e-12)  # Monday 00:00 starts the week
    how = 2 * 24 + 12  # Wednesday 12:00
    np.testing.assert_allclose(vals["how_cos"][2], np.cos(2 * np.pi * how / 168), atol=1e-12)
    np.testing.assert_array_equal(vals["hour_utc"], [0, 6, 12, 23])
    # the bar opening 23:59 closes at 00:00, a funding time for every interval: 0 minutes to go
    for h in (1, 2, 4, 8):
        assert vals[f"funding_min_{h}h"][3] == 0.0
        assert vals[f"funding_min_{h}h"][0] == h * 60 - 1  # 00:00 bar closes at 00:01
    assert vals["funding_min_8h"][1] == 2 * 60 - 1  # 06:01 -> 08:00


def test_optional_columns_missing_is_a_clear_error():
    t = np.arange(100, dtype=np.int64) * 60_000
    one = np.ones(100)
    b = BarArrays(t, one, one, one, one, one, one, bars_since_gap(t))
    with pytest.raises(ConfigError, match="count"):
        FEATURES["count_z_60"].compute(b)


def test_gap_restarts_column_zscores(bars):
    gapped = pl.concat([bars.head(1000), bars.slice(1200, 800)])
    v = compute_features(gapped, ("count_z_60",)).values[0]
    alone = compute_features(bars.slice(1200, 800), ("count_z_60",)).values[0]
    np.testing.assert_array_equal(v[1000:], alone)
    assert np.isnan(v[1000:1059]).all()


# --------------------------------------------------------------------------- funding interval


def test_funding_interval_from_times():
    h = 3_600_000
    assert funding_interval_ms([]) == FUNDING_PERIOD_MS
    assert funding_interval_ms([0]) == FUNDING_PERIOD_MS
    assert funding_interval_ms(np.arange(10) * 8 * h) == 8 * h
    assert funding_interval_ms(np.arange(10) * 4 * h + np.array([0, 3, 1, 5, 0, 2, 0, 1, 4, 0])) == 4 * h  # jitter
    # switched from 8 h to 4 h: the latest regime wins; a missing month (a 30-day step) is skipped
    t = np.concatenate([np.arange(40) * 8 * h, 40 * 8 * h + 720 * h + np.arange(40) * 4 * h])
    assert funding_interval_ms(t) == 4 * h
    assert funding_interval_ms(np.arange(5) * h) == h


def _write_funding(path, rows, header="calc_time,funding_interval_hours,last_funding_rate"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


def test_funding_history_files(tmp_path):
    d = tmp_path / "futures-um" / "FILUSDT" / "fundingRate"
    h = 3_600_000
    t0 = _ms("2024-02-01T00:00:00")
    _write_funding(d / "FILUSDT-fundingRate-2024-02.csv", [(t0 + i * 4 * h, 4, 0.0001) for i in range(50)])
    _write_funding(d / "FILUSDT-fundingRate-2024-01.csv", [(t0 - (10 - i) * 8 * h, 8, 0.0001) for i in range(10)])
    hist = load_funding_history([tmp_path], "FILUSDT")
    assert hist.height == 60 and hist["calc_time"].is_sorted()
    assert funding_interval_hours(hist) == (4, "funding_interval_hours")
    assert funding_interval_hours(hist, until_ms=t0 - h) == (8, "funding_interval_hours")  # known at the time
    assert funding_interval_hours(None) == (8, "default")
    assert load_funding_history([tmp_path], "ALGOUSDT") is None
    zero = hist.with_columns(pl.lit(0).alias("funding_interval_hours"))
    assert funding_interval_hours(zero) == (4, "calc_time")


def test_bad_funding_file_is_one_line(tmp_path):
    p = tmp_path / "X-fundingRate-2024-02.csv"
    _write_funding(p, [(1, 8, 0.1)], header="time,rate,x")
    with pytest.raises(DataError, match="missing column"):
        read_funding_file(p)
