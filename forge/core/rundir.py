"""The run-directory contract: file names, versioned records, and the paired writers and readers.

``forge evolve`` writes a run directory only through the ``write_*`` / ``append_*`` functions here; the
gauntlet, ``gauntlet show`` and any other reader should go through ``read_*`` / ``iter_*`` (as freqtrade
pairs ``bt_storage`` with ``btanalysis``).  Renaming a field then happens in one place.

Files (``RunFiles``): ``manifest.json`` (:class:`Manifest`), ``hall_of_fame.json`` (:class:`HallOfFame`),
``champion.json`` (a genome), ``evaluated.jsonl`` (one :class:`EvaluatedRecord` per full evaluation),
``generations.jsonl`` (one logbook row per generation), ``checkpoint.json`` (:class:`Checkpoint`),
``surrogate.npz``, ``run_config.json``, ``causal.json``, ``feature_library.json``; the gauntlet adds
``gauntlet_report.json``.  Every JSON record carries ``schema_version`` (:data:`SCHEMA_VERSION`); files
written before versioning read as version 1.  Readers raise ``RunDirError`` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.artifacts import atomic_write_json, atomic_write_text
from forge.core.errors import RunDirError
from forge.gp.genome import Genome

SCHEMA_VERSION = 1
"""Version of the run-directory records written by this code."""


@dataclass(frozen=True)
class RunFiles:
    """File names inside a run directory."""

    manifest: str = "manifest.json"
    hall_of_fame: str = "hall_of_fame.json"
    champion: str = "champion.json"
    evaluated: str = "evaluated.jsonl"
    generations: str = "generations.jsonl"
    checkpoint: str = "checkpoint.json"
    surrogate_data: str = "surrogate.npz"
    run_config: str = "run_config.json"
    causal: str = "causal.json"
    feature_library: str = "feature_library.json"
    regime_model: str = "regime_model.json"
    gauntlet_report: str = "gauntlet_report.json"


FILES = RunFiles()


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunDirError(f"{path}: missing (is this a forge evolve run directory?)")
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version", 1)
    if version != SCHEMA_VERSION:
        raise RunDirError(f"{path}: schema_version {version!r}, this code reads {SCHEMA_VERSION}")
    return obj


def _build(cls: type, d: dict[str, Any], path: Path) -> Any:
    """``cls(**d)`` from the known fields of ``d``; RunDirError naming the first missing required field."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            kwargs[f.name] = d[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RunDirError(f"{path}: missing field {f.name!r}")
    return cls(**kwargs)


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what was run, on which data, with which split and versions.

    config: {table: {key: value}} of the run config; data: {"coverage", "n_bars", "symbol"}; split:
    ``forge.data.split.Split.to_dict()``; symbols: per-symbol coverage/n_bars/split when several symbols were
    evolved together (else None); causal_filter: the PCMCI report or None; coevolution: {"mode",
    "predator_hall_of_fame", "history"} or None; seconds: wall time of the run; files: role -> file name;
    costs: the fee preset that applied (``forge.core.runconfig.resolve_costs``; None in older manifests);
    universe: a panel run's instruments ({"trade": tag, "instruments": {tag: {"symbol", "market", "coverage",
    "on_clock"}}, "specs", "naming", "funding": {"interval_h", "source", "feature"}}; None for a single-symbol
    run and in older manifests) -- the Gauntlet and ``forge backtest`` rebuild the same panel from it;
    ``universe["l2"]``: the L2 recording joined as terminals (``forge.features.l2terminals.attach_l2``'s record,
    with the digest a rebuild must match), also in a single-symbol run's record.
    """

    run_id: str
    created_utc: str
    seed: int
    config: dict[str, Any]
    config_source: str
    data: dict[str, Any]
    symbols: dict[str, Any] | None
    symbol_aggregate: str | None
    split: dict[str, Any]
    features: list[str]
    causal_filter: dict[str, Any] | None
    coevolution: dict[str, Any] | None
    pset_version: str
    candidates_evaluated: int
    generations_run: int
    resumed: bool
    seconds: float
    packages: dict[str, str]
    platform: dict[str, Any]
    files: dict[str, str | None]
    schema_version: int = SCHEMA_VERSION
    costs: dict[str, Any] | None = None
    universe: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def write_manifest(run_dir: Path, manifest: Manifest) -> Path:
    return atomic_write_json(Path(run_dir) / FILES.manifest, manifest.to_dict())


def read_manifest(run_dir: str | Path) -> Manifest:
    """raises RunDirError for a missing/corrupt file or a missing field."""
    path = Path(run_dir) / FILES.manifest
    return _build(Manifest, _read_json(path), path)


# --------------------------------------------------------------------------- hall of fame


@dataclass(frozen=True)
class HallOfFameMember:
    """One hall-of-fame member: rank 0 is the best; fitness: in-sample run fitness; genome: the genome dict
    (its ``meta`` repeats rank, fitness and metrics); in_sample / out_of_sample /
    out_of_sample_buy_and_hold: ``Metrics.to_dict()`` (the first symbol's); ``*_per_symbol``: symbol ->
    metrics when several symbols were evolved together."""

    rank: int
    fitness: float
    expression: str
    size: int
    genome: dict[str, Any]
    in_sample: dict[str, Any]
    out_of_sample: dict[str, Any]
    out_of_sample_buy_and_hold: dict[str, Any]
    out_of_sample_per_symbol: dict[str, Any] | None = None
    out_of_sample_buy_and_hold_per_symbol: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("out_of_sample_per_symbol", "out_of_sample_buy_and_hold_per_symbol"):
            if d[k] is None:
                del d[k]
        return d

    def to_genome(self) -> Genome:
        return Genome.from_dict(self.genome)


@dataclass(frozen=True)
class HallOfFame:
    """``hall_of_fame.json``: the run's best distinct strategies, best first."""

    run_id: str
    members: tuple[HallOfFameMember, ...]
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "members": [m.to_dict() for m in self.members],
                "schema_version": self.schema_version}


