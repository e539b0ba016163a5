"""Registry of base features: causal, gap-aware, one (n,) float64 series each.

Every feature's value at bar t uses only bars <= t (no look-ahead) and never
reaches across a data gap: it is NaN until its window has refilled after a
gap.  Multi-timeframe (MTFA) features use 5m / 15m / 1h bars aligned to UTC
boundaries; a higher bar becomes visible at the close of its last 1-minute
bar (the moment it closes) and only if all its minutes are present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import polars as pl

from forge.core.errors import ConfigError
from forge.data.gaps import bars_since_gap
from forge.data.schema import BAR_MS
from forge.features import features_nb as K


@dataclass(frozen=True)
class BarArrays:
    """The columns features read: (n,) float64 prices/volumes, int64 times and bsg."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    taker_buy_volume: np.ndarray
    bsg: np.ndarray

    @classmethod
    def from_bars(cls, bars: pl.DataFrame) -> BarArrays:
        def col(name: str, dtype=np.float64) -> np.ndarray:
            return np.ascontiguousarray(bars[name].to_numpy(), dtype=dtype)

        t = col("open_time", np.int64)
        return cls(t, col("open"), col("high"), col("low"), col("close"), col("volume"), col("taker_buy_volume"),
                   bars_since_gap(t))


@dataclass(frozen=True)
class FeatureSpec:
    """name; lookback: bars of history before the current bar needed for a
    value (its warm-up after a gap); description with units; compute."""

    name: str
    lookback: int
    description: str
    compute: Callable[[BarArrays], np.ndarray]


def _out(b: BarArrays) -> np.ndarray:
    return np.empty(b.close.shape[0])


def _ret(b: BarArrays, k: int) -> np.ndarray:
    out = _out(b)
    K.log_return_nb(b.close, b.bsg, k, out)
    return out


def _vol(b: BarArrays, w: int) -> np.ndarray:
    out = _out(b)
    K.rolling_mean_std_nb(_ret(b, 1), b.bsg, w, w, True, 1, out)
    return out


def _rsi(b: BarArrays, period: int = 14) -> np.ndarray:
    out = _out(b)
    K.wilder_rsi_nb(b.close, b.bsg == 0, period, out)
    return out


def _atr(b: BarArrays, period: int = 14) -> np.ndarray:
    out = _out(b)
    K.wilder_atr_nb(b.high, b.low, b.close, b.bsg, period, out)
    return out


def _clv(b: BarArrays) -> np.ndarray:
    rng = b.high - b.low
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rng > 0, ((b.close - b.low) - (b.high - b.close)) / rng, 0.0)


def _taker_imb(b: BarArrays) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b.volume > 0, 2.0 * b.taker_buy_volume / b.volume - 1.0, 0.0)


def _taker_imb_mean(b: BarArrays, w: int) -> np.ndarray:
    out = _out(b)
    K.rolling_mean_std_nb(_taker_imb(b), b.bsg, w, w - 1, False, 0, out)
    return out


def _vol_z(b: BarArrays, w: int) -> np.ndarray:
    out = _out(b)
    K.zscore_nb(np.log1p(b.volume), b.bsg, w, out)
    return out


def _buckets(b: BarArrays, minutes: int):
    """Higher-timeframe buckets: (bucket arrays, per-bar mapping to the latest visible bucket)."""
    size = minutes * BAR_MS
    bid = b.open_time // size
    minute_in = (b.open_time - bid * size) // BAR_MS
    starts = np.concatenate(([True], bid[1:] != bid[:-1]))
    first = np.flatnonzero(starts)
    last = np.concatenate((first[1:] - 1, [bid.shape[0] - 1]))
    count = last - first + 1
    complete = count == minutes
    bucket_pos = np.cumsum(starts) - 1
    vis = np.empty(bid.shape[0], dtype=np.int64)
    K.higher_tf_map_nb(minute_in.astype(np.int64), bucket_pos.astype(np.int64), complete, b.bsg, minutes, vis)
    return bid[first], first, last, complete, vis


def _mtf_ret(b: BarArrays, minutes: int) -> np.ndarray:
    """Log return (close / open) of the latest completed higher bar."""
    _ids, first, last, _complete, vis = _buckets(b, minutes)
    r = np.log(b.close[last] / b.open[first])
    return np.where(vis >= 0, r[np.maximum(vis, 0)], np.nan)


