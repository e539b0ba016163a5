"""A strategy's target change as an execution intent; venue rounding; fractional Kelly sizing.

Intent (decided at the close of bar t, ``position[t]`` the new target exposure, ``position[t-1]`` the
previous one, both fractions of equity in [-1, 1]):

* side = sign(target units - held units); size = |target units - held units| (base units);
* urgency u = min(1, 0.5 |target - previous target| + 0.5 |target|): half from the size of the change
  (a flip -1 -> +1 is the largest), half from the strength of the genome's output (its target, which the
  genome already expresses in [-1, 1]); an entry 0 -> 1 is u = 1, an exit 1 -> 0 is u = 0.5,
  a trim 1 -> 0.5 is u = 0.5;
* deadline = round(deadline_bars * (1 - u / 2)) bars (>= 0): full urgency halves the time the order may
  rest; at the deadline the rest crosses with a market order.  deadline_bars = 0 is always-taker timing.

The same definition is inlined in the kline kernel (:func:`forge.backtest.fills_nb.kline_exec_nb`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Intent", "deadline", "kelly_fraction", "make_intent", "round_order", "urgency"]


def urgency(target: float, previous: float) -> float:
    """Urgency in [0, 1] of a change from ``previous`` to ``target`` exposure (module docstring)."""
    return min(1.0, 0.5 * abs(target - previous) + 0.5 * abs(target))


def deadline(u: float, deadline_bars: int) -> int:
    """Bars an intent of urgency ``u`` may rest: floor(deadline_bars * (1 - u / 2) + 0.5), >= 0."""
    if deadline_bars < 0:
        raise ValueError(f"deadline_bars must be >= 0, got {deadline_bars}")
    return int(math.floor(deadline_bars * (1.0 - 0.5 * u) + 0.5))


@dataclass(frozen=True)
class Intent:
    """side: +1 buy / -1 sell; size: base units (> 0); urgency in [0, 1]; deadline: bars (>= 0);
    decision_price: quote per unit at the decision (the implementation-shortfall benchmark)."""

    side: int
    size: float
    urgency: float
    deadline: int
    decision_price: float


def make_intent(target: float, previous: float, equity: float, held_units: float, price: float,
                deadline_bars: int) -> Intent | None:
    """The intent of moving from ``previous`` to ``target`` exposure at ``price`` with ``equity`` (quote)
    and ``held_units`` (base); None when nothing is to be traded.  raises ValueError on price <= 0."""
    if not (price > 0 and math.isfinite(price)):
        raise ValueError(f"price must be finite and > 0, got {price!r}")
    want = target * equity / price
    d = want - held_units
    if d == 0.0:
        return None
    u = urgency(target, previous)
    return Intent(1 if d > 0 else -1, abs(d), u, deadline(u, deadline_bars), price)


def round_order(side: int, price: float, qty: float, tick: float, lot: float,
                min_notional: float) -> tuple[float, float] | None:
    """Venue rounding of a passive order: price to the tick away from the market (buy down, sell up),
    size down to the lot; None when the rounded order is below one lot or ``min_notional`` (quote).
    tick > 0, lot >= 0 (0 = no lot), min_notional >= 0.  raises ValueError on bad arguments."""
    if tick <= 0 or lot < 0 or min_notional < 0 or side not in (1, -1):
        raise ValueError(f"need side +-1, tick > 0, lot >= 0, min_notional >= 0; got {side}, {tick}, {lot}, "
                         f"{min_notional}")
    p = (math.floor(price / tick + 1e-9) if side > 0 else math.ceil(price / tick - 1e-9)) * tick
    q = abs(qty) if lot == 0 else math.floor(abs(qty) / lot + 1e-9) * lot
    if q <= 0 or q * p < min_notional:
        return None
    return p, q


def kelly_fraction(returns: np.ndarray, cap: float = 0.5, max_leverage: float = 1.0) -> float:
    """Fractional Kelly multiplier of a strategy's exposure from its measured per-bar returns.

    returns: the strategy's per-bar returns at its own target exposure (at unit exposure for a +-1 rule);
    the result multiplies its targets.

    f* = mean / variance (Kelly 1956; the continuous-time growth-optimal fraction, Thorp 2006 eq. 7.1)
    of the (n,) float64 per-bar simple returns (non-finite dropped, ddof = 1); the exposure is
    min(cap * f*, max_leverage), 0 when the edge is <= 0 or fewer than 2 returns.  cap in (0, 1] (the
    seeds' 0.5 = half Kelly), max_leverage > 0.  raises ValueError on bad cap / max_leverage.
    """
    if not 0 < cap <= 1:
        raise ValueError(f"cap must be in (0, 1], got {cap}")
    if not max_leverage > 0:
        raise ValueError(f"max_leverage must be > 0, got {max_leverage}")
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return 0.0
    mu = float(np.mean(r))
    var = float(np.var(r, ddof=1))
    if mu <= 0 or var <= 0:
        return 0.0
    return min(cap * mu / var, max_leverage)
