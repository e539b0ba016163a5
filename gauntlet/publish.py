"""Publish survivors to ``artifacts/champions/`` atomically, with sha256 and optional HMAC; read them back safely.

Layout::

    artifacts/champions/<genome sha256[:16]>.json   genome (versioned JSON, forge.gp.Genome)
    artifacts/champions/<genome sha256[:16]>.meta.json
        {"schema": "forge-champion/2", "file": "<name>.json", "sha256": <hex of the genome file bytes>,
         "genome_sha256": ..., "run_id", "symbol", "features", "feature_library": <file name> | null,
         "survived": true, "verdict": {...}, "gauntlet_report_sha256": <hex> | null, "published_utc",
         "lineage": {"source": "forge serve" | ..., "slot", "request", "parent_genome_sha256", ...} | null,
         "hmac_sha256": <hex HMAC-SHA256, see below> | null}

Signature (schema ``forge-champion/2``): HMAC-SHA256 with the key in ``FORGE_SIGNING_KEY`` over
``b"forge-champion/2\\n" + canonical(meta without "hmac_sha256") + b"\\n" + genome file bytes``, where
canonical is compact, key-sorted, ASCII JSON.  It therefore covers the genome *and* every field of the
meta (verdict, symbol, run id, report hash, file name): editing any of them breaks it.  Schema
``forge-champion/1`` signed the genome bytes only; such files are read as unsigned.

The meta file is written last (temp file, fsync, rename), so a reader that finds it finds a complete
genome.  :func:`verify_champion` is what the Crucible calls; it reads hostile folders safely
(:func:`read_regular_file`, :func:`loads_limited`): only regular files that are direct children of the
folder (no symlinks, FIFOs, devices, paths with separators), at most ``max_bytes``, JSON nested at most
``max_depth`` levels (checked before parsing, so a 200,000-level file costs one linear scan and no
recursion), genomes of at most ``max_tokens`` tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.artifacts import atomic_write_text
from forge.core.errors import GenomeError
from forge.gp import Genome

__all__ = ["publish_champion", "verify_champion", "read_regular_file", "loads_limited", "json_depth",
           "champion_signature", "SIGNING_KEY_ENV", "SCHEMA", "MAX_BYTES", "MAX_DEPTH", "MAX_TOKENS"]

SIGNING_KEY_ENV = "FORGE_SIGNING_KEY"
SCHEMA = "forge-champion/2"
LEGACY_SCHEMAS = ("forge-champion/1",)
MAX_BYTES = 1 << 20  # default size cap of a champion genome or meta file (1 MiB)
MAX_DEPTH = 64  # default maximum JSON nesting ([ and { levels)
MAX_TOKENS = 256  # default maximum genome tokens (evolution's hard cap is max_size = 40 nodes)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _key(key: str | bytes | None) -> bytes | None:
    k = key if key is not None else os.environ.get(SIGNING_KEY_ENV)
    if not k:
        return None
    return k.encode() if isinstance(k, str) else k


def _plain(obj: Any) -> Any:
    """JSON-native copy: numpy scalars/arrays to Python, tuples to lists, NaN to null, ±inf to "inf"/"-inf"
    (the same rules as ``forge.core.artifacts.atomic_write_json``), so what is signed is what is read back."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def champion_signature(meta: dict[str, Any], genome_bytes: bytes, key: bytes) -> str:
    """Hex HMAC-SHA256 (``key``) of the canonical meta without its ``hmac_sha256`` field plus the genome bytes
    (see the module docstring)."""
    body = {k: v for k, v in meta.items() if k != "hmac_sha256"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hmac.new(key, SCHEMA.encode() + b"\n" + canon.encode() + b"\n" + genome_bytes, hashlib.sha256).hexdigest()


def publish_champion(genome: Genome, out_dir: str | Path, *, run_id: str, symbol: str | None,
                     features: list[str], verdict: dict[str, Any], library: Path | None = None,
                     key: str | bytes | None = None, report_sha256: str | None = None,
                     lineage: dict[str, Any] | None = None) -> Path:
    """Write genome + meta atomically; returns the meta path.  Signed (HMAC over genome and meta) when a key
    is given or in FORGE_SIGNING_KEY.

    verdict: the gauntlet's verdict of this genome (per-stage dicts; a ``"survived"`` key, when present,
    must be True); report_sha256: sha256 hex of the gauntlet report it came from (or None); lineage: where
    the champion came from (e.g. ``{"source": "forge serve", "slot": "btc1", "request": <request id>,
    "parent_genome_sha256": <seed genome>}``; string values; a ``"slot"`` makes it a replacement for that
    slot), signed with the rest of the meta.
    raises GenomeError when the verdict says the genome did not survive (only survivors are published).
    """
    if isinstance(verdict, dict) and verdict.get("survived") is False:
        raise GenomeError(f"genome {genome.sha256[:16]}: the gauntlet verdict says it did not survive; not published")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = genome.sha256[:16]
    text = genome.to_json()
    atomic_write_text(out / f"{stem}.json", text)
    lib_name = None
    if library is not None:
        lib_name = f"{stem}.features.json"
        tmp = out / f".{lib_name}.tmp"
        shutil.copyfile(library, tmp)
        os.replace(tmp, out / lib_name)
    data = text.encode()
    meta = _plain({"schema": SCHEMA, "file": f"{stem}.json", "sha256": hashlib.sha256(data).hexdigest(),
                   "genome_sha256": genome.sha256, "run_id": run_id, "symbol": symbol, "features": features,
                   "feature_library": lib_name, "survived": True, "verdict": verdict,
                   "gauntlet_report_sha256": report_sha256, "published_utc": datetime.now(timezone.utc).isoformat(),
                   "lineage": dict(lineage) if lineage else None})
    k = _key(key)
    meta["hmac_sha256"] = champion_signature(meta, data, k) if k else None
    return atomic_write_text(out / f"{stem}.meta.json", json.dumps(meta, indent=2) + "\n")


# --------------------------------------------------------------------------- safe reading


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


def _check_meta(meta: Any, where: Path) -> None:
    if not isinstance(meta, dict):
        raise GenomeError(f"{where}: champion meta must be a JSON object, got {type(meta).__name__}")
    if meta.get("schema") not in (SCHEMA, *LEGACY_SCHEMAS):
        raise GenomeError(f"{where}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    expect = {"file": str, "sha256": str, "genome_sha256": str}
    for k, tp in expect.items():
        if not isinstance(meta.get(k), tp):
            raise GenomeError(f"{where}: field {k!r} must be a string, got {type(meta.get(k)).__name__}")
    for k in ("symbol", "hmac_sha256", "run_id", "gauntlet_report_sha256"):
        if meta.get(k) is not None and not isinstance(meta[k], str):
            raise GenomeError(f"{where}: field {k!r} must be a string or null, got {type(meta[k]).__name__}")
    if not _HEX64.fullmatch(meta["sha256"]):
        raise GenomeError(f"{where}: field 'sha256' must be 64 lowercase hex digits")
    if "verdict" in meta and not isinstance(meta["verdict"], dict):
        raise GenomeError(f"{where}: field 'verdict' must be an object, got {type(meta['verdict']).__name__}")
    lineage = meta.get("lineage")
    if lineage is not None and not (isinstance(lineage, dict) and len(lineage) <= 32 and all(
            isinstance(k, str) and (v is None or isinstance(v, (str, int, float))) for k, v in lineage.items())):
        raise GenomeError(f"{where}: field 'lineage' must be an object of strings or numbers, or null")


def _survived(meta: dict[str, Any]) -> bool:
    """The gauntlet verdict: top-level ``survived`` (schema 2) and/or ``verdict.survived`` must be True, and
    neither may say False."""
    flags = [meta.get("survived"), (meta.get("verdict") or {}).get("survived")]
    present = [f for f in flags if f is not None]
    return bool(present) and all(f is True for f in present)


def verify_champion(meta_path: str | Path, *, key: str | bytes | None = None, require_signature: bool = False,
                    max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                    max_tokens: int = MAX_TOKENS) -> tuple[Genome, dict[str, Any]]:
    """Load a published champion from a possibly hostile folder.

    meta_path: ``<stem>.meta.json``; key: HMAC key (default FORGE_SIGNING_KEY); require_signature: refuse
    when no key is available; max_bytes / max_depth / max_tokens: limits of each file, its JSON nesting and
    the genome's token count.  With a key, the signature must be present and cover genome and meta
    (schema 2); without one the champion is *unverified* (the caller decides whether to accept that).
    returns (genome, meta).  raises GenomeError (naming the file) if a file is not a regular file inside the
    folder, too big, too deep, incomplete, tampered, unsigned or badly signed when a key is configured, or
    when the gauntlet verdict says the genome did not survive.
    """
    meta_path = Path(meta_path)
    meta = loads_limited(read_regular_file(meta_path, max_bytes), str(meta_path), max_depth)
    _check_meta(meta, meta_path)
    name = meta["file"]
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or name != os.path.basename(name):
        raise GenomeError(f"{meta_path}: field 'file' must name a file in the same folder, got {name!r}")
    gpath = meta_path.parent / name
    try:
        data = read_regular_file(gpath, max_bytes)
    except GenomeError as exc:
        if not os.path.lexists(gpath):
            raise GenomeError(f"{meta_path}: genome file {name} missing") from None
        raise exc
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise GenomeError(f"{gpath}: sha256 does not match {meta_path.name} (tampered or incomplete)")
    k = _key(key)
    if k is None and require_signature:
        raise GenomeError(f"{meta_path}: signatures are required but {SIGNING_KEY_ENV} is not set")
    if k is not None:
        sig = meta.get("hmac_sha256")
        if not sig or meta["schema"] != SCHEMA:
            legacy = "" if meta["schema"] == SCHEMA else f" (schema {meta['schema']} signs the genome only; republish)"
            raise GenomeError(f"{meta_path}: unsigned, but {SIGNING_KEY_ENV} is configured{legacy}")
        if not hmac.compare_digest(sig, champion_signature(meta, data, k)):
            raise GenomeError(f"{meta_path}: HMAC signature does not match (genome or meta edited, or another key)")
    if not _survived(meta):
        raise GenomeError(f"{meta_path}: the gauntlet verdict does not say the genome survived "
                          f"(survived={meta.get('survived')!r}, verdict.survived="
                          f"{(meta.get('verdict') or {}).get('survived')!r})")
    d = loads_limited(data, str(gpath), max_depth)
    if isinstance(d, dict) and isinstance(d.get("tokens"), list) and len(d["tokens"]) > max_tokens:
        raise GenomeError(f"{gpath}: {len(d['tokens']):,} tokens, more than the limit of {max_tokens}")
    try:
        genome = Genome.from_dict(d, source=str(gpath))
    except RecursionError:
        raise GenomeError(f"{gpath}: genome tree too deep to parse") from None
    if genome.sha256 != meta["genome_sha256"]:
        raise GenomeError(f"{gpath}: genome checksum differs from the meta file")
    return genome, meta
