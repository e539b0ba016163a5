"""Bid-ask half-spread of kline bars: the Corwin & Schultz (2012) high-low estimator.

Corwin, S. A. and Schultz, P. (2012), "A Simple Way to Estimate Bid-Ask Spreads from Daily High and Low
Prices", *Journal of Finance* 67(2), 719-760.  For two consecutive bars with highs H1, H2 and lows L1, L2:

    beta  = ln(H1/L1)^2 + ln(H2/L2)^2
    gamma = ln(max(H1, H2) / min(L1, L2))^2
    alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2))      (eq. 18)
    S     = 2 (e^alpha - 1) / (1 + e^alpha)                                                   (eq. 14)

S is the proportional spread (ask - bid) / mid.  Negative two-bar estimates are set to zero before
averaging (the paper's rule); the gap adjustment of sec. II.B shifts bar 2's range by the gap to bar 1's
close when bar 2 lies wholly above (below) it.  The estimate of bar t uses bars t-1 and t (known at the
close of t), averaged over the last ``window`` pairs; the half-spread is S / 2, floored at one tick.

Hand-worked check (tests/test_execution_fills.py): two bars with H = 101, L = 99 and no drift: beta =
2 x^2, gamma = x^2, x = ln(101/99); since 3 - 2 sqrt 2 = (sqrt 2 - 1)^2, alpha = x exactly, so
S = 2 (101/99 - 1) / (1 + 101/99) = 2 * 2 / 200 = 0.02 (bid 99, ask 101, mid 100) and the half-spread
is 0.01.
"""

from __future__ import annotations

import numpy as np

from forge.backtest.fills_nb import cs_two_bar_nb, half_spread_nb

__all__ = ["corwin_schultz_half_spread", "cs_two_bar"]


def cs_two_bar(h1: float, l1: float, h2: float, l2: float) -> float:
    """The two-bar spread estimate S (fraction of price, >= 0) of the module docstring.
    raises ValueError unless 0 < low <= high for both bars."""
    if not (0 < l1 <= h1 and 0 < l2 <= h2):
        raise ValueError(f"need 0 < low <= high, got bars ({h1}, {l1}), ({h2}, {l2})")
    return float(cs_two_bar_nb(float(h1), float(l1), float(h2), float(l2)))


def corwin_schultz_half_spread(high: np.ndarray, low: np.ndarray, close: np.ndarray, *, window: int = 20,
                               tick: float) -> np.ndarray:
    """Causal half-spread, a fraction of price, known at each bar's close.

    high, low, close: (n,) float64 quote per unit, 0 < low <= high; window: pairs averaged (>= 1);
    tick: price tick (quote, > 0), the floor is tick / close.  returns (n,) float64.
    raises ValueError on shapes, non-positive prices, high < low, window < 1 or tick <= 0.
    """
    h = np.ascontiguousarray(high, dtype=np.float64)
    lo = np.ascontiguousarray(low, dtype=np.float64)
    c = np.ascontiguousarray(close, dtype=np.float64)
    if h.ndim != 1 or h.shape != lo.shape or h.shape != c.shape:
        raise ValueError(f"high, low, close must be 1-D of one length, got {h.shape}, {lo.shape}, {c.shape}")
    if window < 1 or not tick > 0:
        raise ValueError(f"need window >= 1 and tick > 0, got window={window}, tick={tick}")
    if h.size and not (np.all(lo > 0) and np.all(h >= lo) and np.all(c > 0) and np.all(np.isfinite(h))):
        raise ValueError("prices must be finite, > 0, with low <= high")
    out = np.empty(h.shape[0])
    half_spread_nb(h, lo, c, int(window), float(tick), out)
    return out
