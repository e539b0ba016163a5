"""The Crucible journal as a file: the single-writer lock, the check that a file is a crucible journal, and
archives that keep every committed row.  (The journal's tables and transactions: :mod:`crucible.journal`,
which re-exports these names.)

One writer per file: a writable journal holds OS-level exclusive locks (``fcntl.flock``) on the journal file's
inode (st_dev, st_ino: the same under a symlink, a hard link or a bind mount) and on ``<journal>.lock``, which
records the holder's pid; a second writer fails at once with :class:`JournalLocked` naming that pid.  An
old journal is never deleted: :func:`archive_journal` checkpoints its WAL into the main file and renames it to a
timestamped archive beside it; every archive is kept.  Errors are :class:`JournalError`, one line, exit 2.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forge.core.errors import ForgeError

__all__ = ["JOURNAL_TABLES", "JournalError", "JournalLocked", "JournalLock", "JournalWriteError", "check_journal_file",
           "archive_journal", "journal_error", "write_error", "anchor_path", "read_anchor", "AnchorFile",
           "ANCHOR_RECORD_BYTES"]

JOURNAL_TABLES = ("meta", "orders", "fills", "events", "equity")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class JournalError(ForgeError):
    """A journal file cannot be used: not a crucible journal, corrupt, locked by SQLite, or unreadable."""

    exit_code = 2


class JournalWriteError(JournalError):
    """A write to the journal (or its anchor) failed: disk full, read-only file system or file, I/O error.
    Trading must stop: nothing after the last commit is durable.  cause: "disk full" | "read-only" |
    "I/O error" | "locked" | "error"."""

    def __init__(self, message: str, cause: str = "error") -> None:
        super().__init__(message)
        self.cause = cause


_CAUSES = (  # (SQLite error name prefix or errno, cause)
    ("SQLITE_FULL", "disk full"), ("SQLITE_READONLY", "read-only"), ("SQLITE_IOERR", "I/O error"),
    ("SQLITE_CANTOPEN", "I/O error"), ("SQLITE_BUSY", "locked"), ("SQLITE_LOCKED", "locked"),
    ("SQLITE_CORRUPT", "corrupt"), ("SQLITE_NOTADB", "corrupt"))
_ERRNO_CAUSES = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk full", errno.EFBIG: "disk full",
                 errno.EROFS: "read-only", errno.EACCES: "read-only", errno.EPERM: "read-only", errno.EIO: "I/O error"}


def write_error(path: Path, exc: BaseException, doing: str = "write") -> JournalWriteError:
    """One line naming the cause of a failed journal write: ``<path>: cannot <doing> the journal: disk full
    (database or disk is full); trading stopped``.  exc: a sqlite3.Error (its ``sqlite_errorname`` decides the
    cause) or an OSError (its errno)."""
    cause = "error"
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    for prefix, c in _CAUSES:
        if name.startswith(prefix):
            cause = c
            break
    if isinstance(exc, OSError):
        cause = _ERRNO_CAUSES.get(exc.errno or 0, "I/O error")
    msg = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).strip().splitlines()
    detail = msg[0] if msg else type(exc).__name__
    return JournalWriteError(f"{path}: cannot {doing} the journal: {cause} ({detail}); trading stopped, nothing "
                             "after the last commit is recorded", cause)


def anchor_path(journal: str | Path) -> Path:
    """The journal's anchor sidecar: ``<journal>.anchor`` (JSON: schema, seq, hash of the last chained money
    event), written outside the database so a rolled-back database cannot roll it back too."""
    return Path(str(journal) + ".anchor")


def read_anchor(journal: str | Path) -> dict[str, Any] | None:
    """The anchor's {"schema", "seq", "hash", ...}, None when there is no anchor file.  raises JournalError
    for an anchor that exists but is unreadable or malformed (a doubt in itself)."""
    p = anchor_path(journal)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalError(f"{p}: cannot read the journal anchor ({exc.strerror})") from None
    try:
        a = json.loads(raw[:65536].decode("utf-8").strip())
        if not (isinstance(a, dict) and isinstance(a.get("seq"), int) and isinstance(a.get("hash"), str)):
            raise ValueError("fields")
    except (ValueError, UnicodeDecodeError):
        raise JournalError(f"{p}: journal anchor is malformed (expected JSON with integer seq and hash)") from None
    return a


ANCHOR_RECORD_BYTES = 512
"""The anchor is one fixed-size record (JSON padded with spaces) overwritten in place: one sector, which disks
write atomically (the "powersafe overwrite" SQLite also assumes), so no rename per commit is needed."""


class AnchorFile:
    """The journal's anchor sidecar, kept open by its writer and overwritten in place after each commit that
    advanced the chain (:meth:`write`).  durable writes (a ``synchronous=FULL`` journal) are fdatasync-ed, so
    the anchor is on disk whenever the commit it follows is; a ``NORMAL`` journal's anchor, like its commits,
    survives a process crash, not an OS crash.  Errors: JournalWriteError naming the cause."""

    def __init__(self, journal: str | Path) -> None:
        self.journal = Path(journal)
        self.path = anchor_path(journal)
        self._fd: int | None = None

    def write(self, record: dict[str, Any], durable: bool = True) -> None:
        data = json.dumps(record, sort_keys=True).encode()
        if len(data) >= ANCHOR_RECORD_BYTES:
            raise ValueError("anchor record too long")
        data += b" " * (ANCHOR_RECORD_BYTES - 1 - len(data)) + b"\n"
        try:
            if self._fd is None:
                new = not self.path.exists()
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
                if new and durable:  # the new name itself must survive a power loss
                    dfd = os.open(self.path.parent, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            if os.pwrite(self._fd, data, 0) != len(data):
                raise OSError(5, "short write")
            if durable:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise write_error(self.journal, exc, "anchor") from None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class JournalLocked(JournalError):
    """Another process holds the journal's single-writer lock.  pid: the holder's pid (None if unknown)."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


