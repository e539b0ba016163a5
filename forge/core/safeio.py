"""Hardened readers for files in folders an attacker may write to (champion folders, replacement requests).

:func:`read_regular_file` opens only regular files (``lstat`` first, ``O_NOFOLLOW | O_NONBLOCK``, ``fstat``
again, at most ``max_bytes``); :func:`loads_limited` parses JSON only after :func:`json_depth` has checked
its nesting with one linear scan (a 200,000-level file costs no recursion).  Used by the champion reader
(:mod:`forge.core.champion`), the Forge worker's request intake and ``crucible verify``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.errors import GenomeError

__all__ = ["read_regular_file", "loads_limited", "json_depth", "MAX_BYTES", "MAX_DEPTH"]

MAX_BYTES = 1 << 20  # default size cap of a champion genome or meta file (1 MiB)
MAX_DEPTH = 64  # default maximum JSON nesting ([ and { levels)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def read_regular_file(path: str | Path, max_bytes: int = MAX_BYTES) -> bytes:
    """Read a file that must be a regular file of at most ``max_bytes`` bytes, safely in a hostile folder.

    The path is ``lstat``-ed first (a symlink, FIFO, socket, device or directory is refused without being
    opened), then opened with ``O_NOFOLLOW | O_NONBLOCK`` (never blocks on a FIFO swapped in meanwhile) and
    ``fstat``-ed again (same inode, still regular); at most ``max_bytes + 1`` bytes are read.
    raises GenomeError naming the file and what was wrong.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except OSError as exc:
        raise GenomeError(f"{p}: cannot stat ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise GenomeError(f"{p}: is a symbolic link; only regular files are accepted")
    if not stat.S_ISREG(st.st_mode):
        kind = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(
            st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode) else "socket" if stat.S_ISSOCK(
            st.st_mode) else "special file")
        raise GenomeError(f"{p}: is a {kind}; only regular files are accepted")
    if st.st_size > max_bytes:
        raise GenomeError(f"{p}: {st.st_size:,} bytes, more than the {max_bytes:,}-byte limit")
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise GenomeError(f"{p}: cannot open ({exc.strerror})") from None
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise GenomeError(f"{p}: replaced while being opened; only regular files are accepted")
        chunks, n = [], 0
        while n <= max_bytes:
            b = os.read(fd, min(1 << 16, max_bytes + 1 - n))
            if not b:
                break
            chunks.append(b)
            n += len(b)
        if n > max_bytes:
            raise GenomeError(f"{p}: more than the {max_bytes:,}-byte limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


def json_depth(data: bytes) -> int:
    """Maximum nesting depth of ``[``/``{`` in JSON text (0 for a scalar), ignoring brackets inside strings.

    One linear pass (regex + numpy cumulative sum), no recursion: safe on 200,000-level files.  For malformed
    text the value is an upper bound of what a parser would recurse into (never an underestimate).
    """
    stripped = _JSON_STRING.sub(b"", data)
    a = np.frombuffer(stripped, dtype=np.uint8)
    steps = (((a == 0x5B) | (a == 0x7B)).astype(np.int64) - ((a == 0x5D) | (a == 0x7D)).astype(np.int64))
    if not steps.size:
        return 0
    return int(max(0, np.cumsum(steps).max()))


def loads_limited(data: bytes, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse UTF-8 JSON bytes nested at most ``max_depth`` levels (checked before parsing).

    raises GenomeError naming ``source`` for deeper nesting, bad UTF-8 or invalid JSON.
    """
    depth = json_depth(data)
    if depth > max_depth:
        raise GenomeError(f"{source}: JSON nested {depth:,} levels deep, more than the limit of {max_depth}")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise GenomeError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise GenomeError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer literal with too many digits
        raise GenomeError(f"{source}: unreadable JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
