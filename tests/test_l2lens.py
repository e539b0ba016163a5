"""The Liquidity Lens on recorded books (forge.features.l2lens): hand-worked OFI (Cont, Kukanov & Stoikov 2014),
book pressure over levels and ticks, liquidity density, their parity with the simulator's kernels on the same
book, and the 1-minute bars (time-weighted, gap-aware, nothing from after a bar's close)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from forge.core.errors import DataError
from forge.data.l2 import GAP_SCHEMA, L2Book
from forge.features.l2lens import lens_bars, lens_states
from forge.sim.book_nb import BUY, SELL, book_limit_nb, book_reset_nb, new_book
from forge.sim.lens_nb import book_pressure_nb, liquidity_density_nb

T0 = 1_717_200_000_000  # 2024-06-01 00:00 UTC, a minute boundary


def _book(states, ts, depth=3, after_gap=None):
    """states: [(bids [(p, q)], asks [(p, q)])] -> L2Book (NaN-padded to depth)."""
    n = len(states)
    m = {k: np.full((n, depth), np.nan) for k in ("bp", "bs", "ap", "as")}
    for i, (bids, asks) in enumerate(states):
        for j, (p, q) in enumerate(bids):
            m["bp"][i, j], m["bs"][i, j] = p, q
        for j, (p, q) in enumerate(asks):
            m["ap"][i, j], m["as"][i, j] = p, q
    ag = np.zeros(n, dtype=bool) if after_gap is None else np.asarray(after_gap, dtype=bool)
    ag[0] = True
    z = np.arange(n, dtype=np.int64)
    return L2Book(np.asarray(ts, dtype=np.int64), np.asarray(ts, dtype=np.int64), z, -np.ones(n, dtype=np.int64),
                  m["bp"], m["bs"], m["ap"], m["as"], ag)


def test_ofi_hand_worked_and_never_across_a_gap():
    # CKS 2014 eq. 2-3.  state 0 -> 1: bid 100 (10 -> 12), ask 101 (8 -> 5): e = (12 - 10) + (8 - 5) = 5
    # state 1 -> 2: bid up to 101 (4 lots): +4; ask up 101 -> 102: + old ask 5 lots: e = 9
    # state 2 -> 3: bid down to 99: - old 4 lots; ask down to 100 (6 lots): - 6: e = -10
    states = [([(100, 10)], [(101, 8)]), ([(100, 12)], [(101, 5)]), ([(101, 4)], [(102, 7)]),
              ([(99, 3)], [(100, 6)])]
    b = _book(states, [T0, T0 + 1000, T0 + 2000, T0 + 3000])
    e = lens_states(b)["ofi_e"]
    assert np.isnan(e[0]) and list(e[1:]) == [5.0, 9.0, -10.0]
    bars = lens_bars(b)
    assert bars.height == 1 and bars["ofi"][0] == 4.0 and bars["ofi_n"][0] == 3 and bars["n_states"][0] == 4
    # a gap marker before state 2: the increment 1 -> 2 is unknown and not counted
    g = _book(states, [T0, T0 + 1000, T0 + 2000, T0 + 3000], after_gap=[0, 0, 1, 0])
    eg = lens_states(g)["ofi_e"]
    assert np.isnan(eg[2]) and eg[1] == 5.0 and eg[3] == -10.0
    assert lens_bars(g)["ofi"][0] == -5.0


def _sim_and_l2_book():
    o, lv, bk, free, tracked, fb = new_book(64, 256)
    book_reset_nb(o, lv, bk, free, tracked, 0)
    bids, asks = ((100, 5), (99, 3), (97, 10)), ((101, 2), (102, 4))
    for px, q in bids:
        book_limit_nb(o, lv, bk, free, tracked, BUY, px, q, 1, px, False, fb, 0)
    for px, q in asks:
        book_limit_nb(o, lv, bk, free, tracked, SELL, px, q, 1, px + 1000, False, fb, 0)
    return lv, bk, _book([(list(map(lambda x: (float(x[0]), float(x[1])), bids)),
                           list(map(lambda x: (float(x[0]), float(x[1])), asks)))], [T0], depth=5)


def test_pressure_and_density_hand_worked_and_equal_to_the_simulators_on_the_same_book():
    lv, bk, b = _sim_and_l2_book()
    # levels: top 2 = bids 5 + 3, asks 2 + 4 -> 2/14; top 3 levels reach the bid at 97: 18 vs 6 -> 12/24
    assert lens_states(b, k=2)["pressure"][0] == pytest.approx(2 / 14)
    assert lens_states(b, k=3)["pressure"][0] == pytest.approx(12 / 24)
    # ticks (tick 1): within 3 ticks the bid side is 100, 99 (98 empty): 8 vs 6 -> 2/14; density 14 / 6
    s3 = lens_states(b, k=3, tick=1.0)
    assert s3["pressure_ticks"][0] == pytest.approx(2 / 14) and s3["density"][0] == pytest.approx(14 / 6)
    for k in range(1, 7):  # the tick versions are the simulator's kernels
        s = lens_states(b, k=k, tick=1.0)
        assert s["pressure_ticks"][0] == pytest.approx(book_pressure_nb(lv, bk, k))
        assert s["density"][0] == pytest.approx(liquidity_density_nb(lv, bk, k))
    assert lens_states(b, k=2)["density"][0] != lens_states(b, k=2)["density"][0]  # NaN without a tick
    assert s3["spread"][0] == 1.0 and s3["mid"][0] == 100.5
    empty = _book([([], [])], [T0])
    assert lens_states(empty, k=2, tick=1.0)["pressure"][0] == 0.0  # the simulator's empty-book convention


def test_bars_are_time_weighted_gap_aware_and_use_nothing_after_the_close():
    # pressure (top 1 level): +0.5 at 0 s, -0.5 at 30 s, 0.0 at 75 s; the last state holds for no time
    st = [([(100, 3)], [(101, 1)]), ([(100, 1)], [(101, 3)]), ([(100, 2)], [(101, 2)])]
    b = _book(st, [T0, T0 + 30_000, T0 + 75_000])
    bars = lens_bars(b, k=1, end_ms=T0 + 180_000)
    assert bars["open_time"].to_list() == [T0, T0 + 60_000, T0 + 120_000]
    assert bars["pressure"][0] == pytest.approx(0.0)        # 0.5 for 30 s, -0.5 for 30 s
    assert bars["pressure_close"][0] == pytest.approx(-0.5)  # the book at 60 s
    assert bars["pressure"][1] == pytest.approx(-0.5)       # -0.5 held 60 s -> 75 s, then the last state
    assert bars["pressure_close"][1] == pytest.approx(0.0)
    assert bars["n_states"].to_list() == [2, 1, 0]
    assert np.isnan(bars["ofi"][2]) and bars["gap"].to_list() == [False, False, True]  # no state: never bridged
    # a truncated recording gives the same first bar (a bar depends on nothing after its close)
    cut = _book(st[:2] + [([(100, 9)], [(101, 9)])], [T0, T0 + 30_000, T0 + 61_000])
    assert lens_bars(cut, k=1)["pressure"][0] == bars["pressure"][0]
    assert lens_bars(cut, k=1)["ofi"][0] == bars["ofi"][0]
    # a gap marker from 50 s to 75 s: bar 0 and bar 1 are flagged, the hold stops at the gap
    gaps = pl.DataFrame([("l2", "reconnect", T0 + 30_000, T0 + 30_000, 1, T0 + 75_000, T0 + 75_000, 2)],
                        schema=GAP_SCHEMA, orient="row")
    bg = _book(st, [T0, T0 + 30_000, T0 + 75_000], after_gap=[0, 0, 1])
    gb = lens_bars(bg, gaps, k=1, end_ms=T0 + 180_000)
    assert gb["gap"].to_list() == [True, True, True]
    assert gb["pressure"][0] == pytest.approx(0.5)  # only the 30 s known before the gap
    assert np.isnan(gb["pressure_close"][0])  # the book at 60 s is unknown (inside the gap)
    assert np.isnan(gb["pressure"][1]) and gb["pressure_close"][1] == pytest.approx(0.0)
    assert gb["ofi_n"][1] == 0  # the increment across the gap is not taken


def test_bad_arguments_are_data_errors():
    b = _book([([(100, 1)], [(101, 1)])], [T0])
    with pytest.raises(DataError, match="k 0"):
        lens_states(b, k=0)
    with pytest.raises(DataError, match="tick"):
        lens_states(b, tick=-1.0)
    empty = _book([([(100, 1)], [(101, 1)])], [T0])
    empty = L2Book(*(getattr(empty, f)[:0] for f in ("ts_ms", "recv_ms", "nonce", "seq", "bid_px", "bid_sz",
                                                      "ask_px", "ask_sz", "after_gap")))
    with pytest.raises(DataError, match="no recorded book states"):
        lens_bars(empty)
    assert lens_bars(empty, start_ms=T0, end_ms=T0 + 120_000)["gap"].to_list() == [True, True]


def _random_states(n, seed=3, depth=4):
    rng = np.random.default_rng(seed)
    ts = T0 + 7_000 + np.cumsum(rng.integers(200, 9_000, n))
    mid = 1000 + np.cumsum(rng.integers(-1, 2, n))
    states = []
    for i in range(n):
        bids = [((mid[i] - j) / 10, float(rng.integers(1, 9))) for j in range(depth) if rng.random() > 0.15]
        asks = [((mid[i] + 1 + j) / 10, float(rng.integers(1, 9))) for j in range(depth) if rng.random() > 0.15]
        states.append((bids, asks))
    return _book(states, ts, depth=depth), ts


def test_live_lens_emits_the_batch_bars_one_state_at_a_time():
    from forge.features.l2lens import LiveLens

    book, ts = _random_states(120)
    end = (int(ts[-1]) // 60_000 + 1) * 60_000
    batch = lens_bars(book, k=2, tick=0.1, start_ms=T0, end_ms=end)
    live = LiveLens(4, k=2, tick=0.1)
    got = []
    for i in range(len(book)):
        got += live.push(ts[i], book.bid_px[i], book.bid_sz[i], book.ask_px[i], book.ask_sz[i])
    df = pl.DataFrame(got)  # every bar but the last was closed by a later state
    assert df["open_time"].to_list() == batch["open_time"].to_list()[:-1]
    for c in batch.columns:
        np.testing.assert_allclose(df[c].to_numpy().astype(float), batch[c].to_numpy().astype(float)[:-1],
                                   equal_nan=True, err_msg=c)
    # closing the last bar by the clock: the last state holds to the close (the batch's recording ends there)
    last = live.close_until(end)
    assert len(last) == 1 and last[0]["n_states"] == batch["n_states"][-1] and last[0]["ofi"] == batch["ofi"][-1]
    assert last[0]["pressure_close"] == batch["pressure_close"][-1]
    assert batch["n_states"].sum() == 120 and batch["ofi_n"].sum() == 119
    # a bar in the middle, loaded alone with the state holding at its start and the first state after its close
    # (which says only that the last state held to the close), equals the full run's bar
    mid_bar = int(batch["open_time"][4])
    keep = (book.ts_ms < mid_bar + 60_000)
    first = int(np.flatnonzero(book.ts_ms >= mid_bar)[0]) - 1
    sub = L2Book(*(getattr(book, f)[first:keep.sum() + 1] for f in ("ts_ms", "recv_ms", "nonce", "seq", "bid_px", "bid_sz",
                                                                 "ask_px", "ask_sz", "after_gap")))
    one = lens_bars(sub, k=2, tick=0.1, start_ms=mid_bar, end_ms=mid_bar + 60_000)
    for c in ("pressure", "density", "spread", "pressure_close", "n_states"):
        assert one[c][0] == pytest.approx(batch[c][4]), c
    # ofi differs only by the increment into the carried state, which is outside the bar
    assert one["ofi"][0] == pytest.approx(batch["ofi"][4])


def test_live_lens_flags_bars_while_a_gap_is_open():
    from forge.features.l2lens import LiveLens

    book, ts = _random_states(40, seed=5)
    live = LiveLens(4, k=2)
    out = []
    for i in range(20):
        out += live.push(ts[i], book.bid_px[i], book.bid_sz[i], book.ask_px[i], book.ask_sz[i])
    live.mark_gap()
    gap_bar = int(ts[19]) // 60_000 * 60_000
    resume = int(ts[19]) + 150_000  # the stream comes back 2.5 minutes later
    out += live.push(resume, book.bid_px[20], book.bid_sz[20], book.ask_px[20], book.ask_sz[20], after_gap=True)
    out += live.close_until(resume + 60_000)
    df = pl.DataFrame(out)
    flagged = df.filter(pl.col("gap"))["open_time"].to_list()
    assert flagged == list(range(gap_bar, resume // 60_000 * 60_000 + 1, 60_000))
    last = df.filter(pl.col("open_time") == resume // 60_000 * 60_000).row(0, named=True)
    assert last["n_states"] == 1 and last["ofi_n"] == 0  # no OFI increment across the gap
    assert not df.filter(pl.col("open_time") < gap_bar)["gap"].any()


def test_policy_book_inputs_hand_worked():
    from forge.features.l2lens import LiveLens, policy_book_inputs

    # top now: bid 100 x 12, ask 101 x 5 (mid 100.5); before: bid 100 x 10, ask 101 x 8 -> e = 5 (CKS)
    spread, imb, ofi = policy_book_inputs((100, 10, 101, 8), (100, 12, 101, 5), +1)
    assert spread == pytest.approx(1 / 100.5 * 1e3)
    assert imb == pytest.approx(7 / 17) and ofi == pytest.approx(5 / 17)
    _s, imb_s, ofi_s = policy_book_inputs((100, 10, 101, 8), (100, 12, 101, 5), -1)  # a seller sees the mirror
    assert imb_s == pytest.approx(-7 / 17) and ofi_s == pytest.approx(-5 / 17)
    assert policy_book_inputs(None, (100, 12, 101, 5), 1)[2] == 0.0
    # a large flow is clipped at +-1, as in the simulator's environment
    assert policy_book_inputs((99, 50, 100, 50), (101, 1, 102, 1), 1)[2] == 1.0
    with pytest.raises(DataError):
        policy_book_inputs(None, (101, 1, 100, 1), 1)
    live = LiveLens(2)
    assert live.top() is None
    live.push(T0, np.array([100.0, 99.9]), np.array([3.0, 1.0]), np.array([100.1, 100.2]), np.array([2.0, 9.0]))
    assert live.top() == (100.0, 3.0, 100.1, 2.0)
