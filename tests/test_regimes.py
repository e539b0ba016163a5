"""Predictive regimes (forge/features/regimes.py): the forward filter reads bars <= t only (truncation),
agrees with hmmlearn where filtering and smoothing coincide (the last bar), BIC picks the planted number of
states, the artifact round-trips, and the bar-by-bar filter equals the batch one."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from forge.core.errors import ConfigError, DataError
from forge.data.ranges import DataRange
from forge.features.regimes import (
    RegimeFilter, RegimeModel, fit_regime_model, is_regime_feature, load_regime_model, regime_feature_names,
    regime_features, write_regime_model,
)

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def planted(n: int, vols, vmeans, stay: float, seed: int, gaps: tuple[int, ...] = ()) -> tuple[pl.DataFrame, np.ndarray]:
    """A Markov chain of len(vols) regimes (sticky: P(stay) = ``stay``); per regime the 1-minute log return is
    N(0, vol^2) and log volume N(vmean, 0.5^2).  ``gaps``: rows after which 5 minutes are missing."""
    rng = np.random.default_rng(seed)
    k = len(vols)
    A = np.full((k, k), (1 - stay) / (k - 1))
    np.fill_diagonal(A, stay)
    s = np.zeros(n, dtype=int)
    u = rng.random(n)
    for t in range(1, n):
        s[t] = min(int(np.searchsorted(np.cumsum(A[s[t - 1]]), u[t])), k - 1)
    r = rng.normal(0.0, np.asarray(vols)[s])
    vol = np.exp(rng.normal(np.asarray(vmeans)[s], 0.5))
    step = np.ones(n, dtype=np.int64)
    for g in gaps:
        step[g + 1] = 6
    t = T0 + 60_000 * (np.cumsum(step) - 1)
    return pl.DataFrame({"open_time": t, "close": 100.0 * np.exp(np.cumsum(r)), "volume": vol}), s


def known_model(inputs=("ret", "volume")) -> RegimeModel:
    """A 3-state model with fixed parameters (standardised units) -- no fitting needed."""
    d = len(inputs)
    means = np.array([[0.0, -0.4], [0.0, 0.0], [0.0, 0.4]])[:, :d]  # weakly separated: smoothing matters
    var = np.array([[0.5, 1.0], [1.0, 1.0], [2.0, 1.0]])[:, :d]
    covars = np.stack([np.diag(v) for v in var])
    covars[:, 0, d - 1] = covars[:, d - 1, 0] = 0.05 if d > 1 else covars[:, 0, 0]
    A = np.array([[0.99, 0.008, 0.002], [0.005, 0.99, 0.005], [0.002, 0.008, 0.99]])
    return RegimeModel(startprob=np.array([0.5, 0.3, 0.2]), transmat=A, means=means, covars=covars,
                       center=np.array([0.0, 2.0])[:d], scale=np.array([5e-4, 0.5])[:d], inputs=tuple(inputs),
                       rv_window=30, data_range=DataRange(T0, T0 + 60_000 * 99, 100))


@pytest.fixture(scope="module")
def bars3():
    """Drawn from (close to) known_model: regimes overlap, so the smoothed posterior differs from the filter."""
    return planted(3000, [3.5e-4, 5e-4, 7.07e-4], [1.8, 2.0, 2.2], 0.99, 7, gaps=(1000, 2000))


def test_names():
    assert regime_feature_names(2) == ("regime_p0", "regime_p1", "regime_next_p0", "regime_next_p1")
    assert all(map(is_regime_feature, regime_feature_names(4)))
    assert not any(map(is_regime_feature, ("regime_p", "regime_px", "ret_1", "regime_next_p")))


def test_filtered_probabilities_are_unchanged_when_later_bars_are_removed(bars3):
    """The truncation test: the terminal at t from bars <= t equals the one from all bars, for every t
    checked -- and the same test rejects the smoothed posterior (hmmlearn predict_proba), which reads the
    future, so it would fail if the terminals were smoothed."""
    from hmmlearn.hmm import GaussianHMM

    bars, _ = bars3
    m = known_model()
    full = regime_features(m, bars)
    assert np.allclose(full.values[:3].sum(axis=0), 1.0) and np.allclose(full.values[3:].sum(axis=0), 1.0)
    for cut in (50, 999, 1001, 1500, 2500):
        part = regime_features(m, bars.head(cut))
        assert np.array_equal(part.values, full.values[:, :cut]), cut
    # the smoothed posterior on the same parameters fails the very same check
    obs = m.observations(bars)[1:1000]  # one complete run (row 0 has no return)
    hmm = GaussianHMM(n_components=3, covariance_type="full")
    hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_ = m.startprob, m.transmat, m.means, m.covars
    smooth_full = hmm.predict_proba(obs)
    moved = [np.abs(smooth_full[:cut] - hmm.predict_proba(obs[:cut])).max() for cut in range(100, 1000, 100)]
    assert max(moved) > 0.2 and sum(x > 1e-3 for x in moved) >= 5


def test_filter_agrees_with_hmmlearn_on_the_last_bar_only(bars3):
    """On the last bar the smoothed posterior conditions on the same bars as the filter: they must agree;
    earlier they must not (else this would not tell filtering from smoothing)."""
    from hmmlearn.hmm import GaussianHMM

    bars, _ = bars3
    m = known_model()
    obs = m.observations(bars)[1:1000]
    filt, pred = m.filter({"open_time": bars["open_time"].to_numpy()[1:1000],
                           "close": bars["close"].to_numpy()[1:1000], "volume": bars["volume"].to_numpy()[1:1000]})
    # the slice's first row has no return (NaN): a pure prediction step, so hmmlearn starts one bar later
    # with startprob @ A as its start distribution
    hmm = GaussianHMM(n_components=3, covariance_type="full")
    hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_ = m.startprob @ m.transmat, m.transmat, m.means, m.covars
    post = hmm.predict_proba(obs[1:])
    assert np.allclose(filt[-1], post[-1], atol=1e-10, rtol=0)
    assert np.allclose(pred[-1], post[-1] @ m.transmat, atol=1e-10, rtol=0)
    assert np.max(np.abs(filt[1:-1] - post[:-1])) > 0.05


def test_a_bar_without_observation_is_a_prediction_step(bars3):
    bars, _ = bars3
    m = known_model()
    filt, pred = m.filter(bars)
    assert np.array_equal(filt[0], m.startprob)  # first bar: no return
    assert np.array_equal(filt[1001], pred[1000])  # first bar after the gap: no return
    assert np.allclose(pred[1001], filt[1001] @ m.transmat)


def test_bar_by_bar_filter_equals_the_batch_filter_bit_for_bit(bars3):
    bars, _ = bars3
    m = known_model()
    batch = regime_features(m, bars)
    live = RegimeFilter(m)
    cols = {c: bars[c].to_numpy() for c in bars.columns}
    got = np.empty_like(batch.values)
    for t in range(bars.height):
        a = max(0, t - 40)
        v = live.update({c: x[a:t + 1] for c, x in cols.items()})
        got[:, t] = [v[n] for n in batch.names]
    assert np.array_equal(got, batch.values)
    live.update({c: x[:10] for c, x in cols.items()})  # an old bar again: ignored
    assert live.bars_seen == bars.height


def test_a_filter_started_later_forgets_its_start(bars3):
    """Started 500 bars late from the start distribution, the filter converges to the full-history one
    (the chain mixes): the live Crucible may start from its own first bar."""
    bars, _ = bars3
    m = known_model()
    full = regime_features(m, bars).values
    late = regime_features(m, bars.slice(500)).values
    err = np.max(np.abs(late - full[:, 500:]), axis=0)
    assert err[0] > 0.01 and err[400:].max() < 1e-6


def test_rv_input_is_causal_and_gap_aware(bars3):
    bars, _ = bars3
    m = known_model(("ret", "volume"))
    m = RegimeModel(**{**m.__dict__, "inputs": ("ret", "rv"), "center": np.zeros(2), "scale": np.ones(2)})
    obs = m.observations(bars)
    assert np.isnan(obs[:30, 1]).all() and np.isfinite(obs[30, 1])
    assert np.isnan(obs[1001:1031, 1]).all() and np.isfinite(obs[1031, 1])
    r = np.diff(np.log(bars["close"].to_numpy()))
    assert obs[40, 1] == pytest.approx(np.log(np.sqrt(np.mean(r[10:40] ** 2)) + 1e-12))


def test_artifact_round_trip_and_refusals(tmp_path):
    m = known_model()
    p = write_regime_model(m, tmp_path / "regime_model.json")
    back = load_regime_model(p)
    assert back.to_dict() == m.to_dict()
    d = json.loads(p.read_text())
    d["transmat"][0] = [0.5, 0.1, 0.1]
    p.write_text(json.dumps(d))
    with pytest.raises(DataError, match="inconsistent"):
        load_regime_model(p)
    p.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(DataError, match="schema"):
        load_regime_model(p)
    with pytest.raises(ConfigError, match="not terminals"):
        regime_features(m, pl.DataFrame({"open_time": [T0], "close": [1.0], "volume": [1.0]}), ("regime_p3",))


@pytest.mark.parametrize("kw, msg", [(dict(max_states=5), "<= 4"), (dict(min_states=1), "2 <="),
                                     (dict(inputs=("ret", "oi")), "inputs"), (dict(rv_window=1), "rv_window")])
def test_fit_refuses_bad_settings(bars3, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        fit_regime_model(bars3[0], **kw)


def test_fit_needs_enough_bars():
    bars, _ = planted(300, [1e-4, 1e-3], [1.0, 2.0], 0.99, 1)
    with pytest.raises(DataError, match="complete in-sample observations"):
        fit_regime_model(bars)


@pytest.mark.slow
def test_bic_picks_the_planted_number_of_states_on_short_series():
    """3,000 and 5,000 bars of the planted 3-regime chain (seed 1): EM from hmmlearn's uniform transition start
    settled in a 3-state optimum no better than 2 states (log L -9,783 vs -9,787 on 5,000 bars) and BIC chose 4;
    the sticky first start (``STICKY_START``) reaches the planted optimum (-7,900) and BIC chooses 3."""
    for n in (3000, 5000):
        b3, s3 = planted(n, [1e-4, 5e-4, 2e-3], [1.0, 2.0, 3.0], 0.995, 1)
        m3 = fit_regime_model(b3, seed=0)
        assert m3.n_states == 3, (n, m3.selection)
        filt, _ = m3.filter(b3)
        assert (filt.argmax(axis=1)[50:] == s3[50:]).mean() > 0.95


@pytest.mark.slow
def test_bic_picks_the_planted_number_of_states():
    """Planted 3-regime and 2-regime chains (8,000 bars, cap 4): BIC picks 3 and 2; the filtered argmax
    recovers the planted state on > 95 % of bars; with the cap at 2 the 3-regime chain gets 2."""
    b3, s3 = planted(8000, [1e-4, 5e-4, 2e-3], [1.0, 2.0, 3.0], 0.995, 1)
    m3 = fit_regime_model(b3, seed=0)
    assert m3.n_states == 3, m3.selection
    assert [r["n_states"] for r in m3.selection] == [2, 3, 4]
    filt, _ = m3.filter(b3)
    assert (filt.argmax(axis=1)[50:] == s3[50:]).mean() > 0.95  # states ordered calm -> wild, as planted
    b2, _ = planted(8000, [2e-4, 1e-3], [1.0, 2.0], 0.995, 2)
    assert fit_regime_model(b2, seed=0).n_states == 2
    assert fit_regime_model(b3, seed=0, max_states=2).n_states == 2
    assert fit_regime_model(b3, seed=0).to_dict() == m3.to_dict()  # one seed, one model
