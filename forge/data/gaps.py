"""Gap bookkeeping shared by features, the VM wrapper and the backtester.

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
