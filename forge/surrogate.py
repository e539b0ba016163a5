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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from forge.core.rng import shielded_global_random
from forge.gp.genome import Genome
from forge.gp.primitives import PRIMITIVES


@dataclass(frozen=True)
class SurrogateSection:
    """``[surrogate]`` config.

    enabled: screen offspring with the model; candidates_factor: candidate
    offspring generated per generation = factor x offspring; top_fraction:
    share of candidates fully evaluated by predicted rank (default 2%);
    explore_fraction: extra share picked uniformly at random (exploration);
    min_train: evaluated samples before the model is trusted (until then
    candidates are picked at random); proxy_bars: bars of each proxy window;
    proxy_windows: windows spread evenly over the in-sample segment (the
    last one ends with it), joined into the one proxy segment on which the
    proxy statistics are computed (a join is a gap: no look-back crosses it);
    n_estimators / num_leaves / learning_rate: LightGBM parameters.
    """

    enabled: bool = True
    candidates_factor: int = 50
    top_fraction: float = 0.02
    explore_fraction: float = 0.005
    min_train: int = 64
    proxy_bars: int = 2000
    proxy_windows: int = 4
    n_estimators: int = 150
    num_leaves: int = 15
    learning_rate: float = 0.08


    def validate(self) -> None:
        from forge.core.errors import ConfigError

        if self.proxy_bars < 10 or self.proxy_windows < 1:
            raise ConfigError(f"surrogate: need proxy_bars >= 10 and proxy_windows >= 1, got {self.proxy_bars}, "
                              f"{self.proxy_windows}")


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

    def __init__(self, cfg: SurrogateSection, seed: int):
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
            import lightgbm as lgb

            self._fit_with(lgb)

    def _fit_with(self, lgb) -> None:
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

