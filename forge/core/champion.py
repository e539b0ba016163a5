"""The champion file format: what the Gauntlet publishes and the Crucible reads (a kernel contract).

Layout::

    artifacts/champions/<stem>.json   genome (versioned JSON, forge.gp.Genome)
    artifacts/champions/<stem>.meta.json     (stem: :func:`champion_stem`, <genome sha256[:16]> for an
                                              always-taker champion, <genome[:16]>-<policy sha256[:16]> else)
        {"schema": "forge-champion/2", "file": "<name>.json", "sha256": <hex of the genome file bytes>,
         "genome_sha256": ..., "run_id", "symbol", "features", "feature_library": <file name> | null,
         "survived": true, "verdict": {...}, "gauntlet_report_sha256": <hex> | null, "published_utc",
         "lineage": {"source": "forge serve" | ..., "slot", "request", "parent_genome_sha256", ...} | null,
         "policy": <execution policy JSON, forge.execution.policy, with its "sha256"> | absent/null,
         "sizing": {"method": "kelly", "multiplier": f, "kelly_cap", "max_leverage", "sized_on", ...} | absent/null
             (the fractional-Kelly multiplier of the champion's targets, measured on its in-sample bars;
             absent = unit sizing, the targets as the genome outputs them),
         "edge_kind": "directional" | "risk timing" | null  (gauntlet.stages.edge_kind; absent in older files),
         "selected_on": [{"first_open_ms", "last_open_ms", "n_bars", ...}, ...] | null  (the bars that selected the
             genome, forge.core.provenance; absent in older files, which then count as of unknown provenance),
         "regime_model": "<stem>.regime_model.json", "regime_model_sha256": <hex>   (absent when the run had no
             regime model: the frozen HMM its regime terminals are filtered with, forge.features.regimes),
         "hmac_sha256": <hex HMAC-SHA256, see below> | null}

``policy`` (issue 31): the execution policy the champion trades with, signed with the rest of the meta.
Absent or null = always-taker, so champions published before it load and trade as before.  A champion's
identity is (genome sha256, policy sha256): :func:`champion_identity`; its one-string form
:func:`champion_key` is the genome sha256 alone for always-taker (every earlier file name, journal record
and lineage keeps its key) and ``<genome sha256>+<policy sha256>`` otherwise, so one genome published with
two policies has two file names, two journal identities and two lineages.  A policy whose sha256 does not
match its weights is refused (one line naming the file); the HMAC covers it with the rest of the meta.

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
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.errors import GenomeError
from forge.core.safeio import MAX_BYTES, MAX_DEPTH, json_depth, loads_limited, read_regular_file
from forge.gp import Genome

__all__ = ["verify_champion", "champion_regime_model", "champion_signature", "SIGNING_KEY_ENV", "SCHEMA", "LEGACY_SCHEMAS", "MAX_BYTES",
           "champion_identity", "champion_key", "champion_policy", "champion_sizing", "champion_stem", "meta_key", "MAX_DEPTH", "MAX_TOKENS", "json_depth", "loads_limited", "read_regular_file"]

SIGNING_KEY_ENV = "FORGE_SIGNING_KEY"
SCHEMA = "forge-champion/2"
LEGACY_SCHEMAS = ("forge-champion/1",)
MAX_TOKENS = 256  # default maximum genome tokens (evolution's hard cap is max_size = 40 nodes)
_HEX64 = re.compile(r"[0-9a-f]{64}")


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


def _check_meta(meta: Any, where: Path) -> None:
    if not isinstance(meta, dict):
        raise GenomeError(f"{where}: champion meta must be a JSON object, got {type(meta).__name__}")
    if meta.get("schema") not in (SCHEMA, *LEGACY_SCHEMAS):
        raise GenomeError(f"{where}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    expect = {"file": str, "sha256": str, "genome_sha256": str}
    for k, tp in expect.items():
        if not isinstance(meta.get(k), tp):
            raise GenomeError(f"{where}: field {k!r} must be a string, got {type(meta.get(k)).__name__}")
    for k in ("symbol", "hmac_sha256", "run_id", "gauntlet_report_sha256", "edge_kind"):
        if meta.get(k) is not None and not isinstance(meta[k], str):
            raise GenomeError(f"{where}: field {k!r} must be a string or null, got {type(meta[k]).__name__}")
    if not _HEX64.fullmatch(meta["sha256"]):
        raise GenomeError(f"{where}: field 'sha256' must be 64 lowercase hex digits")
    if "verdict" in meta and not isinstance(meta["verdict"], dict):
        raise GenomeError(f"{where}: field 'verdict' must be an object, got {type(meta['verdict']).__name__}")
    sel = meta.get("selected_on")
    if sel is not None and not (isinstance(sel, list) and len(sel) <= 64 and all(
            isinstance(r, dict) and isinstance(r.get("first_open_ms"), int) and isinstance(r.get("last_open_ms"), int)
            for r in sel)):
        raise GenomeError(f"{where}: field 'selected_on' must be a list of data ranges, or null")
    lineage = meta.get("lineage")
    if lineage is not None and not (isinstance(lineage, dict) and len(lineage) <= 32 and all(
            isinstance(k, str) and (v is None or isinstance(v, (str, int, float))) for k, v in lineage.items())):
        raise GenomeError(f"{where}: field 'lineage' must be an object of strings or numbers, or null")


    if meta.get("policy") is not None:
        champion_policy(meta, where)
    if meta.get("sizing") is not None:
        champion_sizing(meta, where)


def champion_policy(meta: dict[str, Any], where: Path | str = "<meta>") -> Any:
    """The champion's execution policy (``forge.execution.policy.ExecutionPolicy``): the meta's ``policy``
    field, or always-taker when absent/null.  raises GenomeError when the field is malformed or its sha256
    does not match its weights."""
    from forge.core.errors import ConfigError
    from forge.execution.policy import ExecutionPolicy

    d = meta.get("policy")
    if d is None:
        return ExecutionPolicy.always_taker()
    if not isinstance(d, dict) or not isinstance(d.get("sha256"), str):
        raise GenomeError(f"{where}: field 'policy' must be an execution policy object with a sha256, or null")
    try:
        return ExecutionPolicy.from_dict(d, f"{where}: policy")
    except ConfigError as exc:
        raise GenomeError(str(exc)) from None


def champion_identity(meta: dict[str, Any]) -> tuple[str, str]:
    """(genome sha256, policy sha256) of a champion meta; the policy part is always-taker's sha256 when the
    meta has no policy, so one genome traded with two policies has two identities."""
    return str(meta["genome_sha256"]), str(champion_policy(meta).sha256)


def champion_regime_model(meta_path: str | Path, meta: dict[str, Any], max_bytes: int = MAX_BYTES) -> Path | None:
    """The frozen regime model published beside a champion (meta ``regime_model``), checked against the meta's
    ``regime_model_sha256``; None when the meta names none.  raises GenomeError in one line (naming the file)
    when the name is not a file of the same folder, the file is missing or not regular, or its sha256 differs
    (tampered or incomplete)."""
    name = meta.get("regime_model")
    if name is None:
        return None
    sha = meta.get("regime_model_sha256")
    meta_path = Path(meta_path)
    if (not isinstance(name, str) or name in ("", ".", "..") or name != os.path.basename(name) or "\\" in name
            or "\0" in name or not isinstance(sha, str) or not _HEX64.fullmatch(sha)):
        raise GenomeError(f"{meta_path}: fields 'regime_model' / 'regime_model_sha256' must name a file in the same "
                          "folder and its sha256")
    path = meta_path.parent / name
    if not os.path.lexists(path):
        raise GenomeError(f"{meta_path}: regime model {name} missing (publish it with its champion)")
    data = read_regular_file(path, max_bytes)
    if hashlib.sha256(data).hexdigest() != sha:
        raise GenomeError(f"{path}: sha256 does not match {meta_path.name} (regime model tampered or incomplete)")
    return path


def champion_key(genome_sha256: str, policy_sha256: str | None = None) -> str:
    """One string for the identity (genome sha256, policy sha256): the genome sha256 alone when the policy is
    None or always-taker (``forge.execution.policy.ALWAYS_TAKER_SHA256``), else ``"<genome>+<policy>"``."""
    from forge.execution.policy import ALWAYS_TAKER_SHA256

    if policy_sha256 is None or policy_sha256 == ALWAYS_TAKER_SHA256:
        return str(genome_sha256)
    return f"{genome_sha256}+{policy_sha256}"


def meta_key(meta: dict[str, Any]) -> str:
    """:func:`champion_key` of a champion meta.  raises GenomeError on a malformed policy field."""
    return champion_key(*champion_identity(meta))


def champion_stem(genome_sha256: str, policy_sha256: str | None = None) -> str:
    """File stem of a published champion: ``<genome sha256[:16]>`` for always-taker (the name every earlier
    release wrote), else ``<genome sha256[:16]>-<policy sha256[:16]>``."""
    key = champion_key(genome_sha256, policy_sha256)
    return genome_sha256[:16] if key == genome_sha256 else f"{genome_sha256[:16]}-{str(policy_sha256)[:16]}"


def champion_sizing(meta: dict[str, Any], where: Path | str = "<meta>") -> float:
    """The multiplier of the champion's targets: ``meta["sizing"]["multiplier"]`` (fractional Kelly measured on
    its in-sample bars, ``forge.execution.sizing``), 1.0 when the field is absent or null (unit sizing).
    raises GenomeError when the field is not {"method": "kelly", "multiplier": finite number in [0, 100]}."""
    d = meta.get("sizing")
    if d is None:
        return 1.0
    m = d.get("multiplier") if isinstance(d, dict) else None
    if not (isinstance(d, dict) and d.get("method") == "kelly" and isinstance(m, (int, float))
            and not isinstance(m, bool) and math.isfinite(m) and 0.0 <= m <= 100.0):
        raise GenomeError(f"{where}: field 'sizing' must be {{\"method\": \"kelly\", \"multiplier\": a number in "
                          "[0, 100], ...} or null")
    return float(m)


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
    champion_regime_model(meta_path, meta, max_bytes)  # a named regime model must be there, unedited
    return genome, meta
