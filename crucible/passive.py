"""Passive execution in the Crucible (issue 31 part 5; a mixin of :class:`crucible.runtime.Runtime`).

A slot whose execution policy is not always-taker (``[execution] policy`` or the slot's ``execution_policy``:
"maker-then-cross" or a ``forge execution train`` JSON) trades through *intents* instead of one market order per
target change; an always-taker slot (the default) never enters this module and trades exactly as before.

1. **Intent.**  When the slot's target changes (or its exposure drifted past its leverage cap), the working
   intent is replaced: its resting order is cancelled first (the replacement waits, bar by bar, until the venue
   confirms the cancel and its fills are booked, so two orders of one slot never rest at once), then the new
   intent is journaled (``exec_intents``, :mod:`crucible.journal_exec`): signed quantity from the runtime's sizing
   (:meth:`Runtime._size`), urgency and deadline from :mod:`forge.execution.intents` (previous target = the slot's
   last one), the decision price = the close the decision saw.
2. **Each bar while working** (the bar it was decided on included): the previous bar's resting order is
   cancelled (cancel/replace: idempotent -- a cancel of an order the venue no longer holds open is a no-op, a
   cancel whose outcome is unknown is retried on the next bar and nothing new is placed until it is resolved);
   the rest (intent quantity minus the booked fills of all its orders) is rounded to the venue's lot; a rest
   below one lot or the venue's minimum notional ends the intent.  Once the deadline has passed the rest
   crosses with a market order (reason "cross"); otherwise the policy picks an action from the state of
   :mod:`forge.execution.policy_nb` (spread: the venue's touch where it has a book, else the Corwin-Schultz
   estimate of the bars; volatility: EWMA of close-to-close log returns over the history window, half-life
   ``VOL_HALFLIFE`` bars; urgency; time to deadline; fraction filled; the book inputs -- imbalance, order-flow
   imbalance and its EWMA, pressure, drift, queue -- from the live book feed where the bench runs one (``[l2]
   live``, :meth:`PassiveMixin._book_inputs`), else 0 as on klines): market -> cross now; touch -> a post-only limit at the best bid (buy)
   / ask (sell), or on a bookless venue at ``close * (1 -/+ h)`` rounded away from the market
   (:func:`forge.backtest.fills.limit_price`, the kline fill model's price); inside -> one tick inside the
   touch when the spread allows (bookless: half a half-spread from the close); wait -> nothing this bar.  Every
   order of an intent carries the intent's decision bar in its HMAC client order id with the next sequence
   number (a replace is a new sequence number of the same intent), is journaled before it is sent (a commit
   point; its ``order_exec`` row names the intent, kind, limit price, post-only and reduce-only flags) and is
   recovered after a crash like a market order (resent if it was decided on the latest closed bar and never
   reached the venue; found by client order id otherwise).
3. **Post-only rejections** (the order would have crossed: :class:`crucible.venues.base.VenuePostOnlyReject`, or
   an order the venue reports closed with reason "post_only") are journaled (order status "rejected", error
   "post-only: ...", a ``post_only_reject`` event), counted, and do not back the slot off: the intent goes on
   and the next bar re-decides (the deadline crosses the rest).
4. **Kill rule, kill switch, halt, stale feed, flatten**: a slot's resting orders are cancelled and its intent
   retired first (a halt cancels them even when it does not flatten) (:meth:`PassiveMixin._clear_resting`), then its units are closed by a market order (reduce-only on
   perpetuals where it reduces the bench's net position, as before); a cancel not yet confirmed is retried every
   bar (:meth:`PassiveMixin._retry_cancels`) and the flatten follows once it is.
5. **Restart** (:meth:`PassiveMixin._reconcile_resting`, before the journal/venue reconcile): a limit order
   journaled on the latest closed bar that never reached the venue is sent now; any open order at the venue under
   this bench's valid id that the journal holds closed is cancelled (a cancel whose confirmation the crash lost);
   one the journal does not know at all halts the bench (the journal lost an order).  Working intents continue
   from the journal: a bar re-processed after a restart decides no intent whose id (``<slot>-<bar>``) a commit point
   of that bar already saved, and works no intent twice (its ``last_bar``).
6. **Dead-man's switch**: with ``[execution] cancel_all_after_seconds`` > 0, exchange venues re-arm the venue's
   cancel-all-after every bar while a passive slot trades (:meth:`crucible.venues.base.Venue.cancel_all_after`).
7. **Metrics** (every slot's orders and fills, taker ones too): ``order_exec`` / ``exec_fills`` rows -- fees,
   slippage against the decision price, markouts 1 / 5 / 15 minutes after the fill's bar, maker share; per-slot
   summaries by :func:`crucible.journal_exec.slot_exec_metrics` (``crucible status``).

Testnet fills say nothing about the queue position a resting order would have on mainnet: the testnet book is
thin and other participants are few; the start event and the dashboard say so (:data:`QUEUE_WARNING`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from crucible.journal import OPEN_STATUSES
from crucible.journal_exec import ExecBook
from crucible.reconcile import own_client_id
from crucible.slots import Slot, client_order_id
from crucible.venues.base import (
    Bar,
    OrderState,
    VenueError,
    VenueNetworkError,
    VenueRejected,
)
from forge.backtest.fills import limit_price
from forge.backtest.spread import corwin_schultz_half_spread
from forge.core.errors import ConfigError
from forge.execution.intents import deadline as intent_deadline
from forge.execution.intents import round_order
from forge.execution.intents import urgency as intent_urgency
from forge.execution.policy import ALWAYS_TAKER_SHA256, ExecutionPolicy
from forge.execution.policy_nb import (
    A_INSIDE,
    A_MARKET,
    A_TOUCH,
    ACTION_NAMES,
    F_BIAS,
    F_DRIFT,
    F_FILLED,
    F_IMBALANCE,
    F_OFI,
    F_OFI_EMA,
    F_PRESSURE,
    F_QUEUE,
    F_SPREAD,
    F_TAU,
    F_URGENCY,
    F_VOL,
    N_FEATURES,
    maker_then_cross,
    policy_action_nb,
)
from forge.features.l2lens import policy_book_inputs
from forge.features.l2lens_nb import depth_ticks_nb, pressure_nb

__all__ = ["QUEUE_WARNING", "VOL_HALFLIFE", "PassiveMixin", "resolve_policy"]

log = logging.getLogger("crucible")

VOL_HALFLIFE = 20.0  # bars: the volatility input's EWMA half-life (as ``[execution] vol_halflife`` of the backtest)
QUEUE_WARNING = ("passive execution on a testnet: fills of resting orders say nothing about the queue position "
                 "they would have on mainnet (thin testnet books, few participants)")


def resolve_policy(name: str, where: str) -> ExecutionPolicy:
    """The execution policy a config names: "" / "always-taker", "maker-then-cross", or a policy JSON path.
    raises ConfigError naming ``where`` for a missing or malformed file."""
    if name in ("", "always-taker"):
        return ExecutionPolicy.always_taker()
    if name == "maker-then-cross":
        return ExecutionPolicy(maker_then_cross(), {"name": "maker-then-cross"})
    if not Path(name).is_file():
        raise ConfigError(f"{where}: execution policy {name!r} is neither always-taker, maker-then-cross nor a file")
    return ExecutionPolicy.load(name)


class PassiveMixin:
    """Intents, resting orders, post-only rejections, dead-man's switch and execution metrics (module docstring)."""

    # ------------------------------------------------------------------ set-up

    def _init_passive(self) -> None:
        ex = self.cfg.execution
        self.policies: dict[str, ExecutionPolicy] = {}
        for sc in self.cfg.slots:
            pol = resolve_policy(sc.execution_policy or ex.policy, f"{self.cfg.source} [[slots]] {sc.id}")
            if pol.sha256 != ALWAYS_TAKER_SHA256:
                self.policies[sc.id] = pol
        self.exec_book = ExecBook(self.journal)
        self._cancel_due: set[str] = set()  # slots whose resting orders could not be cancelled yet (retried every bar)
        self._exec_bar: int | None = None  # open time of the bar being processed (fills' reference bar)
        self._dcp_armed = False
        self._book_ctx: dict[str, dict[str, Any]] = {}  # intent id -> its book inputs' memory (live book feed)
        for k in ("intents", "limit_orders", "post_only_rejects", "cancels", "crosses", "stray_cancels"):
            self.counters[k] = 0

    def passive_warning(self) -> str | None:
        """:data:`QUEUE_WARNING` when a passive slot trades on an exchange venue, else None."""
        return QUEUE_WARNING if self.policies and getattr(self.venue, "live", False) else None

    # ------------------------------------------------------------------ hooks of the order path

    def _exec_note_order(self, cid: str, slot: Slot, reduce_only: bool, reason: str, bar_time: int,
                         ctx: dict[str, Any] | None) -> None:
        """The execution row of a market order placed by :meth:`place_many` (every slot: the decision price is the
        slot's mark, the close the decision saw)."""
        ctx = ctx or {}
        self.exec_book.add_order(cid, intent_id=ctx.get("intent_id"), kind="market", price=0.0, post_only=False,
                                 reduce_only=reduce_only, action=ctx.get("action", reason),
                                 decision_price=ctx.get("decision_price", slot.mark), placed_bar=bar_time)

    def _exec_fill(self, f: Any, slot: Slot) -> None:
        """A fill was booked: its execution row (reference bar = the bar it belongs to: its minute, at most the bar
        being processed -- a fake exchange's wall clock runs ahead of its historical bars)."""
        cur = self._exec_bar if self._exec_bar is not None else (self.venue.now_ms() // 60_000 - 1) * 60_000
        ref = min((int(f.time_ms) // 60_000) * 60_000, cur)
        self.exec_book.add_fill(f.trade_id, slot.id, f.symbol, f.client_order_id, f.qty, f.price, f.fee, ref)

    def _exec_marks(self, bars: dict[str, Bar], bar_time: int) -> None:
        """The bar closed: settle the markouts it reaches."""
        markouts = self.exec_book.markouts
        for sym, b in bars.items():
            markouts(sym, b.open_time, b.close)

    def _is_limit(self, cid: str) -> bool:
        return self.exec_book.is_limit(cid)

    def _passive_target(self, slot_id: str) -> float | None:
        """The target a passive slot is working towards, from the journal: its working intent's, else the later of
        its last intent and its last standing order outside intents (a flatten; an intent a flatten or halt retired
        gives way to that flatten's order, or NaN -- re-size at the next signal); None for a taker slot."""
        if slot_id not in self.policies:
            return None
        it = self.exec_book.working.get(slot_id)
        if it is not None:
            return float(it["target"])
        self.exec_book.flush()  # its order_exec rows carried to the commit are read below
        db = self.journal.db
        r = db.execute("SELECT target, bar_time, status FROM exec_intents WHERE slot=? ORDER BY bar_time DESC, rowid DESC"
                       " LIMIT 1", (slot_id,)).fetchone()
        o = db.execute("SELECT o.target, o.bar_time FROM orders o LEFT JOIN order_exec e USING(client_order_id) "
                       "WHERE o.slot=? AND e.intent_id IS NULL AND o.status NOT IN "
                       "('abandoned','rejected','canceled','lost','collided') ORDER BY o.bar_time DESC, o.rowid DESC "
                       "LIMIT 1", (slot_id,)).fetchone()
        if r is None and o is None:
            return 0.0
        if r is not None and r[2] == "canceled":  # retired by a flatten / halt: the flatten's order, else re-size
            return float(o[0]) if o is not None and o[1] >= r[1] else float("nan")
        if o is None or (r is not None and r[1] >= o[1]):
            return float(r[0])
        return float(o[0])

    def _post_only_rejected(self, o: dict[str, Any], now: int, error: str) -> None:
        cid, sid = o["client_order_id"], o["slot"]
        self.counters["post_only_rejects"] += 1
        self.journal.set_order_status(cid, "rejected", now, error=f"post-only: {error}"[:200])
        ex = self.exec_book.orders.get(cid) or {}
        self.journal.event("post_only_reject", now, sid, client_order_id=cid, qty=o["qty"], price=ex.get("price"),
                           intent=ex.get("intent_id"), error=error[:200])
        log.info("slot %s: post-only order %s would have crossed (%s); the intent re-decides next bar", sid, cid,
                 error[:120])
        self._emit("post_only_reject", slot=sid, client_order_id=cid)

    # ------------------------------------------------------------------ signals -> intents

    def _passive_signal(self, s: Slot, t: float, over: bool, bar: Bar, bar_time: int) -> None:
        """Slot ``s`` (passive) has a new target ``t`` (or drifted past its cap): replace its working intent."""
        now = self.venue.now_ms()
        if bar_time < self.reject_until.get(s.id, -1) and not over:
            return
        book = self.exec_book
        if book.intent_exists(f"{s.id}-{bar_time}"):
            return  # decided on this bar already: a bar re-processed after a restart (its commit point saved the intent)
        it = book.working.get(s.id)
        if it is not None:
            if not self._close_intent_orders(it, now):
                return  # the resting order is not confirmed closed yet: the replacement waits (no double orders)
            book.update_intent(it, now, status="replaced")
        if any(not self._is_limit(o["client_order_id"]) for o in self.journal.orders(OPEN_STATUSES)
               if o["slot"] == s.id):
            return  # a market order (a cross) is in flight: size from its fill next bar
        eq = s.equity()
        qty = self._size(s, t, eq, bar.close)
        if qty is None:
            return
        if qty == 0.0 or (abs(qty) * bar.close < self.cfg.general.min_order_notional and t != 0.0):
            s.target = t
            return
        prev = s.target if s.target == s.target else (s.ledger.units * bar.close / eq if eq > 0 else 0.0)
        u = intent_urgency(max(-1.0, min(1.0, t)), max(-1.0, min(1.0, prev)))
        row = {"id": f"{s.id}-{bar_time}", "slot": s.id, "symbol": s.symbol, "qty": float(qty), "target": float(t),
               "urgency": float(u), "deadline": intent_deadline(u, self.cfg.execution.deadline_bars),
               "decision_price": float(bar.close), "bar_time": int(bar_time), "status": "working", "age": 0,
               "last_bar": -1, "created_ms": now, "updated_ms": now}
        book.add_intent(row)
        self.journal.event("intent", now, s.id, id=row["id"], qty=row["qty"], target=t, urgency=u,
                           deadline=row["deadline"], decision_price=row["decision_price"])
        self.counters["intents"] += 1
        s.target = t

    # ------------------------------------------------------------------ working intents

    def _work_intents(self, bars: dict[str, Bar], bar_time: int) -> None:
        """Each working intent of a live passive slot with a bar now: cancel/replace, then act (module docstring)."""
        book = self.exec_book
        if not book.working:
            return
        now = self.venue.now_ms()
        for sid, it in list(book.working.items()):
            s = self.slots.get(sid)
            b = bars.get(it["symbol"])
            if s is None or b is None or s.status != "live" or it["last_bar"] >= bar_time:
                continue
            if not self._close_intent_orders(it, now):
                continue
            rules = self.venue.market_rules(s.symbol)
            filled = sum(self.journal.filled_qty(c) for c in book.intent_orders(it["id"]))
            rem = float(it["qty"]) - filled
            side = 1 if it["qty"] > 0 else -1
            q = abs(self.venue.round_qty(s.symbol, rem)) if rem * side > 0 else 0.0
            if rules.lot > 0:
                q = math.floor(q / rules.lot + 1e-9) * rules.lot
            if q <= 0.0 or q * b.close < rules.min_notional:
                book.update_intent(it, now, status="done", last_bar=bar_time)
                continue
            left = int(it["deadline"]) - int(it["age"])
            act = A_MARKET if left <= 0 else self._policy_action(s, it, b, rules.tick, left, 1.0 - abs(rem) / abs(it["qty"]))
            if act == A_MARKET:
                book.update_intent(it, now, status="done", age=it["age"] + 1, last_bar=bar_time)
                self.counters["crosses"] += 1
                self.place_many([(s, side * q, float(it["target"]), "cross")], bar_time,
                                reduce_only=False, exec_ctx={"intent_id": it["id"], "action": "market",
                                                             "decision_price": float(it["decision_price"])})
                continue
            if act in (A_TOUCH, A_INSIDE):
                px = self._limit_price(s.symbol, side, act, b, rules.tick)
                r = round_order(side, px, q, rules.tick, rules.lot, rules.min_notional) if px > 0 else None
                book.update_intent(it, now, age=it["age"] + 1, last_bar=bar_time)
                if r is not None:
                    self._place_limit(s, it, side * r[1], r[0], ACTION_NAMES[act], bar_time)
                continue
            book.update_intent(it, now, age=it["age"] + 1, last_bar=bar_time)  # wait

    def _warm_passive(self) -> None:
        """Compile the passive path's kernels before the first bar (the Corwin-Schultz half-spread of the kline
        model, the policy's action): see :meth:`crucible.runtime.Runtime._warm_kernels`.  Results are discarded."""
        for sid, pol in sorted(self.policies.items()):
            s = self.slots[sid]
            self._half_spread(s.symbol, self.venue.market_rules(s.symbol).tick)
            policy_action_nb(pol.weights, np.zeros(N_FEATURES))

    def _history(self, symbol: str, n: int) -> dict[str, np.ndarray]:
        if self._at is not None:
            return self.venue.history_at(symbol, n, self._at)  # type: ignore[attr-defined]
        return self.venue.history(symbol, n)

    def _half_spread(self, symbol: str, tick: float) -> float:
        """The Corwin-Schultz half-spread (fraction) known at the last closed bar (the kline fill model's estimate)."""
        w = self.cfg.execution.spread_window
        h = self._history(symbol, w + 1)
        if len(h["close"]) == 0:
            return 0.0
        return float(corwin_schultz_half_spread(h["high"], h["low"], h["close"], window=w, tick=tick)[-1])

    def _policy_action(self, s: Slot, it: dict[str, Any], b: Bar, tick: float, left: int, frac: float) -> int:
        x = np.zeros(N_FEATURES)
        x[F_BIAS] = 1.0
        touch = self.venue.touch(s.symbol)
        if touch is not None and touch[1] > touch[0] > 0:
            x[F_SPREAD] = (touch[1] - touch[0]) / (0.5 * (touch[0] + touch[1])) * 1e3
        else:
            x[F_SPREAD] = 2.0 * self._half_spread(s.symbol, tick) * 1e3
        c = self._history(s.symbol, 4 * int(VOL_HALFLIFE) + 1)["close"]
        if len(c) >= 2:
            lr = np.diff(np.log(c))
            lam = 1.0 - math.exp(-math.log(2.0) / VOL_HALFLIFE)
            v2 = 0.0
            for r in lr:
                v2 = (1.0 - lam) * v2 + lam * r * r
            x[F_VOL] = math.sqrt(v2) * 1e3
        x[F_URGENCY] = float(it["urgency"])
        x[F_TAU] = left / it["deadline"] if it["deadline"] > 0 else 0.0
        x[F_FILLED] = frac
        self._book_inputs(x, s.symbol, it)
        return int(policy_action_nb(self.policies[s.id].weights, x))

    def _book_inputs(self, x: np.ndarray, symbol: str, it: dict[str, Any]) -> None:
        """The policy's book inputs from the live book feed (:mod:`crucible.books`), as the LOB simulator's execution
        environment defines them (:mod:`forge.execution.lob_env`): F_IMBALANCE and F_OFI
        (:func:`forge.features.l2lens.policy_book_inputs`; the OFI increment since this intent's previous decision,
        0 at its first), F_OFI_EMA (weight 1/2 per decision), F_PRESSURE (side x depth imbalance within 5 ticks of
        the bests), F_DRIFT (side x (mid - the mid at the intent's first decision) / that mid, units of 10 bp) and
        F_QUEUE (the size resting at the touch the order joins / the intent's size, clipped to [0, 10]: the feed's
        book is mainnet's, where the bench's testnet order does not rest, so this is the queue a mainnet order at
        the touch would join).  On the replay venue with ``[l2] dir`` the state is the recorded one holding at the
        decision (the bar's close).  Without books (or before the first state, or while the stream is in a gap)
        they stay 0, the kline context; the memory of an intent is not journaled, so a restart
        starts it again (OFI and drift 0 at its first decision after the restart)."""
        books = getattr(self.panel, "books", None)
        st = books.state(symbol, self.venue.now_ms()) if books is not None else None
        if st is None:
            return
        bpx, bsz, apx, asz, tick = st
        top = (float(bpx[0]), float(bsz[0]), float(apx[0]), float(asz[0]))
        if not (np.isfinite(top[0]) and np.isfinite(top[2]) and top[2] > top[0] > 0):
            return
        side = 1 if it["qty"] > 0 else -1
        ctx = self._book_ctx.get(it["id"])
        if ctx is None:
            if len(self._book_ctx) > 4 * max(1, len(self.slots)):  # intents of the past: forget them
                for k in list(self._book_ctx)[: len(self._book_ctx) // 2]:
                    del self._book_ctx[k]
            ctx = self._book_ctx[it["id"]] = {"prev": None, "ema": 0.0, "mid0": 0.5 * (top[0] + top[2])}
        _spread, imb, ofi = policy_book_inputs(ctx["prev"], top, side)
        ctx["prev"] = top
        ctx["ema"] = 0.5 * ctx["ema"] + 0.5 * ofi
        x[F_IMBALANCE], x[F_OFI], x[F_OFI_EMA] = imb, ofi, ctx["ema"]
        if tick:
            db = depth_ticks_nb(bpx[None, :], bsz[None, :], float(tick), 5, True)
            da = depth_ticks_nb(apx[None, :], asz[None, :], float(tick), 5, False)
            x[F_PRESSURE] = side * float(pressure_nb(db, da)[0])
        mid = 0.5 * (top[0] + top[2])
        x[F_DRIFT] = side * (mid - ctx["mid0"]) / ctx["mid0"] * 1e3
        x[F_QUEUE] = min(10.0, max(0.0, (top[1] if side > 0 else top[3]) / abs(float(it["qty"]))))

    def _limit_price(self, symbol: str, side: int, act: int, b: Bar, tick: float) -> float:
        touch = self.venue.touch(symbol)
        if touch is not None and touch[1] > touch[0] > 0:
            bid, ask = touch
            if side > 0:
                return bid + tick if act == A_INSIDE and bid + tick < ask - 1e-12 else bid
            return ask - tick if act == A_INSIDE and ask - tick > bid + 1e-12 else ask
        hs = self._half_spread(symbol, tick)
        return limit_price(b.close, side, hs, 1.0 if act == A_TOUCH else 0.5, tick)

    def _place_limit(self, s: Slot, it: dict[str, Any], qty: float, price: float, action: str, bar_time: int) -> None:
        """Journal (commit point) then send a post-only limit order of intent ``it``: the intent's decision bar in
        the client order id, the next sequence number."""
        now = self.venue.now_ms()
        bt = int(it["bar_time"])
        with self.journal:
            seq = self.journal.next_seq(s.id, bt)
            cid = client_order_id(self.prefix, s.id, bt, seq, self.bench_id, self.bench_key)
            self.journal.add_intent(client_order_id=cid, slot=s.id, symbol=s.symbol, qty=qty, target=float(it["target"]),
                                    bar_time=bt, seq=seq, reason="passive", now_ms=now)
            self.exec_book.add_order(cid, intent_id=it["id"], kind="limit", price=price,
                                     post_only=self.cfg.execution.post_only, reduce_only=False, action=action,
                                     decision_price=float(it["decision_price"]), placed_bar=bar_time)
            if self.commit_points:
                self.journal.commit()
            o = self.journal.order(cid)
            self.fault("intent_saved", {"order": o})
            self.counters["orders"] += 1
            self.counters["limit_orders"] += 1
            self._send(o)
            if self._progress_on:
                self._emit("order", slot=s.id, client_order_id=cid, qty=qty, target=it["target"], reason="passive",
                           price=price)

    # ------------------------------------------------------------------ cancel

    def _close_intent_orders(self, it: dict[str, Any], now: int) -> bool:
        """Cancel the intent's open orders; True when none is left open (cancels confirmed, fills booked).  A market
        cross in flight is not cancelled (it fills on arrival): False until it is done."""
        ok = True
        for o in self.journal.orders(OPEN_STATUSES):
            ex = self.exec_book.orders.get(o["client_order_id"])
            if ex is None or ex["intent_id"] != it["id"]:
                continue
            ok = (self._close_limit(o, now) if ex["kind"] == "limit" else False) and ok
        return ok

    def _close_limit(self, o: dict[str, Any], now: int) -> bool:
        """Cancel one resting limit order; True once the venue holds it closed and its fills are booked (status
        final in the journal).  Never raises a venue error: an unknown outcome is False (retried next bar)."""
        cid, sym = o["client_order_id"], o["symbol"]
        try:
            st = self.venue.fetch_order(sym, cid)
            if st is None:
                if o["status"] in ("intent", "unknown"):  # never reached the venue (the send path gave up)
                    self.journal.set_order_status(cid, "abandoned", now, error="never reached the venue")
                    self.counters["abandoned"] += 1
                    return True
                return False  # acked, yet unknown to the venue: the order sync's lost-order rule decides
            if st.status == "open":
                if self.commit_points:  # a commit point: a restart never processes a bar again with this cancel done
                    self.journal.commit()
                try:
                    self.venue.cancel_order(sym, cid)
                except VenueRejected:  # "not open (any more)": filled or cancelled meanwhile -- the lookup says which
                    pass
                self.counters["cancels"] += 1
                st = self.venue.fetch_order(sym, cid)
                if st is None or st.status == "open":
                    return False
            if abs(self.journal.filled_qty(cid) - st.filled) > 1e-12:
                self._sync_fills([sym], int(o["created_ms"]) - 60_000, now if self._at is not None else None)
                if abs(self.journal.filled_qty(cid) - st.filled) > 1e-12:
                    return False  # the venue's executions are not visible yet
        except VenueError as exc:
            self.journal.event("cancel_unknown", now, o["slot"], client_order_id=cid, error=str(exc)[:200])
            log.warning("slot %s: cancel of %s not confirmed (%s); retried next bar", o["slot"], cid, str(exc)[:120])
            return False
        self._finish_limit(o, st, now)
        return True

    def _finish_limit(self, o: dict[str, Any], st: OrderState, now: int) -> None:
        if st.reason == "post_only" and st.filled == 0.0:
            self._post_only_rejected(o, now, "closed by the venue as crossing")
        else:
            self.journal.set_order_status(o["client_order_id"], st.status, now, venue_order_id=st.order_id)

    def _clear_resting(self, slot: Slot, now: int | None = None) -> bool:
        """Retire the slot's working intent and cancel its resting limit orders (before a flatten); True when none is
        left open.  False: retried every bar (:meth:`_retry_cancels`)."""
        if slot.id not in self.policies:
            return True
        now = self.venue.now_ms() if now is None else now
        it = self.exec_book.working.get(slot.id)
        if it is not None:
            self.exec_book.update_intent(it, now, status="canceled")
            slot.target = float("nan")  # not reached: a flatten sets 0, else the next signal re-sizes
        ok = True
        for o in self.journal.orders(OPEN_STATUSES):
            if o["slot"] == slot.id and self._is_limit(o["client_order_id"]):
                ok = self._close_limit(o, now) and ok
        if ok:
            self._cancel_due.discard(slot.id)
        else:
            self._cancel_due.add(slot.id)
        return ok

    def _retry_cancels(self, bar_time: int, now: int) -> None:
        """Cancels that were not confirmed: try again; a slot whose orders are all closed now and that should be flat
        (killed, stopped, or its flatten waited for this cancel: target 0) is flattened."""
        for sid in sorted(self._cancel_due):
            s = self.slots[sid]
            if self._clear_resting(s, now) and s.ledger.units != 0.0 and not self.journal.has_open_order(sid) \
                    and (s.status != "live" or s.target == 0.0) and s.mark > 0:
                self.flatten(s, "cleanup", bar_time)

    # ------------------------------------------------------------------ dead-man's switch

    def _arm_dcp(self, now: int) -> None:
        secs = self.cfg.execution.cancel_all_after_seconds
        if secs <= 0 or not self.policies or not getattr(self.venue, "live", False):
            return
        try:
            armed = self.venue.cancel_all_after(secs)
        except VenueError as exc:
            log.warning("%s: cancel-all-after not armed (%s)", self.venue.name, str(exc)[:120])
            return
        if armed and not self._dcp_armed:
            self.journal.event("dcp_armed", now, None, seconds=secs)
        self._dcp_armed = bool(armed)

    # ------------------------------------------------------------------ restart

    def _reconcile_resting(self, now: int) -> None:
        """Before the journal/venue reconcile (module docstring, 5)."""
        if not self.policies:
            return
        latest = (now // 60_000 - 1) * 60_000
        for o in self.journal.orders(["intent"]):
            ex = self.exec_book.orders.get(o["client_order_id"])
            if ex is None or ex["kind"] != "limit" or ex["placed_bar"] < latest:
                continue
            if self.venue.fetch_order(o["symbol"], o["client_order_id"]) is None:
                self.counters["resent"] += 1
                self._send(o)
        for st in self.venue.fetch_open_orders(None):
            cid = st.client_order_id
            if not own_client_id(cid, self.prefix, self.bench_id, self.bench_key):
                continue
            jo = self.journal.order(cid)
            if jo is not None and jo["status"] in OPEN_STATUSES:
                continue
            try:
                self.venue.cancel_order(st.symbol, cid)
            except (VenueNetworkError, VenueRejected) as exc:
                log.warning("stray order %s not cancelled (%s)", cid, str(exc)[:120])
            self.counters["stray_cancels"] += 1
            self.journal.event("stray_order_cancelled", now, jo["slot"] if jo else None, client_order_id=cid,
                               journal_status=jo["status"] if jo else None, venue=st.to_dict())
            if jo is None and self.halted is None:
                self._halt(f"the venue holds open order {cid} under this bench's valid id but the journal has no such "
                           "order: the journal lost orders (restore the journal before trading)", now)
