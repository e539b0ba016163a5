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

Money events are hash-chained (issue 28): every order intent, booked fill and money-moving event (capital
``transfer``, ``funding``, ``foreign_fill``, ``adopt``, ``rearm``) appends a row to the ``chain`` table
with a monotonic ``seq`` and ``hash = sha256(previous hash, seq, kind, ref, data)``; after each commit that
advanced it, the last ``(seq, hash)`` is written to an fsynced sidecar ``<journal>.anchor`` outside the
database (fsynced when the journal is ``synchronous=FULL``).  On opening for writing, :meth:`Journal.verify` runs ``PRAGMA integrity_check``, walks the chain,
checks it against the orders and fills tables and against the anchor: a journal that ends before the anchor
(a garbled or deleted WAL, an older copy of the file, a truncated tail), differs from the anchored history,
or has no anchor although it holds money events, is *in doubt* (:attr:`Journal.doubts`, one line each,
naming the file and the last good sequence); the runtime then starts halted and says why
(:meth:`crucible.reconcile.ReconcileMixin.reconcile`).  A write that fails (disk full, read-only file, I/O
error) raises :class:`JournalWriteError`, one line naming the cause, never SQLite's secondary "cannot
rollback - no transaction is active".

One writer per file: a writable :class:`Journal` holds OS-level exclusive locks (``fcntl.flock``) on the
journal file's inode and on ``<journal>.lock``, which also records the holder's pid; a second writer fails at once with
:class:`JournalLocked` naming that pid.  Readers (``crucible status``) take no lock.  An old journal is
never deleted: :func:`archive_journal` checkpoints its WAL into the main file (so no committed row is
lost) and renames it to a timestamped archive beside it; every archive is kept.  SQLite errors on
opening (not a database, corrupt, locked, not a crucible journal) become :class:`JournalError`, a
one-line message with exit status 2 at the CLI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from crucible.journal_files import (JOURNAL_TABLES, JournalError, JournalLock, JournalLocked, JournalWriteError,
                                    anchor_path, archive_journal, check_journal_file, journal_error, read_anchor,
                                    AnchorFile, write_error)
from crucible.venues.base import Fill

__all__ = ["Journal", "OPEN_STATUSES", "JournalError", "JournalLocked", "JournalLock", "JournalWriteError",
           "check_journal_file", "archive_journal", "JOURNAL_TABLES", "MONEY_EVENTS", "ANCHOR_SCHEMA", "chain_hash"]

log = logging.getLogger("crucible")


OPEN_STATUSES = ("intent", "acked", "unknown")
_OPEN_SET = frozenset(OPEN_STATUSES)
NORMAL_AUTOCHECKPOINT_PAGES = 10_000
"""WAL pages between automatic checkpoints of a ``synchronous=NORMAL`` journal (SQLite's default is 1,000; a
checkpoint fsyncs the database file, the commits themselves do not)."""
MONEY_EVENTS = frozenset({"transfer", "funding", "foreign_fill", "venue_action_fill", "adopt", "rearm"})
"""Event kinds that move money (besides order intents and fills): each is also a ``chain`` row."""
ANCHOR_SCHEMA = "crucible-anchor/1"
GENESIS = "0" * 64
_CANON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
_JSON = json.JSONEncoder(default=str)  # json.dumps(data, default=str) without building an encoder per event
_C_ENCODER = json.encoder.c_make_encoder


def _make_event_encoder():
    """``_JSON.encode`` for an event's data dict: the C encoder ``JSONEncoder.iterencode`` builds on every call, built
    once (same default, string escaping, separators and float formatting, so the same text); without the C
    accelerator, ``_JSON.encode`` itself."""
    if _C_ENCODER is None:
        return _JSON.encode
    enc = _C_ENCODER(None, _JSON.default, json.encoder.encode_basestring_ascii, _JSON.indent, _JSON.key_separator,
                     _JSON.item_separator, _JSON.sort_keys, _JSON.skipkeys, _JSON.allow_nan)
    join = "".join
    return lambda data: join(enc(data, 0))


