"""The DSG (dominant strategy genome) and scenario (predator) parameter vectors.

Both are flat float64 vectors in *natural units*; each entry has a name,
default, bounds, unit, search scale (``lin``/``log``: how CMA-ES and the
mutation operators move it) and meaning.  Rates marked "at activity 1" are
multiplied by the latent activity level A(t) (mean ~1; ``activity_std``,
``activity_halflife_min``, ``excite_*``, and ``slow_rate_share`` of the
slow volatility component ``slow_vol_*``).  One *tick* is ``SimConfig.tick_bp``
basis points of the start price (1 bp by default); one *mean order size* is
``SimConfig.mean_order_lots`` lots; one lot is ``lot_quote`` quote currency
at the start price.

Errors: ``validate_dsg`` / ``validate_scenario`` raise ConfigError naming the
offending entry and its bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.core.errors import ConfigError
from forge.sim.agents_nb import DSG_NAMES, N_P, N_SC, SCENARIO_NAMES


@dataclass(frozen=True)
class ParamSpec:
    """One entry of a parameter vector: bounds inclusive, natural units."""

    name: str
    default: float
    lo: float
    hi: float
    unit: str
    scale: str  # "lin" or "log"
    doc: str
    integer: bool = False

    def to_unit(self, v: float) -> float:
        """Natural value -> [0, 1] search coordinate (clipped)."""
        v = min(max(float(v), self.lo), self.hi)
        if self.scale == "log":
            return (math.log(v) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def from_unit(self, u: float) -> float:
        """[0, 1] search coordinate (clipped) -> natural value."""
        u = min(max(float(u), 0.0), 1.0)
        if self.scale == "log":
            v = math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo)))
        else:
            v = self.lo + u * (self.hi - self.lo)
        v = min(max(v, self.lo), self.hi)
        return float(round(v)) if self.integer else v


DSG_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("value_vol_bp", 3.0, 0.3, 30.0, "bp/sqrt(min)", "log",
              "volatility of the latent log value per sqrt(minute) at activity 1"),
    ParamSpec("jump_rate_per_hour", 0.5, 0.01, 20.0, "1/h", "log",
              "rate of latent-value jumps at activity 1"),
    ParamSpec("jump_size_bp", 10.0, 1.0, 200.0, "bp", "log",
              "mean absolute value jump (Laplace distributed)"),
    ParamSpec("activity_std", 0.8, 0.0, 2.5, "log units", "lin",
              "stationary std of the OU log-activity (volatility clustering)"),
    ParamSpec("activity_halflife_min", 120.0, 1.0, 1440.0, "min", "log",
              "half-life of log-activity shocks"),
    ParamSpec("excite_gain", 0.2, 0.0, 5.0, "activity per bp/s", "lin",
              "trade excitation: activity added per bp/s of absolute mid movement"),
    ParamSpec("excite_halflife_s", 60.0, 1.0, 1800.0, "s", "log",
              "half-life of the trade excitation"),
    ParamSpec("noise_limit_rate", 4.0, 0.5, 20.0, "orders/s", "log",
              "zero-intelligence limit orders per second (all noise traders, at activity 1)"),
    ParamSpec("noise_market_rate", 0.8, 0.05, 10.0, "orders/s", "log",
              "zero-intelligence market orders per second (at activity 1)"),
    ParamSpec("noise_cancel_rate", 0.03, 0.001, 0.5, "1/s per order", "log",
              "cancellation hazard of each resting noise order (at activity 1)"),
    ParamSpec("noise_offset_ticks", 3.0, 0.2, 30.0, "ticks", "log",
              "mean distance of noise limit orders behind the opposite best (exponential)"),
    ParamSpec("size_sigma", 0.8, 0.0, 2.0, "log units", "lin",
              "lognormal sigma of background order sizes"),
    ParamSpec("mm_rate", 0.3, 0.05, 5.0, "requotes/s", "log",
              "requote rate of each market maker (not activity-scaled)"),
    ParamSpec("mm_half_spread_ticks", 1.0, 0.5, 10.0, "ticks", "log",
              "market makers' half spread around their reference price"),
    ParamSpec("mm_levels", 3.0, 1.0, 8.0, "levels", "lin",
              "quote levels per side per market maker", integer=True),
    ParamSpec("mm_spacing_ticks", 1.0, 1.0, 5.0, "ticks", "lin",
              "distance between a market maker's quote levels", integer=True),
    ParamSpec("mm_depth", 2.0, 0.2, 20.0, "mean order sizes", "log",
              "size of each market-maker quote"),
    ParamSpec("mm_inventory_skew", 0.3, 0.0, 3.0, "ticks per quote size", "lin",
              "reference-price shift against the maker's inventory"),
    ParamSpec("mm_inventory_limit", 10.0, 1.0, 100.0, "quote sizes", "log",
              "inventory beyond which a maker stops quoting the side that adds to it"),
    ParamSpec("mm_withdraw_bp", 15.0, 1.0, 200.0, "bp", "log",
              "mid move between two requotes that makes a maker withdraw"),
    ParamSpec("mm_withdraw_s", 5.0, 0.5, 120.0, "s", "log",
              "how long a maker stays out after withdrawing"),
    ParamSpec("mm_imbalance_skew", 0.5, 0.0, 5.0, "ticks per unit imbalance", "lin",
              "reference-price shift toward the heavier book side (top 5 levels)"),
    ParamSpec("momentum_rate", 0.3, 0.0, 5.0, "decisions/s", "lin",
              "momentum traders' decisions per second (all, at activity 1)"),
    ParamSpec("momentum_horizon_s", 120.0, 5.0, 3600.0, "s", "log",
              "time constant of the mid EMA momentum traders compare against"),
    ParamSpec("momentum_threshold_bp", 5.0, 0.5, 100.0, "bp", "log",
              "signal (mid vs EMA + imbalance term) needed to trade"),
    ParamSpec("momentum_size", 1.0, 0.1, 10.0, "mean order sizes", "log",
              "momentum market-order size"),
    ParamSpec("imbalance_weight_bp", 3.0, 0.0, 50.0, "bp per unit imbalance", "lin",
              "weight of the book imbalance in the momentum signal"),
    ParamSpec("value_rate", 1.0, 0.0, 10.0, "decisions/s", "lin",
              "fundamental traders' decisions per second (all, at activity 1)"),
    ParamSpec("value_threshold_bp", 3.0, 0.5, 100.0, "bp", "log",
              "latent value vs mid gap needed to trade"),
    ParamSpec("value_size", 1.0, 0.1, 10.0, "mean order sizes", "log",
              "fundamental market-order size"),
    ParamSpec("lot_quote", 0.1, 1e-6, 1e4, "quote currency per lot", "log",
              "value of one lot at the start price (volume scale; fitted in closed form)"),
    ParamSpec("slow_vol_std", 0.8, 0.0, 3.0, "log-variance units", "lin",
              "stationary std of the slow log-variance OU (updated once per simulated minute): the "
              "latent value's innovation variance and jump rate are multiplied by exp(h - std^2/2), mean 1; "
              "gives aggregated-scale kurtosis and long-lag volatility clustering"),
    ParamSpec("slow_vol_halflife_min", 240.0, 10.0, 10080.0, "min", "log",
              "half-life of slow log-variance shocks (10 min to one week)"),
    ParamSpec("slow_rate_share", 0.25, 0.0, 1.0, "elasticity", "lin",
              "every agent rate is multiplied by exp(e h - e^2 std^2/2) (mean 1): 0 = the slow "
              "component moves only the latent value, 1 = rates scale with the slow variance factor"),
)

SCENARIO_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("reactivity", 0.5, 0.0, 1.0, "probability", "lin",
              "strategy in a position: predators push against it with prob (1+r)/2; "
              "strategy flat: predators stay idle with prob r"),
    ParamSpec("hunt_rate_per_hour", 0.0, 0.0, 6.0, "1/h", "lin", "stop-hunt episodes per hour"),
    ParamSpec("hunt_overshoot_bp", 20.0, 1.0, 200.0, "bp", "log",
              "how far beyond the strategy's last entry (else the mid) the hunter pushes"),
    ParamSpec("hunt_clip", 3.0, 0.5, 30.0, "mean order sizes", "log", "size of each stop-hunt market order"),
    ParamSpec("hunt_max_clips", 20.0, 1.0, 200.0, "orders", "log",
              "most market orders per hunt (one every 0.5 s)", integer=True),
    ParamSpec("vacuum_rate_per_hour", 0.0, 0.0, 6.0, "1/h", "lin", "liquidity-vacuum episodes per hour"),
    ParamSpec("vacuum_duration_s", 60.0, 1.0, 900.0, "s", "log", "how long withdrawn makers stay out"),
    ParamSpec("vacuum_fraction", 0.75, 0.0, 1.0, "fraction", "lin",
              "probability that each market maker withdraws the supporting side"),
    ParamSpec("spoof_rate_per_hour", 0.0, 0.0, 12.0, "1/h", "lin", "spoofing/layering episodes per hour"),
    ParamSpec("spoof_size", 20.0, 1.0, 200.0, "mean order sizes", "log", "size of each spoof layer"),
    ParamSpec("spoof_layers", 3.0, 1.0, 8.0, "orders", "lin", "layers per episode", integer=True),
    ParamSpec("spoof_offset_ticks", 2.0, 1.0, 10.0, "ticks", "lin",
              "distance of the first layer behind the same-side best", integer=True),
    ParamSpec("spoof_lifetime_s", 30.0, 1.0, 600.0, "s", "log",
              "episode length; layers reaching the top of book are pulled at once (checked every 0.25 s)"),
    ParamSpec("shock_rate_per_hour", 0.0, 0.0, 6.0, "1/h", "lin", "volatility shocks per hour"),
    ParamSpec("shock_size_bp", 30.0, 1.0, 300.0, "bp", "log", "latent-value jump of a shock"),
    ParamSpec("shock_activity", 1.0, 0.0, 3.0, "log units", "lin", "log-activity jump of a shock"),
)

if tuple(s.name for s in DSG_SPECS) != DSG_NAMES or len(DSG_SPECS) != N_P:
    raise ImportError("forge.sim.params.DSG_SPECS out of sync with agents_nb.DSG_NAMES")
if tuple(s.name for s in SCENARIO_SPECS) != SCENARIO_NAMES or len(SCENARIO_SPECS) != N_SC:
    raise ImportError("forge.sim.params.SCENARIO_SPECS out of sync with agents_nb.SCENARIO_NAMES")


def _defaults(specs: tuple[ParamSpec, ...]) -> np.ndarray:
    return np.array([s.default for s in specs], dtype=np.float64)


def default_dsg() -> np.ndarray:
    """(N_P,) float64 DSG of the hand-set defaults (uncalibrated)."""
    return _defaults(DSG_SPECS)


def no_scenario() -> np.ndarray:
    """(N_SC,) float64 scenario with every predator rate at 0 (a quiet market)."""
    return _defaults(SCENARIO_SPECS)


def _validate(vec: Any, specs: tuple[ParamSpec, ...], what: str) -> np.ndarray:
    try:
        x = np.array(vec, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be a flat float vector of {len(specs)} values: {e}") from None
    if x.shape[0] != len(specs):
        raise ConfigError(f"{what} must have {len(specs)} entries ({', '.join(s.name for s in specs)}), got {x.shape[0]}")
    for i, s in enumerate(specs):
        v = x[i]
        if not math.isfinite(v) or v < s.lo or v > s.hi:
            raise ConfigError(f"{what}[{i}] '{s.name}' = {v!r} outside [{s.lo}, {s.hi}] ({s.unit})")
    return x


def validate_dsg(dsg: Any) -> np.ndarray:
    """Checked float64 copy of a DSG vector. raises ConfigError (names the entry)."""
    return _validate(dsg, DSG_SPECS, "DSG")


def validate_scenario(scenario: Any) -> np.ndarray:
    """Checked float64 copy of a scenario vector. raises ConfigError (names the entry)."""
    return _validate(scenario, SCENARIO_SPECS, "scenario")


def to_dict(vec: np.ndarray, specs: tuple[ParamSpec, ...] = DSG_SPECS) -> dict[str, float]:
    """name -> value (JSON-safe floats)."""
    return {s.name: float(v) for s, v in zip(specs, np.asarray(vec, dtype=np.float64))}


def from_dict(d: dict[str, Any], specs: tuple[ParamSpec, ...] = DSG_SPECS, what: str = "DSG") -> np.ndarray:
    """Vector from name -> value; missing names take their default.

    raises ConfigError on unknown names or out-of-bounds values.
    """
    names = {s.name for s in specs}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {what} parameter(s) {unknown}; known: {sorted(names)}")
    vec = np.array([float(d.get(s.name, s.default)) for s in specs], dtype=np.float64)
    return _validate(vec, specs, what)


def spec_table(specs: tuple[ParamSpec, ...] = DSG_SPECS) -> list[dict[str, Any]]:
    """Rows (name, default, lo, hi, unit, scale, doc) for docs and reports."""
    return [
        {"name": s.name, "default": s.default, "lo": s.lo, "hi": s.hi, "unit": s.unit, "scale": s.scale, "doc": s.doc}
        for s in specs
    ]
