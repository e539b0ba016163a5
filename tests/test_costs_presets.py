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


# --- the funding interval comes from the symbol's history, not a hard-coded 8 h (issue 30 part 3) ---

def _flat_day(interval_h: int, rate_8h: float = 0.0008):
    import numpy as np

    from forge.backtest import BacktestConfig, run_backtest

    n = 1440  # one UTC day of 1-minute bars from 00:00
    t = (np.arange(n, dtype=np.int64) * 60_000) + 1_704_067_200_000  # 2024-01-01T00:00Z
    px = np.full(n, 100.0)
    cfg = BacktestConfig(taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=rate_8h, funding_interval_h=interval_h)
    return run_backtest(px, px, t, np.ones(n), cfg)


def test_funding_is_charged_at_the_symbols_interval():
    """Hand-worked: 2 units (200 USDT at 100) bought at bar 1's open; funding at the opens that are multiples
    of the interval after that: 4 h -> bars 240, 480, ..., 1200 (5 events at 0.0008 * 4/8 each), 8 h -> bars
    480, 960 (2 events at 0.0008).  Each event pays units * open * rate."""
    four, eight = _flat_day(4), _flat_day(8)
    assert four.equity[-1] == pytest.approx(200.0 - 5 * 2 * 100.0 * 0.0004, abs=1e-9)
    assert eight.equity[-1] == pytest.approx(200.0 - 2 * 2 * 100.0 * 0.0008, abs=1e-9)
    one = _flat_day(1)
    assert one.equity[-1] == pytest.approx(200.0 - 23 * 2 * 100.0 * 0.0001, abs=1e-9)


def test_funding_interval_is_validated():
    from forge.backtest import BacktestConfig

    for bad in (0, 25, 2.5):
        with pytest.raises(ConfigError, match="funding_interval_h"):
            BacktestConfig(funding_interval_h=bad).validate()


def test_kline_fill_model_charges_funding_at_the_same_times():
    import numpy as np

    from forge.backtest import BacktestConfig
    from forge.backtest.fills import ExecutionConfig, run_kline_backtest

    n = 1440
    t = (np.arange(n, dtype=np.int64) * 60_000) + 1_704_067_200_000
    px = np.full(n, 100.0)
    for h, events, rate in ((4, 5, 0.0004), (8, 2, 0.0008)):
        cfg = BacktestConfig(taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=0.0008, funding_interval_h=h)
        r = run_kline_backtest(px, px, px, px, np.full(n, 1e9), t, np.ones(n), cfg, ExecutionConfig(mode="taker"),
                               maker_fee_bps=0.0, half_spread=np.zeros(n))
        assert r.equity[-1] == pytest.approx(200.0 - events * 2 * 100.0 * rate, abs=1e-9)


def test_resolve_costs_takes_the_funding_interval_from_history():
    cfg = RunConfig()
    res, rec = resolve_costs(cfg, ["futures"], funding_interval_h=4)
    assert res.backtest.funding_interval_h == 4 and rec["funding_interval_h"] == 4.0
    again, rec2 = resolve_costs(res, ["futures"])  # idempotent: a resolved run config keeps its interval
    assert again.backtest.funding_interval_h == 4 and rec2["funding_interval_h"] == 4.0
    spot, rec3 = resolve_costs(cfg, ["spot"])
    assert spot.backtest.funding_rate_8h == 0.0 and rec3["funding_interval_h"] == 0.0


def test_a_run_on_a_perpetual_charges_funding_at_its_history_interval(tmp_path):
    """forge evolve on a USD-M perpetual whose funding history settles every 4 h: the resolved [backtest] of
    the run (what the Gauntlet and forge backtest rebuild) and the manifest's cost record say 4 h."""
    from forge.data.panels import lead_lag_panel, write_klines
    from forge.evolution.run import evolve

    bars = lead_lag_panel(3 * 1440, seed=3, strength=0.0, symbols=("MUSDT", "BUSDT", "AUSDT"))["AUSDT"]
    write_klines(bars, tmp_path / "data", "AUSDT", "perp")
    t0 = int(bars["open_time"][0])
    fund = tmp_path / "data" / "futures-um" / "AUSDT" / "fundingRate" / "AUSDT-fundingRate-2024-01.csv"
    fund.parent.mkdir(parents=True)
    fund.write_text("calc_time,funding_interval_hours,last_funding_rate\n"
                    + "".join(f"{t0 + i * 4 * 3_600_000},4,0.0001\n" for i in range(18)))
    cfg = load_run_config(REPO / "configs" / "smoke.toml")
    cfg = with_overrides(cfg, "evolve", generations=1, population=8, output_dir=str(tmp_path),
                         data=(str(tmp_path / "data"),))
    cfg = with_overrides(cfg, "causal", enabled=False)
    res = evolve(cfg, run_dir=tmp_path / "run")
    man = json.loads((res.run_dir / "manifest.json").read_text())
    assert man["costs"]["preset"] == "futures" and man["costs"]["funding_interval_h"] == 4.0
    assert man["config"]["backtest"]["funding_interval_h"] == 4
    assert man["universe"]["funding"]["interval_h"] == 4