_encode_event = _make_event_encoder()

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
CREATE TABLE IF NOT EXISTS chain (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, ref TEXT NOT NULL, data TEXT NOT NULL, hash TEXT NOT NULL);
"""


def chain_hash(prev: str, seq: int, kind: str, ref: str, data: str) -> str:
    """sha256 hex of one chain link: the previous link's hash, then seq, kind, ref and data, newline-separated."""
    return hashlib.sha256(f"{prev}\n{seq}\n{kind}\n{ref}\n{data}".encode()).hexdigest()


_STR = json.encoder.encode_basestring_ascii  # the C string encoder _CANON itself uses (ensure_ascii)
_isfinite = math.isfinite


def _fill_data(trade_id: str, cid: str, slot: str | None, symbol: str, qty: float, price: float, fee: float,
               time_ms: int) -> str:
    """The chained content of a fill: ``_CANON.encode`` of its fields (sorted keys, compact), byte for byte.
    The common case (string ids, finite numbers) is formatted directly -- the same text the encoder writes
    (``float.__repr__``, ``int.__repr__``, the encoder's own string escaping) at a fraction of its cost."""
    qty, price, fee, time_ms = float(qty), float(price), float(fee), int(time_ms)
    if (type(trade_id) is str and type(cid) is str and type(symbol) is str and (slot is None or type(slot) is str)
            and _isfinite(qty) and _isfinite(price) and _isfinite(fee)):
        return (f'{{"cid":{_STR(cid)},"fee":{fee!r},"price":{price!r},"qty":{qty!r},'
                f'"slot":{"null" if slot is None else _STR(slot)},"symbol":{_STR(symbol)},"time_ms":{time_ms!r},'
                f'"trade_id":{_STR(trade_id)}}}')
    return _CANON.encode({"trade_id": trade_id, "cid": cid, "slot": slot, "symbol": symbol, "qty": qty,
                          "price": price, "fee": fee, "time_ms": time_ms})


def _intent_data(cid: str, slot: str, symbol: str, qty: float, target: float, bar_time: int, seq: int,
                 reason: str) -> str:
    """The chained content of an order intent: ``_CANON.encode`` of its fields, byte for byte (see
    :func:`_fill_data`)."""
    qty, target, bar_time, seq = float(qty), float(target), int(bar_time), int(seq)
    if (type(cid) is str and type(slot) is str and type(symbol) is str and type(reason) is str
            and _isfinite(qty) and _isfinite(target)):
        return (f'{{"bar_time":{bar_time!r},"cid":{_STR(cid)},"qty":{qty!r},"reason":{_STR(reason)},'
                f'"seq":{seq!r},"slot":{_STR(slot)},"symbol":{_STR(symbol)},"target":{target!r}}}')
    return _CANON.encode({"cid": cid, "slot": slot, "symbol": symbol, "qty": qty, "target": target,
                          "bar_time": bar_time, "seq": seq, "reason": reason})


_WRITE_FAILURES = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")


