"""Tests of forge.backtest: fills, costs, funding, ruin, metrics, fast path == full path."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from forge.backtest import (
    TRADE_DTYPE,
    BacktestConfig,
    Metrics,
    backtest_metrics,
    backtest_throughput,
    buy_and_hold,
    run_backtest,
)
from forge.core.config import build_section
from forge.core.errors import ConfigError

EIGHT_H = 28_800_000
NO_COST = BacktestConfig(taker_fee_bps=0.0, slippage_bps=0.0)


def _times(n: int, start: int = 1_717_200_000_000) -> np.ndarray:
    return start + 60_000 * np.arange(n, dtype=np.int64)


def _arr(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float64)


def _metrics_equal(a: Metrics, b: Metrics, rel: float = 1e-12) -> None:
    for f in dataclasses.fields(Metrics):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, float) and math.isnan(x):
            assert math.isnan(y), f.name
        else:
            assert x == pytest.approx(y, rel=rel, abs=1e-300), f.name


def _random_market(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 2e-3, n)
    close = 100.0 * np.exp(np.cumsum(steps))
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 2e-4, n - 1))
    change = rng.random(n) < 0.05
    levels = rng.uniform(-1.3, 1.3, n)
    pos = np.where(change, levels, np.nan)
    pos[0] = 0.0
    # forward fill the sparse levels, then sprinkle NaNs (treated as 0)
    idx = np.where(~np.isnan(pos), np.arange(n), 0)
    np.maximum.accumulate(idx, out=idx)
    pos = pos[idx]
    pos[rng.random(n) < 0.01] = np.nan
    return open_, close, _times(n), pos


# --------------------------------------------------------------------------- hand-computed


def test_hand_computed_long_round_trip_with_fee_and_slippage():
    # fee 10 bps = 0.001, slippage 100 bps = 0.01 (large so the arithmetic is visible)
    cfg = BacktestConfig(taker_fee_bps=10.0, slippage_bps=100.0)
    open_ = _arr(100, 100, 110, 120, 125)
    close = _arr(100, 110, 120, 125, 130)
    pos = _arr(1, 1, 0, 0, 0)
    res = run_backtest(open_, close, _times(5), pos, cfg)
    # bar 0: position[0] = 1 decided at the close, nothing filled yet -> equity 200
    # bar 1: buy at open 100 * 1.01 = 101; units = 1 * 200 / 101 = 1.98019801...
    #        notional = units * 101 = 200; fee = 0.001 * 200 = 0.2; cash = 200 - 200 - 0.2 = -0.2
    #        equity at close 110 = -0.2 + (200/101) * 110 = 217.62178...
    # bar 2: hold; equity = -0.2 + (200/101) * 120 = 237.42376...
    # bar 3: position[2] = 0 -> sell at 120 * 0.99 = 118.8; notional = (200/101) * 118.8 = 235.24752...
    #        fee = 0.23524752...; cash = -0.2 + 235.24752... - 0.23524752... = 234.81227...
    # bar 4: flat -> equity unchanged
    units = 200.0 / 101.0
    sell_notional = units * 118.8
    final = -0.2 + sell_notional - 0.001 * sell_notional
    expected = _arr(200.0, -0.2 + units * 110, -0.2 + units * 120, final, final)
    np.testing.assert_allclose(res.equity, expected, rtol=1e-13)
    np.testing.assert_allclose(res.position_held, _arr(0, 1, 1, 0, 0))
    tr = res.trades
    assert tr.dtype == TRADE_DTYPE and len(tr) == 2
    assert list(tr["bar"]) == [1, 3] and list(tr["side"]) == [1, -1]
    np.testing.assert_allclose(tr["price"], [101.0, 118.8], rtol=1e-15)
    np.testing.assert_allclose(tr["units"], [units, -units], rtol=1e-13)
    np.testing.assert_allclose(tr["notional"], [200.0, sell_notional], rtol=1e-13)
    np.testing.assert_allclose(tr["fee"], [0.2, 0.001 * sell_notional], rtol=1e-13)
    np.testing.assert_array_equal(tr["open_time"], _times(5)[[1, 3]])
    np.testing.assert_array_equal(tr["position_before"], [0.0, 1.0])
    np.testing.assert_array_equal(tr["position_after"], [1.0, 0.0])
    m = res.metrics
    assert m.final_equity == pytest.approx(final, rel=1e-13)
    assert m.total_return == pytest.approx(final / 200.0 - 1.0, rel=1e-12)
    assert m.n_trades == 2 and m.n_bars == 5
    assert m.win_rate == 1.0  # one round trip, +34.81 after fees
    assert m.exposure == pytest.approx(2 / 5)
    assert m.turnover == pytest.approx((200.0 + sell_notional) / expected.mean(), rel=1e-12)
    # the only drawdown: from the bar-2 peak 237.42 to the post-sale 234.81 (slippage + fee)
    assert m.max_drawdown == pytest.approx(1.0 - final / expected[2], rel=1e-12)
    # 17 % in 5 one-minute bars annualises beyond float range
    assert m.cagr == math.inf and m.calmar == math.inf


def test_fill_at_next_open_and_last_bar_never_fills():
    open_ = _arr(100, 100, 100, 100)
    close = _arr(100, 100, 100, 100)
    # only the last bar wants a position: it would fill at bar 4's open, which does not exist
    res = run_backtest(open_, close, _times(4), _arr(0, 0, 0, 1), BacktestConfig())
    assert len(res.trades) == 0 and res.metrics.n_trades == 0
    np.testing.assert_array_equal(res.equity, 200.0)
    # decided at bar 1's close -> filled at bar 2's open, equity moves from bar 2 on
    open_ = _arr(100, 100, 100, 120)
    close = _arr(100, 100, 110, 120)
    res = run_backtest(open_, close, _times(4), _arr(0, 1, 1, 1), NO_COST)
    assert list(res.trades["bar"]) == [2]
    np.testing.assert_allclose(res.equity, [200, 200, 220, 240])
    np.testing.assert_allclose(res.position_held, [0, 0, 1, 1])


def test_short_with_slippage_and_fee():
    cfg = BacktestConfig(taker_fee_bps=10.0, slippage_bps=100.0)
    open_ = _arr(100, 100, 90)
    close = _arr(100, 90, 80)
    res = run_backtest(open_, close, _times(3), _arr(-1, -1, -1), cfg)
    # bar 1: sell at 100 * 0.99 = 99; units = -200 / 99; notional 200; fee 0.2
    #        cash = 200 + 200 - 0.2 = 399.8; equity at 90 = 399.8 - (200/99) * 90 = 217.98...
    # bar 2: equity at 80 = 399.8 - (200/99) * 80
    u = 200.0 / 99.0
    np.testing.assert_allclose(res.equity, [200.0, 399.8 - u * 90, 399.8 - u * 80], rtol=1e-13)
    assert res.trades["side"][0] == -1
    assert res.trades["units"][0] == pytest.approx(-u, rel=1e-13)
    assert res.trades["price"][0] == pytest.approx(99.0)


def test_flip_is_one_fill_with_both_legs_and_win_rate():
    open_ = _arr(100, 100, 110, 120)
    close = _arr(100, 110, 100, 120)
    res = run_backtest(open_, close, _times(4), _arr(1, -1, 0, 0), NO_COST)
    # bar 1: buy 2 units at 100 (cash 0); bar 2: flip at 110 with equity 220:
    #        new units = -220 / 110 = -2 -> one sell of 4 units; cash = 440; equity at 100 = 240
    # bar 3: buy back 2 at 120: cash = 200 -> final 200
    tr = res.trades
    assert len(tr) == 3
    assert tr["side"][1] == -1 and tr["units"][1] == pytest.approx(-4.0)
    assert tr["notional"][1] == pytest.approx(440.0)
    assert (tr["position_before"][1], tr["position_after"][1]) == (1.0, -1.0)
    np.testing.assert_allclose(res.equity, [200, 220, 240, 200])
    # round trips: long 200 -> 220 (win), short 220 -> 200 (loss)
    assert res.metrics.win_rate == 0.5


def test_flip_costs_are_split_between_legs():
    cfg = BacktestConfig(taker_fee_bps=100.0, slippage_bps=0.0)
    open_ = _arr(100, 100, 102, 100.5)
    close = _arr(100, 100, 102, 100.5)
    res = run_backtest(open_, close, _times(4), _arr(1, -1, 0, 0), cfg)
    # long entry: equity 200 before the buy at 100; fee 2 -> units 2, cash -2
    # flip at 102: equity 202; new units -202/102 = -1.98039...; one sell of 3.98039 units,
    #   fee 0.01 * 3.98039 * 102 = 4.06; closing-leg share = 4.06 * 2 / 3.98039 = 2.04
    #   long round trip: 202 - 2.04 = 199.96 < 200 -> loss   (with no fee charged: a win)
    #   short entry equity = 199.96 (the opening leg's 2.02 counts against the short)
    # cover at 100.5: equity = 202 - 4.06 + 1.98039 * 1.5 - 0.01 * 1.98039 * 100.5 = 198.93
    #   short round trip: 198.93 < 199.96 -> loss   (with the whole flip fee on the long: a win)
    u_short = 202.0 / 102.0
    final = 202.0 - 0.01 * (2.0 + u_short) * 102.0 + u_short * 1.5 - 0.01 * u_short * 100.5
    assert res.equity[-1] == pytest.approx(final, rel=1e-12)
    assert res.metrics.n_trades == 3
    assert res.metrics.win_rate == 0.0


def test_nan_and_out_of_range_positions():
    o, c, t, _ = _random_market(3, 300)
    rng = np.random.default_rng(1)
    raw = rng.uniform(-2.0, 2.0, 300)
    raw[rng.random(300) < 0.2] = np.nan
    clean = np.clip(np.nan_to_num(raw, nan=0.0), -1.0, 1.0)
    a = run_backtest(o, c, t, raw, BacktestConfig())
    b = run_backtest(o, c, t, clean, BacktestConfig())
    np.testing.assert_array_equal(a.equity, b.equity)
    assert np.all(np.abs(a.position_held) <= 1.0)


def test_slippage_dead_band_skips_a_fill():
    # target 0.5 -> 0.50001: the buy price offset (1 bp) exceeds the wanted extra exposure
    cfg = BacktestConfig(taker_fee_bps=0.0, slippage_bps=1.0)
    n = 5
    price = np.full(n, 100.0)
    res = run_backtest(price, price, _times(n), _arr(0.5, 0.50001, 0.50001, 0.50001, 0.50001), cfg)
    assert res.metrics.n_trades == 1
    np.testing.assert_array_equal(res.position_held, [0, 0.5, 0.5, 0.5, 0.5])


# --------------------------------------------------------------------------- funding, ruin, ttt


def test_funding_at_8h_boundaries():
    n = 6
    start = 3 * EIGHT_H * 1000 - 2 * 60_000  # bar 2 opens exactly at a funding time
    t = _times(n, start)
    assert t[2] % EIGHT_H == 0 and all(t[i] % EIGHT_H for i in (0, 1, 3, 4, 5))
    price = np.full(n, 100.0)
    cfg = dataclasses.replace(NO_COST, funding_rate_8h=1e-4)
    # long 2 units from bar 1: at bar 2 pays 2 * 100 * 1e-4 = 0.02
    res = run_backtest(price, price, t, np.ones(n), cfg)
    np.testing.assert_allclose(res.equity, [200, 200, 199.98, 199.98, 199.98, 199.98], rtol=1e-14)
    # short receives when the rate is positive
    res = run_backtest(price, price, t, -np.ones(n), cfg)
    np.testing.assert_allclose(res.equity, [200, 200, 200.02, 200.02, 200.02, 200.02], rtol=1e-14)
    # a position filled at the funding bar's own open pays nothing at that time
    res = run_backtest(price, price, t, _arr(0, 1, 1, 1, 1, 1), cfg)
    np.testing.assert_allclose(res.equity, 200.0)
    # funding off -> no payment
    res = run_backtest(price, price, t, np.ones(n), NO_COST)
    np.testing.assert_allclose(res.equity, 200.0)


def test_ruin_at_close_flattens_and_stays_zero():
    open_ = _arr(100, 100, 150, 250, 100, 100)
    close = _arr(100, 150, 250, 200, 100, 50)
    # short 2 units at 100 (cash 400): close 150 -> 100; close 250 -> -100 -> ruined
    pos = _arr(-1, -1, -1, 1, 0, 1)  # later changes must not trade
    res = run_backtest(open_, close, _times(6), pos, NO_COST)
    np.testing.assert_allclose(res.equity, [200, 100, 0, 0, 0, 0])
    assert len(res.trades) == 1
    np.testing.assert_array_equal(res.position_held, [0, -1, -1, 0, 0, 0])
    m = res.metrics
    assert m.final_equity == 0.0 and m.total_return == -1.0 and m.cagr == -1.0
    assert m.max_drawdown == 1.0 and m.ttt_bars == math.inf
    assert m.win_rate == 0.0  # the ruined round trip is a loss
    assert res.returns[2] == -1.0 and np.all(res.returns[3:] == 0.0)


def test_ruin_at_open_gap():
    open_ = _arr(100, 100, 300, 300)
    close = _arr(100, 100, 300, 300)
    res = run_backtest(open_, close, _times(4), _arr(-1, -1, -1, -1), NO_COST)
    # gap to 300 at bar 2's open: equity 400 - 2 * 300 = -200 <= 0 -> ruined before the close
    np.testing.assert_allclose(res.equity, [200, 200, 0, 0])
    np.testing.assert_array_equal(res.position_held, [0, -1, 0, 0])


def test_ttt_bars():
    open_ = _arr(100, 100, 150, 200, 210)
    close = _arr(100, 150, 199, 201, 150)
    # 2 units from bar 1: equity 300, 398, 402 (>= 2 * 200 at bar 3 -> 4 bars), 300
    m = run_backtest(open_, close, _times(5), np.ones(5), NO_COST).metrics
    assert m.ttt_bars == 4.0
    m = run_backtest(open_, close, _times(5), np.ones(5), dataclasses.replace(NO_COST, target_multiple=3.0)).metrics
    assert m.ttt_bars == math.inf
    m = run_backtest(open_, close, _times(5), np.zeros(5), NO_COST).metrics
    assert m.ttt_bars == math.inf and m.n_trades == 0 and math.isnan(m.sharpe) and math.isnan(m.win_rate)


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_equals_full_path(seed):
    o, c, t, p = _random_market(seed, 5_000 + 37 * seed)
    cfg = BacktestConfig(funding_rate_8h=1e-4 * (seed - 1))
    full = run_backtest(o, c, t, p, cfg)
    fast = backtest_metrics(o, c, t, p, cfg)
    _metrics_equal(full.metrics, fast, rel=1e-12)
    assert full.metrics.n_trades == len(full.trades) > 10
    assert full.metrics.final_equity == full.equity[-1]


def test_metrics_match_numpy_on_equity():
    o, c, t, p = _random_market(7, 4_321)
    cfg = BacktestConfig()
    res = run_backtest(o, c, t, p, cfg)
    eq = res.equity
    prev = np.concatenate(([cfg.initial_capital], eq[:-1]))
    r = eq / prev - 1.0
    np.testing.assert_allclose(res.returns, r, rtol=0, atol=1e-15)
    m = res.metrics
    ann = math.sqrt(cfg.periods_per_year)
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * ann, rel=1e-9)
    assert m.sortino == pytest.approx(r.mean() / math.sqrt(np.mean(np.minimum(r, 0.0) ** 2)) * ann, rel=1e-9)
    peak = np.maximum.accumulate(np.concatenate(([cfg.initial_capital], eq)))[1:]
    mdd = float(np.max(1.0 - eq / peak))
    assert m.max_drawdown == pytest.approx(mdd, rel=1e-12)
    years = len(eq) / cfg.periods_per_year
    cagr = (eq[-1] / cfg.initial_capital) ** (1.0 / years) - 1.0
    assert m.cagr == pytest.approx(cagr, rel=1e-9)
    assert m.calmar == pytest.approx(cagr / mdd, rel=1e-9)
    assert m.turnover == pytest.approx(res.trades["notional"].sum() / eq.mean(), rel=1e-12)
    assert m.exposure == pytest.approx(np.mean(res.position_held != 0.0))
    assert m.total_return == pytest.approx(eq[-1] / 200.0 - 1.0, rel=1e-12)


def test_buy_and_hold_matches_manual_computation():
    o, c, t, _ = _random_market(11, 2_000)
    cfg = BacktestConfig()
    m = buy_and_hold(o, c, t, cfg)
    fill = o[1] * (1 + cfg.slippage_bps / 1e4)
    units = 200.0 / fill
    cash = -cfg.taker_fee_bps / 1e4 * 200.0
    eq = np.concatenate(([200.0], cash + units * c[1:]))
    r = eq / np.concatenate(([200.0], eq[:-1])) - 1.0
    assert m.final_equity == pytest.approx(eq[-1], rel=1e-12)
    assert m.n_trades == 1 and math.isnan(m.win_rate)
    assert m.exposure == pytest.approx((len(eq) - 1) / len(eq))
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(525_600.0), rel=1e-9)
    peak = np.maximum.accumulate(np.concatenate(([200.0], eq)))[1:]
    assert m.max_drawdown == pytest.approx(np.max(1 - eq / peak), rel=1e-12)


def test_metrics_to_dict_and_back():
    m = run_backtest(_arr(100, 100), _arr(100, 100), _times(2), _arr(0, 0), BacktestConfig()).metrics
    d = m.to_dict()
    assert d["ttt_bars"] == math.inf and isinstance(d["ttt_bars"], float)
    assert isinstance(d["n_trades"], int) and isinstance(d["sharpe"], float)
    assert set(d) == {f.name for f in dataclasses.fields(Metrics)}
    _metrics_equal(Metrics.from_dict(d), m)


def test_throughput_report_keys():
    out = backtest_throughput(n_bars=5_000, seed=1, repeats=1)
    assert out["n_bars"] == 5_000 and out["seconds"] > 0 and out["bars_per_s"] == pytest.approx(5_000 / out["seconds"])


# --------------------------------------------------------------------------- errors and config


def test_bad_inputs_raise_named_errors():
    o = _arr(100, 101, 102)
    t = _times(3)
    p = _arr(0, 1, 0)
    with pytest.raises(ValueError, match="close"):
        backtest_metrics(o, o[:2], t, p, BacktestConfig())
    with pytest.raises(ValueError, match="position"):
        backtest_metrics(o, o, t, p[:2], BacktestConfig())
    with pytest.raises(ValueError, match="open_"):
        backtest_metrics(np.ones((3, 1)), o, t, p, BacktestConfig())
    with pytest.raises(ValueError, match="open_time"):
        backtest_metrics(o, o, t.astype(np.float64), p, BacktestConfig())
    with pytest.raises(ValueError, match="position"):
        backtest_metrics(o, o, t, ["a", "b", "c"], BacktestConfig())
    with pytest.raises(ValueError, match="no bars"):
        backtest_metrics(_arr(), _arr(), _times(0), _arr(), BacktestConfig())
    with pytest.raises(ValueError, match=r"close\[1\]"):
        run_backtest(o, _arr(100, np.nan, 100), t, p, BacktestConfig())
    with pytest.raises(ValueError, match=r"open_\[2\]"):
        backtest_metrics(_arr(100, 100, 0.0), o, t, p, BacktestConfig())
    with pytest.raises(ValueError, match=r"open_\[0\]"):
        buy_and_hold(_arr(np.inf, 100, 100), o, t, BacktestConfig())
    with pytest.raises(TypeError, match="cfg"):
        backtest_metrics(o, o, t, p, {"taker_fee_bps": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="initial_capital"):
        backtest_metrics(o, o, t, p, BacktestConfig(initial_capital=0.0))


def test_config_from_toml_table():
    cfg = build_section(BacktestConfig, {"taker_fee_bps": 4, "funding_rate_8h": 0.0001}, "backtest")
    assert cfg.taker_fee_bps == 4.0 and cfg.funding_rate_8h == 1e-4 and cfg.initial_capital == 200.0
    with pytest.raises(ConfigError, match="slippage_bps"):
        build_section(BacktestConfig, {"slippage_bps": -1.0}, "backtest")
    with pytest.raises(ConfigError, match="unknown"):
        build_section(BacktestConfig, {"fee": 1.0}, "backtest")


def test_cost_model_python_and_numba_twins_are_bit_identical():
    """forge.backtest.costs: every Python function and its _nb twin give the same float64 bits, and the
    backtester's recorded fills are exactly fill_price / taker_fee of the shared model."""
    from forge.backtest import costs

    rng = np.random.default_rng(7)
    for _ in range(2000):
        o, q, slip, rate = rng.uniform(1, 1e5), rng.normal(0, 3), rng.uniform(0, 1e-2), rng.uniform(0, 1e-2)
        p = costs.fill_price(o, q, slip)
        assert p == costs.fill_price_nb(o, q, slip) and (p > o) == (q > 0)
        assert costs.taker_fee(q, p, rate) == costs.taker_fee_nb(q, p, rate) >= 0.0
        assert costs.funding_payment(q, o, rate) == costs.funding_payment_nb(q, o, rate)
    t = int(rng.integers(0, 10**9)) * costs.FUNDING_PERIOD_MS
    p8 = costs.FUNDING_PERIOD_MS
    assert costs.is_funding_time(t) and costs.is_funding_time_nb(t, p8) and not costs.is_funding_time(t + 60_000)
    assert costs.is_funding_time(t + 4 * 3_600_000, 4 * 3_600_000) and not costs.is_funding_time(t + 4 * 3_600_000)
    assert costs.is_funding_time_nb(t + 3_600_000, 3_600_000) and not costs.is_funding_time_nb(t + 60_000, 3_600_000)
    o, c, tm, pos = _random_market(3, 600)
    cfg = BacktestConfig()
    tr = run_backtest(o, c, tm, pos, cfg).trades
    assert len(tr) > 5
    for rec in tr:
        price = costs.fill_price(o[rec["bar"]], rec["units"], costs.bps(cfg.slippage_bps))
        assert rec["price"] == price
        assert rec["fee"] == costs.taker_fee(rec["units"], price, costs.bps(cfg.taker_fee_bps))


