"""The planted-panel study's pieces (issue 30, loop.panel_power): each class's panel carries its edge only
where it says, its oracle earns after costs when planted and not on the null panel, the carrier check, and the
summary's counts.  The study itself is benchmarks/universe_power.py (figures in RESULTS.md)."""

from __future__ import annotations

import numpy as np
import pytest

from forge.backtest import BacktestConfig, run_backtest
from forge.core.runconfig import load_run_config, resolve_costs
from forge.data.gaps import bars_since_gap
from forge.data.panels import PANEL_KINDS, planted_panel
from forge.gp import Genome
from forge.strategy import genome_positions, strategy_features
from loop.honesty import HonestyRun
from loop.panel_power import (SYMBOLS, panel_frame, panel_net_sharpe, panel_oracle_genome, reads_carrier,
                              strength_for_panel_sharpe, summarize_panels)


@pytest.fixture(scope="module")
def costs() -> BacktestConfig:
    return resolve_costs(load_run_config(None), ["spot"])[0].backtest


@pytest.mark.parametrize("kind", PANEL_KINDS)
def test_oracle_earns_after_costs_when_planted_and_not_on_the_null_panel(kind, costs):
    planted, _ = panel_net_sharpe(4.0, costs, kind=kind, days=30, seeds=(11,))
    null, _ = panel_net_sharpe(0.0, costs, kind=kind, days=30, seeds=(11,))
    assert planted > 0.04, planted
    assert null < 0.01, null  # the best of the oracle's windows on a panel without the edge: fees, no edge


def test_book_oracle_earns_after_costs_when_planted_and_not_on_the_null_book(costs):
    planted, _ = panel_net_sharpe(0.4, costs, kind="book", days=30, seeds=(11,))
    null, _ = panel_net_sharpe(0.0, costs, kind="book", days=30, seeds=(11,))
    assert planted > 0.04, planted
    assert null < 0.01, null
    assert reads_carrier("book", ["ret_1", "l2_pressure_close"])
    assert not reads_carrier("book", ["l2_spread_bps", "l2_ofi_z_60", "count_z_60"])  # not the planted imbalance


def test_bisection_hits_the_target(costs):
    s, _w = strength_for_panel_sharpe(0.05, costs, kind="clock", days=30, seeds=(11,), iters=9)
    assert panel_net_sharpe(s, costs, kind="clock", days=30, seeds=(11,))[0] >= 0.05
    assert panel_net_sharpe(s - 8.0 / 2 ** 9 * 2, costs, kind="clock", days=30, seeds=(11,))[0] < 0.05


def _corr_next(x: np.ndarray, r: np.ndarray) -> float:
    ok = np.isfinite(x[:-1]) & np.isfinite(r[1:])
    return float(np.corrcoef(x[:-1][ok], r[1:][ok])[0, 1])


def test_column_edge_is_carried_by_the_trade_count_alone():
    panel, frames, _ = panel_frame(20 * 1440, 5, 6.0, "column")
    fm = strategy_features(panel, ("count_z_60", "vol_z_60", "qvol_z_60", "taker_imb"), None)
    r = np.diff(np.log(panel["close"].to_numpy()), prepend=np.nan)
    assert _corr_next(fm.row("count_z_60"), r) > 0.03
    for f in ("vol_z_60", "qvol_z_60", "taker_imb"):  # the other columns do not carry it
        assert abs(_corr_next(fm.row(f), r)) < 0.015, f
    null, _, _ = panel_frame(20 * 1440, 5, 0.0, "column")
    fm0 = strategy_features(null, ("count_z_60",), None)
    r0 = np.diff(np.log(null["close"].to_numpy()), prepend=np.nan)
    assert abs(_corr_next(fm0.row("count_z_60"), r0)) < 0.015
    assert set(frames) == set(SYMBOLS)


