"""The Crucible journal as a file: the single-writer lock, the check that a file is a crucible journal, and
archives that keep every committed row.  (The journal's tables and transactions: :mod:`crucible.journal`,
which re-exports these names.)

One writer: a writable journal holds an OS-level exclusive lock (``fcntl.flock``) on ``<journal>.lock``, which
also records the holder's pid; a second writer fails at once with :class:`JournalLocked` naming that pid.  An
old journal is never deleted: :func:`archive_journal` checkpoints its WAL into the main file and renames it to a
timestamped archive beside it; every archive is kept.  Errors are :class:`JournalError`, one line, exit 2.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forge.core.errors import ForgeError

__all__ = ["JOURNAL_TABLES", "JournalError", "JournalLocked", "JournalLock", "check_journal_file", "archive_journal",
           "journal_error"]

JOURNAL_TABLES = ("meta", "orders", "fills", "events", "equity")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class JournalError(ForgeError):
    """A journal file cannot be used: not a crucible journal, corrupt, locked by SQLite, or unreadable."""

    exit_code = 2


class JournalLocked(JournalError):
    """Another process holds the journal's single-writer lock.  pid: the holder's pid (None if unknown)."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class JournalLock:
    """Exclusive, non-blocking ``fcntl.flock`` on ``<journal path>.lock`` (created if missing, never deleted:
    deleting a lock file races with the next acquirer).  The holder writes its pid into the file.

    The OS releases the lock when the holder exits, even on ``kill -9``.  flock locks belong to an open file
    description, so a second JournalLock on the same journal conflicts even inside one process.
    """

    def __init__(self, journal_path: str | Path) -> None:
        self.journal = Path(journal_path)
        self.path = Path(str(self.journal) + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder_pid(self) -> int | None:
        """The pid written by the current holder (None if unreadable or empty)."""
        try:
            text = self.path.read_text(errors="replace").split()
            return int(text[0]) if text else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "JournalLock":
        """Take the lock; returns self.  raises JournalLocked naming the holder's pid, JournalError if the
        lock file cannot be created."""
        if self._fd is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot create the journal lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JournalError(f"{self.path}: cannot lock the journal ({exc.strerror})") from None
            pid = self.holder_pid()
            raise JournalLocked(f"{self.journal}: journal is in use by another crucible process "
                                f"(pid {pid if pid is not None else 'unknown'}, lock {self.path}); stop it first "
                                "or use another --journal", pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the pid is cleared first so a stale pid is never shown).  Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> "JournalLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def journal_error(path: Path, exc: BaseException, doing: str) -> JournalError:
    """A one-line JournalError for a SQLite error while ``doing`` (open, read, archive) the journal at ``path``."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = {"file is not a database": "not a SQLite file", "database disk image is malformed": "corrupt"}.get(msg)
    return JournalError(f"{path}: cannot {doing} the journal: {hint + ' (' + msg + ')' if hint else msg}")


def check_journal_file(path: str | Path) -> None:
    """Check that an existing, non-empty ``path`` is a crucible journal (a SQLite file with the journal's
    tables, or a SQLite file with no table yet); an empty or missing file passes (a new journal).
    raises JournalError naming the file and what it is instead."""
    p = Path(path)
    try:
        if not p.exists() or (p.is_file() and p.stat().st_size == 0):
            return
        if not p.is_file():
            raise JournalError(f"{p}: not a crucible journal (not a regular file)")
        with p.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise JournalError(f"{p}: cannot read the journal ({exc.strerror})") from None
    if head != _SQLITE_MAGIC:
        raise JournalError(f"{p}: not a crucible journal (not a SQLite file); refusing to use, archive or "
                           "overwrite it — choose another --journal path")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise journal_error(p, exc, "read") from None
    missing = [t for t in JOURNAL_TABLES if t not in names]
    if missing and names:
        raise JournalError(f"{p}: not a crucible journal (a SQLite database without the table(s) {missing}); "
                           "refusing to use, archive or overwrite it — choose another --journal path")


def archive_journal(path: str | Path, now: datetime | None = None) -> Path:
    """Move a journal aside without losing a committed row; returns the archive path.

    The caller must hold the journal's :class:`JournalLock`.  The WAL is checkpointed into the main file
    (``PRAGMA wal_checkpoint(TRUNCATE)``) and the file switched to ``journal_mode=DELETE`` (SQLite then
    removes the emptied ``-wal`` itself), then the self-contained file is renamed (hard link, then unlink:
    never overwriting) to ``<stem>.<UTC YYYYmmddTHHMMSS.ffffffZ><suffix>`` beside it and the folder fsynced;
    every archive is kept.  raises JournalError for a file that is not a crucible journal, or when SQLite
    cannot checkpoint (e.g. another connection keeps the WAL busy) — the journal is then left untouched.
    """
    p = Path(path)
    check_journal_file(p)
    try:
        db = sqlite3.connect(p, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            busy, _log, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise JournalError(f"{p}: cannot archive the journal: another connection keeps its WAL busy")
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            if str(mode).lower() != "delete":
                raise JournalError(f"{p}: cannot archive the journal: SQLite kept journal_mode={mode}")
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise journal_error(p, exc, "archive") from None
    wal = Path(str(p) + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise JournalError(f"{wal}: WAL still holds data after a checkpoint; journal left in place")
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = p.with_name(f"{p.stem}.{stamp}{p.suffix}")
    n = 1
    while True:
        try:
            os.link(p, dest)  # fails instead of overwriting an existing archive
            break
        except FileExistsError:
            dest = p.with_name(f"{p.stem}.{stamp}-{n}{p.suffix}")
            n += 1
    os.unlink(p)
    dfd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return dest
