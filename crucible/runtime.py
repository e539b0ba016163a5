"""The Crucible live runtime: one loop shared by the replay venue and ccxt exchanges.

Per closed 1-minute bar (venue clock), in this order:

1. sync fills of open orders (de-duplicated by trade id) into the journal and the slot ledgers;
2. mark every slot at the bar's close; global kill switch (file / SIGTERM) → flatten all, stop;
3. Watchtower: a slot at or below the kill floor is flattened and terminated, a replacement
   request is written;
4. Pit Crew: promote challengers whose shadow period is over (bar boundary), scan for new ones;
5. signals (same VM as the backtester: a rolling window on exchanges, chunks of the replay on the
   replay venue, see ``crucible.signals``) → market orders for changed targets: intents committed to
   the journal *before* any order is sent (a commit point), deterministic client order ids;
6. CWO reweight every ``cwo.interval_seconds`` of venue time (journaled when a weight moved by more
   than ``WEIGHT_TOL``); the weights decide each live slot's capital: cash is moved between slot
   ledgers (journaled ``transfer`` events, at most ``cwo.max_turnover`` of the bench's equity per
   reweight) so that slot equity = weight x bench equity (the rest is an unallocated reserve), and a
   slot whose exposure is off by more than ``REBALANCE_TOL`` of its equity is re-sized at the next bar;
   the kill rule judges each slot on its own P&L (transfers are capital, not losses);
   ``[cwo] move_capital = false`` keeps the weights as bookkeeping only;
7. equity snapshot, bar cursor committed.

A bar is one journal transaction.  With ``synchronous=FULL`` (exchange venues) every bar is
committed and fsynced; on the replay venue (NORMAL) bars are group-committed every
``GROUP_COMMIT_S`` wall seconds, commit points still coming before every send, kill and swap.

Modules: orders and fills in :mod:`crucible.execution`, restore and reconcile in :mod:`crucible.reconcile`,
kill switch / Watchtower / Pit Crew / CWO in :mod:`crucible.oversight`, venue construction in
:mod:`crucible.venues.factory`; this module keeps the bar loop and :func:`run_live`.

On start the journal is replayed (ledgers, swaps, kills, weights), then reconciled with the
venue: orders in an unknown state are resolved by client order id (an intent never sent is
sent now under the same id if its bar is still the latest closed bar, otherwise abandoned),
missed fills are booked, positions and balance are compared; only then does trading resume.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from crucible.builtin import resolve_genome
from crucible.config import CrucibleConfig, load_crucible_config
from crucible.execution import ExecutionMixin
from crucible.hotswap import Challenger, PitCrew
from crucible.journal import OPEN_STATUSES, Journal, JournalError, JournalLock, archive_journal
from crucible.lineage import LoopMixin, initial_lineage
from crucible.oversight import OversightMixin
from crucible.reconcile import ReconcileMixin
from crucible.signals import ChunkedSignals, SignalEngine, check_genome
from crucible.slots import MarkBook, Slot
from crucible.venues.base import BAR_FIELDS, Bar, RetryPolicy, Venue, VenueError
from crucible.venues.factory import VENUES, make_venue
from crucible.watchtower import kill_switch_engaged
from forge.core.errors import ConfigError
from forge.gp import Genome

__all__ = ["Runtime", "run_live", "make_venue", "VENUES", "Supervised", "WorkerFactory"]


class Supervised(Protocol):
    """A child process the runtime keeps alive beside the bar loop (the Forge worker of the closed loop)."""

    def start(self) -> None: ...
    def check(self) -> None: ...
    def stop(self) -> None: ...


WorkerFactory = Callable[[CrucibleConfig, Callable[..., None]], Supervised]
"""``worker(cfg, report)`` → a :class:`Supervised`; ``report(kind, **data)`` journals its events."""

log = logging.getLogger("crucible")

Progress = Callable[[dict[str, Any]], None]
GROUP_COMMIT_S = 0.25  # replay venue: journal commit interval (wall seconds) between commit points
KILL_FILE_POLL_BARS = 16  # replay venue: bars between looks at the kill file (exchange venues: every bar)
FaultHook = Callable[[str, dict[str, Any]], None]


class Runtime(ReconcileMixin, ExecutionMixin, OversightMixin, LoopMixin):
    """The bench running on one venue with one journal (see module docstring).

    cfg: CrucibleConfig; venue: a Venue; journal: an open Journal; progress: callback receiving event
    dicts ({"event": "bar" | "order" | "fill" | "swap" | "kill" | "reject" | "reweight" | "reconcile" |
    "killswitch" | "stale" | "challenger" | "done", ...}); stop_event: set to stop after the current bar
    (positions are kept); fault: test hook called at named points ("intent_saved", "sent_not_acked",
    "fills_fetched", "bar_done") with a context dict — raising from it simulates a crash there.
    """

    def __init__(self, cfg: CrucibleConfig, venue: Venue, journal: Journal, *, progress: Progress | None = None,
                 stop_event: threading.Event | None = None, fault: FaultHook | None = None,
                 sleep: Callable[[float], bool] | None = None, clock: Callable[[], float] | None = None,
                 adopt: bool = False, commit_points: bool = True) -> None:
        self.cfg = cfg
        # commit points (intents durable before a send) guard against a venue that outlives this process; a
        # replay venue built by run_live dies with it, so there the intents ride on the next group commit
        self.commit_points = commit_points
        self.adopt = adopt  # a new journal may take the venue's existing positions as its baseline
        self.venue = venue
        self.journal = journal
        self.progress = progress or (lambda e: None)
        self.stop_event = stop_event or threading.Event()
        self.fault = fault or (lambda point, ctx: None)
        g = cfg.general
        live = getattr(venue, "live", False)
        # outage policy: order submits are retried (same client order id, after a lookup) under this policy;
        # on the replay venue nothing really sleeps (the budget is spent on the sum of the delays)
        self.retry = RetryPolicy(budget_s=60.0 * g.retry_budget_minutes, base_s=g.retry_base_seconds,
                                 max_s=g.retry_max_seconds,
                                 sleep=sleep if sleep is not None else (self.stop_event.wait if live else None),
                                 clock=clock or time.monotonic)
        self.outage: dict[str, Any] | None = None  # {"since_ms", "bars", "error"} while venue calls fail
        self.reject_until: dict[str, int] = {}  # slot -> bar open time (ms) before which no signal order is sent
        self.reject_count: dict[str, int] = {}
        self.reserve = 0.0  # USDT of bench capital not allocated to any slot (weights summing to < 1)
        self.unbooked_units: dict[str, float] = {}
        self._at: int | None = None  # open time of a bar re-processed after a restart (replay venue)
        self.halted: str | None = None  # why trading is halted (reconcile mismatch), None while trading
        self._bar_failed = False
        self.prefix = cfg.general.order_prefix
        self.bench_id = self._bench_identity()
        self.foreign_trades: set[str] = set()  # trade ids at the venue that are not this bench's (reported once)
        self.foreign_units: dict[str, float] = {}  # symbol -> signed units of those fills (reconcile explains them)
        self.engine = SignalEngine()
        pf = cfg.replay.prefetch_bars if hasattr(venue, "prefetch") else 0
        self.chunked = ChunkedSignals(self.engine, cfg.general.history_bars, pf) if pf > 0 else None
        self._progress_on = progress is not None
        self.slots: dict[str, Slot] = {}
        presets = cfg.presets(venue.name != "replay")
        for sc in cfg.slots:
            g = resolve_genome(sc.genome)
            check_genome(g, cfg.general.history_bars)  # a lookback beyond the window would trade flat forever
            self.slots[sc.id] = Slot(sc.id, sc.symbol, g, sc.genome, sc.capital,
                                     perpetual=presets[sc.id] == "futures", lineage=initial_lineage(sc.genome, g))
        self._perp = [s for s in self.slots.values() if s.perpetual]  # slots whose units pay funding
        self._funding_rates: dict[tuple[str, int], float] = {}
        hs = cfg.hotswap
        self.pit = PitCrew(cfg.general.champions_dir, require_signature=hs.signatures_required(venue.name != "replay"),
                           max_file_bytes=hs.max_file_bytes, max_json_depth=hs.max_json_depth,
                           max_genome_tokens=hs.max_genome_tokens, margin=hs.margin, alpha=hs.alpha,
                           history_bars=cfg.general.history_bars,
                           report=lambda kind, slot=None, **d: self.journal.event(kind, self.venue.now_ms(), slot, **d))
        self.challengers: dict[str, Challenger] = {}
        self.genome_book: dict[str, tuple[Genome, str, float | None]] = {}  # sha -> (genome, symbol, score)
        for s in self.slots.values():
            self.genome_book[s.genome.sha256] = (s.genome, s.symbol, None)
        self._journaled_weights: dict[str, float] | None = None
        self.marks = MarkBook(list(self.slots), 2 * max(cfg.cwo.lookback_bars + 1, cfg.hotswap.shadow_bars))
        self._alive_ids: tuple[str, ...] = ()
        self.kill_requested = False
        self.counters = {"bars": 0, "orders": 0, "fills": 0, "swaps": 0, "kills": 0, "reweights": 0,
                         "rejected_files": 0, "duplicates_ignored": 0, "abandoned": 0, "resent": 0,
                         "foreign_fills": 0, "outage_bars": 0, "lost": 0, "order_rejects": 0, "retargets": 0,
                         "stale_flattens": 0, "funding": 0, "rearms": 0}
        self.requests: list[str] = []
        self.new_requests: list[str] = []  # written this bar (the replay waits for the Forge to serve them)
        self.kill_info: dict[str, dict[str, Any]] = {}  # slot -> {"equity", "time_ms"} of its kill
        self.supervisor: Supervised | None = None  # the Forge worker (crucible live --forge)
        self.last_bar_ms: int | None = None
        self.last_cwo_ms: int | None = None
        self.bar_no = 0
        self.stopped_by = "end"
        self.until_ms: int | None = None
        self.reconcile_report: dict[str, Any] = {}

    def _emit(self, event: str, **data: Any) -> None:
        try:
            self.progress({"event": event, **data})
        except Exception:  # a broken dashboard never stops trading
            log.exception("progress callback failed")

    def process_bar(self, bars: dict[str, Bar], now: int | None = None) -> None:
        """Run one bar boundary (see module docstring) in one journal transaction, with a commit point
        before any order is sent.  now: venue time (ms) of the boundary (default: the venue clock)."""
        now = self.venue.now_ms() if now is None else now
        bar_time = max(b.open_time for b in bars.values()) if bars else now - 60_000
        cfg = self.cfg
        self._bar_failed = False
        with self.journal:
            if self._perp and bars:
                self._book_funding(bars)  # units held into this bar's open, before its fills
            try:
                self._sync_open_orders(now)
            except VenueError as exc:  # fills/orders unknown this bar: mark and report, trade nothing
                self._note_outage(exc, now)
            for s in self.slots.values():
                b = bars.get(s.symbol)
                if b is not None:
                    s.mark = b.close
            self.marks.push([s.equity() for s in self.slots.values()])
            for s in self.slots.values():  # terminated slots left with units (an order was in flight): close them
                if s.status != "live" and s.ledger.units != 0.0 and not self.journal.has_open_order(s.id) \
                        and s.mark > 0:
                    self.flatten(s, "cleanup", bar_time)
            trading = not self.kill_requested and self.halted is None and not self._bar_failed
            if self.kill_requested or self._kill_file_engaged():
                self._kill_switch(bar_time)
                trading = False
            if trading:
                try:
                    self._watchtower(bar_time, now)
                    if cfg.hotswap.enabled:
                        self._pit_crew(bars, bar_time, now)
                    self._signals(bars, bar_time)
                except VenueError as exc:
                    self._note_outage(exc, now)
            if self._bar_failed:
                self.counters["outage_bars"] += 1
                self.outage["bars"] += 1  # type: ignore[index]
            elif self.outage is not None:
                self.journal.event("outage_end", now, None, since_ms=self.outage["since_ms"], bars=self.outage["bars"])
                self._emit("outage_end", **self.outage)
                self.outage = None
            if trading and (self.last_cwo_ms is None or now - self.last_cwo_ms >= cfg.cwo.interval_seconds * 1000):
                self._cwo(now)
            if self.bar_no % cfg.general.snapshot_every == 0:
                self.journal.equity_snapshot(now, [(s.id, s.equity(), s.ledger.cash, s.ledger.units, s.mark,
                                                    s.weight, s.status) for s in self.slots.values()])
            self.journal.set_meta_at_commit("last_bar_ms", bar_time)
        self.last_bar_ms = bar_time
        self.bar_no += 1
        self.counters["bars"] += 1
        self.fault("bar_done", {"bar_time": bar_time, "bar_no": self.bar_no})
        if self._progress_on:
            self._emit("bar", time_ms=bar_time, bars=self.counters["bars"],
                       slots=[s.summary() for s in self.slots.values()])

    def _kill_file_engaged(self) -> bool:
        """The kill file exists (checked every bar on exchange venues, every ``KILL_FILE_POLL_BARS`` bars on a
        replay — a few milliseconds at full speed); once engaged it stays engaged."""
        if self.stopped_by == "kill_switch":
            return True
        if not getattr(self.venue, "live", False) and self.bar_no % KILL_FILE_POLL_BARS:
            return False
        return kill_switch_engaged(self.cfg.general.kill_file)

    def _signals(self, bars: dict[str, Bar], bar_time: int) -> None:
        g = self.cfg.general
        for sym, bar in bars.items():
            live = [s for s in self.slots.values() if s.symbol == sym and s.status == "live"]
            chs = [c for c in self.challengers.values() if c.symbol == sym]
            if not live and not chs:
                continue
            genomes = {s.id: s.genome for s in live}
            genomes.update({c.key: c.genome for c in chs})
            if self._at is not None:  # re-processing a bar after a restart: the venue as it was then
                at = self._at
                hist = lambda s_, n_: self.venue.history_at(s_, n_, at)  # type: ignore[attr-defined]  # noqa: E731
                pre = lambda s_, n_: self.venue.prefetch_at(s_, n_, at)  # type: ignore[attr-defined]  # noqa: E731
            else:
                hist = self.venue.history
                pre = getattr(self.venue, "prefetch", None)
            if self.chunked is not None:
                targets = self.chunked.latest(sym, genomes, bar.open_time, hist, pre)
            else:
                targets = self.engine.latest(genomes, hist(sym, g.history_bars))
            for c in chs:
                c.on_bar(bar.open, bar.close, targets[c.key], self.cfg.costs.taker_fee_bps,
                         self.cfg.costs.slippage_bps, g.min_order_notional)
            batch: list[tuple[Slot, float, float, str]] = []
            for s in live:
                t = targets[s.id]
                if t == s.target:
                    continue
                if self.journal.has_open_order(s.id):
                    continue  # one order in flight per slot; retry at the next bar
                if bar_time < self.reject_until.get(s.id, -1):
                    continue  # backing off after a rejection
                eq = s.equity()
                if eq <= 0:
                    continue
                qty = t * eq / bar.close - s.ledger.units
                if t == 0.0:
                    qty = -s.ledger.units
                if qty == 0.0 or (abs(qty) * bar.close < g.min_order_notional and t != 0.0):
                    s.target = t
                    continue
                batch.append((s, qty, t, "signal"))
            if batch:
                self.place_many(batch, bar_time)

    def run(self, max_bars: int | None = None, until_ms: int | None = None) -> dict[str, Any]:
        """Restore, reconcile, catch up on an unprocessed closed bar, then trade bar by bar.

        until_ms: stop once a bar closing at or after this venue time (ms UTC) has been processed;
        max_bars: stop after this many bars in this call (None: until the feed ends, the kill switch,
        or stop_event).  returns the summary dict (see :func:`run_live`).
        """
        t0 = time.perf_counter()
        self.restore()
        hist_t = self._start_with_venue()
        self._emit("start", slots=[s.summary() for s in self.slots.values()], venue=self.venue.name)
        latest = max((int(t[-1]) for t in hist_t.values() if len(t)), default=None)
        if self.last_bar_ms is None and latest is not None:
            # the last closed bar before this bench's first one, recorded at its first start (committed now):
            # a replay runtime killed before its first commit left no cursor, but it consumed the venue's bars
            # after this one -- the restart processes them again instead of starting at the venue's current bar
            first_start = self.journal.get_meta("start_bar_ms")
            if first_start is None:
                self.journal.set_meta("start_bar_ms", latest)
            elif latest > int(first_start) and hasattr(self.venue, "history_at"):
                self.last_bar_ms = int(first_start)
        if self.last_bar_ms is not None and latest is not None and latest > self.last_bar_ms \
                and hasattr(self.venue, "history_at"):
            self._replay_missed(latest)
        elif self.last_bar_ms is not None and latest is not None and latest > self.last_bar_ms:
            bars = {}
            for sym in hist_t:
                h = self.venue.history(sym, 1)
                if len(h["open_time"]) and int(h["open_time"][-1]) == latest:
                    bars[sym] = Bar(sym, latest, *(float(h[c][-1]) if c != "count" else int(h[c][-1])
                                                   for c in BAR_FIELDS[1:]))
            self.process_bar(bars)
        stale_s = self.cfg.watchtower.stale_feed_seconds
        self.until_ms = until_ms
        if getattr(self.venue, "live", False) or self.journal.synchronous == "FULL":
            return self._loop(max_bars, stale_s, t0)  # every bar committed
        # replay with a NORMAL/OFF journal: group commit — bars are committed together at most GROUP_COMMIT_S
        # apart; intents, kills, swaps and the kill switch are still committed before they act (commit
        # points).  A crash loses only bookkeeping the restart recomputes (fills are re-fetched from the
        # venue and de-duplicated by trade id).
        with self.journal:
            return self._loop(max_bars, stale_s, t0, group_commit_s=GROUP_COMMIT_S)

    def _loop(self, max_bars: int | None, stale_s: float, t0: float, group_commit_s: float = 0.0) -> dict[str, Any]:
        stale = False
        last_commit = time.monotonic()
        while True:
            if max_bars is not None and self.counters["bars"] >= max_bars:
                self.stopped_by = "max_bars"
                break
            if self.until_ms is not None and self.last_bar_ms is not None and self.last_bar_ms + 60_000 >= self.until_ms:
                self.stopped_by = "until"
                break
            if self.stopped_by == "kill_switch" and not self.journal.orders(OPEN_STATUSES):
                break
            if self.stop_event.is_set() and not self.kill_requested:
                self.stopped_by = "stop_event"
                break
            bars = self.venue.next_bars(timeout_s=stale_s)
            if bars is None:
                if getattr(self.venue, "live", False) and not self.stop_event.is_set():
                    if not stale:
                        self._stale_feed(stale_s)
                        stale = True
                    continue
                if self.kill_requested and self.stopped_by != "kill_switch":
                    self.process_bar({})
                break
            stale = False
            self.process_bar(bars)
            if self.supervisor is not None:
                self.supervisor.check()
                if self.new_requests and not getattr(self.venue, "live", False) and self.cfg.serve.replay_wait_s > 0:
                    self.journal.commit()  # the kill and its request are durable before the wait
                    self._await_forge(self.new_requests)
            self.new_requests.clear()
            if group_commit_s and time.monotonic() - last_commit >= group_commit_s:
                self.journal.commit()
                last_commit = time.monotonic()
        dt = time.perf_counter() - t0
        summary = self.summary(dt)
        self._emit("done", **summary)
        return summary

    def _stale_feed(self, stale_s: float) -> None:
        """No bar for ``stale_feed_seconds``: journal it and flatten every slot holding units (slots stay
        live: their signals trade again once bars flow)."""
        now = self.venue.now_ms()
        bar_time = (now // 60_000 - 1) * 60_000
        with self.journal:
            self.journal.event("stale", now, None, seconds=stale_s)
            for s in self.slots.values():
                if s.ledger.units != 0.0 and not self.journal.has_open_order(s.id):
                    self.flatten(s, "stale feed", bar_time)
                    self.counters["stale_flattens"] += 1
                s.target = 0.0 if not self.journal.has_open_order(s.id) else s.target
        log.warning("no bar for %.0f s: the bench is flattened until the feed comes back", stale_s)
        self._emit("stale", seconds=stale_s)

    def summary(self, seconds: float = 0.0) -> dict[str, Any]:
        return {"venue": self.venue.name, "journal": str(self.journal.path), "journal_sync": self.journal.synchronous,
                "stopped_by": self.stopped_by,
                "last_bar_ms": self.last_bar_ms, **self.counters, "seconds": seconds,
                "bars_per_s": self.counters["bars"] / seconds if seconds > 0 else None,
                "requests": list(self.requests), "reconcile": self.reconcile_report,
                "slots": [s.summary() for s in self.slots.values()],
                "reserve": self.reserve, "halted": self.halted,
                "total_equity": float(sum(s.equity() for s in self.slots.values()) + self.reserve)}


def _open_journal(cfg: CrucibleConfig, venue: Venue, jpath: Path, fresh: bool) -> Journal:
    """Take the journal's single-writer lock (before anything touches its files, archive included), archive an
    old journal when ``fresh`` (WAL checkpointed, a timestamped copy kept; nothing deleted) and open it with the
    configured synchronous mode (auto: FULL on exchanges, NORMAL on replay).  The lock is released on failure."""
    lock = JournalLock(jpath)
    lock.acquire()
    try:
        if fresh and jpath.exists():
            archive_journal(jpath)
        sync = cfg.general.journal_sync
        if sync == "auto":
            sync = "FULL" if getattr(venue, "live", False) else "NORMAL"
        return Journal(jpath, synchronous=sync, lock=lock)
    except BaseException:
        lock.release()
        raise


def run_live(config: str | Path | CrucibleConfig | None = None, *, venue: str | Venue = "replay",
             speed: float | None = None, max_bars: int | None = None, until_ms: int | None = None,
             journal_path: str | Path | None = None,
             stop_event: threading.Event | None = None, progress: Progress | None = None,
             fault: FaultHook | None = None, fresh: bool | None = None, adopt: bool = False,
             worker: WorkerFactory | None = None) -> dict[str, Any]:
    """Run the bench until the feed ends, ``max_bars`` bars, the kill switch or ``stop_event``.

    config: TOML path, CrucibleConfig, or None (``configs/crucible.toml``); venue: "replay",
    "bybit-testnet", "binance-demo" or a Venue instance; speed: replay speed as a multiple of real time
    (0/None = as fast as possible; overrides the config); max_bars: bars to process in this call;
    until_ms: stop once the bar closing at this venue time (ms UTC) has been processed;
    journal_path: SQLite journal (default ``[crucible] journal``); stop_event: set it to stop after the
    current bar (positions kept); progress: callback receiving event dicts (see :class:`Runtime`);
    fresh: archive an existing journal first (:func:`crucible.journal.archive_journal`: WAL checkpointed, a
    timestamped copy kept beside it; default: True when the runtime builds its own replay venue — a new
    replay cannot resume an old replay's exchange — else False).  The journal's single-writer lock is
    taken before anything else touches it: a second writer raises JournalLocked (exit 2) naming the pid.
    adopt: a new (empty or missing) journal facing positions at the venue starts only with adopt=True (they
    become the baseline); otherwise AdoptRequired (exit 2).  A reconcile mismatch halts trading
    (``[crucible] on_mismatch``) and the summary's "halted" says why.  On a replay venue built here (it lives
    and dies with this process) order intents are committed with the next group commit instead of before
    each send: there is no venue left to disagree with after a crash (an injected venue keeps commit points).
    SIGTERM (main thread only) engages the kill switch: everything is flattened, then the run stops.
    worker: ``worker(cfg, report)`` builds the supervised Forge worker that serves this bench's replacement
    requests (``crucible live --forge`` passes :func:`loop.supervisor.forge_worker`, ``forge serve`` on this
    config's ``[serve]`` table); it is started before the first bar, checked every bar and stopped with the
    run.  The runtime only calls ``start``/``check``/``stop`` (:class:`Supervised`): it imports no Forge.

    returns {"venue", "journal", "journal_sync": "FULL" | "NORMAL", "stopped_by": "end" | "max_bars" | "until" |
    "kill_switch" | "stop_event",
    "last_bar_ms", "bars", "orders", "fills", "swaps", "kills", "reweights", "rejected_files",
    "duplicates_ignored", "abandoned", "resent", "seconds", "bars_per_s", "requests": [paths],
    "reconcile": {...}, "slots": [per-slot dicts: slot, symbol, status, genome, equity, cash, units,
    realised, unrealised, fees, weight, target, fills, previous], "total_equity"}.
    raises ConfigError for a bad config/venue, GenomeError for a bad slot genome, JournalLocked when another
    process writes the journal, JournalError for a journal that is not one, corrupt, or fails mid-run.
    """
    cfg = config if isinstance(config, CrucibleConfig) else load_crucible_config(config)
    stop_event = stop_event or threading.Event()
    own_venue = not isinstance(venue, Venue)
    v = make_venue(cfg, venue, speed=speed, stop_event=stop_event) if own_venue else venue
    jpath = Path(journal_path or cfg.general.journal)
    if fresh is None:
        fresh = own_venue and v.name == "replay"
    try:
        journal = _open_journal(cfg, v, jpath, fresh)
        try:
            rt = Runtime(cfg, v, journal, progress=progress, stop_event=stop_event, fault=fault, adopt=adopt,
                         commit_points=not (own_venue and v.name == "replay"))
        except BaseException:
            journal.close()  # releases the lock
            raise
    except BaseException:
        if own_venue:
            v.close()
        raise
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def _on_term(signum: int, frame: Any) -> None:
            rt.kill_requested = True
            stop_event.set()

        old_handler = signal.signal(signal.SIGTERM, _on_term)
    if worker is not None:
        rt.supervisor = worker(cfg, lambda kind, **d: journal.event(kind, v.now_ms(), None, **d))
        rt.supervisor.start()
    try:
        return rt.run(max_bars=max_bars, until_ms=until_ms)
    except sqlite3.Error as exc:  # the journal failed mid-run (disk full, corrupted, locked): one line, exit 2
        raise JournalError(f"{jpath}: SQLite error while trading: {exc}") from None
    finally:
        if rt.supervisor is not None:
            rt.supervisor.stop()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        journal.close()
        if own_venue:
            v.close()
