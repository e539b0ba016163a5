"""Size of the Gauntlet's hypothesis-test stages on markets with nothing to find.

For every draw of a null market (``forge.data.synthetic.NULL_MARKETS``: GARCH with Student-t tails,
heavier tails with longer volatility memory, a drift, an intraday volatility cycle) and every position that
knows nothing about the next return (``forge.data.synthetic.null_positions``: driven by volatility, inverse
volatility, trend, the clock), the p-value of each gating stage is computed exactly as the stage computes
it on the evaluation range:

- ``psr``: 1 - PSR(0) of the market-hedged net returns (one candidate, so Holm changes nothing), and the
  same before costs (``psr_gross``, where the null is exact; net of costs it is conservative);
- ``permutation``: the circular-shift test on the studentised statistic (the gate) and, for comparison,
  on the mean net P&L (``permutation_mean``, the former statistic);
- ``pcmci``: the HAC t-test of return ~ held position + the PCMCI market parents (parents found once
  per market draw, as the stage does once per run);
- ``dowhy``: the circular-shift placebo p-value of the backdoor estimate, adjusted for the set DoWhy
  identifies on the PCMCI graph (the position's driver an unobserved input; a parent that duplicates it is
  that input, ``dowhy_refute.duplicate_inputs``).

A stage is at its size at level alpha when P(p <= alpha) <= alpha + 2 s.e., s.e. = sqrt(alpha (1 - alpha)
/ draws) (the Monte Carlo binomial standard error). ``benchmarks/gauntlet_size.py`` runs the study.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import numpy as np

from forge.backtest import BacktestConfig, run_backtest
from forge.data.synthetic import NULL_MARKETS, NULL_POSITIONS, null_positions, synthetic_bars

__all__ = ["null_pvalues", "planted_pvalues", "stage_pvalues", "size_table", "STAGES", "LEVELS"]

STAGES = ("psr", "psr_gross", "permutation", "permutation_mean", "pcmci", "dowhy")
LEVELS = (0.01, 0.05, 0.10)


def null_pvalues(kind: str, seed: int, days: int = 3, shifts: int = 199,
                 costs: BacktestConfig | None = None, stages: Iterable[str] = STAGES) -> list[dict[str, Any]]:
    """Every stage's p-value for each null position on one draw of a null market.

    kind: one of NULL_MARKETS; seed: the draw; days: market length (1-minute bars, all of them tested);
    shifts: circular shifts of the permutation and placebo tests; costs: the backtest costs (default: the
    packaged ones). returns: one dict per position {"market", "seed", "position", <stage>: p-value (float
    or None)}. raises ValueError for an unknown kind.
    """
    if kind not in NULL_MARKETS:
        raise ValueError(f"kind must be one of {NULL_MARKETS}, got {kind!r}")
    bars, _ = synthetic_bars(seed, 0.0, days, kind=kind)
    return stage_pvalues(bars, null_positions(bars), kind, seed, shifts, costs, stages)


def planted_pvalues(seed: int, strength: float, days: int = 20, oos_fraction: float = 0.3, window: int = 240,
                    shifts: int = 199, costs: BacktestConfig | None = None,
                    stages: Iterable[str] = STAGES) -> dict[str, Any]:
    """Power: every stage's p-value for the oracle rule ``pos_sign(ts_mean(taker_imb, window))`` on the last
    ``oos_fraction`` of a planted market (``synthetic_bars(seed, strength, days)``), the rows a run's
    out-of-sample range would hold. returns: {"market": "planted", "seed", "position": "oracle", <stage>: p}."""
    from forge.data.gaps import bars_since_gap
    from forge.gp import Genome
    from forge.strategy import genome_positions, strategy_features

    bars, _ = synthetic_bars(seed, strength, days, kind="planted")
    g = Genome.from_tokens(["pos_sign", "ts_mean", "feature:taker_imb", f"window:{window}"], [])
    pos = genome_positions(g, strategy_features(bars, ("taker_imb",), None), bars_since_gap(bars["open_time"].to_numpy()))
    drv = strategy_features(bars, ("taker_imb",), None).row("taker_imb")
    start = bars.height - int(round(bars.height * oos_fraction))
    tail = bars.slice(start)
    row = stage_pvalues(tail, {"oracle": (pos[start:], drv[start:])}, "planted", seed, shifts, costs, stages)[0]
    return {**row, "strength": strength}


def stage_pvalues(bars: Any, positions: dict[str, tuple[np.ndarray, np.ndarray]], kind: str, seed: int,
                  shifts: int = 199, costs: BacktestConfig | None = None,
                  stages: Iterable[str] = STAGES) -> list[dict[str, Any]]:
    """The stages' p-values for each (position (n,), driver (n,)) on ``bars`` (the tested rows; features
    start cold on them). returns: one dict per position, as ``null_pvalues``."""
    from forge.causal import vol_standardized
    from forge.data.gaps import realised_returns
    from forge.features import compute_features
    from gauntlet.stages.dowhy_refute import causal_graph, duplicate_inputs, identify_adjustment, shift_placebo_pvalue
    from gauntlet.stages.pcmci import MARKET_STATE, market_parents, position_link
    from gauntlet.stages.permutation import circular_shift_mean_pvalue, circular_shift_pvalue
    from gauntlet.stats import market_hedged, psr_pvalue

    stages = tuple(stages)
    costs = costs or BacktestConfig()
    gross = dataclasses.replace(costs, taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=0.0)
    o = bars["open"].to_numpy().astype(np.float64)
    c = bars["close"].to_numpy().astype(np.float64)
    t = bars["open_time"].to_numpy().astype(np.int64)
    market = run_backtest(o, c, t, np.ones(len(o)), gross).returns
    ret_z = vol_standardized(realised_returns(c, t))
    mk = None
    if "pcmci" in stages or "dowhy" in stages:
        state = compute_features(bars, MARKET_STATE).values
        graph = market_parents(ret_z, state, MARKET_STATE, 3, 0.05, seed)
        mk = {"parents": graph["parents"], "series": {**dict(zip(MARKET_STATE, state)), "return": ret_z}}
    adj: list[str] = []
    if "dowhy" in stages:  # the stage's graph: PCMCI parents, the position's one (unobserved) input
        import pandas as pd

        graph, pnodes, _ = causal_graph([(str(n), int(lag)) for n, lag in mk["parents"]], ["driver"])
        pser = {f"{n}_lag{lag}": np.roll(mk["series"][n], lag) for n, lag in mk["parents"]}
        adj = identify_adjustment(graph, pd.DataFrame({"position": np.zeros(len(ret_z)), "ret": np.nan_to_num(ret_z),
                                                       **{k: np.nan_to_num(v) for k, v in pser.items()}}))
    out = []
    for name, (pos, driver) in positions.items():
        row: dict[str, Any] = {"market": kind, "seed": seed, "position": name}
        bt = lambda p: run_backtest(o, c, t, p, costs).returns  # noqa: E731
        if "psr" in stages:
            row["psr"] = psr_pvalue(market_hedged(bt(pos), market).hedged)[0]
        if "psr_gross" in stages:
            row["psr_gross"] = psr_pvalue(market_hedged(run_backtest(o, c, t, pos, gross).returns, market).hedged)[0]
        if "permutation" in stages:
            row["permutation"] = circular_shift_pvalue(pos, market, shifts, seed)["p"]
        if "permutation_mean" in stages:
            row["permutation_mean"] = circular_shift_mean_pvalue(pos, bt, shifts, seed)
        if "pcmci" in stages:
            try:
                res = position_link(pos, ret_z, mk["series"], mk["parents"])
                row["pcmci"] = res["p"]  # one-sided P(T >= t), as the gate (which also needs coef > 0)
            except ValueError:
                row["pcmci"] = None
        if "dowhy" in stages:
            held = np.zeros_like(ret_z)
            held[1:] = pos[:-1]
            rows = np.arange(1, len(ret_z))
            # a parent that is the position's driver is that input, not a confounder (as the stage; lookback 0)
            dup = duplicate_inputs(mk["parents"], mk["series"], {"driver": driver}, 0)
            use = [n for n in adj if n not in dup]
            ctrl = np.column_stack([pser[n][rows] for n in use]) if use else np.empty((rows.size, 0))
            ok = np.isfinite(ret_z[rows]) & np.isfinite(ctrl).all(axis=1)
            if ok.sum() > 200 and np.std(held[rows][ok]) > 0:
                row["dowhy"] = shift_placebo_pvalue(held[rows][ok], ret_z[rows][ok], ctrl[ok], shifts, seed)[0]
            else:
                row["dowhy"] = None
        out.append(row)
    return out


def size_table(rows: list[dict[str, Any]], levels: Iterable[float] = LEVELS) -> list[dict[str, Any]]:
    """Rejection rates per (market, position, stage) and level, pooled rows last (market = position = "all").

    rows: ``null_pvalues`` output. returns: [{"market", "position", "stage", "draws", "levels": {alpha:
    {"rate", "bound": alpha + 2 s.e., "at_size": rate <= bound}}}]; None p-values (untestable) count as no
    rejection and are left out of ``draws``.
    """
    cells: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        for s in STAGES:
            if r.get(s) is not None:
                for key in ((r["market"], r["position"], s), ("all", r["position"], s), ("all", "all", s)):
                    cells.setdefault(key, []).append(float(r[s]))
    out = []
    for (m, pname, s), ps in sorted(cells.items()):
        p = np.asarray(ps)
        lv = {}
        for a in levels:
            se = math.sqrt(a * (1 - a) / p.size)
            rate = float(np.mean(p <= a))
            lv[a] = {"rate": rate, "bound": a + 2 * se, "at_size": rate <= a + 2 * se}
        out.append({"market": m, "position": pname, "stage": s, "draws": int(p.size), "levels": lv})
    return out
