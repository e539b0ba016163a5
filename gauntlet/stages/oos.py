"""Out-of-sample stage: metrics on bars evolution never read, next to buy-and-hold of the same bars.

Gate: at least ``min_trades`` fills on the evaluation range and a position that varies (a constant
position is beta, never a discovery; the hypothesis tests of the other stages need variation).
Reported (diagnostic): return, Sharpe, drawdown, trades, turnover and exposure beside buy-and-hold, the
excess return over buy-and-hold, Jensen's alpha and beta against the market, and sub-period stability —
the hedged mean return on ``subperiods`` consecutive equal slices of the one out-of-sample backtest (these
are slices of a single backtest, not walk-forward folds: nothing is re-selected per slice).
"""

from __future__ import annotations

import numpy as np

from gauntlet.stages import StageResult

NAME = "oos"


def subperiod_means(returns: np.ndarray, k: int) -> list[float]:
    """Mean of (T,) per-bar returns (NaN -> 0) on ``k`` consecutive equal slices."""
    r = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    return [float(seg.mean()) if seg.size else 0.0 for seg in np.array_split(r, max(k, 1))]


def run(ctx, cand, cfg, shared) -> StageResult:
    m, bh = cand.oos_result.metrics, ctx.buy_and_hold.metrics
    a, b = ctx.evaluation
    hedge = shared["oos_hedge"][cand.rank]
    subs = subperiod_means(hedge.hedged, cfg.subperiods)
    pos = np.nan_to_num(cand.position[a:b])
    varies = bool(np.ptp(pos) > 0)
    ok_trades = m.n_trades >= cfg.min_trades
    passed = ok_trades and varies
    excess = m.total_return - bh.total_return
    summary = (f"return {m.total_return:+.2%} vs buy-and-hold {bh.total_return:+.2%} (excess {excess:+.2%}), "
               f"Sharpe {m.sharpe:.2f} (B&H {bh.sharpe:.2f}), beta {hedge.beta:+.2f}, {m.n_trades} trades")
    if not varies:
        reason = f"constant position: beta, not a strategy ({summary})"
    elif not ok_trades:
        reason = f"{m.n_trades} trades < {cfg.min_trades} required ({summary})"
    else:
        reason = summary
    return StageResult(NAME, "annualised Sharpe", float(m.sharpe), None, None, passed, reason, {
        "metrics": m.to_dict(), "buy_and_hold": bh.to_dict(), "excess_return": excess,
        "alpha_per_bar": hedge.alpha, "beta": hedge.beta, "exposure_mean": float(np.mean(pos)),
        "subperiod_alpha_per_bar": subs, "subperiod_positive_share": float(np.mean([x > 0 for x in subs])),
        "rows": list(ctx.evaluation), "overlaps_in_sample": ctx.overlap,
        "first": str(ctx.bars["open_time"][a]), "n_bars": b - a})