def write_hall_of_fame(run_dir: Path, hof: HallOfFame) -> Path:
    return atomic_write_json(Path(run_dir) / FILES.hall_of_fame, hof.to_dict())


def read_hall_of_fame(run_dir: str | Path) -> HallOfFame:
    """raises RunDirError for a missing/corrupt file, no members, or a member missing a field."""
    path = Path(run_dir) / FILES.hall_of_fame
    d = _read_json(path)
    members = d.get("members")
    if not isinstance(members, list) or not members:
        raise RunDirError(f"{path}: no members")
    return HallOfFame(run_id=str(d.get("run_id", "")),
                      members=tuple(_build(HallOfFameMember, m, path) for m in members))


def write_champion(run_dir: Path, genome: Genome) -> Path:
    return atomic_write_text(Path(run_dir) / FILES.champion, genome.to_json())


# --------------------------------------------------------------------------- evaluated genomes, generations


@dataclass(frozen=True)
class EvaluatedRecord:
    """One full evaluation (a line of ``evaluated.jsonl``): genome, fitness, in-sample metrics."""

    sha256: str
    genome: Genome
    fitness: float
    in_sample: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"sha256": self.sha256, "genome": self.genome.to_dict(), "fitness": self.fitness,
                           "in_sample": self.in_sample})


def append_evaluated(run_dir: Path, records: list[EvaluatedRecord]) -> None:
    with (Path(run_dir) / FILES.evaluated).open("a") as fh:
        for r in records:
            fh.write(r.to_json() + "\n")


def iter_evaluated(run_dir: str | Path) -> Iterator[EvaluatedRecord]:
    """Every evaluated genome of a run, in evaluation order (the gauntlet's trials).
    raises RunDirError naming the line of a corrupt row."""
    path = Path(run_dir) / FILES.evaluated
    if not path.is_file():
        raise RunDirError(f"{path}: missing (is this a forge evolve run directory?)")
    with path.open() as fh:
        for i, line in enumerate(fh, 1):
            try:
                e = json.loads(line)
                yield EvaluatedRecord(e["sha256"], Genome.from_dict(e["genome"]), e["fitness"], e["in_sample"])
            except (ValueError, KeyError, TypeError) as exc:
                raise RunDirError(f"{path}:{i}: corrupt row ({exc})") from None


