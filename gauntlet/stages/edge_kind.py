"""What kind of edge a candidate has: *directional* or *risk timing* (a label; not gating by default).

Holding more of a drifting market when its volatility is low raises the Sharpe ratio with no prediction of
the direction of any return: volatility-managed exposure earns a known premium (Moreira & Muir 2017,
"Volatility-Managed Portfolios", J. of Finance 72(4)).  Such a rule has alpha against the market, so the
market-hedged tests (psr, permutation) can pass it, but it is not the directional skill the verdict
claims.  This stage regresses the candidate's net per-bar returns on the evaluation range

1. on the market m (buy-and-hold's gross return): r = a_1 + b m + e (Jensen 1968), and
2. on the market and the volatility-managed market v (``forge.core.factors.vol_managed_market``: exposure
   proportional to 1 / an EWMA of past squared 1-minute market returns, half-life
   ``forge.core.factors.HALF_LIFE_BARS`` bars, scaled to the market's sd): r = a_2 + b m + c v + e,

and tests each intercept > 0 with Newey–West HAC standard errors (Newey & West 1987, statsmodels
``OLS.fit(cov_type="HAC")``, lags ``gauntlet.stats.newey_west_lags``; one-sided, level ``alpha``).

One volatility-managed market spans the timing rules built on its own variance estimate, not all of them: a
rule with a sharper estimate (a shorter half-life, a GARCH forecast) or a capped exposure min(1, k / s^2)
keeps alpha against both factors (measured: 5 of 11 such GARCH vol-timers with significant market alpha,
benchmarks/RESULTS.md).  So *directional* also needs the position to predict the direction: the slope d of
m_t = c + d x_t + u (x_t the exposure held during bar t, decided at the previous close) is > 0 (HAC t-test,
``gauntlet.stats.hac_ols``).  mean(r) = mean(x) mean(m) + cov(x, m): a rule that only sizes a drifting
market by its past volatility has E[m_t | past] = mu whatever x_t is, so d = 0 and this test is at its
size under that null (the HAC errors absorb the heteroskedasticity the vol-timer's exposure creates),
however the volatility is estimated; the market-hedged alpha it earns is the mean(x) mean(m) term.

Label: **directional** when both intercepts are significant (alpha the volatility-managed market does not
explain) and so is the timing slope d; **risk timing** when a_1 is significant and either of the others is
not (the alpha is the volatility-timing premium, or comes with no directional prediction); **no alpha** when
a_1 is not significant.  A candidate must pass all three tests to be directional (intersection-union,
Berger 1982), so the label's false "directional" rate is at most ``alpha``.  The stage passes on *directional*; ``gauntlet validate`` publishes only directional
survivors unless ``--allow-risk-timing``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from forge.core.factors import HALF_LIFE_BARS, vol_managed_market
from gauntlet.stages import StageResult
from gauntlet.stats import hac_ols, newey_west_lags

NAME = "edge_kind"
DIRECTIONAL, RISK_TIMING, NO_ALPHA = "directional", "risk timing", "no alpha"
LABELS = (DIRECTIONAL, RISK_TIMING, NO_ALPHA)

__all__ = ["DIRECTIONAL", "EdgeKind", "LABELS", "NAME", "NO_ALPHA", "RISK_TIMING", "classify_edge", "run"]


@dataclass(frozen=True)
class EdgeKind:
    """label: one of LABELS; alpha_market / alpha_both: per-bar intercepts against the market alone and
    against market + volatility-managed market; t_* and p_* their HAC t-statistics and one-sided p-values;
    beta_market, beta_managed: the two-factor loadings; timing_slope, t_timing, p_timing: the slope of the
    market return on the exposure held (NaN, p 1.0 when no exposure was given or it is constant); lags:
    Newey–West lags; n_obs: bars."""

    label: str
    alpha_market: float
    t_market: float
    p_market: float
    alpha_both: float
    t_both: float
    p_both: float
    beta_market: float
    beta_managed: float
    timing_slope: float
    t_timing: float
    p_timing: float
    lags: int
    n_obs: int

    def to_dict(self) -> dict[str, float | int | str]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(self).items()}


def _intercept(y: np.ndarray, x: np.ndarray, lags: int) -> tuple[float, float, float, np.ndarray]:
    """(intercept, HAC t, one-sided p of intercept > 0, slopes) of OLS y ~ 1 + x."""
    import statsmodels.api as sm

    fit = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    a, se = float(fit.params[0]), float(fit.bse[0])
    t = a / se if se > 0 and math.isfinite(se) else 0.0
    return a, t, float(stats.norm.sf(t)), np.asarray(fit.params[1:], dtype=np.float64)


def classify_edge(returns: np.ndarray, market: np.ndarray, exposure: np.ndarray | None, alpha: float = 0.05, *,
                  managed: np.ndarray | None = None, half_life: float = HALF_LIFE_BARS) -> EdgeKind:
    """Label per-bar net returns as directional, risk timing or no alpha (see the module docstring).

    returns, market: (T,) float64 per-bar simple returns on the same bars (NaN -> 0); exposure: (T,) float64
    the position held during each bar (decided at the previous close), or None (then never directional);
    managed: (T,) float64 the volatility-managed market of those bars (default ``vol_managed_market(market,
    half_life)``, from the market's own past); alpha: one-sided level of each test.
    returns EdgeKind.  raises ValueError when the shapes differ, with fewer than 30 bars or a flat market.
    """
    r = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    m = np.nan_to_num(np.asarray(market, dtype=np.float64))
    if r.shape != m.shape or r.ndim != 1:
        raise ValueError(f"returns {r.shape} and market {m.shape} must be equal 1-D shapes")
    if r.size < 30:
        raise ValueError(f"edge kind needs >= 30 bars, got {r.size}")
    if not np.std(m) > 0:
        raise ValueError("the market is flat: no factor to regress on")
    v = vol_managed_market(m, half_life) if managed is None else np.nan_to_num(np.asarray(managed, np.float64))
    if v.shape != m.shape:
        raise ValueError(f"managed {v.shape} and market {m.shape} returns differ in shape")
    lags = newey_west_lags(r.size)
    a1, t1, p1, _ = _intercept(r, m[:, None], lags)
    a2, t2, p2, b = _intercept(r, np.column_stack([m, v]), lags)
    d, td, pd = math.nan, 0.0, 1.0
    if exposure is not None:
        x = np.nan_to_num(np.asarray(exposure, dtype=np.float64))
        if x.shape != m.shape:
            raise ValueError(f"exposure {x.shape} and market {m.shape} differ in shape")
        if np.std(x) > 0:
            h = hac_ols(m, x, lags=lags)
            d, td, pd = h.coef, h.t, h.p_one_sided
    if p1 <= alpha and p2 <= alpha and pd <= alpha:
        label = DIRECTIONAL
    elif p1 <= alpha:
        label = RISK_TIMING
    else:
        label = NO_ALPHA
    return EdgeKind(label, a1, t1, p1, a2, t2, p2, float(b[0]), float(b[1]), d, td, pd, lags, int(r.size))


def run(ctx, cand, cfg, shared) -> StageResult:
    a, b = ctx.evaluation
    # the managed market's EWMA is warmed on every bar before the evaluation range (past bars only)
    managed = vol_managed_market(ctx.market_returns((0, b)))[a:b]
    res = cand.oos_result
    try:
        ek = classify_edge(res.returns, ctx.market_returns(ctx.evaluation), res.position_held, cfg.alpha,
                           managed=managed)
    except ValueError as exc:
        return StageResult(NAME, "edge kind", None, None, cfg.alpha, False, f"no label: {exc}", {"label": NO_ALPHA})
    passed = ek.label == DIRECTIONAL
    reason = (f"{ek.label}: net alpha vs market {ek.alpha_market:+.2e}/bar (HAC t {ek.t_market:+.2f}, p "
              f"{ek.p_market:.3g}), vs market + vol-managed market {ek.alpha_both:+.2e}/bar (t {ek.t_both:+.2f}, "
              f"p {ek.p_both:.3g}, loading {ek.beta_managed:+.2f}); position predicts the market: slope t "
              f"{ek.t_timing:+.2f}, p {ek.p_timing:.3g}; level {cfg.alpha}, half-life "
              f"{HALF_LIFE_BARS:g} bars")
    return StageResult(NAME, "HAC p of alpha vs market + vol-managed market", ek.p_both, ek.p_both, cfg.alpha,
                       passed, reason, {**ek.to_dict(), "half_life_bars": HALF_LIFE_BARS,
                                        "source": "Moreira & Muir 2017; Newey & West 1987"})
