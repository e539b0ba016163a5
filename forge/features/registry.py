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
    """The columns features read: (n,) float64 prices/volumes, int64 times and bsg.

    quote_volume, count (trades, as float64) and taker_buy_quote_volume are optional for callers that hold
    only OHLCV (the features reading them raise ConfigError when they are None).
    """

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    taker_buy_volume: np.ndarray
    bsg: np.ndarray
    quote_volume: np.ndarray | None = None
    count: np.ndarray | None = None
    taker_buy_quote_volume: np.ndarray | None = None

    @classmethod
    def from_bars(cls, bars: pl.DataFrame) -> BarArrays:
        def col(name: str, dtype=np.float64) -> np.ndarray:
            return np.ascontiguousarray(bars[name].to_numpy(), dtype=dtype)

        t = col("open_time", np.int64)
        return cls(t, col("open"), col("high"), col("low"), col("close"), col("volume"), col("taker_buy_volume"),
                   bars_since_gap(t), col("quote_volume"), col("count"), col("taker_buy_quote_volume"))

    def need(self, name: str) -> np.ndarray:
        """The optional column ``name``; raises ConfigError when the caller did not provide it."""
        v = getattr(self, name)
        if v is None:
            raise ConfigError(f"feature needs the bar column {name!r}, which these bars do not carry")
        return v


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


def _log_z(x: np.ndarray, b: BarArrays, w: int) -> np.ndarray:
    out = _out(b)
    K.zscore_nb(np.log1p(x), b.bsg, w, out)
    return out


def _col_z(b: BarArrays, column: str, w: int) -> np.ndarray:
    """Rolling z-score of log(1 + column) (count, quote_volume, taker_buy_quote_volume)."""
    return _log_z(np.asarray(b.need(column), dtype=np.float64), b, w)


def _avg_trade(b: BarArrays) -> np.ndarray:
    """Average trade size in quote currency: quote_volume / count (0 for a bar without trades)."""
    qv, n = b.need("quote_volume"), np.asarray(b.need("count"), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, qv / np.maximum(n, 1.0), 0.0)


def _avg_trade_z(b: BarArrays, w: int) -> np.ndarray:
    return _log_z(_avg_trade(b), b, w)


# --------------------------------------------------------------------------- the clock (UTC)

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
WEEK_OFFSET_MS = 3 * DAY_MS
"""The Unix epoch (1970-01-01) was a Thursday: open_time + 3 days is a multiple of a week at Monday 00:00 UTC."""


def _phase(b: BarArrays, period_ms: int, offset_ms: int = 0) -> np.ndarray:
    """Position of each bar's open inside a UTC cycle, in [0, 1)."""
    return ((b.open_time + offset_ms) % period_ms).astype(np.float64) / period_ms


def _cyc(b: BarArrays, period_ms: int, offset_ms: int, fn) -> np.ndarray:
    return fn(2.0 * np.pi * _phase(b, period_ms, offset_ms))


