"""Permutation / reality check: circular block bootstrap p-value of the candidate's mean return
(arch's CircularBlockBootstrap on demeaned returns) and Hansen's SPA across the hall of fame on
hourly P&L (arch's SPA; losses = -P&L, benchmark = flat). Hansen 2005, J. Bus. Econ. Stat. 23(4)."""

from __future__ import annotations

import numpy as np

from gauntlet.stages import StageResult

NAME = "permutation"


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
    """Hansen's SPA consistent p-value that no model beats the flat benchmark.

    hourly_pnl: (H, M) float64 P&L (returns) of M models per hour. returns: p-value.
    """
    from arch.bootstrap import SPA

    losses = -np.asarray(hourly_pnl, dtype=np.float64)
    spa = SPA(np.zeros(losses.shape[0]), losses, block_size=block, reps=reps, bootstrap="stationary",
              seed=np.random.default_rng(seed))
    spa.compute()
    return float(spa.pvalues["consistent"])


def run(ctx, cand, cfg, shared) -> StageResult:
    p, mean = bootstrap_pvalue(cand.oos_result.returns, cfg.bootstrap_block, cfg.bootstrap_reps,
                               cfg.seed + cand.rank)
    spa_p = shared.get("spa_p")
    passed = p < cfg.alpha and (spa_p is None or spa_p < cfg.alpha)
    if p >= cfg.alpha:
        reason = f"block-bootstrap p {p:.3f} >= {cfg.alpha}: mean return indistinguishable from luck"
    elif spa_p is not None and spa_p >= cfg.alpha:
        reason = f"bootstrap p {p:.3f}, but SPA p {spa_p:.3f} >= {cfg.alpha}: hall of fame does not beat flat"
    else:
        reason = f"bootstrap p {p:.3f}, SPA p {spa_p if spa_p is not None else float('nan'):.3f}"
    return StageResult(NAME, "bootstrap p-value", float(p), float(p), cfg.alpha, passed, reason,
                       {"mean_return_per_bar": mean, "bootstrap_p": p, "spa_p": spa_p,
                        "block_bars": cfg.bootstrap_block, "reps": cfg.bootstrap_reps,
                        "spa_block_hours": cfg.spa_block, "spa_reps": cfg.spa_reps})
