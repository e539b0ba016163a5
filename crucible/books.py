"""Order books of the bench: recorded-book terminals live, and the execution policy's book inputs (issue 31 parts 4
and 5, issue 30's clock).

A genome evolved with ``forge evolve --l2 DIR`` reads the Liquidity Lens' 1-minute bars of an L2 recording as
terminals (``l2_*``, :mod:`forge.features.l2terminals`).  The bench gives such a slot the same columns, joined
onto its bars by the one join research uses (:func:`forge.features.l2terminals.join_lens`), from one of two
sources (``[l2]`` of the Crucible config, :class:`crucible.config.L2LiveConfig`):

* :class:`RecordedBooks` (the replay venue, ``[l2] dir``): the lens bars of a ``crucible record`` directory
  (:func:`forge.features.l2lens.load_lens_bars`) for the replayed minutes.  Replaying the research bars over the
  research recording gives the research targets bar for bar (tests/test_crucible_books.py).
* :class:`LiveBooks` (exchange venues, ``[l2] live = true``): ``crucible record``'s
  :class:`crucible.record.Recorder` in a thread of the bench, on the **mainnet public** feed (testnet books are
  not evidence, and the recording research ran on is mainnet's).  It writes its recording (``[l2] dir``, default
  ``l2/`` beside the journal: the evidence, and a restart's history) and its per-symbol
  :class:`forge.features.l2lens.LiveLens` hands each closed lens bar to the bench at once; a restart reads the
  bars before the feed started back from that recording.  The live lens bars equal ``load_lens_bars`` of the
  written files (tests/test_record.py), so a live terminal equals the one research would compute on the recording.

**Waiting.** A lens bar closes when the first book state of the next exchange minute arrives.  A slot reading
books acts on minute t only when every book it reads has closed t; the wait shares ``[crucible]
panel_wait_seconds`` with the panel instruments (:mod:`crucible.panel`) and a late book makes the slot skip the
bar (``panel_skip`` with ``late = ["l2:BTCUSDT"]``), never trade on a book it has not seen.  Minutes without a
recorded state, or with a gap marker (reconnects, sequence gaps, the feed's start), have ``l2_valid`` False and
NaN terminals, as in research: the VM's root trades flat there.

**Policy inputs** (:meth:`LiveBooks.state`, :meth:`RecordedBooks.state`): the book state at the decision -- the
latest live one, or on the replay venue the recorded one holding at the bar's close -- from which
:mod:`crucible.passive` computes the execution policy's imbalance, order-flow imbalance, book pressure, drift and
queue inputs on the simulator's definitions (:func:`forge.features.l2lens.policy_book_inputs`).  Without books (or
inside a gap) those inputs are 0, the kline context.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.core.errors import ConfigError, DataError
from forge.data.panel import Instrument
from forge.data.schema import BAR_MS
from forge.data.l2 import load_gaps, load_l2, load_meta
from forge.features.l2lens import load_lens_bars
from forge.features.l2terminals import has_recording, join_lens, recorded_venue

__all__ = ["RecordedBooks", "LiveBooks", "make_books", "LENS_COLUMNS"]

log = logging.getLogger("crucible.books")

LENS_COLUMNS = ("open_time", "ofi", "pressure", "pressure_close", "density", "spread", "mid_close", "n_states",
                "gap")
"""The lens bar columns :func:`forge.features.l2terminals.join_lens` reads."""
_LENS_SCHEMA = {"open_time": pl.Int64, "ofi": pl.Float64, "pressure": pl.Float64, "pressure_close": pl.Float64,
                "density": pl.Float64, "spread": pl.Float64, "mid_close": pl.Float64, "n_states": pl.Int64,
                "gap": pl.Boolean}


def _span(frame: pl.DataFrame) -> tuple[int, int] | None:
    t = frame["open_time"]
    return (int(t[0]), int(t[-1]) + BAR_MS) if frame.height else None


class RecordedBooks:
    """Books of a ``crucible record`` directory for the replay venue (module docstring).

    root: the recording directory; venue: its venue folder ("" = the only one holding each symbol); k: levels /
    ticks of the depth measures.  raises ConfigError when ``root`` is not a directory."""

    live = False

    def __init__(self, root: str | Path, venue: str = "", k: int = 5) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"[l2] dir {root}: no such recording directory")
        self.venue, self.k = venue, int(k)
        self.error: str | None = None
        self._states: dict[str, tuple] = {}  # symbol -> (lo, hi, L2Book of [lo, hi), tick, gap starts, gap ends)

    def has(self, symbol: str) -> bool:
        """Whether the recording holds ``symbol``'s book."""
        return has_recording(self.root, symbol, self.venue)

    def closed(self, symbol: str, bar_time: int) -> bool:
        """Always True: a recording is complete for every replayed minute."""
        return True

    def attach(self, frame: pl.DataFrame, symbol: str, instrument: Instrument | None = None) -> pl.DataFrame:
        """``frame`` (a bar or panel frame) with ``symbol``'s book joined as the L2 columns (suffixed for
        ``instrument``); minutes the recording does not cover are not valid.  raises DataError for an unreadable
        recording."""
        span = _span(frame)
        if span is None:
            return join_lens(frame, pl.DataFrame(schema=_LENS_SCHEMA), instrument)
        venue = recorded_venue(self.root, symbol, self.venue)
        lens = load_lens_bars(self.root, venue, symbol.upper(), span[0], span[1], k=self.k)
        return join_lens(frame, lens, instrument)

    def state(self, symbol: str, at_ms: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float | None] | None:
        """The recorded book state holding at ``at_ms`` (the latest with exchange time < at_ms; the replay venue's
        decision time, a bar's close), as :meth:`LiveBooks.state`; None without a time, before the recording, or
        while a gap marker covers ``at_ms`` (the book was not seen then).  States are read in 6-hour windows."""
        if at_ms is None or not self.has(symbol):
            return None
        at = int(at_ms)
        c = self._states.get(symbol)
        if c is None or not c[0] <= at - 5 * BAR_MS or at >= c[1]:
            venue = recorded_venue(self.root, symbol, self.venue)
            lo, hi = at - 5 * BAR_MS, at + 6 * 3_600_000
            gaps = load_gaps(self.root, venue, symbol.upper())
            g = gaps.filter(pl.col("stream") == "l2")
            c = self._states[symbol] = (lo, hi, load_l2(self.root, venue, symbol.upper(), lo, hi),
                                        load_meta(self.root, venue, symbol).get("tick"),
                                        g["start_ts_ms"].fill_null(np.iinfo(np.int64).min).to_numpy(),
                                        g["end_ts_ms"].fill_null(np.iinfo(np.int64).max).to_numpy())
        _lo, _hi, book, tick, g0, g1 = c
        i = int(np.searchsorted(book.ts_ms, at, side="left")) - 1
        if i < 0 or np.any((g0 <= at) & (g1 >= at)):
            return None
        return book.bid_px[i], book.bid_sz[i], book.ask_px[i], book.ask_sz[i], (float(tick) if tick else None)

    def close(self) -> None:
        pass