def _hour_utc(b: BarArrays) -> np.ndarray:
    return ((b.open_time % DAY_MS) // 3_600_000).astype(np.float64)


def _funding_minutes(b: BarArrays, interval_ms: int) -> np.ndarray:
    """Minutes from the bar's close to the next funding time (multiples of ``interval_ms`` UTC): 0 when the
    next bar opens at a funding time, so a position decided at this close is held into that funding."""
    close_ms = b.open_time + BAR_MS
    return ((-close_ms) % interval_ms).astype(np.float64) / BAR_MS


FUNDING_INTERVALS_H: tuple[int, ...] = (1, 2, 4, 8)
"""Funding intervals (hours) with a ``funding_min_<h>h`` terminal; the funding history picks the one
(``forge.data.funding``), 8 h when there is none."""


def funding_feature(interval_hours: int) -> str:
    """The terminal name of the minutes-to-funding clock for a funding interval: ``funding_min_<h>h``.
    raises ConfigError for an interval without a registered terminal."""
    if int(interval_hours) not in FUNDING_INTERVALS_H:
        raise ConfigError(f"no minutes-to-funding terminal for a {interval_hours} h funding interval; known: "
                          f"{', '.join(f'{h} h' for h in FUNDING_INTERVALS_H)}")
    return f"funding_min_{int(interval_hours)}h"


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
_register("count_z_60", 59, "z-score of log(1+trade count) against the last 60 bars (ddof=1)",
          partial(_col_z, column="count", w=60))
_register("qvol_z_60", 59, "z-score of log(1+quote_volume) against the last 60 bars (ddof=1; quote units)",
          partial(_col_z, column="quote_volume", w=60))
_register("tbqvol_z_60", 59, "z-score of log(1+taker_buy_quote_volume) against the last 60 bars (ddof=1)",
          partial(_col_z, column="taker_buy_quote_volume", w=60))
_register("avg_trade_z_60", 59, "z-score of log(1+quote_volume/count) (average trade size, quote units; 0 "
          "without trades) against the last 60 bars (ddof=1)", partial(_avg_trade_z, w=60))
_register("mod_sin", 0, "sin(2*pi*minute-of-day/1440) of the bar's open, UTC (-1..1)",
          partial(_cyc, period_ms=DAY_MS, offset_ms=0, fn=np.sin))
_register("mod_cos", 0, "cos(2*pi*minute-of-day/1440) of the bar's open, UTC (-1..1)",
          partial(_cyc, period_ms=DAY_MS, offset_ms=0, fn=np.cos))
_register("how_sin", 0, "sin(2*pi*hour-of-week/168) of the bar's open, UTC, week from Monday 00:00 (-1..1)",
          partial(_cyc, period_ms=WEEK_MS, offset_ms=WEEK_OFFSET_MS, fn=np.sin))
_register("how_cos", 0, "cos(2*pi*hour-of-week/168) of the bar's open, UTC, week from Monday 00:00 (-1..1)",
          partial(_cyc, period_ms=WEEK_MS, offset_ms=WEEK_OFFSET_MS, fn=np.cos))
_register("hour_utc", 0, "hour of day of the bar's open, UTC (0..23, categorical: compare with constants)",
          _hour_utc)
for _h in FUNDING_INTERVALS_H:
    _register(f"funding_min_{_h}h", 0, f"minutes from the bar's close to the next {_h}-hourly funding time UTC "
              f"(0..{_h * 60 - 1}; perpetuals funding every {_h} h)",
              partial(_funding_minutes, interval_ms=_h * 3_600_000))
for _m, _label in ((5, "5m"), (15, "15m"), (60, "1h")):
    _register(f"mtf_ret_{_label}", 2 * _m - 1,
              f"log(close/open) of the latest completed {_label} bar (visible from its close)",
              partial(_mtf_ret, minutes=_m))
_register("mtf_rsi_1h", 15 * 60 + 59, "Wilder RSI(14) over completed 1h closes (0..100)",
          partial(_mtf_rsi, minutes=60))

DEFAULT_FEATURES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_15", "ret_60", "vol_20", "vol_240", "rsi_14", "atr_14", "clv", "taker_imb",
    "taker_imb_20", "vol_z_60", "mtf_ret_5m", "mtf_ret_15m", "mtf_ret_1h", "mtf_rsi_1h",
    "count_z_60", "qvol_z_60", "tbqvol_z_60", "avg_trade_z_60",
    "mod_sin", "mod_cos", "how_sin", "how_cos", "hour_utc",
)
"""The GP's default terminals (25 features: price, volume, every kline column, the UTC clock).  A perpetual's
run adds its ``funding_min_<h>h`` (:func:`default_features`)."""

CLOCK_FEATURES: tuple[str, ...] = ("mod_sin", "mod_cos", "how_sin", "how_cos", "hour_utc",
                                   *(f"funding_min_{h}h" for h in FUNDING_INTERVALS_H))
"""Features that are functions of open_time only (identical on every instrument of a panel)."""


def default_features(market: str = "spot", funding_interval_hours: int | None = None) -> tuple[str, ...]:
    """The default terminals of one traded instrument: DEFAULT_FEATURES, plus the minutes-to-funding clock of
    its funding interval for a perpetual (market "futures"; 8 h when the interval is unknown)."""
    if market != "futures":
        return DEFAULT_FEATURES
    return DEFAULT_FEATURES + (funding_feature(funding_interval_hours or 8),)


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
