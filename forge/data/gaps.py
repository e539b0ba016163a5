"""Gap bookkeeping shared by features, the VM wrapper, the backtester, the causal tests and the gauntlet.

A *gap* is any step between consecutive bars that is not exactly one bar
(``BAR_MS``).  Nothing may bridge a gap: rolling windows restart after one.
"""

from __future__ import annotations

import numpy as np

from forge.data.schema import BAR_MS


def segment_ids(open_time: np.ndarray, bar_ms: int = BAR_MS) -> np.ndarray:
    """Contiguous-segment id per bar.

    open_time: (n,) int64, ms since epoch, strictly increasing.
    returns: (n,) int64, 0 for the first segment, +1 after every gap.
    """
    t = np.asarray(open_time, dtype=np.int64)
    if t.size == 0:
        return np.zeros(0, dtype=np.int64)
    brk = np.diff(t) != bar_ms
    return np.concatenate(([0], np.cumsum(brk))).astype(np.int64)


def bars_since_gap(open_time: np.ndarray, bar_ms: int = BAR_MS) -> np.ndarray:
    """Bars elapsed since the start of the current contiguous segment.

    open_time: (n,) int64, ms since epoch, strictly increasing.
    returns: (n,) int64; 0 at the first bar and at the first bar after each
    gap, then 1, 2, ...  A value computed with a lookback of L bars (L bars
    of history *before* the current one) is valid only where the result >= L.
    """
    t = np.asarray(open_time, dtype=np.int64)
    n = t.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(n, dtype=np.int64)
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    starts[1:] = np.diff(t) != bar_ms
    start_idx = np.maximum.accumulate(np.where(starts, idx, 0))
    return idx - start_idx


def forward_returns(close: np.ndarray, open_time: np.ndarray, horizon: int = 1) -> np.ndarray:
    """Forward log return over ``horizon`` bars.

    close: (n,) float64 > 0; open_time: (n,) int64 ms.  returns: (n,)
    float64, y[t] = log(close[t + horizon] / close[t]); NaN where t +
    horizon is past the end or a gap lies between t and t + horizon.
    raises ValueError if horizon < 1 or the shapes differ.
    """
    close = np.asarray(close, dtype=np.float64)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 bar, got {horizon}")
    if close.shape != np.shape(open_time) or close.ndim != 1:
        raise ValueError(f"close and open_time must be (n,) arrays of equal length, got {close.shape} "
                         f"and {np.shape(open_time)}")
    n = close.shape[0]
    out = np.full(n, np.nan)
    if n > horizon:
        seg = segment_ids(np.asarray(open_time, dtype=np.int64))
        same = seg[horizon:] == seg[:-horizon]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:-horizon] = np.where(same, np.log(close[horizon:] / close[:-horizon]), np.nan)
    return out


def realised_returns(close: np.ndarray, open_time: np.ndarray) -> np.ndarray:
    """Log return realised during each bar: r[t] = log(close[t] / close[t-1]).

    close: (n,) float64 > 0; open_time: (n,) int64 ms. returns: (n,) float64, NaN at the
    first bar and at the first bar after every gap (``forward_returns`` shifted by one bar).
    """
    fwd = forward_returns(close, open_time)
    out = np.full(fwd.shape, np.nan)
    out[1:] = fwd[:-1]
    return out
