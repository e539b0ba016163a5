"""What evolution reads: one symbol's bars, features and split (:class:`Market`), and the contiguous
in-sample arrays fitness evaluation runs on (:class:`MarketArrays`, a "segment")."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from forge.backtest.fills import FillModel, KlineInputs
from forge.data.gaps import bars_since_gap
from forge.data.loader import Coverage
from forge.data.split import Split, holdout_split
from forge.features import FeatureMatrix
from forge.gp import Genome
from forge.strategy import strategy_features

__all__ = ["Market", "MarketArrays", "content_token"]


def content_token(names: tuple[str, ...], X: np.ndarray, close: np.ndarray) -> str:
    """sha256 of a segment's feature names, features and closes (keys the workers' subtree caches)."""
    h = hashlib.sha256(repr(tuple(names)).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(close, dtype=np.float64).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class MarketArrays:
    """The arrays fitness evaluation reads (one contiguous row range).

    X: (k, n) float64 features; open_/close: (n,) float64 USDT per unit;
    open_time: (n,) int64 ms; bars_since_gap: (n,) int64.  token: identity
    of the segment (keys the workers' subtree caches).  kline: the kline fill model's inputs on the same
    rows (``forge.backtest.fills.KlineInputs``; None when the run's fill model is taker).
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
    kline: KlineInputs | None = None

    @classmethod
    def from_bars(cls, bars: pl.DataFrame, features: FeatureMatrix, rows: tuple[int, int],
                  symbol: str = "", fill: FillModel | None = None) -> MarketArrays:
        """The rows [a, b) of ``bars``; fill: the run's fill model (its kline inputs are computed on the bars
        up to b, so the half-spread estimate at the first row sees the bars before it: causal)."""
        a, b = rows
        t = bars["open_time"].to_numpy()
        bsg = bars_since_gap(t)
        kline = None
        if fill is not None and not fill.taker:
            cols = [bars[k].to_numpy()[:b] for k in ("high", "low", "close", "volume")]
            kline = fill.inputs(*cols).rows(a, b)
        return cls(
            feature_names=tuple(features.names),
            feature_lookbacks=tuple(features.lookbacks),
            X=np.ascontiguousarray(features.values[:, a:b]),
            open_=np.ascontiguousarray(bars["open"].to_numpy()[a:b], dtype=np.float64),
            close=np.ascontiguousarray(bars["close"].to_numpy()[a:b], dtype=np.float64),
            open_time=np.ascontiguousarray(t[a:b], dtype=np.int64),
            bars_since_gap=np.ascontiguousarray(bsg[a:b]),
            token=content_token(features.names, features.values[:, a:b], bars["close"].to_numpy()[a:b]),
            symbol=symbol, kline=kline,
        )

    @property
    def features(self) -> FeatureMatrix:
        """The segment's features as a FeatureMatrix (no copy)."""
        return FeatureMatrix(names=self.feature_names, values=self.X, lookbacks=self.feature_lookbacks)

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
            kline=self.kline.take(idx) if self.kline is not None else None,
        )

    def tail(self, n: int) -> MarketArrays:
        """The last ``n`` bars."""
        return dataclasses.replace(
            self, X=np.ascontiguousarray(self.X[:, -n:]), open_=self.open_[-n:].copy(), close=self.close[-n:].copy(),
            open_time=self.open_time[-n:].copy(), bars_since_gap=self.bars_since_gap[-n:].copy(),
            token=Genome.canonical_hash(f"{self.token}|tail{n}"),
            kline=self.kline.take(np.arange(self.open_.shape[0] - n, self.open_.shape[0])) if self.kline is not None
            else None,
        )


@dataclass(frozen=True)
class Market:
    """One symbol's bars, coverage, features and holdout split.  A panel market (``forge.data.panel``): bars
    is the panel frame on the traded instrument's clock, symbol its tag (``FILUSDT_perp``), coverage the
    traded instrument's, universe the manifest's record (instruments, per-instrument coverage, funding)."""

    symbol: str
    bars: pl.DataFrame
    coverage: Coverage | None
    features: FeatureMatrix
    split: Split
    universe: dict[str, Any] | None = None

    @classmethod
    def build(cls, symbol: str, bars: pl.DataFrame, coverage: Coverage | None, names: tuple[str, ...],
              in_sample_fraction: float, library: Any = None, regimes: Any = None,
              universe: dict[str, Any] | None = None) -> Market:
        split = holdout_split(bars["open_time"].to_numpy(), in_sample_fraction)
        return cls(symbol, bars, coverage, strategy_features(bars, names, library, regimes), split, universe)

    def select(self, names: tuple[str, ...]) -> Market:
        """The same market restricted to feature ``names`` (in that order)."""
        idx = [self.features.names.index(n) for n in names]
        fm = FeatureMatrix(names=tuple(names), values=np.ascontiguousarray(self.features.values[idx]),
                           lookbacks=tuple(self.features.lookbacks[i] for i in idx))
        return dataclasses.replace(self, features=fm)

    def in_sample_arrays(self, fill: FillModel | None = None) -> MarketArrays:
        """The in-sample segment fitness is computed on (with the kline inputs of ``fill`` unless taker)."""
        return MarketArrays.from_bars(self.bars, self.features, self.split.in_sample, self.symbol, fill)