def test_per_bar_sharpe_and_drawdown_one_definition():
    """forge.backtest.metrics: the equity-curve Sharpe (Crucible) is the return-series Sharpe (gauntlet) of the
    curve's simple returns; drawdown_from_peak is 1 - last / peak; degenerate curves give 0."""
    from forge.backtest.metrics import drawdown_from_peak, sharpe_per_bar, sharpe_per_bar_of_equity
    from gauntlet import stats

    assert stats.sharpe_per_bar is sharpe_per_bar  # the gauntlet re-exports the shared one
    e = 200.0 * np.exp(np.cumsum(np.random.default_rng(1).normal(1e-4, 1e-3, 500)))
    r = e[1:] / e[:-1] - 1.0
    assert sharpe_per_bar_of_equity(e) == pytest.approx(sharpe_per_bar(r), rel=1e-10)
    assert sharpe_per_bar(r) == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-12)
    assert drawdown_from_peak(e) == pytest.approx(1.0 - e[-1] / e.max(), rel=1e-12)
    assert sharpe_per_bar_of_equity(e[:2]) == 0.0 and sharpe_per_bar_of_equity(np.full(9, 5.0)) == 0.0
    assert sharpe_per_bar_of_equity(_arr(1.0, 0.0, 2.0, 3.0)) == 0.0 and drawdown_from_peak(_arr()) == 0.0
    assert sharpe_per_bar(_arr(1.0, np.nan)) == 0.0
