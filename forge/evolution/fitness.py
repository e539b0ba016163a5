"""The in-sample fitness of a strategy: a scalar (higher is better) from its backtest.

:func:`backtest_fitness` is the original blend (absolute Sharpe + TTT - drawdown - size) computed from the
``Metrics`` alone; :func:`skill_fitness` scores the per-bar returns against the market of the same bars
(objectives ``alpha``, ``excess``, ``timing``, ``ttt_relative``) and aggregates over in-sample sub-periods.  The
formulas and their sources are in :class:`forge.core.runconfig.FitnessConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.backtest import BacktestConfig, Metrics, buy_and_hold, run_backtest
from forge.core.runconfig import FitnessConfig

__all__ = ["MarketReference", "aggregate_scores", "backtest_fitness", "hedged", "market_reference", "objective_scores",
           "period_bounds", "relative_ttt", "sharpe_ratio", "skill_fitness", "uses_returns"]

FLAT_REL_TOL = 1e-9
"""A return series whose std is below this fraction of its inputs' std counts as flat (score 0): a constant
position's residual after removing its exact beta is rounding noise, not a Sharpe ratio."""


def backtest_fitness(m: Metrics, size: int, max_size: int, cfg: FitnessConfig) -> float:
    """Scalar fitness of one backtest, objective ``sharpe`` on one period (the original fitness).

    m: the strategy's in-sample ``Metrics``; size: tree size (tokens); max_size: the run's size cap.
    returns ``w_sharpe * clip(Sharpe, +-sharpe_cap) + w_ttt * ttt_score - w_drawdown * max_drawdown
    - w_size * size / max_size`` with ttt_score = 1 - TTT / n_bars (0 if the target was never reached);
    ``cfg.floor`` for fewer than ``min_trades`` fills, a ruined account or a non-finite Sharpe.
    """
    if m.n_trades < cfg.min_trades or m.final_equity <= 0.0 or not math.isfinite(m.sharpe):
        return cfg.floor
    ttt_score = 0.0 if not math.isfinite(m.ttt_bars) else 1.0 - m.ttt_bars / max(m.n_bars, 1)
    sharpe = max(-cfg.sharpe_cap, min(cfg.sharpe_cap, m.sharpe))
    return (
        cfg.w_sharpe * sharpe
        + cfg.w_ttt * ttt_score
        - cfg.w_drawdown * m.max_drawdown
        - cfg.w_size * size / max_size
    )


def uses_returns(cfg: FitnessConfig) -> bool:
    """True when the fitness needs per-bar returns and the market reference (anything but the original)."""
    return cfg.objective != "sharpe" or cfg.periods > 1


@dataclass(frozen=True)
class MarketReference:
    """The market of one segment: returns (n,) float64 per-bar simple returns of holding one unit, gross of
    costs (the position fills at the next open like any strategy's); ttt_bars: buy-and-hold's time-to-target
    in bars with the run's costs (inf if never reached)."""

    returns: np.ndarray
    ttt_bars: float


def market_reference(open_: np.ndarray, close: np.ndarray, open_time: np.ndarray,
                     bt: BacktestConfig) -> MarketReference:
    """:class:`MarketReference` of the bars (open_, close: (n,) float64 quote per unit; open_time: (n,) ms)."""
    gross = dataclasses.replace(bt, taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=0.0)
    ones = np.ones(open_.shape[0])
    returns = run_backtest(open_, close, open_time, ones, gross).returns
    return MarketReference(returns=returns, ttt_bars=float(buy_and_hold(open_, close, open_time, bt).ttt_bars))


def period_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous [a, b) ranges covering 0..n (lengths differ by at most one bar)."""
    edges = np.linspace(0, n, k + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def sharpe_ratio(x: np.ndarray, periods_per_year: float, ref_std: float = 0.0) -> float:
    """Annualised Sharpe ratio mean / std (ddof 1) * sqrt(periods_per_year) of per-bar returns ``x``;
    0 with fewer than 2 bars or when std <= FLAT_REL_TOL * ref_std (a flat series)."""
    if x.shape[0] < 2:
        return 0.0
    sd = float(np.std(x, ddof=1))
    if not math.isfinite(sd) or sd <= FLAT_REL_TOL * ref_std or sd == 0.0:
        return 0.0
    return float(np.mean(x)) / sd * math.sqrt(periods_per_year)


def hedged(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x - beta * y with beta = cov(x, y) / var(y) (population moments; 0 when var(y) = 0): the returns x net
    of their exposure to the market returns y.  x, y: (n,) float64."""
    var = float(np.var(y))
    beta = float(np.mean((x - x.mean()) * (y - y.mean()))) / var if var > 0.0 else 0.0
    return x - beta * y


