"""LightGBM surrogate: learns a fitness signal from descriptors; screening picks top + exploration."""

from __future__ import annotations

import random

import numpy as np

from forge.gp import PRIMITIVES, Operators, build_pset, genome_from_individual
from forge.core.runconfig import SurrogateConfig
from forge.evolution.surrogate import N_HEAD, PROXY_COL, Surrogate, describe, proxy_stats, rank_correlation

NAMES = ("a", "b", "c")


def _problem(n: int, seed: int):
    pset = build_pset(NAMES)
    random.seed(seed)
    trees = Operators(pset, max_depth=7, max_size=30).init_population(n, 2, 6)
    genomes = [genome_from_individual(t, pset) for t in trees]
    rng = np.random.default_rng(seed)
    # hidden fitness: rewards reading feature "b" through rolling means, penalises size; plus noise
    true = np.array([2.0 * g.tokens.count("feature:b") + 1.5 * g.tokens.count("ts_mean") - 0.1 * len(g.tokens)
                     for g in genomes]) + rng.normal(0, 0.5, n)
    proxy = true + rng.normal(0, 3.0, n)  # a weak, noisy proxy
    X = np.vstack([describe(g, NAMES, p) for g, p in zip(genomes, proxy)])
    return X, true


def test_surrogate_ranks_unseen_candidates():
    X, y = _problem(600, seed=1)
    s = Surrogate(SurrogateConfig(min_train=50), seed=0)
    s.observe(X[:400], y[:400])
    rho = rank_correlation(s.predict(X[400:]), y[400:])
    assert rho > 0.5, rho
    # better than the proxy alone
    assert rho > rank_correlation(X[400:, 9], y[400:])


def test_select_takes_top_fraction_plus_exploration_and_is_deterministic():
    X, y = _problem(300, seed=2)
    cfg = SurrogateConfig(min_train=50, top_fraction=0.1, explore_fraction=0.05)
    s = Surrogate(cfg, seed=0)
    s.observe(X[:200], y[:200])
    cand = X[200:]
    idx1, pred = s.select(cand, np.random.default_rng(5))
    idx2, _ = s.select(cand, np.random.default_rng(5))
    np.testing.assert_array_equal(idx1, idx2)
    assert len(idx1) == 10 + 5 and len(set(idx1)) == len(idx1)
    top = set(np.argsort(-pred, kind="stable")[:10])
    assert top <= set(idx1)


def test_before_min_train_selection_is_random_and_model_absent():
    X, _ = _problem(100, seed=3)
    s = Surrogate(SurrogateConfig(min_train=1000, top_fraction=0.1, explore_fraction=0.1), seed=0)
    s.observe(X[:10], np.zeros(10))
    assert s.model is None
    idx, pred = s.select(X, np.random.default_rng(0))
    assert len(idx) == 20
    np.testing.assert_array_equal(pred, X[:, 9])


def test_descriptor_layout():
    pset = build_pset(NAMES)
    random.seed(0)
    g = genome_from_individual(Operators(pset, 6, 20).init_population(1, 2, 4)[0], pset)
    d = describe(g, NAMES, proxy=1.25)
    assert d[0] == len(g.tokens) and d[PROXY_COL] == 1.25 and d.shape == (N_HEAD + len(PRIMITIVES) + len(NAMES),)
    assert np.isnan(d[PROXY_COL + 1:N_HEAD]).all()  # a bare proxy fitness: the other proxy statistics unknown
    stats = proxy_stats(0.5, {"sharpe": float("inf"), "n_trades": 4, "exposure": 0.5})
    np.testing.assert_allclose(stats, [0.5, np.nan, 4.0, 0.5])
    d = describe(g, NAMES, stats)
    np.testing.assert_allclose(d[PROXY_COL:N_HEAD], stats)


def test_proxy_windows_join_as_gaps():
    """Proxy windows spread over the in-sample data are joined with a restart of bars_since_gap at each join."""
    import numpy as np

    from forge.evolution.market import MarketArrays

    n = 100
    t = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    m = MarketArrays(("f",), (0,), np.arange(n, dtype=np.float64)[None, :], np.ones(n), np.ones(n), t,
                     np.arange(n, dtype=np.int64), "tok")
    w = m.windows([(10, 20), (50, 55), (90, 100)])
    assert w.X.shape == (1, 25) and w.X[0, 10] == 50.0 and w.token != m.token
    assert w.bars_since_gap.tolist() == list(range(10)) + list(range(5)) + list(range(10))
