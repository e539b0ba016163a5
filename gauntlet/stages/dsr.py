"""In-sample Deflated Sharpe Ratio of the selection (Bailey & López de Prado 2014, "The Deflated Sharpe
Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality", J. of Portfolio Management
40(5), eq. 1-2).

The deflation belongs where the selection happened: the candidate's in-sample Sharpe (net of the run's
costs, hedged against the market) is tested against SR0 = sqrt(V) ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e))),
the expected maximum Sharpe of N effective independent trials with no skill. N is the number of clusters
of ALL the run's contending trials (López de Prado 2019, J. of Financial Data Science 1(1): trials clustered
on the correlation of their in-sample returns; ``RunContext.in_sample_trials``; fee-burning trials whose
in-sample loss is significant are not contenders) times the surrogate's screening ratio (bred candidates
per full evaluation, from ``generations.jsonl``): the formula and its justification are in
``gauntlet.stats.effective_trials``.

V is the sampling variance of a per-bar Sharpe estimate under the null, (1 - g3 SR + (g4 - 1)/4 SR^2) / (T - 1)
(Mertens 2002; Bailey & López de Prado 2012, eq. 6), evaluated at SR = 0. Bailey & López de Prado estimate it
by the trials' cross-sectional Sharpe variance, which is the same quantity only when the trials differ by
luck alone; in a GP search they do not — fee-burning degenerates sit far below the rest and many variants of
one real edge sit above it — so that estimate counts real differences as luck and made SR0 exceed the
Sharpe of a planted, after-cost edge found by evolution (measured: DSR 0.00 for OOS net Sharpe 0.073/bar).
With no skill every trial's true Sharpe is <= 0 after costs, so the maximum of N noisy estimates is bounded
by the maximum of their sampling noise, which is what SR0 uses. The cross-sectional variant is reported
(``dsr_cross_sectional``) as a diagnostic. With one trial (no search, e.g. a hand-written rule) no selection
happened and the stage does not apply (as PBO): its in-sample PSR(0) is reported, and the out-of-sample
``psr`` stage is the test.
"""

from __future__ import annotations

import numpy as np

from gauntlet.stages import StageResult, holdout_report_only
from gauntlet.stats import deflated_sharpe_ratio

NAME = "dsr"


def run(ctx, cand, cfg, shared) -> StageResult:
    if ctx.holdout:
        own = _run(ctx, cand, cfg, shared) if shared["trials"] is not None and cand.is_result is not None else None
        return holdout_report_only(NAME, "DSR", cfg.dsr_threshold, own, cand, shared)
    return _run(ctx, cand, cfg, shared)


def _run(ctx, cand, cfg, shared) -> StageResult:
    trials = shared["trials"]
    if cand.is_result is None:
        return StageResult(NAME, "DSR", None, None, cfg.dsr_threshold, False, "no in-sample bars to deflate", {})
    hedged = ctx.hedged(cand.is_result, ctx.in_sample).hedged
    n_obs = max(int(np.isfinite(hedged).sum()), 2)
    var_null = 1.0 / (n_obs - 1)  # Mertens' variance at SR = 0: the skew and kurtosis terms vanish
    n_dsr = shared.get("n_trials_dsr", trials.n_effective)  # + other runs' trials on these bars (trial ledger)
    d = deflated_sharpe_ratio(hedged, n_dsr, var_null)
    cross = deflated_sharpe_ratio(hedged, n_dsr, max(trials.var_sharpe, var_null))
    ledger = shared.get("ledger")
    if shared["n_trials_total"] <= 1 and (ledger is None or ledger.other_trials == 0):
        return StageResult(NAME, "DSR", None, None, cfg.dsr_threshold, True,
                           f"not applicable: one trial, no selection to deflate (in-sample PSR(0) {d['psr0']:.3f})",
                           {**d, "n_trials_total": shared["n_trials_total"], "var_sharpe_null": var_null})
    passed = d["dsr"] >= cfg.dsr_threshold
    reason = (f"in-sample DSR {d['dsr']:.3f} {'>=' if passed else '<'} {cfg.dsr_threshold} (hedged net Sharpe "
              f"{d['sharpe']:.4f}/bar vs expected max of N = {n_dsr:.4g} effective no-skill trials "
              f"{d['sr0']:.4f}; {trials.n_clusters} clusters of contenders x screening {trials.screening_ratio:.2f}"
              + (f"; {ledger.line()}" if ledger is not None else "") + ")")
    return StageResult(NAME, "DSR", d["dsr"], None, cfg.dsr_threshold, passed, reason, {
        **d, "sample": "in-sample, net of costs, market-hedged", "n_trials_total": shared["n_trials_total"],
        "n_trials_distinct": trials.n_raw, "n_trials_effective": trials.n_effective, "n_trials_dsr": n_dsr,
        "n_clusters": trials.n_clusters, "n_dominated": trials.n_dominated, "screening_ratio": trials.screening_ratio,
        "ledger": ledger.to_dict() if ledger is not None else None, "var_sharpe_null": var_null,
        "var_sharpe_trials": trials.var_sharpe, "dsr_cross_sectional": cross["dsr"],
        "sr0_cross_sectional": cross["sr0"]})
