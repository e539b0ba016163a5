"""``forge synthesize``: genetic programming of *feature* trees by mutual information.

A feature tree is a genome whose root is a float series (``Genome.root ==
"F"``) over the typed primitive set of ``forge.gp`` built on a handful of
stationary per-bar *raw inputs* derived from the bar frame (``RAW_INPUTS``).
It is evaluated by the same numba VM as strategies.

Fitness of a candidate feature x on the in-sample segment::

    MI(x_t ; y_t) - redundancy_weight * max_j |Spearman(x, f_j)| - size_penalty * nodes

where y_t = log(close[t+h] / close[t]) is the forward log return over
``horizon`` bars (never across a gap), MI is the Kraskov k-nearest-neighbour
estimate of scikit-learn's ``mutual_info_regression`` (nats; Kraskov,
Stögbauer & Grassberger 2004, Phys. Rev. E 69, 066138) on a fixed, seeded
subsample of in-sample rows (rows where x is NaN are dropped), and f_j are
the features accepted so far.  Each round evolves a (mu + lambda) population
for a few generations and accepts the best candidate whose MI is positive and
whose redundancy stays below ``max_redundancy``; ``n_features`` rounds give
the library.  Candidates that are monotone transforms of each other (same
ranks on the subsample, up to reversal) are one phenotype; only the fittest
of each survives, which keeps the population from filling with ``neg``/
``slog``/``mul_c`` copies of one feature.

The out-of-sample tail is touched only to *report* each accepted feature's
MI there; it never influences selection.  Because the k-NN estimator's
spread under independence depends on the feature's distribution (smooth,
slowly varying features spread more), each accepted feature also reports
the mean MI against ``null_permutations`` seeded permutations of the
out-of-sample target and the permutation p-value (1 + #{null >= observed})
/ (1 + permutations).

The result is a feature library JSON (schema ``forge-feature-library/1``)::

    {"schema": "forge-feature-library/1",
     "raw_inputs": ["r_close", ...],
     "features": [{"name": "syn_0", "genome": {...}, "mi_in_sample": 0.012,
                   "mi_out_of_sample": 0.010, "mi_out_of_sample_null": 0.002,
                   "p_value_out_of_sample": 0.05, "redundancy": 0.0,
                   "fitness": 0.011, "lookback": 21, "expression": "..."}],
     "meta": {...}}

``library_features`` evaluates every library feature on any bar frame, so
``forge evolve --features LIB.json`` can add them as terminals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from deap import gp
from scipy.stats import rankdata
from sklearn.feature_selection import mutual_info_regression

from forge.core import rng
from forge.core.artifacts import atomic_write_json
from forge.core.errors import ConfigError, DataError, GenomeError
from forge.data.gaps import bars_since_gap, forward_returns
from forge.gp import BufferPool, Genome, build_pset, compile_program, genome_from_individual, run_program
from forge.gp.pset import Operators, generate
from forge.gp.primitives import FSeries

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

ProgressFn = Callable[[dict[str, Any]], None]


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


def _column(bars: pl.DataFrame, name: str) -> np.ndarray:
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
    cols = {c: _column(bars, c) for c in _RAW_COLUMNS[1:]}
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


# --------------------------------------------------------------------------- config and library


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of ``synthesize``.

    seed: root of every random stream; population: trees per generation
    (mu = lambda); generations: generations per accepted feature;
    n_features: features to accept (fewer if no candidate qualifies);
    horizon: forward-return horizon in bars; max_depth / max_size: caps on
    tree height and node count; sample_rows: rows of the fixed seeded
    subsample the MI is estimated on (per segment); redundancy_weight: MI
    (nats) subtracted per unit of max |Spearman| with accepted features;
    max_redundancy: a candidate at or above this max |Spearman| is never
    accepted; size_penalty: nats subtracted per tree node;
    in_sample_fraction: head of the bars used for fitness (the tail is
    out-of-sample, reporting only); n_neighbors: k of the k-NN MI
    estimator; tournament_size, crossover_probability (else mutation):
    variation; min_valid_fraction: share of sampled rows a candidate must
    have finite values on; null_permutations: permutations of the
    out-of-sample target for the null MI and p-value of accepted features.
    """

    seed: int = 0
    population: int = 60
    generations: int = 8
    n_features: int = 5
    horizon: int = 1
    max_depth: int = 5
    max_size: int = 20
    sample_rows: int = 5000
    redundancy_weight: float = 0.1
    max_redundancy: float = 0.8
    size_penalty: float = 1e-4
    in_sample_fraction: float = 0.7
    n_neighbors: int = 3
    tournament_size: int = 3
    crossover_probability: float = 0.6
    min_valid_fraction: float = 0.5
    null_permutations: int = 19

    def validate(self) -> SynthesisConfig:
        """returns self; raises ConfigError naming the first invalid field."""
        checks = [
            ("seed", self.seed >= 0, ">= 0"),
            ("population", self.population >= 4, ">= 4"),
            ("generations", self.generations >= 0, ">= 0"),
            ("n_features", self.n_features >= 1, ">= 1"),
            ("horizon", self.horizon >= 1, ">= 1"),
            ("max_depth", 1 <= self.max_depth <= 17, "in [1, 17]"),
            ("max_size", self.max_size >= 3, ">= 3"),
            ("sample_rows", self.sample_rows >= 100, ">= 100"),
            ("redundancy_weight", self.redundancy_weight >= 0, ">= 0"),
            ("max_redundancy", 0 < self.max_redundancy <= 1, "in (0, 1]"),
            ("size_penalty", self.size_penalty >= 0, ">= 0"),
            ("in_sample_fraction", 0 < self.in_sample_fraction < 1, "in (0, 1)"),
            ("n_neighbors", self.n_neighbors >= 1, ">= 1"),
            ("tournament_size", self.tournament_size >= 1, ">= 1"),
            ("crossover_probability", 0 <= self.crossover_probability <= 1, "in [0, 1]"),
            ("min_valid_fraction", 0 < self.min_valid_fraction <= 1, "in (0, 1]"),
            ("null_permutations", self.null_permutations >= 0, ">= 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"synthesis.{name} must be {expected}, got {getattr(self, name)!r}")
        return self


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


def mutual_information(x: np.ndarray, y: np.ndarray, n_neighbors: int = 3, seed: int = 0) -> float:
    """Kraskov k-NN mutual information between two series, in nats.

    x, y: (m,) float64 (rows where either is NaN are dropped).  Uses
    scikit-learn's ``mutual_info_regression`` (both scaled to unit
    variance, ties broken by seeded 1e-10 noise); clipped at 0.
    returns 0.0 if fewer than ``n_neighbors + 2`` rows remain or x is constant.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < n_neighbors + 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    mi = mutual_info_regression(x[:, None], y, discrete_features=False, n_neighbors=n_neighbors,
                                random_state=seed % (2**32))
    return float(max(mi[0], 0.0))


def _spearman_max(x: np.ndarray, accepted: Sequence[np.ndarray]) -> float:
    """Max |Spearman| of x with each accepted series over rows where both are finite (0 if < 10 rows)."""
    best = 0.0
    fx = np.isfinite(x)
    for a in accepted:
        m = fx & np.isfinite(a)
        if m.sum() < 10:
            continue
        rx, ra = rankdata(x[m]), rankdata(a[m])
        sx, sa = rx.std(), ra.std()
        if sx == 0 or sa == 0:
            continue
        rho = float(np.mean((rx - rx.mean()) * (ra - ra.mean())) / (sx * sa))
        best = max(best, abs(rho))
    return best


def _phenotype_key(xs: np.ndarray) -> str:
    """Key equal for two sampled series iff one is a monotone (increasing or
    decreasing) transform of the other with the same NaN rows: such features
    are interchangeable for MI and Spearman, so only one is kept per niche."""
    fin = np.isfinite(xs)
    r = rankdata(xs[fin], method="dense").astype(np.int64)
    top = int(r.max()) + 1 if r.size else 1
    up = hashlib.sha1(fin.tobytes() + r.tobytes()).hexdigest()
    down = hashlib.sha1(fin.tobytes() + (top - r).tobytes()).hexdigest()
    return min(up, down)


@dataclass
class _Candidate:
    tree: gp.PrimitiveTree
    genome: Genome
    mi: float
    redundancy: float
    fitness: float
    valid: bool
    phenotype: str


class _Scorer:
    """Fitness of feature trees on the fixed in-sample subsample.

    MI, validity and phenotype are cached by genome for the whole run; the
    sampled values (for the Spearman redundancy) only for the current
    round, to bound memory (``new_round``).
    """

    def __init__(self, raw: RawInputs, y: np.ndarray, rows: np.ndarray, cfg: SynthesisConfig, mi_seed: int):
        self.raw, self.rows, self.cfg, self.mi_seed = raw, rows, cfg, mi_seed
        self.y = y[rows]
        self.pool = BufferPool()
        self.accepted: list[np.ndarray] = []
        self._scores: dict[str, tuple[float, bool, str]] = {}
        self._values: dict[str, np.ndarray] = {}
        self.evaluations = 0

    def new_round(self) -> None:
        self._values.clear()

    def sample(self, genome: Genome) -> tuple[float, bool, np.ndarray, str]:
        """(MI in nats, valid, (m,) float64 sampled values, phenotype key) of a feature tree."""
        xs = self._values.get(genome.sha256)
        if xs is None:
            x, _ = evaluate_feature(genome, self.raw, self.pool)
            xs = self._values[genome.sha256] = x[self.rows]
        hit = self._scores.get(genome.sha256)
        if hit is None:
            fin = np.isfinite(xs)
            valid = bool(fin.mean() >= self.cfg.min_valid_fraction and np.ptp(xs[fin]) > 0) if fin.any() else False
            mi = mutual_information(xs, self.y, self.cfg.n_neighbors, self.mi_seed) if valid else 0.0
            self.evaluations += 1
            hit = self._scores[genome.sha256] = (mi, valid, _phenotype_key(xs) if valid else genome.sha256)
        return hit[0], hit[1], xs, hit[2]

    def score(self, tree: gp.PrimitiveTree, genome: Genome) -> _Candidate:
        mi, valid, xs, key = self.sample(genome)
        if not valid:
            return _Candidate(tree, genome, mi, 0.0, -math.inf, False, key)
        red = _spearman_max(xs, self.accepted)
        fit = mi - self.cfg.redundancy_weight * red - self.cfg.size_penalty * len(genome.tokens)
        return _Candidate(tree, genome, mi, red, fit, True, key)


def _sample_rows(y: np.ndarray, start: int, stop: int, k: int, gen: np.random.Generator) -> np.ndarray:
    """Sorted indices of up to k rows in [start, stop) where y is finite, drawn without replacement."""
    idx = start + np.flatnonzero(np.isfinite(y[start:stop]))
    if idx.size > k:
        idx = np.sort(gen.choice(idx, size=k, replace=False))
    return idx


def _tournament(pop: list[_Candidate], k: int) -> _Candidate:
    return max((random.choice(pop) for _ in range(k)), key=lambda c: c.fitness)


# --------------------------------------------------------------------------- synthesis


def synthesize(bars: pl.DataFrame, cfg: SynthesisConfig | None = None,
               progress: ProgressFn | None = None) -> FeatureLibrary:
    """Evolve a library of features with high mutual information with the forward return.

    bars: bar frame (``forge.data.schema``), oldest first; the head
    ``in_sample_fraction`` is used for fitness, the tail only to report
    ``mi_out_of_sample``.  cfg: SynthesisConfig (defaults if None).
    progress: called with dicts ``{"event": "generation", "round",
    "generation", "best_fitness", "best_mi", "evaluations"}``,
    ``{"event": "accepted", "round", "name", "expression", "mi_in_sample",
    "mi_out_of_sample", "mi_out_of_sample_null", "p_value_out_of_sample",
    "redundancy", "lookback"}`` and ``{"event":
    "no_candidate", "round"}`` (synthesis then stops early).
    returns: FeatureLibrary (possibly with fewer than n_features features).
    Deterministic for a given seed; the global ``random`` state is restored.
    raises ConfigError for a bad config, DataError for bad bars or when a
    segment has fewer than 100 usable rows.
    """
    cfg = (cfg or SynthesisConfig()).validate()
    notify = progress or (lambda _e: None)
    raw = raw_inputs(bars)
    close = _column(bars, "close")
    y = forward_returns(close, raw.open_time, cfg.horizon)
    n = bars.height
    n_is = int(n * cfg.in_sample_fraction)
    # in-sample targets must not look into the out-of-sample tail
    y_is = y.copy()
    y_is[max(n_is - cfg.horizon, 0):] = np.nan
    rows_is = _sample_rows(y_is, 0, n_is, cfg.sample_rows, rng.generator(cfg.seed, "synthesize", "sample", "in"))
    rows_oos = _sample_rows(y, n_is, n, cfg.sample_rows, rng.generator(cfg.seed, "synthesize", "sample", "out"))
    for label, rows_ in (("in-sample", rows_is), ("out-of-sample", rows_oos)):
        if rows_.size < 100:
            raise DataError(f"{label} segment has {rows_.size} rows with a finite {cfg.horizon}-bar forward return; "
                            f"need >= 100 (n={n} bars, in_sample_fraction={cfg.in_sample_fraction})")
    mi_seed = rng.int_seed(cfg.seed, "synthesize", "mi")
    scorer = _Scorer(raw, y, rows_is, cfg, mi_seed)
    pset = build_pset(raw.names)
    ops = Operators(pset, cfg.max_depth, cfg.max_size)
    accepted: list[LibraryFeature] = []
    state = random.getstate()
    try:
        for rnd in range(cfg.n_features):
            random.seed(rng.int_seed(cfg.seed, "synthesize", "round", rnd))
            scorer.new_round()
            best = _evolve_round(rnd, pset, ops, scorer, cfg, notify)
            if best is None:
                notify({"event": "no_candidate", "round": rnd})
                break
            x, lookback = evaluate_feature(best.genome, raw, scorer.pool)
            mi_oos = mutual_information(x[rows_oos], y[rows_oos], cfg.n_neighbors, mi_seed)
            perm = rng.generator(cfg.seed, "synthesize", "null", rnd)
            null = np.array([mutual_information(x[rows_oos], perm.permutation(y[rows_oos]), cfg.n_neighbors, mi_seed)
                             for _ in range(cfg.null_permutations)])
            name = f"syn_{rnd}"
            feat = LibraryFeature(
                name=name, genome=best.genome, mi_in_sample=best.mi, mi_out_of_sample=mi_oos, lookback=lookback,
                redundancy=best.redundancy, fitness=best.fitness,
                mi_out_of_sample_null=float(null.mean()) if null.size else float("nan"),
                p_value_out_of_sample=float((1 + (null >= mi_oos).sum()) / (1 + null.size)) if null.size
                else float("nan"))
            accepted.append(feat)
            scorer.accepted.append(scorer.sample(best.genome)[2])
            notify({"event": "accepted", "round": rnd, "name": name, "expression": best.genome.expression(),
                    "mi_in_sample": best.mi, "mi_out_of_sample": mi_oos,
                    "mi_out_of_sample_null": feat.mi_out_of_sample_null,
                    "p_value_out_of_sample": feat.p_value_out_of_sample, "redundancy": best.redundancy,
                    "lookback": lookback})
    finally:
        random.setstate(state)
    import sklearn

    t = raw.open_time
    meta = {
        "config": dataclasses.asdict(cfg),
        "n_bars": n,
        "split": {"in_sample": {"rows": [0, n_is], "first_open_ms": int(t[0]), "last_open_ms": int(t[n_is - 1])},
                  "out_of_sample": {"rows": [n_is, n], "first_open_ms": int(t[n_is]),
                                    "last_open_ms": int(t[n - 1])}},
        "sample_rows": {"in_sample": int(rows_is.size), "out_of_sample": int(rows_oos.size)},
        "target": f"log(close[t+{cfg.horizon}] / close[t])",
        "estimator": f"sklearn.feature_selection.mutual_info_regression (Kraskov k-NN, k={cfg.n_neighbors}, "
                     f"nats; scikit-learn {sklearn.__version__})",
        "evaluations": scorer.evaluations,
    }
    return FeatureLibrary(raw_inputs=raw.names, features=tuple(accepted), meta=meta)


def _evolve_round(rnd: int, pset: gp.PrimitiveSetTyped, ops: Operators, scorer: _Scorer, cfg: SynthesisConfig,
                  notify: ProgressFn) -> _Candidate | None:
    """One (mu + lambda) run; returns the best acceptable candidate seen, or None."""
    seen: dict[str, _Candidate] = {}

    def score(trees: list[gp.PrimitiveTree]) -> list[_Candidate]:
        out = []
        for tree in trees:
            genome = genome_from_individual(tree, pset)
            cand = seen.get(genome.sha256)
            if cand is None:
                cand = seen[genome.sha256] = scorer.score(tree, genome)
            out.append(cand)
        return out

    init: list[gp.PrimitiveTree] = []
    keys: set[str] = set()
    attempts = 0
    while len(init) < cfg.population:
        attempts += 1
        tree = gp.PrimitiveTree(generate(pset, 1, min(cfg.max_depth, 4), type_=FSeries, full=random.random() < 0.5))
        if ops.ok(tree) and (str(tree) not in keys or attempts > 20 * cfg.population):
            keys.add(str(tree))
            init.append(tree)
    pop = score(init)
    for g in range(cfg.generations + 1):
        if g > 0:
            # lambda = population children not seen before in this round (bounded retries)
            children: list[gp.PrimitiveTree] = []
            fresh: set[str] = set()
            for _ in range(20 * cfg.population):
                if len(children) >= cfg.population:
                    break
                if random.random() < cfg.crossover_probability:
                    a, b = _tournament(pop, cfg.tournament_size), _tournament(pop, cfg.tournament_size)
                    made = list(ops.crossover(a.tree, b.tree))
                else:
                    made = [ops.mutate(_tournament(pop, cfg.tournament_size).tree)]
                for tree in made:
                    key = genome_from_individual(tree, pset).sha256
                    if key not in seen and key not in fresh:
                        fresh.add(key)
                        children.append(tree)
            # one survivor per phenotype (monotone-equivalent features), the fittest (smallest) one
            ranked = sorted(pop + score(children[:cfg.population]), key=lambda c: c.fitness, reverse=True)
            pool: dict[str, _Candidate] = {}
            for c in ranked:
                pool.setdefault(c.phenotype, c)
            pop = list(pool.values())[:cfg.population]
        top = max(pop, key=lambda c: c.fitness)
        notify({"event": "generation", "round": rnd, "generation": g, "best_fitness": top.fitness,
                "best_mi": top.mi, "best_expression": top.genome.expression(), "evaluations": scorer.evaluations})
    ok = [c for c in seen.values() if c.valid and c.mi > 0 and c.redundancy < cfg.max_redundancy]
    return max(ok, key=lambda c: (c.fitness, c.mi)) if ok else None


__all__ = [
    "LIBRARY_SCHEMA",
    "RAW_INPUTS",
    "RAW_LOOKBACKS",
    "FeatureLibrary",
    "LibraryFeature",
    "RawInputs",
    "SynthesisConfig",
    "evaluate_feature",
    "forward_returns",
    "library_features",
    "load_feature_library",
    "mutual_information",
    "raw_inputs",
    "synthesize",
    "write_feature_library",
]