class _Connection(sqlite3.Connection):
    """The writer's connection: a statement failing because the disk is full, the file or file system is
    read-only or the device errs raises :class:`JournalWriteError` naming the cause (one line), wherever in
    the runtime the write happens."""

    journal_path: Path = Path("journal")

    def execute(self, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().execute(*args)
        except sqlite3.Error as exc:
            if str(getattr(exc, "sqlite_errorname", "")).startswith(_WRITE_FAILURES):
                raise write_error(self.journal_path, exc) from None
            raise

    def executemany(self, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().executemany(*args)
        except sqlite3.Error as exc:
            if str(getattr(exc, "sqlite_errorname", "")).startswith(_WRITE_FAILURES):
                raise write_error(self.journal_path, exc) from None
            raise


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
        self.doubts: list[str] = []  # why this journal may not be the whole truth (see verify); [] = none
        self._chain_seq, self._chain_head, self._anchored = 0, GENESIS, 0
        self._chain_on = False
        self._anchor_frozen = False
        self._anchor_file = AnchorFile(self.path)
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
                self.db = sqlite3.connect(self.path, isolation_level=None, factory=_Connection)  # autocommit
                self.db.journal_path = self.path  # type: ignore[attr-defined]
                self.db.execute("PRAGMA busy_timeout=5000")
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute(f"PRAGMA synchronous={synchronous}")
                self.db.executescript(_SCHEMA)
            self.db.row_factory = sqlite3.Row
            self._deferred: dict[str, Any] = {}
            self._events: list[tuple[int, str, str | None, str]] = []  # inserts carried to the commit
            self._chain_rows: list[tuple[int, str, str, str, str]] = []  # chain links carried to the commit
            self._acks: dict[str, tuple[int, str | None]] = {}  # cid -> (now_ms, venue_order_id) of an "acked"
            self._carried: list[tuple[Any, Any]] = []  # (flush, drop) of writes other tables carry to the commit
            if not readonly and synchronous == "NORMAL":  # replay: fewer checkpoints (each one fsyncs the file)
                self.db.execute(f"PRAGMA wal_autocheckpoint={NORMAL_AUTOCHECKPOINT_PAGES}")
            self._open: dict[str, dict[str, Any]] = {}
            self._load_open()
            if not readonly:
                self.doubts = self.verify()
                self._chain_on = True
                for d in self.doubts:
                    log.error("journal in doubt: %s", d)
        except (sqlite3.Error, JournalError, OSError) as exc:
            if self.db is not None:
                self.db.close()
            if self.lock is not None and lock is None:
                self.lock.release()
            if isinstance(exc, JournalError):
                raise
            if isinstance(exc, OSError):
                raise write_error(self.path, exc, "open") from None
            if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR")):
                raise write_error(self.path, exc, "open") from None
            raise journal_error(self.path, exc, "open") from None

    def _load_open(self) -> None:
        """(Re)build the in-memory state from the file: open orders, their filled quantities, and the
        order sequence numbers of the latest bar (orders are only ever placed at the latest bar)."""
        st = OPEN_STATUSES
        rows = self.db.execute(f"SELECT * FROM orders WHERE status IN ({','.join('?' * len(st))})"
                               " ORDER BY created_ms, rowid", st).fetchall()
        self._open = {r["client_order_id"]: dict(r) for r in rows}
        self._booked: dict[str, None] = {}  # the last booked trade ids, oldest first (a subset of the file)
        self._slot_of: dict[str, str] = {}  # client order id -> slot of the last intents (a subset of the file)
        self._filled = {cid: 0.0 for cid in self._open}
        for cid, q in self.db.execute("SELECT client_order_id, SUM(qty) FROM fills GROUP BY client_order_id"):
            if cid in self._filled:
                self._filled[cid] = float(q)
        top = self.db.execute("SELECT MAX(bar_time) FROM orders").fetchone()[0]
        self._seq_bar = -1 if top is None else int(top)
        self._seq = {(slot, int(bt)): int(m) for slot, bt, m in self.db.execute(
            "SELECT slot, bar_time, MAX(seq) FROM orders WHERE bar_time=? GROUP BY slot, bar_time", (self._seq_bar,))}

    # ------------------------------------------------------------------ hash chain and anchor

    def _load_chain(self) -> None:
        row = self.db.execute("SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        self._chain_seq, self._chain_head = (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def _chain(self, kind: str, ref: str, data: str) -> None:
        """Append one money event to the chain (in the current transaction; anchored after its commit)."""
        seq = self._chain_seq + 1
        h = chain_hash(self._chain_head, seq, kind, ref, data)
        self._chain_rows.append((seq, kind, ref, data, h))  # inserted with the commit (one executemany)
        self._chain_seq, self._chain_head = seq, h
        if not self._batch:
            self._flush_rows()
            self._anchor()

    def _anchor(self) -> None:
        """Write the anchor sidecar if the chain advanced since the last one (after a commit)."""
        if self._chain_on and not self._anchor_frozen and self._chain_seq != self._anchored:
            self._anchor_file.write({"schema": ANCHOR_SCHEMA, "seq": self._chain_seq, "hash": self._chain_head,
                                     "journal": self.path.name}, durable=self.synchronous == "FULL")
            self._anchored = self._chain_seq

    @property
    def chain_seq(self) -> int:
        """Sequence number of the last chained money event (0: none)."""
        return self._chain_seq

    def verify(self) -> list[str]:
        """Check the journal before it is trusted; returns the doubts (one line each, naming the file and the
        last good sequence; [] when none).

        1. ``PRAGMA integrity_check`` (a damaged b-tree, page or index);
        2. the chain: ``seq`` 1, 2, ... without a gap, every hash recomputed from its predecessor;
        3. the chain against the tables: every booked fill and every order intent is in the chain with the
           same content, and nothing chained is missing from them (a row deleted or edited outside the
           journal);
        4. the anchor (``<journal>.anchor``): the chain must reach its seq with its hash — a journal ending
           before it was rolled back (a garbled or deleted WAL, an older copy of the file) or truncated; a
           journal holding money events without an anchor cannot prove it is not an older copy.

        A journal written before hash chains (money rows, an empty chain, no anchor) is chained and anchored
        now from its rows (logged), not doubted.  Costs one pass over the chain, fills and orders.
        """
        doubts: list[str] = []
        res = [str(r[0]) for r in self.db.execute("PRAGMA integrity_check").fetchall()]
        if res != ["ok"]:
            doubts.append(f"{self.path}: SQLite integrity_check failed: {'; '.join(res[:3])[:300]}")
        try:
            anchor = read_anchor(self.path)
        except JournalError as exc:
            doubts.append(str(exc))
            anchor = {"seq": -1, "hash": "", "malformed": True}
        n_money = self.db.execute("SELECT (SELECT COUNT(*) FROM fills) + (SELECT COUNT(*) FROM orders)").fetchone()[0]
        n_chain = self.db.execute("SELECT COUNT(*) FROM chain").fetchone()[0]
        if n_chain == 0 and n_money and anchor is None:
            self._backfill_chain()
            log.warning("%s: journal written before hash chains: %d money events chained and anchored now",
                        self.path, self._chain_seq)
            return doubts
        prev, good, broken = GENESIS, 0, None
        chained: dict[tuple[str, str], str] = {}
        at_anchor = GENESIS  # an anchor at seq 0 (written before any money event) holds the genesis hash
        for seq, kind, ref, data, h in self.db.execute("SELECT seq, kind, ref, data, hash FROM chain ORDER BY seq"):
            if seq != good + 1 or chain_hash(prev, seq, kind, ref, data) != h:
                broken = seq
                break
            if kind in ("fill", "order"):
                chained[(kind, ref)] = data
            prev, good = h, seq
            if anchor is not None and seq == anchor["seq"]:
                at_anchor = h
        self._chain_seq, self._chain_head = good, prev
        if broken is not None:
            doubts.append(f"{self.path}: money-event hash chain broken at seq {broken} (last good seq {good})")
        table: dict[tuple[str, str], str] = {}
        for r in self.db.execute("SELECT trade_id, client_order_id, slot, symbol, qty, price, fee, time_ms FROM fills"):
            table[("fill", r[0])] = _fill_data(*r)
        for r in self.db.execute("SELECT client_order_id, slot, symbol, qty, target, bar_time, seq, reason FROM orders"):
            table[("order", r[0])] = _intent_data(*r)
        if broken is None:
            altered = sorted(k for k in table if chained.get(k) != table[k])
            missing = sorted(k for k in chained if k not in table)
            if altered or missing:
                first = (altered or missing)[0]
                doubts.append(f"{self.path}: {len(altered)} fill/order row(s) not in the money-event chain or changed "
                              f"and {len(missing)} chained row(s) missing from the tables (first: {first[0]} "
                              f"{first[1]}); last good seq {good}")
        if anchor is not None and anchor.get("malformed"):
            pass  # already a doubt
        elif anchor is None:
            if good or table:
                doubts.append(f"{self.path}: no anchor file {anchor_path(self.path).name} beside a journal holding "
                              f"money events (chain at seq {good}): it cannot be proven not to be an older copy")
        elif anchor["seq"] > good:
            doubts.append(f"{self.path}: journal rolled back or truncated: its money-event chain ends at seq {good} "
                          f"but the anchor {anchor_path(self.path).name} records seq {anchor['seq']} (last good seq "
                          f"{good}; a garbled or deleted WAL, an older copy of the file, or a lost tail)")
        elif at_anchor != anchor["hash"]:
            doubts.append(f"{self.path}: journal differs from its anchored history at seq {anchor['seq']} (another "
                          f"journal's file or a rewritten one); chain verified to seq {good}")
        # in doubt: the anchor is frozen (never overwritten), so the evidence survives restarts until the
        # operator archives the journal
        self._anchor_frozen = bool(doubts)
        self._anchored = anchor["seq"] if anchor is not None and not doubts else -1
        return doubts

    def _backfill_chain(self) -> None:
        """Chain the money rows of a journal written before hash chains (orders, fills, money events in
        their original order) and anchor them."""
        with self:
            for r in self.db.execute("SELECT client_order_id, slot, symbol, qty, target, bar_time, seq, reason FROM "
                                     "orders ORDER BY rowid").fetchall():
                self._chain("order", r[0], _intent_data(*r))
            for r in self.db.execute("SELECT trade_id, client_order_id, slot, symbol, qty, price, fee, time_ms FROM "
                                     "fills ORDER BY rowid").fetchall():
                self._chain("fill", r[0], _fill_data(*r))
            for kind, data in self.db.execute("SELECT kind, data FROM events ORDER BY id").fetchall():
                if kind in MONEY_EVENTS:
                    self._chain(kind, kind, data)
        self._chain_on = True
        self._anchor()

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
                try:
                    self._flush_deferred()
                    self.db.execute("COMMIT")
                except JournalWriteError:
                    self._abort()
                    raise
                except sqlite3.Error as err:
                    self._abort()
                    raise write_error(self.path, err, "commit to") from None
                self._anchor()
                return
            self._abort()
            if isinstance(exc, sqlite3.Error) and str(getattr(exc, "sqlite_errorname", "")).startswith(_WRITE_FAILURES):
                raise write_error(self.path, exc) from None

    def carry(self, flush: Any, drop: Any) -> None:
        """Register writes of another table carried in memory to the commit (as this journal's event inserts):
        ``flush()`` executes them (at every commit and before this journal reads its own tables), ``drop()`` forgets
        them (rollback, close)."""
        self._carried.append((flush, drop))

    def _abort(self) -> None:
        """Roll the open transaction back (SQLite may have rolled it back itself: disk full, I/O error) and
        rebuild the in-memory state from the file; never hides the error that caused it."""
        self._deferred.clear()
        self._events.clear()
        self._chain_rows.clear()
        self._acks.clear()
        for _flush, drop in self._carried:
            drop()
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except (sqlite3.Error, JournalError):
                pass  # the original error is the one worth reporting
        try:
            self._load_open()
            self._load_chain()
        except (sqlite3.Error, JournalError):
            pass

    def commit(self) -> None:
        """Make everything written so far durable now; inside ``with journal:`` the batch goes on in a new
        transaction (a commit point, e.g. order intents before the orders are sent)."""
        if self._batch:
            try:
                self._flush_deferred()
                self.db.execute("COMMIT")
            except JournalWriteError:
                raise
            except sqlite3.Error as err:
                raise write_error(self.path, err, "commit to") from None
            self._anchor()
            self.db.execute("BEGIN IMMEDIATE")

    def set_meta_at_commit(self, key: str, value: Any) -> None:
        """Like :meth:`set_meta`, written once just before the transaction commits (a cursor updated every
        bar costs one write per commit, not one per bar); outside a transaction it is written now.  value: JSON-able,
        or a callable without arguments returning it (called only if it is still the key's value at the write)."""
        if self._batch:
            self._deferred[key] = value
        else:
            self.set_meta(key, value() if callable(value) else value)

    def _flush_deferred(self) -> None:
        self._flush_rows()
        for k, v in self._deferred.items():
            self.set_meta(k, v() if callable(v) else v)
        self._deferred.clear()

    def _flush_rows(self) -> None:
        """Write the event inserts and order acknowledgements carried in memory (in their original order)."""
        if self._chain_rows:
            self.db.executemany("INSERT INTO chain(seq, kind, ref, data, hash) VALUES (?,?,?,?,?)", self._chain_rows)
            self._chain_rows.clear()
        if self._events:
            self.db.executemany("INSERT INTO events(time_ms, kind, slot, data) VALUES (?,?,?,?)", self._events)
            self._events.clear()
        if self._acks:
            self.db.executemany("UPDATE orders SET status='acked', updated_ms=?, venue_order_id=COALESCE(?, venue_order_id)"
                                " WHERE client_order_id=?", [(t, v, c) for c, (t, v) in self._acks.items()])
            self._acks.clear()
        for flush, _drop in self._carried:
            flush()

    def close(self) -> None:
        """Roll back an open batch, close the database, release the single-writer lock (also one passed in)."""
        try:
            self._events.clear()
            self._chain_rows.clear()
            self._acks.clear()
            for _flush, drop in self._carried:
                drop()
            if self._batch:
                self._batch = 0
                if self.db.in_transaction:
                    try:
                        self.db.execute("ROLLBACK")
                    except (sqlite3.Error, JournalError):
                        pass  # closing after a failed write: the failure is what the caller reports
            self.db.close()
            self._anchor_file.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    def open_qty_by_slot(self) -> dict[str, float]:
        """slot -> signed base units of its orders in an open status (intent / acked / unknown), summed in the
        journal's order (as ``sum(o["qty"] for o in orders(OPEN_STATUSES) if o["slot"] == slot)``: the same float);
        slots without one are absent."""
        out: dict[str, float] = {}
        for o in self._open.values():
            if o["status"] in OPEN_STATUSES:
                sid = o["slot"]
                out[sid] = out.get(sid, 0) + o["qty"]
        return out

    def has_open_order(self, slot: str) -> bool:
        """True if ``slot`` has an order in an open status (intent / acked / unknown)."""
        for o in self._open.values():
            if o["slot"] == slot:
                return True
        return False

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
            self._chain("order", client_order_id, _intent_data(client_order_id, slot, symbol, qty, target, bar_time,
                                                               seq, reason))
            key = (slot, int(bar_time))
            self._seq[key] = max(self._seq.get(key, -1), int(seq))
            self._remember_slot(client_order_id, slot)
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
        slot = self._slot_of.get(client_order_id)  # an order's slot never changes; the cache is reset on rollback
        if slot is not None:
            return slot
        row = self.db.execute("SELECT slot FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()
        if row is None:
            return None
        self._remember_slot(client_order_id, row[0])
        return row[0]

    def _remember_slot(self, client_order_id: str, slot: str) -> None:
        self._slot_of[client_order_id] = slot
        if len(self._slot_of) > 4096:
            del self._slot_of[next(iter(self._slot_of))]

    def orders(self, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Orders (oldest first), optionally only those with a status in ``statuses``."""
        if statuses is OPEN_STATUSES:  # the common call, served from the in-memory mirror (as below)
            return [dict(o) for o in self._open.values() if o["status"] in _OPEN_SET]
        if statuses is not None:
            st = set(statuses)
            if st <= _OPEN_SET:  # served from the in-memory mirror
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
        self._chain("fill", fill.trade_id, _fill_data(fill.trade_id, fill.client_order_id, slot, fill.symbol, fill.qty,
                                                      fill.price, fill.fee, fill.time_ms))
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
        row = (int(time_ms), kind, slot, _encode_event(data))
        if kind in MONEY_EVENTS and self._chain_on:
            self._chain(kind, kind, row[3])
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
