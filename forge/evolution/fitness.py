"""The in-sample fitness of a strategy: a scalar (higher is better) from its backtest.

:func:`backtest_fitness` is the original blend (absolute Sharpe + TTT - drawdown - size) computed from the
``Metrics`` alone; :func:`skill_fitness` scores the per-bar returns against the market of the same bars
(objectives ``alpha``, ``excess``, ``timing``, ``ttt_relative``) and aggregates over in-sample sub-periods.  The
formulas and their sources are in :class:`forge.core.runconfig.FitnessConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.backtest import BacktestConfig, Metrics, buy_and_hold, run_backtest
from forge.core.factors import factor_alpha, vol_managed_market
from forge.core.runconfig import FitnessConfig
from forge.evolution.fitness_nb import alpha_period_scores_nb

__all__ = ["MarketReference", "aggregate_scores", "alpha_score", "backtest_fitness", "hedged", "market_reference",
           "objective_scores", "period_bounds", "relative_ttt", "sharpe_ratio", "skill_fitness", "uses_returns"]

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
    in bars with the run's costs (inf if never reached); ttt_short_bars: the same for holding a full short
    (position -1 from the first bar); managed: (n,) float64 the volatility-managed market of the segment
    (``forge.core.factors.vol_managed_market``, computed on the whole segment so its EWMA is warm in every
    sub-period), or None (then computed per call)."""

    returns: np.ndarray
    ttt_bars: float
    ttt_short_bars: float = math.inf
    managed: np.ndarray | None = None

    @property
    def best_constant_ttt(self) -> float:
        """The sooner of holding long and holding short to the target (bars; inf if neither reaches it)."""
        return min(self.ttt_bars, self.ttt_short_bars)


def market_reference(open_: np.ndarray, close: np.ndarray, open_time: np.ndarray,
                     bt: BacktestConfig) -> MarketReference:
    """:class:`MarketReference` of the bars (open_, close: (n,) float64 quote per unit; open_time: (n,) ms)."""
    gross = dataclasses.replace(bt, taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=0.0)
    ones = np.ones(open_.shape[0])
    returns = run_backtest(open_, close, open_time, ones, gross).returns
    short = run_backtest(open_, close, open_time, -ones, bt).metrics.ttt_bars
    return MarketReference(returns=returns, ttt_bars=float(buy_and_hold(open_, close, open_time, bt).ttt_bars),
                           ttt_short_bars=float(short), managed=vol_managed_market(returns))


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


def alpha_score(r: np.ndarray, m: np.ndarray, v: np.ndarray, periods_per_year: float,
                resid_floor: float) -> float:
    """Two-factor alpha over residual risk: the annualised appraisal ratio of r against the market m and the
    volatility-managed market v, with the residual sd floored at ``resid_floor`` x std(m).

    r ~ alpha + b_m m + b_v v + e by OLS (Jensen 1968 with the Moreira & Muir 2017 factor; see
    ``forge.core.factors``); score = alpha / max(sd(e), resid_floor * sd(m)) * sqrt(periods_per_year)
    (Treynor & Black 1973 appraisal ratio).  The floor is what keeps a near-copy of the market (a 0.99-beta
    clone has residual sd ~0 and would otherwise score +-infinity, the failure of the ``timing`` objective)
    at the little alpha it has, in units of the market's volatility; a rule holding more when volatility is
    low loads on v and keeps only the alpha v does not explain.  r, m, v: (n,) float64 per-bar returns.
    returns 0.0 for fewer than 4 bars or a flat market.
    """
    n = r.shape[0]
    sd_m = float(np.std(m, ddof=1)) if n > 1 else 0.0
    if n < 4 or not (math.isfinite(sd_m) and sd_m > 0.0):
        return 0.0
    alpha, _b, e = factor_alpha(r, np.column_stack([m, v]))
    sd_e = float(np.sqrt(e @ e / (n - 3)))
    return alpha / max(sd_e, resid_floor * sd_m) * math.sqrt(periods_per_year)


