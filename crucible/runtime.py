"""The Crucible live runtime: one loop shared by the replay venue and ccxt exchanges.

Per closed 1-minute bar (venue clock), in this order:

1. sync fills of open orders (de-duplicated by trade id) into the journal and the slot ledgers;
2. mark every slot at the bar's close; the bench daily loss stop; global kill switch (file, or SIGINT /
   SIGTERM with ``on_exit = "flatten"``) → flatten all, wait for the fills, stop;
3. Watchtower: a slot at or below the kill floor is flattened and terminated, a replacement
   request is written — also on a bar whose venue calls fail (an outage) or that a newer bar already
   follows (a backlog: such a bar is marked and checked, never traded);
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

Each bar's order work (sends, retries, lookups, the venue's own read retries) ends by
``[crucible] bar_order_deadline_seconds`` from the bar's start: an intent reached after it is dropped, an order
still unknown is resolved by lookup on later bars, so an outage never holds the loop for minutes.  Order sizes:
:meth:`Runtime._size` (|target notional| <= ``max_leverage`` x equity with a cost buffer).

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
import operator
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from math import isnan
from pathlib import Path
from typing import Any, Protocol

from crucible.alerts import AlertSink
from crucible.builtin import resolve_genome
from crucible.config import CrucibleConfig, load_crucible_config
from crucible.execution import ExecutionMixin, no_fault
from crucible.hotswap import Challenger, PitCrew
from crucible.journal import OPEN_STATUSES, Journal, JournalError, JournalLock, archive_journal
from crucible.lineage import LoopMixin, initial_lineage
from crucible.oversight import OversightMixin
from crucible.panel import PanelSignals, setup_runtime_panel
from crucible.passive import PassiveMixin
from crucible.reconcile import ReconcileMixin
from crucible.signals import ChunkedSignals, SignalEngine, check_genome
from crucible.slots import MarkBook, Slot, bench_key, key_fingerprint
from crucible.venues.base import BAR_FIELDS, Bar, RetryPolicy, Venue, VenueError
from crucible.venues.factory import VENUES, make_venue
from crucible.watchtower import kill_switch_engaged
from forge.core.errors import ConfigError, GenomeError
from forge.gp import Genome

__all__ = ["Runtime", "run_live", "make_venue", "VENUES", "Supervised", "WorkerFactory"]

_status_of = operator.attrgetter("status")
_genome_of = operator.attrgetter("genome")
_target_of = operator.attrgetter("target")


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


class Runtime(ReconcileMixin, PassiveMixin, ExecutionMixin, OversightMixin, LoopMixin):
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
        self.fault = fault or no_fault
        g = cfg.general
        live = getattr(venue, "live", False)
        self._live = bool(live)  # an exchange venue (class attribute; a replay venue has none)
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
        # the bench key tags every client order id (crucible.slots.client_order_id); an exchange needs a real one
        self.bench_key, self.bench_key_source = bench_key(exchange=venue.name != "replay")
        have_fp = journal.get_meta("bench_key_id")
        if have_fp and have_fp != key_fingerprint(self.bench_key):
            raise ConfigError(f"{journal.path}: the bench key ({self.bench_key_source}) is not the one this journal's "
                              "orders were tagged with; set the same CRUCIBLE_BENCH_KEY / FORGE_SIGNING_KEY, or start "
                              "a new journal")
        self.collided: set[str] = set()  # intents whose client order id the venue holds as a foreign order
        self._reissues: dict[str, int] = {}  # re-issued intent -> collisions in its chain so far
        self._reduce_only: set[str] = set()  # client order ids sent reduce-only (perpetual flattens)
        self._bar_deadline: float | None = None  # retry.clock() time at which this bar's order work ends
        self.pending_out: dict[str, float] = {}  # slot -> USDT the CWO wants out but waits for a reducing fill
        self.alerts = AlertSink(g.alert_webhook, timeout_s=g.alert_timeout_seconds, bench=self.bench_id)
        self.exit_signal: str | None = None  # "SIGINT" / "SIGTERM" once one arrived
        self._exit_deadline: float | None = None  # time.monotonic() by which the exit stops waiting for fills
        self._day: tuple[int, float] | None = None  # (UTC day number, bench equity at its first bar)
        self._scan_since: int | None = None  # fills of the account scanned up to here (exchange venues)
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
        self._slot_list = tuple(self.slots.values())  # the bench's slots in order (they never change after this)
        self._signal_slots: dict[str, tuple] = {}  # symbol -> ((statuses, genomes), (live slots, genomes, panel)): _signals
        # panel slots (other instruments' features, regime terminals) and regime slots: crucible.panel
        self.panel = PanelSignals(cfg.general.history_bars, pf, cfg.general.panel_wait_seconds, live=live,
                                  stop_wait=self.stop_event.wait if live else None)
        self.regime_alloc = setup_runtime_panel(self)
        self.leverage: dict[str, float] = {}
        for sc in cfg.slots:
            lev = sc.leverage(cfg.general.max_leverage)
            if not self.slots[sc.id].perpetual and lev > 1.0:
                raise ConfigError(f"{cfg.source} [[slots]] {sc.id}: max_leverage {lev} on a spot slot (spot cash may "
                                  "not go negative: at most 1)")
            self.leverage[sc.id] = lev
        self._buffer = (cfg.costs.taker_fee_bps + cfg.costs.slippage_bps + cfg.general.exposure_buffer_bps) / 1e4
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
        self._cwo_rows: tuple[list[int], Any] = ([], None)  # (live slot rows, as an int64 array) of the CWO
        self.kill_requested = False
        self.counters = {"bars": 0, "orders": 0, "fills": 0, "swaps": 0, "kills": 0, "reweights": 0,
                         "rejected_files": 0, "duplicates_ignored": 0, "abandoned": 0, "resent": 0,
                         "foreign_fills": 0, "outage_bars": 0, "lost": 0, "order_rejects": 0, "retargets": 0,
                         "stale_flattens": 0, "funding": 0, "rearms": 0, "foreign_orders": 0, "dropped_intents": 0,
                         "stale_bars": 0, "panel_skips": 0}
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
        self._init_passive()  # execution policies, the journal's execution tables (crucible.passive)

    def _alert(self, kind: str, now: int, **data: Any) -> None:
        """An operator alert (:mod:`crucible.alerts`: the log and the configured webhook; never blocks)."""
        try:
            self.alerts.alert(kind, now, **data)
        except Exception:  # noqa: BLE001 - alerting never stops trading
            log.exception("alert %s failed", kind)

    def restore(self) -> None:
        """:meth:`ReconcileMixin.restore`, then what this module keeps in the journal: the bench key's fingerprint
        (a later start with another key is refused in ``__init__``), the intents that collided with foreign
        orders, the capital waiting to leave each slot (last ``transfer`` event) and the UTC day's starting
        equity (last ``day_start`` event)."""
        self.exec_book.reload()
        super().restore()
        j = self.journal
        if j.get_meta("bench_key_id") is None:
            j.set_meta("bench_key_id", key_fingerprint(self.bench_key))
        self.collided = {o["client_order_id"] for o in j.orders(["collided"])}
        last = j.events("transfer")[-1:]
        self.pending_out = {k: float(v) for k, v in (last[0]["data"].get("pending") or {}).items()} if last else {}
        day = j.events("day_start")[-1:]
        if day:
            self._day = (int(day[0]["data"]["day"]), float(day[0]["data"]["equity"]))
        self._restore_targets()

    def _restore_targets(self) -> None:
        """The slots' targets as they were at the end of the last committed bar (journal meta ``slot_targets``,
        written with the cursor): a target the journal's orders do not show -- NaN ("re-size at the next signal")
        after a capital transfer left the exposure off target or capital waiting to leave (``_move_capital``), or a
        signal too small to trade -- survives a restart, so the next bar decides as the uninterrupted run did.  A
        slot with an order or execution intent decided after that bar (a commit point of a bar processed again
        now) keeps the target :meth:`_revert_target` gave it from that order."""
        snap = self.journal.get_meta("slot_targets")
        if not snap or snap.get("bar") != self.last_bar_ms:
            return
        bar = int(self.last_bar_ms)
        db = self.journal.db
        later = {r[0] for r in db.execute("SELECT DISTINCT slot FROM orders WHERE bar_time > ?", (bar,))}
        if self.exec_book.ok:
            later |= {r[0] for r in db.execute("SELECT DISTINCT slot FROM exec_intents WHERE bar_time > ?", (bar,))}
        for sid, t in (snap.get("targets") or {}).items():
            if sid in self.slots and sid not in later:
                self.slots[sid].target = float("nan") if t is None else float(t)

    def reconcile(self) -> dict[str, Any]:
        """Check the orders whose outcome is unknown against the venue first (a foreign order under one of their ids
        is marked "collided" and never booked; re-issued only if its bar is still the latest closed bar), then
        :meth:`ReconcileMixin.reconcile`."""
        now = self.venue.now_ms()
        latest = (now // 60_000 - 1) * 60_000
        pending = [o for o in self.journal.orders(OPEN_STATUSES) if o["status"] in ("unknown", "intent")]
        for o in pending:
            self._check_unresolved([o], now, reissue=o["bar_time"] >= latest)
        self._reconcile_resting(now)  # passive slots: unsent resting orders of the latest bar, stray open orders
        return super().reconcile()

    def request_exit(self, signame: str) -> None:
        """SIGINT / SIGTERM (first one): per ``[crucible] on_exit``, "flatten" engages the kill switch (every slot
        closed by market orders, reduce-only on perpetuals where they reduce the net position) and the loop waits up
        to ``exit_wait_seconds`` for their fills; "leave" stops after the current bar with positions kept."""
        self.exit_signal = signame
        self._exit_deadline = time.monotonic() + self.cfg.general.exit_wait_seconds
        log.warning("%s: %s", signame, "flattening, then stopping" if self.cfg.general.on_exit == "flatten"
                    else "stopping after this bar, positions left open")
        if self.cfg.general.on_exit == "flatten":
            self.kill_requested = True
        else:
            self.stop_event.set()

    def still_open(self) -> dict[str, Any]:
        """What is still open: {"positions": [{"slot", "symbol", "units"}], "orders": [client order ids]}."""
        return {"positions": [{"slot": s.id, "symbol": s.symbol, "units": s.ledger.units}
                              for s in self.slots.values() if s.ledger.units != 0.0],
                "orders": [o["client_order_id"] for o in self.journal.orders(OPEN_STATUSES)]}

    def _daily_loss(self, now: int, equity: list[float] | None = None) -> None:
        """The bench-level daily loss stop: the bench's equity (slots + reserve) at its first bar of the UTC day is
        kept (journaled ``day_start``); once it has fallen by ``daily_loss_limit`` USDT the bench is flattened and
        halted (an alert says so).  equity: every slot's equity now, in slot order, when the caller has it."""
        limit = self.cfg.general.daily_loss_limit
        if equity is None:
            equity = [s.equity() for s in self.slots.values()]
        eq = float(sum(equity) + self.reserve)
        day = now // 86_400_000
        if self._day is None or self._day[0] != day:
            self._day = (day, eq)
            self.journal.event("day_start", now, None, day=day, equity=eq)
        if limit > 0 and self.halted is None and eq - self._day[1] <= -limit:
            self._halt(f"daily loss stop: bench equity {eq:.2f} USDT is {self._day[1] - eq:.2f} below the day's start "
                       f"({self._day[1]:.2f}; limit {limit:.2f})", now, action="flatten")

    def _emit(self, event: str, **data: Any) -> None:
        try:
            self.progress({"event": event, **data})
        except Exception:  # a broken dashboard never stops trading
            log.exception("progress callback failed")

    def process_bar(self, bars: dict[str, Bar], now: int | None = None) -> None:
        """Run one bar boundary (see module docstring) in one journal transaction, with a commit point
        before any order is sent.  now: venue time (ms) of the boundary (default: the venue clock)."""
        now = self.venue.now_ms() if now is None else now
        if bars:
            bar_time = None  # max(b.open_time for b in bars.values()), as a loop
            for b in bars.values():
                t = b.open_time
                if bar_time is None or t > bar_time:
                    bar_time = t
        else:
            bar_time = now - 60_000
        cfg = self.cfg
        self._bar_failed = False
        # one deadline for this bar's order work (sends, their retries, lookups): a jammed venue cannot hold the loop
        self._bar_deadline = self.retry.clock() + cfg.general.bar_order_deadline_seconds
        # a newer bar is already waiting (the loop fell behind): mark this one, run the kill rule, send no signals
        stale = bool(bars) and self.venue.stale_backlog()
        self.venue.set_deadline(cfg.general.bar_order_deadline_seconds)  # the venue's own read retries end there too
        try:
            self._process_bar(bars, now, bar_time, stale)
        finally:
            self._bar_deadline = None
            self.venue.set_deadline(None)

    def _process_bar(self, bars: dict[str, Bar], now: int, bar_time: int, stale: bool) -> None:
        cfg = self.cfg
        self._exec_bar = bar_time
        with self.journal:
            if self._perp and bars:
                self._book_funding(bars)  # units held into this bar's open, before its fills
            try:
                self._sync_open_orders(now)
                if self._live:
                    self._scan_foreign(now)  # foreign orders are seen every bar, not only when ours are in flight
            except VenueError as exc:  # fills/orders unknown this bar: mark and report, trade nothing
                self._note_outage(exc, now)
            equity = []
            for s in self.slots.values():
                b = bars.get(s.symbol)
                if b is not None:
                    s.mark = b.close
                led, mark = s.ledger, s.mark
                equity.append(led.cash + led.units * mark if mark > 0 else led.cash)  # s.equity()
            self.marks.push(equity)
            self._exec_marks(bars, bar_time)  # markouts of earlier fills (crucible.passive)
            if self._cancel_due:
                self._retry_cancels(bar_time, now)  # resting orders whose cancel was not confirmed yet
            for s in self.slots.values():  # terminated slots left with units (an order was in flight): close them
                if s.status != "live" and s.ledger.units != 0.0 and not self.journal.has_open_order(s.id) \
                        and s.mark > 0:
                    self.flatten(s, "cleanup", bar_time)  # an order: no ledger moves before _daily_loss
            if bars:
                self._daily_loss(now, equity)
            trading = not self.kill_requested and self.halted is None and not self._bar_failed and not stale
            if stale:
                self.counters["stale_bars"] += 1
            if self.kill_requested or self._kill_file_engaged():
                self._kill_switch(bar_time)
                trading = False
            elif self.halted is None and (self._bar_failed or stale):
                try:  # an outage or a backlog blinds nothing: the kill rule runs on this bar's marks
                    self._watchtower(bar_time, now)
                except VenueError as exc:
                    self._note_outage(exc, now)
            if trading:
                try:
                    self._watchtower(bar_time, now)
                    if cfg.hotswap.enabled:
                        self._pit_crew(bars, bar_time, now)
                    self._signals(bars, bar_time)
                    if self.policies:
                        self._work_intents(bars, bar_time)  # passive slots: cancel/replace, cross at the deadline
                        self._arm_dcp(now)
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
            # the slots' targets at the end of this bar, with the cursor (restore: Runtime._restore_targets)
            # (the targets are taken now; the dict is built only for the bar whose cursor a commit writes)
            keys, tg = self.slots.keys(), tuple(map(_target_of, self._slot_list))  # (the bench's slots never change)
            self.journal.set_meta_at_commit("slot_targets", lambda: {"bar": bar_time, "targets": {
                k: (None if isnan(t) else t) for k, t in zip(keys, tg)}})
        self.last_bar_ms = bar_time
        self._after_bar(bar_time)

    def _after_bar(self, bar_time: int) -> None:
        self.bar_no += 1
        self.counters["bars"] += 1
        if self.fault is not no_fault:
            self.fault("bar_done", {"bar_time": bar_time, "bar_no": self.bar_no})
        if self._progress_on:
            self._emit("bar", time_ms=bar_time, bars=self.counters["bars"],
                       slots=[s.summary() for s in self.slots.values()])

    def _kill_file_engaged(self) -> bool:
        """The kill file exists (checked every bar on exchange venues, every ``KILL_FILE_POLL_BARS`` bars on a
        replay — a few milliseconds at full speed); once engaged it stays engaged."""
        if self.stopped_by == "kill_switch":
            return True
        if not self._live and self.bar_no % KILL_FILE_POLL_BARS:
            return False
        return kill_switch_engaged(self.cfg.general.kill_file)

    def _signals(self, bars: dict[str, Bar], bar_time: int) -> None:
        g = self.cfg.general
        journal, leverage, reject_until = self.journal, self.leverage, self.reject_until
        # the live slots of a symbol, their genomes and the panel's share of them are rebuilt only when a slot's status
        # or genome changed (kills, swaps, re-arms, stops) or challengers shadow (then every bar)
        slots = self._slot_list
        sig = None if self.challengers else (tuple(map(_status_of, slots)), tuple(map(_genome_of, slots)))
        memo = self._signal_slots
        for sym, bar in bars.items():
            m = memo.get(sym) if sig is not None else None
            if m is not None and m[0] == sig:
                live, genomes, panel = m[1]
                chs = []
            else:
                live = [s for s in slots if s.symbol == sym and s.status == "live"]
                chs = [c for c in self.challengers.values() if c.symbol == sym] if self.challengers else []
                genomes = {s.id: s.genome for s in live}
                for c in chs:
                    genomes[c.key] = c.genome
                panel = self.panel.split(genomes)  # crucible.panel's genomes
                if panel:
                    genomes = {k: g for k, g in genomes.items() if k not in panel}
                if sig is not None:
                    memo[sym] = (sig, (live, genomes, panel))
            if not live and not chs:
                continue
            if self._at is not None:  # re-processing a bar after a restart: the venue as it was then
                at = self._at
                hist = lambda s_, n_: self.venue.history_at(s_, n_, at)  # type: ignore[attr-defined]  # noqa: E731
                pre = lambda s_, n_: self.venue.prefetch_at(s_, n_, at)  # type: ignore[attr-defined]  # noqa: E731
            else:
                hist = self.venue.history
                pre = getattr(self.venue, "prefetch", None)
            if not genomes:
                targets = {}
            elif self.chunked is not None:
                targets = self.chunked.latest(sym, genomes, bar.open_time, hist, pre)
            else:
                targets = self.engine.latest(genomes, hist(sym, g.history_bars))
            if panel:  # a slot with a late instrument gets no target: it skips the bar (panel_skip journaled)
                targets.update(self.panel.targets(self.venue, sym, panel, bar.open_time, at=self._at,
                                                  report=self._panel_skip))
            for c in chs:
                c.on_bar(bar.open, bar.close, targets.get(c.key, c.target), self.cfg.costs.taker_fee_bps,
                         self.cfg.costs.slippage_bps, g.min_order_notional)
            batch: list[tuple[Slot, float, float, str]] = []
            close = bar.close
            for s in live:
                t = targets.get(s.id)
                if t is None:
                    continue
                led, mark = s.ledger, s.mark
                eq = led.cash + led.units * mark if mark > 0 else led.cash  # s.equity()
                units = led.units  # past its cap (never when flat: 0 * close > a leverage (> 0) x max(eq, 0) is False)
                over = units != 0.0 and abs(units) * close > leverage[s.id] * (0.0 if 0.0 > eq else eq) * (1.0 + 1e-9)
                if t == s.target and not over:
                    continue
                if s.id in self.policies:  # a passive slot: the target change becomes an intent (crucible.passive)
                    self._passive_signal(s, t, over, bar, bar_time)
                    continue
                if journal.has_open_order(s.id):
                    continue  # one order in flight per slot; retry at the next bar
                if bar_time < reject_until.get(s.id, -1) and not over:
                    continue  # backing off after a rejection (an order reducing an over-cap exposure still goes)
                qty = self._size(s, t, eq, close)
                if qty is None:
                    continue
                if qty == 0.0 or (abs(qty) * close < g.min_order_notional and t != 0.0):
                    s.target = t
                    continue
                batch.append((s, qty, t, "signal"))
            if batch:
                self.place_many(batch, bar_time)

    def _panel_skip(self, kind: str, key: str, **data: Any) -> None:
        """A panel slot (or challenger) skipped a bar: an instrument it reads had not closed it in time (an operator
        alert, once, when the live book feed went down: ``book_feed_error``)."""
        self.counters["panel_skips"] += 1
        self.journal.event(kind, self.venue.now_ms(), key if key in self.slots else None, genome_key=key, **data)
        if data.get("book_feed_error") and not getattr(self, "_book_feed_alerted", False):
            self._book_feed_alerted = True
            self._alert("book_feed_down", self.venue.now_ms(), error=data["book_feed_error"],
                        note="slots reading order books skip every bar until the bench restarts with a feed")
        self._emit(kind, key=key, **data)

    def _size(self, s: Slot, t: float, eq: float, price: float) -> float | None:
        """The order (signed base units) taking slot ``s`` to target exposure ``t`` in [-1, 1] at ``price``, or None
        when it cannot trade (equity <= 0 and no units to close).  The target is first multiplied by the slot's
        ``size_multiplier`` (the champion's signed fractional-Kelly sizing; 1.0 for unit-sized champions).

        The target notional is ``t x (equity - capital waiting to leave the slot)``, clipped to
        ``max_leverage x equity / (1 + fee + slippage + exposure_buffer_bps)``: at every decision |target notional|
        <= max_leverage x equity, with room for the costs of the fill at the next open (so a spot slot's cash stays
        >= 0); a spot buy is further capped at the cash it costs with that buffer.  t = 0 closes every unit."""
        if t == 0.0:
            return -s.ledger.units
        if eq <= 0:
            return None
        # (max(a, b) / min(a, b) of two numbers written as ``b if b > a else a`` / ``b if b < a else a``: the same result)
        base = eq - self.pending_out.get(s.id, 0.0)
        base = base if base > 0.0 else 0.0  # max(0.0, eq - pending)
        cap = self.leverage[s.id] * eq / (1.0 + self._buffer)
        notional = t * s.size_multiplier * base
        notional = notional if notional < cap else cap  # min(cap, ...)
        notional = notional if notional > -cap else -cap  # max(-cap, ...): the champion's signed sizing (1.0 = unit)
        qty = notional / price - s.ledger.units
        if not s.perpetual and qty > 0:  # spot: a buy (a cover and a new long together) is paid from cash
            cash = s.ledger.cash
            buy = (cash if cash > 0.0 else 0.0) / (price * (1.0 + self._buffer))  # max(0.0, cash) / ...
            qty = buy if buy < qty else qty  # min(qty, buy)
        return qty

    def run(self, max_bars: int | None = None, until_ms: int | None = None) -> dict[str, Any]:
        """Restore, reconcile, catch up on an unprocessed closed bar, then trade bar by bar.

        until_ms: stop once a bar closing at or after this venue time (ms UTC) has been processed;
        max_bars: stop after this many bars in this call (None: until the feed ends, the kill switch,
        or stop_event).  returns the summary dict (see :func:`run_live`).
        """
        t0 = time.perf_counter()
        self._check_key_permissions()
        self.restore()
        if self.panel.books is not None and self.panel.books.live:
            self.panel.books.start()  # the live book feed (crucible.books): its first lens bar closes a minute on
        hist_t = self._start_with_venue()
        self._warm_kernels()
        warn = self.passive_warning()
        if warn:
            log.warning(warn)
        self._emit("start", slots=[s.summary() for s in self.slots.values()], venue=self.venue.name,
                   **({"warning": warn} if warn else {}))
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

    def _warm_kernels(self) -> None:
        """Compile the numba kernels a bar uses before the first bar: every live slot's (and challenger's) genome is
        run once on the venue's latest ``history_bars`` per symbol, and the passive slots' pricing and policy kernels
        once (:meth:`PassiveMixin._warm_passive`), results discarded.  A fresh install compiles the kernels on first
        use (tens of seconds on a loaded 2-core machine); inside a bar that time counts against
        ``bar_order_deadline_seconds`` and the bar's intents were dropped unsent ("abandoned"): the first orders of a
        cold start differed from a warm one.  Panel genomes (:mod:`crucible.panel`) compile on their first bar."""
        t0 = time.perf_counter()
        for sym in sorted({s.symbol for s in self.slots.values()}):
            genomes = {s.id: s.genome for s in self.slots.values() if s.symbol == sym and s.status == "live"}
            genomes.update({c.key: c.genome for c in self.challengers.values() if c.symbol == sym})
            genomes = {k: g for k, g in genomes.items() if not self.panel.handles(g)}
            if not genomes:
                continue
            try:
                self.engine.positions(genomes, self.venue.history(sym, self.cfg.general.history_bars))
            except (VenueError, GenomeError) as exc:  # the first bar compiles (or reports the genome) instead
                log.warning("signal warm-up for %s skipped: %s", sym, exc)
        try:
            self._warm_passive()
        except VenueError as exc:
            log.warning("passive execution warm-up skipped: %s", exc)
        log.info("kernels ready in %.1f s", time.perf_counter() - t0)

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
            if self.stopped_by == "kill_switch":
                if self._exit_deadline is None:
                    self._exit_deadline = time.monotonic() + self.cfg.general.exit_wait_seconds
                if not self.journal.orders(OPEN_STATUSES):
                    break
                if time.monotonic() >= self._exit_deadline:
                    log.warning("exit: flatten orders still open after %.0f s", self.cfg.general.exit_wait_seconds)
                    break
                if getattr(self.venue, "live", False):  # market orders fill on arrival: look them up, not a bar
                    self._await_flatten()
                    continue
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
        if (self.exit_signal or self.stopped_by == "kill_switch") and (summary["still_open"]["positions"]
                                                                       or summary["still_open"]["orders"]):
            log.warning("stopped (%s) with positions or orders still open: %s", self.stopped_by, summary["still_open"])
        self._emit("done", **summary)
        return summary

    def _check_key_permissions(self) -> None:
        """Refuse to start when the venue reports that the API key may withdraw funds (a trading bench needs
        none; a leaked withdrawing key empties the account).  Venues that do not report permissions pass."""
        perms = self.venue.api_permissions()
        if perms is None:
            return
        if perms.get("withdraw"):
            raise ConfigError(f"{self.venue.name}: the API key may withdraw funds ({perms.get('raw')}); create a key "
                              "without withdrawal permission for the Crucible")
        log.info("%s: API key permissions checked (no withdrawal)", self.venue.name)

    def _await_flatten(self) -> None:
        """Exchange venues, while the kill switch waits for its flatten fills: look the open orders up (and book
        their fills) about once a second, without waiting for the next bar."""
        self.stop_event.wait(1.0)
        now = self.venue.now_ms()
        self._bar_deadline = self.retry.clock() + self.cfg.general.bar_order_deadline_seconds
        self.venue.set_deadline(self.cfg.general.bar_order_deadline_seconds)
        try:
            with self.journal:
                self._sync_open_orders(now)
                self._kill_switch((now // 60_000 - 1) * 60_000)  # slots whose order was in flight close now
        except VenueError as exc:
            with self.journal:
                self._note_outage(exc, now)
        finally:
            self._bar_deadline = None
            self.venue.set_deadline(None)

    def _stale_feed(self, stale_s: float) -> None:
        """No bar for ``stale_feed_seconds``: journal it and flatten every slot holding units (slots stay
        live: their signals trade again once bars flow)."""
        now = self.venue.now_ms()
        bar_time = (now // 60_000 - 1) * 60_000
        with self.journal:
            self.journal.event("stale", now, None, seconds=stale_s)
            for s in self.slots.values():
                self._clear_resting(s, now)  # resting orders are cancelled before the flatten
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
                "reserve": self.reserve, "halted": self.halted, "outage": dict(self.outage) if self.outage else None,
                "exit_signal": self.exit_signal, "still_open": self.still_open(),
                "alerts": len(self.alerts.history), "bench_key": self.bench_key_source,
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
    SIGINT (Ctrl-C) and SIGTERM (handled in the main thread only): per ``[crucible] on_exit``, "flatten" (default)
    engages the kill switch — every slot's units are closed by market orders at the next bar (reduce-only on
    perpetuals where they reduce the bench's net position), the loop keeps running (exchange venues: the orders are
    looked up about once a second; replay: the next bar's open fills them) until they have filled or
    ``exit_wait_seconds`` have passed — or "leave" stops after the current bar with positions kept; either way the
    summary is returned (and ``crucible live`` prints it, as after --max-bars) with ``still_open`` listing the
    positions and orders left.  A second SIGINT/SIGTERM exits at once (KeyboardInterrupt, exit status 130); the
    journal stays consistent (intents are committed before they are sent).  Exchange venues need a bench key
    (:func:`crucible.slots.bench_key`: ``CRUCIBLE_BENCH_KEY`` or ``FORGE_SIGNING_KEY``; BenchKeyMissing, exit 2,
    without) and an API key that cannot withdraw where the venue reports permissions (ConfigError otherwise).
    worker: ``worker(cfg, report)`` builds the supervised Forge worker that serves this bench's replacement
    requests (``crucible live --forge`` passes :func:`loop.supervisor.forge_worker`, ``forge serve`` on this
    config's ``[serve]`` table); it is started before the first bar, checked every bar and stopped with the
    run.  The runtime only calls ``start``/``check``/``stop`` (:class:`Supervised`): it imports no Forge.

    returns {"venue", "journal", "journal_sync": "FULL" | "NORMAL", "stopped_by": "end" | "max_bars" | "until" |
    "kill_switch" | "stop_event", "exit_signal": "SIGINT" | "SIGTERM" | None, "still_open": {"positions", "orders"},
    "outage": {"since_ms", "bars", "error"} | None (an outage still going on), "halted": reason | None,
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
    old_handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def _on_signal(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if rt.exit_signal is not None:  # the second one: exit at once
                stop_event.set()
                log.warning("%s again: exiting now; still open: %s", name, rt.still_open())
                raise KeyboardInterrupt
            rt.request_exit(name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, _on_signal)
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
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
        if rt.panel.books is not None:
            rt.panel.books.close()
        rt.alerts.close()
        journal.close()
        if own_venue:
            v.close()
