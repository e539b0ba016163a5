"""Restart path of the Crucible runtime (a mixin of :class:`crucible.runtime.Runtime`): restore and reconcile.

:meth:`ReconcileMixin.restore` replays the journal into slot state (genomes after swaps, kills, weights,
transfers, rejections, foreign fills) and rebuilds the ledgers and recent equity marks in the order the
running bench applied them.  :meth:`ReconcileMixin.reconcile` then compares with the venue before any
trading: orders in an open status are resolved by client order id (an intent never sent is sent now under
the same id if its bar is still the latest closed bar, otherwise abandoned), missed fills are booked, and
positions and balance are compared with the journal's.  On the replay venue, bars after the last committed
one are processed again as they were (:meth:`ReconcileMixin._replay_missed`), so a restart reaches the
uninterrupted run's state.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from crucible.lineage import policy_from_event
from crucible.journal import OPEN_STATUSES, JournalError
from crucible.slots import is_own_order_id, new_bench_id
from crucible.venues.base import BAR_FIELDS, Bar, VenueError, VenueNetworkError, VenueRejected
from forge.core.errors import ConfigError
from forge.gp import Genome

__all__ = ["ReconcileMixin", "AdoptRequired", "own_client_id", "expected_balance", "netted_realised", "BALANCE_TOL_USDT",
           "BALANCE_TOL_FRACTION"]

log = logging.getLogger("crucible")

BALANCE_TOL_USDT = 0.5
BALANCE_TOL_FRACTION = 1e-3
"""A reconcile balance difference above ``BALANCE_TOL_USDT + BALANCE_TOL_FRACTION x`` the bench's configured
capital halts trading (rounding of fees and prices at the venue stays far below it)."""


def own_client_id(cid: str, prefix: str, bench_id: str, key: bytes) -> bool:
    """True when ``cid`` is provably an order of *this* bench: its prefix and bench id, and the HMAC tag over
    bench, slot and sequence recomputed with the bench key (:func:`crucible.slots.is_own_order_id`).  The one
    place that decides it for rollback evidence: a fill at the venue with such an id that the journal lacks
    means the journal lost it (intents are committed before orders are sent); an id that merely looks like
    ours (a guessed prefix and bench id) proves nothing."""
    return bool(cid) and is_own_order_id(cid, key, prefix, bench_id)


def netted_realised(fills: Any) -> float:
    """Realised P&L after fees (USDT) of ``fills`` (dicts with symbol, qty, price, fee; in execution order) on
    one net position per symbol, average-cost method — how a one-way perpetual account (Bybit, Binance USDⓈ-M)
    books them: the slots' opposite positions in one symbol are one position at the venue, so their per-slot
    realised P&L differs from the account's until both are closed."""
    from crucible.slots import Ledger

    books: dict[str, Ledger] = {}
    for f in fills:
        books.setdefault(str(f["symbol"]), Ledger(0.0)).apply(float(f["qty"]), float(f["price"]), float(f["fee"]))
    return float(sum(b.realised for b in books.values()))


def expected_balance(slots: Any, baseline: float, *, wallet: bool, past: dict[str, tuple[float, float]] | None = None,
                     foreign_cash: float = 0.0, perp_fills: Any = None, perp_funding: float = 0.0) -> float:
    """The venue balance the journal implies, comparing like with like (USDT).

    Spot-like accounting (spot slots; every slot on the replay venue, whose cash moves by the traded notional):
    baseline - sum over slots of (capital + transfers - cash), i.e. the cash spent on units, fees and funding,
    plus ``foreign_cash`` (cash moved by fills not in the slot ledgers: foreign ones, and on a replay restart
    this bench's fills booked only when their bar is processed again).  Wallet accounting (perpetual
    slots on an exchange, ``wallet=True``): the wallet balance moves only by realised P&L - fees +/- funding;
    the open position's notional is not spent.  With ``perp_fills`` (every fill of those slots, all lives) the
    realised P&L is the account's, netted per symbol (:func:`netted_realised`) minus ``perp_funding`` (USDT
    paid); without, the sum of the slot ledgers' ``realised``.  past: slot id ->
    (spent, realised) of its earlier lives (a re-armed slot starts a new ledger; its dead life's money stays
    spent).  So a consistent account shows a difference of ~0 either way.
    """
    exp = float(baseline) + float(foreign_cash)
    past = past or {}
    netted = wallet and perp_fills is not None
    if netted:
        exp += netted_realised(perp_fills) - float(perp_funding)
    for s in slots:
        spent_before, realised_before = past.get(s.id, (0.0, 0.0))
        if wallet and s.perpetual:
            if not netted:
                exp += s.ledger.realised + realised_before
        else:
            exp -= s.capital + s.ledger.transfers - s.ledger.cash + spent_before
    return exp