def objective_scores(objective: str, r: np.ndarray, m: np.ndarray, periods: int,
                     periods_per_year: float) -> list[float]:
    """Score of each in-sample sub-period: Sharpe of r (``sharpe``), of r - m (``excess``), of
    r - beta * m with the period's OLS beta (``timing``), or the mean of r - beta * m per unit of the
    market's volatility, mean(r - beta m) / std(m) * sqrt(periods_per_year) (``alpha``; 0 when the market
    is flat).  r, m: (n,) float64 per-bar returns."""
    out = []
    for a, b in period_bounds(r.shape[0], periods):
        x, y = r[a:b], m[a:b]
        ref = max(float(np.std(x)), float(np.std(y)))
        if objective == "alpha":
            sd = float(np.std(y, ddof=1)) if y.shape[0] > 1 else 0.0
            ok = math.isfinite(sd) and sd > 0.0
            out.append(float(np.mean(hedged(x, y))) / sd * math.sqrt(periods_per_year) if ok else 0.0)
            continue
        if objective == "excess":
            z = x - y
        elif objective == "timing":
            z = hedged(x, y)
        else:
            z = x
        out.append(sharpe_ratio(z, periods_per_year, ref))
    return out


def aggregate_scores(scores: list[float], how: str, robust_lambda: float) -> float:
    """``min`` of the period scores, or their mean - robust_lambda * std (population std)."""
    s = np.asarray(scores, dtype=np.float64)
    if how == "min":
        return float(s.min())
    return float(s.mean() - robust_lambda * s.std())


def relative_ttt(ttt_bars: float, ttt_bh: float, n_bars: int) -> float:
    """(TTT_bh - TTT) / n_bars in [-1, 1]; a target never reached counts as n_bars."""
    n = max(n_bars, 1)
    t = ttt_bars if math.isfinite(ttt_bars) else n
    tb = ttt_bh if math.isfinite(ttt_bh) else n
    return (min(tb, n) - min(t, n)) / n


def skill_fitness(m: Metrics, returns: np.ndarray, ref: MarketReference, size: int, max_size: int,
                  cfg: FitnessConfig, periods_per_year: float) -> tuple[float, dict[str, Any]]:
    """Fitness for any objective (see FitnessConfig) and the record of its parts.

    m: whole-segment Metrics; returns: (n,) float64 the strategy's per-bar returns after costs; ref: the
    segment's market.  returns (fitness, {"objective_score": S, "period_scores": [...] }) -- the second
    empty when the strategy gets ``floor`` (too few fills, ruined, or a non-finite Sharpe under ``sharpe``;
    a flat strategy's undefined Sharpe is no reason to floor it under the other objectives).
    """
    if (m.n_trades < cfg.min_trades or m.final_equity <= 0.0
            or (cfg.objective == "sharpe" and not math.isfinite(m.sharpe))):
        return cfg.floor, {}
    rel = relative_ttt(m.ttt_bars, ref.ttt_bars, m.n_bars)
    if cfg.objective == "ttt_relative":
        score, scores, ttt_term = rel, [rel], 0.0
    else:
        scores = objective_scores(cfg.objective, returns, ref.returns, cfg.periods, periods_per_year)
        score = aggregate_scores(scores, cfg.aggregate, cfg.robust_lambda)
        if cfg.objective == "sharpe":
            ttt_term = 0.0 if not math.isfinite(m.ttt_bars) else 1.0 - m.ttt_bars / max(m.n_bars, 1)
        elif cfg.objective in ("timing", "alpha"):
            ttt_term = max(0.0, rel)  # only beating buy-and-hold to the target counts: no reward for beta
        else:
            ttt_term = rel
    capped = max(-cfg.sharpe_cap, min(cfg.sharpe_cap, score))
    fit = (cfg.w_sharpe * capped + cfg.w_ttt * ttt_term - cfg.w_drawdown * m.max_drawdown
           - cfg.w_size * size / max_size)
    return float(fit), {"objective_score": float(score), "period_scores": [float(x) for x in scores]}
