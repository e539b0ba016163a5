"""Feature libraries: synthesized feature trees over raw per-bar inputs, their JSON file, and their values
on any bar frame (the terminals ``forge evolve --features LIB.json`` adds; the gauntlet and the Crucible
recompute them from the run's copy).  Searching for the features is ``forge.synthesize``.

The library JSON (schema ``forge-feature-library/1``)::

    {"schema": "forge-feature-library/1",
     "raw_inputs": ["r_close", ...],
     "features": [{"name": "syn_0", "genome": {...}, "mi_in_sample": 0.012,
                   "mi_out_of_sample": 0.010, "mi_out_of_sample_null": 0.002,
                   "p_value_out_of_sample": 0.05, "redundancy": 0.0,
                   "fitness": 0.011, "lookback": 21, "expression": "..."}],
     "meta": {...}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.core.artifacts import atomic_write_json
from forge.core.errors import ConfigError, DataError, GenomeError
from forge.data.gaps import bars_since_gap
from forge.gp import BufferPool, Genome, compile_program, run_program

__all__ = ["LIBRARY_SCHEMA", "RAW_INPUTS", "RAW_LOOKBACKS", "FeatureLibrary", "LibraryFeature", "RawInputs",
           "evaluate_feature", "float_column", "library_features", "load_feature_library", "raw_inputs", "write_feature_library"]


LIBRARY_SCHEMA = "forge-feature-library/1"
"""Value of the ``schema`` field of a feature library JSON."""

RAW_INPUTS: tuple[str, ...] = ("r_close", "r_high", "r_low", "r_open", "log_volume", "taker_ratio", "log_count")
"""Raw per-bar inputs (terminals of feature trees), all dimensionless and stationary:

