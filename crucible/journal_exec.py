"""The journal's execution tables (issue 31 part 5), additive to :mod:`crucible.journal`'s schema.

Three tables in the same SQLite file, written inside the runtime's journal transactions (so an intent, its
orders and its fills commit together with the bar that made them):

* ``exec_intents`` -- one row per execution intent of a passive slot: id ``<slot>-<decision bar open ms>``,
  slot, symbol, qty (signed base units wanted), target, urgency, deadline (bars), decision_price (quote per
  unit: the close the decision saw), bar_time (decision bar, ms), status ("working" | "done" | "replaced" |
  "canceled"), age (bars worked), last_bar (open ms of the last bar worked: a bar re-processed after a restart
  is not worked twice), created_ms, updated_ms;
* ``order_exec`` -- one row per order the bench sends (every slot, taker ones too): client_order_id, intent_id
  (NULL for a taker slot's order), kind ("market" | "limit"), price (limit price, 0 for market), post_only,
  reduce_only, action (policy action name, or the order's reason), decision_price, placed_bar (open ms of the
  bar after whose close it was placed);
* ``exec_fills`` -- one row per booked fill: trade_id, slot, client_order_id, side (+1/-1), qty (|base units|),
  price, fee (USDT), maker (1 = a resting limit filled), decision_price, ref_bar (open ms of the bar the fill
  belongs to), markout_1 / markout_5 / markout_15: ``side * (close[ref_bar + k min] - price) / price`` in bp
  (the close of the first bar opening at or after k minutes past ``ref_bar``), NULL until that bar closed.

The money of a fill stays in ``fills`` (hash-chained); these tables are analytics and resting-order state, so
they are not chained.  A journal written before issue 31 lacks them: they are created on the first writable
open by the runtime (``CREATE TABLE IF NOT EXISTS``) and readers treat them as empty.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import sqlite3
from typing import Any

__all__ = ["EXEC_SCHEMA", "MARKOUTS", "ExecBook", "exec_tables", "slot_exec_metrics"]

log = logging.getLogger("crucible")

MARKOUTS = (1, 5, 15)
"""Markout horizons, minutes after the fill's bar."""

EXEC_SCHEMA = """
CREATE TABLE IF NOT EXISTS exec_intents (
    id TEXT PRIMARY KEY, slot TEXT NOT NULL, symbol TEXT NOT NULL, qty REAL NOT NULL, target REAL NOT NULL,
    urgency REAL NOT NULL, deadline INTEGER NOT NULL, decision_price REAL NOT NULL, bar_time INTEGER NOT NULL,
    status TEXT NOT NULL, age INTEGER NOT NULL, last_bar INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS order_exec (
    client_order_id TEXT PRIMARY KEY, intent_id TEXT, kind TEXT NOT NULL, price REAL NOT NULL,
    post_only INTEGER NOT NULL, reduce_only INTEGER NOT NULL, action TEXT NOT NULL, decision_price REAL NOT NULL,
    placed_bar INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS exec_fills (
    trade_id TEXT PRIMARY KEY, slot TEXT NOT NULL, client_order_id TEXT NOT NULL, side INTEGER NOT NULL,
    qty REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL, maker INTEGER NOT NULL, decision_price REAL NOT NULL,
    ref_bar INTEGER NOT NULL, markout_1 REAL, markout_5 REAL, markout_15 REAL);
"""

_INTENT_COLS = ("id", "slot", "symbol", "qty", "target", "urgency", "deadline", "decision_price", "bar_time", "status",
                "age", "last_bar", "created_ms", "updated_ms")
_ORDER_COLS = ("client_order_id", "intent_id", "kind", "price", "post_only", "reduce_only", "action", "decision_price",
               "placed_bar")
_SET_MARKOUT = {k: f"UPDATE exec_fills SET markout_{k}=? WHERE trade_id=?" for k in MARKOUTS}
_ADD_ORDER = f"INSERT OR IGNORE INTO order_exec({', '.join(_ORDER_COLS)}) VALUES ({','.join('?' * len(_ORDER_COLS))})"
_FILL_COLS = ("trade_id", "slot", "client_order_id", "side", "qty", "price", "fee", "maker", "decision_price", "ref_bar")
_ADD_FILL = f"INSERT OR IGNORE INTO exec_fills({', '.join(_FILL_COLS)}) VALUES ({','.join('?' * len(_FILL_COLS))})"
_ADD_FILL_MARKED = (f"INSERT OR IGNORE INTO exec_fills({', '.join(_FILL_COLS)}, {', '.join(f'markout_{k}' for k in MARKOUTS)})"
                    f" VALUES ({','.join('?' * (len(_FILL_COLS) + len(MARKOUTS)))})")