class LiveBooks:
    """A live book feed of ``symbols`` (module docstring): ``crucible record``'s Recorder in a daemon thread.

    venue: "binanceusdm" | "bybit" (the feed's exchange); symbols: exchange ids of USDT linear perpetuals; dest:
    where it records; depth / k: levels recorded / of the depth measures; ws_url, rest_url: loopback fakes;
    keep_bars: lens bars kept in memory per symbol (>= the bench's history window plus its prefetch).
    raises ConfigError for a bad venue, symbol or depth (the Recorder's checks)."""

    live = True

    def __init__(self, venue: str, symbols: Iterable[str], dest: str | Path, *, depth: int = 20, k: int = 5,
                 ws_url: str | None = None, rest_url: str | None = None, keep_bars: int = 20_000,
                 idle_seconds: float = 30.0) -> None:
        from crucible.record import Recorder

        self.venue = venue
        self.symbols = tuple(sorted({s.upper() for s in symbols}))
        self.dest = Path(dest)
        self.k = int(k)
        self.keep_bars = int(keep_bars)
        self._lock = threading.Lock()
        self._bars: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in self.symbols}
        self._times: dict[str, list[int]] = {s: [] for s in self.symbols}  # sorted keys of _bars[symbol]
        self._last: dict[str, int] = {}      # symbol -> open time of the latest closed lens bar
        self._from_disk: set[str] = set()    # symbols whose earlier bars were read back from the recording
        self.error: str | None = None        # why the feed stopped, once it did
        self.rec = Recorder(venue, list(self.symbols), int(depth), str(self.dest), ws_url=ws_url or None,
                            rest_url=rest_url or None, lens_k=self.k, progress=self._on_event,
                            idle_seconds=idle_seconds)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the feed thread

    def start(self) -> None:
        """Start the feed (idempotent).  The recording folders' single-writer lock is taken here, before the
        thread starts (:meth:`crucible.record.Recorder.lock`), so a bench whose ``[l2] dir`` another recorder writes
        does not start.  raises ConfigError naming that recorder's pid."""
        if self._thread is not None:
            return
        self.rec.lock()

        def main() -> None:
            try:
                asyncio.run(self.rec.run())
            except BaseException as exc:  # noqa: BLE001 - reported by check(), the bench goes on without books
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("the live book feed stopped: %s", self.error)
            else:
                self.error = self.error or "the live book feed ended"

        self._thread = threading.Thread(target=main, name="crucible-books", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 15.0) -> None:
        """Stop the feed and flush its recording."""
        th = self._thread
        if th is None:
            return
        for _ in range(int(timeout / 0.05)):
            if getattr(self.rec, "_loop", None) is not None or not th.is_alive():
                break
            th.join(0.05)
        self.rec.stop_threadsafe()
        th.join(timeout)
        self._thread = None
        self.rec.unlock()

    def _on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("event") == "lens":
            sym = ev["symbol"]
            t = int(ev["open_time"])
            with self._lock:
                bars = self._bars.setdefault(sym, {})
                times = self._times.setdefault(sym, [])
                if t not in bars:
                    if not times or t > times[-1]:
                        times.append(t)  # the usual case: lens bars close in time order
                    else:
                        bisect.insort(times, t)
                bars[t] = {c: ev[c] for c in LENS_COLUMNS}
                self._last[sym] = max(t, self._last.get(sym, t))
                if len(bars) > 2 * self.keep_bars:
                    cut = len(times) - self.keep_bars
                    for old in times[:cut]:
                        del bars[old]
                    del times[:cut]
        elif ev.get("event") == "error":
            log.warning("book feed: %s", ev)

    # ------------------------------------------------------------------ what the bench reads

    def has(self, symbol: str) -> bool:
        return symbol.upper() in self.symbols

    def closed(self, symbol: str, bar_time: int) -> bool:
        """Whether the lens bar of ``bar_time`` (open time, ms) has closed for ``symbol``."""
        with self._lock:
            return self._last.get(symbol.upper(), -1) >= int(bar_time)

    def _read_back(self, symbol: str, lo: int) -> None:
        """Once per symbol: the lens bars before the feed's first one, from its own recording (a restart)."""
        if symbol in self._from_disk:
            return
        self._from_disk.add(symbol)
        with self._lock:
            mem = self._bars.get(symbol, {})
            first = min(mem) if mem else None
        hi = first if first is not None else None
        if hi is None or lo >= hi or not has_recording(self.dest, symbol, self.venue):
            return
        try:
            lens = load_lens_bars(self.dest, self.venue, symbol, lo, hi, k=self.k)
        except DataError as exc:
            log.warning("book feed: the recording before this start is unreadable (%s); those minutes are not valid",
                        exc)
            return
        with self._lock:
            bars = self._bars.setdefault(symbol, {})
            for row in lens.select(LENS_COLUMNS).iter_rows(named=True):
                bars.setdefault(int(row["open_time"]), row)
            self._times[symbol] = sorted(bars)  # once per symbol: the bars read back precede the feed's

    def attach(self, frame: pl.DataFrame, symbol: str, instrument: Instrument | None = None) -> pl.DataFrame:
        """``frame`` with ``symbol``'s live lens bars joined as the L2 columns (minutes without a closed lens bar
        are not valid)."""
        symbol = symbol.upper()
        span = _span(frame)
        if span is None:
            return join_lens(frame, pl.DataFrame(schema=_LENS_SCHEMA), instrument)
        self._read_back(symbol, span[0])
        with self._lock:  # the lens bars with span[0] <= open time < span[1]: O(log n + window) per call
            mem, times = self._bars.get(symbol, {}), self._times.get(symbol, [])
            rows = [mem[t] for t in times[bisect.bisect_left(times, span[0]):bisect.bisect_left(times, span[1])]]
        lens = pl.DataFrame(rows, schema=_LENS_SCHEMA) if rows else pl.DataFrame(schema=_LENS_SCHEMA)
        return join_lens(frame, lens, instrument)

    def state(self, symbol: str, at_ms: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float | None] | None:
        """The latest book state of ``symbol``: (bid prices, bid sizes, ask prices, ask sizes) as (depth,) float64
        arrays, best first, NaN-padded, and the market's tick (None unknown); None before the first state or while
        the stream is in a gap.  at_ms: ignored (the live book is the book now)."""
        st = self.rec.syms.get(symbol.upper())
        lens = getattr(st, "lens", None)
        if lens is None:
            return None
        last = lens.last_state()
        if last is None:
            return None
        return (*last, lens.tick)


