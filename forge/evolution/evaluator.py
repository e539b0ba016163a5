"""Fitness evaluation of genomes on the in-sample segments: in-process, on joblib (loky) workers or on a
Dask cluster, with a per-process subtree cache and a run-wide memo.

Results never depend on the number of workers, the backend or the cache: a genome's fitness is a pure
function of (genome, segments, costs, fitness config).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from forge.backtest import BacktestConfig, backtest_metrics, run_backtest
from forge.backtest.fills import FillModel, KlineInputs
from forge.core.errors import ConfigError
from forge.core.rundir import EvaluatedRecord
from forge.core.rng import shielded_global_random
from forge.core.runconfig import FitnessConfig
from forge.evolution.fitness import MarketReference, backtest_fitness, market_reference, skill_fitness, uses_returns
from forge.evolution.market import MarketArrays
from forge.gp import BufferPool, Genome
from forge.gp.cache import SubtreeCache
from forge.strategy import genome_positions

__all__ = ["Evaluator", "EvaluatedRecord", "SharedSegments", "evaluate_chunk"]

Result = tuple[float, dict[str, Any]]
"""(fitness, in-sample metrics dict) of one genome."""

_WORKER_CACHE: dict[str, SubtreeCache] = {}
_WORKER_MARKET: dict[tuple[str, BacktestConfig], MarketReference] = {}
_ARRAYS = ("X", "open_", "close", "open_time", "bars_since_gap")
_KLINE = ("high", "low", "volume", "half_spread")
_SHARED: dict[str, tuple[MarketArrays, ...]] = {}


WORKER_MEMORY_GROWTH = 1 << 40
"""Bytes a loky worker may grow by after its first task before loky restarts it (``_worker_init``)."""


def _worker_init(max_growth: int) -> None:
    """Initializer of this evaluator's loky workers: raise loky's memory-leak bound to ``max_growth`` bytes.

    loky measures a worker's RSS after its first task and restarts the worker when it has grown by more
    than 300 MB (``joblib.externals.loky.process_executor._MAX_MEMORY_LEAK_SIZE``).  These workers grow
    by design -- the subtree cache (up to ``subtree_cache_mb``), the co-evolution arena's quiet markets
    (at most 65), the pages of the memory-mapped segments -- so the heuristic restarted them every few
    generations on a year of bars, and each restart paid the imports, the kernels' load from numba's
    cache and the refill of every cache (``benchmarks/RESULTS.md``, issue 21).  Their memory is bounded
    by configuration instead; the bound is one constant so the fitness and proxy evaluators keep sharing
    joblib's one reusable executor (different initializer arguments would make joblib replace it)."""
    from joblib.externals.loky import process_executor

    process_executor._MAX_MEMORY_LEAK_SIZE = max_growth


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


def _market(data: MarketArrays, bt: BacktestConfig) -> MarketReference:
    """This process's market reference of a segment (computed once per segment and costs)."""
    key = (data.token, bt)
    ref = _WORKER_MARKET.get(key)
    if ref is None:
        if len(_WORKER_MARKET) > 16:
            _WORKER_MARKET.clear()
        ref = _WORKER_MARKET[key] = market_reference(data.open_, data.close, data.open_time, bt)
    return ref


def _score(genome: Genome, data: MarketArrays, cache: SubtreeCache | None, pool: BufferPool, bt: BacktestConfig,
           fit: FitnessConfig, max_size: int, fill: FillModel | None = None, proxy: bool = False
           ) -> tuple[float, dict[str, Any]]:
    """(fitness, metrics dict) of one genome on one segment; fill: the run's fill model (None = taker);
    proxy: the surrogate's proxy screen (``skill_fitness(proxy=True)``)."""
    pos = genome_positions(genome, data.features, data.bars_since_gap, pool, cache)
    if fill is None or fill.taker:
        if not uses_returns(fit):
            m = backtest_metrics(data.open_, data.close, data.open_time, pos, bt)
            return backtest_fitness(m, len(genome.tokens), max_size, fit), m.to_dict()
        res = run_backtest(data.open_, data.close, data.open_time, pos, bt)
    else:
        res = fill.run(data.open_, data.close, data.open_time, pos, bt, data.kline)
        if not uses_returns(fit):
            return backtest_fitness(res.metrics, len(genome.tokens), max_size, fit), res.metrics.to_dict()
    f, parts = skill_fitness(res.metrics, res.returns, _market(data, bt), len(genome.tokens), max_size, fit,
                             bt.periods_per_year, proxy)
    return f, {**res.metrics.to_dict(), **parts}


