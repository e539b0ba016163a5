"""PCMCI causal filter: planted lagged driver kept, pure noise dropped, BH matches statsmodels."""

from __future__ import annotations

import numpy as np
import pytest

from forge.causal import benjamini_hochberg, causal_filter, pcmci_links_into
from forge.features import FeatureMatrix
from forge.settings import CausalSection


def _planted(n: int, seed: int, strength: float = 0.15):
    rng = np.random.default_rng(seed)
    driver = np.zeros(n)
    e = rng.standard_normal(n)
    for t in range(1, n):  # AR(1) driver, like a smoothed order-flow feature
        driver[t] = 0.5 * driver[t - 1] + e[t]
    noise_a = rng.standard_normal(n)
    noise_b = np.convolve(rng.standard_normal(n), np.ones(5) / 5, mode="same")  # autocorrelated noise
    fwd = strength * driver + rng.standard_normal(n)  # fwd[t] = return from t to t+1, driven by driver[t]
    fwd[-1] = np.nan
    driver[:3] = np.nan  # warm-up NaNs are handled
    fm = FeatureMatrix(names=("driver", "noise_a", "noise_b"), values=np.vstack([driver, noise_a, noise_b]),
                       lookbacks=(1, 1, 1))
    return fm, fwd


def test_planted_driver_kept_and_noise_dropped():
    fm, fwd = _planted(4000, seed=1)
    cfg = CausalSection(tau_max=3, keep_at_least=0, max_samples=4000)
    rep = causal_filter(fm, fwd, cfg, seed=0)
    assert rep.kept == ("driver",)
    best = rep.best_link("driver")
    assert best.lag == 1 and best.value > 0.05 and best.q < 1e-6
    d = rep.to_dict()
    assert d["kept"] == ["driver"] and d["parents_of_return"][0]["feature"] == "driver"
    assert rep.render_rows()[0][0] == "feature" and len(rep.render_rows()) == 4


def test_noise_only_false_discoveries_are_rare():
    hits = 0
    for seed in range(6):
        fm, fwd = _planted(2000, seed=100 + seed, strength=0.0)
        rep = causal_filter(fm, fwd, CausalSection(tau_max=3, keep_at_least=0, max_samples=2000), seed=seed)
        hits += len(rep.kept)
    assert hits <= 1


def test_keep_at_least_fills_and_says_so():
    fm, fwd = _planted(1500, seed=3, strength=0.0)
    rep = causal_filter(fm, fwd, CausalSection(tau_max=2, keep_at_least=2, max_samples=1500), seed=0)
    assert len(rep.kept) == 2
    assert all("not significant" in rep.reasons[n] for n in rep.kept)


def test_link_into_target_never_uses_lag_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    y = x + 0.1 * rng.standard_normal(1000)  # contemporaneous only
    links = pcmci_links_into(np.column_stack([x, y]), ["x", "y"], 1, tau_max=2)
    assert {t.lag for t in links} == {1, 2}
    assert min(t.p for t in links) > 1e-3


def test_benjamini_hochberg_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(5).uniform(size=40) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)


def test_sample_features_runs_on_real_bars():
    from forge.data.loader import load_sample
    from forge.features import compute_features

    bars, _ = load_sample()
    pytest.importorskip("tigramite")
    fm = compute_features(bars)
    close = bars["close"].to_numpy()
    fwd = np.full(close.shape[0], np.nan)
    fwd[:-1] = np.diff(np.log(close))
    rep = causal_filter(fm, fwd, CausalSection(max_samples=5000), seed=0)
    assert set(rep.kept) <= set(fm.names) and len(rep.kept) >= 3
