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

Verdict with the paper's companion statistic (Bailey et al. 2017, section 2.3: PBO, performance degradation,
probability of loss). PBO measures whether the in-sample ranking carries over out of sample; when the
representatives are variants of one real edge (the common case of a small search that found something:
different windows or holding rules around the same signal, correlated < ``trial_max_correlation`` on hourly
P&L because the edge is small beside the noise), their out-of-sample ranks are noise and PBO is ~0.5 or
above whatever the edge — the selection among near-equals adds nothing, but what it selects is still good. The
paper's probability of loss, the share of splits whose in-sample best has a test-half Sharpe <= 0, tells the
two apart: a pool with no skill has its in-sample best lose in about half the test halves (more net of costs),
a pool of profitable variants rarely. So the stage fails (overfit) only when PBO >= ``pbo_threshold`` AND the
probability of loss >= ``pbo_loss_threshold`` (0.2). Measured on pure-noise pools (t(4) hourly P&L, 100-400
hours, 16 blocks, 150 pools per cell; the verdict rule is tested in ``tests/test_gauntlet_pbo.py``): among the pools whose PBO >= 0.5, the
probability of loss falls below 0.2 in 2.8-6.2 % with 3 representatives and 0 % with 8 or 20, so the relief
almost never reaches a no-skill search; pools of eight profitable variants (hourly Sharpe 0.15) stay below it in
94 % of their PBO >= 0.5 cases. The stage is a threshold stage: it can only lower the Gauntlet's false-pass
level, never raise it above the hypothesis tests' sizes. Junk (dominated) trials are out before CSCV, so they
move neither statistic.
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
    ranks_ok = res.pbo < cfg.pbo_threshold
    profitable = res.prob_loss < cfg.pbo_loss_threshold
    passed = ranks_ok or profitable
    verdict = (f"PBO {res.pbo:.2f} {'<' if ranks_ok else '>='} {cfg.pbo_threshold}, probability of loss "
               f"{res.prob_loss:.2f} {'<' if profitable else '>='} {cfg.pbo_loss_threshold}")
    if not ranks_ok and profitable:
        verdict += " (the in-sample ranks do not carry over, but the in-sample best stays profitable: variants of one edge)"
    reason = (f"{verdict} over {res.n_strategies} cluster representatives of the contending in-sample trials, "
              f"{res.n_splits:,} CSCV splits of {res.n_blocks} blocks")
    slope, icpt = res.degradation
    return StageResult(NAME, "PBO", res.pbo, None, cfg.pbo_threshold, passed, reason,
                       {"pbo": res.pbo, "n_splits": res.n_splits, "n_blocks": res.n_blocks,
                        "n_strategies": res.n_strategies, "logit_mean": float(res.logits.mean()),
                        "prob_loss": res.prob_loss, "loss_threshold": cfg.pbo_loss_threshold,
                        "degradation_slope": slope, "degradation_intercept": icpt,
                        "oos_sharpe_of_selected_mean": float(res.oos_sharpe.mean()),
                        "is_sharpe_of_selected_mean": float(res.is_sharpe.mean()),
                        "rule": "overfit when PBO >= pbo_threshold and probability of loss >= pbo_loss_threshold "
                                "(Bailey, Borwein, Lopez de Prado & Zhu 2017, section 2.3)"})