def objective_scores(objective: str, r: np.ndarray, m: np.ndarray, periods: int,
                     periods_per_year: float, managed: np.ndarray | None = None,
                     resid_floor: float = 0.5) -> list[float]:
    """Score of each in-sample sub-period: Sharpe of r (``sharpe``), of r - m (``excess``), of
    r - beta * m with the period's OLS beta (``timing``), or the two-factor appraisal ratio
    :func:`alpha_score` against m and the volatility-managed market ``managed`` (``alpha``; 0 when the
    market is flat).  r, m: (n,) float64 per-bar returns; managed: (n,) float64 or None (then
    ``vol_managed_market(m)``); resid_floor: ``FitnessConfig.resid_sd_floor``."""
    out = []
    if objective == "alpha" and managed is None:
        managed = vol_managed_market(m)
    for a, b in period_bounds(r.shape[0], periods):
        x, y = r[a:b], m[a:b]
        ref = max(float(np.std(x)), float(np.std(y)))
        if objective == "alpha":
            out.append(alpha_score(x, y, managed[a:b], periods_per_year, resid_floor))
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


@functools.lru_cache(maxsize=64)
def _period_edges(n: int, k: int) -> np.ndarray:
    """(k + 1,) int64 edges of :func:`period_bounds` (read-only; one array per segment length)."""
    edges = np.linspace(0, n, k + 1).astype(np.int64)
    edges.flags.writeable = False
    return edges


def _alpha_scores_kernel(returns: np.ndarray, ref: MarketReference, periods: int, periods_per_year: float,
                         resid_floor: float) -> list[float]:
    """The ``alpha`` period scores by ``alpha_period_scores_nb`` (the proxy screen's path of skill_fitness); a
    non-finite return goes to ``objective_scores``."""
    edges = _period_edges(returns.shape[0], periods)
    out = np.empty(periods)
    if not alpha_period_scores_nb(np.ascontiguousarray(returns, dtype=np.float64), ref.returns, ref.managed, edges,
                                  float(periods_per_year), float(resid_floor), out):
        return objective_scores("alpha", returns, ref.returns, periods, periods_per_year, ref.managed, resid_floor)
    return out.tolist()


def skill_fitness(m: Metrics, returns: np.ndarray, ref: MarketReference, size: int, max_size: int,
                  cfg: FitnessConfig, periods_per_year: float, proxy: bool = False) -> tuple[float, dict[str, Any]]:
    """Fitness for any objective (see FitnessConfig) and the record of its parts.

    m: whole-segment Metrics; returns: (n,) float64 the strategy's per-bar returns after costs; ref: the
    segment's market.  proxy: the surrogate's proxy screen -- the ``alpha`` objective's period scores come
    from the one-pass kernel ``forge.evolution.fitness_nb.alpha_period_scores_nb`` (equal to ``lstsq``'s to
    ~1e-10, not bit for bit), not ``objective_scores``.
    returns (fitness, {"objective_score": S, "period_scores": [...] }) -- the second
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
        if proxy and cfg.objective == "alpha" and ref.managed is not None:
            scores = _alpha_scores_kernel(returns, ref, cfg.periods, periods_per_year, cfg.resid_sd_floor)
        else:
            scores = objective_scores(cfg.objective, returns, ref.returns, cfg.periods, periods_per_year,
                                      ref.managed, cfg.resid_sd_floor)
        score = aggregate_scores(scores, cfg.aggregate, cfg.robust_lambda)
        if cfg.objective == "sharpe":
            ttt_term = 0.0 if not math.isfinite(m.ttt_bars) else 1.0 - m.ttt_bars / max(m.n_bars, 1)
        elif cfg.objective in ("timing", "alpha"):
            # only beating the best constant position (long or short) to the target counts: plain exposure in
            # either direction -- a constant short in a falling market included -- scores 0
            ttt_term = max(0.0, relative_ttt(m.ttt_bars, ref.best_constant_ttt, m.n_bars))
        else:
            ttt_term = rel
    capped = max(-cfg.sharpe_cap, min(cfg.sharpe_cap, score))
    fit = (cfg.w_sharpe * capped + cfg.w_ttt * ttt_term - cfg.w_drawdown * m.max_drawdown
           - cfg.w_size * size / max_size)
    return float(fit), {"objective_score": float(score), "period_scores": [float(x) for x in scores]}