@dataclass(frozen=True)
class SharedSegments:
    """A picklable handle on segments written once to ``folder`` as .npy files: workers map them
    read-only (``np.load(mmap_mode="r")``, the OS page cache shared by every process) instead of
    receiving the arrays with each task."""

    folder: str
    # (names, lookbacks, token, symbol, the kline inputs' tick or None when the segment has none)
    meta: tuple[tuple[tuple[str, ...], tuple[int, ...], str, str, float | None], ...]

    @classmethod
    def write(cls, segments: tuple[MarketArrays, ...], folder: str) -> SharedSegments:
        for i, seg in enumerate(segments):
            for name in _ARRAYS:
                np.save(os.path.join(folder, f"{i}_{name}.npy"), getattr(seg, name))
            if seg.kline is not None:
                for name in _KLINE:
                    np.save(os.path.join(folder, f"{i}_{name}.npy"), getattr(seg.kline, name))
        return cls(folder, tuple((s.feature_names, s.feature_lookbacks, s.token, s.symbol,
                                  s.kline.tick if s.kline is not None else None) for s in segments))

    def load(self) -> tuple[MarketArrays, ...]:
        """The segments (cached per process)."""
        got = _SHARED.get(self.folder)
        if got is None:
            _SHARED.clear()  # one run's segments at a time per worker

            def arrays(i: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
                return {n: np.load(os.path.join(self.folder, f"{i}_{n}.npy"), mmap_mode="r") for n in names}

            got = _SHARED[self.folder] = tuple(
                MarketArrays(names, lookbacks, token=token, symbol=symbol, **arrays(i, _ARRAYS),
                             kline=KlineInputs(**arrays(i, _KLINE), tick=tick) if tick is not None else None)
                for i, (names, lookbacks, token, symbol, tick) in enumerate(self.meta))
        return got


def evaluate_chunk(
    genomes: list[Genome] | list[dict[str, Any]],
    segments: tuple[MarketArrays, ...] | SharedSegments,
    bt: BacktestConfig,
    fit: FitnessConfig,
    max_size: int,
    cache_mb: int = 0,
    aggregate: str = "mean",
    fill: FillModel | None = None,
    proxy: bool = False,
) -> tuple[list[Result], int, int]:
    """Fitness and in-sample metrics of each genome (runs in a worker).

    genomes: Genome objects (the evaluator sends these: they were validated when built, and unpickling
    skips the re-parse and checksum of ``Genome.from_dict``, ~13% of a proxy evaluation) or genome dicts
    (validated here).

    segments: one in-sample segment per symbol; the fitness is the mean (or
    the worst, ``aggregate="worst"``) over segments; metrics are the first
    segment's, plus ``per_symbol`` when there are several.  fill: the run's fill model
    (``forge.backtest.fills.FillModel``; None or taker = ``forge.backtest.run_backtest``).  proxy: the
    surrogate's proxy screen (the ``alpha`` scores by the one-pass kernel, ``skill_fitness(proxy=True)``).
    returns (results, subtree-cache hits, misses, CPU seconds of this process for the chunk) for this chunk.
    """
    t0 = time.process_time()
    if isinstance(segments, SharedSegments):
        segments = segments.load()
    pool = BufferPool()
    caches = [_worker_cache(d, cache_mb, len(segments)) for d in segments]
    before = sum(c.hits for c in caches if c), sum(c.misses for c in caches if c)
    out = []
    for gd in genomes:
        genome = gd if isinstance(gd, Genome) else Genome.from_dict(gd)
        fits, mets = [], []
        for data, cache in zip(segments, caches):
            f, met = _score(genome, data, cache, pool, bt, fit, max_size, fill, proxy)
            fits.append(f)
            mets.append(met)
        metrics = dict(mets[0])
        if len(segments) > 1:
            metrics["per_symbol"] = {d.symbol: {"fitness": f, **m} for d, f, m in zip(segments, fits, mets)}
        out.append((float(min(fits)) if aggregate == "worst" else float(np.mean(fits)), metrics))
    after = sum(c.hits for c in caches if c), sum(c.misses for c in caches if c)
    return out, after[0] - before[0], after[1] - before[1], time.process_time() - t0


class Evaluator:
    """Evaluates genomes on the in-sample arrays, in-process or with joblib workers.

    A fitness memo keyed by the genome's sha256 means identical trees are
    evaluated once per run; ``n_evaluated`` counts full evaluations.  With
    ``cache_mb`` > 0 every worker keeps a subtree cache (``forge.gp.cache``)
    for the segment; ``cache_hits`` / ``cache_misses`` sum its lookups;
    ``cpu_seconds`` sums the process CPU time the evaluations took where they ran.
    ``map`` runs any picklable task on the same workers (co-evolution's encounters use it).
    Results never depend on the number of workers or on the cache.
    """

    def __init__(self, data: MarketArrays | tuple[MarketArrays, ...], bt: BacktestConfig, fit: FitnessConfig,
                 max_size: int, jobs: int, cache_mb: int = 0, backend: str = "loky", scheduler: str = "",
                 aggregate: str = "mean", fill: FillModel | None = None, proxy: bool = False):
        self.data = (data,) if isinstance(data, MarketArrays) else tuple(data)
        self.bt, self.fit, self.max_size, self.jobs, self.aggregate = bt, fit, max_size, jobs, aggregate
        self.proxy = proxy  # the surrogate's proxy screen: skill_fitness(proxy=True)
        self.fill = fill  # the run's fill model (None or taker: forge.backtest.run_backtest)
        if fill is not None and not fill.taker and any(d.kline is None for d in self.data):
            raise ConfigError(f"[execution] mode {fill.execution.mode!r}: a segment has no kline inputs "
                              "(build it with MarketArrays.from_bars(..., fill=...))")
        self.cache_mb = cache_mb
        self.memo: dict[str, Result] = {}
        self.genomes: dict[str, Genome] = {}
        self.n_evaluated = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.cpu_seconds = 0.0  # CPU seconds the evaluations took in the processes that ran them (counter)
        self.backend, self.scheduler = backend, scheduler
        self._client = None
        self._data_future = None
        self._parallel = (Parallel(n_jobs=jobs, backend="loky", initializer=_worker_init, initargs=(WORKER_MEMORY_GROWTH,))
                          if backend == "loky" and jobs > 1 else None)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._shared: SharedSegments | None = None

    def __enter__(self) -> Evaluator:
        if self.backend == "dask":
            self._connect_dask()
        elif self._parallel is not None:
            self._parallel.__enter__()
            # the segments go to the workers once, as memory-mapped files; tasks carry a small handle
            self._tmp = tempfile.TemporaryDirectory(prefix="forge-segments-")
            self._shared = SharedSegments.write(self.data, self._tmp.name)
        return self

    def _connect_dask(self) -> None:
        try:
            from distributed import Client  # optional dependency ("cluster" extra): imported only when asked for
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

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._parallel is not None:
            self._parallel.__exit__(*exc)
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def _run_chunks(self, dicts: list[Genome]) -> tuple[list[Result], int, int, float]:
        """(results in the order of ``dicts`` (genomes), cache hits, cache misses, CPU seconds in the workers)."""
        args = (self.bt, self.fit, self.max_size, self.cache_mb, self.aggregate, self.fill, self.proxy)
        if self._client is None and self._parallel is None:
            return self.map(evaluate_chunk, [(dicts, self.data, *args)])[0]
        # strided chunks (genome i goes to chunk i mod n): neighbours in the population tend to have
        # similar cost, so contiguous chunks leave one worker idle at the end of a generation
        n_chunks = min(len(dicts), self.jobs * 4)
        index = [list(range(c, len(dicts), n_chunks)) for c in range(n_chunks)]
        data = self._data_future if self._client is not None else self._shared
        parts = self.map(evaluate_chunk, [([dicts[i] for i in ix], data, *args) for ix in index])
        results: list[Any] = [None] * len(dicts)
        for ix, (part, _h, _m, _c) in zip(index, parts):
            for i, r in zip(ix, part):
                results[i] = r
        return (results, sum(p[1] for p in parts), sum(p[2] for p in parts), sum(p[3] for p in parts))

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

    def remember(self, record: EvaluatedRecord) -> None:
        """Put an earlier evaluation back into the memo (resume from ``evaluated.jsonl``)."""
        self.memo[record.sha256] = (record.fitness, record.in_sample)
        self.genomes[record.sha256] = record.genome

    def evaluate(self, genomes: list[Genome],
                 on_new: Callable[[list[EvaluatedRecord]], None] | None = None) -> list[Result]:
        """(fitness, metrics) of each genome, in order; genomes not in the memo are evaluated once each.
        on_new: called with the fresh evaluations (first-appearance order) before returning."""
        todo: dict[str, Genome] = {}
        for g in genomes:
            if g.sha256 not in self.memo and g.sha256 not in todo:
                todo[g.sha256] = g
        keys = list(todo)
        if keys:
            results, hits, misses, cpu = self._run_chunks([todo[k] for k in keys])
            self.cache_hits += hits
            self.cache_misses += misses
            self.cpu_seconds += cpu
            for g in genomes:
                self.genomes.setdefault(g.sha256, g)
            for k, r in zip(keys, results):
                self.memo[k] = r
            self.n_evaluated += len(keys)
            if on_new is not None:
                on_new([EvaluatedRecord(k, self.genomes[k], r[0], r[1]) for k, r in zip(keys, results)])
        return [self.memo[g.sha256] for g in genomes]
