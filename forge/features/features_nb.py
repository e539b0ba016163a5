"""Numba kernels of the base features (one O(n) pass each).

Every kernel takes ``bsg`` ((n,) int64 bars since the start of the current
contiguous segment, ``forge.data.gaps.bars_since_gap``) and never reads
across a segment start: state resets when ``bsg == 0`` and outputs are NaN
until the window has refilled.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def log_return_nb(close, bsg, k, out):
    """out[t] = log(close[t] / close[t-k]) if bsg[t] >= k else NaN."""
    for t in range(close.shape[0]):
        out[t] = np.log(close[t] / close[t - k]) if bsg[t] >= k else np.nan


@njit(cache=True)
def rolling_mean_std_nb(x, bsg, w, lookback, want_std, ddof, out):
    """Mean (want_std=False) or std (ddof) of x over the last w bars.

    Valid where bsg >= lookback and no NaN is in the window; computed
    directly per window (exact, O(n·w) with w <= 240).
    """
    n = x.shape[0]
    last_nan = -1
    for t in range(n):
        if np.isnan(x[t]):
            last_nan = t
        if bsg[t] < lookback or t - last_nan < w:
            out[t] = np.nan
            continue
        s = 0.0
        for i in range(t - w + 1, t + 1):
            s += x[i]
        m = s / w
        if not want_std:
            out[t] = m
            continue
        ss = 0.0
        for i in range(t - w + 1, t + 1):
            d = x[i] - m
            ss += d * d
        out[t] = np.sqrt(ss / (w - ddof))


@njit(cache=True)
def zscore_nb(x, bsg, w, out):
    """(x[t] - mean) / std (ddof=1) over the last w bars incl. t; 0 if std == 0."""
    n = x.shape[0]
    for t in range(n):
        if bsg[t] < w - 1:
            out[t] = np.nan
            continue
        s = 0.0
        for i in range(t - w + 1, t + 1):
            s += x[i]
        m = s / w
        ss = 0.0
        for i in range(t - w + 1, t + 1):
            d = x[i] - m
            ss += d * d
        sd = np.sqrt(ss / (w - 1))
        out[t] = 0.0 if sd == 0.0 else (x[t] - m) / sd


@njit(cache=True)
def wilder_rsi_nb(close, starts, period, out):
    """Wilder's RSI (0..100) of ``close``; ``starts[t]`` True resets the state.

    The first value appears after ``period`` changes (simple average seed),
    then Wilder smoothing: avg = (avg·(period-1) + x) / period.  100 when
    there are no losses (50 if no moves at all).  Wilder 1978.
    """
    n = close.shape[0]
    count = 0
    ag = 0.0
    al = 0.0
    for t in range(n):
        if starts[t]:
            count = 0
            ag = 0.0
            al = 0.0
            out[t] = np.nan
            continue
        d = close[t] - close[t - 1]
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        count += 1
        if count <= period:
            ag += g
            al += lo
            if count < period:
                out[t] = np.nan
                continue
            ag /= period
            al /= period
        else:
            ag = (ag * (period - 1) + g) / period
            al = (al * (period - 1) + lo) / period
        if al == 0.0:
            out[t] = 50.0 if ag == 0.0 else 100.0
        else:
            out[t] = 100.0 - 100.0 / (1.0 + ag / al)


@njit(cache=True)
def wilder_atr_nb(high, low, close, bsg, period, out):
    """Wilder's ATR of the true range, divided by close (dimensionless).

    True range needs the previous close, so the first bar of a segment has
    none; the first ATR is the mean of ``period`` true ranges.  Wilder 1978.
    """
    n = close.shape[0]
    count = 0
    atr = 0.0
    for t in range(n):
        if bsg[t] == 0:
            count = 0
            atr = 0.0
            out[t] = np.nan
            continue
        pc = close[t - 1]
        tr = max(high[t] - low[t], abs(high[t] - pc), abs(low[t] - pc))
        count += 1
        if count <= period:
            atr += tr
            if count < period:
                out[t] = np.nan
                continue
            atr /= period
        else:
            atr = (atr * (period - 1) + tr) / period
        out[t] = atr / close[t]


@njit(cache=True)
def higher_tf_map_nb(minute_in_bucket, bucket_pos, complete, bsg, m, out_idx):
    """For each 1m bar, the index of the latest completed higher bar visible at its close.

    minute_in_bucket: (n,) int64 offset of the 1m bar inside its m-minute
    bucket; bucket_pos: (n,) int64 index of its bucket in the bucket arrays;
    complete: (k,) bool, bucket has all m minutes.  A bucket is visible from
    its last minute's close on.  -1 when the latest bucket is incomplete or
    the minutes between it and the bar are not contiguous (never bridges a gap).
    """
    n = minute_in_bucket.shape[0]
    for t in range(n):
        o = minute_in_bucket[t]
        b = bucket_pos[t]
        if o == m - 1:
            out_idx[t] = b if complete[b] else -1
        else:
            # previous bucket: must be the immediately preceding one, complete,
            # and contiguous with this bar (segment covers prev start .. t)
            if bsg[t] >= m + o and b >= 1 and complete[b - 1]:
                out_idx[t] = b - 1
            else:
                out_idx[t] = -1
