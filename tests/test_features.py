"""Features: no look-ahead, gaps never bridged, reference values, MTFA visibility."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from forge.core.errors import ConfigError
from forge.data.loader import load_sample
from forge.features import DEFAULT_FEATURES, FEATURES, compute_features

ALL = tuple(FEATURES)


@pytest.fixture(scope="module")
def bars():
    return load_sample()[0].head(5000)


def test_truncation_never_changes_earlier_values(bars):
    full = compute_features(bars, ALL).values
    for cut in (1000, 1187, 2999, 3001, 4321):  # inside 5m/15m/1h buckets and on their last minute
        part = compute_features(bars.head(cut), ALL).values
        for i, name in enumerate(ALL):
            np.testing.assert_array_equal(part[i], full[i, :cut], err_msg=f"{name} at cut {cut}")


def test_gap_is_never_bridged(bars):
    gapped = pl.concat([bars.head(2000), bars.slice(2300, 2700)])  # 300 minutes missing
    after = bars.slice(2300, 2700)
    fm = compute_features(gapped, ALL)
    alone = compute_features(after, ALL)
    for i, name in enumerate(ALL):
        v = fm.values[i, 2000:]
        lb = FEATURES[name].lookback
        # after the gap the feature equals the feature of the post-gap segment computed alone ...
        np.testing.assert_array_equal(v, alone.values[i], err_msg=name)
        # ... so it is NaN right after the gap (warm-up restarts)
        if lb:
            assert np.isnan(v[0]), name


def test_reference_values(bars):
    fm = compute_features(bars, ALL)
    c = bars["close"].to_numpy()
    h, lo, v = bars["high"].to_numpy(), bars["low"].to_numpy(), bars["volume"].to_numpy()
    tb = bars["taker_buy_volume"].to_numpy()
    r1 = np.log(c[1:] / c[:-1])
    np.testing.assert_allclose(fm.row("ret_1")[1:], r1, rtol=1e-12)
    np.testing.assert_allclose(fm.row("ret_60")[60:], np.log(c[60:] / c[:-60]), rtol=1e-12)
    vol = pl.Series(r1).rolling_std(20).to_numpy()
    np.testing.assert_allclose(fm.row("vol_20")[20:], vol[19:], rtol=1e-9)
    np.testing.assert_allclose(fm.row("taker_imb"), 2 * tb / v - 1, rtol=1e-12)
    np.testing.assert_allclose(fm.row("taker_imb_20")[19:],
                               pl.Series(2 * tb / v - 1).rolling_mean(20).to_numpy()[19:], rtol=1e-9, atol=1e-12)
    clv = ((c - lo) - (h - c)) / np.where(h > lo, h - lo, 1.0)
    np.testing.assert_allclose(fm.row("clv"), np.where(h > lo, clv, 0.0), rtol=1e-12)
    lv = np.log1p(v)
    s = pl.Series(lv)
    z = (lv - s.rolling_mean(60).to_numpy()) / s.rolling_std(60).to_numpy()
    np.testing.assert_allclose(fm.row("vol_z_60")[59:], z[59:], rtol=1e-7)
    # Wilder RSI by hand at one point
    d = np.diff(c[:200])
    g, los = np.maximum(d, 0), np.maximum(-d, 0)
    ag, al = g[:14].mean(), los[:14].mean()
    for x, y in zip(g[14:], los[14:]):
        ag, al = (ag * 13 + x) / 14, (al * 13 + y) / 14
    assert fm.row("rsi_14")[199] == pytest.approx(100 - 100 / (1 + ag / al), rel=1e-10)
    assert np.isnan(fm.row("rsi_14")[13]) and not np.isnan(fm.row("rsi_14")[14])


def test_mtf_visible_only_after_higher_bar_closes(bars):
    t = bars["open_time"].to_numpy()
    o, c = bars["open"].to_numpy(), bars["close"].to_numpy()
    fm = compute_features(bars, ("mtf_ret_1h",))
    x = fm.values[0]
    hour = t // 3_600_000
    first_full = np.flatnonzero((t % 3_600_000) == 0)[0]
    # the first complete hour becomes visible exactly at its 60th minute
    end = first_full + 59
    assert np.isnan(x[end - 1]) and x[end] == pytest.approx(np.log(c[end] / o[first_full]))
    # and stays until the next hour closes
    assert np.all(x[end:end + 60] == x[end])
    assert x[end + 60] == pytest.approx(np.log(c[end + 60] / o[end + 1]))
    assert hour[end] == hour[first_full]


def test_unknown_feature_is_a_config_error(bars):
    with pytest.raises(ConfigError, match="no_such_feature"):
        compute_features(bars, ("ret_1", "no_such_feature"))
    assert set(DEFAULT_FEATURES) <= set(FEATURES)