def _flock_holder(dev: int, ino: int) -> int | None:
    """The pid holding an ``flock`` on the file (dev, ino), from Linux's ``/proc/locks`` (None elsewhere or
    when not listed).  Lines read ``1: FLOCK  ADVISORY  WRITE <pid> <major hex>:<minor hex>:<inode> 0 EOF``."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            for line in fh:
                f = line.split()
                if len(f) >= 6 and f[1] == "FLOCK" and f[5] == want and f[4].isdigit():
                    return int(f[4])
    except OSError:
        pass
    return None


class JournalLock:
    """The single-writer lock of one journal *file*: exclusive, non-blocking ``fcntl.flock`` locks on

    1. the journal file itself, i.e. on its inode (st_dev, st_ino): every name of the file -- a symlink, a
       hard link, a bind mount of its folder -- reaches the same inode, so two writers through two names
       conflict (a missing journal is created empty first; SQLite treats an empty file as a new database;
       SQLite's own locks are POSIX ``fcntl`` locks, independent of ``flock`` on Linux);
    2. ``<journal path>.lock`` (created if missing, never deleted: deleting a lock file races with the next
       acquirer), which records the holder's pid and keeps a path's lock across an archive step (the file is
       renamed and a new one created: :meth:`acquire` again moves the inode lock to the new file).

    The OS releases both when the holder exits, even on ``kill -9``.  flock locks belong to an open file
    description, so a second JournalLock on the same journal conflicts even inside one process.  The inode's
    descriptor stays open while the lock is held and is closed only after the journal's SQLite connection
    (closing a descriptor of a file drops the process's POSIX locks on it).
    """

    def __init__(self, journal_path: str | Path) -> None:
        self.journal = Path(journal_path)
        self.path = Path(str(self.journal) + ".lock")
        self._fd: int | None = None
        self._ino_fd: int | None = None
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the locked journal file

    @property
    def held(self) -> bool:
        return self._fd is not None and self._ino_fd is not None

    def holder_pid(self) -> int | None:
        """The pid written by the current holder (None if unreadable or empty)."""
        try:
            text = self.path.read_text(errors="replace").split()
            return int(text[0]) if text else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "JournalLock":
        """Take the lock (again after an archive step: the inode lock moves to the file now at the path);
        returns self.  raises JournalLocked naming the holder's pid (the same file under another name
        included), JournalError if a lock file cannot be created."""
        took_path = False
        if self._fd is None:
            self._lock_path()
            took_path = True
        try:
            self._lock_inode()
        except BaseException:
            if took_path:
                self.release()
            raise
        return self

    def _lock_path(self) -> None:
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

    def _lock_inode(self) -> None:
        if self._ino_fd is not None:
            try:
                st = os.stat(self.journal)
                if (st.st_dev, st.st_ino) == self.identity:
                    return  # still the same file
            except OSError:
                pass  # moved away (archived): lock the new file below
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.journal, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise JournalError(f"{self.journal}: cannot open the journal to lock it ({exc.strerror})") from None
        st = os.fstat(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JournalError(f"{self.journal}: cannot lock the journal ({exc.strerror})") from None
            pid = _flock_holder(st.st_dev, st.st_ino)
            raise JournalLocked(f"{self.journal}: journal file (device {st.st_dev}, inode {st.st_ino}) is in use by "
                                f"another crucible process (pid {pid if pid is not None else 'unknown'}) under "
                                "this or another name (a symlink, hard link or bind mount); stop it first or use "
                                "another --journal", pid) from None
        old, self._ino_fd, self.identity = self._ino_fd, fd, (st.st_dev, st.st_ino)
        if old is not None:
            os.close(old)

    def release(self) -> None:
        """Drop the lock (the pid is cleared first so a stale pid is never shown).  Idempotent."""
        if self._ino_fd is not None:
            fd, self._ino_fd, self.identity = self._ino_fd, None, None
            os.close(fd)
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
    every archive is kept.  An empty file (no row: e.g. created by :class:`JournalLock`) is left in place and
    returned as is.  The anchor sidecar (``<journal>.anchor``) moves with the archive (``<archive>.anchor``).
    raises JournalError for a file that is not a crucible journal, or when SQLite
    cannot checkpoint (e.g. another connection keeps the WAL busy) — the journal is then left untouched.
    """
    p = Path(path)
    check_journal_file(p)
    wal = Path(str(p) + "-wal")
    try:
        if p.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
            return p  # an empty file (created by the lock, no row yet): nothing to archive, left in place
    except OSError as exc:
        raise JournalError(f"{p}: cannot archive the journal ({exc.strerror})") from None
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
    if anchor_path(p).exists():  # the anchor goes with the rows it anchors
        os.replace(anchor_path(p), anchor_path(dest))
    dfd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return dest
