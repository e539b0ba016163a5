"""Probability of Backtest Overfitting by Combinatorially Symmetric Cross-Validation (Bailey, Borwein,
López de Prado & Zhu 2017, "The Probability of Backtest Overfitting", J. of Computational Finance 20(4)).

Defined over the matrix of all trials on the data where the selection happened: the in-sample,
net-of-cost, market-hedged returns of the run's evaluated genomes (hall of fame plus a seeded sample of
``evaluated.jsonl``), summed per hour, split into S blocks; each of the C(S, S/2) splits picks the best
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
    reason = (f"PBO {res.pbo:.2f} {'<' if passed else '>='} {cfg.pbo_threshold} over {res.n_strategies} in-sample "
              f"trials, {res.n_splits:,} CSCV splits of {res.n_blocks} blocks")
    return StageResult(NAME, "PBO", res.pbo, None, cfg.pbo_threshold, passed, reason,
                       {"pbo": res.pbo, "n_splits": res.n_splits, "n_blocks": res.n_blocks,
                        "n_strategies": res.n_strategies, "logit_mean": float(res.logits.mean())})
