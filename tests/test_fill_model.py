"""The run's fill model (``forge.backtest.fills.FillModel``): ``[execution] mode`` scored the same way by
evolution's fitness, its out-of-sample report and the Gauntlet.

- taker: bit-identical to ``forge.backtest.run_backtest`` (old runs and the default are unchanged);
- kline-limit / policy: ``run_kline_backtest`` in ``BacktestResult``'s shape (returns compound to the equity
  curve, fills as trade records), the maker fee resolved from the cost preset;
- fitness on one worker = on two (the kline inputs travel in the shared segments);
- the Gauntlet's out-of-sample backtest of a kline-limit run's champion = evolution's report of it;
- a policy file changed since the run is refused;
- on a planted low-turnover edge under the futures preset, passive fills net more than taker fills.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from forge.backtest import BacktestConfig, run_backtest
from forge.backtest.fills import ExecutionConfig, FillModel, run_kline_backtest
from forge.core.errors import ConfigError


def _bars(n: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = np.round(100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))), 2)
    o = np.r_[c[0], c[:-1]]
    h = np.round(np.maximum(o, c) * (1 + np.abs(rng.normal(0, 5e-4, n))), 2)
    lo = np.round(np.minimum(o, c) * (1 - np.abs(rng.normal(0, 5e-4, n))), 2)
    h, lo = np.maximum(h, np.maximum(o, c)), np.minimum(lo, np.minimum(o, c))
    return {"open": o, "high": h, "low": lo, "close": c, "volume": rng.uniform(50, 500, n),
            "open_time": np.arange(n, dtype=np.int64) * 60_000}


def test_taker_model_is_the_taker_backtester_bit_for_bit():
    b = _bars()
    pos = np.sign(np.sin(np.arange(b["open"].size) / 37.0))
    cfg = BacktestConfig(taker_fee_bps=5.0)
    fm = FillModel.for_run(ExecutionConfig(), {"maker_fee_bps": 2.0}, 5.0)
    assert fm.taker and fm.inputs(b["high"], b["low"], b["close"], b["volume"]) is None
    got, want = fm.run(b["open"], b["close"], b["open_time"], pos, cfg), run_backtest(b["open"], b["close"],
                                                                                     b["open_time"], pos, cfg)
    for name in ("equity", "returns", "position_held", "trades"):
        assert np.array_equal(getattr(got, name), getattr(want, name))
    assert got.metrics == want.metrics


def test_kline_model_in_the_backtest_result_shape():
    b = _bars()
    n = b["open"].size
    pos = np.sign(np.sin(np.arange(n) / 37.0))
    cfg = BacktestConfig(taker_fee_bps=5.0, slippage_bps=1.0)
    fm = FillModel.for_run(ExecutionConfig(mode="kline-limit"), {"maker_fee_bps": 2.0}, 5.0)
    assert fm.maker_fee_bps == 2.0 and not fm.taker
    kl = fm.inputs(b["high"], b["low"], b["close"], b["volume"])
    assert kl.tick == pytest.approx(0.01)
    res = fm.run(b["open"], b["close"], b["open_time"], pos, cfg, kl)
    raw = run_kline_backtest(b["open"], b["high"], b["low"], b["close"], b["volume"], b["open_time"], pos, cfg,
                             dataclasses.replace(ExecutionConfig(mode="kline-limit"), tick_size=kl.tick),
                             maker_fee_bps=2.0, half_spread=kl.half_spread)
    assert np.array_equal(res.equity, raw.equity) and res.metrics == raw.metrics
    # simple per-bar returns of the equity curve, from the initial capital
    assert np.allclose(cfg.initial_capital * np.cumprod(1.0 + res.returns), res.equity, rtol=1e-12)
    tr, f = res.trades, raw.fills
    assert tr.shape == f.shape and tr.shape[0] > 20
    assert np.array_equal(tr["units"], f["units"]) and np.array_equal(tr["price"], f["price"])
    assert np.allclose(tr["notional"], np.abs(f["units"]) * f["price"])
    maker = f["maker"] == 1
    assert maker.mean() > 0.5  # most fills rest; each pays the maker fee on its notional
    assert np.allclose(f["fee"][maker], 2e-4 * tr["notional"][maker])
    assert np.allclose(f["fee"][~maker], 5e-4 * tr["notional"][~maker])
    # a resting buy (re-priced each bar) fills at or below the previous close, a sell at or above: passive
    # prices, and only in a bar that traded through them
    ref = b["close"][f["bar"] - 1]
    buys, sells = maker & (f["side"] > 0), maker & (f["side"] < 0)
    assert np.all(f["price"][buys] <= ref[buys] + 1e-9) and np.all(f["price"][sells] >= ref[sells] - 1e-9)
    assert np.all(b["low"][f["bar"][buys]] < f["price"][buys])
    assert np.all(b["high"][f["bar"][sells]] > f["price"][sells])
    # held exposure at each fill's close = the units held times the close over equity
    units = np.cumsum(np.bincount(f["bar"], weights=f["units"], minlength=n))
    assert np.allclose(res.position_held, units * b["close"] / res.equity)
    assert np.allclose(tr["position_after"], res.position_held[f["bar"]])


def test_for_run_resolves_the_maker_fee_and_the_policy(tmp_path):
    # the preset's maker fee; a manual preset records none: the taker fee then; an explicit one wins
    assert FillModel.for_run(ExecutionConfig(mode="kline-limit"), {"maker_fee_bps": 2.0}, 5.0).maker_fee_bps == 2.0
    assert FillModel.for_run(ExecutionConfig(mode="kline-limit"), {"maker_fee_bps": None}, 7.0).maker_fee_bps == 7.0
    assert FillModel.for_run(ExecutionConfig(mode="kline-limit", maker_fee_bps=0.5), {"maker_fee_bps": 2.0},
                             5.0).maker_fee_bps == 0.5
    from forge.execution.policy import ALWAYS_TAKER_SHA256, ExecutionPolicy

    pm = FillModel.for_run(ExecutionConfig(mode="policy"), {"maker_fee_bps": 2.0}, 5.0)
    assert pm.policy_sha256 == ALWAYS_TAKER_SHA256 and len(pm.weights) > 0
    assert pm.describe()["policy_sha256"] == ALWAYS_TAKER_SHA256
    w = ExecutionPolicy.always_taker().weights.copy()
    w[1, 0] = 3.0  # rest at the touch by default
    path = ExecutionPolicy(w).save(tmp_path / "p.json")
    pol = FillModel.for_run(ExecutionConfig(mode="policy", policy=str(path)), {}, 5.0)
    assert pol.policy_sha256 == ExecutionPolicy.load(path).sha256 != ALWAYS_TAKER_SHA256
    with pytest.raises(ConfigError, match="cannot read execution policy"):
        FillModel.for_run(ExecutionConfig(mode="policy", policy=str(tmp_path / "missing.json")), {}, 5.0)
    with pytest.raises(ConfigError, match="execution.mode"):
        FillModel.for_run(ExecutionConfig(mode="limit"), {}, 5.0)


def test_fitness_under_the_kline_model_does_not_depend_on_workers():
    from forge.core.runconfig import load_run_config
    from forge.data.loader import load_bars
    from forge.evolution.evaluator import Evaluator
    from forge.evolution.market import Market
    from forge.gp import Genome

    bars, cov = load_bars(None)
    cfg = load_run_config(None)
    m = Market.build("BTCUSDT", bars.head(6000), cov, ("ret_1", "taker_imb", "rsi_14"), 0.7)
    fill = FillModel.for_run(ExecutionConfig(mode="kline-limit"), {"maker_fee_bps": 2.0}, 10.0)
    seg = m.in_sample_arrays(fill)
    assert seg.kline is not None and seg.kline.half_spread.shape == seg.open_.shape
    genomes = [Genome.from_tokens(["pos_sign", "ts_mean", f"feature:{f}", f"window:{w}"], [])
               for f in ("taker_imb", "ret_1", "rsi_14") for w in (20, 60, 240)]
    out = []
    for jobs in (1, 2):
        with Evaluator(seg, cfg.backtest, cfg.fitness, 64, jobs, fill=fill) as ev:
            out.append(ev.evaluate(genomes))
    assert json.dumps(out[0]) == json.dumps(out[1])  # NaN-safe, bit for bit (repr of every float)
    with Evaluator(m.in_sample_arrays(), cfg.backtest, cfg.fitness, 64, 1) as ev:
        taker = ev.evaluate(genomes)
    assert [r[0] for r in taker] != [r[0] for r in out[0]]
    with pytest.raises(ConfigError, match="no kline inputs"):
        Evaluator(m.in_sample_arrays(), cfg.backtest, cfg.fitness, 64, 1, fill=fill)


@pytest.fixture(scope="module")
def kline_run(tmp_path_factory):
    """A smoke run evolved with ``[execution] mode = "kline-limit"`` on the embedded sample."""
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution import evolve
    from tests.test_golden import SMOKE

    tmp = tmp_path_factory.mktemp("kline-run")
    cfg = with_overrides(load_run_config(SMOKE), "evolve", output_dir=str(tmp), generations=1, population=12)
    cfg = with_overrides(cfg, "execution", mode="kline-limit")
    return evolve(cfg, run_dir=tmp / "run")


def test_gauntlet_scores_the_fills_evolution_selected_with(kline_run):
    from gauntlet.context import RunContext

    ctx = RunContext.load(kline_run.run_dir, max_candidates=2)
    assert ctx.fill.execution.mode == "kline-limit" and ctx.fill.maker_fee_bps == 10.0  # auto -> spot: 10 / 10
    for cand, member in zip(ctx.candidates, kline_run.hall_of_fame):
        got = cand.oos_result.metrics.to_dict()
        assert got == pytest.approx(member["out_of_sample"], rel=1e-12, nan_ok=True)
    assert ctx.buy_and_hold.metrics.to_dict() == pytest.approx(
        kline_run.hall_of_fame[0]["out_of_sample_buy_and_hold"], rel=1e-12, nan_ok=True)


def test_gauntlet_refuses_a_policy_changed_since_the_run(tmp_path):
    from forge.core.rundir import read_manifest, write_manifest
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution import evolve
    from forge.execution.policy import ExecutionPolicy
    from gauntlet.context import RunContext
    from tests.test_golden import SMOKE

    path = ExecutionPolicy.always_taker().save(tmp_path / "policy.json")
    cfg = with_overrides(load_run_config(SMOKE), "evolve", output_dir=str(tmp_path), generations=0, population=8)
    cfg = with_overrides(cfg, "execution", mode="policy", policy=str(path))
    res = evolve(cfg, run_dir=tmp_path / "run")
    assert RunContext.load(res.run_dir, max_candidates=1).fill.policy_sha256 == ExecutionPolicy.load(path).sha256
    w = ExecutionPolicy.always_taker().weights.copy()
    w[1, 0] = 3.0
    ExecutionPolicy(w).save(path)
    with pytest.raises(ConfigError, match="is not the policy the run was evolved with"):
        RunContext.load(res.run_dir, max_candidates=1)
    m = read_manifest(res.run_dir)
    assert json.loads(json.dumps(m.costs))["execution"]["mode"] == "policy"
    write_manifest(res.run_dir, dataclasses.replace(m, costs={k: v for k, v in m.costs.items() if k != "execution"}))
    RunContext.load(res.run_dir, max_candidates=1)  # a manifest without the record: nothing to compare with


def test_passive_fills_net_more_on_a_planted_low_turnover_edge(tmp_path):
    """The oracle rule on a planted market under the futures preset (5 bp taker, 2 bp maker), validated with
    taker fills and with the kline model: same market and positions, so the same gross edge; resting at the
    touch saves most of the fee, so the net Sharpe the Gauntlet measures is higher."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from gauntlet_honesty import _preset_config
    from loop.honesty import run_oracle

    got = {}
    for mode in ("taker", "kline-limit"):
        cfg = _preset_config("futures", tmp_path, mode)
        r = run_oracle(2000, 0.0785, tmp_path / mode, days=20, config=cfg, target=0.03)
        assert (r.cost_preset, r.taker_fee_bps, r.execution_mode) == ("futures", 5.0, mode)
        got[mode] = r.realised_net_sharpe
    assert got["kline-limit"] > got["taker"] + 0.003, got
