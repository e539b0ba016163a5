"""Order placement and fill booking of the Crucible runtime (a mixin of :class:`crucible.runtime.Runtime`).

Orders: every order is an *intent* committed to the journal before it is sent (a commit point), under a
deterministic, HMAC-tagged client order id (:func:`crucible.slots.client_order_id`); a send whose outcome is
unknown (network error) is looked up by that id and re-sent under the same id with exponential backoff and
jitter, within ``[crucible] retry_budget_minutes`` *and* the bar's order deadline
(``bar_order_deadline_seconds``, shared by every order of the bar: an intent reached after it is dropped, an
order still unknown is resolved by lookup on later bars); a refusal (margin, minimum notional) is journaled and
backs the slot off.  An order the venue already has under the id (a "duplicate" answer, or found by the lookup
after a network error) is fetched and compared with the journaled intent (symbol, side, quantity at the
venue's lot, type): the same order is ours (acknowledged); a different one is *foreign* — the intent is marked
"collided", its fills are never booked, a ``foreign_order`` event and an alert report it, and the intent is
re-issued under a fresh id (next sequence number of its bar; at most ``MAX_REISSUES`` times, then the bench
halts).  Fills: fetched from the venue, attributed to a slot only when their client order id is an intent of
this journal that did not collide (anything else is a *foreign* fill: reported once, never booked),
de-duplicated by trade id, then booked into the journal and the slot ledger in one transaction.  A foreign
fill under this bench's ``order_prefix`` whose id names this bench with a tag the bench key did not make, names
a bench that is not listed in ``sibling_benches``, or carries a valid tag of this bench that the journal lacks
(a lost or rolled-back journal) halts the bench with a report.

The mixin reads the runtime's ``cfg``, ``venue``, ``journal``, ``slots``, ``counters``, ``retry``, ``fault``,
``prefix``, ``bench_id`` and the outage / rejection state it keeps (see :class:`crucible.runtime.Runtime`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from crucible.journal import OPEN_STATUSES
from crucible.slots import Slot, client_order_id, is_own_order_id, parse_client_order_id
from crucible.venues.base import (VENUE_ACTIONS, Bar, Fill, OrderState, VenueAuthError, VenueDuplicateOrder, VenueError,
                                  VenueNetworkError, VenuePostOnlyReject, VenueRejected)
from forge.backtest.costs import funding_payment, is_funding_time

__all__ = ["ExecutionMixin", "no_fault", "MAX_REJECT_BACKOFF_BARS", "CLOSED_STATUSES_NOT_STANDING", "MAX_REISSUES"]

log = logging.getLogger("crucible")

MAX_REJECT_BACKOFF_BARS = 1440  # a slot's order-rejection backoff doubles up to one day of bars
CLOSED_STATUSES_NOT_STANDING = ("abandoned", "rejected", "canceled", "lost", "collided")
MAX_REISSUES = 3  # an intent whose client order id collides with a foreign order is re-issued at most this often


def no_fault(point: str, ctx: dict[str, Any]) -> None:
    """The runtime's fault hook when none is given (its calls and their context dicts are skipped then)."""