def test_regime_rule_is_flat_ungated_and_earns_gated(costs):
    panel, _, params = panel_frame(60 * 1440, 3, 4.0, "regime")
    o, c = panel["open"].to_numpy(), panel["close"].to_numpy()
    t = panel["open_time"].to_numpy()
    bsg = bars_since_gap(t)
    gated = panel_oracle_genome("regime", 20, params)
    ungated = Genome.from_tokens(["pos_sign", "ts_mean", "feature:taker_imb", "window:20"], [])
    fm = strategy_features(panel, tuple(gated.features), None)
    gross = BacktestConfig(taker_fee_bps=0.0, slippage_bps=0.0)

    def sharpe(g: Genome) -> float:
        ret = run_backtest(o, c, t, genome_positions(g, fm, bsg), gross).returns
        return float(np.mean(ret) / np.std(ret))

    assert sharpe(gated) > 0.08
    assert abs(sharpe(ungated)) < 0.3 * sharpe(gated)


def test_clock_panels_have_a_random_phase_and_the_market_factor():
    _, p1 = planted_panel("clock", 1440, seed=1, strength=1.0)
    _, p2 = planted_panel("clock", 1440, seed=2, strength=1.0)
    assert p1["phase"] != p2["phase"]
    frames, _ = planted_panel("clock", 5 * 1440, seed=1, strength=0.0, symbols=SYMBOLS)
    r = {s: np.diff(np.log(f["close"].to_numpy())) for s, f in frames.items()}
    assert np.corrcoef(r[SYMBOLS[0]], r[SYMBOLS[2]])[0, 1] > 0.3  # one market factor
    with pytest.raises(ValueError, match="kind"):
        planted_panel("nope")


def test_reads_carrier_per_class():
    assert reads_carrier("lead_lag", ["ret_15__LEADUSDT_spot"])
    assert not reads_carrier("lead_lag", ["ret_15__MKTUSDT_spot", "ret_15"])
    assert reads_carrier("column", ["avg_trade_z_60"]) and not reads_carrier("column", ["count_z_60__LEADUSDT_spot"])
    assert reads_carrier("clock", ["hour_utc"]) and not reads_carrier("clock", ["how_sin"])
    assert reads_carrier("regime", ["taker_imb", "vol_240"])
    assert not reads_carrier("regime", ["taker_imb"]) and not reads_carrier("regime", ["vol_240"])


def _row(kind: str, published: bool, carrier: bool, target: float | None = 0.05) -> HonestyRun:
    return HonestyRun(mode="evolve", kind=kind, seed=0, strength=1.0 if target else 0.0, target_net_sharpe=target,
                      realised_net_sharpe=0.05, champion_survived=published, champion_uses_planted=carrier,
                      any_survived=published, stage_p={}, stage_passed={"psr": published},
                      champion_expression="pos_sign(ret_15__LEADUSDT_spot)" if carrier else "pos_sign(ret_1)",
                      champion_edge_kind="directional" if published else "no alpha", seconds=1.0)


def test_summary_counts_published_champions_reading_the_carrier():
    rows = [_row("clock", True, True), _row("clock", True, False), _row("clock", False, True),
            _row("null", False, False, None), _row("null", True, True, None), _row("null_regime", False, False, None)]
    s = summarize_panels(rows)
    assert s["clock@0.05"]["runs"] == 3 and s["clock@0.05"]["published_reading_carrier"] == 1
    assert s["clock@0.05"]["published"] == 2 and s["clock@0.05"]["champion_reads_carrier"] == 2
    assert s["null"]["runs"] == 2 and s["null"]["published"] == 1 and s["null"]["champion_reads_leader"] == 1
    assert s["null_all"]["runs"] == 3 and s["null_regime"]["published"] == 0
    lo, hi = s["null_all"]["clopper_pearson_95"]
    assert 0.0 < lo < 1 / 3 < hi < 1.0


@pytest.mark.slow
def test_run_panel_is_forge_evolve_on_a_universe_then_gauntlet_validate(tmp_path):
    from loop.panel_power import run_panel

    r = run_panel(5, 0.0, tmp_path, kind="clock", days=6, population=16, generations=1)
    assert r.kind == "null_clock" and r.mode == "evolve" and r.cost_preset == "spot" and r.taker_fee_bps == 10.0
    assert r.population == 16 and r.generations == 1 and r.days == 6 and r.seconds > 0
    assert set(r.stage_passed) >= {"oos", "psr", "dsr", "permutation", "pcmci", "dowhy"}
    assert (tmp_path / "panel-null_clock-0-5" / "manifest.json").is_file()
