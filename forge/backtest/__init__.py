"""Bar backtester: target exposures in, equity, trades and metrics out.

Conventions (the same in evolution, the gauntlet and live replay):

* ``position[t]`` is the target exposure decided at the close of bar t, a
  fraction of current equity in [-1, 1] (negative = short; NaN -> 0, values
  outside [-1, 1] are clipped).  It fills at the **open of bar t+1**, and only
  when it differs from ``position[t-1]`` (``position[-1] = 0``); the target
  of the last bar therefore never fills.
* A fill at open ``o`` with pre-trade equity ``E`` sets
  ``units = target * E / fill_price``; ``fill_price = o * (1 + s)`` for a
  buy and ``o * (1 - s)`` for a sell, ``s = slippage_bps / 1e4`` (the side
  is the sign of ``target * E / o - units``); a flip is one fill holding both
  legs; the taker fee is ``taker_fee_bps / 1e4 * |traded notional|``.  Units
  stay constant until the next fill.  When slippage would reverse the trade
  (current units already within the slippage band of the target) nothing
  is traded.
* Optional perpetual funding: with ``funding_rate_8h != 0``, at every bar
  whose ``open_time`` (ms UTC) is a multiple of the funding interval
  (``funding_interval_h``, 8 h by default; a run sets it from the symbol's
  funding history) the units held into that open pay
  ``units * open * funding_rate_8h * funding_interval_h / 8`` (longs pay when
  the rate is positive; the same funding per day at any interval), before
  that open's fill.
* Equity (USDT) is marked at every close.  Ruin: equity <= 0 at an open or
  a close flattens the position; equity is 0 for the rest of the run.

Metric definitions: :mod:`forge.backtest.metrics`.  The numba kernel:
:mod:`forge.backtest.backtest_nb` (one streaming pass — blockwise Welford/Chan
mean and variance, running peak for drawdown — shared by :func:`run_backtest`
and the fast :func:`backtest_metrics`, so both give identical numbers).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from forge.backtest import backtest_nb as _k
from forge.backtest.costs import funding_rate_per_event
from forge.backtest.metrics import Metrics
from forge.core.errors import ConfigError

__all__ = [
    "TRADE_DTYPE",
    "BacktestConfig",
    "BacktestResult",
    "Metrics",
    "backtest_metrics",
    "backtest_throughput",
    "buy_and_hold",
    "run_backtest",
]

TRADE_DTYPE = np.dtype(
    [
        ("bar", np.int64),  # index of the bar whose open the fill happened at
        ("open_time", np.int64),  # ms UTC of that bar
        ("side", np.int8),  # +1 buy, -1 sell
        ("units", np.float64),  # signed base units traded (+ bought, - sold)
        ("price", np.float64),  # fill price, quote per unit, slippage included
        ("notional", np.float64),  # |units| * price, quote currency
        ("fee", np.float64),  # taker fee paid, quote currency
        ("position_before", np.float64),  # target exposure held before the fill
        ("position_after", np.float64),  # target exposure after the fill
    ]
)
"""Record of one fill (numpy structured dtype, vectorbt style)."""


@dataclass(frozen=True)
class BacktestConfig:
    """Costs, capital and annualisation of a backtest (the ``[backtest]`` TOML table).

    initial_capital: USDT (> 0); taker_fee_bps: taker fee in basis points of
    traded notional (>= 0); slippage_bps: adverse fill offset from the open in
    basis points (0 <= x < 10,000); funding_rate_8h: perpetual funding rate per
    8 h as a fraction (0 = spot, no funding); funding_interval_h: hours between
    funding times, an int in [1, 24] (8; Binance runs many perpetuals at 4 h
    or 1 h); target_multiple: equity multiple
    of initial_capital defining time-to-target (> 0); periods_per_year: bars
    per year for annualisation (> 0; 525,600 = 1-minute bars, 365-day year).
    """

    initial_capital: float = 200.0
    taker_fee_bps: float = 10.0
    slippage_bps: float = 1.0
    funding_rate_8h: float = 0.0
    funding_interval_h: int = 8
    target_multiple: float = 2.0
    periods_per_year: float = 525600.0

    def validate(self) -> None:
        """raises ConfigError naming the field if a value is out of range."""
        checks = (
            ("initial_capital", self.initial_capital > 0 and math.isfinite(self.initial_capital), "> 0"),
            ("taker_fee_bps", 0 <= self.taker_fee_bps < 10_000, "in [0, 10000)"),
            ("slippage_bps", 0 <= self.slippage_bps < 10_000, "in [0, 10000)"),
            ("funding_rate_8h", -1 < self.funding_rate_8h < 1, "in (-1, 1)"),
            ("funding_interval_h", isinstance(self.funding_interval_h, int) and 1 <= self.funding_interval_h <= 24,
             "a whole number of hours in [1, 24]"),
            ("target_multiple", self.target_multiple > 0 and math.isfinite(self.target_multiple), "> 0"),
            ("periods_per_year", self.periods_per_year > 0 and math.isfinite(self.periods_per_year), "> 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name} must be {expected}, got {getattr(self, name)!r}")

    @property
    def funding_interval_ms(self) -> int:
        """ms between funding times (``funding_interval_h`` hours)."""
        return int(self.funding_interval_h) * 3_600_000

    @property
    def funding_rate_event(self) -> float:
        """The rate charged at each funding time: ``funding_rate_8h`` scaled to the interval
        (:func:`forge.backtest.costs.funding_rate_per_event`, the same funding per day at any interval)."""
        return funding_rate_per_event(float(self.funding_rate_8h), self.funding_interval_ms)


@dataclass(frozen=True)
class BacktestResult:
    """Full output of :func:`run_backtest`.

    equity: (n,) float64, USDT marked at each close; returns: (n,) float64,
    simple per-bar equity returns (``equity[-1]`` = initial capital);
    position_held: (n,) float64, target exposure in force during each bar
    (after that bar's open fill; 0 when flat or ruined); trades: (k,)
    TRADE_DTYPE, one record per fill in time order; metrics: :class:`Metrics`.
    """

    equity: np.ndarray
    returns: np.ndarray
    position_held: np.ndarray
    trades: np.ndarray
    metrics: Metrics


def _as_f64(x: Any, name: str) -> np.ndarray:
    try:
        a = np.ascontiguousarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a 1-D float64 array, could not convert: {exc}") from None
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def _validate(
    open_: Any, close: Any, open_time: Any, position: Any | None, cfg: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    if not isinstance(cfg, BacktestConfig):
        raise TypeError(f"cfg: expected BacktestConfig, got {type(cfg).__name__}")
    cfg.validate()
    o = _as_f64(open_, "open_")
    c = _as_f64(close, "close")
    t_raw = np.asarray(open_time)
    if t_raw.dtype.kind not in "iu":
        raise ValueError(f"open_time: expected an integer array of ms UTC, got dtype {t_raw.dtype}")
    t = np.ascontiguousarray(t_raw, dtype=np.int64)
    if t.ndim != 1:
        raise ValueError(f"open_time: expected a 1-D array, got shape {t.shape}")
    p = None if position is None else _as_f64(position, "position")
    n = o.shape[0]
    if n == 0:
        raise ValueError("open_: no bars (length 0); a backtest needs at least one bar")
    for name, a in (("close", c), ("open_time", t), ("position", p)):
        if a is not None and a.shape[0] != n:
            raise ValueError(f"{name}: length {a.shape[0]} differs from open_ length {n}")
    return o, c, t, p


def _params(cfg: BacktestConfig) -> tuple[float, ...]:
    return (
        float(cfg.initial_capital),
        cfg.taker_fee_bps / 1e4,
        cfg.slippage_bps / 1e4,
        cfg.funding_rate_event,
        cfg.funding_interval_ms,
        cfg.target_multiple * cfg.initial_capital,
        float(cfg.periods_per_year),
    )


def _ro(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only view (no copy).  The kernels are called with read-only inputs only, whether the
    caller's arrays are workers' read-only memory maps or the parent's own: one compiled specialisation
    instead of two (numba types read-only and writable arrays apart; cold start, issue 27)."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _raise_status(status: int, idx: int, o: np.ndarray, c: np.ndarray) -> None:
    if status == _k.STATUS_BAD_OPEN:
        raise ValueError(f"open_[{idx}] = {o[idx]!r}: prices must be finite and > 0")
    if status == _k.STATUS_BAD_CLOSE:
        raise ValueError(f"close[{idx}] = {c[idx]!r}: prices must be finite and > 0")


def _metrics_only(o: np.ndarray, c: np.ndarray, t: np.ndarray, p: np.ndarray, cfg: BacktestConfig) -> Metrics:
    out = np.empty(_k.N_METRICS, dtype=np.float64)
    status, idx, _ = _k.backtest_metrics_nb(_ro(o), _ro(c), _ro(t), _ro(p), *_params(cfg), out)
    if status != _k.STATUS_OK:
        _raise_status(status, idx, o, c)
    return Metrics.from_vector(out)


def backtest_metrics(
    open_: np.ndarray,
    close: np.ndarray,
    open_time: np.ndarray,
    position: np.ndarray,
    cfg: BacktestConfig = BacktestConfig(),
) -> Metrics:
    """Metrics of trading ``position`` on the bars, without trade records (fitness fast path).

    open_, close: (n,) float64, quote currency per unit, finite and > 0;
    open_time: (n,) integer ms UTC (used for funding times);
    position: (n,) float64 target exposure decided at each close.
    returns Metrics, identical to ``run_backtest(...).metrics``.
    raises ValueError naming the argument (and row for bad prices) on wrong
    shape, length, dtype or values; ConfigError for an invalid cfg.
    """
    o, c, t, p = _validate(open_, close, open_time, position, cfg)
    return _metrics_only(o, c, t, cast(np.ndarray, p), cfg)


def run_backtest(
    open_: np.ndarray,
    close: np.ndarray,
    open_time: np.ndarray,
    position: np.ndarray,
    cfg: BacktestConfig = BacktestConfig(),
) -> BacktestResult:
    """Full backtest: equity curve, returns, held position, trade records and metrics.

    Inputs as :func:`backtest_metrics`.  returns BacktestResult (equity (n,)
    float64 USDT at each close, returns (n,) float64, position_held (n,)
    float64, trades (k,) TRADE_DTYPE, metrics).  raises ValueError / ConfigError
    as :func:`backtest_metrics`.
    """
    o, c, t, p_opt = _validate(open_, close, open_time, position, cfg)
    p = cast(np.ndarray, p_opt)
    n = o.shape[0]
    # capacity: the number of target changes, an upper bound on fills
    cap = int(_k.count_target_changes_nb(_ro(p)))
    eq, ret, held = np.empty(n), np.empty(n), np.empty(n)
    cols = [np.empty(cap, TRADE_DTYPE[name]) for name in TRADE_DTYPE.names]
    out = np.empty(_k.N_METRICS, dtype=np.float64)
    status, idx, n_fills = _k.backtest_record_nb(_ro(o), _ro(c), _ro(t), _ro(p), *_params(cfg), out, eq, ret,
                                                 held, *cols)
    if status != _k.STATUS_OK:
        _raise_status(status, idx, o, c)
    trades = np.empty(n_fills, dtype=TRADE_DTYPE)
    for name, col in zip(TRADE_DTYPE.names, cols):
        trades[name] = col[:n_fills]
    return BacktestResult(equity=eq, returns=ret, position_held=held, trades=trades, metrics=Metrics.from_vector(out))


def buy_and_hold(
    open_: np.ndarray,
    close: np.ndarray,
    open_time: np.ndarray,
    cfg: BacktestConfig = BacktestConfig(),
) -> Metrics:
    """Metrics of holding a full long (position 1 from the first bar, so bought at bar 1's open).

    The same timing and costs as any strategy (one buy fill, fee and slippage
    included, never sold).  Inputs and errors as :func:`backtest_metrics`.
    """
    o, c, t, _ = _validate(open_, close, open_time, None, cfg)
    return _metrics_only(o, c, t, np.ones(o.shape[0]), cfg)


def backtest_throughput(n_bars: int = 400_000, seed: int = 0, repeats: int = 100) -> dict[str, float | int]:
    """Speed of :func:`backtest_metrics` on synthetic data, one core.

    One pass over 400k bars takes ~3 ms, so a handful of repeats fits inside a single scheduling
    hiccup of a shared VM (best of 5 gave 75 or 135 M bars/s from run to run); 100 repeats spread
    the best-of over ~0.3 s.

    Data: a geometric random walk (1e-3 per-bar log-return sd, open = previous
    close) on 1-minute bars starting at an 8 h boundary, and a target position
    in {-1, 0, +1} that switches to a different level with probability 1/50
    per bar; all drawn from ``forge.core.rng.generator(seed, "bench", "backtest")``.
    Default BacktestConfig.  The first call (JIT compile / cache load) is not timed.
    returns {"n_bars": int, "seconds": float (best of ``repeats``), "bars_per_s": float}.
    """
    from forge.core.rng import generator

    if n_bars < 2 or repeats < 1:
        raise ValueError(f"need n_bars >= 2 and repeats >= 1, got n_bars={n_bars}, repeats={repeats}")
    rng = generator(seed, "bench", "backtest")
    steps = rng.normal(0.0, 1e-3, n_bars)
    close = 30_000.0 * np.exp(np.cumsum(steps))
    open_ = np.empty(n_bars)
    open_[0] = 30_000.0
    open_[1:] = close[:-1]
    open_time = 1_717_200_000_000 + 60_000 * np.arange(n_bars, dtype=np.int64)  # 2024-06-01 00:00 UTC
    change = rng.random(n_bars) < 1.0 / 50.0
    shift = rng.integers(1, 3, n_bars)
    position = (np.cumsum(change * shift) % 3 - 1).astype(np.float64)
    cfg = BacktestConfig()
    backtest_metrics(open_, close, open_time, position, cfg)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        backtest_metrics(open_, close, open_time, position, cfg)
        best = min(best, time.perf_counter() - t0)
    return {"n_bars": n_bars, "seconds": best, "bars_per_s": n_bars / best}
