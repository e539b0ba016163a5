"""Cost presets by market ([costs] preset): chosen from the data's market type, overridable, recorded in the
manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.core.errors import ConfigError
from forge.data.discovery import market_type
from forge.data.loader import load_bars, load_klines
from forge.core.runconfig import CostsConfig, RunConfig, load_run_config, resolve_costs, with_overrides

REPO = Path(__file__).resolve().parents[1]
ROW = "1718582400000,66000.0,66010.0,65990.0,66005.0,12.5,1718582459999,825000.0,100,6.0,396000.0,0\n"
HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
          "taker_buy_quote_volume,ignore\n")


def _kline(path: Path, header: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((HEADER if header else "") + ROW)
    return path


def test_market_type_from_the_files(tmp_path):
    spot = _kline(tmp_path / "spot" / "BTCUSDT" / "BTCUSDT-1m-2024-06-17.csv", header=False)
    fut = _kline(tmp_path / "futures-um" / "FILUSDT" / "FILUSDT-1m-2024-06-17.csv", header=True)
    bare_fut = _kline(tmp_path / "x" / "ALGOUSDT-1m-2024-06-17.csv", header=True)
    bare_spot = _kline(tmp_path / "y" / "ETHUSDT-1m-2024-06-17.csv", header=False)
    assert market_type(load_klines([spot])[1]) == "spot"
    assert market_type(load_klines([fut])[1]) == "futures"
    assert market_type(load_klines([bare_fut])[1]) == "futures"  # the header row marks USD-M files
    assert market_type(load_klines([bare_spot])[1]) == "spot"
    assert market_type(load_klines([spot, fut])[1]) == "mixed"
    assert market_type(load_bars(None)[1]) == "spot"  # the embedded sample
    assert market_type(None) == "unknown"


def test_presets_resolve_and_are_recorded():
    cfg = RunConfig()
    spot, rec = resolve_costs(cfg, ["spot"])
    assert (spot.backtest.taker_fee_bps, spot.backtest.funding_rate_8h) == (10.0, 0.0)
    assert spot.backtest == cfg.backtest  # spot data: the backtest is exactly the former default
    assert rec["preset"] == "spot" and rec["market"] == "spot" and rec["reason"].startswith("auto")
    fut, rec = resolve_costs(cfg, ["futures"])
    assert (fut.backtest.taker_fee_bps, fut.backtest.funding_rate_8h) == (5.0, 1e-4)
    assert rec["maker_fee_bps"] == 2.0 and rec["funding_interval_h"] == 8.0 and rec["preset"] == "futures"
    assert resolve_costs(fut, ["futures"])[0] == fut  # idempotent (a resumed run resolves its saved config)
    assert resolve_costs(cfg, ["unknown"])[1]["preset"] == "spot"
    forced = with_overrides(cfg, "costs", preset="futures")
    assert resolve_costs(forced, ["spot"])[1]["preset"] == "futures"  # the override beats the data
    with pytest.raises(ConfigError, match="mixes spot and futures"):
        resolve_costs(cfg, ["spot", "futures"])
    manual = with_overrides(with_overrides(cfg, "backtest", taker_fee_bps=4.0), "costs", preset="manual")
    m_cfg, rec = resolve_costs(manual, ["futures"])
    assert m_cfg.backtest.taker_fee_bps == 4.0 and rec["preset"] == "manual"
    with pytest.raises(ConfigError, match=r"\[backtest\] taker_fee_bps = 4.0 conflicts with \[costs\] preset"):
        resolve_costs(with_overrides(cfg, "backtest", taker_fee_bps=4.0), ["spot"])
    with pytest.raises(ConfigError, match="costs.preset"):
        CostsConfig(preset="perp").validate()


def test_default_config_has_the_costs_table():
    cfg = load_run_config(REPO / "configs" / "default.toml")
    assert cfg.costs.preset == "auto" and cfg.costs.funding_rate_8h == 1e-4


def test_manifest_records_the_applied_preset(tmp_path):
    from forge.evolution.run import evolve

    cfg = load_run_config(REPO / "configs" / "smoke.toml")
    cfg = with_overrides(cfg, "evolve", generations=1, population=8, output_dir=str(tmp_path))
    cfg = with_overrides(cfg, "causal", enabled=False)
    res = evolve(cfg, run_dir=tmp_path / "run")
    man = json.loads((res.run_dir / "manifest.json").read_text())
    assert man["costs"]["preset"] == "spot" and man["costs"]["market"] == "spot"
    assert man["config"]["backtest"]["taker_fee_bps"] == 10.0
