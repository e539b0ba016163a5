"""numba kernels of the Liquidity Lens on recorded L2 books (wrapper and definitions: :mod:`forge.features.l2lens`).

Arrays are C-contiguous float64 / int64 / bool; book matrices are (n, depth), best level first, NaN beyond
the book.  The OFI increment is the simulator's kernel (:func:`forge.sim.lens_nb.ofi_nb`), called here.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from forge.sim.lens_nb import ofi_nb


@njit(cache=True)
def ofi_increments_nb(bid_px, bid_sz, ask_px, ask_sz, after_gap):
    """CKS (2014) increment e_n between consecutive recorded states, (n,) float64 base units; NaN for the
    first state, a state right after a gap marker, and wherever either state lacks a best bid or ask."""
    n = bid_px.shape[0]
    e = np.full(n, np.nan)
    for i in range(1, n):
        if after_gap[i]:
            continue
        pb0, qb0, pa0, qa0 = bid_px[i - 1, 0], bid_sz[i - 1, 0], ask_px[i - 1, 0], ask_sz[i - 1, 0]
        pb1, qb1, pa1, qa1 = bid_px[i, 0], bid_sz[i, 0], ask_px[i, 0], ask_sz[i, 0]
        if np.isnan(pb0) or np.isnan(pa0) or np.isnan(pb1) or np.isnan(pa1):
            continue
        e[i] = ofi_nb(pb0, qb0, pa0, qa0, pb1, qb1, pa1, qa1)
    return e


@njit(cache=True)
def depth_levels_nb(sz, k):
    """Resting size in the best ``k`` levels of one side per state, (n,) float64 (NaN levels count 0)."""
    n, d = sz.shape
    out = np.zeros(n)
    m = min(k, d)
    for i in range(n):
        tot = 0.0
        for j in range(m):
            v = sz[i, j]
            if not np.isnan(v):
                tot += v
        out[i] = tot
    return out


@njit(cache=True)
def depth_ticks_nb(px, sz, tick, k, is_bid):
    """Resting size within ``k`` ticks of one side's best (the best tick and the k-1 behind it), (n,) float64;
    0 for an empty side.  The simulator's ``book_depth_nb`` on a price grid of step ``tick``."""
    n, d = px.shape
    out = np.zeros(n)
    half = 0.5 * tick
    for i in range(n):
        best = px[i, 0]
        if np.isnan(best):
            continue
        lim = best - (k - 1) * tick - half if is_bid else best + (k - 1) * tick + half
        tot = 0.0
        for j in range(d):
            p = px[i, j]
            if np.isnan(p):
                break
            if (is_bid and p < lim) or ((not is_bid) and p > lim):
                break
            tot += sz[i, j]
        out[i] = tot
    return out


@njit(cache=True)
def pressure_nb(b, a):
    """(b - a) / (b + a) per state, 0.0 where b + a == 0 (the simulator's convention for an empty book)."""
    n = b.shape[0]
    out = np.zeros(n)
    for i in range(n):
        tot = b[i] + a[i]
        if tot > 0:
            out[i] = (b[i] - a[i]) / tot
    return out


@njit(cache=True)
def minute_bars_nb(ts_ms, e, values, after_gap, t0, n_bars, bar_ms):
    """Aggregate recorded states to ``n_bars`` bars of ``bar_ms`` starting at ``t0`` (ms).

    ts_ms: (n,) int64 exchange time of each state, non-decreasing.  e: (n,) OFI increments (NaN = none).
    values: (n, m) state variables, each state's value holding from its ts until the next state's ts; the
    hold stops at a state flagged ``after_gap`` (the book in between is unknown) and at the last state; a
    state before ``t0`` counts only for the time it holds inside the bars (it is the book at their start).
    returns ofi (n_bars,) sum of e over the bar's states, n_e (n_bars,) int64 count of e, n_states (n_bars,)
    int64, twa (n_bars, m) time-weighted mean of each value over the held time inside the bar (NaN where
    none), close (n_bars, m) the value of the last state with ts < bar end (NaN if that state is before a
    gap still open at the bar's end or before the bar's first recorded state)."""
    n, m = values.shape
    ofi = np.zeros(n_bars)
    n_e = np.zeros(n_bars, dtype=np.int64)
    n_st = np.zeros(n_bars, dtype=np.int64)
    acc = np.zeros((n_bars, m))
    held = np.zeros(n_bars)
    close = np.full((n_bars, m), np.nan)
    for i in range(n):
        b = (ts_ms[i] - t0) // bar_ms
        if b >= n_bars:
            continue
        if b >= 0:
            n_st[b] += 1
            if not np.isnan(e[i]):
                ofi[b] += e[i]
                n_e[b] += 1
            known = not (i + 1 < n and after_gap[i + 1] and ts_ms[i + 1] >= t0 + (b + 1) * bar_ms)
            for c in range(m):
                close[b, c] = values[i, c] if known else np.nan  # NaN: a gap opened after it, still open at the close
        # hold until the next state (not across a gap), split over the bars it spans; a state before t0
        # holds into the first bar
        if i + 1 < n and not after_gap[i + 1]:
            s, t_end = ts_ms[i], ts_ms[i + 1]
            if s < t0:
                s = t0
                if t_end > t0:
                    for c in range(m):
                        close[0, c] = values[i, c]
            while s < t_end:
                bb = (s - t0) // bar_ms
                if bb >= n_bars:
                    break
                edge = t0 + (bb + 1) * bar_ms
                stop = t_end if t_end < edge else edge
                dt = float(stop - s)
                held[bb] += dt
                for c in range(m):
                    acc[bb, c] += values[i, c] * dt
                if stop == edge and stop < t_end and bb + 1 < n_bars:
                    for c in range(m):  # the state is still the book at the next bar's close if nothing follows
                        close[bb + 1, c] = values[i, c]
                s = stop
    twa = np.full((n_bars, m), np.nan)
    for b in range(n_bars):
        if held[b] > 0:
            for c in range(m):
                twa[b, c] = acc[b, c] / held[b]
    return ofi, n_e, n_st, twa, close
