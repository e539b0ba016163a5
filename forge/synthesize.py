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

The result is a feature library (``forge.features.library``: its JSON schema
``forge-feature-library/1``, reader, writer and ``library_features``, which
evaluates every library feature on any bar frame, so ``forge evolve
--features LIB.json`` can add them as terminals).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from deap import gp
from scipy.stats import rankdata
import sklearn
from sklearn.feature_selection import mutual_info_regression

from forge.core import rng
from forge.core.config import load_config
from forge.core.errors import ConfigError, DataError
from forge.data.ranges import DataRange
from forge.data.gaps import forward_returns
from forge.data.split import holdout_split
from forge.evolution.operators import sel_best_distinct, sel_tournament
from forge.features.library import (
    LIBRARY_SCHEMA, RAW_INPUTS, RAW_LOOKBACKS, FeatureLibrary, LibraryFeature, RawInputs, evaluate_feature,
    float_column, library_features, load_feature_library, raw_inputs, write_feature_library,
)
from forge.gp import BufferPool, Genome, build_pset, genome_from_individual
from forge.gp.pset import Operators, generate
from forge.gp.primitives import FSeries

ProgressFn = Callable[[dict[str, Any]], None]


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
    data: kline files or folders (empty: the embedded BTCUSDT sample) and out: the library JSON to write,
    read by ``forge synthesize`` (the library function takes bars).

    TOML: the ``[synthesize]`` table of ``forge synthesize --config FILE`` (:func:`load_synthesis_config`;
    command-line flags override it; every key optional, these defaults apply).
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
    data: tuple[str, ...] = ()
    out: str = "artifacts/features/library.json"

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
            ("out", bool(self.out), "a file path"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"synthesis.{name} must be {expected}, got {getattr(self, name)!r}")
        return self


@dataclass(frozen=True)
class SynthesizeFile:
    """A ``forge synthesize`` config file: one ``[synthesize]`` table (:class:`SynthesisConfig`)."""

    synthesize: SynthesisConfig = field(default_factory=SynthesisConfig)
    source: str = "<defaults>"


def load_synthesis_config(path: str | Path | None = None) -> SynthesisConfig:
    """The ``[synthesize]`` table of ``path``; None -> ``configs/synthesize.toml`` when present, else the
    defaults of :class:`SynthesisConfig` (``forge.core.config.load_config``, the one default-path rule).
    raises ConfigError naming the file, table and key (unknown keys and tables, wrong types, bad values)."""
    return load_config(path, SynthesizeFile, "synthesize.toml").synthesize


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


# --------------------------------------------------------------------------- synthesis


def _library_feature(name: str, best: _Candidate, raw: RawInputs, y: np.ndarray, rows_oos: np.ndarray,
                     pool: BufferPool, cfg: SynthesisConfig, mi_seed: int, rnd: int) -> LibraryFeature:
    """An accepted candidate as a library feature, with its out-of-sample MI and permutation p-value (the
    out-of-sample rows are read here only, to report)."""
    x, lookback = evaluate_feature(best.genome, raw, pool)
    mi_oos = mutual_information(x[rows_oos], y[rows_oos], cfg.n_neighbors, mi_seed)
    perm = rng.generator(cfg.seed, "synthesize", "null", rnd)
    null = np.array([mutual_information(x[rows_oos], perm.permutation(y[rows_oos]), cfg.n_neighbors, mi_seed)
                     for _ in range(cfg.null_permutations)])
    return LibraryFeature(
        name=name, genome=best.genome, mi_in_sample=best.mi, mi_out_of_sample=mi_oos, lookback=lookback,
        redundancy=best.redundancy, fitness=best.fitness,
        mi_out_of_sample_null=float(null.mean()) if null.size else float("nan"),
        p_value_out_of_sample=float((1 + (null >= mi_oos).sum()) / (1 + null.size)) if null.size else float("nan"))


