"""A strategy trading *inside* the simulated book (adversarial fitness).

Same accounting as ``forge.backtest`` with the bar backtester's fixed
slippage replaced by the real book:

* ``position[t]`` is the target exposure decided at the close of bar t, a
  fraction of equity in [-1, 1] (NaN -> 0, clipped).  It is acted on at the
  **open of bar t+1**, only when it differs from ``position[t-1]``
  (``position[-1] = 0``); the last bar's target never trades.
* At that open, with the simulated mid ``m`` and equity ``E = cash + units *
  m``, the strategy sends one market order for ``round(target * E / m /
  lot) - lots_held`` lots (``lot`` = the simulator's lot in base units).  It
  walks the book: the fill price is the order's VWAP (spread and market
  impact included), a remainder beyond the visible book is dropped (partial
  fill), and every other agent and predator sees and reacts to it.
* The taker fee is ``fee_bps / 1e4 * |filled notional|``; cash changes by
  ``-(signed notional) - fee``; units stay constant until the next fill.
* Equity is marked at every bar close (``cash + units * close``).  Ruin:
  when equity at a close is <= 0 the position is flattened by a market
  order at the next open and equity is reported as 0 from that close on (the
  bar backtester flattens at the close price itself, which a book cannot).
* No funding (spot).

Scenario genomes (``forge.sim.params.SCENARIO_SPECS``) make predators
react to the strategy's position and its last entry price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from forge.core.errors import ConfigError
from forge.sim.facts import realism_distance, stylized_facts
from forge.sim.market import DEFAULT_START_MS, DEFAULT_START_PRICE, SimConfig, Simulator, simulate_bars

SIM_TRADE_DTYPE = np.dtype(
    [
        ("bar", np.int64),  # index of the bar whose open the order was sent at
        ("open_time", np.int64),  # ms UTC of that bar
        ("side", np.int8),  # +1 buy, -1 sell
        ("units", np.float64),  # signed base units filled
        ("units_requested", np.float64),  # signed base units sent
        ("price", np.float64),  # VWAP of the fill, quote per base
        ("notional", np.float64),  # |filled notional|, quote currency
        ("fee", np.float64),  # taker fee, quote currency
        ("mid_before", np.float64),  # mid just before the order, quote per base
        ("mid_after", np.float64),  # mid just after the order
        ("position_before", np.float64),  # target exposure before
        ("position_after", np.float64),  # target exposure after
    ]
)
"""One strategy order executed in the simulated book."""

StrategyFn = Callable[[int, pl.DataFrame], float]


@dataclass(frozen=True)
class StrategySimResult:
    """Output of :func:`simulate_with_strategy`.

    bars: bar frame (BAR_SCHEMA) of the market *with* the strategy trading;
    position: (n,) float64 cleaned target decided at each close; equity:
    (n,) float64 quote currency at each close; returns: (n,) float64 simple
    per-bar equity returns (first vs initial capital); units: (n,) float64
    base units held at each close; trades: (k,) SIM_TRADE_DTYPE; pnl: final
    equity - initial capital; fees: total fee paid; impact_cost: sum over
    fills of |units| * |price - mid_before| (quote currency: half spread +
    walking the book); initial_capital: quote currency; truncated: the
    simulation's event budget (``SimConfig.max_events``) stopped the market
    early — later bars are flat and later strategy orders never executed.
    """

    bars: pl.DataFrame
    position: np.ndarray
    equity: np.ndarray
    returns: np.ndarray
    units: np.ndarray
    trades: np.ndarray
    pnl: float
    fees: float
    impact_cost: float
    initial_capital: float
    ruined: bool
    truncated: bool = False

    @property
    def total_return(self) -> float:
        """Final equity / initial capital - 1."""
        return float(self.equity[-1] / self.initial_capital - 1.0) if self.equity.size else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars: pnl, total_return, fees, impact_cost, n_trades, ruined, truncated,
        final_equity."""
        return {"pnl": self.pnl, "total_return": self.total_return, "fees": self.fees,
                "impact_cost": self.impact_cost, "n_trades": int(self.trades.shape[0]), "ruined": self.ruined,
                "truncated": self.truncated,
                "final_equity": float(self.equity[-1]) if self.equity.size else self.initial_capital}


def _clean(x: float) -> float:
    if not math.isfinite(x):
        return 0.0
    return min(max(float(x), -1.0), 1.0)


