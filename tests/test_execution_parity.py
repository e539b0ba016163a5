"""Parity of the kline fill model: the replay venue's fills = the kline backtest's fills, bar for bar (issue 31)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from crucible.venues.base import BAR_FIELDS
from crucible.venues.replay import ReplayVenue
from forge.backtest import BacktestConfig
from forge.backtest.fills import ExecutionConfig, limit_price, run_kline_backtest
from forge.execution.intents import deadline


def _data(n=400, seed=5):
    rng = np.random.default_rng(seed)
    c = 50.0 * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))
    o = np.r_[50.0, c[:-1]]
    h = np.maximum(o, c) * (1 + rng.uniform(0, 6e-4, n))
    lo = np.minimum(o, c) * (1 - rng.uniform(0, 6e-4, n))
    v = rng.uniform(10, 200, n)
    t = 1_717_200_000_000 + 60_000 + 60_000 * np.arange(n, dtype=np.int64) * 7  # no funding times
    sw = rng.random(n) < 1 / 25
    pos = (np.cumsum(sw * rng.integers(1, 3, n)) % 3 - 1).astype(np.float64) * 0.8
    return o, h, lo, c, v, t, pos


def _frame(o, h, lo, c, v, t):
    cols = {"open_time": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
    return pl.DataFrame({k: cols.get(k, np.zeros(len(o))) for k in BAR_FIELDS if k in cols})


def _floor_lot(q, lot):
    q = abs(q)
    return q if lot <= 0 else math.floor(q / lot + 1e-9) * lot


def _drive_replay(o, h, lo, c, v, t, pos, *, cap, taker_bps, maker_bps, slip_bps, share, lot, tick, dl_bars, touch):
    """The kline model's decisions, made bar by bar against the replay venue (the live paper accounting)."""
    venue = ReplayVenue({"X": _frame(o, h, lo, c, v, t)}, start=0, balance=cap, taker_fee_bps=taker_bps,
                        slippage_bps=slip_bps, maker_fee_bps=maker_bps, max_volume_share=share, lot_size=lot)
    venue.next_bars()  # bar 0 closes
    hs = slip_bps / 1e4
    last_tgt, working, rem, side, age, dl = 0.0, False, 0.0, 0.0, 0, 0
    n_cid = 0
    for i in range(1, len(o)):
        pc = c[i - 1]
        tgt = float(np.clip(np.nan_to_num(pos[i - 1]), -1, 1))
        units = venue.fetch_positions().get("X", 0.0)
        if tgt != last_tgt:
            eq = venue.fetch_balance() + units * pc
            rem = tgt * eq / pc - units
            side = 1.0 if rem > 0 else -1.0
            urg = min(1.0, 0.5 * abs(tgt - last_tgt) + 0.5 * abs(tgt))
            dl, age, working, last_tgt = deadline(urg, dl_bars), 0, abs(rem) > 0, tgt
        cid, market = None, False
        if working:
            q = _floor_lot(rem, lot)
            if q <= 0:
                working = False
            else:
                n_cid += 1
                cid = f"c{n_cid}"
                market = dl - age <= 0 or not touch
                if market:
                    venue.create_market_order("X", side * q, cid)
                else:
                    venue.create_limit_order("X", side * q, limit_price(pc, int(side), hs, 1.0, tick), cid)
                age += 1
        venue.next_bars()  # bar i: the order's fills
        if cid is not None:
            st = venue.fetch_order("X", cid)
            rem -= st.filled
            if market:
                working = False
            elif st.status == "open":
                venue.cancel_order("X", cid)  # cancel / replace each bar
    return venue.fetch_fills("X"), venue.fetch_balance()


@pytest.mark.parametrize("touch,lot", [(True, 0.0), (True, 0.01), (False, 0.0)])
def test_replay_fills_equal_backtest_fills_bar_for_bar(touch, lot):
    o, h, lo, c, v, t, pos = _data()
    cap, taker, maker, slip, share, tick = 1000.0, 5.0, 2.0, 3.0, 0.05, 0.001
    fills, cash = _drive_replay(o, h, lo, c, v, t, pos, cap=cap, taker_bps=taker, maker_bps=maker, slip_bps=slip,
                                share=share, lot=lot, tick=tick, dl_bars=4, touch=touch)
    ex = ExecutionConfig(mode="kline-limit" if touch else "taker", deadline_bars=4, max_volume_share=share,
                         tick_size=tick, lot_size=lot)
    r = run_kline_backtest(o, h, lo, c, v, t, pos, BacktestConfig(initial_capital=cap, taker_fee_bps=taker), ex,
                           maker_fee_bps=maker, half_spread=np.full(len(o), slip / 1e4))
    assert len(fills) == r.fills.shape[0] > 10
    bar_of = {int(x): i for i, x in enumerate(t)}
    assert [bar_of[f.time_ms] for f in fills] == list(r.fills["bar"])
    assert [f.qty for f in fills] == list(r.fills["units"])  # bit for bit
    assert [f.price for f in fills] == list(r.fills["price"])
    assert [f.fee for f in fills] == list(r.fills["fee"])
    if touch:
        assert 0 < int(np.sum(r.fills["maker"])) < r.fills.shape[0]  # both passive fills and deadline crosses
    units = sum(f.qty for f in fills)
    assert cash + units * c[-1] == pytest.approx(r.equity[-1], rel=1e-12)