def _mtf_rsi(b: BarArrays, minutes: int, period: int = 14) -> np.ndarray:
    """Wilder RSI over consecutive completed higher bars' closes (reset when one is missing)."""
    ids, _first, last, complete, vis = _buckets(b, minutes)
    closes = b.close[last]
    starts = np.ones(ids.shape[0], dtype=np.bool_)
    starts[1:] = ~(complete[1:] & complete[:-1] & (np.diff(ids) == 1))
    starts |= ~complete
    rsi = np.empty(ids.shape[0])
    K.wilder_rsi_nb(closes, starts, period, rsi)
    return np.where(vis >= 0, rsi[np.maximum(vis, 0)], np.nan)


FEATURES: dict[str, FeatureSpec] = {}


def _register(name: str, lookback: int, description: str, fn: Callable[[BarArrays], np.ndarray]) -> None:
    FEATURES[name] = FeatureSpec(name, lookback, description, fn)


for _k in (1, 5, 15, 60):
    _register(f"ret_{_k}", _k, f"log return over {_k} bar(s): log(close_t / close_t-{_k}) (dimensionless)",
              partial(_ret, k=_k))
for _w in (20, 60, 240):
    _register(f"vol_{_w}", _w, f"std (ddof=1) of 1-bar log returns over {_w} bars (per-bar, dimensionless)",
              partial(_vol, w=_w))
_register("rsi_14", 14, "Wilder RSI over 14 bars (0..100)", _rsi)
_register("atr_14", 14, "Wilder ATR over 14 bars / close (fraction of price)", _atr)
_register("clv", 0, "close location value ((c-l)-(h-c))/(h-l) in [-1, 1]; 0 when h == l", _clv)
_register("taker_imb", 0, "taker-buy imbalance 2*taker_buy_volume/volume - 1 in [-1, 1] (kline order-flow proxy)",
          _taker_imb)
_register("taker_imb_20", 19, "20-bar mean of taker_imb", partial(_taker_imb_mean, w=20))
_register("vol_z_60", 59, "z-score of log(1+volume) against the last 60 bars (ddof=1)", partial(_vol_z, w=60))
for _m, _label in ((5, "5m"), (15, "15m"), (60, "1h")):
    _register(f"mtf_ret_{_label}", 2 * _m - 1,
              f"log(close/open) of the latest completed {_label} bar (visible from its close)",
              partial(_mtf_ret, minutes=_m))
_register("mtf_rsi_1h", 15 * 60 + 59, "Wilder RSI(14) over completed 1h closes (0..100)",
          partial(_mtf_rsi, minutes=60))

DEFAULT_FEATURES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_15", "ret_60", "vol_20", "vol_240", "rsi_14", "atr_14", "clv", "taker_imb",
    "taker_imb_20", "vol_z_60", "mtf_ret_5m", "mtf_ret_15m", "mtf_ret_1h", "mtf_rsi_1h",
)
"""The GP's default terminals (16 features)."""


def feature_names() -> tuple[str, ...]:
    """Every registered feature name."""
    return tuple(FEATURES)


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of one bar frame.

    names: feature names; values: (k, n) float64 C-contiguous, row i =
    names[i], column j = bar j (NaN during warm-ups); lookbacks: warm-up
    bars per feature.
    """

    names: tuple[str, ...]
    values: np.ndarray
    lookbacks: tuple[int, ...]

    def row(self, name: str) -> np.ndarray:
        """(n,) float64 values of one feature; raises KeyError for an unknown name."""
        return self.values[self.names.index(name)]


def compute_features(bars: pl.DataFrame, names: Sequence[str] = DEFAULT_FEATURES) -> FeatureMatrix:
    """Compute registered features on a bar frame (BAR_SCHEMA, strictly increasing).

    returns FeatureMatrix (k = len(names)).  raises ConfigError for an unknown
    name (listing the known ones).
    """
    names = tuple(names)
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature(s) {unknown}; known features: {', '.join(FEATURES)}")
    b = BarArrays.from_bars(bars)
    values = np.empty((len(names), b.close.shape[0]))
    for i, n in enumerate(names):
        values[i] = FEATURES[n].compute(b)
    return FeatureMatrix(names=names, values=values, lookbacks=tuple(FEATURES[n].lookback for n in names))
