"""Probabilistic and Deflated Sharpe Ratio with the effective number of independent trials
(Bailey & López de Prado 2014; trials clustered as in López de Prado 2019)."""

from __future__ import annotations

from gauntlet.stages import StageResult
from gauntlet.stats import deflated_sharpe_ratio

NAME = "dsr"


def run(ctx, cand, cfg, shared) -> StageResult:
    trials = shared["trials"]
    n_obs = cand.oos_result.returns.shape[0]
    # trials cannot be more concentrated than the estimation noise of a per-bar Sharpe (~1/T)
    var = max(trials.var_sharpe, 1.0 / max(n_obs - 1, 1))
    d = deflated_sharpe_ratio(cand.oos_result.returns, trials.n_effective, var)
    passed = d["dsr"] >= cfg.dsr_threshold
    reason = (f"DSR {d['dsr']:.3f} {'>=' if passed else '<'} {cfg.dsr_threshold} (per-bar SR {d['sharpe']:.4f} vs "
              f"expected max of {trials.n_effective} effective trials {d['sr0']:.4f}; PSR(0) {d['psr0']:.3f})")
    return StageResult(NAME, "DSR", d["dsr"], None, cfg.dsr_threshold, passed, reason, {
        **d, "n_trials_raw": shared["n_trials_total"], "n_trials_sampled": trials.n_raw,
        "n_trials_effective": trials.n_effective, "var_sharpe_trials": trials.var_sharpe,
        "var_sharpe_used": var})