_MARK_COL = {k: len(_FILL_COLS) + i for i, k in enumerate(MARKOUTS)}  # a markout's place in a carried exec_fills row


def exec_tables(db: sqlite3.Connection) -> set[str]:
    """Which of the execution tables exist in ``db``."""
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return names & {"exec_intents", "order_exec", "exec_fills"}


class ExecBook:
    """The execution tables of one writable journal, with in-memory mirrors: the working intents by slot, every
    order's execution row by client order id, and the fills whose markouts are still open.

    journal: an open writable :class:`crucible.journal.Journal` (its ``db``; writes join its current transaction).
    """

    def __init__(self, journal: Any) -> None:
        self.j = journal
        self.db: sqlite3.Connection = journal.db
        try:
            for stmt in EXEC_SCHEMA.split(";"):  # one at a time: executescript would commit an open transaction
                if stmt.strip():
                    self.db.execute(stmt)
        except sqlite3.OperationalError:  # a read-only journal (a reader restoring slot state)
            pass
        self.ok = len(exec_tables(self.db)) == 3
        # writes carried to the journal's commit (crucible.journal.Journal.carry): order_exec inserts, exec_fills
        # inserts (trade id -> row; a markout settled before the row is written goes into the row), markouts
        self._order_rows: list[tuple] = []
        self._fill_rows: dict[str, list] = {}
        self._marks: dict[int, list[tuple[float, str]]] = {k: [] for k in MARKOUTS}
        if hasattr(journal, "carry"):
            journal.carry(self.flush, self._drop)
        self.reload()

    def flush(self) -> None:
        """Write the rows carried in memory: ``order_exec`` inserts in their order, ``exec_fills`` inserts in their order
        (with the markouts settled before the commit), then the other settled markouts (each (fill, horizon) is set
        once, so the order of the UPDATEs does not change the rows).  Called at every commit of
        the journal; a direct read of these tables inside a transaction calls it first."""
        if self._order_rows:
            self.db.executemany(_ADD_ORDER, self._order_rows)
            self._order_rows.clear()
        lost = 0
        if self._fill_rows:
            rows = list(self._fill_rows.values())
            self._fill_rows.clear()
            lost = len(rows) - self.db.executemany(_ADD_FILL_MARKED, rows).rowcount
        for k, rows in self._marks.items():
            if rows:
                self.db.executemany(_SET_MARKOUT[k], rows)
                rows.clear()
        if lost:  # a row under a trade id whose fills row was new (never written by the bench): the file decides
            log.error("exec_fills: %d carried row(s) found their trade id already written; markouts reloaded", lost)
            self.reload()

    def _drop(self) -> None:
        self._order_rows.clear()
        self._fill_rows.clear()
        for rows in self._marks.values():
            rows.clear()

    def reload(self) -> None:
        """(Re)build the mirrors from the file (empty for a read-only journal without the tables)."""
        self.flush()
        self._due: dict[str, list[tuple[int, int, int, int, float, str]]] = {}  # markouts still open, see _expect
        if not self.ok:
            self.working, self.orders = {}, {}
            return
        rows = self.db.execute(f"SELECT {', '.join(_INTENT_COLS)} FROM exec_intents WHERE status='working'"
                               " ORDER BY created_ms, rowid").fetchall()
        self.working: dict[str, dict[str, Any]] = {r[1]: dict(zip(_INTENT_COLS, r)) for r in rows}
        self.orders: dict[str, dict[str, Any]] = {
            r[0]: dict(zip(_ORDER_COLS, r)) for r in self.db.execute(f"SELECT {', '.join(_ORDER_COLS)} FROM order_exec")}
        for r in self.db.execute("SELECT e.trade_id, f.symbol, e.side, e.price, e.ref_bar, e.markout_1, e.markout_5,"
                                 " e.markout_15 FROM exec_fills e JOIN fills f USING(trade_id)"
                                 " WHERE e.markout_15 IS NULL OR e.markout_5 IS NULL OR e.markout_1 IS NULL"
                                 " ORDER BY e.rowid"):
            self._expect(r[0], r[1], r[2], r[3], r[4], [k for k, v in zip(MARKOUTS, r[5:]) if v is None])

    _seq = itertools.count()

    def _expect(self, trade_id: str, symbol: str, side: int, price: float, ref_bar: int, horizons) -> None:
        """Markouts of a fill still to settle: one heap entry (due bar open ms, tie-break, horizon, side, price,
        trade id) per horizon k, due at the first bar of ``symbol`` opening at or after ``ref_bar + k`` minutes."""
        h = self._due.setdefault(symbol, [])
        for k in horizons:
            heapq.heappush(h, (int(ref_bar) + 60_000 * k, next(self._seq), k, side, price, trade_id))

    @property
    def pending(self) -> int:
        """Markouts (fill x horizon) not settled yet."""
        return sum(len(h) for h in self._due.values())

    # ------------------------------------------------------------------ intents

    def add_intent(self, row: dict[str, Any]) -> None:
        self.db.execute(f"INSERT INTO exec_intents({', '.join(_INTENT_COLS)}) VALUES "
                        f"({','.join('?' * len(_INTENT_COLS))})", tuple(row[c] for c in _INTENT_COLS))
        if row["status"] == "working":
            self.working[row["slot"]] = dict(row)

    def update_intent(self, it: dict[str, Any], now_ms: int, **changes: Any) -> None:
        """Change fields of a working intent (status other than "working" retires it)."""
        it.update(changes, updated_ms=now_ms)
        sets = ", ".join(f"{k}=?" for k in (*changes, "updated_ms"))
        self.db.execute(f"UPDATE exec_intents SET {sets} WHERE id=?", (*changes.values(), now_ms, it["id"]))
        if it["status"] != "working" and self.working.get(it["slot"]) is it:
            del self.working[it["slot"]]

    def intent_exists(self, intent_id: str) -> bool:
        """Whether an intent with this id (``<slot>-<decision bar>``) was ever journaled."""
        w = next((it for it in self.working.values() if it["id"] == intent_id), None)
        return w is not None or self.db.execute("SELECT 1 FROM exec_intents WHERE id=?", (intent_id,)).fetchone() is not None

    def intent_orders(self, intent_id: str) -> list[str]:
        """Client order ids sent for an intent, oldest first."""
        return [c for c, o in self.orders.items() if o["intent_id"] == intent_id]

    # ------------------------------------------------------------------ orders

    def add_order(self, cid: str, *, intent_id: str | None, kind: str, price: float, post_only: bool,
                  reduce_only: bool, action: str, decision_price: float, placed_bar: int) -> None:
        vals = (cid, intent_id, kind, float(price), int(post_only), int(reduce_only), action, float(decision_price),
                int(placed_bar))  # in _ORDER_COLS order
        self._order_rows.append(vals)  # INSERT OR IGNORE at the commit (flush)
        if cid not in self.orders:
            self.orders[cid] = dict(zip(_ORDER_COLS, vals))

    def is_limit(self, cid: str) -> bool:
        o = self.orders.get(cid)
        return o is not None and o["kind"] == "limit"

    # ------------------------------------------------------------------ fills and markouts

    def add_fill(self, trade_id: str, slot: str, symbol: str, cid: str, qty: float, price: float, fee: float,
                 ref_bar: int) -> None:
        """Record a booked fill's execution facts (its order's decision price; maker = a limit order's fill)."""
        o = self.orders.get(cid)
        if o is None:  # an order from before issue 31 (no execution row): nothing to measure against
            return
        side = 1 if qty > 0 else -1
        row = [trade_id, slot, cid, side, abs(qty), price, fee, int(o["kind"] == "limit"), o["decision_price"],
               int(ref_bar), None, None, None]
        if getattr(self.j, "_batch", 0):
            # inside the journal's transaction: carried to its commit (flush), INSERT OR IGNORE as below.  The row is
            # new: the bench writes an exec_fills row only with the fills row of the same trade id, in the same
            # transaction, and this fill's fills row was just written (a carried row found written after all is
            # logged at the flush and the markouts reloaded from the file)
            if trade_id in self._fill_rows:
                return  # the same trade id twice in one transaction: the first row stays
            self._fill_rows[trade_id] = row
        elif self.db.execute(_ADD_FILL, row[: len(_FILL_COLS)]).rowcount != 1:
            return
        self._expect(trade_id, symbol, side, price, ref_bar, MARKOUTS)

    def markouts(self, symbol: str, open_time: int, close: float) -> None:
        """A bar of ``symbol`` (open ``open_time`` ms) closed at ``close``: set every open markout it settles, i.e.
        ``1e4 * side * (close - price) / price`` of each fill whose horizon k has passed (``open_time >= ref_bar + k``
        minutes) and is not set yet.  The UPDATEs are carried to the journal's commit
        (:meth:`crucible.journal.Journal.carry`; each fill x horizon is set once, so their order does not matter)."""
        h = self._due.get(symbol)
        if not h or h[0][0] > open_time:
            return
        marks, carried = self._marks, self._fill_rows
        pop = heapq.heappop
        while h and h[0][0] <= open_time:
            _due, _n, k, side, price, trade_id = pop(h)
            v = 1e4 * side * (close - price) / price
            row = carried.get(trade_id)
            if row is not None:  # its row is not written yet: the markout goes in with it (the same row at the commit)
                row[_MARK_COL[k]] = v
            else:
                marks[k].append((v, trade_id))


