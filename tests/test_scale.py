"""Scale: subtree cache on/off equality, Dask LocalCluster == local backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.evolution import evolve
from forge.core.runconfig import load_run_config, with_overrides

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.toml"


def _cfg(tmp_path: Path, **changes):
    return with_overrides(load_run_config(SMOKE), "evolve", output_dir=str(tmp_path), **changes)


def _hof(res) -> str:
    """Hall-of-fame members as canonical text (NaN-safe comparison)."""
    import json

    return json.dumps(json.loads((res.run_dir / "hall_of_fame.json").read_text())["members"], sort_keys=True)


def test_subtree_cache_on_off_identical(tmp_path):
    on = evolve(_cfg(tmp_path, generations=3, population=16, subtree_cache_mb=64), run_dir=tmp_path / "on")
    off = evolve(_cfg(tmp_path, generations=3, population=16, subtree_cache_mb=0), run_dir=tmp_path / "off")
    assert _hof(on) == _hof(off)
    rates = [row["cache_hit_rate"] for row in on.logbook]
    assert rates[-1] > 0.0 and all(r == 0.0 for r in (row["cache_hit_rate"] for row in off.logbook))


def test_dask_local_cluster_same_hall_of_fame_as_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        dask_run = evolve(_cfg(tmp_path, generations=2, population=16, backend="dask",
                               scheduler=cluster.scheduler_address), run_dir=tmp_path / "dask")
    local = evolve(_cfg(tmp_path, generations=2, population=16, jobs=1), run_dir=tmp_path / "local")
    assert _hof(dask_run) == _hof(local)


def _write_symbol(root: Path, symbol: str, bars, scale: float) -> None:
    """Daily spot-style kline CSVs (no header, 12 columns) of ``bars`` with prices scaled."""
    import polars as pl

    day_ms = 86_400_000
    df = bars.with_columns([pl.col(c) * scale for c in ("open", "high", "low", "close")]).with_columns(
        pl.lit(0).alias("ignore"))
    for day, part in df.group_by((pl.col("open_time") // day_ms).alias("day"), maintain_order=True):
        from datetime import datetime, timezone

        d = datetime.fromtimestamp(day[0] * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
        part.drop("day", strict=False).write_csv(root / f"{symbol}-1m-{d}.csv", include_header=False)


def test_multi_symbol_smoke(tmp_path):
    from forge.data.loader import load_sample

    bars = load_sample()[0].head(6 * 1440)
    data = tmp_path / "data"
    data.mkdir()
    _write_symbol(data, "BTCUSDT", bars, 1.0)
    # a second "symbol": the same minutes reversed in time as returns, at another price level
    import polars as pl

    other = bars.with_columns([pl.col(c).reverse() for c in ("open", "high", "low", "close", "volume",
                                                               "quote_volume", "taker_buy_volume",
                                                               "taker_buy_quote_volume", "count")])
    other = other.with_columns(pl.max_horizontal("open", "high", "low", "close").alias("high"),
                               pl.min_horizontal("open", "high", "low", "close").alias("low"))
    _write_symbol(data, "ETHUSDT", other, 0.05)
    cfg = _cfg(tmp_path, generations=1, population=12, data=(str(data),), symbols=("BTCUSDT", "ETHUSDT"),
               symbol_aggregate="worst")
    res = evolve(cfg, run_dir=tmp_path / "multi")
    assert set(res.manifest["symbols"]) == {"BTCUSDT", "ETHUSDT"}
    top = res.hall_of_fame[0]
    per = top["in_sample"]["per_symbol"]
    assert top["fitness"] == min(per["BTCUSDT"]["fitness"], per["ETHUSDT"]["fitness"])
    assert set(top["out_of_sample_per_symbol"]) == {"BTCUSDT", "ETHUSDT"}
