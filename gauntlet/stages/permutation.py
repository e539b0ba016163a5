"""Permutation test of timing skill, with the block bootstrap and Hansen's SPA as diagnostics.

Gate — a Monte Carlo permutation test in the circular-shift form (the "random timing" test of a trading
rule; the shift keeps the autocorrelation of both the position and the returns, which a row shuffle would
destroy): the candidate's out-of-sample net mean return is compared with the net mean returns of its own
position series circularly shifted by K random offsets between 10 % and 90 % of the sample, backtested on
the same bars with the same costs. A shifted position has the same mean exposure and turnover, so the test
measures timing, not beta: a constant position ties with every shift and gets p = 1.
p = (1 + #{shifted mean >= observed mean}) / (1 + K) (Phipson & Smyth 2010; circular-shift tests: Ebisuzaki
1997, J. of Climate 10(9)).

Diagnostics — the circular block bootstrap p-value of the hedged mean return (arch
``CircularBlockBootstrap``, block length by Politis & White 2004 / Patton, Politis & White 2009 via
``arch.bootstrap.optimal_block_length``), and Hansen's (2005, J. Bus. Econ. Stat. 23(4)) SPA over the hall
of fame's distinct candidates on hourly hedged P&L against a zero benchmark (arch ``SPA``), with its block
length sized to the sample and flagged uninformative below ``spa_min_points`` hourly points.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from forge.backtest import run_backtest
from gauntlet.stages import StageResult
from gauntlet.stats import hourly_sums

NAME = "permutation"


def circular_shift_pvalue(position: np.ndarray, backtest: Any, shifts: int, seed: int) -> dict[str, Any]:
    """Timing test of a position against its own circular shifts.

    position: (T,) float64 target positions on the tested bars; backtest: callable (T,) position ->
    (T,) per-bar net returns; shifts: K offsets drawn without replacement from [T/10, 9T/10].
    returns: {"p", "observed_mean", "null_mean", "null_std", "shifts"}.
    raises ValueError for T < 20.
    """
    pos = np.nan_to_num(np.asarray(position, dtype=np.float64))
    n = pos.shape[0]
    if n < 20:
        raise ValueError(f"circular-shift test needs >= 20 bars, got {n}")
    lo, hi = max(1, n // 10), max(n // 10 + 1, n - n // 10)
    k = min(shifts, hi - lo)
    offs = np.random.default_rng(seed).choice(np.arange(lo, hi), size=k, replace=False)
    obs = float(np.nanmean(backtest(pos)))
    null = np.array([float(np.nanmean(backtest(np.roll(pos, int(o))))) for o in offs])
    # ties count against the candidate (a constant position equals all its shifts: p = 1)
    ge = int(np.sum(null >= obs - 1e-15 * max(abs(obs), 1e-300)))
    return {"p": (1.0 + ge) / (1.0 + k), "observed_mean": obs, "null_mean": float(null.mean()),
            "null_std": float(null.std()), "shifts": int(k)}


def politis_white_block(x: np.ndarray, cap: int) -> int:
    """Stationary-bootstrap block length of (T,) x by Politis & White (2004) (arch), in [1, cap]."""
    from arch.bootstrap import optimal_block_length

    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    if x.size < 10 or not np.std(x) > 0:
        return 1
    b = float(optimal_block_length(x)["stationary"].iloc[0])
    return int(min(max(round(b), 1), max(cap, 1)))


def bootstrap_pvalue(returns: np.ndarray, block: int, reps: int, seed: int) -> tuple[float, float]:
    """One-sided p-value of mean(returns) > 0: (1 + #{bootstrap mean of demeaned series >= mean}) / (1 + reps).

    returns: (T,) float64 per-bar returns (NaN -> 0); block: circular block length, bars.
    returns: (p_value, observed mean).
    """
    from arch.bootstrap import CircularBlockBootstrap

    r = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    obs = float(r.mean())
    bs = CircularBlockBootstrap(block, r - obs, seed=np.random.default_rng(seed))
    means = bs.apply(lambda x: np.array([x.mean()]), reps)[:, 0]
    return (1.0 + float(np.sum(means >= obs))) / (1.0 + reps), obs


def spa_pvalue(hourly_pnl: np.ndarray, block: int, reps: int, seed: int) -> float:
    """Hansen's SPA consistent p-value that no model beats the zero benchmark.

    hourly_pnl: (H, M) float64 P&L (returns) of M models per hour. returns: p-value.
    """
    from arch.bootstrap import SPA

    losses = -np.asarray(hourly_pnl, dtype=np.float64)
    spa = SPA(np.zeros(losses.shape[0]), losses, block_size=block, reps=reps, bootstrap="stationary",
              seed=np.random.default_rng(seed))
    spa.compute()
    return float(spa.pvalues["consistent"])


def spa_over(hedged: Sequence[np.ndarray], open_time: np.ndarray, cfg: Any) -> dict[str, Any]:
    """SPA over distinct candidates' (T,) hedged per-bar returns summed per hour; block length by
    Politis–White on the mean hourly P&L, capped at H/4. returns a JSON-ready dict with p (None when
    H < 20), block_hours, points and informative (H >= cfg.spa_min_points)."""
    pnl = np.column_stack([hourly_sums(h, open_time) for h in hedged])
    h = pnl.shape[0]
    out: dict[str, Any] = {"points": int(h), "models": int(pnl.shape[1]), "informative": h >= cfg.spa_min_points}
    if h < 20:
        return {**out, "p": None, "block_hours": None, "note": f"{h} hourly points: too few for SPA"}
    block = politis_white_block(pnl.mean(axis=1), h // 4)
    p = spa_pvalue(pnl, block, cfg.spa_reps, cfg.seed)
    note = "" if out["informative"] else f"only {h} hourly points (< {cfg.spa_min_points}): reported, uninformative"
    return {**out, "p": p, "block_hours": block, "note": note}


def run(ctx, cand, cfg, shared) -> StageResult:
    a, b = ctx.evaluation
    o, c, t = ctx.arrays((a, b))
    res = circular_shift_pvalue(cand.position[a:b], lambda p: run_backtest(o, c, t, p, ctx.backtest).returns,
                                cfg.permutation_shifts, cfg.seed + cand.rank)
    hedged = shared["oos_hedge"][cand.rank].hedged
    block = politis_white_block(hedged, max(len(hedged) // 20, 1))
    boot_p, mean = bootstrap_pvalue(hedged, block, cfg.bootstrap_reps, cfg.seed + cand.rank)
    spa = shared["spa"]
    passed = res["p"] <= cfg.alpha and res["observed_mean"] > res["null_mean"]
    reason = (f"timing: net mean {res['observed_mean']:+.2e}/bar vs {res['shifts']} circular shifts "
              f"{res['null_mean']:+.2e} ± {res['null_std']:.1e}, p {res['p']:.3f} "
              f"{'<=' if res['p'] <= cfg.alpha else '>'} {cfg.alpha}")
    return StageResult(NAME, "circular-shift p-value", res["p"], res["p"], cfg.alpha, passed, reason, {
        **res, "bootstrap_p_hedged_mean": boot_p, "hedged_mean_per_bar": mean, "bootstrap_block_bars": block,
        "bootstrap_reps": cfg.bootstrap_reps, "spa": spa})