- ``r_close``: log(close[t] / close[t-1]), the 1-bar log return;
- ``r_high``: log(high[t] / close[t]) >= 0 for consistent bars;
- ``r_low``: log(low[t] / close[t]) <= 0 for consistent bars;
- ``r_open``: log(open[t] / close[t-1]), the open-to-previous-close gap;
- ``log_volume``: log(1 + volume[t]), volume in base units;
- ``taker_ratio``: taker_buy_volume[t] / volume[t] in [0, 1] (NaN if volume is 0);
- ``log_count``: log(1 + count[t]), count = number of trades.
"""

RAW_LOOKBACKS: dict[str, int] = {"r_close": 1, "r_high": 0, "r_low": 0, "r_open": 1,
                                 "log_volume": 0, "taker_ratio": 0, "log_count": 0}
"""Bars of history before the current bar each raw input reads."""

_RAW_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "count", "taker_buy_volume")

# --------------------------------------------------------------------------- raw inputs


@dataclass(frozen=True)
class RawInputs:
    """Raw per-bar inputs of feature trees.

    names: ``RAW_INPUTS``; values: (k, n) float64, row i is ``names[i]``,
    NaN where undefined (first bar, first bar after a gap for inputs that
    read the previous bar, zero volume); bars_since_gap: (n,) int64 from
    ``forge.data.gaps.bars_since_gap``; open_time: (n,) int64 ms UTC.
    """

    names: tuple[str, ...]
    values: np.ndarray
    bars_since_gap: np.ndarray
    open_time: np.ndarray


def float_column(bars: pl.DataFrame, name: str) -> np.ndarray:
    """(n,) float64 copy-free view of a bar-frame column cast to float64."""
    return bars.get_column(name).cast(pl.Float64).to_numpy().astype(np.float64, copy=False)


def raw_inputs(bars: pl.DataFrame) -> RawInputs:
    """Compute ``RAW_INPUTS`` from a bar frame (see ``forge.data.schema``).

    bars: polars DataFrame with at least open_time (int64 ms, strictly
    increasing), open/high/low/close (> 0, quote per base), volume,
    taker_buy_volume (>= 0, base units) and count (>= 0).  Inputs that read
    the previous bar are NaN at the first bar and at the first bar after
    every gap (``forge.data.gaps``), so nothing bridges a gap.
    returns: RawInputs with values (7, n) float64.
    raises DataError naming the column and row of the first bad value.
    """
    missing = [c for c in _RAW_COLUMNS if c not in bars.columns]
    if missing:
        raise DataError(f"bar frame lacks column(s) {missing} needed for feature synthesis")
    n = bars.height
    if n < 2:
        raise DataError(f"need at least 2 bars to compute raw inputs, got {n}")
    t = bars.get_column("open_time").cast(pl.Int64).to_numpy()
    bad_t = np.flatnonzero(np.diff(t) <= 0)
    if bad_t.size:
        raise DataError(f"open_time must be strictly increasing; row {int(bad_t[0]) + 1} is not after the one before",
                        line=int(bad_t[0]) + 1)
    cols = {c: float_column(bars, c) for c in _RAW_COLUMNS[1:]}
    for c in ("open", "high", "low", "close"):
        bad = np.flatnonzero(~(np.isfinite(cols[c]) & (cols[c] > 0)))
        if bad.size:
            raise DataError(f"column {c!r} must be finite and > 0; row {int(bad[0])} has {cols[c][bad[0]]!r}",
                            line=int(bad[0]))
    for c in ("volume", "count", "taker_buy_volume"):
        bad = np.flatnonzero(~(np.isfinite(cols[c]) & (cols[c] >= 0)))
        if bad.size:
            raise DataError(f"column {c!r} must be finite and >= 0; row {int(bad[0])} has {cols[c][bad[0]]!r}",
                            line=int(bad[0]))
    bsg = bars_since_gap(t)
    close, vol = cols["close"], cols["volume"]
    prev_close = np.empty(n)
    prev_close[0] = np.nan
    prev_close[1:] = close[:-1]
    prev_close[bsg == 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.vstack([
            np.log(close / prev_close),
            np.log(cols["high"] / close),
            np.log(cols["low"] / close),
            np.log(cols["open"] / prev_close),
            np.log1p(vol),
            np.where(vol > 0, cols["taker_buy_volume"] / np.where(vol > 0, vol, 1.0), np.nan),
            np.log1p(cols["count"]),
        ])
    return RawInputs(names=RAW_INPUTS, values=np.ascontiguousarray(values), bars_since_gap=bsg, open_time=t)


@dataclass(frozen=True)
class LibraryFeature:
    """One synthesized feature.

    name: terminal name (identifier, e.g. ``syn_0``); genome: feature tree
    (root "F") over ``RAW_INPUTS``; mi_in_sample / mi_out_of_sample:
    k-NN mutual information with the forward return, nats (NaN if unknown);
    redundancy: max |Spearman| with the features accepted before it;
    fitness: in-sample fitness when accepted; lookback: bars of history
    before the current bar, raw inputs' own warm-up included;
    mi_out_of_sample_null: mean out-of-sample MI against permuted targets
    (the estimator's level under independence, nats); p_value_out_of_sample:
    permutation p-value of mi_out_of_sample (NaN if not computed).
    """

    name: str
    genome: Genome
    mi_in_sample: float
    mi_out_of_sample: float
    lookback: int
    redundancy: float = 0.0
    fitness: float = float("nan")
    mi_out_of_sample_null: float = float("nan")
    p_value_out_of_sample: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "genome": self.genome.to_dict(), "mi_in_sample": self.mi_in_sample,
                "mi_out_of_sample": self.mi_out_of_sample, "mi_out_of_sample_null": self.mi_out_of_sample_null,
                "p_value_out_of_sample": self.p_value_out_of_sample, "redundancy": self.redundancy,
                "fitness": self.fitness, "lookback": self.lookback, "expression": self.genome.expression()}


@dataclass(frozen=True)
class FeatureLibrary:
    """A feature library: raw input names, accepted features in acceptance
    order, and free-form meta (config, split, estimator, evaluations)."""

    raw_inputs: tuple[str, ...]
    features: tuple[LibraryFeature, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (see module docstring)."""
        return {"schema": LIBRARY_SCHEMA, "raw_inputs": list(self.raw_inputs),
                "features": [f.to_dict() for f in self.features], "meta": self.meta}


def write_feature_library(library: FeatureLibrary, path: str | Path) -> Path:
    """Atomically write ``library`` as JSON to ``path`` (NaN -> null). returns the Path."""
    return atomic_write_json(path, library.to_dict())


def _float_field(d: Mapping[str, Any], key: str, where: str) -> float:
    v = d.get(key)
    if v is None:
        return float("nan")
    if isinstance(v, str) and v in ("inf", "-inf"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: {key!r} must be a number or null, got {v!r}")
    return float(v)


def load_feature_library(path: str | Path) -> FeatureLibrary:
    """Read and validate a feature library JSON.

    Checks the schema string, that raw inputs are known (``RAW_INPUTS``),
    names are distinct identifiers, every genome loads (checksum, types),
    has a float-series root, reads only the listed raw inputs and has the
    recorded lookback.  raises ConfigError (unreadable file, invalid JSON
    with line/column, wrong schema or structure) or GenomeError (a bad
    genome); every message names the file and the feature.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read feature library ({exc.strerror})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a JSON object, got {type(d).__name__}")
    if d.get("schema") != LIBRARY_SCHEMA:
        raise ConfigError(f"{p}: schema {d.get('schema')!r} unsupported (expected {LIBRARY_SCHEMA!r})")
    raw = d.get("raw_inputs")
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise ConfigError(f"{p}: 'raw_inputs' must be a list of names")
    unknown = [r for r in raw if r not in RAW_INPUTS]
    if unknown:
        raise ConfigError(f"{p}: unknown raw input(s) {unknown} (this build computes {list(RAW_INPUTS)})")
    feats = d.get("features")
    if not isinstance(feats, list):
        raise ConfigError(f"{p}: 'features' must be a list")
    out: list[LibraryFeature] = []
    seen: set[str] = set()
    for i, fd in enumerate(feats):
        where = f"{p}: features[{i}]"
        if not isinstance(fd, dict):
            raise ConfigError(f"{where}: expected an object, got {type(fd).__name__}")
        name = fd.get("name")
        if not isinstance(name, str) or not name.isidentifier() or name in seen or name in RAW_INPUTS:
            raise ConfigError(f"{where}: 'name' must be a distinct identifier not naming a raw input, got {name!r}")
        seen.add(name)
        where = f"{where} ({name})"
        if "genome" not in fd:
            raise ConfigError(f"{where}: missing 'genome'")
        genome = Genome.from_dict(fd["genome"], source=where)
        if genome.root != "F":
            raise GenomeError(f"{where}: a library feature needs a float-series root 'F', got {genome.root!r}")
        extra = [f for f in genome.features if f not in raw]
        if extra:
            raise GenomeError(f"{where}: genome reads {extra}, not among the library's raw inputs {raw}")
        lookback = compile_program(genome, RAW_INPUTS, RAW_LOOKBACKS).lookback
        if fd.get("lookback") != lookback:
            raise GenomeError(f"{where}: lookback {fd.get('lookback')!r} does not match the genome ({lookback})")
        out.append(LibraryFeature(
            name=name, genome=genome, lookback=lookback,
            mi_in_sample=_float_field(fd, "mi_in_sample", where),
            mi_out_of_sample=_float_field(fd, "mi_out_of_sample", where),
            redundancy=_float_field(fd, "redundancy", where) if "redundancy" in fd else 0.0,
            fitness=_float_field(fd, "fitness", where),
            mi_out_of_sample_null=_float_field(fd, "mi_out_of_sample_null", where),
            p_value_out_of_sample=_float_field(fd, "p_value_out_of_sample", where),
        ))
    meta = d.get("meta") or {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{p}: 'meta' must be an object")
    return FeatureLibrary(raw_inputs=tuple(raw), features=tuple(out), meta=meta)


# --------------------------------------------------------------------------- evaluation


def evaluate_feature(genome: Genome, raw: RawInputs, pool: BufferPool | None = None) -> tuple[np.ndarray, int]:
    """Values of a feature tree on every bar.

    genome: root "F" over ``RAW_INPUTS``; raw: from ``raw_inputs``.
    returns: ((n,) float64 values, lookback in bars); NaN where the tree is
    undefined, where the value is non-finite, and where its inputs would
    reach across a gap or before the data (bars_since_gap < lookback).
    raises GenomeError if the genome is not a feature tree or reads an
    unknown input.
    """
    if genome.root != "F":
        raise GenomeError(f"genome {genome.sha256[:12]} has root {genome.root!r}; a feature tree needs root 'F'")
    prog = compile_program(genome, raw.names, RAW_LOOKBACKS)
    x = run_program(prog, raw.values, pool)
    x[~np.isfinite(x)] = np.nan
    x[raw.bars_since_gap < prog.lookback] = np.nan
    return x, prog.lookback


def library_features(library: FeatureLibrary, bars: pl.DataFrame,
                     pool: BufferPool | None = None) -> tuple[tuple[str, ...], np.ndarray, tuple[int, ...]]:
    """Evaluate every library feature on a bar frame with the VM.

    returns: (names, values (k, n) float64 with row i = names[i] and NaN
    during warm-up after the data start and every gap, lookbacks: bars of
    history each feature reads, raw inputs' warm-up included — pass them as
    ``feature_lookbacks`` to ``compile_program``).
    raises DataError for a bad bar frame, GenomeError for a bad genome.
    """
    raw = raw_inputs(bars)
    pool = pool or BufferPool()
    values = np.full((len(library.features), bars.height), np.nan)
    lookbacks: list[int] = []
    for i, f in enumerate(library.features):
        values[i], lb = evaluate_feature(f.genome, raw, pool)
        lookbacks.append(lb)
    return library.names, values, tuple(lookbacks)