class AdoptRequired(JournalError):
    """A new journal faces positions at the venue and ``adopt`` was not given (exit status 2)."""


class ReconcileMixin:
    """Restore from the journal and reconcile with the venue (see module docstring)."""

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

    def restore(self) -> None:
        """Replay the journal into slot state (genomes, kills, ledgers, targets, weights, cursor)."""
        j = self.journal
        if j.get_meta("started_ms") is None:
            self._adopt_or_refuse()
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
        self._restored_funding: list[tuple[int, str, float]] = []  # (bar open ms, slot, USDT paid)
        rearms: list[tuple[int, str]] = []
        for ev in j.events():
            s = self.slots.get(ev["slot"]) if ev["slot"] else None
            d = ev["data"]
            if ev["kind"] in ("swap", "rollback") and s is not None:
                g = Genome.from_dict(d["genome"], source="journal")
                if ev["kind"] == "swap":
                    s.previous.append(s.genome)
                    s.lineage = d.get("lineage") or s.lineage
                elif s.previous:
                    s.previous.pop()
                s.genome = g
                s.policy, s.size_multiplier = policy_from_event(d)
                self.genome_book.setdefault(s.identity, (g, s.symbol, None))
                self.counters["swaps"] += ev["kind"] == "swap"
            elif ev["kind"] == "rearm" and s is not None:  # its new ledger: in _rebuild, in time order
                pol, mult = policy_from_event(d)
                self._apply_rearm(s, Genome.from_dict(d["genome"], source="journal"), d.get("lineage") or {},
                                  d.get("weight"), policy=pol, size_multiplier=mult)
                rearms.append((int(ev["time_ms"]), s.id))
            elif ev["kind"] == "kill" and s is not None:
                s.status = "killed"
                self.kill_info[s.id] = {"equity": d.get("equity"), "time_ms": ev["time_ms"]}
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
            elif ev["kind"] == "funding" and s is not None:
                self._restored_funding.append((int(ev["time_ms"]), s.id, float(d["amount"])))
            elif ev["kind"] == "foreign_fill":
                ff = d["fill"]
                self._count_foreign(ff["trade_id"], ff["symbol"], float(ff["qty"]), int(ff["time_ms"]))
            elif ev["kind"] == "venue_action_fill":  # reported once; its units stay unexplained (the reconcile halts)
                self.foreign_trades.add(str(d["fill"]["trade_id"]))
        self.last_bar_ms = j.get_meta("last_bar_ms")
        self._rebuild(transfers, rearms)
        for sid in self.slots:
            self._revert_target(sid)

    def _rebuild(self, transfers: list[tuple[int, dict[str, float]]],
                 rearms: list[tuple[int, str]] = ()) -> None:
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
        for i, fu in enumerate(getattr(self, "_restored_funding", ())):  # at a bar's open: after the transfers of
            ops.append((fu[0], 0.5, i, fu))  # the bar before (same time), before that open's fills
        for i, r in enumerate(rearms):  # a re-armed slot's new life starts before that bar's fills
            ops.append((r[0], -1, i, r))
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

    def _apply_op(self, op: tuple[int, float, int, Any]) -> None:
        if op[1] == 0.5:  # funding (bar open ms, slot, USDT paid)
            self.slots[op[3][1]].ledger.pay_funding(op[3][2])
            return
        if op[1] == -1:
            self._new_life(self.slots[op[3][1]])
        elif op[1] == 1:
            f = op[3]
            self.slots[f["slot"]].ledger.apply(f["qty"], f["price"], f["fee"])
        else:
            for sid, amt in op[3].items():
                if sid in self.slots:
                    self.slots[sid].ledger.transfer(float(amt))

    def _adopt_or_refuse(self) -> None:
        """A new (empty or missing) journal: refuse to start when the venue already holds positions, unless the
        operator passed ``adopt`` (``crucible live --adopt``); adopted positions become the baseline, never
        traded by the slots, and an ``adopt`` event records them.  raises AdoptRequired (exit 2)."""
        pos = self.venue.fetch_positions()
        if not pos:
            return
        if not self.adopt:
            raise AdoptRequired(f"{self.journal.path}: the journal is new (empty or missing) but the venue holds "
                                f"positions {pos}; refusing to start (they may belong to a bench whose journal was "
                                "lost: restore that journal, or close them, or pass --adopt to take them as this "
                                "bench's baseline)")
        self.journal.event("adopt", self.venue.now_ms(), None, positions=pos)
        log.warning("new journal: adopting the venue's positions %s as the baseline (--adopt)", pos)

    def reconcile(self) -> dict[str, Any]:
        """Resolve unknown orders by client order id, book missed fills, compare positions and balance.

        returns {"resolved": [...], "resent": [...], "abandoned": [...], "new_fills": int,
        "position_diff": {symbol: venue - journal}, "balance_diff": venue - expected (USDT) | None,
        "balance_check": {"venue", "expected", "tolerance", "comparable", "accounting"} | None, "doubts": [...]}.
        Trading halts (:meth:`_halt`) with a report when the journal is in doubt (:attr:`Journal.doubts`, or
        fills at the venue with this bench's own client ids that the journal lacks: :func:`own_client_id`), when
        positions differ, or when a comparable balance differs by more than the tolerance
        (:func:`expected_balance`).
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
        started = int(j.get_meta("started_ms", 0) or 0)
        foreign = [e["data"].get("fill") or {} for e in j.events("foreign_fill")]
        lost = [f for f in foreign if own_client_id(str(f.get("client_order_id") or ""), self.prefix, self.bench_id, self.bench_key)
                and not j.has_fill(str(f.get("trade_id")))]
        live = bool(getattr(v, "live", False))
        vbal = v.fetch_balance()
        rep["balance_diff"] = None
        rep["balance_check"] = None
        if bb is not None:
            wallet_perp = live and any(s.perpetual for s in self.slots.values())
            recent = [f for f in foreign if int(f.get("time_ms") or 0) >= started]
            fcash = -sum(float(f.get("qty", 0.0)) * float(f.get("price", 0.0)) + float(f.get("fee", 0.0))
                         for f in recent)
            if until is not None and self.unbooked_units:  # replay: own fills booked when their bar is re-run
                for sym in sorted({s.symbol for s in self.slots.values()}):
                    for f in v.fetch_fills(sym, since):
                        if f.time_ms >= until and not j.has_fill(f.trade_id) and self._slot_of(f.client_order_id):
                            fcash -= f.qty * f.price + f.fee
            perp = {s.id for s in self.slots.values() if s.perpetual}
            pfills = [f for f in j.fills() if f["slot"] in perp] if wallet_perp else None
            pfund = sum(float(e["data"].get("amount", 0.0)) for e in j.events("funding") if e["slot"] in perp)
            exp = expected_balance(self.slots.values(), bb, wallet=live, past=getattr(self, "_past_lives", {}),
                                   foreign_cash=fcash, perp_fills=pfills, perp_funding=pfund)
            rep["balance_diff"] = vbal - exp
            # a foreign fill's (or an adopted position's) realised P&L on a wallet is not known here
            comparable = not (wallet_perp and (recent or any(abs(x) > 0 for x in base.values())))
            tol = BALANCE_TOL_USDT + BALANCE_TOL_FRACTION * sum(s.capital for s in self.slots.values())
            rep["balance_check"] = {"venue": vbal, "expected": exp, "tolerance": tol, "comparable": comparable,
                                    "accounting": "wallet (perpetual: realised - fees - funding)" if wallet_perp
                                    else "cash (spent on units, fees, funding)"}
        doubts = list(getattr(j, "doubts", []) or [])
        if lost:
            f0 = lost[0]
            doubts.append(f"{len(lost)} fill(s) at the venue carry this bench's client-id prefix "
                          f"({self.prefix}-{self.bench_id}) but are missing from the journal (first: trade "
                          f"{f0.get('trade_id')}, order {f0.get('client_order_id')}): the journal was rolled back")
        rep["doubts"] = doubts
        j.event("reconcile", now, **rep)
        self.reconcile_report = rep
        self._emit("reconcile", **rep)
        if doubts:
            self._halt(f"journal in doubt ({j.path}, last chained seq {getattr(j, 'chain_seq', '?')}): "
                       + " | ".join(doubts) + f" | the venue shows positions {vpos} and balance {vbal:.2f} USDT; "
                       "check the account, then restore the right journal or archive this one and start with "
                       "--adopt", now)
        elif diff:
            self._halt(f"reconcile: the venue's positions differ from the journal's by {diff} (base units: venue - "
                       "baseline - this bench's fills - foreign fills); check the account and the journal", now)
        elif rep["balance_check"] and rep["balance_check"]["comparable"] \
                and abs(rep["balance_diff"]) > rep["balance_check"]["tolerance"]:
            bc = rep["balance_check"]
            self._halt(f"reconcile: the venue's balance {bc['venue']:.2f} USDT differs from the journal's "
                       f"{bc['expected']:.2f} USDT by {rep['balance_diff']:+.2f} (tolerance {bc['tolerance']:.2f}; "
                       f"{bc['accounting']}); check the account and the journal", now)
        return rep

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
