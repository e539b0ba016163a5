"""PCMCI causal filter: planted lagged driver kept, pure noise dropped, BH matches statsmodels."""

from __future__ import annotations

import numpy as np
import pytest

from forge.causal import benjamini_hochberg, causal_filter, pcmci_links_into
from forge.features import FeatureMatrix
from forge.core.runconfig import CausalConfig


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
    cfg = CausalConfig(tau_max=3, keep_at_least=0, max_samples=4000)
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
        rep = causal_filter(fm, fwd, CausalConfig(tau_max=3, keep_at_least=0, max_samples=2000), seed=seed)
        hits += len(rep.kept)
    assert hits <= 1


def test_keep_at_least_fills_and_says_so():
    fm, fwd = _planted(1500, seed=3, strength=0.0)
    rep = causal_filter(fm, fwd, CausalConfig(tau_max=2, keep_at_least=2, max_samples=1500), seed=0)
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
    rep = causal_filter(fm, fwd, CausalConfig(max_samples=5000), seed=0)
    assert set(rep.kept) <= set(fm.names) and len(rep.kept) >= 3


def _slow_driven(n: int, seed: int, strength: float, window: int = 90):
    """A per-bar feature x (i.i.d.) whose ``window``-bar mean drives the next return, plus two noise features;
    fwd[t] (return t -> t+1) = strength * standardised mean(x[t-window+1..t]) + noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    c = np.concatenate(([0.0], np.cumsum(x)))
    d = np.zeros(n)
    d[window - 1:] = (c[window:] - c[:-window]) / np.sqrt(window)
    fwd = strength * d + rng.standard_normal(n)
    fwd[-1] = np.nan
    fm = FeatureMatrix(names=("x", "noise_a", "noise_b"),
                       values=np.vstack([x, rng.standard_normal(n), rng.standard_normal(n)]), lookbacks=(0, 0, 0))
    return fm, fwd


def test_slow_component_of_a_per_bar_feature_is_kept_through_its_smoothed_form():
    fm, fwd = _slow_driven(12000, seed=4, strength=0.15)
    base = dict(tau_max=2, keep_at_least=1, max_samples=12000)
    raw = causal_filter(fm, fwd, CausalConfig(**base, smooth_windows=()), seed=0)
    assert raw.best_link("x").q > 0.01  # the per-bar links alone miss it (the filter as it was)
    rep = causal_filter(fm, fwd, CausalConfig(**base), seed=0)
    assert rep.kept == ("x",) and rep.reasons["x"].startswith("kept: smoothed form ts_mean(x, 60)")
    best = rep.smoothed["links"][0]
    assert best.source == "ts_mean(x, 60)" and best.lag == 1 and best.value > 0.3 and best.q < 1e-6
    d = rep.to_dict()
    assert d["smoothed"]["tested"] == {"20": 598, "60": 199} and d["smoothed"]["links"][0]["feature"] == best.source
    row = next(r for r in rep.render_rows() if r[0] == "x")
    assert row[1] == "1x60" and float(row[4]) < 1e-6 and row[5] == "kept (smoothed: ts_mean(x, 60))"


def test_smoothed_forms_on_noise_keep_nothing_and_short_data_skips_a_window():
    hits = 0
    for seed in range(4):
        fm, fwd = _slow_driven(8000, seed=200 + seed, strength=0.0)
        rep = causal_filter(fm, fwd, CausalConfig(tau_max=2, keep_at_least=1, max_samples=8000), seed=seed)
        hits += sum(r.startswith("kept: smoothed") for r in rep.reasons.values())
    assert hits == 0
    fm, fwd = _slow_driven(3000, seed=1, strength=0.0)
    rep = causal_filter(fm, fwd, CausalConfig(tau_max=2, keep_at_least=1, max_samples=3000), seed=0)
    assert set(rep.smoothed["skipped"]) == {"60"} and rep.smoothed["tested"] == {"20": 148}


def test_smoothed_windows_must_be_gp_windows():
    from forge.core.errors import ConfigError

    fm, fwd = _slow_driven(3000, seed=1, strength=0.0)
    with pytest.raises(ConfigError, match="smooth_windows"):
        causal_filter(fm, fwd, CausalConfig(tau_max=2, smooth_windows=(90,)), seed=0)
    with pytest.raises(ConfigError, match="smooth_windows"):
        CausalConfig(smooth_windows=(1,)).validate()


def test_rolling_mean_complete_matches_numpy_and_never_bridges_nan():
    from forge.causal import rolling_mean_complete

    x = np.random.default_rng(0).standard_normal(50)
    x[20] = np.nan
    m = rolling_mean_complete(x, 5)
    for t in range(50):
        win = x[max(0, t - 4): t + 1]
        want = np.nan if t < 4 or not np.isfinite(win).all() else win.mean()
        np.testing.assert_allclose(m[t], want, rtol=1e-12, equal_nan=True)


def _clock_market(strength: float, n: int = 20_000, seed: int = 0):
    """Minute-of-day terminals and a return whose mean follows sin(minute of day): an intraday seasonality."""
    rng = np.random.default_rng(seed)
    minute = np.arange(n) % 1440
    mod_sin, mod_cos = np.sin(2 * np.pi * minute / 1440), np.cos(2 * np.pi * minute / 1440)
    noise = rng.normal(size=n)
    fwd = strength * np.sin(2 * np.pi * (minute + 1) / 1440) + rng.normal(size=n)
    fm = FeatureMatrix(names=("mod_sin", "mod_cos", "noise"), values=np.vstack([mod_sin, mod_cos, noise]),
                       lookbacks=(0, 0, 0))
    return fm, fwd


def test_clock_terminals_are_exogenous_so_a_seasonality_is_kept():
    """A clock terminal is a deterministic function of time: conditioned on its own past (the MCI test's
    autoregressive links) it has no variance left, so a real seasonality could never be kept.  Declared
    exogenous it is tested against the return's parents only: kept when planted, dropped on noise."""
    cfg = CausalConfig(tau_max=3, keep_at_least=0, max_samples=20_000, smooth_windows=())
    fm, fwd = _clock_market(0.08)
    assert "mod_sin" in causal_filter(fm, fwd, cfg, seed=0).kept
    r = np.concatenate(([np.nan], fwd[:-1]))
    data = np.column_stack([fm.values[0], fm.values[2], r])
    auto = pcmci_links_into(data, ["mod_sin", "noise", "ret"], 2, tau_max=3)
    assert min(t.p for t in auto if t.source == "mod_sin") > 1e-3  # the old conditioning: a numerical residue
    exo = pcmci_links_into(data, ["mod_sin", "noise", "ret"], 2, tau_max=3, exogenous=[0])
    assert min(t.p for t in exo if t.source == "mod_sin") < 1e-4
    for seed in range(3):
        fm0, fwd0 = _clock_market(0.0, seed=seed)
        assert not {"mod_sin", "mod_cos"} & set(causal_filter(fm0, fwd0, cfg, seed=0).kept)


