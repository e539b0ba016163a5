"""Out-of-sample / walk-forward stage: metrics on bars evolution never read, next to buy-and-hold."""

from __future__ import annotations

import numpy as np

from gauntlet.stages import StageResult
from gauntlet.stats import sharpe_per_bar

NAME = "oos"


def fold_sharpes(returns: np.ndarray, folds: int, periods_per_year: float) -> list[float]:
    """Annualised Sharpe of ``folds`` consecutive equal segments of (T,) per-bar returns."""
    if folds <= 0:
        return []
    return [sharpe_per_bar(seg) * float(np.sqrt(periods_per_year)) for seg in np.array_split(returns, folds)]


def run(ctx, cand, cfg, shared) -> StageResult:
    m, bh = cand.oos_result.metrics, ctx.buy_and_hold.metrics
    folds = fold_sharpes(cand.oos_result.returns, cfg.walk_forward_folds, ctx.backtest.periods_per_year)
    pos_share = float(np.mean([f > 0 for f in folds])) if folds else 1.0
    ok_trades = m.n_trades >= cfg.min_trades
    ok_sharpe = m.sharpe > 0
    ok_folds = pos_share >= cfg.min_positive_folds
    passed = ok_trades and ok_sharpe and ok_folds
    if not ok_trades:
        reason = f"{m.n_trades} trades < {cfg.min_trades} required"
    elif not ok_sharpe:
        reason = f"out-of-sample Sharpe {m.sharpe:.2f} <= 0"
    elif not ok_folds:
        reason = f"only {pos_share:.0%} of {len(folds)} walk-forward folds have Sharpe > 0"
    else:
        reason = (f"Sharpe {m.sharpe:.2f} (B&H {bh.sharpe:.2f}), return {m.total_return:+.2%} "
                  f"(B&H {bh.total_return:+.2%}), {m.n_trades} trades")
    return StageResult(NAME, "annualised Sharpe", float(m.sharpe), None, 0.0, passed, reason, {
        "metrics": m.to_dict(), "buy_and_hold": bh.to_dict(), "fold_sharpes": folds,
        "positive_fold_share": pos_share, "rows": list(ctx.evaluation), "overlaps_in_sample": ctx.overlap,
        "first": str(ctx.bars["open_time"][ctx.evaluation[0]]), "n_bars": ctx.evaluation[1] - ctx.evaluation[0]})
