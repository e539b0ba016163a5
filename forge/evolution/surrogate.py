"""Surrogate-assisted screening: a LightGBM model ranks offspring before the full fitness.

Each generation produces many more candidate offspring than are fully
evaluated.  A LightGBM regressor, trained online on (cheap descriptors ->
true fitness) of every candidate evaluated so far, ranks them; only the top
``top_fraction`` plus a small random exploration quota get the full
backtest.  Descriptors (``describe``) cost microseconds per tree: shape,
primitive/terminal counts, window lengths, constants, lookback, and a proxy
score — the same fitness on a small contiguous data subsample.

References: Jin 2011 (surrogate-assisted evolutionary computation);
LightGBM (Ke et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from forge.core.rng import shielded_global_random
from forge.evolution.clock import PhaseClock
from forge.core.runconfig import SurrogateConfig
from forge.evolution.evaluator import Evaluator
from forge.gp.genome import Genome
from forge.gp.primitives import PRIMITIVES

__all__ = ["PROXY_STATS", "Screen", "Surrogate", "describe", "proxy_stats", "rank_correlation"]


_PRIM_INDEX = {p.name: i for i, p in enumerate(PRIMITIVES)}

PROXY_STATS = ("proxy_fitness", "proxy_sharpe", "proxy_trades", "proxy_exposure")
"""The proxy columns of a descriptor (see :func:`proxy_stats`)."""


def proxy_stats(fitness: float, metrics: dict) -> np.ndarray:
    """(4,) float64 proxy statistics of one candidate from its evaluation on the proxy windows:
    fitness, Sharpe (annualised), trade count, exposure (NaN where not finite)."""
    v = [fitness, metrics.get("sharpe", math.nan), metrics.get("n_trades", math.nan), metrics.get("exposure", math.nan)]
    out = np.asarray(v, dtype=np.float64)
    out[~np.isfinite(out)] = math.nan
    return out


def describe(genome: Genome, feature_names: Sequence[str], proxy: float | np.ndarray) -> np.ndarray:
    """Cheap descriptor vector of a strategy genome.

    proxy: the (4,) :func:`proxy_stats`, or a single proxy fitness (the other proxy columns NaN).
    returns: (d,) float64 = [size, n_primitives, n_constants, lookback,
    n_distinct_features, windows min/mean/max, mean log10|constant|,
    proxy statistics (``PROXY_STATS``), counts per primitive (len(PRIMITIVES)), counts per feature
    (len(feature_names))].
    """
    prim = np.zeros(len(PRIMITIVES))
    feat = np.zeros(len(feature_names))
    fidx = {n: i for i, n in enumerate(feature_names)}
    windows = []
    for tok in genome.tokens:
        kind, _, arg = tok.partition(":")
        if not arg:
            prim[_PRIM_INDEX[tok]] += 1
        elif kind == "feature" and arg in fidx:
            feat[fidx[arg]] += 1
        elif kind == "window":
            windows.append(int(arg))
    consts = np.abs(np.asarray(genome.constants, dtype=np.float64))
    head = [
        len(genome.tokens),
        float(prim.sum()),
        len(genome.constants),
        genome.lookback,
        len(genome.features),
        min(windows) if windows else 0.0,
        float(np.mean(windows)) if windows else 0.0,
        max(windows) if windows else 0.0,
        float(np.mean(np.log10(consts + 1e-12))) if consts.size else 0.0,
    ]
    pv = np.asarray(proxy, dtype=np.float64).ravel()
    if pv.size == 1:
        pv = np.array([pv[0]] + [math.nan] * (len(PROXY_STATS) - 1))
    return np.concatenate([np.asarray(head, dtype=np.float64), pv, prim, feat])


PROXY_COL = 9
"""Descriptor column of the mean proxy fitness (the ranking before the model exists)."""
N_HEAD = PROXY_COL + len(PROXY_STATS)
"""Descriptor columns before the per-primitive counts."""


class Surrogate:
    """Online LightGBM fitness model with rank-based screening.

    ``observe(X, y)`` adds evaluated samples; ``select(X, n_eval, rng)``
    returns indices of candidates to evaluate fully and their predictions.
    Deterministic for a given seed (LightGBM ``deterministic=True``,
    single thread).
    """

    def __init__(self, cfg: SurrogateConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        self.X: list[np.ndarray] = []
        self.y: list[float] = []
        self.model = None
        self.history: list[dict[str, float]] = []
        self.last_explore = np.zeros(0, dtype=np.int64)

    @property
    def n_train(self) -> int:
        return len(self.y)

    def observe(self, X: np.ndarray, y: Sequence[float]) -> None:
        """Add evaluated samples (X: (m, d) float64, y: (m,) true fitness) and refit."""
        for row, v in zip(np.atleast_2d(X), y):
            self.X.append(np.asarray(row, dtype=np.float64))
            self.y.append(float(v))
        if self.n_train >= self.cfg.min_train:
            self._fit()

    def _fit(self) -> None:
        with shielded_global_random():  # the first import of lightgbm draws from ``random``
            # imported on first use: the import costs ~1 s (scikit-learn, dask hooks) and is not needed
            # before min_train samples exist or when the surrogate is off
            import lightgbm as lgb

            self._fit_with(lgb)

    def _fit_with(self, lgb: Any) -> None:
        self.model = lgb.LGBMRegressor(
            n_estimators=self.cfg.n_estimators, num_leaves=self.cfg.num_leaves,
            learning_rate=self.cfg.learning_rate, min_child_samples=5, subsample=1.0,
            colsample_bytree=1.0, deterministic=True, force_row_wise=True, n_jobs=1,
            random_state=self.seed, verbose=-1,
        )
        self.model.fit(np.vstack(self.X), np.asarray(self.y))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(m,) predicted fitness; falls back to the proxy score before the model exists."""
        X = np.atleast_2d(X)
        if self.model is None:
            return X[:, PROXY_COL].copy()
        return np.asarray(self.model.predict(X), dtype=np.float64)

    def select(self, X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Indices of candidates to evaluate: the top ``top_fraction`` by
        prediction plus ``explore_fraction`` drawn at random from the rest
        (at least one each).  Before ``min_train`` samples, all picks are
        random.  returns (indices (k,) int64, predictions (m,) float64); ``last_explore`` holds the
        randomly picked indices (an unbiased sample of the candidates below the top, used to measure the
        surrogate's rank correlation outside its own selection)."""
        m = X.shape[0]
        pred = self.predict(X)
        self.last_explore = np.zeros(0, dtype=np.int64)
        n_top = max(1, int(round(self.cfg.top_fraction * m)))
        n_explore = max(1, int(round(self.cfg.explore_fraction * m)))
        if self.model is None:
            picked = rng.choice(m, size=min(m, n_top + n_explore), replace=False)
            self.last_explore = np.sort(picked).astype(np.int64)
            return np.sort(picked), pred
        order = np.lexsort((np.arange(m), -pred))
        top = order[:n_top]
        rest = order[n_top:]
        explore = rng.choice(rest, size=min(len(rest), n_explore), replace=False) if len(rest) else rest
        self.last_explore = np.sort(explore).astype(np.int64)  # a uniform sample of the non-top: hold-out for rho
        return np.sort(np.concatenate([top, explore])).astype(np.int64), pred


def rank_correlation(pred: Sequence[float], true: Sequence[float]) -> float:
    """Spearman rank correlation (scipy), NaN when fewer than 3 pairs or constant input."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if p.size < 3 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return math.nan
    return float(spearmanr(p, t).statistic)



class Screen:
    """The surrogate hook of the (mu + lambda) loop: breed ``factor`` x lambda candidates, fully evaluate the
    ones already known (free, from the memo) plus the surrogate's picks among the unknown, learn from them.

    surrogate: the model; evaluator: the full-fitness evaluator (its memo says what is known);
    proxy: evaluator on the proxy windows (descriptor statistics); feature_names: the run's terminals;
    to_genome: individual -> Genome; evaluate: individuals -> number of new full evaluations (sets fitness).
    """

    def __init__(self, surrogate: Surrogate, evaluator: Evaluator, proxy: Evaluator, feature_names: Sequence[str],
                 to_genome: Callable[[Any], Genome], evaluate: Callable[[list[Any]], int]):
        self.surrogate, self.evaluator, self.proxy = surrogate, evaluator, proxy
        self.feature_names, self.to_genome, self.evaluate = tuple(feature_names), to_genome, evaluate
        self.factor = surrogate.cfg.candidates_factor

    def descriptors(self, genomes: list[Genome], clock: PhaseClock | None = None) -> np.ndarray:
        """(m, d) descriptors of ``genomes``, proxy statistics included.  clock: times the proxy backtests
        (``surrogate_proxy``) and the descriptor vectors (``surrogate_descriptors``)."""
        clock = clock or PhaseClock()
        with clock.phase("surrogate_proxy"):
            proxied = self.proxy.evaluate(genomes)
        with clock.phase("surrogate_descriptors"):
            stats = [proxy_stats(f, m) for f, m in proxied]
            return np.vstack([describe(g, self.feature_names, p) for g, p in zip(genomes, stats)])

    def observe(self, individuals: list[Any], clock: PhaseClock | None = None) -> None:
        """Learn from evaluated individuals (generation 0)."""
        clock = clock or PhaseClock()
        with clock.phase("surrogate_descriptors"):
            genomes = [self.to_genome(ind) for ind in individuals]
        X = self.descriptors(genomes, clock)
        with clock.phase("surrogate_ranking"):
            self.surrogate.observe(X, [ind.fitness.values[0] for ind in individuals])

    def screen(self, candidates: list[Any], rng: np.random.Generator, clock: PhaseClock | None = None
               ) -> tuple[list[Any], int, dict[str, Any]]:
        """(offspring with fitness, new full evaluations, log fields ``surrogate_spearman`` on the evaluated
        picks and ``surrogate_spearman_holdout`` on the random exploration picks).  clock: times the
        surrogate's phases and the full fitness (``forge.evolution.clock``)."""
        clock = clock or PhaseClock()
        with clock.phase("surrogate_descriptors"):
            genomes = [self.to_genome(c) for c in candidates]
            first: dict[str, int] = {}
            for i, g in enumerate(genomes):
                first.setdefault(g.sha256, i)
            known = [i for i in first.values() if genomes[i].sha256 in self.evaluator.memo]
            unknown = [i for i in first.values() if genomes[i].sha256 not in self.evaluator.memo]
            offspring = [candidates[i] for i in known]
        extra: dict[str, Any] = {"surrogate_spearman": None, "surrogate_spearman_holdout": None}
        if not unknown:
            with clock.phase("fitness"):
                return offspring, self.evaluate(offspring), extra
        X = self.descriptors([genomes[i] for i in unknown], clock)
        with clock.phase("surrogate_ranking"):
            picked, pred = self.surrogate.select(X, rng)
            chosen = [candidates[unknown[j]] for j in picked]
        with clock.phase("fitness"):
            nevals = self.evaluate(chosen + offspring)
        with clock.phase("surrogate_ranking"):
            true = [c.fitness.values[0] for c in chosen]
            extra["surrogate_spearman"] = rank_correlation(pred[picked], true)
            held = np.isin(picked, self.surrogate.last_explore)  # the random picks: an unbiased sample
            extra["surrogate_spearman_holdout"] = rank_correlation(pred[picked][held], np.asarray(true)[held])
            self.surrogate.observe(X[picked], true)
        return chosen + offspring, nevals, extra