def simulate_with_strategy(
    dsg: np.ndarray,
    scenario: np.ndarray | None,
    strategy: np.ndarray | Sequence[float] | StrategyFn,
    n_minutes: int,
    seed: int,
    fee_bps: float = 10.0,
    *,
    initial_capital: float = 200.0,
    start_ms: int = DEFAULT_START_MS,
    start_price: float = DEFAULT_START_PRICE,
    config: SimConfig | None = None,
) -> StrategySimResult:
    """Run the simulated market with a strategy trading market orders at bar opens.

    dsg: (N_P,) float64 DSG; scenario: (N_SC,) float64 predator genome or None
    (quiet); strategy: either (n_minutes,) float64 target exposures (fraction
    of equity, decided at each close) or a callable ``fn(t, bars) -> float``
    called at the close of every bar t with the bar frame of bars [0, t]
    (nothing later exists yet, so no look-ahead); n_minutes: bars; seed:
    int >= 0 (the same seed without any order gives exactly
    ``simulate_bars(dsg, n_minutes, seed)``); fee_bps: taker fee in bp of
    notional (>= 0); initial_capital: quote currency (> 0).
    returns StrategySimResult (accounting in the module docstring).
    raises ConfigError on invalid parameters or a position vector of the
    wrong length.
    """
    if not (isinstance(fee_bps, (int, float)) and 0.0 <= fee_bps < 10_000):
        raise ConfigError(f"fee_bps must be in [0, 10000), got {fee_bps!r}")
    if not (isinstance(initial_capital, (int, float)) and math.isfinite(initial_capital) and initial_capital > 0):
        raise ConfigError(f"initial_capital must be a positive finite number, got {initial_capital!r}")
    fn: StrategyFn | None = None
    pos_in: np.ndarray | None = None
    if callable(strategy):
        fn = strategy
    else:
        pos_in = np.asarray(strategy, dtype=np.float64).reshape(-1)
        if pos_in.shape[0] != n_minutes:
            raise ConfigError(f"position vector has {pos_in.shape[0]} entries, expected n_minutes = {n_minutes}")
    sim = Simulator(dsg, seed, n_minutes, scenario=scenario, start_ms=start_ms, start_price=start_price, config=config)
    lot = sim.lot_base
    fee_rate = fee_bps / 1e4
    n = int(n_minutes)
    position = np.zeros(n)
    equity = np.zeros(n)
    units_at = np.zeros(n)
    trades: list[tuple] = []
    cash = float(initial_capital)
    prev_target = 0.0
    ruined = False
    pending: tuple[int, float, float] | None = None  # (lots sent, pos before, pos after)
    fees = 0.0
    impact = 0.0
    for t in range(n):
        sim.run(1)  # bar t forms; a queued order went out at its open
        if pending is not None:
            q, notional, mid0, mid1 = sim.last_strategy_fill()
            if q != 0:
                du = q * lot
                fee = fee_rate * notional
                vwap = notional / abs(du)
                cash -= math.copysign(notional, du) + fee
                fees += fee
                impact += abs(du) * abs(vwap - mid0)
                ot = int(start_ms + 60_000 * t)
                trades.append((t, ot, 1 if du > 0 else -1, du, pending[0] * lot, vwap, notional, fee, mid0, mid1,
                               pending[1], pending[2]))
            pending = None
        units = sim.strategy_lots * lot
        close = float(sim.bar_columns(t, t + 1)["close"][0])
        eq = cash + units * close
        if not ruined and eq <= 0.0:
            ruined = True
        equity[t] = 0.0 if ruined else eq
        units_at[t] = units
        target = _clean(fn(t, sim.bars(0, t + 1)) if fn is not None else pos_in[t])  # type: ignore[index]
        position[t] = target
        if t == n - 1:
            break
        if ruined:
            if sim.strategy_lots != 0:
                lots = -sim.strategy_lots
                sim.queue_strategy_order(lots)
                pending = (lots, prev_target, 0.0)
            prev_target = 0.0
            continue
        if target != prev_target:
            m = sim.mid()
            e_open = cash + units * m
            want = int(round(target * e_open / m / lot)) if e_open > 0 else 0
            lots = want - sim.strategy_lots
            if lots != 0:
                sim.queue_strategy_order(lots)
                pending = (lots, prev_target, target)
            prev_target = target
    rec = np.array(trades, dtype=SIM_TRADE_DTYPE) if trades else np.zeros(0, dtype=SIM_TRADE_DTYPE)
    prev = np.concatenate(([initial_capital], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(prev > 0, equity / prev - 1.0, 0.0)
    return StrategySimResult(
        bars=sim.bars(), position=position, equity=equity, returns=rets, units=units_at, trades=rec,
        pnl=float(equity[-1] - initial_capital), fees=float(fees), impact_cost=float(impact),
        initial_capital=float(initial_capital), ruined=ruined, truncated=sim.truncated,
    )


def scenario_realism(
    dsg: np.ndarray,
    scenario: np.ndarray,
    facts_ref: dict[str, float],
    weights: dict[str, float],
    *,
    n_minutes: int = 240,
    seeds: Sequence[int] = (0,),
    config: SimConfig | None = None,
) -> float:
    """Realism term of a scenario: mean over ``seeds`` of ``realism_distance``
    between the facts of bars simulated with ``scenario`` (no strategy) and
    ``facts_ref`` (the calibrated simulator's facts, ``load_calibrated_facts``).
    returns float >= 0 (larger = less realistic). raises ConfigError on bad vectors."""
    d = [realism_distance(stylized_facts(simulate_bars(dsg, n_minutes, s, scenario=scenario, config=config)),
                          facts_ref, weights) for s in seeds]
    return float(np.mean(d))
