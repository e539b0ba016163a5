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
only states inside it and the state holding at its start (a state before ``start_ms`` passed in counts only
for its time inside the bars), so they are known at its close — a terminal at
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

__all__ = ["lens_states", "lens_bars", "load_lens_bars", "LiveLens", "policy_book_inputs", "BAR_MS"]

BAR_MS = 60_000
LOOKBACK_MS = 5 * BAR_MS
"""How far before ``start_ms`` :func:`load_lens_bars` looks for the state holding at the first bar's start."""
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
    tick: default the recorded market's tick (``meta.json``), None when not recorded.  The states of the
    :data:`LOOKBACK_MS` before ``start_ms`` are read too, for the book holding at the first bar's start, and
    those after ``end_ms``: the next state says the last one held until the close (no value after the close
    enters a bar)."""
    # + the state holding at the start, and the states just after the end (the last one held to the close)
    book = load_l2(root, venue, symbol, int(start_ms) - LOOKBACK_MS, int(end_ms) + LOOKBACK_MS)
    if tick is None:
        tick = load_meta(root, venue, symbol).get("tick")
    return lens_bars(book, load_gaps(root, venue, symbol), k=k, tick=tick, start_ms=start_ms, end_ms=end_ms)


def policy_book_inputs(prev_top: tuple[float, float, float, float] | None, top: tuple[float, float, float, float],
                       side: int) -> tuple[float, float, float]:
    """The execution policy's book inputs from a live book, normalised as the LOB simulator's execution
    environment computes them (:mod:`forge.execution.lob_env`, features ``spread``, ``imbalance``, ``ofi`` of
    :data:`forge.execution.policy_nb.FEATURE_NAMES`).

    top, prev_top: (best bid, bid size, best ask, ask size) now and at the previous decision (None at the
    first).  side: +1 buy, -1 sell.  returns (spread / mid * 1e3, side * (q_b - q_a) / (q_b + q_a),
    clip(side * e / (q_b + q_a), -1, 1)) with e the CKS (2014) increment between the two states (one
    increment over the decision step, as in the simulator); imbalance and OFI 0 for an empty top."""
    from forge.sim.lens_nb import ofi_nb

    pb, qb, pa, qa = (float(x) for x in top)
    if side not in (1, -1):
        raise DataError(f"side {side!r}: expected +1 (buy) or -1 (sell)")
    if not (np.isfinite(pb) and np.isfinite(pa) and pa > pb > 0):
        raise DataError(f"top of book {top!r}: expected a best bid below a best ask")
    mid = 0.5 * (pb + pa)
    depth = qb + qa
    imb = side * (qb - qa) / depth if depth > 0 else 0.0
    if prev_top is None or depth <= 0:
        ofi = 0.0
    else:
        p0 = [float(x) for x in prev_top]
        e = ofi_nb(p0[0], p0[1], p0[2], p0[3], pb, qb, pa, qa)
        ofi = max(-1.0, min(1.0, side * e / depth))
    return (pa - pb) / mid * 1e3, imb, ofi


class LiveLens:
    """The Liquidity Lens on a live stream of book states: the same 1-minute bars as :func:`lens_bars`,
    emitted as each bar closes (``crucible record`` feeds one per symbol).

    depth: levels per side of the states pushed.  k, tick: as in :func:`lens_states`.  A bar closes when a
    state with a later exchange minute arrives (:meth:`push`) or when :meth:`close_until` is told the time;
    its values equal :func:`lens_bars` on the same states (the state holding at a bar's start is carried
    over).  Gaps: :meth:`mark_gap` (a stream lost data) flags the open bar and every bar closed until a state
    arrives with ``after_gap=True``; that state's OFI increment is not taken.  A state whose exchange time
    is earlier than the previous one is taken at the previous time (exchange clocks are monotone per
    symbol; this only guards against a broken one).
    """

    def __init__(self, depth: int, k: int = 5, tick: float | None = None) -> None:
        if not isinstance(depth, (int, np.integer)) or depth < 1:
            raise DataError(f"depth {depth!r}: expected an integer >= 1")
        self.depth, self.k, self.tick = int(depth), int(k), tick
        _check(L2Book(*([np.zeros(0, dtype=np.int64)] * 4), *([np.zeros((0, self.depth))] * 4),
                      np.zeros(0, dtype=bool)), self.k, tick)
        self._rows: list[tuple] = []   # (ts, after_gap, bpx, bsz, apx, asz): the carry state first, then the open bar's
        self._bar: int | None = None   # open bar start, ms
        self._has_carry = False
        self._gap_open = False
        self._gap_bar = False

    def top(self) -> tuple[float, float, float, float] | None:
        """(best bid, bid size, best ask, ask size) of the latest state pushed (None before any): the input of
        :func:`policy_book_inputs`."""
        if not self._rows:
            return None
        r = self._rows[-1]
        return float(r[2][0]), float(r[3][0]), float(r[4][0]), float(r[5][0])

    def last_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(bid prices, bid sizes, ask prices, ask sizes) of the latest state pushed ((depth,) float64, best first,
        NaN-padded; None before any, or while a gap is open: the book since then is unknown).  Safe to call
        from another thread than the one pushing (it reads one list element)."""
        rows = self._rows
        if not rows or self._gap_open:
            return None
        r = rows[-1]
        return r[2], r[3], r[4], r[5]

    def mark_gap(self) -> None:
        """A gap began: flag the open bar and the bars until the next ``after_gap`` state."""
        self._gap_open = True
        self._gap_bar = True

    def push(self, ts_ms: int, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
             after_gap: bool = False) -> list[dict]:
        """Add one state ((depth,) float64 arrays, best first, NaN-padded); returns the bars it closed, oldest
        first, as dicts with the :func:`lens_bars` columns."""
        ts = int(ts_ms)
        if self._rows and ts < self._rows[-1][0]:
            ts = self._rows[-1][0]
        b = ts // BAR_MS * BAR_MS
        out: list[dict] = []
        if self._bar is None:
            self._bar = b
        elif b > self._bar:
            out = self.close_until(b)
        self._rows.append((ts, bool(after_gap), np.asarray(bid_px, dtype=np.float64),
                           np.asarray(bid_sz, dtype=np.float64), np.asarray(ask_px, dtype=np.float64),
                           np.asarray(ask_sz, dtype=np.float64)))
        if after_gap:
            self._gap_open = False
            self._gap_bar = True
        return out

    def close_until(self, t_ms: int) -> list[dict]:
        """Close every bar ending at or before ``t_ms`` (exchange time, ms); returns them as dicts."""
        if self._bar is None:
            return []
        end = int(t_ms) // BAR_MS * BAR_MS
        if end <= self._bar:
            return []
        # the last state holds to the close (a sentinel copy at `end`, outside the bars; after a gap opened
        # it does not hold: the book since then is unknown)
        rows = self._rows + [(end, self._gap_open, *self._rows[-1][2:])]
        n = len(rows)
        z = np.zeros((n, self.depth))
        book = L2Book(np.array([r[0] for r in rows], dtype=np.int64), np.zeros(n, dtype=np.int64),
                      np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64),
                      *(np.vstack([r[j] for r in rows]) if n else z for j in range(2, 6)),
                      np.array([(r[1] or (i == 0 and not self._has_carry)) for i, r in enumerate(rows)], dtype=bool))
        bars = lens_bars(book, None, k=self.k, tick=self.tick, start_ms=self._bar, end_ms=end)
        gap = bars["gap"].to_numpy().copy()
        if self._gap_bar:
            gap[0] = True
        if self._gap_open:
            gap[:] = True
        bars = bars.with_columns(pl.Series("gap", gap))
        self._gap_bar = self._gap_open
        self._rows = [self._rows[-1]]
        self._has_carry = True
        self._bar = end
        return bars.to_dicts()
