"""The proxy screen's one-pass ``alpha`` kernel against ``alpha_score`` (lstsq), and the backtest's fill-capacity
kernel against its numpy definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forge.backtest import BacktestConfig, run_backtest
from forge.backtest.backtest_nb import count_target_changes_nb
from forge.core.factors import vol_managed_market
from forge.core.runconfig import FitnessConfig
from forge.evolution.fitness import market_reference, objective_scores, period_bounds, skill_fitness
from forge.evolution.fitness_nb import alpha_period_scores_nb

PPY = 525_600.0


def _garch_market(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-bar returns with volatility clusters (GARCH(1,1)-like), a small drift."""
    r = np.empty(n)
    h = 1e-6
    for t in range(n):
        h = 1e-8 + 0.9 * h + 0.08 * (r[t - 1] ** 2 if t else 0.0)
        r[t] = 2e-5 + math.sqrt(h) * rng.standard_normal()
    return r


def _kernel(r: np.ndarray, m: np.ndarray, v: np.ndarray, periods: int, floor: float = 0.5) -> np.ndarray:
    edges = np.array([a for a, _ in period_bounds(r.shape[0], periods)] + [r.shape[0]], dtype=np.int64)
    out = np.full(periods, np.nan)
    alpha_period_scores_nb(r, m, v, edges, PPY, floor, out)
    return out


def _strategies(rng: np.random.Generator, m: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    n = m.shape[0]
    vol = np.sqrt(np.convolve(m * m, np.ones(30) / 30, mode="same"))
    timer = np.where(vol < np.median(vol), 1.0, 0.2)  # a volatility timer (loads on v)
    return {
        "flat": np.zeros(n),
        "long": m - 1e-6,
        "clone_0.99": 0.99 * m,
        "noise": 1e-4 * rng.standard_normal(n),
        "vol_timer": timer * m,
        "skill": 0.3 * np.abs(m) + 1e-5 * rng.standard_normal(n),  # knows each bar's sign: a large true alpha
        "mixed": 0.5 * m + 0.3 * v + 1e-4 * rng.standard_normal(n),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_kernel_equals_lstsq_alpha_scores(seed):
    rng = np.random.default_rng(seed)
    m = _garch_market(rng, 8_000)
    v = vol_managed_market(m)
    for name, r in _strategies(rng, m, v).items():
        for periods in (1, 4, 7):
            ref = np.asarray(objective_scores("alpha", r, m, periods, PPY, v, 0.5))
            got = _kernel(r, m, v, periods)
            assert np.all(np.abs(got - ref) <= 1e-9 * np.maximum(1.0, np.abs(ref))), (name, periods, got, ref)
    # a large score is reproduced, not only zeros: the planted look-ahead scores far above noise
    assert _kernel(_strategies(rng, m, v)["skill"], m, v, 4).min() > 100.0


def test_the_kernel_edge_cases_match_alpha_score():
    rng = np.random.default_rng(7)
    m = _garch_market(rng, 400)
    v = vol_managed_market(m)
    r = 0.4 * m + 1e-4 * rng.standard_normal(400)
    cases = {
        "collinear v = 2 m": (r, m, 2.0 * m),
        "flat market": (r, np.zeros(400), np.zeros(400)),
    }
    for name, (rr, mm, vv) in cases.items():
        ref = np.asarray(objective_scores("alpha", rr, mm, 4, PPY, vv, 0.5))
        got = _kernel(rr, mm, vv, 4)
        assert np.all(np.abs(got - ref) <= 1e-8 * np.maximum(1.0, np.abs(ref))), (name, got, ref)
    # a NaN or infinite input is left to lstsq: the kernel reports it (skill_fitness then takes objective_scores)
    edges = np.array([0, 100, 200, 300, 400], dtype=np.int64)
    hole = np.arange(400) == 150
    for rr, mm, vv in ((np.where(hole, np.nan, r), m, v), (r, np.where(hole, np.nan, m), v),
                       (r, m, np.where(hole, np.inf, v))):
        assert not alpha_period_scores_nb(rr, mm, vv, edges, PPY, 0.5, np.empty(4))
    assert alpha_period_scores_nb(r, m, v, edges, PPY, 0.5, np.empty(4))
    # fewer than 4 bars in a period scores 0, as alpha_score
    assert np.array_equal(_kernel(r[:10], m[:10], v[:10], 5), np.zeros(5))


def test_skill_fitness_proxy_path_equals_the_full_path():
    rng = np.random.default_rng(3)
    n = 8_000
    close = 30_000.0 * np.exp(np.cumsum(_garch_market(rng, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    t = 1_717_200_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    bt, cfg = BacktestConfig(), FitnessConfig()
    ref = market_reference(open_, close, t, bt)
    for k in range(20):
        pos = np.sign(rng.standard_normal(n)).repeat(1 + k)[:n] * (k % 3 == 0 or 0.5)
        res = run_backtest(open_, close, t, pos, bt)
        full = skill_fitness(res.metrics, res.returns, ref, 12, 40, cfg, bt.periods_per_year)
        proxy = skill_fitness(res.metrics, res.returns, ref, 12, 40, cfg, bt.periods_per_year, proxy=True)
        assert abs(proxy[0] - full[0]) <= 1e-9 * max(1.0, abs(full[0])), k
        assert proxy[1].keys() == full[1].keys()
    holed = res.returns.copy()
    holed[100] = np.nan  # the kernel declines; the proxy path is then objective_scores itself
    assert (skill_fitness(res.metrics, holed, ref, 12, 40, cfg, bt.periods_per_year, proxy=True)
            == skill_fitness(res.metrics, holed, ref, 12, 40, cfg, bt.periods_per_year))


def test_fill_capacity_kernel_equals_its_numpy_definition():
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 50, 5_000):
        p = rng.choice([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0, np.nan, np.inf, -np.inf], size=n)
        p[rng.random(n) < 0.5] = 0.0
        want = int(np.count_nonzero(np.diff(np.clip(np.nan_to_num(p[:-1], nan=0.0), -1.0, 1.0), prepend=0.0)))
        assert count_target_changes_nb(p) == want, n