def _regime_flip(n: int, seed: int, strength: float):
    """x predicts the next return with a sign that flips between two persistent regimes (ungated ~0); the
    regime terminals are noisy filtered probabilities of the state, as a fitted HMM gives them."""
    rng = np.random.default_rng(seed)
    state = np.cumsum(rng.random(n) < 1 / 500) % 2
    x = np.zeros(n)
    e = rng.standard_normal(n)
    for t in range(1, n):
        x[t] = 0.8 * x[t - 1] + e[t]
    p1 = np.clip(np.where(state == 1, 0.85, 0.15) + 0.1 * rng.standard_normal(n), 0.0, 1.0)
    fwd = strength * np.where(state == 0, 1.0, -1.0) * x + rng.standard_normal(n)
    fwd[-1] = np.nan
    names = ("x", "noise", "regime_p0", "regime_p1", "regime_next_p0", "regime_next_p1")
    vals = np.vstack([x, rng.standard_normal(n), 1 - p1, p1, 1 - p1, p1])
    return FeatureMatrix(names=names, values=vals, lookbacks=(1,) * len(names)), fwd


def test_gated_pass_keeps_an_input_whose_sign_flips_with_the_regime():
    fm, fwd = _regime_flip(8000, 1, 0.12)
    base = dict(tau_max=2, keep_at_least=0, max_samples=8000, smooth_windows=())
    off = causal_filter(fm, fwd, CausalConfig(**base, gated=False), seed=0)
    assert "x" not in off.kept  # linear ParCorr cannot see it ungated
    on = causal_filter(fm, fwd, CausalConfig(**base), seed=0)
    assert "x" in on.kept and "gated by regime_p0" in on.reasons["x"], on.reasons
    assert "noise" not in on.kept
    # only one gate for two states (p1 = 1 - p0), and none from the predicted probabilities or for a regime itself
    assert {t.source for t in on.links if t.source.startswith("gate(")} <= {"gate(x, regime_p0)",
                                                                            "gate(noise, regime_p0)"}
    hits = 0
    for seed in range(4):  # the gated pass on data without the effect
        fm0, fwd0 = _regime_flip(4000, 50 + seed, 0.0)
        hits += len(causal_filter(fm0, fwd0, CausalConfig(**{**base, "max_samples": 4000}), seed=seed).kept)
    assert hits <= 1