def slot_exec_metrics(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Per-slot execution metrics from a journal's tables (read-only; {} for a journal without them).

    returns {slot: {"orders": orders sent, "limit_orders": limit orders sent, "post_only_rejects": post-only limit
    orders the venue refused as crossing, "reject_rate": rejects / post-only limit orders (NaN: none),
    "intents": passive intents, "intent_units": |units| they asked for, "maker_units": |units| filled by resting
    limits, "fill_rate": maker_units / intent_units (the share of the intended quantity executed passively; the rest
    crossed at the deadline, was re-decided or dropped; NaN without intents), "fills", "notional" (USDT, at the
    decision prices), "fees" (USDT), "fee_bps" (fees / notional), "slippage_bps" (sum of side * (price - decision
    price) * qty over the notional: positive = paid), "markout_<k>_bps" (qty-weighted mean over the fills whose
    markout is settled; positive = the price moved the fill's way)}}.
    """
    if {"order_exec", "exec_fills", "exec_intents"} - exec_tables(db):
        return {}
    out: dict[str, dict[str, Any]] = {}
    nan = math.nan

    def row(slot: str) -> dict[str, Any]:
        return out.setdefault(slot, {"orders": 0, "limit_orders": 0, "post_only_rejects": 0, "reject_rate": nan,
                                     "intents": 0, "intent_units": 0.0, "maker_units": 0.0, "fill_rate": nan,
                                     "fills": 0, "notional": 0.0, "fees": 0.0, "fee_bps": nan, "slippage_bps": nan,
                                     **{f"markout_{k}_bps": nan for k in MARKOUTS}})

    for slot, n, nl, npo, nrej in db.execute(
            "SELECT o.slot, COUNT(*), SUM(e.kind='limit'), SUM(e.kind='limit' AND e.post_only=1),"
            " SUM(e.kind='limit' AND o.status='rejected' AND o.error LIKE 'post-only%')"
            " FROM order_exec e JOIN orders o USING(client_order_id) GROUP BY o.slot"):
        r = row(slot)
        r.update(orders=int(n), limit_orders=int(nl or 0), post_only_rejects=int(nrej or 0))
        r["reject_rate"] = (nrej or 0) / npo if npo else nan
    for slot, n, units in db.execute("SELECT slot, COUNT(*), SUM(ABS(qty)) FROM exec_intents GROUP BY slot"):
        r = row(slot)
        r.update(intents=int(n), intent_units=float(units or 0.0))
    for slot, n, notional, fees, slip, maker in db.execute(
            "SELECT slot, COUNT(*), SUM(qty * decision_price), SUM(fee), SUM(side * (price - decision_price) * qty),"
            " SUM(maker * qty) FROM exec_fills GROUP BY slot"):
        r = row(slot)
        r.update(fills=int(n), notional=float(notional or 0.0), fees=float(fees or 0.0), maker_units=float(maker or 0.0))
        if notional:
            r["fee_bps"] = 1e4 * float(fees) / float(notional)
            r["slippage_bps"] = 1e4 * float(slip) / float(notional)
        if r["intent_units"] > 0:
            r["fill_rate"] = r["maker_units"] / r["intent_units"]
        for k in MARKOUTS:
            m = db.execute(f"SELECT SUM(markout_{k} * qty), SUM(qty) FROM exec_fills WHERE slot=? AND markout_{k} IS NOT"
                           " NULL", (slot,)).fetchone()
            r[f"markout_{k}_bps"] = float(m[0]) / float(m[1]) if m[1] else nan
    return out
