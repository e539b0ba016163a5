"""Out-of-sample Probabilistic Sharpe Ratio against 0, Holm-adjusted over the hall of fame.

No max-over-N selection happens out of sample: the hall of fame was fixed in-sample, and only its members
are tested here. So the test is the PSR against a zero benchmark (Bailey & López de Prado 2012, "The
Sharpe Ratio Efficient Frontier", J. of Risk 15(2), eq. 8: PSR = Phi((SR - 0) sqrt(T - 1) /
sqrt(1 - g3 SR + (g4 - 1)/4 SR^2))), one-sided p = 1 - PSR, with Holm's (1979) step-down adjustment over the
distinct candidates actually tested (family-wise error over the run). The returns tested are the
candidate's net out-of-sample returns hedged against buy-and-hold of the same bars (Jensen's alpha), so a
strategy that only holds the market has nothing to show. The selection's own deflation lives in-sample, in
the ``dsr`` stage.
"""

from __future__ import annotations

import dataclasses

from forge.backtest import run_backtest
from gauntlet.stages import StageResult
from gauntlet.stats import market_hedged, psr_pvalue

NAME = "psr"


def run(ctx, cand, cfg, shared) -> StageResult:
    hedge = shared["oos_hedge"][cand.rank]
    p_raw, d = psr_pvalue(hedge.hedged)
    # diagnostic: the same test before costs, where a no-skill null is exact (net of costs it is conservative)
    o, c, t = ctx.arrays(ctx.evaluation)
    gross = dataclasses.replace(ctx.backtest, taker_fee_bps=0.0, slippage_bps=0.0)
    a, b = ctx.evaluation
    p_gross = psr_pvalue(market_hedged(run_backtest(o, c, t, cand.position[a:b], gross).returns,
                                       ctx.market_returns(ctx.evaluation)).hedged)[0]
    p_holm = shared["psr_holm"][cand.rank]
    m = shared["psr_family"]
    passed = p_holm <= cfg.alpha and d["sharpe"] > 0
    reason = (f"hedged OOS Sharpe {d['sharpe']:+.4f}/bar over {d['n_obs']:,} bars (alpha {hedge.alpha:+.2e}/bar, "
              f"beta {hedge.beta:+.2f}): PSR(0) {d['psr0']:.3f}, Holm p {p_holm:.3g} over {m} candidate"
              f"{'s' if m != 1 else ''} {'<=' if passed else '>'} {cfg.alpha}")
    return StageResult(NAME, "Holm-adjusted p of PSR(0)", p_holm, p_holm, cfg.alpha, passed, reason, {
        **d, "p_raw": p_raw, "p_gross": p_gross, "p_holm": p_holm, "holm_family": m, "alpha_per_bar": hedge.alpha, "beta": hedge.beta})
