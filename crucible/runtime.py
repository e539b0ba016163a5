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
from typing import Any

import numpy as np

from crucible.allocator import eg_weights, scores_nb
from crucible.bench import Ledger, MarkBook, Slot, client_order_id, new_bench_id, parse_client_order_id
from crucible.builtin import resolve_genome
from crucible.config import CrucibleConfig, load_crucible_config
from crucible.hotswap import Challenger, PitCrew
from crucible.journal import OPEN_STATUSES, Journal, JournalError, JournalLock, archive_journal
from crucible.signals import ChunkedSignals, SignalEngine
from crucible.venues.base import (BAR_FIELDS, Bar, Fill, RetryPolicy, Venue, VenueAuthError, VenueError,
                                  VenueNetworkError, VenueRejected)
from crucible.watchtower import breaches_floor, kill_switch_engaged, write_replacement_request
from forge.backtest.metrics import sharpe_per_bar_of_equity
from forge.core.errors import ConfigError
from forge.gp import Genome

__all__ = ["Runtime", "run_live", "make_venue", "VENUES"]

log = logging.getLogger("crucible")

VENUES = ("replay", "bybit-testnet", "binance-demo")
Progress = Callable[[dict[str, Any]], None]
GROUP_COMMIT_S = 0.25  # replay venue: journal commit interval (wall seconds) between commit points
WEIGHT_TOL = 1e-6  # a reweight is journaled when some weight moved by more than this (fraction of capital)
REBALANCE_TOL = 0.05  # a transfer re-sizes a slot whose exposure is off target by more than this fraction of equity
MAX_REJECT_BACKOFF_BARS = 1440  # a slot's order-rejection backoff doubles up to one day of bars
CLOSED_STATUSES_NOT_STANDING = ("abandoned", "rejected", "canceled", "lost")
FaultHook = Callable[[str, dict[str, Any]], None]


class _Stop(Exception):
    pass


def _replay_bars(cfg: CrucibleConfig) -> dict[str, Any]:
    from forge.data.loader import load_bars, load_sample

    symbols = sorted({s.symbol for s in cfg.slots})
    paths: dict[str, list[str]] = {}
    for item in cfg.replay.data:
        sym, sep, path = item.partition("=")
        if not sep or not sym or not path:
            raise ConfigError(f"{cfg.source} [replay] data: {item!r} must look like 'SYMBOL=path'")
        paths.setdefault(sym.strip().upper(), []).append(path.strip())
    out = {}
    for sym in symbols:
        if sym in paths:
            out[sym] = load_bars(paths[sym])[0]
        elif sym == "BTCUSDT":
            out[sym] = load_sample()[0]
        else:
            raise ConfigError(f"{cfg.source}: no replay data for {sym} (add 'SYMBOL=path' to [replay] data; "
                              "only BTCUSDT is embedded)")
    return out


def make_venue(cfg: CrucibleConfig, venue: str = "replay", *, speed: float | None = None,
               max_bars: int | None = None, stop_event: threading.Event | None = None) -> Venue:
    """Build the venue named ``venue`` (one of ``VENUES``) from the config.

    replay: the configured bars (default: embedded BTCUSDT sample) from ``replay.warmup_bars``;
    speed overrides ``replay.speed``; max_bars limits the replay.  bybit-testnet / binance-demo:
    :class:`crucible.venues.ccxt_venue.CcxtVenue` with keys from environment variables.
    raises ConfigError for an unknown venue or missing data.
    """
    if venue == "replay":
        from crucible.venues.replay import ReplayVenue

        bars = _replay_bars(cfg)
        n = min(df.height for df in bars.values())
        start = min(cfg.replay.warmup_bars, n - 1)
        mb = max_bars if max_bars is not None else (cfg.replay.max_bars or None)
        sp = cfg.replay.speed if speed is None else speed
        return ReplayVenue(bars, start=start, end=None if mb is None else start + mb, balance=cfg.replay.balance,
                           taker_fee_bps=cfg.costs.taker_fee_bps, slippage_bps=cfg.costs.slippage_bps,
                           speed=sp or None, stop_event=stop_event)
    if venue in ("bybit-testnet", "binance-demo"):
        from crucible.venues.ccxt_venue import CcxtVenue

        exchange = "bybit" if venue == "bybit-testnet" else "binanceusdm"
        return CcxtVenue(exchange, sorted({s.symbol for s in cfg.slots}), sandbox=True, stop_event=stop_event)
    raise ConfigError(f"unknown venue {venue!r}; choose one of {', '.join(VENUES)}")


