"""The Crucible's journal: SQLite in WAL mode with ``synchronous=FULL``.

Every state change the runtime cannot recompute is written here before it
matters: an order *intent* is committed before the order is sent, then its
acknowledgement (or "unknown" after a network error); fills are keyed by
the venue's trade id, so booking the same fill twice is impossible; swaps,
kills, reweights, requests and equity snapshots are events.  On restart the
ledger is replayed from this file and reconciled with the venue.

Order statuses: ``intent`` (saved, not yet sent) → ``acked`` (venue accepted)
→ ``filled``; or ``unknown`` (send outcome not known: resolve by client
order id), ``rejected``, ``canceled``, ``abandoned`` (never reached the
venue and no longer wanted).  Times are ms UTC; quantities signed base
units; money USDT.

One writer: a writable :class:`Journal` holds an OS-level exclusive lock (``fcntl.flock``) on
``<journal>.lock``, which also records the holder's pid; a second writer fails at once with
:class:`JournalLocked` naming that pid.  Readers (``crucible status``) take no lock.  An old journal is
never deleted: :func:`archive_journal` checkpoints its WAL into the main file (so no committed row is
lost) and renames it to a timestamped archive beside it; every archive is kept.  SQLite errors on
opening (not a database, corrupt, locked, not a crucible journal) become :class:`JournalError`, a
one-line message with exit status 2 at the CLI.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from crucible.journal_files import (JOURNAL_TABLES, JournalError, JournalLock, JournalLocked, archive_journal,
                                    check_journal_file, journal_error)
from crucible.venues.base import Fill

__all__ = ["Journal", "OPEN_STATUSES", "JournalError", "JournalLocked", "JournalLock", "check_journal_file",
           "archive_journal", "JOURNAL_TABLES"]


OPEN_STATUSES = ("intent", "acked", "unknown")
NORMAL_AUTOCHECKPOINT_PAGES = 10_000
"""WAL pages between automatic checkpoints of a ``synchronous=NORMAL`` journal (SQLite's default is 1,000; a
checkpoint fsyncs the database file, the commits themselves do not)."""
_JSON = json.JSONEncoder(default=str)  # json.dumps(data, default=str) without building an encoder per event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, slot TEXT NOT NULL, symbol TEXT NOT NULL, qty REAL NOT NULL,
    target REAL NOT NULL, bar_time INTEGER NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL,
    status TEXT NOT NULL, venue_order_id TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    error TEXT);
CREATE TABLE IF NOT EXISTS fills (
    trade_id TEXT PRIMARY KEY, client_order_id TEXT NOT NULL, order_id TEXT, slot TEXT, symbol TEXT NOT NULL,
    qty REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL, time_ms INTEGER NOT NULL, booked_seq INTEGER);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, slot TEXT,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS equity (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, slot TEXT NOT NULL, equity REAL NOT NULL,
    cash REAL NOT NULL, units REAL NOT NULL, mark REAL NOT NULL, weight REAL NOT NULL, status TEXT NOT NULL);
"""


