"""The kline fill model: execution intents, passive limit orders and the deadline cross on 1-minute bars.

Selected by ``[execution] mode`` (:class:`ExecutionConfig`): ``taker`` is today's backtester
(:mod:`forge.backtest`, market orders at the next open, bit-identical); ``kline-limit`` and ``policy``
run :func:`run_kline_backtest` with this model.

The model (one bar t = open, high, low, close, volume; decisions at closes):

1. **Intent.** When the target exposure decided at the close of bar t-1 differs from the previous one,
   the working order is replaced by the intent to trade ``target * E / close[t-1] - units`` base units
   (E = equity at that close), with the urgency and deadline of :mod:`forge.execution.intents`.
   The decision price (the implementation-shortfall benchmark) is ``close[t-1]``.
2. **Each bar while working** (cancel/replace: the previous bar's order is gone), the policy picks
   an action from the state known at the close of t-1 (spread estimate, volatility, urgency, time to
   deadline, fraction filled; :mod:`forge.execution.policy_nb`): ``market`` -> the rest fills at the open of
   bar t at ``open * (1 + side * h)`` with the taker fee, h the Corwin-Schultz half-spread known at the
   close of t-1 (:mod:`forge.backtest.spread`, floored at one tick); ``touch`` / ``inside`` -> a limit at
   ``close[t-1] * (1 - side * k * h)``, k = 1 / 0.5, rounded to the tick away from the market;
   ``wait`` -> nothing.  Once the deadline has passed the rest crosses (``market``).
3. **Fill rule of a resting limit** (:func:`kline_limit_fill`): it fills in bar t only if the bar
   trades *through* its price -- ``low < price`` for a buy, ``high > price`` for a sell; touching is no
   fill, since the queue at that price may not have been reached -- at its own price, with the maker fee,
   for at most ``max_volume_share`` of the bar's volume (the rest stays working).  A buy therefore fills
   only in bars that went below its price: adverse selection is in the model.
4. Sizes are rounded down to the lot, prices to the tick; a remainder below one lot or the minimum
   notional is dropped.  Funding, ruin and equity marking as the taker backtester.

Sources: the trade-through rule is the standard conservative bar-data assumption for resting orders
(e.g. Lehalle & Laruelle, *Market Microstructure in Practice*, 2nd ed. 2018, ch. 3; hftbacktest's
"no partial fill at the touch" queue model); the half-spread is Corwin & Schultz (2012).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.backtest import TRADE_DTYPE, BacktestConfig, BacktestResult, run_backtest
from forge.backtest import backtest_nb as _bk
from forge.backtest import fills_nb as _k
from forge.backtest.metrics import Metrics
from forge.core.errors import ConfigError
from forge.execution.policy_nb import (
    A_MARKET,
    A_TOUCH,
    N_ACTIONS,
    N_FEATURES,
    always_taker,
)

__all__ = [
    "EXECUTION_MODES",
    "FILL_DTYPE",
    "ExecutionConfig",
    "FillModel",
    "KlineInputs",
    "KlineResult",
    "execution_costs",
    "infer_tick",
    "kline_limit_fill",
    "kline_throughput",
    "limit_price",
    "run_kline_backtest",
]

EXECUTION_MODES = ("taker", "kline-limit", "policy")

FILL_DTYPE = np.dtype([
    ("bar", np.int64), ("open_time", np.int64), ("side", np.int8), ("units", np.float64),
    ("price", np.float64), ("fee", np.float64), ("maker", np.int8), ("decision_price", np.float64),
])
"""One fill of the kline model: bar index and open time (ms), side +-1, signed base units, price (quote per
unit), fee (quote), maker (1 = resting limit, 0 = crossing), decision price of its intent (quote per unit)."""


@dataclass(frozen=True)
class ExecutionConfig:
    """``[execution]``: how target changes become fills.

    mode: "taker" (market orders at the next open; the default, evolution's too), "kline-limit"
    (rest at the estimated touch every bar, cross at the deadline) or "policy" (the execution policy in
    ``policy``, a ``forge execution train`` JSON; empty = always-taker weights).  maker_fee_bps: maker fee,
    basis points of notional (-1 = the [costs] preset's: spot 10, futures 2; [backtest] taker fee under a
    manual preset).  deadline_bars: bars an intent of zero urgency may rest (>= 0).  max_volume_share: share
    of a bar's volume one resting order may fill, (0, 1].  spread_window: two-bar Corwin-Schultz estimates
    averaged (>= 1).  tick_size / lot_size / min_notional: venue rounding (quote / base / quote; 0 = infer
    the tick from the prices' decimals, no lot, no minimum).  vol_halflife: bars of the volatility EWMA.
    kelly_cap: fraction of the Kelly multiplier used for sizing, (0, 1] (0.5 = half Kelly, the seeds'
    default); max_leverage: bound of that multiplier (> 0); see ``forge.execution.intents.kelly_fraction``.
    sizing: "unit" (default: targets as the genome outputs them) or "kelly" (targets times the fractional
    Kelly multiplier measured on the run's in-sample bars, ``forge.execution.sizing``; applied by
    ``forge backtest`` and carried into published champions' signed meta for the Crucible).
    """

    mode: str = "taker"
    maker_fee_bps: float = -1.0
    deadline_bars: int = 5
    max_volume_share: float = 0.1
    spread_window: int = 20
    tick_size: float = 0.0
    lot_size: float = 0.0
    min_notional: float = 0.0
    vol_halflife: float = 20.0
    policy: str = ""
    kelly_cap: float = 0.5
    max_leverage: float = 1.0
    sizing: str = "unit"

    def validate(self) -> None:
        if self.mode not in EXECUTION_MODES:
            raise ConfigError(f"execution.mode must be one of {', '.join(EXECUTION_MODES)}, got {self.mode!r}")
        if not (self.maker_fee_bps == -1.0 or 0.0 <= self.maker_fee_bps < 10_000):
            raise ConfigError(f"execution.maker_fee_bps must be -1 (preset) or in [0, 10000), got {self.maker_fee_bps}")
        if not 0 <= self.deadline_bars <= 10_000:
            raise ConfigError(f"execution.deadline_bars must be in [0, 10000], got {self.deadline_bars}")
        if not 0.0 < self.max_volume_share <= 1.0:
            raise ConfigError(f"execution.max_volume_share must be in (0, 1], got {self.max_volume_share}")
        if not 1 <= self.spread_window <= 100_000:
            raise ConfigError(f"execution.spread_window must be in [1, 100000], got {self.spread_window}")
        for name in ("tick_size", "lot_size", "min_notional"):
            v = getattr(self, name)
            if not (v >= 0.0 and math.isfinite(v)):
                raise ConfigError(f"execution.{name} must be >= 0 (0 = none/infer), got {v}")
        if not self.vol_halflife > 0:
            raise ConfigError(f"execution.vol_halflife must be > 0, got {self.vol_halflife}")
        if not 0.0 < self.kelly_cap <= 1.0:
            raise ConfigError(f"execution.kelly_cap must be in (0, 1], got {self.kelly_cap}")
        if not (self.max_leverage > 0.0 and math.isfinite(self.max_leverage)):
            raise ConfigError(f"execution.max_leverage must be > 0, got {self.max_leverage}")
        if self.sizing not in ("unit", "kelly"):
            raise ConfigError(f"execution.sizing must be unit or kelly, got {self.sizing!r}")


@dataclass(frozen=True)
class KlineResult:
    """equity: (n,) float64 USDT at each close; fills: (k,) FILL_DTYPE; metrics: Metrics (definitions of
    :mod:`forge.backtest.metrics`); half_spread: (n,) float64 estimate used (fraction); tick: the tick."""

    equity: np.ndarray
    fills: np.ndarray
    metrics: Metrics
    half_spread: np.ndarray
    tick: float


def infer_tick(prices: np.ndarray) -> float:
    """The venue tick implied by the prices' decimals: 10**-d, d the most decimals (<= 8) any of the first
    5,000 prices needs.  prices: (n,) float64 > 0.  raises ValueError on an empty array."""
    p = np.asarray(prices, dtype=np.float64)[:5000]
    if p.size == 0:
        raise ValueError("infer_tick: no prices")
    d_max = 0
    for d in range(9):
        scaled = p * 10.0 ** d
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 + 1e-13 * np.abs(scaled)):
            d_max = d
            break
    else:
        d_max = 8
    return 10.0 ** -d_max


def kline_limit_fill(side: int, price: float, remaining: float, bar_low: float, bar_high: float,
                     bar_volume: float, max_share: float, lot: float) -> float:
    """Python twin of :func:`forge.backtest.fills_nb.kline_limit_fill_nb` (same expressions, same floats):
    base units a resting limit fills in one bar, 0 unless the bar trades through ``price``."""
    through = bar_low < price if side > 0 else bar_high > price
    if not through:
        return 0.0
    q = max_share * bar_volume
    cap = q if lot <= 0.0 else math.floor(q / lot + 1e-9) * lot
    return min(remaining, cap)


def limit_price(ref: float, side: int, hs: float, offset: float, tick: float) -> float:
    """Python twin of :func:`forge.backtest.fills_nb.limit_price_nb`."""
    raw = ref * (1.0 - side * offset * hs)
    if side > 0:
        return math.floor(raw / tick + 1e-9) * tick
    return math.ceil(raw / tick - 1e-9) * tick


def _col(x: Any, name: str, n: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValueError(f"{name}: expected a 1-D float64 array of length {n}, got shape {a.shape}")
    return a


def _weights(ex: ExecutionConfig, weights: np.ndarray | None) -> tuple[np.ndarray, int]:
    if ex.mode == "kline-limit":
        return always_taker(), A_TOUCH
    if ex.mode == "policy":
        w = always_taker() if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape != (N_ACTIONS, N_FEATURES):
            raise ConfigError(f"policy weights must have shape ({N_ACTIONS}, {N_FEATURES}), got {w.shape}")
        return w, -1
    if ex.mode == "taker":  # the always-taker action through the kline model (same spread model)
        return always_taker(), A_MARKET
    raise ConfigError(f"execution.mode {ex.mode!r}")


def run_kline_backtest(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                       volume: np.ndarray, open_time: np.ndarray, position: np.ndarray,
                       cfg: BacktestConfig = BacktestConfig(), ex: ExecutionConfig = ExecutionConfig(),
                       *, maker_fee_bps: float | None = None, weights: np.ndarray | None = None,
                       half_spread: np.ndarray | None = None) -> KlineResult:
    """Backtest under the kline fill model (module docstring).

    Bars: (n,) float64 arrays (prices quote per unit > 0, volume base units >= 0), open_time (n,) int ms;
    position: (n,) float64 targets decided at each close.  cfg: taker fee, funding, capital, annualisation
    ([backtest]); ex: [execution] (``ex.mode == "taker"`` here = always-market through this model, with the
    estimated half-spread instead of ``slippage_bps``: the like-for-like baseline); maker_fee_bps: overrides
    ``ex.maker_fee_bps`` (callers pass the resolved preset fee); weights: policy for mode "policy";
    half_spread: (n,) precomputed estimate (else Corwin-Schultz with ``ex.spread_window``).
    returns KlineResult.  raises ValueError (shapes, bad bars naming the row), ConfigError (config).
    """
    cfg.validate()
    ex.validate()
    o = _col(open_, "open_")
    n = o.shape[0]
    if n == 0:
        raise ValueError("open_: no bars (length 0)")
    h, lo, c, v = (_col(a, nm, n) for a, nm in ((high, "high"), (low, "low"), (close, "close"), (volume, "volume")))
    p = _col(position, "position", n)
    t = np.ascontiguousarray(open_time, dtype=np.int64)
    if t.shape != (n,):
        raise ValueError(f"open_time: expected shape ({n},), got {t.shape}")
    maker = ex.maker_fee_bps if maker_fee_bps is None else maker_fee_bps
    if maker < 0:
        maker = cfg.taker_fee_bps
    tick = ex.tick_size if ex.tick_size > 0 else infer_tick(c)
    if half_spread is None:
        from forge.backtest.spread import corwin_schultz_half_spread
        hs = corwin_schultz_half_spread(h, lo, c, window=ex.spread_window, tick=tick)
    else:
        hs = _col(half_spread, "half_spread", n)
    w, fixed = _weights(ex, weights)
    out = np.empty(_bk.N_METRICS)
    eq = np.empty(n)
    cap = n + 1
    cols = [np.empty(cap, FILL_DTYPE[name]) for name in ("bar", "open_time", "side", "units", "price", "fee",
                                                          "maker", "decision_price")]
    status, idx, nf = _k.kline_exec_nb(o, h, lo, c, v, t, p, hs, float(cfg.initial_capital), cfg.taker_fee_bps / 1e4,
                                       maker / 1e4, cfg.funding_rate_event, cfg.funding_interval_ms,
                                       cfg.target_multiple * cfg.initial_capital, float(cfg.periods_per_year), tick,
                                       float(ex.lot_size), float(ex.min_notional), float(ex.max_volume_share),
                                       int(ex.deadline_bars), float(ex.vol_halflife), w, fixed, out, eq, *cols)
    if status == _bk.STATUS_BAD_OPEN:
        raise ValueError(f"open_[{idx}] = {o[idx]!r}: prices must be finite and > 0")
    if status == _bk.STATUS_BAD_CLOSE:
        raise ValueError(f"close[{idx}] = {c[idx]!r}: prices must be finite and > 0")
    if status == _k.STATUS_BAD_BAR:
        raise ValueError(f"bar {idx}: high {h[idx]!r} < low {lo[idx]!r} or volume {v[idx]!r} < 0")
    fills = np.empty(nf, dtype=FILL_DTYPE)
    for name, col in zip(FILL_DTYPE.names, cols):
        fills[name] = col[:nf]
    return KlineResult(eq, fills, Metrics.from_vector(out), hs, tick)


def execution_costs(fills: np.ndarray, close: np.ndarray, markouts: tuple[int, ...] = (1, 5, 15)) -> dict[str, float]:
    """Cost statistics of a fill record (FILL_DTYPE or the simulator's) against its decision prices.

    shortfall_bps: sum over fills of side * (price - decision_price) * |units| + fee, divided by the traded
    notional at decision prices, in bp (the implementation shortfall plus fees per unit traded, Perold
    1988); fee_bps likewise for fees alone; maker_share: share of traded units filled passively;
    markout_<k>_bps: mean over fills, weighted by units, of side * (close[bar + k] - price) / price in bp
    (positive = the price moved our way after the fill; adverse selection shows as negative maker markouts).
    """
    if fills.shape[0] == 0:
        return {"n_fills": 0, "traded_notional": 0.0, "shortfall_bps": math.nan, "fee_bps": math.nan,
                "maker_share": math.nan, **{f"markout_{k}_bps": math.nan for k in markouts}}
    q = np.abs(fills["units"])
    side = fills["side"].astype(np.float64)
    dec = fills["decision_price"]
    base = float(np.sum(q * dec))
    slip = float(np.sum(side * (fills["price"] - dec) * q))
    fee = float(np.sum(fills["fee"]))
    out = {"n_fills": int(fills.shape[0]), "traded_notional": base, "shortfall_bps": 1e4 * (slip + fee) / base,
           "fee_bps": 1e4 * fee / base, "maker_share": float(np.sum(q * fills["maker"]) / np.sum(q))}
    n = close.shape[0]
    for k in markouts:
        j = np.minimum(fills["bar"] + k, n - 1)
        mk = side * (close[j] - fills["price"]) / fills["price"]
        out[f"markout_{k}_bps"] = float(1e4 * np.sum(mk * q) / np.sum(q))
    return out


def kline_throughput(n_bars: int = 400_000, seed: int = 0, repeats: int = 20, mode: str = "kline-limit") -> dict[str, Any]:
    """Bars/s of :func:`run_kline_backtest` (``mode``) against :func:`forge.backtest.backtest_metrics` on the
    same synthetic bars (the data of :func:`forge.backtest.backtest_throughput`, with high/low 0.05 % around
    open/close and volume 1,000), best of ``repeats`` after one warm-up call each.
    returns {"n_bars", "kline_bars_per_s", "taker_bars_per_s", "ratio", "kline_precomputed_spread_bars_per_s"
    (the half-spread computed once outside the timing, as evolution would cache it per data segment),
    "ratio_precomputed_spread", "mode"}."""
    import time

    from forge.backtest import backtest_metrics
    from forge.core.rng import generator

    rng = generator(seed, "bench", "backtest")
    steps = rng.normal(0.0, 1e-3, n_bars)
    close = 30_000.0 * np.exp(np.cumsum(steps))
    open_ = np.empty(n_bars)
    open_[0] = 30_000.0
    open_[1:] = close[:-1]
    open_time = 1_717_200_000_000 + 60_000 * np.arange(n_bars, dtype=np.int64)
    change = rng.random(n_bars) < 1.0 / 50.0
    shift = rng.integers(1, 3, n_bars)
    position = (np.cumsum(change * shift) % 3 - 1).astype(np.float64)
    high = np.maximum(open_, close) * 1.0005
    low = np.minimum(open_, close) * 0.9995
    vol = np.full(n_bars, 1_000.0)
    cfg = BacktestConfig()
    ex = ExecutionConfig(mode=mode, tick_size=0.01)

    def best(fn: Any) -> float:
        fn()
        b = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            b = min(b, time.perf_counter() - t0)
        return b

    from forge.backtest.spread import corwin_schultz_half_spread

    hs = corwin_schultz_half_spread(high, low, close, window=ex.spread_window, tick=0.01)
    tk = best(lambda: backtest_metrics(open_, close, open_time, position, cfg))
    kl = best(lambda: run_kline_backtest(open_, high, low, close, vol, open_time, position, cfg, ex))
    kh = best(lambda: run_kline_backtest(open_, high, low, close, vol, open_time, position, cfg, ex, half_spread=hs))
    return {"n_bars": n_bars, "kline_bars_per_s": n_bars / kl, "taker_bars_per_s": n_bars / tk, "ratio": tk / kl,
            "kline_precomputed_spread_bars_per_s": n_bars / kh, "ratio_precomputed_spread": tk / kh, "mode": mode}


@dataclass(frozen=True)
class KlineInputs:
    """What the kline fill model reads beyond (open, close, open_time) on one row range.

    high, low, volume: (n,) float64 (quote per unit, base units); half_spread: (n,) float64 Corwin-Schultz
    estimate known at each close (fraction of price), computed on every bar up to the range's last, so a
    range starting late sees the estimate of the bars before it (causal); tick: the price tick (quote)."""

    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    half_spread: np.ndarray
    tick: float

    def rows(self, a: int, b: int) -> KlineInputs:
        """The rows [a, b) (views)."""
        return KlineInputs(self.high[a:b], self.low[a:b], self.volume[a:b], self.half_spread[a:b], self.tick)

    def take(self, idx: np.ndarray) -> KlineInputs:
        """The rows ``idx`` (copies)."""
        return KlineInputs(self.high[idx], self.low[idx], self.volume[idx], self.half_spread[idx], self.tick)


@dataclass(frozen=True)
class FillModel:
    """The fill model a run scores target positions with: ``[execution] mode`` resolved for its market.

    ``taker`` is :func:`forge.backtest.run_backtest` (market orders at the next open, ``slippage_bps``),
    bit-identical to a run without a fill model; ``kline-limit`` and ``policy`` are
    :func:`run_kline_backtest` with ``maker_fee_bps`` (resolved: the [costs] preset's maker fee unless
    [execution] sets one) and, for ``policy``, the policy's (N_ACTIONS, N_FEATURES) weights stored flat in
    ``weights`` (so the model is hashable) with its sha256.  Evolution's fitness, its out-of-sample report and
    the Gauntlet's returns all go through :meth:`run`, so the selection and its validation see one fill model.
    Build it with :meth:`for_run`."""

    execution: ExecutionConfig = ExecutionConfig()
    maker_fee_bps: float = 0.0
    weights: tuple[float, ...] = ()
    policy_sha256: str = ""

    @property
    def taker(self) -> bool:
        return self.execution.mode == "taker"

    @classmethod
    def for_run(cls, execution: ExecutionConfig, costs: dict[str, Any] | None, taker_fee_bps: float) -> FillModel:
        """The model of a run whose ``[execution]`` is ``execution`` and whose resolved cost record is ``costs``
        (``forge.core.runconfig.resolve_costs``' second value, the manifest's ``costs``; its ``maker_fee_bps``
        is None under a manual preset: the taker fee is used then).  Mode "policy" loads ``execution.policy``
        (empty: always-taker weights).  raises ConfigError (bad config, unreadable policy file)."""
        execution.validate()
        if execution.mode == "taker":
            return cls(execution, float(taker_fee_bps))
        maker = execution.maker_fee_bps
        if maker < 0:
            rec = (costs or {}).get("maker_fee_bps")
            maker = float(rec) if rec is not None else float(taker_fee_bps)
        w: tuple[float, ...] = ()
        sha = ""
        if execution.mode == "policy":
            from forge.execution.policy import ExecutionPolicy

            pol = ExecutionPolicy.load(execution.policy) if execution.policy else ExecutionPolicy.always_taker()
            w, sha = tuple(float(v) for v in pol.weights.ravel()), pol.sha256
        return cls(execution, float(maker), w, sha)

    def describe(self) -> dict[str, Any]:
        """{"mode", "maker_fee_bps", "policy_sha256", "deadline_bars", "max_volume_share", "spread_window"}:
        what a manifest or report records of the model."""
        ex = self.execution
        return {"mode": ex.mode, "maker_fee_bps": None if self.taker else self.maker_fee_bps,
                "policy_sha256": self.policy_sha256 or None, "deadline_bars": ex.deadline_bars,
                "max_volume_share": ex.max_volume_share, "spread_window": ex.spread_window}

    def inputs(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray) -> KlineInputs | None:
        """The kline inputs of bars (None for taker): (n,) float64 arrays, the tick (``[execution] tick_size``
        or inferred from the closes) and the Corwin-Schultz half-spread over all of them.
        raises ValueError on bad bars (``forge.backtest.spread.corwin_schultz_half_spread``)."""
        if self.taker:
            return None
        from forge.backtest.spread import corwin_schultz_half_spread

        h, lo, c, v = (_col(x, nm) for x, nm in ((high, "high"), (low, "low"), (close, "close"), (volume, "volume")))
        tick = self.execution.tick_size if self.execution.tick_size > 0 else infer_tick(c)
        return KlineInputs(h, lo, v, corwin_schultz_half_spread(h, lo, c, window=self.execution.spread_window,
                                                                 tick=tick), tick)

    def run(self, open_: np.ndarray, close: np.ndarray, open_time: np.ndarray, position: np.ndarray,
            cfg: BacktestConfig, kline: KlineInputs | None = None) -> BacktestResult:
        """Backtest ``position`` under this model on one row range (inputs as :func:`forge.backtest.run_backtest`;
        ``kline``: the same rows' :class:`KlineInputs`, required unless taker).  returns BacktestResult: for the
        kline model, returns are the simple per-bar equity returns of its equity curve (the taker convention,
        ``equity[-1]`` = initial capital), position_held the exposure held at each close after that bar's fills
        and trades its fills as TRADE_DTYPE records (price = fill price, fee = taker or maker fee).
        raises ValueError / ConfigError as the backtesters."""
        if self.taker:
            return run_backtest(open_, close, open_time, position, cfg)
        if kline is None:
            raise ValueError(f"[execution] mode {self.execution.mode!r}: the kline fill model needs high, low, volume")
        r = self.kline_backtest(open_, kline.high, kline.low, close, kline.volume, open_time, position, cfg,
                                half_spread=kline.half_spread, tick=kline.tick)
        return kline_as_backtest(r, close, cfg.initial_capital)

    def kline_backtest(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                       volume: np.ndarray, open_time: np.ndarray, position: np.ndarray, cfg: BacktestConfig, *,
                       half_spread: np.ndarray | None = None, tick: float = 0.0) -> KlineResult:
        """:func:`run_kline_backtest` under this model (its maker fee, its policy's weights; ``half_spread`` /
        ``tick``: precomputed inputs, else estimated from the bars) as its raw :class:`KlineResult` (fills as
        FILL_DTYPE, the half-spread used), for callers that report fills.  Valid in every mode: "taker" here
        is always-market through the kline model (the estimated half-spread instead of ``slippage_bps``).
        raises ValueError / ConfigError as :func:`run_kline_backtest`."""
        ex = self.execution if (self.execution.tick_size > 0 or tick <= 0) else dataclasses.replace(
            self.execution, tick_size=tick)
        w = np.asarray(self.weights, dtype=np.float64).reshape(N_ACTIONS, N_FEATURES) if self.weights else None
        return run_kline_backtest(open_, high, low, close, volume, open_time, position, cfg, ex,
                                  maker_fee_bps=self.maker_fee_bps, weights=w, half_spread=half_spread)


def kline_as_backtest(r: KlineResult, close: np.ndarray, initial_capital: float) -> BacktestResult:
    """A :class:`KlineResult` in :class:`forge.backtest.BacktestResult`'s shape (see :meth:`FillModel.run`)."""
    eq = r.equity
    n = eq.shape[0]
    prev = np.empty(n)
    prev[0] = initial_capital
    prev[1:] = eq[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(prev > 0.0, eq / prev - 1.0, 0.0)
    f = r.fills
    per_bar = np.zeros(n)
    np.add.at(per_bar, f["bar"], f["units"])
    units = np.cumsum(per_bar)
    c = np.asarray(close, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        held = np.where(eq > 0.0, units * c / eq, 0.0)
    trades = np.empty(f.shape[0], dtype=TRADE_DTYPE)
    for name in ("bar", "open_time", "side", "units", "price", "fee"):
        trades[name] = f[name]
    trades["notional"] = np.abs(f["units"]) * f["price"]
    idx = f["bar"]
    before = np.where(idx > 0, held[np.maximum(idx - 1, 0)], 0.0)
    trades["position_before"] = before
    trades["position_after"] = held[idx] if idx.size else np.empty(0)
    return BacktestResult(equity=eq, returns=ret, position_held=held, trades=trades, metrics=r.metrics)
