"""Probability of Backtest Overfitting by Combinatorially Symmetric Cross-Validation (Bailey, Borwein,
López de Prado & Zhu 2017, "The Probability of Backtest Overfitting", J. of Computational Finance 20(4)).

Defined over the trials that competed where the selection happened: the in-sample, net-of-cost,
market-hedged returns of ALL the run's evaluated genomes (hall of fame plus ``evaluated.jsonl``), summed
per hour, clustered by correlation, with one representative per cluster of *contending* trials
(``gauntlet.stats.effective_trials``): near-copies of one strategy are one strategy, and fee-burning
trials whose in-sample loss is significant — which no selection picks and which, left in, rank any
sensible strategy first in every split (200 of them drove a run's PBO to 0.00-0.01) — are left out.
Those representatives' hourly P&L is split into S blocks; each of the C(S, S/2) splits picks the best
trial by Sharpe on one half and records the logit of its relative rank on the other. PBO = share of
splits with logit <= 0. A run-level statistic: every candidate of the run shares it. With one distinct
trial no selection happened and the stage does not apply.
"""

from __future__ import annotations

from gauntlet.stages import StageResult, holdout_report_only

NAME = "pbo"


def run(ctx, cand, cfg, shared) -> StageResult:
    if ctx.holdout:
        own = _run(ctx, cand, cfg, shared) if shared.get("pbo") is not None else None
        return holdout_report_only(NAME, "PBO", cfg.pbo_threshold, own, cand, shared)
    return _run(ctx, cand, cfg, shared)


def _run(ctx, cand, cfg, shared) -> StageResult:
    res = shared.get("pbo")
    if res is None:
        return StageResult(NAME, "PBO", None, None, cfg.pbo_threshold, True,
                           f"not applicable: {shared.get('pbo_skip', 'fewer than 2 distinct trials')}", {})
    passed = res.pbo < cfg.pbo_threshold
    reason = (f"PBO {res.pbo:.2f} {'<' if passed else '>='} {cfg.pbo_threshold} over {res.n_strategies} cluster "
              f"representatives of the contending in-sample trials, {res.n_splits:,} CSCV splits of {res.n_blocks} blocks")
    return StageResult(NAME, "PBO", res.pbo, None, cfg.pbo_threshold, passed, reason,
                       {"pbo": res.pbo, "n_splits": res.n_splits, "n_blocks": res.n_blocks,
                        "n_strategies": res.n_strategies, "logit_mean": float(res.logits.mean())})
