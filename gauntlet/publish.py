"""Publish survivors to ``artifacts/champions/`` atomically, with sha256 and optional HMAC.

Layout::

    artifacts/champions/<genome sha256[:16]>.json   genome (versioned JSON, forge.gp.Genome)
    artifacts/champions/<genome sha256[:16]>.meta.json
        {"schema": "forge-champion/1", "file": "<name>.json", "sha256": <hex of the genome file bytes>,
         "genome_sha256": ..., "hmac_sha256": <hex HMAC-SHA256 of the file bytes with FORGE_SIGNING_KEY> | null,
         "run_id", "symbol", "features", "feature_library": <file name> | null, "verdict": {...}, "published_utc"}

The meta file is written last (temp file, fsync, rename), so a reader that
finds it finds a complete genome; ``verify_champion`` is what the Crucible calls.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forge.core.artifacts import atomic_write_json, atomic_write_text
from forge.core.errors import GenomeError
from forge.gp import Genome

__all__ = ["publish_champion", "verify_champion", "SIGNING_KEY_ENV"]

SIGNING_KEY_ENV = "FORGE_SIGNING_KEY"
SCHEMA = "forge-champion/1"


def _key(key: str | bytes | None) -> bytes | None:
    k = key if key is not None else os.environ.get(SIGNING_KEY_ENV)
    if not k:
        return None
    return k.encode() if isinstance(k, str) else k


def publish_champion(genome: Genome, out_dir: str | Path, *, run_id: str, symbol: str | None,
                     features: list[str], verdict: dict[str, Any], library: Path | None = None,
                     key: str | bytes | None = None) -> Path:
    """Write genome + meta atomically; returns the meta path. HMAC when a key is given or in FORGE_SIGNING_KEY."""
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
    k = _key(key)
    meta = {"schema": SCHEMA, "file": f"{stem}.json", "sha256": hashlib.sha256(data).hexdigest(),
            "genome_sha256": genome.sha256,
            "hmac_sha256": hmac.new(k, data, hashlib.sha256).hexdigest() if k else None,
            "run_id": run_id, "symbol": symbol, "features": features, "feature_library": lib_name,
            "verdict": verdict, "published_utc": datetime.now(timezone.utc).isoformat()}
    return atomic_write_json(out / f"{stem}.meta.json", meta)


def verify_champion(meta_path: str | Path, *, key: str | bytes | None = None) -> tuple[Genome, dict[str, Any]]:
    """Load a published champion; raises GenomeError if incomplete, tampered, unsigned when a key is
    configured, or badly signed. returns (genome, meta)."""
    meta_path = Path(meta_path)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenomeError(f"{meta_path}: unreadable champion meta ({exc})") from None
    if meta.get("schema") != SCHEMA:
        raise GenomeError(f"{meta_path}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    gpath = meta_path.parent / str(meta.get("file", ""))
    try:
        data = gpath.read_bytes()
    except OSError:
        raise GenomeError(f"{meta_path}: genome file {gpath.name} missing") from None
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise GenomeError(f"{gpath}: sha256 does not match {meta_path.name} (tampered or incomplete)")
    k = _key(key)
    if k is not None:
        sig = meta.get("hmac_sha256")
        if not sig:
            raise GenomeError(f"{meta_path}: unsigned, but {SIGNING_KEY_ENV} is configured")
        if not hmac.compare_digest(sig, hmac.new(k, data, hashlib.sha256).hexdigest()):
            raise GenomeError(f"{meta_path}: HMAC signature does not match")
    genome = Genome.from_json(data.decode())
    if genome.sha256 != meta.get("genome_sha256"):
        raise GenomeError(f"{gpath}: genome checksum differs from the meta file")
    return genome, meta
