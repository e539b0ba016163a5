"""Publish survivors to ``artifacts/champions/`` atomically, with sha256 and optional HMAC.

The file format, its signature and the safe reader live in :mod:`forge.core.champion` (the Crucible reads
champions without importing the Gauntlet); this module writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forge.core.artifacts import atomic_write_text
from forge.core.errors import GenomeError
from forge.core.champion import SCHEMA, _key, _plain, champion_signature, champion_sizing, champion_stem
from forge.gp import Genome

__all__ = ["publish_champion"]


def publish_champion(genome: Genome, out_dir: str | Path, *, run_id: str, symbol: str | None,
                     features: list[str], verdict: dict[str, Any], library: Path | None = None,
                     key: str | bytes | None = None, report_sha256: str | None = None,
                     lineage: dict[str, Any] | None = None, edge_kind: str | None = None,
                     selected_on: list[dict[str, Any]] | None = None, policy: Any = None,
                     regime_model: Path | None = None, sizing: dict[str, Any] | None = None) -> Path:
    """Write genome + meta atomically; returns the meta path.  Signed (HMAC over genome and meta) when a key
    is given or in FORGE_SIGNING_KEY.

    verdict: the gauntlet's verdict of this genome (per-stage dicts; a ``"survived"`` key, when present,
    must be True); report_sha256: sha256 hex of the gauntlet report it came from (or None); lineage: where
    the champion came from (e.g. ``{"source": "forge serve", "slot": "btc1", "request": <request id>,
    "parent_genome_sha256": <seed genome>}``; string values; a ``"slot"`` makes it a replacement for that
    slot), signed with the rest of the meta; edge_kind: the gauntlet's label ("directional" or "risk timing",
    ``gauntlet.stages.edge_kind``), signed too; selected_on: the bars that selected this genome
    (``forge.core.provenance``: the run's in-sample bars, the gauntlet's evaluation bars and the bars its seeds
    were selected on; ``forge.data.ranges.DataRange`` dicts), signed, so a run seeded with this champion can
    prove its out-of-sample range is unseen.  regime_model: the run's frozen ``regime_model.json``
    (``forge.features.regimes``), copied beside the champion as ``<stem>.regime_model.json`` with its sha256 in the
    signed meta (``regime_model``, ``regime_model_sha256``): the Crucible filters the champion's regime terminals
    with exactly these parameters and refuses a missing or edited file (``forge.core.champion.verify_champion``).
    policy: the execution policy the champion trades with
    (``forge.execution.policy.ExecutionPolicy``; None or always-taker = the default: no ``policy`` field and the
    file names of every earlier release), signed into the meta with its sha256; the files are then named
    ``<genome[:16]>-<policy sha256[:16]>`` (:func:`forge.core.champion.champion_stem`), so one genome
    published with two policies keeps two champions; sizing: the fractional-Kelly record of
    ``forge.execution.sizing.kelly_sizing`` (None = unit sizing: no ``sizing`` field), signed.
    raises GenomeError when the verdict says the genome did not survive (only survivors are published) or the
    sizing record is malformed.
    """
    if isinstance(verdict, dict) and verdict.get("survived") is False:
        raise GenomeError(f"genome {genome.sha256[:16]}: the gauntlet verdict says it did not survive; not published")
    pol = policy if (policy is not None and not policy.is_always_taker) else None
    if sizing is not None:
        champion_sizing({"sizing": _plain(sizing)}, f"genome {genome.sha256[:16]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = champion_stem(genome.sha256, pol.sha256 if pol is not None else None)
    text = genome.to_json()
    atomic_write_text(out / f"{stem}.json", text)
    lib_name = None
    if library is not None:
        lib_name = f"{stem}.features.json"
        tmp = out / f".{lib_name}.tmp"
        shutil.copyfile(library, tmp)
        os.replace(tmp, out / lib_name)
    reg_name = reg_sha = None
    if regime_model is not None:
        reg_name = f"{stem}.regime_model.json"
        body = Path(regime_model).read_bytes()
        reg_sha = hashlib.sha256(body).hexdigest()
        tmp = out / f".{reg_name}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, out / reg_name)
    data = text.encode()
    meta = _plain({"schema": SCHEMA, "file": f"{stem}.json", "sha256": hashlib.sha256(data).hexdigest(),
                   "genome_sha256": genome.sha256, "run_id": run_id, "symbol": symbol, "features": features,
                   "feature_library": lib_name, "survived": True, "verdict": verdict,
                   "gauntlet_report_sha256": report_sha256, "published_utc": datetime.now(timezone.utc).isoformat(),
                   "lineage": dict(lineage) if lineage else None, "edge_kind": edge_kind,
                   "selected_on": list(selected_on) if selected_on else None,
                   **({"regime_model": reg_name, "regime_model_sha256": reg_sha} if reg_name else {}),
                   **({"policy": pol.to_dict()} if pol is not None else {}),
                   **({"sizing": dict(sizing)} if sizing is not None else {})})
    k = _key(key)
    meta["hmac_sha256"] = champion_signature(meta, data, k) if k else None
    return atomic_write_text(out / f"{stem}.meta.json", json.dumps(meta, indent=2) + "\n")