def append_generation(run_dir: Path, row: dict[str, Any]) -> None:
    with (Path(run_dir) / FILES.generations).open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def read_generations(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / FILES.generations
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def start_logs(run_dir: Path) -> None:
    """Empty ``generations.jsonl`` and ``evaluated.jsonl`` (a fresh run)."""
    for name in (FILES.generations, FILES.evaluated):
        (Path(run_dir) / name).write_text("")


def truncate_logs(run_dir: Path, generations: int, evaluated: int) -> None:
    """Keep the first lines of the JSONL logs that a checkpoint accounts for (resume after a kill)."""
    for name, n in ((FILES.generations, generations), (FILES.evaluated, evaluated)):
        path = Path(run_dir) / name
        lines = path.read_text().splitlines(keepends=True)[:n] if path.is_file() else []
        atomic_write_text(path, "".join(lines))


# --------------------------------------------------------------------------- checkpoint, config, side files


@dataclass(frozen=True)
class Checkpoint:
    """``checkpoint.json``: everything a resumed run needs after generation ``gen``.

    population / hall_of_fame: [{"genome", "fitness", "metrics"}]; random_state: Python ``random`` state as
    JSON lists; numpy_state: ``bit_generator.state`` of the run's numpy Generator; n_evaluated /
    evaluated_lines: full evaluations and lines of ``evaluated.jsonl`` so far; surrogate_rows: rows of
    ``surrogate.npz`` the surrogate had seen; coevolution: the predators' state or None.
    """

    gen: int
    population: list[dict[str, Any]]
    hall_of_fame: list[dict[str, Any]]
    random_state: list[Any]
    numpy_state: dict[str, Any]
    n_evaluated: int
    evaluated_lines: int
    surrogate_rows: int
    coevolution: dict[str, Any] | None
    schema_version: int = SCHEMA_VERSION


def write_checkpoint(run_dir: Path, ck: Checkpoint) -> Path:
    return atomic_write_json(Path(run_dir) / FILES.checkpoint, dataclasses.asdict(ck))


def read_checkpoint(run_dir: str | Path) -> Checkpoint:
    path = Path(run_dir) / FILES.checkpoint
    return _build(Checkpoint, _read_json(path), path)


def write_run_config(run_dir: Path, config: dict[str, Any], source: str) -> Path:
    return atomic_write_json(Path(run_dir) / FILES.run_config, {"config": config, "source": source})


def read_run_config(run_dir: str | Path) -> tuple[dict[str, Any], str]:
    """(config dict, its source) saved at the start of a run.  raises RunDirError if absent."""
    path = Path(run_dir) / FILES.run_config
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {FILES.run_config})")
    d = _read_json(path)
    return d["config"], d.get("source", str(path))


def write_surrogate_data(run_dir: Path, X: np.ndarray, y: np.ndarray) -> None:
    """Atomic ``np.savez`` (no pickle) of the surrogate's training rows."""
    path = Path(run_dir) / FILES.surrogate_data
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, X=X, y=y)
    os.replace(tmp, path)


def read_surrogate_data(run_dir: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(Path(run_dir) / FILES.surrogate_data, allow_pickle=False)
    return data["X"][:rows], data["y"][:rows]


def write_json_file(run_dir: Path, name: str, obj: dict[str, Any]) -> Path:
    """Atomically write a side file (``FILES.causal``, ``FILES.feature_library``) of the run."""
    return atomic_write_json(Path(run_dir) / name, obj)


__all__ = [
    "Checkpoint", "EvaluatedRecord", "FILES", "HallOfFame", "HallOfFameMember", "Manifest", "RunFiles",
    "SCHEMA_VERSION", "append_evaluated", "append_generation", "iter_evaluated", "read_checkpoint",
    "read_generations", "read_hall_of_fame", "read_manifest", "read_run_config", "read_surrogate_data",
    "start_logs", "truncate_logs", "write_champion", "write_checkpoint", "write_hall_of_fame",
    "write_json_file", "write_manifest", "write_run_config", "write_surrogate_data",
]
