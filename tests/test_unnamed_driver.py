"""Issue 17 item 7: a driver the feature registry does not name -- the 180-bar mean of the taker-buy imbalance
(the registry has the imbalance and its 20-bar mean only) -- is found by the default pipeline: the causal filter
keeps the raw column through its smoothed form (and dropped it before), the GP's window primitives build a
rule on it that earns after costs out of sample, and the null twin of the market yields neither."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from forge.causal import causal_filter
from forge.data.gaps import bars_since_gap, forward_returns
from forge.evolution.market import Market
from forge.features import DEFAULT_FEATURES, FeatureMatrix
from forge.core.runconfig import CausalConfig

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("forge_unnamed_driver", REPO / "benchmarks" / "forge_unnamed_driver.py")
ud = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ud)


def _filter(kind: str, seed: int, **kw):
    bars, _ = ud.slow_driver_bars(seed, 0.2, 10, 180, kind)
    m = Market.build("", bars, None, DEFAULT_FEATURES, 0.7)
    a, b = m.split.in_sample
    fwd = forward_returns(bars["close"].to_numpy().astype(np.float64), bars["open_time"].to_numpy())
    sub = FeatureMatrix(m.features.names, np.ascontiguousarray(m.features.values[:, a:b]), m.features.lookbacks)
    return bars, m, causal_filter(sub, fwd[a:b], CausalConfig(tau_max=2, max_samples=5000, **kw), seed=0)


@pytest.mark.parametrize("seed", [5, 6])
def test_planted_slow_taker_driver_is_kept_and_traded_null_is_not(seed):
    from forge.backtest import BacktestConfig, run_backtest
    from forge.gp import Genome
    from forge.strategy import genome_positions

    _, _, before = _filter("planted", seed, smooth_windows=())
    assert "taker_imb" not in before.kept and "taker_imb_20" not in before.kept  # the filter as it was
    rule = Genome.from_tokens(["min_hold", "pos_sign", "ts_mean", "feature:taker_imb", "window:60", "window:60"], [])
    got = {}
    for kind in ("planted", "null"):
        bars, m, rep = _filter(kind, seed)
        got[kind] = rep
        t = bars["open_time"].to_numpy()
        o, c = (bars[x].to_numpy().astype(np.float64) for x in ("open", "close"))
        a, b = m.split.out_of_sample
        pos = genome_positions(rule, m.features, bars_since_gap(t))
        got[kind + "_oos"] = run_backtest(o[a:b], c[a:b], t[a:b], pos[a:b],
                                          BacktestConfig(taker_fee_bps=10.0, slippage_bps=1.0)).metrics
    assert got["planted"].reasons["taker_imb"].startswith("kept: smoothed form ts_mean(taker_imb, 60)")
    assert not any(r.startswith("kept: smoothed") for r in got["null"].reasons.values())
    assert got["planted_oos"].total_return > 0.1 and got["null_oos"].total_return < 0.0


def test_default_evolve_offers_the_planted_column_to_the_gp(tmp_path):
    from forge.evolution.run import evolve
    from forge.core.runconfig import load_run_config, with_overrides

    cfg = load_run_config(REPO / "configs" / "default.toml")
    cfg = with_overrides(cfg, "evolve", population=12, generations=0, jobs=1, output_dir=str(tmp_path),
                         checkpoint=False, hall_of_fame_size=3)
    cfg = with_overrides(cfg, "causal", max_samples=5000, tau_max=2)
    cfg = with_overrides(cfg, "coevolution", enabled=False)
    bars, _ = ud.slow_driver_bars(5, 0.2, 10, 180, "planted")
    res = evolve(cfg, bars=bars, run_dir=tmp_path / "planted")
    causal = json.loads((res.run_dir / "causal.json").read_text())
    assert "taker_imb" in res.manifest["features"] and "taker_imb" in causal["kept"]
    assert causal["smoothed"]["links"][0]["feature"] == "ts_mean(taker_imb, 60)"
