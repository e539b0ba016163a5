"""CWO — continuous weight optimisation of capital among live slots.

Exponentiated gradient (multiplicative weights, Helmbold et al. 1998):
``w_i <- w_i * exp(eta * g_i)`` with score ``g_i = sharpe_i - drawdown_penalty * dd_i``
(per-bar Sharpe of the slot's recent equity curve, current drawdown as a
fraction), then projection onto ``min_weight <= w_i <= max_weight`` with
``sum w = 1`` (``sum w < 1`` when ``n * max_weight < 1``: the rest stays as
unallocated cash), then the turnover ``sum |w_new - w_old|`` is capped at
``max_turnover`` by moving only part of the way (a convex combination, so
bounds and the sum are preserved).  Killed slots get weight 0 (that move is
forced and not turnover-capped).  Reallocation is bookkeeping in the
Crucible's ledger, never an exchange transfer.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from crucible.bench import max_drawdown, risk_adjusted
from crucible.config import CwoConfig

__all__ = ["project_bounded_simplex", "reweight", "slot_score"]


def project_bounded_simplex(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Weights ``clip(v + tau, lo, hi)`` with tau chosen so they sum to 1 (Euclidean projection).

    v: (n,) float64; 0 <= lo <= hi <= 1.  If ``n * hi <= 1`` every weight is hi; if ``n * lo >= 1``
    every weight is 1/n.  returns (n,) float64.
    """
    v = np.asarray(v, dtype=np.float64)
    n = v.shape[0]
    if n == 0:
        return v.copy()
    if n * hi <= 1.0:
        return np.full(n, hi)
    if n * lo >= 1.0:
        return np.full(n, 1.0 / n)
    a, b = lo - float(v.max()) - 1.0, hi - float(v.min()) + 1.0
    for _ in range(60):
        m = 0.5 * (a + b)
        if np.minimum(np.maximum(v + m, lo), hi).sum() > 1.0:
            b = m
        else:
            a = m
    w = np.minimum(np.maximum(v + 0.5 * (a + b), lo), hi)
    return w * (1.0 / w.sum()) if abs(w.sum() - 1.0) < 1e-9 else w


def slot_score(equity_curve: np.ndarray, drawdown_penalty: float) -> float:
    """Risk-adjusted score: per-bar Sharpe minus ``drawdown_penalty`` x current drawdown (fraction)."""
    e = np.asarray(equity_curve, dtype=np.float64)
    return risk_adjusted(e) - drawdown_penalty * max_drawdown(e)


def reweight(weights: Mapping[str, float], curves: Mapping[str, np.ndarray], live: set[str],
             cfg: CwoConfig) -> dict[str, float]:
    """New capital weights.

    weights: slot -> current weight (missing = new slot); curves: slot -> recent equity marks (USDT,
    newest last); live: slots that may hold capital.  returns slot -> weight for every key of
    ``weights`` and ``curves``: 0 for slots not live, within [min_weight, max_weight] and summing to
    <= 1 for live ones.
    """
    keys = sorted(set(weights) | set(curves) | live)
    alive = [k for k in keys if k in live]
    out = {k: 0.0 for k in keys}
    if not alive:
        return out
    n = len(alive)
    lo, hi = min(cfg.min_weight, 1.0 / n), cfg.max_weight
    old = np.array([weights.get(k, 0.0) for k in alive], dtype=np.float64)
    if old.sum() <= 0:
        old = np.full(n, 1.0 / n)
    # forced part: the old weights restricted to the live slots, projected onto the constraints
    base = project_bounded_simplex(old / old.sum() if old.sum() > 0 else old, lo, hi)
    g = np.array([slot_score(curves.get(k, np.zeros(0))[-cfg.lookback_bars - 1:], cfg.drawdown_penalty)
                  for k in alive])
    g = np.clip(np.nan_to_num(g, nan=0.0), -50.0, 50.0)
    m = base * np.exp(cfg.eta * (g - g.max()))
    m = m / m.sum() if m.sum() > 0 else np.full(n, 1.0 / n)
    target = project_bounded_simplex(m, lo, hi)
    turnover = float(np.abs(target - base).sum())
    if turnover > cfg.max_turnover:
        target = base + (target - base) * (cfg.max_turnover / turnover)
    for k, w in zip(alive, target):
        out[k] = float(w)
    return out
