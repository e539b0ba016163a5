"""The in-sample fitness of a strategy: a scalar (higher is better) from its backtest ``Metrics``.

See :class:`forge.evolution.config.FitnessConfig` for the formula and its weights.
"""

from __future__ import annotations

import math

from forge.backtest import Metrics
from forge.evolution.config import FitnessConfig

__all__ = ["backtest_fitness"]


def backtest_fitness(m: Metrics, size: int, max_size: int, cfg: FitnessConfig) -> float:
    """Scalar fitness of one backtest.

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