def synthesize(bars: pl.DataFrame, cfg: SynthesisConfig | None = None,
               progress: ProgressFn | None = None, time_budget_s: float | None = None) -> FeatureLibrary:
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
    time_budget_s: wall seconds after which no new feature round starts (the library holds the rounds done;
    ``meta.stopped_by_budget`` says so; with a budget the number of rounds depends on the machine).
    returns: FeatureLibrary (possibly with fewer than n_features features).
    Deterministic for a given seed (without a budget); the global ``random`` state is restored.
    raises ConfigError for a bad config, DataError for bad bars or when a
    segment has fewer than 100 usable rows.
    """
    cfg = (cfg or SynthesisConfig()).validate()
    notify = progress or (lambda _e: None)
    raw = raw_inputs(bars)
    close = float_column(bars, "close")
    y = forward_returns(close, raw.open_time, cfg.horizon)
    n = bars.height
    split = holdout_split(raw.open_time, cfg.in_sample_fraction, min_bars=1)
    n_is = split.in_sample[1]
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
    pset = build_pset(raw.names, max_version=1)  # feature trees: set 2's primitives shape positions
    ops = Operators(pset, cfg.max_depth, cfg.max_size)
    accepted: list[LibraryFeature] = []
    state = random.getstate()
    t_start, stopped = time.monotonic(), False
    try:
        for rnd in range(cfg.n_features):
            if time_budget_s is not None and rnd > 0 and time.monotonic() - t_start > time_budget_s:
                stopped = True
                break
            random.seed(rng.int_seed(cfg.seed, "synthesize", "round", rnd))
            scorer.new_round()
            best = _evolve_round(rnd, pset, ops, scorer, cfg, notify)
            if best is None:
                notify({"event": "no_candidate", "round": rnd})
                break
            feat = _library_feature(f"syn_{rnd}", best, raw, y, rows_oos, scorer.pool, cfg, mi_seed, rnd)
            accepted.append(feat)
            scorer.accepted.append(scorer.sample(best.genome)[2])
            notify({"event": "accepted", "round": rnd, "name": feat.name, "expression": best.genome.expression(),
                    "mi_in_sample": best.mi, "mi_out_of_sample": feat.mi_out_of_sample,
                    "mi_out_of_sample_null": feat.mi_out_of_sample_null,
                    "p_value_out_of_sample": feat.p_value_out_of_sample, "redundancy": best.redundancy,
                    "lookback": feat.lookback})
    finally:
        random.setstate(state)

    meta = {
        "config": dataclasses.asdict(cfg),
        "n_bars": n,
        "split": split.to_dict(with_iso=False),
        # the bars the features were selected on (in-sample head; the tail only reports): the range
        # ``forge evolve --features`` checks against its out-of-sample range (forge.data.ranges)
        "data_range": DataRange.of(bars.slice(0, n_is)).to_dict(),
        "sample_rows": {"in_sample": int(rows_is.size), "out_of_sample": int(rows_oos.size)},
        "target": f"log(close[t+{cfg.horizon}] / close[t])",
        "estimator": f"sklearn.feature_selection.mutual_info_regression (Kraskov k-NN, k={cfg.n_neighbors}, "
                     f"nats; scikit-learn {sklearn.__version__})",
        "evaluations": scorer.evaluations,
        **({"time_budget_s": time_budget_s, "stopped_by_budget": stopped} if time_budget_s is not None else {}),
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
                    a, b = sel_tournament(pop, cfg.tournament_size), sel_tournament(pop, cfg.tournament_size)
                    made = list(ops.crossover(a.tree, b.tree))
                else:
                    made = [ops.mutate(sel_tournament(pop, cfg.tournament_size).tree)]
                for tree in made:
                    key = genome_from_individual(tree, pset).sha256
                    if key not in seen and key not in fresh:
                        fresh.add(key)
                        children.append(tree)
            # one survivor per phenotype (monotone-equivalent features), the fittest (smallest) one
            pop = sel_best_distinct(pop + score(children[:cfg.population]), cfg.population,
                                    fitness=lambda c: c.fitness, key=lambda c: c.phenotype, top_up=False)
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
    "SynthesizeFile",
    "evaluate_feature",
    "forward_returns",
    "library_features",
    "load_feature_library",
    "load_synthesis_config",
    "mutual_information",
    "raw_inputs",
    "synthesize",
    "write_feature_library",
]
