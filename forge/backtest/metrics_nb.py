"""numba kernels of the per-bar metrics of an equity curve (wrappers: :mod:`forge.backtest.metrics`).

Used by the Crucible (slot scores, the CWO's exponentiated-gradient scores, shadow challengers) inside
its own numba kernels, so they are plain ``@njit(cache=True)`` functions of one (n,) float64 array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["sharpe_per_bar_of_equity_nb", "drawdown_from_peak_nb"]


@njit(cache=True)
def sharpe_per_bar_of_equity_nb(e: np.ndarray) -> float:
    """Per-bar Sharpe of equity marks e (n,) float64 (USDT, oldest first): mean / std (ddof=1) of the simple
    returns e[i] / e[i-1] - 1; 0.0 for fewer than 3 marks, zero variance, or any mark but the last <= 0."""
    n = e.shape[0]
    if n < 3:
        return 0.0
    for i in range(n - 1):
        if e[i] <= 0.0:
            return 0.0
    m = 0.0
    for i in range(1, n):
        m += e[i] / e[i - 1] - 1.0
    m /= n - 1
    ss = 0.0
    for i in range(1, n):
        d = e[i] / e[i - 1] - 1.0 - m
        ss += d * d
    sd = np.sqrt(ss / (n - 2))
    return m / sd if sd > 0.0 else 0.0


@njit(cache=True)
def drawdown_from_peak_nb(e: np.ndarray) -> float:
    """Current drawdown of equity marks e (n,) float64: 1 - e[-1] / max(e), a fraction (0.0 for n = 0,
    1.0 when the peak is <= 0)."""
    n = e.shape[0]
    if n == 0:
        return 0.0
    peak = e[0]
    for i in range(1, n):
        if e[i] > peak:
            peak = e[i]
    return 1.0 - e[n - 1] / peak if peak > 0.0 else 1.0
