"""The Liquidity Lens on recorded (or live) L2 books, aggregated to 1-minute bars.

Definitions (the simulator's, :mod:`forge.sim.lens_nb`, so a policy sees the same quantities in the LOB
simulator and on recorded books):

* **OFI** — Cont, Kukanov & Stoikov (2014), "The Price Impact of Order Book Events", *Journal of Financial
  Econometrics* 12(1), 47-88, eq. (2)-(3): between consecutive best-bid/ask states n-1 -> n (prices P,
  sizes q), ``e_n = q^b_n 1[P^b_n >= P^b_{n-1}] - q^b_{n-1} 1[P^b_n <= P^b_{n-1}] - q^a_n 1[P^a_n <= P^a_{n-1}]
  + q^a_{n-1} 1[P^a_n >= P^a_{n-1}]`` (base units; > 0 net buying pressure), and the OFI of an interval is
  the sum of e_n over the states inside it.  The increment is the simulator's kernel ``ofi_nb``.  Recorded
  states are the exchange's pushes (Binance every 100 ms, Bybit every 10-100 ms), so e_n spans the events
  between two pushes — the paper sums per book event; a per-push OFI is the same sum, aggregated (the
  levels' net change), as long as no push is lost: an increment is never taken across a gap marker.
* **Book pressure** — depth imbalance ``(D^b - D^a) / (D^b + D^a)`` over the top ``k`` **levels** of each side
  (``pressure``), and over the levels within ``k`` **ticks** of each best (``pressure_ticks``: the
  simulator's ``book_pressure_nb``, equal to the level version on a book with every tick occupied);
  0.0 for an empty book, as in the simulator.
* **Liquidity density** — ``(D^b_k + D^a_k) / (2 k)``, resting size per tick within ``k`` ticks of the two
  bests (the simulator's ``liquidity_density_nb``; base units per tick).
* ``spread`` — best ask - best bid (quote per base); ``mid`` — their mean.

Bars (:func:`lens_bars`): 1-minute bars on the UTC clock by the states' **exchange** time; a bar's values use
only states inside it (and the state holding at its start), so they are known at its close — a terminal at
bar t uses no later data.  Per bar: ``ofi`` (sum of e_n over its states), ``ofi_n`` (increments summed),
``n_states``, the time-weighted means ``pressure``, ``pressure_ticks``, ``density``, ``spread`` over the
time each state held inside the bar, the values at the close ``pressure_close`` / ``mid_close``, and
``gap`` (True when a gap marker overlaps the bar: its flow measures are incomplete).  Bars without a state
have NaN values: gaps are reported, never bridged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from forge.core.errors import DataError
from forge.data.l2 import L2Book, load_gaps, load_l2, load_meta
from forge.features.l2lens_nb import (depth_levels_nb, depth_ticks_nb, minute_bars_nb, ofi_increments_nb,
                                      pressure_nb)

__all__ = ["lens_states", "lens_bars", "load_lens_bars", "BAR_MS"]

BAR_MS = 60_000
_VALUES = ("pressure", "pressure_ticks", "density", "spread", "mid")


def _check(book: L2Book, k: int, tick: float | None) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"k {k!r}: expected an integer >= 1 (levels / ticks)")
    if tick is not None and not (np.isfinite(tick) and tick > 0):
        raise DataError(f"tick {tick!r}: expected a positive price step")
    if len(book) and book.depth < 1:
        raise DataError("the book has no levels")


def lens_states(book: L2Book, k: int = 5, tick: float | None = None) -> dict[str, np.ndarray]:
    """Lens values per recorded state: ``ofi_e`` (n,) CKS increment (NaN: first state, after a gap, or no
    best bid/ask), ``pressure`` (top-k levels), ``pressure_ticks`` and ``density`` (within k ticks; NaN when
    ``tick`` is None), ``spread``, ``mid``; all (n,) float64 (see the module docstring for units)."""
    _check(book, k, tick)
    c = np.ascontiguousarray
    bpx, bsz, apx, asz = c(book.bid_px), c(book.bid_sz), c(book.ask_px), c(book.ask_sz)
    n = len(book)
    out = {"ofi_e": ofi_increments_nb(bpx, bsz, apx, asz, c(book.after_gap, dtype=np.bool_))}
    out["pressure"] = pressure_nb(depth_levels_nb(bsz, int(k)), depth_levels_nb(asz, int(k)))
    if tick is None:
        out["pressure_ticks"] = np.full(n, np.nan)
        out["density"] = np.full(n, np.nan)
    else:
        db = depth_ticks_nb(bpx, bsz, float(tick), int(k), True)
        da = depth_ticks_nb(apx, asz, float(tick), int(k), False)
        out["pressure_ticks"] = pressure_nb(db, da)
        out["density"] = (db + da) / (2.0 * k)
    if n:
        out["spread"] = apx[:, 0] - bpx[:, 0]
        out["mid"] = 0.5 * (apx[:, 0] + bpx[:, 0])
    else:
        out["spread"] = out["mid"] = np.zeros(0)
    return out


def lens_bars(book: L2Book, gaps: pl.DataFrame | None = None, *, k: int = 5, tick: float | None = None,
              start_ms: int | None = None, end_ms: int | None = None) -> pl.DataFrame:
    """1-minute Liquidity Lens bars from recorded states (columns in the module docstring; ``open_time``
    Int64 ms UTC, one row per minute from ``start_ms`` (default the first state's minute) to ``end_ms``
    (exclusive; default the minute after the last state)).  gaps: the recording's gap markers
    (:func:`forge.data.l2.load_gaps`) to flag bars; None = none known.  raises DataError for bad k / tick or
    an empty book without a range."""
    _check(book, k, tick)
    if len(book) == 0 and (start_ms is None or end_ms is None):
        raise DataError("no recorded book states in the range (give start_ms and end_ms for empty bars)")
    t0 = (int(start_ms) if start_ms is not None else int(book.ts_ms[0])) // BAR_MS * BAR_MS
    t1 = int(end_ms) if end_ms is not None else (int(book.ts_ms[-1]) // BAR_MS + 1) * BAR_MS
    n_bars = max(0, -(-(t1 - t0) // BAR_MS))
    st = lens_states(book, k, tick)
    vals = np.ascontiguousarray(np.column_stack([st[v] for v in _VALUES]) if len(book) else np.zeros((0, len(_VALUES))))
    ts = np.ascontiguousarray(book.ts_ms, dtype=np.int64)
    if len(ts) and np.any(np.diff(ts) < 0):  # receive order may differ from exchange order by a few ms
        o = np.argsort(ts, kind="stable")
        ts, vals, e, ag = ts[o], vals[o], st["ofi_e"][o], book.after_gap[o]
    else:
        e, ag = st["ofi_e"], book.after_gap
    ofi, n_e, n_st, twa, close = minute_bars_nb(ts, np.ascontiguousarray(e), vals,
                                                np.ascontiguousarray(ag, dtype=np.bool_), t0, n_bars, BAR_MS)
    open_time = t0 + BAR_MS * np.arange(n_bars, dtype=np.int64)
    gap = n_st == 0
    if gaps is not None and gaps.height:
        g = gaps.filter(pl.col("stream") == "l2")
        lo = g["start_ts_ms"].fill_null(np.iinfo(np.int64).min).to_numpy()
        hi = g["end_ts_ms"].fill_null(np.iinfo(np.int64).max).to_numpy()
        for a, b in zip(lo, hi):
            gap |= (open_time <= b) & (open_time + BAR_MS > a)
    ofi = np.where(n_st > 0, ofi, np.nan)
    cols = {"open_time": open_time, "ofi": ofi, "ofi_n": n_e, "n_states": n_st}
    for j, v in enumerate(_VALUES):
        if v != "mid":
            cols[v] = twa[:, j]
    cols["pressure_close"] = close[:, 0]
    cols["mid_close"] = close[:, _VALUES.index("mid")]
    cols["gap"] = gap
    return pl.DataFrame(cols)


def load_lens_bars(root: str | Path, venue: str, symbol: str, start_ms: int, end_ms: int, *, k: int = 5,
                   tick: float | None = None) -> pl.DataFrame:
    """:func:`lens_bars` of a recording (``crucible record``) over [start_ms, end_ms) (ms UTC, whole minutes);
    tick: default the recorded market's tick (``meta.json``), None when not recorded."""
    book = load_l2(root, venue, symbol, start_ms, end_ms)
    if tick is None:
        tick = load_meta(root, venue, symbol).get("tick")
    return lens_bars(book, load_gaps(root, venue, symbol), k=k, tick=tick, start_ms=start_ms, end_ms=end_ms)
