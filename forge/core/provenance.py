"""Where a genome was selected: the bars whose outcomes chose it (a kernel contract between the Forge, the
Gauntlet and the Crucible).

A genome that seeds a run carries information from the bars it was selected on.  If those bars lie in the
new run's out-of-sample range, the run's validation judges the seed on bars that already chose it (issue
29 item 1: the closed loop seeded runs with genomes picked on live marks, the tail of the new window).
Every genome that enters a run therefore has a record of its selection bars, ``selected_on``: a list of
``forge.data.ranges.DataRange`` dicts.  Where it is read from (:func:`seed_provenance`):

1. a published champion (``<stem>.json`` with ``<stem>.meta.json`` beside it naming it): the meta's
   ``selected_on`` (the run's in-sample bars, the gauntlet's evaluation bars and its own seeds' bars),
   covered by the meta's HMAC signature (``forge.core.champion``);
2. a run directory's ``champion.json`` (``forge evolve`` output, ``manifest.json`` beside it): the run's
   in-sample bars, the only bars its hall of fame was selected on (unsigned: the run directory is the
   researcher's own);
3. otherwise the genome's own ``meta.selected_on`` (the Crucible writes it into a replacement request's seed:
   the live marks it was picked on, up to the request time);
4. otherwise *unknown*: the genome counts as selected on every bar before its file's modification time
   (the closest portable stand-in for its creation time: a file cannot encode bars after it was written).

``forge evolve`` refuses a seed whose known selection bars overlap the out-of-sample range, and one of
unknown provenance unless ``[evolve] allow_unknown_provenance`` (``--allow-unknown-provenance``), which the
manifest's config records and the gauntlet report repeats.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from forge.core.errors import ConfigError, GenomeError
from forge.data.ranges import DataRange

__all__ = ["PROVENANCE_FILE", "SeedProvenance", "read_selected_on", "seed_provenance", "selected_on_dicts"]

PROVENANCE_FILE = "seed_provenance.json"
"""Written into the run directory by ``forge evolve``: the provenance of every seed genome."""


@dataclass(frozen=True)
class SeedProvenance:
    """path: the seed file; sha256: its genome's; source: "champion meta" | "run manifest" | "genome meta" |
    "unknown";
    selected_on: the bars that selected it; signed: True when read from a champion meta whose HMAC was
    verified."""

    path: str
    sha256: str
    source: str
    selected_on: tuple[DataRange, ...]
    signed: bool = False

    @property
    def known(self) -> bool:
        return self.source != "unknown"

    def overlapping(self, out_of_sample: DataRange) -> list[DataRange]:
        return [r for r in self.selected_on if r.overlaps(out_of_sample)]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "source": self.source, "signed": self.signed,
                "selected_on": [r.to_dict() for r in self.selected_on]}


def selected_on_dicts(ranges: Sequence[DataRange]) -> list[dict[str, Any]]:
    """JSON form of selection ranges, merged and sorted (overlapping or touching ranges become one)."""
    out: list[list[int]] = []
    for r in sorted(ranges, key=lambda x: (x.first_open_ms, x.last_open_ms)):
        if out and r.first_open_ms <= out[-1][1] + 60_000:
            out[-1][1] = max(out[-1][1], r.last_open_ms)
            out[-1][2] += r.n_bars
        else:
            out.append([r.first_open_ms, r.last_open_ms, r.n_bars])
    return [DataRange(a, b, n).to_dict() for a, b, n in out]


def read_selected_on(value: Any, where: str) -> tuple[DataRange, ...]:
    """Parse a ``selected_on`` list.  raises ConfigError naming ``where`` when it is not a list of ranges."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: selected_on must be a non-empty list of data ranges, got {value!r}")
    return tuple(DataRange.from_dict(d, where) for d in value)


def seed_provenance(path: str | Path) -> SeedProvenance:
    """The selection record of the genome file at ``path`` (see the module docstring for the order).
    raises GenomeError for an unreadable genome or a champion meta that fails verification, ConfigError for a
    malformed ``selected_on``."""
    from forge.core.champion import _key, verify_champion
    from forge.gp import Genome

    p = Path(path)
    genome = Genome.load(p)
    meta_path = p.with_name(p.name[:-len(".json")] + ".meta.json") if p.name.endswith(".json") else None
    if meta_path is not None and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict) and meta.get("file") == p.name and "selected_on" in meta:
            _g, meta = verify_champion(meta_path)  # signature checked when FORGE_SIGNING_KEY is set
            return SeedProvenance(str(p), genome.sha256, "champion meta",
                                  read_selected_on(meta["selected_on"], str(meta_path)),
                                  signed=_key(None) is not None)
    manifest = p.with_name("manifest.json")
    if p.name == "champion.json" and manifest.is_file():
        try:
            ins = json.loads(manifest.read_text())["split"]["in_sample"]
            rng = DataRange(int(ins["first_open_ms"]), int(ins["last_open_ms"]), int(ins["rows"][1] - ins["rows"][0]))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            raise ConfigError(f"{manifest}: no readable in-sample range for the seed {p.name}") from None
        return SeedProvenance(str(p), genome.sha256, "run manifest", (rng,))
    if "selected_on" in (genome.meta or {}):
        return SeedProvenance(str(p), genome.sha256, "genome meta",
                              read_selected_on(genome.meta["selected_on"], f"{p}: meta"))
    try:
        mtime_ms = int(os.stat(p).st_mtime * 1000)
    except OSError as exc:
        raise GenomeError(f"{p}: cannot stat the seed genome ({exc.strerror})") from None
    return SeedProvenance(str(p), genome.sha256, "unknown", (DataRange(0, mtime_ms, 0),))