def make_books(cfg: Any, venue: Any, journal_path: str | Path, symbols: Iterable[str]):
    """The bench's books from ``[l2]`` (module docstring), or None when it has none.

    cfg: CrucibleConfig; venue: the bench's Venue (``name`` "replay" or an exchange with ``exchange_id``);
    journal_path: the journal (a live feed records beside it by default); symbols: the venue symbols whose books
    the slots read.  The live feed is not started here (:meth:`LiveBooks.start`).  raises ConfigError (one line)."""
    c = cfg.l2
    if venue.name == "replay":
        if c.live:
            raise ConfigError(f"{cfg.source} [l2] live = true needs an exchange venue; the replay venue reads a "
                              "recording ([l2] dir)")
        return RecordedBooks(c.dir, c.venue, c.k) if c.dir else None
    if not c.live:
        return None
    feed = c.venue or getattr(venue, "exchange_id", "")
    if feed not in ("binanceusdm", "bybit"):
        raise ConfigError(f"{cfg.source} [l2] venue: the live book feed needs \"binanceusdm\" or \"bybit\" (the bench "
                          f"venue is {venue.name!r})")
    syms = sorted({s.upper() for s in symbols})
    if not syms:
        return None
    dest = Path(c.dir) if c.dir else Path(journal_path).resolve().parent / "l2"
    return LiveBooks(feed, syms, dest, depth=c.depth, k=c.k, ws_url=c.ws_url, rest_url=c.rest_url)
