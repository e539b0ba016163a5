"""In-sample Deflated Sharpe Ratio of the selection (Bailey & López de Prado 2014, "The Deflated Sharpe
Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality", J. of Portfolio Management
40(5), eq. 1-2).

The deflation belongs where the selection happened: the candidate's in-sample Sharpe is tested against
SR0, the expected maximum Sharpe of N effective independent null trials (López de Prado 2019: trials
clustered on the correlation of their returns), with V[SR] the trials' cross-sectional Sharpe variance.
Trials are the run's evaluated genomes on the in-sample bars, net of the same costs as the candidate and
hedged against the market (``RunContext.in_sample_trials``). V[SR] is the upper semivariance about the
median (the expected maximum depends on the upper tail; GP trials include fee-burning degenerates far below
the rest) and never less than the estimation variance of a per-bar Sharpe, 1/(T-1). With one trial (no
search, e.g. a hand-written rule) SR0 = 0 and the DSR is the in-sample PSR(0).
"""

from __future__ import annotations

from gauntlet.stages import StageResult
from gauntlet.stats import deflated_sharpe_ratio

NAME = "dsr"


def run(ctx, cand, cfg, shared) -> StageResult:
    trials = shared["trials"]
    if cand.is_result is None:
        return StageResult(NAME, "DSR", None, None, cfg.dsr_threshold, False, "no in-sample bars to deflate", {})
    hedged = ctx.hedged(cand.is_result, ctx.in_sample).hedged
    n_obs = hedged.shape[0]
    var = max(trials.var_sharpe, 1.0 / max(n_obs - 1, 1))
    d = deflated_sharpe_ratio(hedged, trials.n_effective, var)
    passed = d["dsr"] >= cfg.dsr_threshold
    reason = (f"in-sample DSR {d['dsr']:.3f} {'>=' if passed else '<'} {cfg.dsr_threshold} (hedged net Sharpe "
              f"{d['sharpe']:.4f}/bar vs expected max of {trials.n_effective} effective trials {d['sr0']:.4f})")
    return StageResult(NAME, "DSR", d["dsr"], None, cfg.dsr_threshold, passed, reason, {
        **d, "sample": "in-sample, net of costs, market-hedged", "n_trials_total": shared["n_trials_total"],
        "n_trials_distinct": trials.n_raw, "n_trials_effective": trials.n_effective,
        "var_sharpe_trials": trials.var_sharpe, "var_sharpe_used": var})
