"""Return factors every app scores strategies against (a kernel contract: the Forge's fitness and the
Gauntlet's edge-kind stage must use the same definition).

The market factor is buy-and-hold's per-bar gross return ``m``.  The volatility-managed market
(Moreira & Muir 2017, "Volatility-Managed Portfolios", J. of Finance 72(4), eq. 1) holds the market with
exposure inversely proportional to its recent variance::

    v_t = (c / sigma2_t) m_t,      sigma2_t = EWMA of m_s^2 over s < t (past bars only),

with the EWMA's half-life ``HALF_LIFE_BARS`` bars (Moreira & Muir use the previous month's realised
variance of daily returns; on 1-minute bars a one-hour half-life tracks the intraday volatility clusters a
timing rule reads, and is the half-life of ``forge.causal.vol_standardized``).  ``c`` scales v to the
market's own standard deviation on the same bars (Moreira & Muir's normalisation); as a regressor its scale
changes no intercept, only the slope's units.  A strategy whose alpha against the market vanishes once v
is a regressor earns the volatility-timing premium, not a directional prediction.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HALF_LIFE_BARS", "VARIANCE_FLOOR", "factor_alpha", "vol_managed_market"]

HALF_LIFE_BARS = 60.0
"""Half-life, in bars, of the EWMA variance that sets the volatility-managed market's exposure."""

VARIANCE_FLOOR = 1e-3
"""sigma2_t is floored at this fraction of the mean squared market return, so a run of flat bars (zero
variance) gives a large but finite exposure instead of a division by zero."""


def vol_managed_market(market: np.ndarray, half_life: float = HALF_LIFE_BARS) -> np.ndarray:
    """The volatility-managed market of per-bar returns ``market``.

    market: (n,) float64 per-bar simple returns (NaN -> 0).  half_life: EWMA half-life in bars (> 0).
    returns (n,) float64 v with v_t = c m_t / sigma2_t, sigma2_t the bias-corrected EWMA (weights
    0.5^(k / half_life), k = 1, 2, ... bars back) of m_s^2 over s < t only; v_0 = 0 (no past bar); c makes
    std(v) = std(m) (v = 0 when the market is flat).  raises ValueError for a non-1-D input or half_life <= 0.
    """
    from scipy.signal import lfilter

    m = np.nan_to_num(np.asarray(market, dtype=np.float64))
    if m.ndim != 1:
        raise ValueError(f"market returns must be 1-D, got shape {m.shape}")
    if not half_life > 0:
        raise ValueError(f"half_life must be > 0 bars, got {half_life}")
    n = m.shape[0]
    v = np.zeros(n)
    if n < 2:
        return v
    lam = 0.5 ** (1.0 / half_life)
    num = lfilter([1.0], [1.0, -lam], m * m)  # sum_{s <= t} lam^(t - s) m_s^2
    den = lfilter([1.0], [1.0, -lam], np.ones(n))
    sigma2 = np.empty(n)
    sigma2[0] = np.nan
    sigma2[1:] = num[:-1] / den[:-1]  # bar t sees bars s < t only
    mean_sq = float(np.mean(m * m))
    if mean_sq <= 0.0:
        return v
    raw = np.zeros(n)
    raw[1:] = m[1:] / np.maximum(sigma2[1:], VARIANCE_FLOOR * mean_sq)
    sd_raw, sd_m = float(np.std(raw)), float(np.std(m))
    return raw * (sd_m / sd_raw) if sd_raw > 0.0 else v


def factor_alpha(returns: np.ndarray, factors: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """OLS of per-bar returns on a constant and factors (plain least squares, no inference).

    returns: (n,) float64; factors: (n, k) float64.  returns (alpha per bar, (k,) loadings, (n,) residuals).
    A rank-deficient design (a flat factor) is solved by least squares' minimum-norm solution.
    """
    y = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    f = np.nan_to_num(np.asarray(factors, dtype=np.float64)).reshape(y.shape[0], -1)
    x = np.column_stack([np.ones(y.shape[0]), f])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(coef[0]), coef[1:], y - x @ coef
