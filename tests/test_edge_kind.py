"""Edge kind (gauntlet.stages.edge_kind, forge.core.factors): volatility timing is labelled risk timing, a
planted directional rule directional; only directional survivors are published by default."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from forge.backtest import BacktestConfig, run_backtest
from forge.core.factors import HALF_LIFE_BARS, vol_managed_market
from forge.data.synthetic import synthetic_bars
from gauntlet.stages.edge_kind import DIRECTIONAL, NO_ALPHA, RISK_TIMING, classify_edge
from gauntlet.validate import publishable

GROSS = BacktestConfig(taker_fee_bps=0.0, slippage_bps=0.0)


def _returns(bars, pos):
    o, c, t = (bars[k].to_numpy() for k in ("open", "close", "open_time"))
    res = run_backtest(o, c, t, pos, GROSS)
    return res, run_backtest(o, c, t, np.ones(len(o)), GROSS).returns


def _vol_timer(bars, half_life=30.0):
    """min(1, median / s2_t): full long when the EWMA variance (bars <= t, decided at t's close) is low, less
    when it is high -- a rule with no directional information, and not the factor's own estimator."""
    c = bars["close"].to_numpy()
    x = np.r_[0.0, np.diff(np.log(c))] ** 2
    lam = 0.5 ** (1.0 / half_life)
    s2 = lfilter([1.0], [1.0, -lam], x) / lfilter([1.0], [1.0, -lam], np.ones_like(x))
    return np.minimum(1.0, np.median(s2) / np.maximum(s2, 1e-300))


def test_vol_managed_market_uses_past_bars_only():
    rng = np.random.default_rng(0)
    m = 1e-3 * rng.standard_normal(3000)
    v = vol_managed_market(m)
    assert v[0] == 0.0 and np.std(v) == pytest.approx(np.std(m), rel=1e-9)
    shocked = m.copy()
    shocked[2000] = 0.05  # a shock at bar 2000 changes the exposure from bar 2001 on, never before
    v2 = vol_managed_market(shocked)
    ratio = v2[:2000] / np.where(v[:2000] == 0, 1.0, v[:2000])
    assert np.allclose(ratio[1:], ratio[1], rtol=1e-9)  # only the global scale c differs before the shock
    assert abs(v2[2001] / shocked[2001]) < 0.2 * abs(v2[1999] / shocked[1999])
    with pytest.raises(ValueError):
        vol_managed_market(m, half_life=0.0)
    assert HALF_LIFE_BARS == 60.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vol_timer_on_a_drifting_garch_market_is_risk_timing(seed):
    bars, _ = synthetic_bars(seed, days=20, kind="drift")  # GARCH(1,1), t(4) innovations, constant drift
    res, market = _returns(bars, _vol_timer(bars))
    ek = classify_edge(res.returns, market, res.position_held)
    # the reason the label matters: against the market alone the vol-timer has significant alpha
    assert ek.p_market <= 0.05, ek
    assert ek.label == RISK_TIMING, ek


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_directional_rule_is_directional(seed):
    bars, _ = synthetic_bars(seed, strength=0.05, days=20, kind="planted")
    share = 2.0 * bars["taker_buy_volume"].to_numpy() / bars["volume"].to_numpy() - 1.0
    pos = np.sign(lfilter([1.0], [1.0, -0.9], share))  # reads the leaked latent state
    res, market = _returns(bars, pos)
    ek = classify_edge(res.returns, market, res.position_held)
    assert ek.label == DIRECTIONAL, ek


def test_noise_has_no_alpha_and_bad_input_is_refused():
    bars, _ = synthetic_bars(5, days=14, kind="null")
    rng = np.random.default_rng(5)
    pos = np.repeat(np.sign(rng.standard_normal(len(bars) // 60 + 1)), 60)[:len(bars)]
    res, market = _returns(bars, pos)
    assert classify_edge(res.returns, market, res.position_held).label == NO_ALPHA
    with pytest.raises(ValueError):
        classify_edge(res.returns[:10], market[:10], None)
    with pytest.raises(ValueError):
        classify_edge(res.returns, np.zeros_like(market), None)


def test_only_directional_survivors_are_published_by_default():
    v = {"survived": True, "edge_kind": RISK_TIMING}
    assert not publishable(v, False) and publishable(v, True)
    assert publishable({"survived": True, "edge_kind": DIRECTIONAL}, False)
    assert not publishable({"survived": False, "edge_kind": DIRECTIONAL}, True)
    assert not publishable({"survived": True, "edge_kind": NO_ALPHA}, True)