class ExecutionMixin:
    """Orders and fills of the runtime (see module docstring)."""

    def _slot_of(self, cid: str) -> Slot | None:
        """The slot that owns ``cid``: only an order this journal recorded as an intent belongs to a slot
        (a look-alike id typed at the exchange, or another bench's order, does not)."""
        if not cid.startswith(self.prefix + "-") or cid in self.collided:
            return None  # not this bench's prefix (skip the journal lookup), or a foreign order under our id
        sid = self.journal.order_slot(cid)
        return self.slots.get(sid) if sid is not None else None

    def _suspicious(self, cid: str) -> str | None:
        """Why a foreign order id is a threat that halts the bench, or None for an ordinary foreign order (another
        prefix, a listed sibling bench, an id of ours that collided and is already reported)."""
        if not cid.startswith(self.prefix + "-") or cid in self.collided:
            return None
        p = parse_client_order_id(cid, self.prefix)
        if p is not None and p.bench in self.cfg.general.sibling_benches and p.bench != self.bench_id:
            return None
        if p is None:
            return f"order {cid!r} uses this bench's order prefix {self.prefix!r} without a valid tagged id"
        if p.bench != self.bench_id:
            return (f"order {cid!r} names bench {p.bench!r} under this bench's prefix {self.prefix!r} (not listed in "
                    "[crucible] sibling_benches)")
        if is_own_order_id(cid, self.bench_key, self.prefix, self.bench_id):
            return (f"order {cid!r} carries this bench's valid tag but the journal has no such intent: the journal "
                    "lost or rolled back orders (restore the journal before trading)")
        return f"order {cid!r} names this bench ({self.bench_id}) with a tag the bench key did not make (forged)"

    def _count_foreign(self, trade_id: str, symbol: str, qty: float, time_ms: int) -> None:
        self.foreign_trades.add(trade_id)
        self.counters["foreign_fills"] += 1
        if time_ms >= (self.journal.get_meta("started_ms") or 0):  # earlier ones are in the baseline positions
            self.foreign_units[symbol] = self.foreign_units.get(symbol, 0.0) + qty

    def _foreign_fill(self, f: Fill, now: int) -> None:
        """Report (once per trade id, journaled) a fill at the venue that is not this bench's.  An execution the venue
        made itself (``Fill.venue_action``: a liquidation, an auto-deleveraging, a delisting's settlement) closed units
        the slots' ledgers still hold: it halts the bench without flattening (flattening the ledgers' units would open
        the position the venue just closed) and its units are not counted as explained, so a restart's reconcile
        finds the difference too."""
        if f.trade_id in self.foreign_trades:
            return
        if f.venue_action:
            self.foreign_trades.add(f.trade_id)
            self.counters["foreign_fills"] += 1
            what = VENUE_ACTIONS.get(f.venue_action, f.venue_action)
            self.journal.event("venue_action_fill", now, None, fill=f.to_dict(), action=what)
            log.error("the venue's own %s executed %+g %s at %g (trade %s)", what, f.qty, f.symbol, f.price,
                      f.trade_id)
            self._emit("foreign_fill", fill=f.to_dict())
            self._alert("foreign_fill", now, fill=f.to_dict(), threat=what)
            if self.halted is None:
                self._halt(f"the venue's own {what} executed {f.qty:+g} {f.symbol} at {f.price:g} (trade {f.trade_id}, "
                           f"{f.venue_action}): the slots' ledgers no longer describe the account; not flattened",
                           now, action="halt")
            return
        self._count_foreign(f.trade_id, f.symbol, f.qty, f.time_ms)
        threat = self._suspicious(f.client_order_id)
        self.journal.event("foreign_fill", now, None, fill=f.to_dict(), threat=threat)
        log.warning("fill %s of order %r at the venue is not this bench's (%s): reported, not booked",
                    f.trade_id, f.client_order_id, self.bench_id)
        self._emit("foreign_fill", fill=f.to_dict())
        self._alert("foreign_fill", now, fill=f.to_dict(), threat=threat)
        if threat is not None and self.halted is None:
            self._halt(f"foreign order under this bench's ids: {threat}", now)

    def _revert_target(self, slot_id: str) -> None:
        """Set the slot's target to that of its last order still standing (for abandoned/rejected orders); a passive
        slot's is the target its intents work towards (:meth:`PassiveMixin._passive_target`)."""
        pt = self._passive_target(slot_id)
        if pt is not None:
            self.slots[slot_id].target = pt
            return
        rows = [o for o in self.journal.orders() if o["slot"] == slot_id
                and o["status"] not in CLOSED_STATUSES_NOT_STANDING]
        s = self.slots[slot_id]
        s.target = float(rows[-1]["target"]) if rows else 0.0

    def _sync_fills(self, symbols: list[str], since_ms: int, until_ms: int | None = None) -> int:
        """Fetch fills of ``symbols`` since ``since_ms`` and book the new ones of this bench (only those
        before ``until_ms`` when given; the units of later ones are kept in ``self.unbooked_units``);
        returns the count booked."""
        n = 0
        self.unbooked_units = {}
        fetched: list[Fill] = []
        for sym in symbols:
            fetched.extend(self.venue.fetch_fills(sym, since_ms))
        if self.fault is not no_fault:
            self.fault("fills_fetched", {"fills": fetched})
        now = self.venue.now_ms()
        with self.journal:
            for f in fetched:
                slot = self._slot_of(f.client_order_id)
                if slot is None:
                    self._foreign_fill(f, now)
                    continue
                if until_ms is not None and f.time_ms >= until_ms:
                    if not self.journal.has_fill(f.trade_id):  # booked already when a commit point saved its bar
                        self.unbooked_units[f.symbol] = self.unbooked_units.get(f.symbol, 0.0) + f.qty
                    continue
                if not self.journal.add_fill(f, slot.id):
                    self.counters["duplicates_ignored"] += 1
                    continue
                slot.ledger.apply_fill(f)
                self._exec_fill(f, slot)
                n += 1
                self.counters["fills"] += 1
                if self._progress_on:
                    self._emit("fill", slot=slot.id, **f.to_dict())
        return n

    def _scan_foreign(self, now: int) -> None:
        """Exchange venues, every bar: fetch the account's recent fills of the slots' symbols and report the ones
        that are not this bench's (:meth:`_foreign_fill`, which halts on a threat) — foreign orders are seen within a
        bar even while the bench has no order of its own in flight.  Fills of this bench are left to the order sync."""
        since = self._scan_since if self._scan_since is not None else now - 120_000
        newest = since
        for sym in sorted({s.symbol for s in self.slots.values()}):
            for f in self.venue.fetch_fills(sym, since):
                newest = max(newest, f.time_ms)
                if f.trade_id in self.foreign_trades or self._slot_of(f.client_order_id) is not None:
                    continue
                if self.journal.has_fill(f.trade_id):
                    continue
                self._foreign_fill(f, now)
        self._scan_since = max(since, newest - 60_000)

    def _sync_open_orders(self, now: int) -> None:
        open_orders = self.journal.orders(OPEN_STATUSES)
        if not open_orders:
            return
        for o in open_orders:  # any "unknown" / "intent": the only ones _check_unresolved looks up
            if o["status"] in ("unknown", "intent"):
                self._check_unresolved(open_orders, now)  # before any of their fills can be booked
                open_orders = self.journal.orders(OPEN_STATUSES)
                if not open_orders:
                    return
                break
        since = None  # min(o["created_ms"] for o in open_orders) - 60_000, as a loop
        for o in open_orders:
            t = o["created_ms"]
            if since is None or t < since:
                since = t
        since -= 60_000
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
                if o["status"] in ("unknown", "intent") and not self._matches_intent(o, st):
                    self._resolve_found(o, st, now)  # a foreign order under this id: never ours
                    continue
                if st.status in ("filled", "canceled", "rejected") and abs(self.journal.filled_qty(cid) - st.filled) < 1e-12:
                    if self._is_limit(cid):  # a resting order closed: its intent decides what follows
                        self._finish_limit(o, st, now)
                        continue
                    self.journal.set_order_status(cid, st.status, now, venue_order_id=st.order_id)
                    if st.filled != 0.0 and abs(st.filled) < abs(st.qty) - 1e-12:  # partial fill, rest cancelled
                        self.journal.event("partial", now, o["slot"], client_order_id=cid, qty=st.qty, filled=st.filled)
                        self._retarget(o["slot"])
                    elif st.status != "filled":
                        self._revert_target(o["slot"])
                elif o["status"] in ("unknown", "intent"):
                    self._resolve_found(o, st, now)

    def _check_unresolved(self, orders: list[dict[str, Any]], now: int, reissue: bool = True) -> None:
        """Look up the orders whose send outcome is unknown ("unknown", or an "intent" a crash left unsent) and
        mark those the venue holds as a *different* order "collided" (:meth:`_collision`; re-issued when
        ``reissue``), so that the foreign order's fills are never booked."""
        with self.journal:
            for o in orders:
                if o["status"] not in ("unknown", "intent"):
                    continue
                st = self.venue.fetch_order(o["symbol"], o["client_order_id"])
                if st is not None and not self._matches_intent(o, st):
                    self._collision(o, st, now, reissue=reissue)

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

    def _order_budget(self) -> float:
        """Seconds left for order work in this bar (``bar_order_deadline_seconds`` from its start; outside a bar,
        e.g. the start-up reconcile, one bar's deadline from now)."""
        if self._bar_deadline is None:
            return float(self.cfg.general.bar_order_deadline_seconds)
        return self._bar_deadline - self.retry.clock()

    def _matches_intent(self, o: dict[str, Any], st: OrderState) -> bool:
        """Whether the venue's order ``st`` under an intent's id is that intent: same symbol, side, quantity (at the
        venue's lot size) and type (market, or limit for an intent's resting order)."""
        want = self.venue.round_qty(o["symbol"], float(o["qty"]))
        kind = "limit" if self._is_limit(o["client_order_id"]) else "market"
        return (st.symbol == o["symbol"] and st.order_type == kind and st.qty != 0.0
                and math.copysign(1.0, st.qty) == math.copysign(1.0, want)
                and abs(abs(st.qty) - abs(want)) <= 1e-9 * max(1.0, abs(want)))

    def _resolve_found(self, o: dict[str, Any], st: OrderState, now: int) -> None:
        """The venue has an order under the intent's id: ours when it matches the intent, else a collision."""
        if self._matches_intent(o, st):
            self.journal.set_order_status(o["client_order_id"], "acked", now, venue_order_id=st.order_id)
            self.reject_count.pop(o["slot"], None)
        else:
            self._collision(o, st, now)

    def _collision(self, o: dict[str, Any], st: OrderState, now: int, reissue: bool = True) -> None:
        """A foreign order sits under this intent's client order id: mark the intent "collided" (its fills are never
        booked), report and alert, and re-issue the intent under a fresh id (the next sequence number of its bar)."""
        cid, sid = o["client_order_id"], o["slot"]
        self.collided.add(cid)
        self.counters["foreign_orders"] += 1
        self.journal.set_order_status(cid, "collided", now, error=f"foreign order {st.order_id} under this id")
        chain = self._reissues.get(cid, 0)
        intent = {k: o[k] for k in ("symbol", "qty", "target", "bar_time", "reason")}
        log.error("slot %s: the venue holds a foreign order under client order id %s (%s, intent %s): not booked; "
                  "re-issued under a fresh id", sid, cid, st.to_dict(), intent)
        slot = self.slots.get(sid)
        new = None
        if slot is not None and reissue and chain < MAX_REISSUES:
            seq = self.journal.next_seq(sid, int(o["bar_time"]))
            new = client_order_id(self.prefix, sid, int(o["bar_time"]), seq, self.bench_id, self.bench_key)
            self.journal.add_intent(client_order_id=new, slot=sid, symbol=o["symbol"], qty=float(o["qty"]),
                                    target=float(o["target"]), bar_time=int(o["bar_time"]), seq=seq,
                                    reason=o["reason"], now_ms=now)
            self._reissues[new] = chain + 1
            if o["client_order_id"] in self._reduce_only:
                self._reduce_only.add(new)
        self.journal.event("foreign_order", now, sid, client_order_id=cid, venue=st.to_dict(), intent=intent,
                           reissued_as=new)
        self._emit("foreign_order", slot=sid, client_order_id=cid, reissued_as=new)
        self._alert("foreign_order", now, slot=sid, client_order_id=cid, venue=st.to_dict(), intent=intent,
                    reissued_as=new)
        if new is None:
            self._revert_target(sid)
            if reissue and self.halted is None:
                self._halt(f"client order id {cid} collided with foreign orders {chain + 1} times in a row", now)
            return
        if self.commit_points:
            self.journal.commit()  # the re-issued intent is durable before it is sent
        self.counters["orders"] += 1
        self._send(self.journal.order(new))

    def _send(self, o: dict[str, Any]) -> None:
        """Send a journaled intent; never raises a venue error.

        A network error leaves the outcome unknown: the order is looked up by client order id and, if the
        venue does not have it, re-sent under the same id (the venue refuses a duplicate), retried with
        exponential backoff and jitter within ``retry_budget_minutes`` and what is left of the bar's order
        deadline; when that is spent the order stays "unknown" and the next bars resolve it by lookup.  An intent
        reached after the deadline is dropped ("abandoned", never sent).  An order found under the id (lookup, or
        a "duplicate" refusal) is compared with the intent (:meth:`_resolve_found`).  A refusal is journaled as
        "rejected" and backs the slot off (:meth:`_rejected`)."""
        cid, sym, now = o["client_order_id"], o["symbol"], self.venue.now_ms()
        budget = self._order_budget()
        if budget <= 0:
            self.journal.set_order_status(cid, "abandoned", now, error="the bar's order deadline passed before it was sent")
            self.counters["dropped_intents"] += 1
            self._revert_target(o["slot"])
            return
        found: list[OrderState] = []
        reduce_only = cid in self._reduce_only
        lim = self.exec_book.orders.get(cid)
        lim = lim if lim is not None and lim["kind"] == "limit" else None

        def attempt() -> None:
            try:
                if lim is not None:
                    st = self.venue.create_limit_order(sym, o["qty"], lim["price"], cid, post_only=bool(lim["post_only"]),
                                                       reduce_only=bool(lim["reduce_only"]))
                elif reduce_only:
                    st = self.venue.create_market_order(sym, o["qty"], cid, reduce_only=True)
                else:
                    st = self.venue.create_market_order(sym, o["qty"], cid)
                if self.fault is not no_fault:
                    self.fault("sent_not_acked", {"order": o})
                self.journal.set_order_status(cid, "acked", now, venue_order_id=st.order_id)
                self.reject_count.pop(o["slot"], None)
                return
            except (VenueNetworkError, VenueAuthError) as exc:
                self.journal.set_order_status(cid, "unknown", now, error=str(exc)[:200])
                st = self.venue.fetch_order(sym, cid)  # a network error here is retried too
                if st is not None:
                    found.append(st)
                    return
                if isinstance(exc, VenueAuthError):
                    raise VenueAuthError(str(exc)) from None  # not retried: the keys need fixing
                raise VenueNetworkError(str(exc)) from None
            except VenuePostOnlyReject as exc:  # it would have crossed: nothing rests; the intent re-decides
                self._post_only_rejected(o, now, str(exc))
            except VenueRejected as exc:
                dup = isinstance(exc, VenueDuplicateOrder) or "duplicate" in str(exc).lower()
                st = self.venue.fetch_order(sym, cid) if dup else None
                if st is not None:
                    found.append(st)
                else:
                    self._rejected(o, str(exc), now)

        deadline = self._bar_deadline if self._bar_deadline is not None else self.retry.clock() + budget
        try:
            try:
                attempt()  # the first attempt needs no retry policy (most sends: built only when one fails)
            except VenueNetworkError as first:
                policy = self.retry.bounded(deadline)
                failed = [first]

                def again() -> None:  # the policy's first call is the attempt that just failed
                    if failed:
                        raise failed.pop()
                    attempt()

                policy.call(again)
        except VenueError as exc:  # budget spent (or auth): the order stays "unknown", resolved by lookup later
            self._note_outage(exc, now)
        if found:
            self._resolve_found(o, found[0], now)

    def _note_outage(self, exc: BaseException, now: int) -> None:
        """Report venue calls failing (journaled when an outage starts; counted per bar by process_bar)."""
        self._bar_failed = True
        if self.outage is None:
            self.outage = {"since_ms": now, "bars": 0, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            self.journal.event("outage", now, None, error=self.outage["error"])
            log.warning("venue calls failing (%s): trading skipped until they work again", self.outage["error"])
            self._emit("outage", error=self.outage["error"])
            self._alert("outage", now, error=self.outage["error"])

    def place(self, slot: Slot, qty: float, target: float, reason: str, bar_time: int,
              reduce_only: bool = False) -> str:
        """Journal an intent (committed) then send a market order (``reduce_only``: a reduce-only order, perpetuals);
        returns the client order id."""
        return self.place_many([(slot, qty, target, reason)], bar_time, reduce_only=reduce_only)[0]

    def place_many(self, orders: list[tuple[Slot, float, float, str]], bar_time: int,
                   reduce_only: bool = False, exec_ctx: dict[str, Any] | None = None) -> list[str]:
        """Journal the intents of several orders (slot, qty, target, reason) in one committed transaction,
        then send them one by one; returns their client order ids.  An acknowledgement lost in a crash
        is recovered at restart by client order id (the intent is already durable)."""
        now = self.venue.now_ms()
        cids = []
        with self.journal:
            for slot, qty, target, reason in orders:
                seq = self.journal.next_seq(slot.id, bar_time)
                cid = client_order_id(self.prefix, slot.id, bar_time, seq, self.bench_id, self.bench_key)
                if reduce_only:
                    self._reduce_only.add(cid)
                self.journal.add_intent(client_order_id=cid, slot=slot.id, symbol=slot.symbol, qty=qty,
                                        target=target, bar_time=bar_time, seq=seq, reason=reason, now_ms=now)
                self._exec_note_order(cid, slot, reduce_only, reason, bar_time, exec_ctx)
                slot.target = target
                cids.append(cid)
            if self.commit_points:  # the intents (and the bar's writes so far) are durable before any send
                self.journal.commit()
            for cid, (slot, qty, target, reason) in zip(cids, orders):
                o = self.journal.order(cid)
                if self.fault is not no_fault:
                    self.fault("intent_saved", {"order": o})
                self.counters["orders"] += 1
                self._send(o)
                if self._progress_on:
                    self._emit("order", slot=slot.id, client_order_id=cid, qty=qty, target=target, reason=reason)
        return cids

    def _book_funding(self, bars: dict[str, Bar]) -> None:
        """Perpetual funding of the ``futures`` slots (:mod:`forge.backtest.costs`, as the backtester): at a bar
        whose open is a funding time (a multiple of ``[costs] funding_interval_h``, 8 h by default, UTC) the units held into that open pay
        ``units * open * rate`` (before that open's fills are booked); rate: the venue's current rate
        (:meth:`Venue.funding_rate`, per funding event), else ``[costs] funding_rate_8h`` scaled to the interval.  Booked in the slot ledger and journaled
        as a ``funding`` event {units, price, rate, amount} (restore replays it)."""
        for s in self._perp:
            b = bars.get(s.symbol)
            if b is None or s.ledger.units == 0.0 or not is_funding_time(b.open_time, self.cfg.costs.funding_interval_ms):
                continue
            key = (s.symbol, b.open_time)
            rate = self._funding_rates.get(key)
            if rate is None:
                rate = self.venue.funding_rate(s.symbol)  # per funding event
                rate = self.cfg.costs.funding_rate_event if rate is None else float(rate)
                self._funding_rates = {key: rate}  # one funding time at a time
            amount = funding_payment(s.ledger.units, b.open, rate)
            if amount == 0.0:
                continue
            s.ledger.pay_funding(amount)
            self.counters["funding"] += 1
            self.journal.event("funding", b.open_time, s.id, units=s.ledger.units, price=b.open, rate=rate,
                               amount=amount)

    def _halt(self, reason: str, now: int, action: str | None = None) -> None:
        """Stop trading (no new orders; marks and fills go on) and say why: a ``halt`` event, a log line, a
        progress event and an alert.  Resting limit orders of passive slots are cancelled either way; with ``action``
        "flatten" (default ``[crucible] on_mismatch``) every slot's units are closed first."""
        self.halted = reason
        action = action or self.cfg.general.on_mismatch
        with self.journal:
            self.journal.event("halt", now, None, reason=reason, action=action)
            for s in self.slots.values():
                self._clear_resting(s, now)  # a halted bench leaves no resting order (passive slots), flatten or not
            if action == "flatten":
                bar_time = (now // 60_000 - 1) * 60_000
                for s in self.slots.values():
                    if s.ledger.units != 0.0 and not self.journal.has_open_order(s.id):
                        self.flatten(s, "mismatch", bar_time)
        log.error("trading halted (%s): %s", action, reason)
        self._emit("halt", reason=reason, action=action)
        self._alert("halt", now, reason=reason, action=action)

    def flatten(self, slot: Slot, reason: str, bar_time: int) -> None:
        """Market order closing the slot's units (skipped when a closing order is already in flight); a passive slot's
        resting orders are cancelled first (the flatten waits for a cancel not yet confirmed, retried every bar)."""
        if not self._clear_resting(slot):
            slot.target = 0.0
            return
        pending = [o for o in self.journal.orders(OPEN_STATUSES) if o["slot"] == slot.id]
        if any(o["target"] == 0.0 for o in pending):
            slot.target = 0.0
            return
        if slot.ledger.units != 0.0:
            self.place(slot, -slot.ledger.units, 0.0, reason, bar_time, reduce_only=self._reduces_net(slot))
        slot.target = 0.0

    def _reduces_net(self, slot: Slot) -> bool:
        """A perpetual slot's closing order is sent reduce-only when it reduces the bench's net position in the
        symbol (its slots' units plus the orders in flight); one that offsets another slot's opposite units would
        be refused as reduce-only on a net account, so it goes as a plain market order."""
        if not slot.perpetual:
            return False
        net = sum(s.ledger.units for s in self.slots.values() if s.symbol == slot.symbol)
        net += sum(o["qty"] for o in self.journal.orders(OPEN_STATUSES) if o["symbol"] == slot.symbol)
        q = -slot.ledger.units
        return net != 0.0 and math.copysign(1.0, q) == -math.copysign(1.0, net) and abs(q) <= abs(net) + 1e-12
