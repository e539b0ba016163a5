"""Does the Forge's default fitness reward volatility timing? (issue 29 item 4, the part "the default `alpha`
fitness rewards it").

On drifting heteroskedastic markets with no predictability (``forge.data.synthetic`` kind ``drift``: GARCH(1,1),
t(4) innovations, constant drift) and on the driftless GARCH ``null`` kind, score volatility-timing rules with the
default ``FitnessConfig`` (objective ``alpha``: alpha against the market and the volatility-managed market over a
floored residual sd, per in-sample sub-period, aggregated) and, for contrast, with the ``sharpe`` and ``excess``
objectives.  Each rule is compared with doing nothing (flat: fitness 0 before the size term) and with buy-and-hold.
A planted directional rule on ``planted`` markets is scored too (the objective must still reward real skill).

Rules (positions decided at bar t's close, traded at t+1's open like any genome's):

* ``vt_cont_h``: min(1, median(s2) / s2_t), s2 the bias-corrected EWMA of squared 1-minute log returns with
  half-life h bars (30, 240, 1440) -- the rule of ``tests/test_edge_kind.py``, not the factor's own estimator;
* ``vt_bin_h``: long 1 when s2_t < its median, else flat (the same estimator; fewer trades);
* ``buy_hold``: long 1 throughout; ``planted``: the honesty study's oracle rule ``pos_sign(ts_mean(taker_imb, 240))``
  on planted markets at the strength calibrated for a net per-bar Sharpe of 0.05 (``gauntlet_strengths.json``).

Scores are gross (no fees, no slippage: does the *objective* reward the timing?), at the futures preset's taker fee
(5 bps + the default 1 bp slippage, no funding) and at the default spot costs (10 + 1 bps).
The fitness here is ``skill_fitness`` on the whole 20-day market (the size term is left out: size 0).

    PYTHONPATH=. /work/venv/bin/python benchmarks/vol_timer_fitness.py --seeds 40 --out benchmarks/vol_timer_fitness.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge.backtest import BacktestConfig, run_backtest
from forge.core.runconfig import FitnessConfig, load_run_config
from forge.data.synthetic import synthetic_bars
from forge.evolution.fitness import market_reference, skill_fitness

PPY = 525_600.0
HALF_LIVES = (30.0, 240.0, 1440.0)
ORACLE_WINDOW = 240
STRENGTHS = Path(__file__).resolve().parent / "gauntlet_strengths.json"


def ewma_var(close: np.ndarray, half_life: float) -> np.ndarray:
    """(n,) bias-corrected EWMA of squared 1-minute log returns over bars <= t (half-life in bars)."""
    x = np.r_[0.0, np.diff(np.log(close))] ** 2
    lam = 0.5 ** (1.0 / half_life)
    return lfilter([1.0], [1.0, -lam], x) / lfilter([1.0], [1.0, -lam], np.ones_like(x))


def rules(bars, kind: str) -> dict[str, np.ndarray]:
    c = bars["close"].to_numpy()
    out = {"buy_hold": np.ones(len(c))}
    for h in HALF_LIVES:
        s2 = ewma_var(c, h)
        med = float(np.median(s2))
        out[f"vt_cont_{h:g}"] = np.minimum(1.0, med / np.maximum(s2, 1e-300))
        out[f"vt_bin_{h:g}"] = (s2 < med).astype(np.float64)
    if kind == "planted":  # the honesty study's oracle rule: pos_sign(ts_mean(taker_imb, window))
        share = 2.0 * bars["taker_buy_volume"].to_numpy() / bars["volume"].to_numpy() - 1.0
        w = ORACLE_WINDOW
        mean = np.convolve(share, np.ones(w) / w)[: len(share)]
        mean[: w - 1] = 0.0
        out["planted"] = np.sign(mean)
    return out


def score(bars, pos: np.ndarray, bt: BacktestConfig, cfg: FitnessConfig) -> float:
    o, c, t = (bars[k].to_numpy() for k in ("open", "close", "open_time"))
    res = run_backtest(o, c, t, pos, bt)
    ref = market_reference(o, c, t, bt)
    fit, _ = skill_fitness(res.metrics, res.returns, ref, 0, 1, cfg, PPY)
    return fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--kinds", default="drift,null,planted")
    ap.add_argument("--strength", type=float, default=None,
                    help="planted strength (default: the one calibrated for net per-bar Sharpe 0.05)")
    ap.add_argument("--out", default="")
    ap.add_argument("--rows", action="store_true", help="also write every (market, rule, costs, objective) row to --out")
    a = ap.parse_args()
    run = load_run_config(None)
    net = run.backtest
    gross = dataclasses.replace(net, taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=0.0)
    futures = dataclasses.replace(net, taker_fee_bps=5.0, funding_rate_8h=0.0)
    if a.strength is None:
        a.strength = float(json.loads(STRENGTHS.read_text())["0.05"]["strength"])
    default = dataclasses.replace(run.fitness, min_trades=0)
    objectives = {"alpha (default)": default,
                  "sharpe": dataclasses.replace(default, objective="sharpe", periods=1),
                  "excess": dataclasses.replace(default, objective="excess")}
    rows = []
    for kind in a.kinds.split(","):
        for seed in range(a.seeds):
            bars, _ = synthetic_bars(70_000 + seed, days=a.days, kind=kind,
                                     **({"strength": a.strength} if kind == "planted" else {}))
            for name, pos in rules(bars, kind).items():
                for cost, bt in (("gross", gross), ("fut", futures), ("spot", net)):
                    for obj, cfg in objectives.items():
                        rows.append({"kind": kind, "seed": 70_000 + seed, "rule": name, "costs": cost,
                                     "objective": obj, "fitness": score(bars, pos, bt, cfg)})
    # summary: share of seeds where the rule scores above flat (0) and above buy-and-hold, median fitness
    summ: dict[str, dict] = {}
    for r in rows:
        key = f"{r['kind']}|{r['rule']}|{r['costs']}|{r['objective']}"
        summ.setdefault(key, []).append(r)
    table = []
    for key, rs in summ.items():
        kind, rule, cost, obj = key.split("|")
        bh = {x["seed"]: x["fitness"] for x in rows if x["kind"] == kind and x["rule"] == "buy_hold"
              and x["costs"] == cost and x["objective"] == obj}
        f = np.array([x["fitness"] for x in rs])
        table.append({"kind": kind, "rule": rule, "costs": cost, "objective": obj, "n": len(f),
                      "above_flat": float(np.mean(f > 0.0)), "above_buy_hold": float(np.mean(
                          [x["fitness"] > bh[x["seed"]] for x in rs])), "median": float(np.median(f))})
    print(f"{'kind':8} {'rule':14} {'costs':5} {'objective':16} {'>flat':>6} {'>b&h':>6} {'median':>9}")
    for t in table:
        print(f"{t['kind']:8} {t['rule']:14} {t['costs']:5} {t['objective']:16} {t['above_flat']:6.0%} "
              f"{t['above_buy_hold']:6.0%} {t['median']:9.3f}")
    if a.out:
        out = {"args": vars(a), "summary": table, **({"rows": rows} if a.rows else {})}
        Path(a.out).write_text(json.dumps(out, indent=1 if not a.rows else None))


if __name__ == "__main__":
    main()
