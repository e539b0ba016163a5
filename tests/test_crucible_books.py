"""Order books in the Crucible (crucible.books): a slot reading recorded-book terminals (``l2_*``) replayed over
the research recording gets the research targets bar for bar; the live book feed (crucible record's Recorder in
the bench, on a loopback fake of the exchange's public feed) gives the terminals research would compute on the
recording it writes; a late book skips the bar; a bench without books refuses such a champion in one line; the
execution policy reads its book inputs from the live feed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from crucible.config import config_from_dict
from crucible.journal import Journal
from crucible.runtime import run_live
from crucible.venues.factory import make_venue
from forge.core.errors import ConfigError, GenomeError
from forge.data.gaps import bars_since_gap
from forge.data.panels import write_klines
from forge.data.planted_l2 import planted_l2_market, write_recording
from forge.features.l2terminals import attach_l2
from forge.gp import Genome
from forge.strategy import genome_positions, strategy_features

sys.path.insert(0, str(Path(__file__).parent))

SYM, VENUE = "BOOKUSDT", "binanceusdm"
FROM = 700  # the recording starts at this bar: the replay trades flat before it
# the planted book's edge (pressure), and a window over valid book bars (a z-score and a smoothed close pressure)
PRESSURE = Genome.from_tokens(["pos_sign", "feature:l2_pressure"], [])
MIXED = Genome.from_tokens(["long_short", "gt_c", "feature:l2_ofi_z_60", "const:0", "lt_c", "ts_mean",
                            "feature:l2_pressure_close", "window:10", "const:1"], [0.5, -0.1])


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("books")
    bars, book, gaps, _p = planted_l2_market(2600, seed=5, strength=0.3, record_from=FROM)
    rec = root / "rec"
    write_recording(rec, VENUE, SYM, book, gaps)
    klines = write_klines(bars, root / "klines", SYM, "perp")
    return bars, rec, klines


def _cfg(tmp: Path, market, genomes: dict[str, Genome], l2: dict | None = None, **general):
    _bars, rec, klines = market
    slots = []
    for sid, g in genomes.items():
        p = tmp / f"{sid}.json"
        p.write_text(g.to_json())
        slots.append({"id": sid, "symbol": SYM, "genome": str(p), "costs": "futures"})
    return config_from_dict({
        "crucible": {"journal": str(tmp / "j.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "req"), "kill_file": str(tmp / "KILL"), "history_bars": 300, **general},
        "replay": {"data": [f"{SYM}={klines}"], "warmup_bars": 200, "prefetch_bars": 256},
        "l2": {"dir": str(rec), **(l2 or {})},
        "hotswap": {"enabled": False}, "slots": slots}, "test")


def _research(market, genomes):
    bars, rec, _k = market
    frame, _r = attach_l2(bars, rec, SYM)
    t = frame["open_time"].to_numpy()
    return {k: dict(zip(t.tolist(), genome_positions(g, strategy_features(frame, g.features),
                                                     bars_since_gap(t)).tolist()))
            for k, g in genomes.items()}, frame




@pytest.mark.parametrize("prefetch", [256, 0])
def test_replayed_book_slots_get_the_research_targets_bar_for_bar(tmp_path, market, monkeypatch, prefetch, panel_targets):
    genomes = {"press": PRESSURE, "mixed": MIXED}
    cfg = _cfg(tmp_path, market, genomes).with_("replay", prefetch_bars=prefetch)
    seen = panel_targets
    out = run_live(cfg, max_bars=2300 if prefetch else 700)
    assert out["panel_skips"] == 0
    research, frame = _research(market, genomes)
    got = {(k, t): v for k, t, v in seen}
    assert len(got) == 2 * out["bars"]
    for (k, t), v in got.items():
        assert v == research[k][t], (k, t, v, research[k][t])
    valid = dict(zip(frame["open_time"].to_list(), frame["l2_valid"].to_list()))
    times = sorted({t for _k, t in got})
    assert any(not valid[t] for t in times) and any(valid[t] for t in times)  # before the recording / across its gap
    assert all(got[("press", t)] == 0.0 for t in times if not valid[t])  # no book: flat, as research
    assert sum(got[("press", t)] != 0.0 for t in times) > 150  # and on the book it trades
    assert out["fills"] > 0


def test_a_bench_without_books_refuses_a_book_champion_in_one_line(tmp_path, market):
    cfg = _cfg(tmp_path, market, {"press": PRESSURE}).with_("l2", dir="")
    with pytest.raises(GenomeError, match=r"reads recorded L2 book terminals \(l2_pressure\) but the bench has no "
                                          r"order books: set \[l2\] dir") as e:
        run_live(cfg, max_bars=5)
    assert "\n" not in str(e.value)
    other = tmp_path / "other"
    _bars, book, gaps, _p = planted_l2_market(300, seed=1, record_from=10)
    write_recording(other, VENUE, "ELSEUSDT", book, gaps)
    cfg = _cfg(tmp_path, market, {"press": PRESSURE}).with_("l2", dir=str(other))
    with pytest.raises(GenomeError, match="reads the order book of BOOKUSDT .* which the recording .* does not hold"):
        run_live(cfg, max_bars=5)
    with pytest.raises(ConfigError, match="no such recording directory"):
        run_live(_cfg(tmp_path, market, {"press": PRESSURE}).with_("l2", dir=str(tmp_path / "nope")), max_bars=5)
    with pytest.raises(ConfigError, match="needs an exchange venue"):
        run_live(_cfg(tmp_path, market, {"press": PRESSURE}).with_("l2", live=True), max_bars=5)
    with pytest.raises(ConfigError, match=r"\[l2\].*k <= depth"):
        _cfg(tmp_path, market, {"press": PRESSURE}, l2={"k": 30, "depth": 20})


def test_a_late_book_skips_the_bar_and_is_journalled(tmp_path, market, monkeypatch, caplog, panel_targets):
    cfg = _cfg(tmp_path, market, {"press": PRESSURE}, panel_wait_seconds=0.02)
    v = make_venue(cfg)
    late = set()
    seen = panel_targets
    from crucible.books import RecordedBooks

    def closed(self, symbol, t):  # the book of every 40th minute has not closed in time (a feed that went down)
        if (t // 60_000) % 40 == 0:
            late.add(t)
            self.error = "ConnectionError: lost"
            return False
        return True

    monkeypatch.setattr(RecordedBooks, "closed", closed)
    v.bar_closed = lambda symbol, t: True  # a venue that waits for books (as exchange venues do)
    try:
        out = run_live(cfg, venue=v, max_bars=400, fresh=True)
    finally:
        v.close()
    assert out["panel_skips"] == len(late) > 0
    j = Journal(cfg.general.journal)
    try:
        ev = j.events("panel_skip")
    finally:
        j.close()
    assert len(ev) == len(late)
    assert all(e["slot"] == "press" and e["data"]["late"] == [f"l2:{SYM}"] for e in ev)
    assert all(e["data"]["book_feed_error"] == "ConnectionError: lost" for e in ev)
    assert sum("ALERT book_feed_down" in r.getMessage() for r in caplog.records) == 1  # the operator is told once
    assert not {t for _k, t, _v in seen} & late


# ---------------------------------------------------------------------------------------------- the live feed


def _wait(pred, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_live_feed_terminals_equal_research_on_the_recording_it_writes(tmp_path, venue):
    """Four minutes of exchange time on the loopback fake (the fake's clock moved minute by minute; reconnects are
    covered by tests/test_record.py's live-lens test): the feed's lens bars, joined onto the bars by the bench, give the L2 terminals that
    research (attach_l2 on the recording the feed wrote) gives, and its latest state is the fake's book."""
    from fake_l2 import FakeL2

    from crucible.books import LiveBooks
    from forge.features.l2terminals import L2_COLUMNS
    from forge.data.panel import panel_name  # noqa: F401

    now = int(time.time() * 1000)
    m0 = (now // 60_000 + 10) * 60_000
    if (m0 + 6 * 60_000) // 86_400_000 != now // 86_400_000:
        m0 -= 30 * 60_000
    with FakeL2(venue, ("BTCUSDT",)) as fake:
        fake.set_book("BTCUSDT", [(round(100.0 - 0.1 * i, 1), 1.0 + i) for i in range(40)],
                      [(round(100.1 + 0.1 * i, 1), 2.0 + i) for i in range(40)])

        def at(minute: int, sec: float) -> None:
            fake.ts_offset_ms = m0 + minute * 60_000 + int(sec * 1000) - int(time.time() * 1000)

        books = LiveBooks(venue, ["BTCUSDT"], tmp_path / "l2", depth=20, k=3, ws_url=fake.ws_url,
                          rest_url=fake.rest_url)
        books.rec.flush_seconds, books.rec.backoff = 0.2, (0.05, 0.5)
        step = {"j": 0}

        def push(k: int) -> None:
            rows = books.rec.stats["l2_rows"]
            for _ in range(k):
                j = step["j"]
                step["j"] += 1
                if j % 3 == 0:
                    fake.update("BTCUSDT", bids=[(100.0, 5.0 + j)], asks=[(100.1, 2.0 + 0.5 * j)])
                elif j % 3 == 1:
                    fake.update("BTCUSDT", bids=[(99.9, 1.0 + j)], asks=[(100.1, 0.0)])
                else:
                    fake.update("BTCUSDT", bids=[(100.0, 0.0)], asks=[(100.1, 1.5 + j)])
            _wait(lambda: books.rec.stats["l2_rows"] >= rows + k)

        at(0, 5)
        books.start()
        try:
            _wait(lambda: books.rec.stats["l2_rows"] >= 1)
            push(3)
            at(1, 10)
            push(4)
            push(3)
            at(2, 20)
            push(4)
            at(3, 15)
            push(3)
            at(4, 5)
            push(1)  # closes the bar of m0 + 3
            _wait(lambda: books.closed("BTCUSDT", m0 + 3 * 60_000))
            assert not books.closed("BTCUSDT", m0 + 4 * 60_000)
            st = books.state("BTCUSDT")
            bids, asks = fake.state("BTCUSDT", fake.books["BTCUSDT"]["u"], 20)
            assert st is not None and st[0][0] == bids[0][0] and st[1][0] == bids[0][1] and st[2][0] == asks[0][0]
            assert st[4] == pytest.approx(0.1)
        finally:
            books.close()
        assert books.error is None or "ended" in books.error
    times = m0 + 60_000 * np.arange(-2, 4, dtype=np.int64)  # two minutes before the feed, then its four
    frame = pl.DataFrame({"open_time": times, "close": np.full(times.shape[0], 100.0)})
    live = books.attach(frame, "BTCUSDT")
    research, _rec = attach_l2(frame, tmp_path / "l2", "BTCUSDT", k=3)
    assert live["l2_valid"].to_list() == research["l2_valid"].to_list()
    assert live["l2_valid"].to_list()[:2] == [False, False] and any(live["l2_valid"].to_list())
    for c in L2_COLUMNS:
        a, b = live[c].to_numpy().astype(float), research[c].to_numpy().astype(float)
        np.testing.assert_allclose(a, b, rtol=1e-12, equal_nan=True, err_msg=c)
    # a restart reads the bars before its feed started back from its own recording
    again = LiveBooks(venue, ["BTCUSDT"], tmp_path / "l2", depth=20, k=3)
    again._on_event({"event": "lens", "symbol": "BTCUSDT", **{c: v for c, v in zip(
        ("open_time", "ofi", "pressure", "pressure_close", "density", "spread", "mid_close", "n_states", "gap"),
        (int(m0 + 4 * 60_000), 0.0, 0.1, 0.1, 1.0, 0.1, 100.05, 3, False))}})
    back = again.attach(frame.vstack(pl.DataFrame({"open_time": [m0 + 4 * 60_000], "close": [100.0]})), "BTCUSDT")
    assert back["l2_valid"].to_list()[:-1] == research["l2_valid"].to_list()
    np.testing.assert_allclose(back["l2_pressure"].to_numpy()[:-1].astype(float),
                               research["l2_pressure"].to_numpy().astype(float), rtol=1e-12, equal_nan=True)
    assert back["l2_pressure"][-1] == 0.1 and back["l2_valid"][-1]


def test_policy_book_inputs_from_the_feed_are_the_simulators_by_hand():
    """Hand-worked: a buy intent of 2 units on a book 100.0 x 3 / 100.1 x 1 (tick 0.1), then the bid grows to 5 and
    the ask moves up to 100.2 x 4."""
    from types import SimpleNamespace

    from crucible.passive import PassiveMixin
    from forge.execution.policy_nb import (F_DRIFT, F_IMBALANCE, F_OFI, F_OFI_EMA, F_PRESSURE, F_QUEUE,
                                           N_FEATURES)

    nan = np.nan
    states = [
        (np.array([100.0, 99.9, 99.5]), np.array([3.0, 2.0, 9.0]), np.array([100.1, 100.3, nan]),
         np.array([1.0, 1.0, nan]), 0.1),
        (np.array([100.0, 99.9, 99.5]), np.array([5.0, 2.0, 9.0]), np.array([100.2, 100.3, nan]),
         np.array([4.0, 1.0, nan]), 0.1),
    ]
    feed = SimpleNamespace(state=lambda symbol, at=None: states[0])
    r = PassiveMixin.__new__(PassiveMixin)
    r.panel, r._book_ctx, r.slots = SimpleNamespace(books=feed), {}, {"a": None}
    r.venue = SimpleNamespace(now_ms=lambda: 0)
    it = {"id": "a-1", "qty": 2.0}
    x = np.zeros(N_FEATURES)
    r._book_inputs(x, "BTCUSDT", it)
    assert x[F_IMBALANCE] == pytest.approx((3 - 1) / 4)
    assert x[F_OFI] == 0.0 and x[F_OFI_EMA] == 0.0 and x[F_DRIFT] == 0.0  # the intent's first decision
    # within 5 ticks of the bests: bids 100.0, 99.9 (99.5 is 6 ticks behind) = 5; asks 100.1, 100.3 = 2
    assert x[F_PRESSURE] == pytest.approx((5 - 2) / 7)
    assert x[F_QUEUE] == pytest.approx(3 / 2)  # the bid a buy joins holds 3 units; the intent is 2
    feed.state = lambda symbol, at=None: states[1]
    x = np.zeros(N_FEATURES)
    r._book_inputs(x, "BTCUSDT", it)
    # CKS (2014): e = q^b_n [P^b_n >= P^b] - q^b [P^b_n <= P^b] - q^a_n [P^a_n <= P^a] + q^a [P^a_n >= P^a]
    e = 5.0 - 3.0 - 0.0 + 1.0
    assert x[F_OFI] == pytest.approx(min(1.0, e / (5 + 4)))
    assert x[F_OFI_EMA] == pytest.approx(0.5 * x[F_OFI])
    assert x[F_DRIFT] == pytest.approx((100.1 - 100.05) / 100.05 * 1e3)
    assert x[F_IMBALANCE] == pytest.approx((5 - 4) / 9)
    sell = np.zeros(N_FEATURES)
    r._book_inputs(sell, "BTCUSDT", {"id": "a-2", "qty": -1.0})
    assert sell[F_IMBALANCE] == pytest.approx(-(5 - 4) / 9) and sell[F_QUEUE] == pytest.approx(4.0)
    none = np.zeros(N_FEATURES)
    r.panel = SimpleNamespace(books=None)  # no feed (the replay venue): the kline context, every book input 0
    r._book_inputs(none, "BTCUSDT", it)
    assert not none.any()


@pytest.mark.parametrize("books", [True, False])
def test_a_book_challenger_shadows_on_a_bench_with_books_and_is_rejected_without(tmp_path, market, monkeypatch,
                                                                                 books, panel_targets):
    from gauntlet.publish import publish_champion

    plain = Genome.from_tokens(["pos_sign", "feature:ret_1"], [])
    cfg = _cfg(tmp_path, market, {"plain": plain}).with_("hotswap", enabled=True, poll_bars=5, shadow_bars=5000)
    if not books:
        cfg = cfg.with_("l2", dir="")
    publish_champion(MIXED, Path(cfg.general.champions_dir), run_id="r", symbol=SYM, features=list(MIXED.features),
                     verdict={})
    monkeypatch.delenv("FORGE_SIGNING_KEY", raising=False)
    seen = panel_targets
    run_live(cfg, max_bars=1200)
    j = Journal(cfg.general.journal)
    try:
        starts, rejects = j.events("shadow_start"), j.events("reject")
    finally:
        j.close()
    if not books:
        assert not starts and len(rejects) == 1
        assert "reads recorded L2 book terminals" in rejects[0]["data"]["reason"]
        assert "the bench has no order books" in rejects[0]["data"]["reason"]
        return
    assert [e["data"]["genome"] for e in starts] == [MIXED.sha256] and not rejects
    research, _frame = _research(market, {"mixed": MIXED})
    mine = [(t, v) for k, t, v in seen if k == "ch:" + MIXED.sha256[:16]]
    assert len(mine) > 1000 and all(v == research["mixed"][t] for t, v in mine)
    assert any(v != 0.0 for _t, v in mine)


def test_exchange_bench_trades_on_the_live_feeds_books_as_research_would(tmp_path, bybit_keys, monkeypatch, panel_targets):
    """The real CcxtVenue on the loopback fake Bybit (klines, orders) with ``[l2] live = true`` (the Recorder in the
    bench, on a loopback fake of Bybit's public book feed): each minute the feed's lens bar closes, the bar
    arrives, and the book slot's target is what research computes (attach_l2) on the recording the feed wrote;
    the passive policy's state carries the feed's book inputs."""
    from fake_bybit import FakeBybit, sample_bars
    from fake_l2 import FakeL2

    from crucible.passive import PassiveMixin
    from crucible.runtime import Runtime
    from crucible.venues.ccxt_venue import CcxtVenue
    from forge.execution.policy_nb import F_IMBALANCE, F_QUEUE

    sym, n, hist, steps = "BTCUSDT", 72, 60, 8
    end = (int(time.time() * 1000) // 60_000 - 1) * 60_000
    bars = sample_bars(n, end_ms=end)
    times = [int(b[0]) for b in bars]
    genome = tmp_path / "press.json"
    genome.write_text(PRESSURE.to_json())
    xs: list[np.ndarray] = []
    orig_inputs = PassiveMixin._book_inputs

    def book_inputs(self, x, symbol, it):
        orig_inputs(self, x, symbol, it)
        xs.append(x.copy())

    monkeypatch.setattr(PassiveMixin, "_book_inputs", book_inputs)
    seen = panel_targets
    with FakeL2("bybit", (sym,)) as feed, FakeBybit(bars, history=hist) as fk:
        feed.set_book(sym, [(round(100.0 - 0.1 * i, 1), 1.0 + i) for i in range(40)],
                      [(round(100.1 + 0.1 * i, 1), 2.0 + i) for i in range(40)])
        cfg = config_from_dict({
            "crucible": {"journal": str(tmp_path / "j.sqlite"), "champions_dir": str(tmp_path / "champions"),
                         "requests_dir": str(tmp_path / "req"), "kill_file": str(tmp_path / "KILL"),
                         "history_bars": 50, "bench_id": "book1", "panel_wait_seconds": 20.0},
            "hotswap": {"enabled": False}, "cwo": {"move_capital": False},
            "execution": {"policy": "maker-then-cross", "deadline_bars": 3},
            "l2": {"live": True, "k": 3, "dir": str(tmp_path / "l2"), "ws_url": feed.ws_url,
                   "rest_url": feed.rest_url},
            "slots": [{"id": "a", "symbol": sym, "genome": str(genome), "capital": 1000.0}]}, "test")
        v = CcxtVenue("bybit", [sym], api_url=fk.rest_url, ws_url=fk.ws_url, timeout_ms=3000, feed="poll",
                      poll_seconds=0.02)
        j = Journal(cfg.general.journal)
        rt = Runtime(cfg, v, j, sleep=lambda d: False)
        books = rt.panel.books
        try:
            assert books is not None and books.live and books.symbols == (sym,)
            books.rec.flush_seconds, books.rec.backoff = 0.2, (0.05, 0.5)
            rt.restore()
            rt.reconcile()
            v.history(sym, 1)
            feed.ts_offset_ms = times[hist] + 5_000 - int(time.time() * 1000)  # the exchange's clock: the first bar
            books.start()
            _wait(lambda: books.rec.stats["l2_rows"] >= 1)
            for i in range(steps):
                t = times[hist + i]  # the bar the next step closes
                feed.ts_offset_ms = t + 20_000 - int(time.time() * 1000)
                rows = books.rec.stats["l2_rows"]
                lean = 1.0 if i % 3 else -1.0  # the book leans to the bid, then to the ask
                feed.update(sym, bids=[(100.0, 6.0 + 4 * lean + i)], asks=[(100.1, 6.0 - 4 * lean)])
                feed.update(sym, bids=[(99.9, 3.0 + i)])
                feed.ts_offset_ms = t + 61_000 - int(time.time() * 1000)
                feed.update(sym, asks=[(100.2, 3.0 + i)])  # the next minute's first state closes the lens bar
                _wait(lambda: books.rec.stats["l2_rows"] >= rows + 3)
                _wait(lambda: books.closed(sym, t))
                assert fk.step() == 1
                b = v.next_bars(timeout_s=10)
                assert b is not None and b[sym].open_time == t
                rt.process_bar(b)
        finally:
            books.close()
            j.close()
            v.close()
    got = {bt: val for k, bt, val in seen if k == "a"}
    assert sorted(got) == times[hist:hist + steps]
    frame = pl.DataFrame({"open_time": np.array(times, dtype=np.int64), "close": np.array([b[4] for b in bars])})
    research, _rec = attach_l2(frame, tmp_path / "l2", sym, k=3)
    want = dict(zip(times, genome_positions(PRESSURE, strategy_features(research, PRESSURE.features),
                                            bars_since_gap(np.array(times, dtype=np.int64))).tolist()))
    valid = dict(zip(times, research["l2_valid"].to_list()))
    assert all(got[t] == want[t] for t in got)
    assert sum(valid[t] for t in got) >= steps - 2 and {got[t] for t in got if valid[t]} == {1.0, -1.0}
    assert xs and any(x[F_IMBALANCE] != 0.0 for x in xs) and all(x[F_QUEUE] > 0 for x in xs)


def test_replay_policy_inputs_come_from_the_recorded_book_at_each_decision(tmp_path, market, monkeypatch):
    """A passive slot on the replay venue with ``[l2] dir``: at every decision the policy's imbalance is the recorded
    state's holding at the bar's close (the latest state before it), signed by the side; 0 before the recording."""
    from crucible.passive import PassiveMixin
    from forge.data.l2 import load_gaps, load_l2
    from forge.execution.policy_nb import F_IMBALANCE, F_QUEUE

    _bars, rec, _k = market
    seen: list[tuple[int, int, float, float, float]] = []
    orig = PassiveMixin._book_inputs

    def book_inputs(self, x, symbol, it):
        orig(self, x, symbol, it)
        seen.append((self.venue.now_ms(), 1 if it["qty"] > 0 else -1, x[F_IMBALANCE], x[F_QUEUE], abs(it["qty"])))

    monkeypatch.setattr(PassiveMixin, "_book_inputs", book_inputs)
    cfg = _cfg(tmp_path, market, {"press": PRESSURE})
    cfg = cfg.with_("execution", policy="maker-then-cross", deadline_bars=3)
    run_live(cfg, max_bars=1500)
    assert len(seen) > 40
    book = load_l2(rec, VENUE, SYM)
    g = load_gaps(rec, VENUE, SYM)
    lost = [(a, b) for a, b in zip(g["start_ts_ms"].to_list(), g["end_ts_ms"].to_list()) if a is not None]
    on_book = 0
    for at, side, imb, queue, qty in seen:
        i = int(np.searchsorted(book.ts_ms, at, side="left")) - 1
        if i < 0 or any(a <= at <= b for a, b in lost):  # before the recording, or the book not seen then
            assert imb == 0.0 and queue == 0.0
            continue
        qb, qa = book.bid_sz[i, 0], book.ask_sz[i, 0]
        assert imb == pytest.approx(side * (qb - qa) / (qb + qa), abs=1e-12)
        assert queue == pytest.approx(min(10.0, (qb if side > 0 else qa) / qty), rel=1e-12)
        on_book += 1
    assert on_book > 40


def test_a_slot_reading_another_instruments_book_gets_the_research_targets(tmp_path, market, panel_targets):
    """A slot trading FOLLUSDT reads BOOKUSDT's book (``l2_pressure__BOOKUSDT_perp``, research's ``--l2-symbols``
    naming): the bench feeds BOOKUSDT's klines and joins its recorded book on FOLLUSDT's minutes, as research's
    panel does."""
    from forge.data.panel import Instrument, load_panel
    from forge.data.panels import bars_from_returns
    from forge.features.l2terminals import join_lens
    from forge.features.l2lens import load_lens_bars

    bars, rec, klines = market
    rng = np.random.default_rng(3)
    foll = bars_from_returns(1e-3 * rng.normal(size=bars.height), rng)
    fk = write_klines(foll, tmp_path / "klines", "FOLLUSDT", "perp")
    g = Genome.from_tokens(["pos_sign", "feature:l2_pressure__BOOKUSDT_perp"], [])
    p = tmp_path / "g.json"
    p.write_text(g.to_json())
    cfg = config_from_dict({
        "crucible": {"journal": str(tmp_path / "j.sqlite"), "champions_dir": str(tmp_path / "champions"),
                     "requests_dir": str(tmp_path / "req"), "kill_file": str(tmp_path / "KILL"), "history_bars": 300},
        "replay": {"data": [f"FOLLUSDT={fk}", f"{SYM}={klines}"], "warmup_bars": 200, "prefetch_bars": 256},
        "l2": {"dir": str(rec)}, "hotswap": {"enabled": False},
        "slots": [{"id": "f", "symbol": "FOLLUSDT", "genome": str(p), "costs": "futures"}]}, "test")
    out = run_live(cfg, max_bars=1500)
    assert out["panel_skips"] == 0
    _t, panel, _c, _i = load_panel([klines.parents[3], fk.parents[3]], [f"{SYM}:perp"], "FOLLUSDT:perp")
    t = panel["open_time"].to_numpy()
    lens = load_lens_bars(rec, VENUE, SYM, int(t[0]), int(t[-1]) + 60_000)
    frame = join_lens(panel, lens, Instrument.from_tag(f"{SYM}_perp"))
    want = dict(zip(t.tolist(), genome_positions(g, strategy_features(frame, g.features), bars_since_gap(t)).tolist()))
    got = {bt: v for k, bt, v in panel_targets if k == "f"}
    assert len(got) == out["bars"] and all(v == want[bt] for bt, v in got.items())
    assert {v for v in got.values()} == {-1.0, 0.0, 1.0}  # flat before the recording, both ways on it