def test_gated_pass_does_nothing_without_regime_terminals():
    fm, fwd = _planted(3000, seed=4)
    a = causal_filter(fm, fwd, CausalConfig(tau_max=2, max_samples=3000), seed=0)
    b = causal_filter(fm, fwd, CausalConfig(tau_max=2, max_samples=3000, gated=False), seed=0)
    assert a.kept == b.kept and [(t.source, t.lag, t.p) for t in a.links] == [(t.source, t.lag, t.p) for t in b.links]


def _garch(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) GARCH(1,1) returns with Student-t(5) innovations: volatility clustering and heavy tails."""
    e = rng.standard_t(5, n) / np.sqrt(5 / 3)
    r = np.empty(n)
    h = 1.0
    for t in range(n):
        r[t] = np.sqrt(h) * e[t]
        h = 0.05 + 0.10 * r[t] ** 2 + 0.85 * h
    return r


def _pvalues(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(ParCorr's analytic p, the HC p) of corr(x_{t-1}, y_t) = 0, conditioning on y_{t-1}."""
    from scipy import stats

    from forge.causal import hc_partial_corr_pvalue

    X, Y, Z = x[:-1], y[1:], y[:-1]
    a = np.vstack([X, Y, Z])
    a = (a - a.mean(axis=1, keepdims=True)) / a.std(axis=1, keepdims=True)
    z = a[2:].T
    rx = a[0] - z @ np.linalg.lstsq(z, a[0], rcond=None)[0]
    ry = a[1] - z @ np.linalg.lstsq(z, a[1], rcond=None)[0]
    dof = a.shape[1] - 3
    rho = float(np.corrcoef(rx, ry)[0, 1])
    p_parcorr = float(2 * stats.t.sf(abs(rho * np.sqrt(dof / (1 - rho * rho))), dof))
    return p_parcorr, hc_partial_corr_pvalue(rx, ry, dof)


def test_hc_partial_correlation_is_sized_where_parcorr_over_rejects_and_finds_a_real_link():
    """The graph's false parents (benchmarks/RESULTS.md, side finding 6): a lagged volatility level has no linear
    link to a GARCH return, but ParCorr's analytic t assumes Var(x y) = Var x Var y and rejects far above 5 %; the
    HC-studentised statistic (Dalla, Giraitis & Phillips 2022) stays at size, and still finds a real link of the
    same data's size."""
    rng = np.random.default_rng(4)
    n, draws = 2000, 300
    rej = np.zeros((2, 2))
    for _ in range(draws):
        y = _garch(rng, n)
        vol = np.abs(y)  # the level of volatility at t-1: heteroskedasticity, no direction
        rej[0] += np.array(_pvalues(vol, y)) <= 0.05
        x = rng.normal(size=n)
        y_real = y.copy()
        y_real[1:] += 0.12 * x[:-1] * np.std(y)  # a real, small lagged effect under the same noise
        rej[1] += np.array(_pvalues(x, y_real)) <= 0.05
    rate = rej / draws
    assert rate[0, 0] > 0.09  # ParCorr: false links
    assert 0.02 <= rate[0, 1] <= 0.075  # HC: at size (5 % +- 2.5 binomial s.e. at 300 draws)
    assert rate[1, 1] >= 0.9 and rate[1, 0] >= 0.9  # both find the real link


def test_pcmci_with_the_hc_test_reports_the_partial_correlation_and_finds_a_planted_parent():
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=n)
    y = _garch(rng, n)
    y[2:] += 0.15 * x[:-2] * y.std()
    data = np.column_stack([x, np.abs(y), y])
    got = {t: {(k.source, k.lag): k for k in pcmci_links_into(data, ["x", "vol", "ret"], 2, tau_max=3,
                                                               target_autoregressive=True, cond_ind_test=t)}
           for t in ("parcorr", "parcorr_hc")}
    hc, pc = got["parcorr_hc"][("x", 2)], got["parcorr"][("x", 2)]
    assert hc.p < 1e-6 and 0.1 < hc.value < 0.2  # the planted parent; its value is a partial correlation
    assert hc.value == pytest.approx(pc.value, abs=0.01)  # ParCorr's statistic, another significance
    assert all(-1 <= k.value <= 1 for k in got["parcorr_hc"].values())
    with pytest.raises(Exception, match="cond_ind_test must be one of"):
        pcmci_links_into(data, ["x", "vol", "ret"], 2, cond_ind_test="nope")
