"""``forge evolve``: (mu + lambda) genetic programming of trading strategies.

Flow: bars -> features (causal) -> walk-forward split (in-sample head,
out-of-sample tail) -> typed GP population -> each generation lambda
children by tournament-selected subtree crossover / mutation / reproduction
-> fitness from the numba backtest on the in-sample range only -> the best
mu distinct individuals survive -> hall of fame.  The out-of-sample range is
touched once, after evolution, to report the hall of fame's metrics next to
buy-and-hold.

Determinism: DEAP's operators draw from the stdlib ``random`` module, which
is seeded from the run seed; fitness is a pure function of the genome, so
the number of joblib workers never changes the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
from deap import base, creator, gp, tools
from joblib import Parallel, delayed

from forge import __version__
from forge.backtest import BacktestConfig, backtest_metrics, buy_and_hold, run_backtest
from forge.core import rng
from forge.core.rng import shielded_global_random
from forge.core.artifacts import atomic_write_json, atomic_write_text
from forge.core.config import to_dict
from forge.core.errors import ConfigError, DataError, GenomeError, RunDirError
from forge.data.gaps import bars_since_gap, forward_returns
from forge.data.loader import Coverage, coverage_of, load_bars, load_klines
from forge.features import DEFAULT_FEATURES, FeatureMatrix
from forge.gp import (
    BufferPool,
    Genome,
    build_pset,
    compile_program,
    genome_from_individual,
    individual_from_genome,
    run_program,
)
from forge.gp import pset as gp_ops
from forge.gp.cache import SubtreeCache
from forge.settings import FitnessSection, RunConfig, config_from_dict, config_to_dict
from forge.strategy import genome_positions, mask_warmup, strategy_features
from forge.surrogate import Surrogate, describe, proxy_stats, rank_correlation

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]

PACKAGES = ("deap", "numba", "numpy", "polars", "joblib", "lightgbm", "cma", "tigramite", "dowhy")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Split:
    """Walk-forward split: bar index ranges [start, stop) and their times (ms)."""

    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]
    in_sample_ms: tuple[int, int]
    out_of_sample_ms: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        def iso(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()

        return {
            "in_sample": {"rows": list(self.in_sample), "first_open_ms": self.in_sample_ms[0],
                          "last_open_ms": self.in_sample_ms[1], "first": iso(self.in_sample_ms[0]),
                          "last": iso(self.in_sample_ms[1])},
            "out_of_sample": {"rows": list(self.out_of_sample), "first_open_ms": self.out_of_sample_ms[0],
                              "last_open_ms": self.out_of_sample_ms[1], "first": iso(self.out_of_sample_ms[0]),
                              "last": iso(self.out_of_sample_ms[1])},
        }


def walk_forward_split(open_time: np.ndarray, in_sample_fraction: float) -> Split:
    """Split bars into an in-sample head and an out-of-sample tail.

    open_time: (n,) int64 ms.  raises DataError if either side would hold
    fewer than 100 bars.
    """
    n = len(open_time)
    n_is = int(n * in_sample_fraction)
    if n_is < 100 or n - n_is < 100:
        raise DataError(
            f"need at least 100 bars on each side of the walk-forward split, got {n_is} in-sample "
            f"and {n - n_is} out-of-sample of {n} bars (in_sample_fraction={in_sample_fraction})"
        )
    return Split(
        in_sample=(0, n_is),
        out_of_sample=(n_is, n),
        in_sample_ms=(int(open_time[0]), int(open_time[n_is - 1])),
        out_of_sample_ms=(int(open_time[n_is]), int(open_time[n - 1])),
    )


@dataclass(frozen=True)
class MarketArrays:
    """The arrays fitness evaluation reads (one contiguous row range).

    X: (k, n) float64 features; open_/close: (n,) float64 USDT per unit;
    open_time: (n,) int64 ms; bars_since_gap: (n,) int64.  token: identity
    of the segment (keys the workers' subtree caches).
    """

    feature_names: tuple[str, ...]
    feature_lookbacks: tuple[int, ...]
    X: np.ndarray
    open_: np.ndarray
    close: np.ndarray
    open_time: np.ndarray
    bars_since_gap: np.ndarray
    token: str
    symbol: str = ""

    @classmethod
    def from_bars(cls, bars: pl.DataFrame, features: FeatureMatrix, rows: tuple[int, int],
                  symbol: str = "") -> MarketArrays:
        a, b = rows
        t = bars["open_time"].to_numpy()
        bsg = bars_since_gap(t)
        return cls(
            feature_names=tuple(features.names),
            feature_lookbacks=tuple(features.lookbacks),
            X=np.ascontiguousarray(features.values[:, a:b]),
            open_=np.ascontiguousarray(bars["open"].to_numpy()[a:b], dtype=np.float64),
            close=np.ascontiguousarray(bars["close"].to_numpy()[a:b], dtype=np.float64),
            open_time=np.ascontiguousarray(t[a:b], dtype=np.int64),
            bars_since_gap=np.ascontiguousarray(bsg[a:b]),
            token=_content_token(features.names, features.values[:, a:b], bars["close"].to_numpy()[a:b]),
            symbol=symbol,
        )

    def windows(self, bounds: list[tuple[int, int]]) -> MarketArrays:
        """Bar ranges [a, b) joined into one segment (the surrogate's proxy data).  Each join is a gap:
        ``bars_since_gap`` restarts there, so look-backs never read across it."""
        idx = np.concatenate([np.arange(a, b) for a, b in bounds])
        starts = np.zeros(idx.shape[0], dtype=bool)
        starts[np.cumsum([0] + [b - a for a, b in bounds[:-1]])] = True
        bsg = self.bars_since_gap[idx].copy()
        run = np.arange(idx.shape[0]) - np.maximum.accumulate(np.where(starts, np.arange(idx.shape[0]), 0))
        bsg = np.minimum(bsg, run)  # a join restarts the count like a gap
        return dataclasses.replace(
            self, X=np.ascontiguousarray(self.X[:, idx]), open_=self.open_[idx], close=self.close[idx],
            open_time=self.open_time[idx], bars_since_gap=bsg,
            token=Genome.canonical_hash(f"{self.token}|windows{bounds}"),
        )

    def tail(self, n: int) -> MarketArrays:
        """The last ``n`` bars."""
        return dataclasses.replace(
            self, X=np.ascontiguousarray(self.X[:, -n:]), open_=self.open_[-n:].copy(), close=self.close[-n:].copy(),
            open_time=self.open_time[-n:].copy(), bars_since_gap=self.bars_since_gap[-n:].copy(),
            token=Genome.canonical_hash(f"{self.token}|tail{n}"),
        )


@dataclass(frozen=True)
class Market:
    """One symbol's bars, coverage, features and walk-forward split."""

    symbol: str
    bars: pl.DataFrame
    coverage: Coverage | None
    features: FeatureMatrix
    split: Split

    @classmethod
    def build(cls, symbol: str, bars: pl.DataFrame, coverage: Coverage | None, names: tuple[str, ...],
              in_sample_fraction: float, library: Any = None) -> Market:
        split = walk_forward_split(bars["open_time"].to_numpy(), in_sample_fraction)
        return cls(symbol, bars, coverage, strategy_features(bars, names, library), split)

    def select(self, names: tuple[str, ...]) -> Market:
        """The same market restricted to feature ``names`` (in that order)."""
        idx = [self.features.names.index(n) for n in names]
        fm = FeatureMatrix(names=tuple(names), values=np.ascontiguousarray(self.features.values[idx]),
                           lookbacks=tuple(self.features.lookbacks[i] for i in idx))
        return dataclasses.replace(self, features=fm)


def load_symbol_bars(data: tuple[str, ...], symbol: str) -> tuple[pl.DataFrame, Coverage]:
    """Bars of one symbol: every ``<SYMBOL>-1m-*.csv|zip`` under the ``data`` paths.

    With no data paths, only the embedded sample's symbol (BTCUSDT) exists.
    raises DataError if no file of the symbol is found.
    """
    if not data:
        if symbol.upper() == "BTCUSDT":
            return load_bars(None)
        raise DataError(f"no data for symbol {symbol}: the embedded sample is BTCUSDT only; pass --data PATH")
    files: list[Path] = []
    for root in map(Path, data):
        cands = [root] if root.is_file() else sorted(root.rglob(f"{symbol}-1m-*"))
        files += [p for p in cands if p.name.startswith(f"{symbol}-1m-") and p.suffix in (".csv", ".zip")]
    if not files:
        raise DataError(f"no {symbol}-1m-*.csv/.zip kline files under {', '.join(data)}")
    return load_klines(files)


# --------------------------------------------------------------------------- fitness


def fitness_from_metrics(m: Any, size: int, max_size: int, cfg: FitnessSection) -> float:
    """Scalar fitness (higher is better) from backtest ``Metrics``; see FitnessSection."""
    if m.n_trades < cfg.min_trades or m.final_equity <= 0.0 or not math.isfinite(m.sharpe):
        return cfg.floor
    ttt_score = 0.0 if not math.isfinite(m.ttt_bars) else 1.0 - m.ttt_bars / max(m.n_bars, 1)
    sharpe = max(-cfg.sharpe_cap, min(cfg.sharpe_cap, m.sharpe))
    return (
        cfg.w_sharpe * sharpe
        + cfg.w_ttt * ttt_score
        - cfg.w_drawdown * m.max_drawdown
        - cfg.w_size * size / max_size
    )


def _content_token(names: tuple[str, ...], X: np.ndarray, close: np.ndarray) -> str:
    """sha256 of a segment's feature names, features and closes."""
    h = hashlib.sha256(repr(tuple(names)).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(close, dtype=np.float64).tobytes())
    return h.hexdigest()


_WORKER_CACHE: dict[str, SubtreeCache] = {}


def _worker_cache(data: MarketArrays, cache_mb: int, n_segments: int = 1) -> SubtreeCache | None:
    """This process's subtree cache for ``data`` (the budget is split across
    the run's segments; caches of other runs' segments are dropped)."""
    if cache_mb <= 0:
        return None
    cache = _WORKER_CACHE.get(data.token)
    if cache is None:
        if len(_WORKER_CACHE) >= n_segments:
            _WORKER_CACHE.clear()
        cache = _WORKER_CACHE[data.token] = SubtreeCache(data.X, data.feature_names,
                                                         max_bytes=cache_mb * 2**20 // n_segments)
    return cache


def _evaluate_chunk(
    genomes: list[dict[str, Any]],
    segments: tuple[MarketArrays, ...] | SharedSegments,
    bt: BacktestConfig,
    fit: FitnessSection,
    max_size: int,
    cache_mb: int = 0,
    aggregate: str = "mean",
) -> tuple[list[tuple[float, dict[str, Any]]], int, int]:
    """Fitness and in-sample metrics of each genome dict (runs in a worker).

    segments: one in-sample segment per symbol; the fitness is the mean (or
    the worst, ``aggregate="worst"``) over segments; metrics are the first
    segment's, plus ``per_symbol`` when there are several.
    returns (results, subtree-cache hits, misses) for this chunk.
    """
    if isinstance(segments, SharedSegments):
        segments = segments.load()
    pool = BufferPool()
    caches = [_worker_cache(d, cache_mb, len(segments)) for d in segments]
    before = sum(c.hits for c in caches if c), sum(c.misses for c in caches if c)
    out = []
    for gd in genomes:
        genome = Genome.from_dict(gd)
        fits, mets = [], []
        for data, cache in zip(segments, caches):
            lookbacks = dict(zip(data.feature_names, data.feature_lookbacks))
            if cache is not None:
                raw, lookback = cache.run(genome), SubtreeCache.lookback(genome, lookbacks)
            else:
                program = compile_program(genome, data.feature_names, lookbacks)
                raw, lookback = run_program(program, data.X, pool), program.lookback
            pos = mask_warmup(raw, data.bars_since_gap, lookback)
            m = backtest_metrics(data.open_, data.close, data.open_time, pos, bt)
            fits.append(fitness_from_metrics(m, len(genome.tokens), max_size, fit))
            mets.append(m.to_dict())
        metrics = dict(mets[0])
        if len(segments) > 1:
            metrics["per_symbol"] = {d.symbol: {"fitness": f, **m} for d, f, m in zip(segments, fits, mets)}
        out.append((float(min(fits)) if aggregate == "worst" else float(np.mean(fits)), metrics))
    after = sum(c.hits for c in caches if c), sum(c.misses for c in caches if c)
    return out, after[0] - before[0], after[1] - before[1]


_ARRAYS = ("X", "open_", "close", "open_time", "bars_since_gap")
_SHARED: dict[str, tuple[MarketArrays, ...]] = {}


@dataclasses.dataclass(frozen=True)
class SharedSegments:
    """A picklable handle on segments written once to ``folder`` as .npy files: workers map them
    read-only (``np.load(mmap_mode="r")``, the OS page cache shared by every process) instead of
    receiving the arrays with each task."""

    folder: str
    meta: tuple[tuple[tuple[str, ...], tuple[int, ...], str, str], ...]  # (names, lookbacks, token, symbol)

    @classmethod
    def write(cls, segments: tuple[MarketArrays, ...], folder: str) -> SharedSegments:
        for i, seg in enumerate(segments):
            for name in _ARRAYS:
                np.save(os.path.join(folder, f"{i}_{name}.npy"), getattr(seg, name))
        return cls(folder, tuple((s.feature_names, s.feature_lookbacks, s.token, s.symbol) for s in segments))

    def load(self) -> tuple[MarketArrays, ...]:
        """The segments (cached per process)."""
        got = _SHARED.get(self.folder)
        if got is None:
            _SHARED.clear()  # one run's segments at a time per worker
            got = _SHARED[self.folder] = tuple(
                MarketArrays(names, lookbacks, token=token, symbol=symbol,
                             **{n: np.load(os.path.join(self.folder, f"{i}_{n}.npy"), mmap_mode="r") for n in _ARRAYS})
                for i, (names, lookbacks, token, symbol) in enumerate(self.meta))
        return got


class Evaluator:
    """Evaluates genomes on the in-sample arrays, in-process or with joblib workers.

    A fitness memo keyed by the genome's sha256 means identical trees are
    evaluated once per run; ``n_evaluated`` counts full evaluations.  With
    ``cache_mb`` > 0 every worker keeps a subtree cache (``forge.gp.cache``)
    for the segment; ``cache_hits`` / ``cache_misses`` sum its lookups.
    Results never depend on the number of workers or on the cache.
    """

    def __init__(self, data: MarketArrays | tuple[MarketArrays, ...], bt: BacktestConfig, fit: FitnessSection,
                 max_size: int, jobs: int, cache_mb: int = 0, backend: str = "loky", scheduler: str = "",
                 aggregate: str = "mean"):
        self.data = (data,) if isinstance(data, MarketArrays) else tuple(data)
        self.bt, self.fit, self.max_size, self.jobs, self.aggregate = bt, fit, max_size, jobs, aggregate
        self.cache_mb = cache_mb
        self.memo: dict[str, tuple[float, dict[str, Any]]] = {}
        self.genomes: dict[str, Genome] = {}
        self.n_evaluated = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.backend, self.scheduler = backend, scheduler
        self._client = None
        self._data_future = None
        self._parallel = Parallel(n_jobs=jobs, backend="loky") if backend == "loky" and jobs > 1 else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._shared: SharedSegments | None = None

    def __enter__(self) -> Evaluator:
        if self.backend == "dask":
            try:
                from distributed import Client
            except ImportError:
                raise ConfigError("--backend dask needs dask.distributed: pip install 'dask[distributed]'") from None
            if not self.scheduler:
                raise ConfigError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
            try:
                self._client = Client(self.scheduler, timeout="20s", set_as_default=False)
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None
            # the segment goes to every worker once; tasks carry only a reference to it
            self._data_future = self._client.scatter(self.data, broadcast=True, hash=False)
            self.jobs = max(1, len(self._client.scheduler_info()["workers"]))
        elif self._parallel is not None:
            self._parallel.__enter__()
            # the segments go to the workers once, as memory-mapped files; tasks carry a small handle
            self._tmp = tempfile.TemporaryDirectory(prefix="forge-segments-")
            self._shared = SharedSegments.write(self.data, self._tmp.name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._parallel is not None:
            self._parallel.__exit__(*exc)
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def _run_chunks(self, dicts: list[dict[str, Any]]) -> tuple[list[tuple[float, dict[str, Any]]], int, int]:
        """(results in the order of ``dicts``, cache hits, cache misses)."""
        args = (self.bt, self.fit, self.max_size, self.cache_mb, self.aggregate)
        if self._client is None and self._parallel is None:
            return self.map(_evaluate_chunk, [(dicts, self.data, *args)])[0]
        # strided chunks (genome i goes to chunk i mod n): neighbours in the population tend to have
        # similar cost, so contiguous chunks leave one worker idle at the end of a generation
        n_chunks = min(len(dicts), self.jobs * 4)
        index = [list(range(c, len(dicts), n_chunks)) for c in range(n_chunks)]
        data = self._data_future if self._client is not None else self._shared
        parts = self.map(_evaluate_chunk, [([dicts[i] for i in ix], data, *args) for ix in index])
        results: list[Any] = [None] * len(dicts)
        for ix, (part, _h, _m) in zip(index, parts):
            for i, r in zip(ix, part):
                results[i] = r
        return results, sum(h for _p, h, _m in parts), sum(m for _p, _h, m in parts)

    def map(self, fn: Callable[..., Any], tasks: list[tuple[Any, ...]]) -> list[Any]:
        """[fn(*args) for args in tasks], in order, on this evaluator's workers (loky or Dask) or in-process.
        Client libraries (dask.distributed) may draw from the global ``random`` that DEAP's operators
        use: the run's stream is shielded from them."""
        with shielded_global_random():
            if self._client is not None:
                return self._client.gather([self._client.submit(fn, *t, pure=False) for t in tasks])
            if self._parallel is not None:
                return self._parallel(delayed(fn)(*t) for t in tasks)
            return [fn(*t) for t in tasks]

    @property
    def cache_hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 0.0

    def evaluate(self, genomes: list[Genome]) -> list[tuple[float, dict[str, Any]]]:
        todo: dict[str, dict[str, Any]] = {}
        for g in genomes:
            if g.sha256 not in self.memo and g.sha256 not in todo:
                todo[g.sha256] = g.to_dict()
        keys = list(todo)
        if keys:
            results, hits, misses = self._run_chunks([todo[k] for k in keys])
            self.cache_hits += hits
            self.cache_misses += misses
            for g in genomes:
                self.genomes.setdefault(g.sha256, g)
            for k, r in zip(keys, results):
                self.memo[k] = r
            self.n_evaluated += len(keys)
        return [self.memo[g.sha256] for g in genomes]


# --------------------------------------------------------------------------- the loop


def _ensure_creator() -> None:
    if not hasattr(creator, "ForgeFitness"):
        creator.create("ForgeFitness", base.Fitness, weights=(1.0,))
    if not hasattr(creator, "ForgeIndividual"):
        creator.create("ForgeIndividual", gp.PrimitiveTree, fitness=creator.ForgeFitness, metrics=None)


@dataclass
class EvolveResult:
    """What ``evolve`` returns: the run directory and in-memory summaries."""

    run_dir: Path
    run_id: str
    hall_of_fame: list[dict[str, Any]]
    champion: Genome
    logbook: tools.Logbook
    manifest: dict[str, Any]


def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "forge": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def make_run_id(cfg: RunConfig) -> str:
    """``YYYYmmddTHHMMSSZ-s<seed>-<6 hex of the config>``."""
    digest = Genome.canonical_hash(json.dumps(to_dict(cfg.evolve), sort_keys=True))[:6]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-s{cfg.evolve.seed}-{digest}"


CHECKPOINT = "checkpoint.json"
SURROGATE_DATA = "surrogate.npz"
RUN_CONFIG = "run_config.json"
FEATURE_LIBRARY = "feature_library.json"


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Atomic ``np.savez`` (no pickle)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _truncate_lines(path: Path, n: int) -> None:
    """Keep the first ``n`` lines of a JSONL file (resume after a kill)."""
    lines = path.read_text().splitlines(keepends=True)[:n] if path.is_file() else []
    atomic_write_text(path, "".join(lines))


def _seed_trees(paths: tuple[str, ...], pset: gp.PrimitiveSetTyped) -> list[gp.PrimitiveTree]:
    """DEAP trees of the ``--seed-genome`` files (DNA recycling)."""
    trees = []
    for p in paths:
        genome = Genome.load(p)
        if genome.root != "P":
            raise GenomeError(f"{p}: seed genome must be a strategy (root 'P'), got root {genome.root!r}")
        trees.append(individual_from_genome(genome, pset))
    return trees


def evolve(
    cfg: RunConfig,
    *,
    bars: pl.DataFrame | None = None,
    coverage: Coverage | None = None,
    run_dir: Path | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
    stop_after: int | None = None,
) -> EvolveResult:
    """Run ``forge evolve`` and write its run directory.

    bars: bar frame (BAR_SCHEMA); None -> ``load_bars(cfg.evolve.data)`` (the
    embedded sample when no data is configured).  run_dir: where to write;
    None -> ``<output_dir>/<run_id>``.  progress: called with a dict after
    data loading (``{"event": "start", ...}``), after the causal filter
    (``"causal"``) and after each generation (``{"event": "generation",
    "gen", "best", "median", "evals_per_s", "surrogate_spearman" (evaluated set),
    "surrogate_spearman_holdout" (the random exploration picks), "evals_saved", ...}``).  resume: continue the run in ``run_dir`` from its
    last checkpoint (the config saved in the run directory is used; the
    result equals an uninterrupted run with the same seed).  stop_after:
    return after this generation without writing the final reports (tests
    use it to simulate an interrupted run).
    returns EvolveResult.  raises ConfigError, DataError, GenomeError,
    RunDirError.
    """
    ec = cfg.evolve
    notify = progress or (lambda _e: None)
    t_start = time.perf_counter()

    if resume:
        if run_dir is None or not (Path(run_dir) / CHECKPOINT).is_file():
            raise RunDirError(f"{run_dir}: no {CHECKPOINT} to resume from (was the run started with checkpoints on?)")
    if ec.symbols and bars is None:
        loaded = [(sym, *load_symbol_bars(ec.data, sym)) for sym in ec.symbols]
    else:
        if bars is None:
            bars, coverage = load_bars(list(ec.data) or None)
        elif coverage is None:
            coverage = coverage_of(bars)
        loaded = [(ec.symbols[0] if ec.symbols else "", bars, coverage)]
    feature_names = tuple(ec.features) or DEFAULT_FEATURES
    library = None
    if ec.feature_library:
        from forge.synthesize import load_feature_library

        library = load_feature_library(ec.feature_library)
        feature_names = feature_names + tuple(n for n in library.names if n not in feature_names)
    markets = [Market.build(sym, b, cov, feature_names, ec.in_sample_fraction, library) for sym, b, cov in loaded]
    primary = markets[0]
    bars, coverage, features, split = primary.bars, primary.coverage, primary.features, primary.split
    open_time = bars["open_time"].to_numpy()

    run_id = run_dir.name if run_dir is not None else make_run_id(cfg)
    run_dir = Path(run_dir) if run_dir is not None else Path(ec.output_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_json(run_dir / RUN_CONFIG, {"config": config_to_dict(cfg), "source": cfg.source})
    if library is not None:  # the gauntlet and the Crucible recompute synthesized features from this copy
        atomic_write_json(run_dir / FEATURE_LIBRARY, library.to_dict())

    causal_report = None
    if cfg.causal.enabled:
        from forge.causal import causal_filter

        a, b = split.in_sample
        fwd = forward_returns(bars["close"].to_numpy().astype(np.float64), open_time)  # never across a gap
        sub = FeatureMatrix(names=features.names, values=np.ascontiguousarray(features.values[:, a:b]),
                            lookbacks=features.lookbacks)
        causal_report = causal_filter(sub, fwd[a:b], cfg.causal, seed=rng.int_seed(ec.seed, "causal"))
        atomic_write_json(run_dir / "causal.json", causal_report.to_dict())
        notify({"event": "causal", "kept": list(causal_report.kept), "rows": causal_report.render_rows(),
                "candidates": list(features.names)})
        # features read by seed genomes stay available, whatever the filter says
        seeded = {f for p in ec.seed_genomes for f in Genome.load(p).features}
        feature_names = tuple(n for n in features.names if n in causal_report.kept or n in seeded)
        markets = [m.select(feature_names) for m in markets]
        primary = markets[0]
        features = primary.features

    segments = tuple(MarketArrays.from_bars(m.bars, m.features, m.split.in_sample, m.symbol) for m in markets)
    data_is = segments[0]

    _ensure_creator()
    pset = build_pset(feature_names)
    ops = gp_ops.Operators(pset, max_depth=ec.max_depth, max_size=ec.max_size)
    sc = cfg.surrogate
    coev = None
    if cfg.coevolution.enabled:
        from forge.coevolution import Arena, Coevolution

        coev = Coevolution(cfg.coevolution, Arena(cfg.coevolution, feature_names, library, seed=ec.seed),
                           rng.generator(ec.seed, "coevolution"))
    use_surrogate = sc.enabled and ec.generations > 0
    surrogate = Surrogate(sc, seed=rng.int_seed(ec.seed, "surrogate")) if use_surrogate else None
    n_is = data_is.X.shape[1]
    proxy_len = max(100, min(sc.proxy_bars, n_is // (10 * sc.proxy_windows)))
    ends = np.unique(np.linspace(proxy_len, n_is, sc.proxy_windows).astype(int))
    data_proxy = data_is.windows([(int(e) - proxy_len, int(e)) for e in ends])

    stats = tools.Statistics(lambda ind: ind.fitness.values[0])
    stats.register("best", np.max)
    stats.register("median", np.median)
    stats.register("mean", np.mean)
    logbook = tools.Logbook()
    hof = tools.HallOfFame(ec.hall_of_fame_size, similar=lambda a, b: str(a) == str(b))
    gen_path = run_dir / "generations.jsonl"
    evaluated_path = run_dir / "evaluated.jsonl"

    def new_individual(tree: gp.PrimitiveTree) -> Any:
        return creator.ForgeIndividual(tree)

    def restore(entry: dict[str, Any]) -> Any:
        ind = new_individual(individual_from_genome(Genome.from_dict(entry["genome"]), pset))
        ind.fitness.values = (entry["fitness"],)
        ind.metrics = entry["metrics"]
        return ind

    notify({"event": "start", "run_id": run_id, "run_dir": str(run_dir), "n_bars": bars.height,
            "split": split.to_dict(), "features": list(feature_names), "generations": ec.generations,
            "population": ec.population, "offspring": ec.n_offspring, "jobs": ec.jobs,
            "surrogate": use_surrogate, "resume": resume})

    with Evaluator(segments, cfg.backtest, cfg.fitness, ec.max_size, ec.jobs, ec.subtree_cache_mb,
                   backend=ec.backend, scheduler=ec.scheduler, aggregate=ec.symbol_aggregate) as evaluator, \
            Evaluator(data_proxy, cfg.backtest, cfg.fitness, ec.max_size, ec.jobs, backend=ec.backend,
                      scheduler=ec.scheduler) as proxy_eval:
        if coev is not None:  # encounters run on the fitness workers
            coev.map_tasks = evaluator.map

        def assign(individuals: list[Any]) -> tuple[int, list[Genome]]:
            before = evaluator.n_evaluated
            n_lines = len(evaluator.memo)
            genomes = [genome_from_individual(ind, pset) for ind in individuals]
            for ind, (fit, met) in zip(individuals, evaluator.evaluate(genomes)):
                ind.fitness.values = (fit,)
                ind.metrics = met
            new = list(evaluator.memo.items())[n_lines:]
            with evaluated_path.open("a") as fh:
                for k, (fit, met) in new:
                    fh.write(json.dumps({"sha256": k, "genome": evaluator.genomes[k].to_dict(), "fitness": fit,
                                         "in_sample": met}) + "\n")
            return evaluator.n_evaluated - before, genomes

        def descriptors(genomes: list[Genome]) -> np.ndarray:
            stats = [proxy_stats(f, m) for f, m in proxy_eval.evaluate(genomes)]
            return np.vstack([describe(g, feature_names, p) for g, p in zip(genomes, stats)])

        def adversarial(individuals: list[Any], select: bool = True) -> dict[str, Any]:
            """Dual fitness: causal (backtest) and adversarial (inside the simulator against predators)."""
            if coev is None:
                return {}
            from forge.coevolution import combine

            coev.begin_generation()
            causal = [ind.metrics.get("causal_fitness", ind.fitness.values[0]) if isinstance(ind.metrics, dict)
                      else ind.fitness.values[0] for ind in individuals]
            order = sorted(range(len(individuals)), key=lambda i: (-causal[i], i))
            top = order[: cfg.coevolution.adversarial_top]
            measured = coev.score([genome_from_individual(individuals[i], pset) for i in top])
            scores = [min(measured)] * len(individuals)
            for i, adv in zip(top, measured):
                scores[i] = adv
            for ind, c, adv in zip(individuals, causal, scores):
                ind.metrics = {**(ind.metrics or {}), "causal_fitness": c, "adversarial_bp": adv}
                if cfg.coevolution.mode == "weighted":
                    ind.fitness.values = (combine(c, adv, cfg.coevolution),)
            out = {"adversarial_mean_bp": float(np.mean(measured)), "adversarial_evaluated": len(top)}
            if select:  # generation 0: predators move once the first prey exist
                out.update(predator_step(individuals))
            return out

        def predator_step(population: list[Any]) -> dict[str, Any]:
            ranked = sorted(population, key=lambda ind: -ind.metrics["causal_fitness"])
            row = coev.step([genome_from_individual(ind, pset) for ind in ranked])
            return {"predator_best": row["predator_best"], "predator_realism": row["realism_of_best"]}

        def checkpoint(gen: int, population: list[Any]) -> None:
            if not ec.checkpoint:
                return
            if surrogate is not None:
                _write_npz(run_dir / SURROGATE_DATA, X=np.vstack(surrogate.X) if surrogate.X else np.zeros((0, 0)),
                           y=np.asarray(surrogate.y, dtype=np.float64))
            dump = lambda ind: {"genome": genome_from_individual(ind, pset).to_dict(),  # noqa: E731
                                "fitness": float(ind.fitness.values[0]), "metrics": ind.metrics}
            atomic_write_json(run_dir / CHECKPOINT, {
                "gen": gen,
                "population": [dump(ind) for ind in population],
                "hall_of_fame": [dump(ind) for ind in hof.items],
                "random_state": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
                "numpy_state": np_rng.bit_generator.state,
                "n_evaluated": evaluator.n_evaluated,
                "evaluated_lines": len(evaluator.memo),
                "surrogate_rows": surrogate.n_train if surrogate is not None else 0,
                "coevolution": coev.state() if coev is not None else None,
            })

        def record(gen: int, population: list[Any], nevals: int, seconds: float, extra: dict[str, Any]) -> None:
            hof.update(population)
            row = {k: float(v) for k, v in stats.compile(population).items()}
            entry = {
                "gen": gen, "nevals": nevals, "evaluated_total": evaluator.n_evaluated, **row,
                "size_mean": float(np.mean([len(ind) for ind in population])),
                "evals_per_s": nevals / seconds if seconds > 0 else 0.0, "seconds": seconds,
                "hof_best": float(hof[0].fitness.values[0]),
                "cache_hit_rate": evaluator.cache_hit_rate, **extra,
            }
            logbook.record(**entry)
            with gen_path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            checkpoint(gen, population)
            notify({"event": "generation", **entry, "generations": ec.generations})

        if resume:
            ck = json.loads((run_dir / CHECKPOINT).read_text())
            start_gen = ck["gen"] + 1
            st = ck["random_state"]
            random.setstate((st[0], tuple(st[1]), st[2]))
            np_rng = np.random.Generator(np.random.PCG64())
            np_rng.bit_generator.state = ck["numpy_state"]
            _truncate_lines(gen_path, start_gen)
            _truncate_lines(evaluated_path, ck["evaluated_lines"])
            for line in evaluated_path.read_text().splitlines():
                e = json.loads(line)
                evaluator.memo[e["sha256"]] = (e["fitness"], e["in_sample"])
                evaluator.genomes[e["sha256"]] = Genome.from_dict(e["genome"])
            evaluator.n_evaluated = ck["n_evaluated"]
            for line in gen_path.read_text().splitlines():
                logbook.record(**json.loads(line))
            population = [restore(e) for e in ck["population"]]
            hof.items = [restore(e) for e in ck["hall_of_fame"]]
            hof.keys = [ind.fitness for ind in reversed(hof.items)]
            if coev is not None:
                coev.load_state(ck["coevolution"])
            if surrogate is not None and ck["surrogate_rows"]:
                data = np.load(run_dir / SURROGATE_DATA, allow_pickle=False)
                surrogate.observe(data["X"][: ck["surrogate_rows"]], data["y"][: ck["surrogate_rows"]])
        else:
            random.seed(rng.int_seed(ec.seed, "evolve", "deap"))
            np_rng = rng.generator(ec.seed, "evolve", "numpy")
            gen_path.write_text("")
            evaluated_path.write_text("")
            t0 = time.perf_counter()
            seeds = _seed_trees(ec.seed_genomes, pset)
            init: list[gp.PrimitiveTree] = list(seeds)
            n_seeded = min(ec.population, int(round(ec.seed_fraction * ec.population))) if seeds else 0
            while len(init) < n_seeded:  # mutated copies of the seeds
                init.append(ops.mutate(seeds[len(init) % len(seeds)]))
            init += ops.init_population(ec.population - len(init), ec.init_min_depth, ec.init_max_depth)
            population = [new_individual(t) for t in init[: ec.population]]
            nevals, genomes = assign(population)
            coev_extra = adversarial(population)
            if surrogate is not None:
                surrogate.observe(descriptors(genomes), [ind.fitness.values[0] for ind in population])
            record(0, population, nevals, time.perf_counter() - t0,
                   {"candidates": len(population), "evals_saved": 0, "surrogate_spearman": None,
                    "surrogate_spearman_holdout": None, **coev_extra})
            start_gen = 1

        for gen in range(start_gen, ec.generations + 1):
            if stop_after is not None and gen > stop_after:
                return EvolveResult(run_dir=run_dir, run_id=run_id, hall_of_fame=[], champion=None,  # type: ignore[arg-type]
                                    logbook=logbook, manifest={})
            t0 = time.perf_counter()
            n_cand = ec.n_offspring * (sc.candidates_factor if surrogate is not None else 1)
            candidates = [new_individual(breed(population, ops, ec)) for _ in range(n_cand)]
            extra: dict[str, Any] = {"candidates": n_cand, "evals_saved": 0, "surrogate_spearman": None,
                                     "surrogate_spearman_holdout": None}
            if surrogate is not None:
                genomes = [genome_from_individual(c, pset) for c in candidates]
                first: dict[str, int] = {}
                for i, g in enumerate(genomes):
                    first.setdefault(g.sha256, i)
                known = [i for i in first.values() if genomes[i].sha256 in evaluator.memo]
                unknown = [i for i in first.values() if genomes[i].sha256 not in evaluator.memo]
                offspring = [candidates[i] for i in known]
                if unknown:
                    X = descriptors([genomes[i] for i in unknown])
                    picked, pred = surrogate.select(X, np_rng)
                    chosen = [candidates[unknown[j]] for j in picked]
                    nevals, _g = assign(chosen + offspring)
                    true = [c.fitness.values[0] for c in chosen]
                    extra["surrogate_spearman"] = rank_correlation(pred[picked], true)
                    held = np.isin(picked, surrogate.last_explore)  # the random picks: an unbiased sample
                    extra["surrogate_spearman_holdout"] = rank_correlation(pred[picked][held],
                                                                           np.asarray(true)[held])
                    surrogate.observe(X[picked], true)
                    offspring = chosen + offspring
                else:
                    nevals, _g = assign(offspring)
                extra["evals_saved"] = n_cand - nevals
            else:
                offspring = candidates
                nevals, _g = assign(offspring)
            pool = population + offspring
            if coev is not None:
                extra.update(adversarial(pool, select=False))
                if cfg.coevolution.mode == "pareto":
                    from forge.coevolution import pareto_order

                    objectives = np.array([[ind.metrics["causal_fitness"], ind.metrics["adversarial_bp"]] for ind in pool])
                    population = [pool[i] for i in pareto_order(objectives, ec.population)]
                else:
                    population = survivors(pool, ec.population)
                extra.update(predator_step(population))
            else:
                population = survivors(pool, ec.population)
            record(gen, population, nevals, time.perf_counter() - t0, extra)

    evolve_seconds = time.perf_counter() - t_start
    hall = _hall_of_fame_report(hof, pset, markets, cfg)
    champion = Genome.from_dict(hall[0]["genome"])

    manifest = {
        "run_id": run_id,
        "created_utc": datetime.now(timezone.utc).isoformat(),
        "seed": ec.seed,
        "config": config_to_dict(cfg),
        "config_source": cfg.source,
        "data": {"coverage": coverage.to_dict() if coverage is not None else None, "n_bars": bars.height,
                 "symbol": primary.symbol or None},
        "symbols": {m.symbol: {"coverage": m.coverage.to_dict() if m.coverage is not None else None,
                               "n_bars": m.bars.height, "split": m.split.to_dict()} for m in markets}
        if len(markets) > 1 else None,
        "symbol_aggregate": ec.symbol_aggregate if len(markets) > 1 else None,
        "split": split.to_dict(),
        "features": list(feature_names),
        "causal_filter": causal_report.to_dict() if causal_report is not None else None,
        "coevolution": {"mode": cfg.coevolution.mode, "predator_hall_of_fame": coev.hall_of_fame(),
                        "history": coev.history} if coev is not None else None,
        "pset_version": champion.pset_version,
        "candidates_evaluated": evaluator.n_evaluated,
        "generations_run": ec.generations,
        "resumed": resume,
        "seconds": evolve_seconds,
        "packages": _package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "files": {"generations": "generations.jsonl", "hall_of_fame": "hall_of_fame.json", "champion": "champion.json",
                  "evaluated": "evaluated.jsonl", "checkpoint": CHECKPOINT if ec.checkpoint else None,
                  "feature_library": FEATURE_LIBRARY if library is not None else None},
    }
    atomic_write_json(run_dir / "hall_of_fame.json", {"run_id": run_id, "members": hall})
    atomic_write_text(run_dir / "champion.json", champion.to_json())
    atomic_write_json(run_dir / "manifest.json", manifest)
    notify({"event": "done", "run_dir": str(run_dir), "seconds": evolve_seconds,
            "candidates_evaluated": evaluator.n_evaluated})
    return EvolveResult(run_dir=run_dir, run_id=run_id, hall_of_fame=hall, champion=champion,
                        logbook=logbook, manifest=manifest)


def resume_run(run_dir: Path, *, progress: ProgressFn | None = None) -> EvolveResult:
    """Finish an interrupted run from its checkpoint (``forge evolve --resume RUN_DIR``).

    raises RunDirError if the run directory has no saved config or checkpoint.
    """
    run_dir = Path(run_dir)
    p = run_dir / RUN_CONFIG
    if not p.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {RUN_CONFIG})")
    saved = json.loads(p.read_text())
    cfg = config_from_dict(saved["config"], source=saved.get("source", str(p)))
    return evolve(cfg, run_dir=run_dir, progress=progress, resume=True)


def breed(population: list[Any], ops: gp_ops.Operators, ec: Any) -> gp.PrimitiveTree:
    """One child: subtree crossover (cxpb), mutation (mutpb) or reproduction of
    tournament-selected parents."""
    r = random.random()
    if r < ec.cxpb:
        p1, p2 = (evaluator_select(population, ec.tournament_size) for _ in range(2))
        return ops.crossover(p1, p2)[0]
    if r < ec.cxpb + ec.mutpb:
        return ops.mutate(evaluator_select(population, ec.tournament_size))
    return ops.clone(evaluator_select(population, ec.tournament_size))


def evaluator_select(population: list[Any], k: int) -> Any:
    """Tournament selection of one parent (DEAP ``selTournament``)."""
    return tools.selTournament(population, 1, tournsize=k)[0]


def survivors(pool: list[Any], mu: int) -> list[Any]:
    """(mu + lambda) survival: the best ``mu`` distinct trees (ties broken by
    first appearance), topped up with the best duplicates when too few are
    distinct."""
    ranked = sorted(range(len(pool)), key=lambda i: (-pool[i].fitness.values[0], i))
    seen: set[str] = set()
    chosen, spare = [], []
    for i in ranked:
        key = str(pool[i])
        (spare if key in seen else chosen).append(pool[i])
        seen.add(key)
    return (chosen + spare)[:mu]


def _hall_of_fame_report(
    hof: tools.HallOfFame,
    pset: gp.PrimitiveSetTyped,
    markets: list[Market],
    cfg: RunConfig,
) -> list[dict[str, Any]]:
    """Genome, fitness and in-/out-of-sample metrics of each hall-of-fame member,
    with buy-and-hold over the same out-of-sample bars (the first market's;
    every market's under ``*_per_symbol`` when there are several)."""
    oos_arrays, bh = [], []
    for m in markets:
        t = m.bars["open_time"].to_numpy().astype(np.int64)
        o = m.bars["open"].to_numpy().astype(np.float64)
        c = m.bars["close"].to_numpy().astype(np.float64)
        a, b = m.split.out_of_sample
        oos_arrays.append((o[a:b], c[a:b], t[a:b], bars_since_gap(t), (a, b)))
        bh.append(buy_and_hold(o[a:b], c[a:b], t[a:b], cfg.backtest).to_dict())
    members = []
    pool = BufferPool()
    for rank, ind in enumerate(hof):
        genome = genome_from_individual(ind, pset)
        oos = []
        for m, (o, c, t, bsg, (a, b)) in zip(markets, oos_arrays):
            pos = genome_positions(genome, m.features, bsg, pool)
            oos.append(run_backtest(o, c, t, pos[a:b], cfg.backtest).metrics.to_dict())
        genome = dataclasses.replace(
            genome, meta={"run_fitness": float(ind.fitness.values[0]), "rank": rank,
                          "in_sample": ind.metrics, "out_of_sample": oos[0]},
        )
        member = {
            "rank": rank,
            "fitness": float(ind.fitness.values[0]),
            "expression": str(ind),
            "size": len(ind),
            "genome": genome.to_dict(),
            "in_sample": ind.metrics,
            "out_of_sample": oos[0],
            "out_of_sample_buy_and_hold": bh[0],
        }
        if len(markets) > 1:
            member["out_of_sample_per_symbol"] = {m.symbol: x for m, x in zip(markets, oos)}
            member["out_of_sample_buy_and_hold_per_symbol"] = {m.symbol: x for m, x in zip(markets, bh)}
        members.append(member)
    return members