class Journal:
    """SQLite journal at ``path`` (parents created).  Not thread-safe; one writer.

    synchronous: "FULL" (default: every commit is fsynced) or "NORMAL" (WAL mode: a commit survives a
    crash of the process, an OS crash or power loss may roll back the last commits).  Orders in an open
    status are mirrored in memory (the runtime asks for them several times per bar); the mirror is
    rebuilt from the file after a rolled-back transaction.

    A writable journal takes the single-writer :class:`JournalLock` first (or uses ``lock``, already held
    by the caller, e.g. across an archive step) and releases it on :meth:`close`.
    raises JournalLocked when another process writes the journal; JournalError (one line) for a file that
    is not a crucible journal, a corrupt one, or any SQLite error while opening; ValueError for another
    synchronous.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, synchronous: str = "FULL",
                 lock: JournalLock | None = None) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.lock: JournalLock | None = None
        self.db: sqlite3.Connection | None = None
        self._batch = 0
        try:
            if readonly:
                if not self.path.is_file():
                    raise JournalError(f"{self.path}: no journal file")
                check_journal_file(self.path)
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
                self.db.execute("PRAGMA busy_timeout=5000")
            else:
                self.lock = lock if lock is not None else JournalLock(self.path)
                self.lock.acquire()  # single writer: before anything touches the file
                check_journal_file(self.path)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; explicit BEGIN for batches
                self.db.execute("PRAGMA busy_timeout=5000")
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute(f"PRAGMA synchronous={synchronous}")
                self.db.executescript(_SCHEMA)
            self.db.row_factory = sqlite3.Row
            self._deferred: dict[str, Any] = {}
            self._events: list[tuple[int, str, str | None, str]] = []  # inserts carried to the commit
            self._acks: dict[str, tuple[int, str | None]] = {}  # cid -> (now_ms, venue_order_id) of an "acked"
            if not readonly and synchronous == "NORMAL":  # replay: fewer checkpoints (each one fsyncs the file)
                self.db.execute(f"PRAGMA wal_autocheckpoint={NORMAL_AUTOCHECKPOINT_PAGES}")
            self._open: dict[str, dict[str, Any]] = {}
            self._load_open()
        except (sqlite3.Error, JournalError) as exc:
            if self.db is not None:
                self.db.close()
            if self.lock is not None and lock is None:
                self.lock.release()
            if isinstance(exc, JournalError):
                raise
            raise journal_error(self.path, exc, "open") from None

    def _load_open(self) -> None:
        """(Re)build the in-memory state from the file: open orders, their filled quantities, and the
        order sequence numbers of the latest bar (orders are only ever placed at the latest bar)."""
        st = OPEN_STATUSES
        rows = self.db.execute(f"SELECT * FROM orders WHERE status IN ({','.join('?' * len(st))})"
                               " ORDER BY created_ms, rowid", st).fetchall()
        self._open = {r["client_order_id"]: dict(r) for r in rows}
        self._booked: dict[str, None] = {}  # the last booked trade ids, oldest first (a subset of the file)
        self._filled = {cid: 0.0 for cid in self._open}
        for cid, q in self.db.execute("SELECT client_order_id, SUM(qty) FROM fills GROUP BY client_order_id"):
            if cid in self._filled:
                self._filled[cid] = float(q)
        top = self.db.execute("SELECT MAX(bar_time) FROM orders").fetchone()[0]
        self._seq_bar = -1 if top is None else int(top)
        self._seq = {(slot, int(bt)): int(m) for slot, bt, m in self.db.execute(
            "SELECT slot, bar_time, MAX(seq) FROM orders WHERE bar_time=? GROUP BY slot, bar_time", (self._seq_bar,))}

    # ------------------------------------------------------------------ transactions

    def __enter__(self) -> "Journal":
        """``with journal:`` groups writes into one durable transaction (nestable)."""
        if self._batch == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._batch += 1
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._batch -= 1
        if self._batch == 0:
            if exc_type is None:
                self._flush_deferred()
            else:
                self._deferred.clear()
                self._events.clear()
                self._acks.clear()
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            if exc_type is not None:
                self._load_open()

    def commit(self) -> None:
        """Make everything written so far durable now; inside ``with journal:`` the batch goes on in a new
        transaction (a commit point, e.g. order intents before the orders are sent)."""
        if self._batch:
            self._flush_deferred()
            self.db.execute("COMMIT")
            self.db.execute("BEGIN IMMEDIATE")

    def set_meta_at_commit(self, key: str, value: Any) -> None:
        """Like :meth:`set_meta`, written once just before the transaction commits (a cursor updated every
        bar costs one write per commit, not one per bar); outside a transaction it is written now."""
        if self._batch:
            self._deferred[key] = value
        else:
            self.set_meta(key, value)

    def _flush_deferred(self) -> None:
        self._flush_rows()
        for k, v in self._deferred.items():
            self.set_meta(k, v)
        self._deferred.clear()

    def _flush_rows(self) -> None:
        """Write the event inserts and order acknowledgements carried in memory (in their original order)."""
        if self._events:
            self.db.executemany("INSERT INTO events(time_ms, kind, slot, data) VALUES (?,?,?,?)", self._events)
            self._events.clear()
        if self._acks:
            self.db.executemany("UPDATE orders SET status='acked', updated_ms=?, venue_order_id=COALESCE(?, venue_order_id)"
                                " WHERE client_order_id=?", [(t, v, c) for c, (t, v) in self._acks.items()])
            self._acks.clear()

    def close(self) -> None:
        """Roll back an open batch, close the database, release the single-writer lock (also one passed in)."""
        try:
            self._events.clear()
            self._acks.clear()
            if self._batch:
                self.db.execute("ROLLBACK")
                self._batch = 0
            self.db.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    def has_open_order(self, slot: str) -> bool:
        """True if ``slot`` has an order in an open status (intent / acked / unknown)."""
        return any(o["slot"] == slot for o in self._open.values())

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, json.dumps(value)))

    # ------------------------------------------------------------------ orders

    def add_intent(self, *, client_order_id: str, slot: str, symbol: str, qty: float, target: float,
                   bar_time: int, seq: int, reason: str, now_ms: int) -> None:
        """Record an order intent (committed before the order is sent). Idempotent by client order id."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO orders(client_order_id, slot, symbol, qty, target, bar_time, seq, reason, status,"
            " created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?, 'intent', ?, ?)",
            (client_order_id, slot, symbol, float(qty), float(target), int(bar_time), int(seq), reason, now_ms, now_ms))
        if cur.rowcount == 1:
            key = (slot, int(bar_time))
            self._seq[key] = max(self._seq.get(key, -1), int(seq))
            self._filled[client_order_id] = 0.0
            self._open[client_order_id] = {
                "client_order_id": client_order_id, "slot": slot, "symbol": symbol, "qty": float(qty),
                "target": float(target), "bar_time": int(bar_time), "seq": int(seq), "reason": reason,
                "status": "intent", "venue_order_id": None, "created_ms": now_ms, "updated_ms": now_ms, "error": None}

    def set_order_status(self, client_order_id: str, status: str, now_ms: int, *, venue_order_id: str | None = None,
                         error: str | None = None) -> None:
        """Set an order's status.  Inside a transaction an "acked" of an order held in memory is carried to the
        commit (one UPDATE at most, none when a final status replaces it first); the row is the same either way."""
        ack = self._acks.pop(client_order_id, None)
        if ack is not None and venue_order_id is None:
            venue_order_id = ack[1]
        if status == "acked" and self._batch and error is None and client_order_id in self._open:
            self._acks[client_order_id] = (now_ms, venue_order_id)
            row = self._open[client_order_id]
            row.update(status=status, updated_ms=now_ms)
            if venue_order_id is not None:
                row["venue_order_id"] = venue_order_id
            return
        self.db.execute(
            "UPDATE orders SET status=?, updated_ms=?, venue_order_id=COALESCE(?, venue_order_id),"
            " error=COALESCE(?, error) WHERE client_order_id=?",
            (status, now_ms, venue_order_id, error, client_order_id))
        if status in OPEN_STATUSES:
            row = self._open.get(client_order_id)
            if row is None:
                row = self.order(client_order_id)
                if row is not None:
                    self._open[client_order_id] = row
            else:
                row.update(status=status, updated_ms=now_ms)
                if venue_order_id is not None:
                    row["venue_order_id"] = venue_order_id
                if error is not None:
                    row["error"] = error
        else:
            self._open.pop(client_order_id, None)
            self._filled.pop(client_order_id, None)

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        """The order row (a copy) or None."""
        if client_order_id in self._open:
            return dict(self._open[client_order_id])
        self._flush_rows()
        row = self.db.execute("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()
        return None if row is None else dict(row)

    def order_slot(self, client_order_id: str) -> str | None:
        """The slot of the order with this client order id (None: no such intent in this journal); no copy."""
        o = self._open.get(client_order_id)
        if o is not None:
            return o["slot"]
        row = self.db.execute("SELECT slot FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()
        return None if row is None else row[0]

    def orders(self, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Orders (oldest first), optionally only those with a status in ``statuses``."""
        if statuses is not None:
            st = set(statuses)
            if st <= set(OPEN_STATUSES):  # served from the in-memory mirror
                return [dict(o) for o in self._open.values() if o["status"] in st]
        self._flush_rows()
        if statuses is None:
            rows = self.db.execute("SELECT * FROM orders ORDER BY created_ms, rowid").fetchall()
        else:
            st = tuple(statuses)
            rows = self.db.execute(f"SELECT * FROM orders WHERE status IN ({','.join('?' * len(st))})"
                                   " ORDER BY created_ms, rowid", st).fetchall()
        return [dict(r) for r in rows]

    def next_seq(self, slot: str, bar_time: int) -> int:
        """Next order sequence number of ``slot`` at ``bar_time`` (0 for the first)."""
        if bar_time >= self._seq_bar:  # served from memory: every order at or after that bar went through here
            return self._seq.get((slot, bar_time), -1) + 1
        row = self.db.execute("SELECT MAX(seq) FROM orders WHERE slot=? AND bar_time=?", (slot, bar_time)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    # ------------------------------------------------------------------ fills

    def add_fill(self, fill: Fill, slot: str | None) -> bool:
        """Book a fill; returns False (and changes nothing) if its trade id is already booked."""
        if fill.trade_id in self._booked:  # recently booked (venues return overlapping fill windows)
            return False
        cur = self.db.execute(
            "INSERT OR IGNORE INTO fills(trade_id, client_order_id, order_id, slot, symbol, qty, price, fee, time_ms)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (fill.trade_id, fill.client_order_id, fill.order_id, slot, fill.symbol, fill.qty, fill.price, fill.fee,
             fill.time_ms))
        if cur.rowcount != 1:
            return False
        self._booked[fill.trade_id] = None
        if len(self._booked) > 4096:
            del self._booked[next(iter(self._booked))]
        if fill.client_order_id in self._filled:
            self._filled[fill.client_order_id] += fill.qty
        return True

    def has_fill(self, trade_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM fills WHERE trade_id=?", (trade_id,)).fetchone() is not None

    def fills(self, slot: str | None = None) -> list[dict[str, Any]]:
        """Booked fills in booking order."""
        if slot is None:
            rows = self.db.execute("SELECT * FROM fills ORDER BY rowid").fetchall()
        else:
            rows = self.db.execute("SELECT * FROM fills WHERE slot=? ORDER BY rowid", (slot,)).fetchall()
        return [dict(r) for r in rows]

    def filled_qty(self, client_order_id: str) -> float:
        """Signed base units booked for the order (sum of its fills)."""
        if client_order_id in self._filled:
            return self._filled[client_order_id]
        row = self.db.execute("SELECT COALESCE(SUM(qty), 0) FROM fills WHERE client_order_id=?",
                              (client_order_id,)).fetchone()
        return float(row[0])

    # ------------------------------------------------------------------ events & equity

    def event(self, kind: str, time_ms: int, slot: str | None = None, **data: Any) -> None:
        """Append an event (swap, kill, reweight, request, killswitch, reject, reconcile, stale, ...)."""
        row = (int(time_ms), kind, slot, _JSON.encode(data))
        if self._batch:
            self._events.append(row)  # written at the commit, in order (same ids)
        else:
            self.db.execute("INSERT INTO events(time_ms, kind, slot, data) VALUES (?,?,?,?)", row)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        self._flush_rows()
        q = "SELECT * FROM events" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        rows = self.db.execute(q, (kind,) if kind else ()).fetchall()
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def equity_snapshot(self, time_ms: int, rows: Iterable[tuple[str, float, float, float, float, float, str]]) -> None:
        """rows: (slot, equity, cash, units, mark, weight, status)."""
        self.db.executemany(
            "INSERT INTO equity(time_ms, slot, equity, cash, units, mark, weight, status) VALUES (?,?,?,?,?,?,?,?)",
            [(int(time_ms), *r) for r in rows])

    def last_equity(self) -> dict[str, dict[str, Any]]:
        """Latest equity snapshot per slot."""
        rows = self.db.execute(
            "SELECT e.* FROM equity e JOIN (SELECT slot, MAX(id) AS id FROM equity GROUP BY slot) m ON e.id = m.id"
        ).fetchall()
        return {r["slot"]: dict(r) for r in rows}