class Runtime:
    """The bench running on one venue with one journal (see module docstring).

    cfg: CrucibleConfig; venue: a Venue; journal: an open Journal; progress: callback receiving event
    dicts ({"event": "bar" | "order" | "fill" | "swap" | "kill" | "reject" | "reweight" | "reconcile" |
    "killswitch" | "stale" | "challenger" | "done", ...}); stop_event: set to stop after the current bar
    (positions are kept); fault: test hook called at named points ("intent_saved", "sent_not_acked",
    "fills_fetched", "bar_done") with a context dict — raising from it simulates a crash there.
    """

    def __init__(self, cfg: CrucibleConfig, venue: Venue, journal: Journal, *, progress: Progress | None = None,
                 stop_event: threading.Event | None = None, fault: FaultHook | None = None,
                 sleep: Callable[[float], bool] | None = None, clock: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
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
        for sc in cfg.slots:
            g = resolve_genome(sc.genome)
            self.slots[sc.id] = Slot(sc.id, sc.symbol, g, sc.genome, sc.capital)
        hs = cfg.hotswap
        self.pit = PitCrew(cfg.general.champions_dir, require_signature=hs.signatures_required(venue.name != "replay"),
                           max_file_bytes=hs.max_file_bytes, max_json_depth=hs.max_json_depth,
                           max_genome_tokens=hs.max_genome_tokens, margin=hs.margin, alpha=hs.alpha,
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
                         "stale_flattens": 0}
        self.requests: list[str] = []
        self.last_bar_ms: int | None = None
        self.last_cwo_ms: int | None = None
        self.bar_no = 0
        self.stopped_by = "end"
        self.until_ms: int | None = None
        self.reconcile_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers

    def _emit(self, event: str, **data: Any) -> None:
        try:
            self.progress({"event": event, **data})
        except Exception:  # a broken dashboard never stops trading
            log.exception("progress callback failed")

    def _bench_identity(self) -> str:
        """The bench id of this journal: the configured ``bench_id``, else the one stored in the journal,
        else a new random one (stored by :meth:`restore`).  raises ConfigError when the configured id
        differs from the journal's (its orders carry the journal's id)."""
        want = self.cfg.general.bench_id
        have = self.journal.get_meta("bench_id")
        if have and want and have != want:
            raise ConfigError(f"{self.cfg.source} [crucible] bench_id {want!r} differs from the journal's bench id "
                              f"{have!r} ({self.journal.path}); use the journal's id or a new journal")
        return have or want or new_bench_id()

    def _slot_of(self, cid: str) -> Slot | None:
        """The slot that owns ``cid``: only an order this journal recorded as an intent belongs to a slot
        (a look-alike id typed at the exchange, or another bench's order, does not)."""
        if parse_client_order_id(cid, self.prefix, self.bench_id) is None and parse_client_order_id(cid, self.prefix) is None:
            return None  # not even this bench's format: skip the journal lookup
        o = self.journal.order(cid)
        return self.slots.get(o["slot"]) if o is not None else None

    def _count_foreign(self, trade_id: str, symbol: str, qty: float, time_ms: int) -> None:
        self.foreign_trades.add(trade_id)
        self.counters["foreign_fills"] += 1
        if time_ms >= (self.journal.get_meta("started_ms") or 0):  # earlier ones are in the baseline positions
            self.foreign_units[symbol] = self.foreign_units.get(symbol, 0.0) + qty

    def _foreign_fill(self, f: Fill, now: int) -> None:
        """Report (once per trade id, journaled) a fill at the venue that is not this bench's."""
        if f.trade_id in self.foreign_trades:
            return
        self._count_foreign(f.trade_id, f.symbol, f.qty, f.time_ms)
        self.journal.event("foreign_fill", now, None, fill=f.to_dict())
        log.warning("fill %s of order %r at the venue is not this bench's (%s): reported, not booked",
                    f.trade_id, f.client_order_id, self.bench_id)
        self._emit("foreign_fill", fill=f.to_dict())

    def _revert_target(self, slot_id: str) -> None:
        """Set the slot's target to that of its last order still standing (for abandoned/rejected orders)."""
        rows = [o for o in self.journal.orders() if o["slot"] == slot_id
                and o["status"] not in CLOSED_STATUSES_NOT_STANDING]
        s = self.slots[slot_id]
        s.target = float(rows[-1]["target"]) if rows else 0.0

    # ------------------------------------------------------------------ restore & reconcile

    def restore(self) -> None:
        """Replay the journal into slot state (genomes, kills, ledgers, targets, weights, cursor)."""
        j = self.journal
        if j.get_meta("started_ms") is None:
            j.set_meta("started_ms", self.venue.now_ms())
            j.set_meta("venue", self.venue.name)
            j.set_meta("slots", {s.id: {"symbol": s.symbol, "capital": s.capital, "genome": s.genome_ref}
                                 for s in self.slots.values()})
            j.set_meta("order_prefix", self.prefix)
            j.set_meta("bench_id", self.bench_id)
            try:
                j.set_meta("baseline_positions", self.venue.fetch_positions())
                j.set_meta("baseline_balance", self.venue.fetch_balance())
            except (VenueNetworkError, VenueRejected) as exc:  # pragma: no cover - live only
                log.warning("baseline account state unavailable: %s", exc)
            return
        if j.get_meta("bench_id") is None:  # a journal from before bench ids: its old orders keep their ids
            j.set_meta("bench_id", self.bench_id)
        transfers: list[tuple[int, dict[str, float]]] = []
        for ev in j.events():
            s = self.slots.get(ev["slot"]) if ev["slot"] else None
            d = ev["data"]
            if ev["kind"] in ("swap", "rollback") and s is not None:
                g = Genome.from_dict(d["genome"], source="journal")
                if ev["kind"] == "swap":
                    s.previous.append(s.genome)
                elif s.previous:
                    s.previous.pop()
                s.genome = g
                self.genome_book.setdefault(g.sha256, (g, s.symbol, None))
                self.counters["swaps"] += ev["kind"] == "swap"
            elif ev["kind"] == "kill" and s is not None:
                s.status = "killed"
                self.counters["kills"] += 1
            elif ev["kind"] == "reweight":
                for k, w in d["weights"].items():
                    if k in self.slots:
                        self.slots[k].weight = float(w)
                self.last_cwo_ms = ev["time_ms"]
                self._journaled_weights = {k: float(x) for k, x in d["weights"].items()}
            elif ev["kind"] == "killswitch":
                for x in self.slots.values():
                    if x.status == "live":
                        x.status = "stopped"
            elif ev["kind"] == "request":
                self.requests.append(d.get("path", ""))
            elif ev["kind"] == "transfer":
                transfers.append((int(ev["time_ms"]), d["amounts"]))
                self.reserve = float(d["reserve"])
            elif ev["kind"] == "order_rejected" and s is not None:
                self.reject_until[s.id] = int(d["until_ms"])
                self.reject_count[s.id] = int(d["count"])
            elif ev["kind"] == "foreign_fill":
                ff = d["fill"]
                self._count_foreign(ff["trade_id"], ff["symbol"], float(ff["qty"]), int(ff["time_ms"]))
        self.last_bar_ms = j.get_meta("last_bar_ms")
        self._rebuild(transfers)
        for sid in self.slots:
            self._revert_target(sid)

    def _rebuild(self, transfers: list[tuple[int, dict[str, float]]]) -> None:
        """Rebuild the slot ledgers and the recent equity marks from the journal, in the order the running
        bench applied them: operations sorted by time (capital transfers before fills at equal times,
        fills in booking order), and each processed bar's mark taken after the operations booked by then
        (time < bar open + 1 min) — so the CWO and Pit Crew see the same marks as an uninterrupted run."""
        ops: list[tuple[int, int, int, Any]] = []
        for i, f in enumerate(self.journal.fills()):
            if f["slot"] in self.slots:
                ops.append((int(f["time_ms"]), 1, i, f))
        for i, (t, amounts) in enumerate(transfers):
            ops.append((t, 0, i, amounts))
        ops.sort(key=lambda x: x[:3])
        window: list[int] = []
        closes: dict[str, dict[int, float]] = {}
        last = self.last_bar_ms
        if last is not None:
            first = int(self.journal.get_meta("started_ms", 0))
            ahead = max(0, (self.venue.now_ms() - last) // 60_000) + 2
            times: set[int] = set()
            for sym in {x.symbol for x in self.slots.values()}:
                h = self.venue.history(sym, self.marks.keep + ahead)
                ot, cl = h["open_time"], h["close"]
                closes[sym] = {int(t): float(c) for t, c in zip(ot.tolist(), cl.tolist()) if first <= t <= last}
                times |= set(closes[sym])
            window = sorted(times)[-self.marks.keep:]
        k = 0
        slots = list(self.slots.values())
        for t in window:
            while k < len(ops) and ops[k][0] < t + 60_000:
                self._apply_op(ops[k])
                k += 1
            for x in slots:
                c = closes[x.symbol].get(t)
                if c is not None:
                    x.mark = c
            self.marks.push([x.equity() for x in slots])
        for op in ops[k:]:
            self._apply_op(op)

    def _apply_op(self, op: tuple[int, int, int, Any]) -> None:
        if op[1] == 1:
            f = op[3]
            self.slots[f["slot"]].ledger.apply(f["qty"], f["price"], f["fee"])
        else:
            for sid, amt in op[3].items():
                if sid in self.slots:
                    self.slots[sid].ledger.transfer(float(amt))

    def reconcile(self) -> dict[str, Any]:
        """Resolve unknown orders by client order id, book missed fills, compare positions and balance.

        returns {"resolved": [...], "resent": [...], "abandoned": [...], "new_fills": int,
        "position_diff": {symbol: venue - journal}, "balance_diff": float | None}.
        """
        j, v = self.journal, self.venue
        now = v.now_ms()
        latest_bar = (now // 60_000 - 1) * 60_000  # open time of the latest closed 1m bar
        rep: dict[str, Any] = {"resolved": [], "resent": [], "abandoned": [], "new_fills": 0}
        found: list[tuple[dict[str, Any], Any]] = []
        for o in j.orders(OPEN_STATUSES):
            st = v.fetch_order(o["symbol"], o["client_order_id"])
            if st is not None:
                # "acked" until its fills are booked (the next sync closes it): a fill after the last
                # committed bar is booked when that bar is processed again
                j.set_order_status(o["client_order_id"], "acked", now, venue_order_id=st.order_id)
                rep["resolved"].append(o["client_order_id"])
                found.append((o, st))
            elif o["bar_time"] >= latest_bar and o["status"] in ("intent", "unknown"):
                rep["resent"].append(o["client_order_id"])
                self.counters["resent"] += 1
                self._send(o)
            else:
                j.set_order_status(o["client_order_id"], "abandoned", now, error="unknown to the venue at restart")
                rep["abandoned"].append(o["client_order_id"])
                self.counters["abandoned"] += 1
                self._revert_target(o["slot"])
        since = j.get_meta("started_ms", 0) - 60_000
        # replay resumes exactly: fills after the last committed bar are booked when that bar is processed
        # again (as the uninterrupted run did), not now; on exchanges every fill is booked now
        until = None if getattr(v, "live", False) or self.last_bar_ms is None else self.last_bar_ms + 60_000
        rep["new_fills"] = self._sync_fills(sorted({s.symbol for s in self.slots.values()}), since, until)
        for o, st in found:  # close the resolved orders whose fills are all booked now
            if st.status in ("filled", "canceled", "rejected") and abs(j.filled_qty(o["client_order_id"]) - st.filled) < 1e-12:
                j.set_order_status(o["client_order_id"], st.status, now, venue_order_id=st.order_id)
        base = j.get_meta("baseline_positions", {}) or {}
        vpos = v.fetch_positions()
        diff = {}
        for sym in sorted({s.symbol for s in self.slots.values()}):
            ours = sum(s.ledger.units for s in self.slots.values() if s.symbol == sym)
            d = (vpos.get(sym, 0.0) - base.get(sym, 0.0) - ours - self.foreign_units.get(sym, 0.0)
                 - self.unbooked_units.get(sym, 0.0))
            if abs(d) > 1e-9:
                diff[sym] = d
        rep["position_diff"] = diff
        bb = j.get_meta("baseline_balance")
        if bb is not None:
            spent = sum(s.capital + s.ledger.transfers - s.ledger.cash for s in self.slots.values())
            rep["balance_diff"] = v.fetch_balance() - (bb - spent)
        else:
            rep["balance_diff"] = None
        j.event("reconcile", now, **rep)
        self.reconcile_report = rep
        self._emit("reconcile", **rep)
        return rep

    # ------------------------------------------------------------------ orders & fills

    def _sync_fills(self, symbols: list[str], since_ms: int, until_ms: int | None = None) -> int:
        """Fetch fills of ``symbols`` since ``since_ms`` and book the new ones of this bench (only those
        before ``until_ms`` when given; the units of later ones are kept in ``self.unbooked_units``);
        returns the count booked."""
        n = 0
        self.unbooked_units = {}
        fetched: list[Fill] = []
        for sym in symbols:
            fetched.extend(self.venue.fetch_fills(sym, since_ms))
        self.fault("fills_fetched", {"fills": fetched})
        now = self.venue.now_ms()
        with self.journal:
            for f in fetched:
                slot = self._slot_of(f.client_order_id)
                if slot is None:
                    self._foreign_fill(f, now)
                    continue
                if until_ms is not None and f.time_ms >= until_ms:
                    self.unbooked_units[f.symbol] = self.unbooked_units.get(f.symbol, 0.0) + f.qty
                    continue
                if not self.journal.add_fill(f, slot.id):
                    self.counters["duplicates_ignored"] += 1
                    continue
                slot.ledger.apply_fill(f)
                n += 1
                self.counters["fills"] += 1
                if self._progress_on:
                    self._emit("fill", slot=slot.id, **f.to_dict())
        return n

    def _sync_open_orders(self, now: int) -> None:
        open_orders = self.journal.orders(OPEN_STATUSES)
        if not open_orders:
            return
        since = min(o["created_ms"] for o in open_orders) - 60_000
        self._sync_fills(sorted({o["symbol"] for o in open_orders}), since, now if self._at is not None else None)
        timeout_ms = 1000.0 * self.cfg.general.order_lookup_timeout_seconds
        with self.journal:
            for o in open_orders:
                cid = o["client_order_id"]
                st = self.venue.fetch_order(o["symbol"], cid)
                if st is None:
                    if o["status"] in ("unknown", "intent"):
                        self.journal.set_order_status(cid, "abandoned", now, error="never reached the venue")
                        self.counters["abandoned"] += 1
                        self._revert_target(o["slot"])
                    elif now - o["created_ms"] >= timeout_ms:  # acked, but the venue cannot find it: lost
                        self.journal.set_order_status(cid, "lost", now, error=f"acked but unknown to the venue after "
                                                      f"{(now - o['created_ms']) / 1000:.0f} s")
                        self.journal.event("lost", now, o["slot"], client_order_id=cid, qty=o["qty"])
                        self.counters["lost"] += 1
                        self._emit("lost", slot=o["slot"], client_order_id=cid)
                        self._retarget(o["slot"])
                    continue
                if st.status in ("filled", "canceled", "rejected") and abs(self.journal.filled_qty(cid) - st.filled) < 1e-12:
                    self.journal.set_order_status(cid, st.status, now, venue_order_id=st.order_id)
                    if st.filled != 0.0 and abs(st.filled) < abs(st.qty) - 1e-12:  # partial fill, rest cancelled
                        self.journal.event("partial", now, o["slot"], client_order_id=cid, qty=st.qty, filled=st.filled)
                        self._retarget(o["slot"])
                    elif st.status != "filled":
                        self._revert_target(o["slot"])
                elif o["status"] == "unknown":
                    self.journal.set_order_status(cid, "acked", now, venue_order_id=st.order_id)

    def _retarget(self, slot_id: str) -> None:
        """The slot's exposure is off its last target (partial fill, lost order): the next bar sizes a new
        order from the ledger's units, whatever the signal."""
        self.slots[slot_id].target = float("nan")
        self.counters["retargets"] += 1

    def _rejected(self, o: dict[str, Any], error: str, now: int) -> None:
        """An order refused by the venue (margin, minimum notional, ...): journal it, back the slot off for
        ``reject_backoff_bars`` x 2^(k-1) bars (k = rejections in a row, capped at a day) and report."""
        sid = o["slot"]
        k = self.reject_count.get(sid, 0) + 1
        bars = min(MAX_REJECT_BACKOFF_BARS, self.cfg.general.reject_backoff_bars * 2 ** (k - 1))
        until = int(o["bar_time"]) + 60_000 * (bars + 1)
        self.reject_count[sid], self.reject_until[sid] = k, until
        self.counters["order_rejects"] += 1
        self.journal.set_order_status(o["client_order_id"], "rejected", now, error=error[:200])
        self.journal.event("order_rejected", now, sid, client_order_id=o["client_order_id"], qty=o["qty"],
                           error=error[:200], count=k, backoff_bars=bars, until_ms=until)
        log.warning("slot %s: order %s rejected (%s); no signal orders for %d bars", sid, o["client_order_id"],
                    error[:120], bars)
        self._emit("order_rejected", slot=sid, client_order_id=o["client_order_id"], error=error[:200],
                   backoff_bars=bars)
        self._revert_target(sid)

    def _send(self, o: dict[str, Any]) -> None:
        """Send a journaled intent; never raises a venue error.

        A network error leaves the outcome unknown: the order is looked up by client order id and, if the
        venue does not have it, re-sent under the same id (the venue refuses a duplicate), retried with
        exponential backoff and jitter over ``retry_budget_minutes``; when the budget is spent the order
        stays "unknown" and the next bars resolve it by lookup.  A refusal is journaled as "rejected" and
        backs the slot off (:meth:`_rejected`)."""
        cid, sym, now = o["client_order_id"], o["symbol"], self.venue.now_ms()
        done = False

        def attempt() -> None:
            nonlocal done
            try:
                st = self.venue.create_market_order(sym, o["qty"], cid)
                self.fault("sent_not_acked", {"order": o})
                self.journal.set_order_status(cid, "acked", now, venue_order_id=st.order_id)
                self.reject_count.pop(o["slot"], None)
                done = True
                return
            except (VenueNetworkError, VenueAuthError) as exc:
                self.journal.set_order_status(cid, "unknown", now, error=str(exc)[:200])
                st = self.venue.fetch_order(sym, cid)  # a network error here is retried too
                if st is not None:
                    self.journal.set_order_status(cid, "acked", now, venue_order_id=st.order_id)
                    done = True
                    return
                if isinstance(exc, VenueAuthError):
                    raise VenueAuthError(str(exc)) from None  # not retried: the keys need fixing
                raise VenueNetworkError(str(exc)) from None
            except VenueRejected as exc:
                st = self.venue.fetch_order(sym, cid) if "duplicate" in str(exc).lower() else None
                if st is not None:
                    self.journal.set_order_status(cid, "acked", now, venue_order_id=st.order_id)
                else:
                    self._rejected(o, str(exc), now)
                done = True

        try:
            self.retry.call(attempt)
        except VenueError as exc:  # budget spent (or auth): the order stays "unknown", resolved by lookup later
            self._note_outage(exc, now)

    def _note_outage(self, exc: BaseException, now: int) -> None:
        """Report venue calls failing (journaled when an outage starts; counted per bar by process_bar)."""
        self._bar_failed = True
        if self.outage is None:
            self.outage = {"since_ms": now, "bars": 0, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            self.journal.event("outage", now, None, error=self.outage["error"])
            log.warning("venue calls failing (%s): trading skipped until they work again", self.outage["error"])
            self._emit("outage", error=self.outage["error"])

    def place(self, slot: Slot, qty: float, target: float, reason: str, bar_time: int) -> str:
        """Journal an intent (committed) then send a market order; returns the client order id."""
        return self.place_many([(slot, qty, target, reason)], bar_time)[0]

    def place_many(self, orders: list[tuple[Slot, float, float, str]], bar_time: int) -> list[str]:
        """Journal the intents of several orders (slot, qty, target, reason) in one committed transaction,
        then send them one by one; returns their client order ids.  An acknowledgement lost in a crash
        is recovered at restart by client order id (the intent is already durable)."""
        now = self.venue.now_ms()
        cids = []
        with self.journal:
            for slot, qty, target, reason in orders:
                seq = self.journal.next_seq(slot.id, bar_time)
                cid = client_order_id(self.prefix, slot.id, bar_time, seq, self.bench_id)
                self.journal.add_intent(client_order_id=cid, slot=slot.id, symbol=slot.symbol, qty=qty,
                                        target=target, bar_time=bar_time, seq=seq, reason=reason, now_ms=now)
                slot.target = target
                cids.append(cid)
            self.journal.commit()  # the intents (and the bar's writes so far) are durable before any send
            for cid, (slot, qty, target, reason) in zip(cids, orders):
                o = self.journal.order(cid)
                self.fault("intent_saved", {"order": o})
                self.counters["orders"] += 1
                self._send(o)
                if self._progress_on:
                    self._emit("order", slot=slot.id, client_order_id=cid, qty=qty, target=target, reason=reason)
        return cids

    def flatten(self, slot: Slot, reason: str, bar_time: int) -> None:
        """Market order closing the slot's units (skipped when a closing order is already in flight)."""
        pending = [o for o in self.journal.orders(OPEN_STATUSES) if o["slot"] == slot.id]
        if any(o["target"] == 0.0 for o in pending):
            slot.target = 0.0
            return
        if slot.ledger.units != 0.0:
            self.place(slot, -slot.ledger.units, 0.0, reason, bar_time)
        slot.target = 0.0

    # ------------------------------------------------------------------ the bar

    def process_bar(self, bars: dict[str, Bar], now: int | None = None) -> None:
        """Run one bar boundary (see module docstring) in one journal transaction, with a commit point
        before any order is sent.  now: venue time (ms) of the boundary (default: the venue clock)."""
        now = self.venue.now_ms() if now is None else now
        bar_time = max(b.open_time for b in bars.values()) if bars else now - 60_000
        cfg = self.cfg
        self._bar_failed = False
        with self.journal:
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
            if kill_switch_engaged(cfg.general.kill_file) or self.kill_requested:
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

    def _kill_switch(self, bar_time: int) -> None:
        if self.stopped_by != "kill_switch":
            with self.journal:
                self.journal.event("killswitch", self.venue.now_ms(), None,
                                   reason="signal" if self.kill_requested else f"file {self.cfg.general.kill_file}")
                self.journal.commit()
            self._emit("killswitch")
            self.stopped_by = "kill_switch"
        for s in self.slots.values():
            if s.status == "live" or s.ledger.units != 0.0:
                if s.ledger.units != 0.0 and not self.journal.has_open_order(s.id):
                    self.flatten(s, "killswitch", bar_time)
                if s.status == "live":
                    s.status = "stopped"

    def _watchtower(self, bar_time: int, now: int) -> None:
        floor, min_notional = self.cfg.watchtower.kill_floor, self.cfg.general.min_order_notional
        for s in self.slots.values():
            if s.status != "live" or s.mark <= 0 or not breaches_floor(s.equity(), floor, min_notional,
                                                                       s.ledger.transfers):
                continue
            eq = s.equity()
            s.status = "killed"
            s.weight = 0.0
            self.counters["kills"] += 1
            self.journal.event("kill", now, s.id, equity=eq, floor=floor, genome=s.genome.sha256)
            self.journal.commit()  # the kill is durable before its flattening order
            self.flatten(s, "kill", bar_time)
            self._remember(s.genome, s.symbol, sharpe_per_bar_of_equity(self.marks.curve(s.id)))
            seed, score = self._best_genome(s.symbol, exclude=s.genome.sha256)
            path = write_replacement_request(self.cfg.general.requests_dir, slot=s.id, symbol=s.symbol,
                                             time_ms=now, equity=eq, killed=s.genome, seed=seed, seed_score=score)
            self.requests.append(str(path))
            self.journal.event("request", now, s.id, path=str(path), seed=seed.sha256)
            self._emit("kill", slot=s.id, equity=eq, request=str(path))

    def _remember(self, g: Genome, symbol: str, score: float | None) -> None:
        old = self.genome_book.get(g.sha256)
        self.genome_book[g.sha256] = (g, symbol, score if score is not None else (old[2] if old else None))

    def _best_genome(self, symbol: str, exclude: str) -> tuple[Genome, float | None]:
        for s in self.slots.values():  # current champions' live scores
            if s.symbol == symbol and s.status == "live":
                self._remember(s.genome, s.symbol, sharpe_per_bar_of_equity(self.marks.curve(s.id)))
        cands = [(sc if sc is not None else -np.inf, g) for g, sym, sc in self.genome_book.values()
                 if sym == symbol and g.sha256 != exclude]
        if not cands:
            g, _sym, sc = self.genome_book[exclude]
            return g, sc
        sc, g = max(cands, key=lambda x: (x[0], x[1].sha256))
        return g, (None if not np.isfinite(sc) else float(sc))

    def _pit_crew(self, bars: dict[str, Bar], bar_time: int, now: int) -> None:
        hs = self.cfg.hotswap
        for key, ch in list(self.challengers.items()):
            if len(ch.equity_curve) < hs.shadow_bars:
                continue
            del self.challengers[key]
            score = ch.score()
            self._remember(ch.genome, ch.symbol, score)
            best = None
            for s in self.slots.values():
                if s.status != "live" or s.symbol != ch.symbol:
                    continue
                champ = sharpe_per_bar_of_equity(self.marks.curve(s.id, len(ch.equity_curve)))
                if self.pit.beats(ch, self.marks.curve(s.id, len(ch.equity_curve) + 1), s.id) \
                        and (best is None or champ < best[1]):
                    best = (s, champ)
            if best is None:
                self._emit("challenger", result="not promoted", genome=ch.genome.sha256[:16], score=score)
                with self.journal:
                    self.journal.event("shadow_end", now, None, genome=ch.genome.sha256, score=score, promoted=False)
                continue
            s, champ = best
            self._remember(s.genome, s.symbol, champ)
            s.previous.append(s.genome)
            s.genome = ch.genome
            s.genome_since = self.bar_no
            self.counters["swaps"] += 1
            with self.journal:
                self.journal.event("swap", now, s.id, genome=ch.genome.to_dict(), old=s.previous[-1].sha256,
                                   new=ch.genome.sha256, challenger_score=score, champion_score=champ,
                                   source=ch.source)
                self.journal.commit()
            self._emit("swap", slot=s.id, old=s.previous[-1].sha256[:16], new=ch.genome.sha256[:16],
                       challenger_score=score, champion_score=champ)
        if self.bar_no % hs.poll_bars == 0:
            known = {s.genome.sha256 for s in self.slots.values()} | {c.genome.sha256 for c in self.challengers.values()}
            known |= set(self.genome_book)
            accepted, rejected = self.pit.scan(known)
            for path, reason in rejected:
                self.counters["rejected_files"] += 1
                with self.journal:
                    self.journal.event("reject", now, None, file=path, reason=reason)
                self._emit("reject", file=path, reason=reason)
            symbols = {s.symbol for s in self.slots.values() if s.status == "live"}
            for g, meta, path in accepted:
                sym = (meta.get("symbol") or "").upper() or None
                targets = [sym] if sym in symbols else (sorted(symbols) if sym is None else [])
                if not targets:
                    continue
                cap = min(s.capital for s in self.slots.values())
                ch = Challenger(g, meta, targets[0], bar_time, Ledger(cap), path)
                self.challengers[ch.key] = ch
                self.genome_book.setdefault(g.sha256, (g, ch.symbol, None))
                with self.journal:
                    self.journal.event("shadow_start", now, None, genome=g.sha256, file=path, symbol=ch.symbol)
                self._emit("challenger", result="shadow", genome=g.sha256[:16], file=path)

    def _rollback(self, slot_id: str) -> bool:
        s = self.slots[slot_id]
        if not s.previous:
            return False
        cur = s.genome
        s.genome = s.previous.pop()
        with self.journal:
            self.journal.event("rollback", self.venue.now_ms(), s.id, genome=s.genome.to_dict(), old=cur.sha256,
                               new=s.genome.sha256)
        return True

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

    def _cwo(self, now: int) -> None:
        cwo = self.cfg.cwo
        slots = list(self.slots.values())
        alive = [i for i, s in enumerate(slots) if s.status == "live"]
        for s in slots:
            s.weight = 0.0 if s.status != "live" else s.weight
        if alive:
            marks = self.marks.window(cwo.lookback_bars + 1)
            if len(alive) < len(slots):
                marks = marks[alive]
            new = eg_weights(np.array([slots[i].weight for i in alive]), scores_nb(marks, cwo.drawdown_penalty), cwo)
            for i, x in zip(alive, new.tolist()):
                slots[i].weight = x
        w = {s.id: s.weight for s in slots}
        self.last_cwo_ms = now
        self.counters["reweights"] += 1
        prev = self._journaled_weights
        if prev is None or prev.keys() != w.keys() or any(abs(x - prev[k]) > WEIGHT_TOL for k, x in w.items()):
            with self.journal:
                self.journal.event("reweight", now, None, weights=w)
            self._journaled_weights = w
        else:  # moves below WEIGHT_TOL are not taken: the weights in force are always the journaled ones
            for s in slots:
                s.weight = prev[s.id]
            w = dict(prev)
        self._move_capital(now)
        if self._progress_on:
            self._emit("reweight", weights=w)

    def _move_capital(self, now: int) -> None:
        """Move cash between slot ledgers so each live slot's equity approaches weight x bench equity
        (bench equity = live slots' equity + reserve), scaled down so that sum |transfer| <= max_turnover x
        bench equity; journals one ``transfer`` event {amounts: slot -> USDT in, reserve}."""
        live = [s for s in self.slots.values() if s.status == "live" and s.mark > 0]
        if not live or not self.cfg.cwo.move_capital:
            return
        bench = sum(s.equity() for s in live) + self.reserve
        if bench <= 0:
            return
        amounts = {s.id: s.weight * bench - s.equity() for s in live}
        moved = sum(abs(a) for a in amounts.values())
        if moved < self.cfg.general.min_order_notional:
            return
        cap = self.cfg.cwo.max_turnover * bench
        if moved > cap:
            amounts = {k: a * cap / moved for k, a in amounts.items()}
        for s in live:
            s.ledger.transfer(amounts[s.id])
            t = s.target
            if t == t and t != 0.0 and s.mark > 0:  # re-size when the exposure is now off target
                eq = s.equity()
                if eq > 0 and abs(s.ledger.units * s.mark - t * eq) > REBALANCE_TOL * eq:
                    s.target = float("nan")
        self.reserve -= sum(amounts.values())
        self.journal.event("transfer", now, None, amounts=amounts, reserve=self.reserve)
        if self._progress_on:
            self._emit("transfer", amounts=amounts, reserve=self.reserve)

    # ------------------------------------------------------------------ main loop

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

    def _replay_missed(self, latest: int) -> None:
        """Replay venue: process again, in order and as they were when they closed, every bar after the
        last committed one up to the venue's latest (a crash lost their uncommitted bookkeeping), so the
        restart resumes from the last committed bar and reaches the uninterrupted run's state."""
        v = self.venue
        n = (latest - self.last_bar_ms) // 60_000 + 1
        per: dict[str, dict[int, Bar]] = {}
        for sym in {s.symbol for s in self.slots.values()}:
            h = v.history(sym, n)
            per[sym] = {int(t): Bar(sym, int(t), *(float(h[c][i]) if c != "count" else int(h[c][i])
                                                   for c in BAR_FIELDS[1:]))
                        for i, t in enumerate(h["open_time"].tolist()) if t > self.last_bar_ms}
        for t in sorted({t for d in per.values() for t in d}):
            self._at = t
            try:
                self.process_bar({sym: d[t] for sym, d in per.items() if t in d}, now=t + 60_000)
            finally:
                self._at = None

    def _start_with_venue(self) -> dict[str, np.ndarray]:
        """Reconcile and read the newest bar per symbol; during an outage keep retrying (every
        ``retry_max_seconds``, reported once) until the venue answers or stop_event is set (then the last
        venue error is raised)."""
        while True:
            try:
                self.reconcile()
                return {sym: self.venue.history(sym, 1)["open_time"] for sym in {s.symbol for s in self.slots.values()}}
            except VenueError as exc:
                now = self.venue.now_ms()
                with self.journal:
                    self._note_outage(exc, now)
                if self.retry.sleep is None or self.retry.sleep(self.retry.max_s) or self.stop_event.is_set():
                    raise

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
                "reserve": self.reserve,
                "total_equity": float(sum(s.equity() for s in self.slots.values()) + self.reserve)}


def run_live(config: str | Path | CrucibleConfig | None = None, *, venue: str | Venue = "replay",
             speed: float | None = None, max_bars: int | None = None, until_ms: int | None = None,
             journal_path: str | Path | None = None,
             stop_event: threading.Event | None = None, progress: Progress | None = None,
             fault: FaultHook | None = None, fresh: bool | None = None) -> dict[str, Any]:
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
    SIGTERM (main thread only) engages the kill switch: everything is flattened, then the run stops.

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
    lock = JournalLock(jpath)
    try:
        lock.acquire()  # single writer, before anything touches the journal files (archive included)
        if fresh and jpath.exists():
            archive_journal(jpath)  # WAL checkpointed, then a timestamped archive; nothing deleted
        sync = cfg.general.journal_sync
        if sync == "auto":
            sync = "FULL" if getattr(v, "live", False) else "NORMAL"
        journal = Journal(jpath, synchronous=sync, lock=lock)
        try:
            rt = Runtime(cfg, v, journal, progress=progress, stop_event=stop_event, fault=fault)
        except BaseException:
            journal.close()  # releases the lock
            raise
    except BaseException:
        lock.release()
        if own_venue:
            v.close()
        raise
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def _on_term(signum: int, frame: Any) -> None:
            rt.kill_requested = True
            stop_event.set()

        old_handler = signal.signal(signal.SIGTERM, _on_term)
    try:
        return rt.run(max_bars=max_bars, until_ms=until_ms)
    except sqlite3.Error as exc:  # the journal failed mid-run (disk full, corrupted, locked): one line, exit 2
        raise JournalError(f"{jpath}: SQLite error while trading: {exc}") from None
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        journal.close()
        if own_venue:
            v.close()
