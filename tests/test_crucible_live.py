"""The real CcxtVenue against a fake Bybit v5 exchange on 127.0.0.1 (tests/fake_bybit.py): REST faults,
the WebSocket bar feed (disconnects, duplicated messages, REST backfill) and kill -9 crash recovery of
the Crucible running in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crucible.journal import Journal
from crucible.runtime import Runtime, run_live
from crucible.venues.base import VenueNetworkError, VenueRejected
from crucible.venues.ccxt_venue import CcxtVenue
from crucible_driver import make_cfg as driver_cfg

SYM = "BTCUSDT"
DRIVER = Path(__file__).with_name("crucible_driver.py")


def make_venue(fk, **kw) -> CcxtVenue:
    kw.setdefault("feed", "ws")
    return CcxtVenue("bybit", [SYM], api_url=fk.rest_url, ws_url=fk.ws_url, timeout_ms=3000, **kw)


def cfg_for(tmp: Path, slots=None):
    from crucible.config import config_from_dict

    return config_from_dict({
        "crucible": {"journal": str(tmp / "journal.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "requests"), "kill_file": str(tmp / "KILL"), "history_bars": 400,
                     "snapshot_every": 1},
        "hotswap": {"enabled": False},
        "watchtower": {"stale_feed_seconds": 10.0},
        "slots": slots or [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"}],
    }, "test")


def assert_ledger_equals_exchange(journal_path: Path, fk) -> dict:
    """The journal equals the fake exchange: fills by trade id, orders by client order id, net position."""
    st = fk.state()
    j = Journal(journal_path, readonly=True)
    try:
        fills = j.fills()
        orders = j.orders()
    finally:
        j.close()
    booked = [f["trade_id"] for f in fills]
    assert len(booked) == len(set(booked))  # none twice
    assert sorted(booked) == sorted(st["executions"])  # none lost, none foreign
    for f in fills:  # booked exactly as executed
        e = st["executions"][f["trade_id"]]
        sign = 1.0 if e["side"] == "Buy" else -1.0
        assert f["client_order_id"] == e["orderLinkId"]
        assert f["qty"] == pytest.approx(sign * float(e["execQty"]), abs=1e-12)
        assert f["price"] == pytest.approx(float(e["execPrice"]), rel=1e-12)
        assert f["fee"] == pytest.approx(float(e["execFee"]), rel=1e-9)
    links = [e["orderLinkId"] for e in st["executions"].values()]
    assert len(links) == len(set(links)) == len(st["orders"])  # each client order id at most once at the venue
    by_cid = {o["client_order_id"]: o for o in orders}
    assert set(st["orders"]) <= set(by_cid)  # every exchange order is journaled
    for cid, o in by_cid.items():
        assert o["status"] not in ("intent", "unknown"), o
        if cid in st["orders"]:
            assert o["status"] == "filled", o
        else:
            assert o["status"] in ("abandoned", "rejected"), o
    units = sum(f["qty"] for f in fills if f["symbol"] == SYM)
    assert units == pytest.approx(st["position"], abs=1e-9)
    return {"fills": len(fills), "orders": len(orders), "position": st["position"]}


# ----------------------------------------------------------------------------- REST


def test_ccxt_venue_rest_against_fake_bybit(fake_exchange, bybit_keys):
    fk = fake_exchange
    v = make_venue(fk, feed="poll")
    try:
        assert "test-key" not in repr(v) and "test-secret" not in repr(v) and "test-secret" not in str(vars(v))
        h = v.history(SYM, 20)
        assert len(h["open_time"]) == 20 and np.all(np.diff(h["open_time"]) == 60_000)
        assert h["open_time"][-1] == fk.released[-1][0] and h["close"][-1] == fk.released[-1][4]
        st = v.create_market_order(SYM, 0.0123, "cr-a-1-0")
        assert st.qty == pytest.approx(0.012)  # rounded to the lot step
        assert v.fetch_order(SYM, "cr-a-1-0").client_order_id == "cr-a-1-0"
        assert v.fetch_order(SYM, "cr-a-1-9") is None
        with pytest.raises(VenueRejected, match="duplicate"):
            v.create_market_order(SYM, 0.01, "cr-a-1-0")
        for fault in ("5xx", "429", "drop"):
            fk.inject_rest(fault)
            with pytest.raises(VenueNetworkError):
                v.create_market_order(SYM, -0.005, f"cr-a-2-{fault}")
        assert v.fetch_order(SYM, "cr-a-2-drop") is not None  # accepted, response lost
        assert v.fetch_order(SYM, "cr-a-2-5xx") is None and v.fetch_order(SYM, "cr-a-2-429") is None
        fk.inject_rest("5xx", "/v5/execution/list")  # idempotent reads are retried
        fk.inject_rest("429", "/v5/position/list")
        fills = v.fetch_fills(SYM, 0)
        assert [f.client_order_id for f in fills] == ["cr-a-1-0", "cr-a-2-drop"]
        assert [f.qty for f in fills] == [pytest.approx(0.012), pytest.approx(-0.005)]
        assert len({f.trade_id for f in fills}) == 2 and all(f.fee > 0 for f in fills)
        assert v.fetch_positions() == {SYM: pytest.approx(0.007)} and fk.state()["position"] == pytest.approx(0.007)
        assert v.fetch_balance() == pytest.approx(fk.state()["wallet"])
        paths = {p for _m, p in fk.paths}
        assert {"/v5/market/instruments-info", "/v5/market/kline", "/v5/order/create", "/v5/execution/list",
                "/v5/position/list", "/v5/account/wallet-balance"} <= paths
    finally:
        v.close()


def test_fetch_fills_follows_bybit_pages(fake_exchange, bybit_keys):
    fk = fake_exchange
    v = make_venue(fk, feed="poll")
    try:
        for i in range(120):  # more than two pages of 50 executions
            v.create_market_order(SYM, 0.001 if i % 2 else -0.001, f"cr-a-{i}-0")
        fills = v.fetch_fills(SYM, 0)
        assert [f.trade_id for f in fills] == sorted(fk.state()["executions"])
    finally:
        v.close()


@pytest.mark.parametrize("fault", ["drop", "5xx", "429"])
def test_runtime_send_on_fake_bybit_never_duplicates(tmp_path, fake_exchange, bybit_keys, fault):
    fk = fake_exchange
    v = make_venue(fk, feed="poll")
    cfg = cfg_for(tmp_path)
    j = Journal(cfg.general.journal)
    try:
        rt = Runtime(cfg, v, j)
        rt.restore()
        fk.inject_rest(fault)
        cid = rt.place(rt.slots["a"], 0.01, 1.0, "test", 1_718_000_000_000)
        assert list(fk.state()["orders"]) == [cid]  # exactly one order at the venue, under the journaled id
        assert j.order(cid)["status"] == "acked"
        rt._sync_fills([SYM], 0)
        rt._sync_fills([SYM], 0)  # fetched twice: booked once
        assert [f["trade_id"] for f in j.fills()] == list(fk.state()["executions"])
        assert rt.slots["a"].ledger.units == pytest.approx(fk.state()["position"])
    finally:
        j.close()
        v.close()


# ----------------------------------------------------------------------------- WebSocket bar feed


def _bar_tuple(b):
    return (b.open_time, b.open, b.high, b.low, b.close, b.volume)


def test_ws_feed_each_closed_bar_once_in_order_across_faults(fake_exchange, bybit_keys):
    """Bars stepped by the test with duplicated/replayed messages, server-side disconnects, lost messages
    and REST errors during the backfill: delivered exactly the fake's closed bars, once each, in order."""
    fk = fake_exchange
    v = make_venue(fk, ws_backoff=(0.02, 0.2))
    try:
        h = v.history(SYM, 400)
        assert len(h["open_time"]) == 400 and h["open_time"][-1] == fk.released[-1][0]
        start = fk.released[-1][0]
        assert v.next_bars(timeout_s=0.2) is None  # nothing new has closed
        got = []
        faults = {3: [("ws", "duplicate", 4)], 9: [("ws", "disconnect", 1)], 19: [("ws", "skip", 1)],
                  14: [("ws", "disconnect", 2), ("rest", "5xx", 1), ("rest", "429", 1)], 22: [("ws", "duplicate", 1)]}
        for i in range(30):
            for kind, f, n in faults.get(i, []):
                if kind == "ws":
                    fk.inject_ws(f, n)
                else:
                    fk.inject_rest(f, "/v5/market/kline", n)
            fk.step()
            if ("ws", "skip", 1) in faults.get(i, []):
                continue  # a lost message shows up as a gap when the next one arrives
            while len(got) < i + 1:
                bars = v.next_bars(timeout_s=5)
                assert bars is not None, f"no bar after step {i}"
                got.append(_bar_tuple(bars[SYM]))
        assert v.next_bars(timeout_s=0.1) is None  # no duplicate left over
        expected = [tuple(b) for b in fk.released if b[0] > start]
        assert got == expected
        assert fk.ws_disconnects >= 2 and v.ws_reconnects >= 2 and fk.ws_subscribes >= 3
        dup_times = [m["data"][0]["start"] for m in fk.ws_sent if m["data"][0]["confirm"]]
        assert len(dup_times) > len(set(dup_times))  # duplicates were really sent
        h2 = v.history(SYM, 500)
        assert list(h2["open_time"][-30:]) == [b[0] for b in expected] and np.all(np.diff(h2["open_time"]) == 60_000)
    finally:
        v.close()


def test_ws_feed_on_timer_clock_and_poll_feed_agree(fake_exchange, bybit_keys):
    """The fake's own clock releases bars every 20 ms; the ws feed (with a disconnect) and the poll feed
    (polling slower than bars close) both deliver every closed bar once, in order."""
    fk = fake_exchange
    ws = make_venue(fk, ws_backoff=(0.02, 0.2))
    poll = make_venue(fk, feed="poll", poll_seconds=0.05)
    try:
        ws.history(SYM, 1)
        poll.history(SYM, 1)
        start = fk.released[-1][0]
        fk.run_clock(0.02)
        got_ws, got_poll = [], []
        deadline = time.monotonic() + 20
        while len(got_ws) < 40 and time.monotonic() < deadline:
            if len(got_ws) == 10:
                fk.inject_ws("disconnect")
            b = ws.next_bars(timeout_s=5)
            assert b is not None
            got_ws.append(_bar_tuple(b[SYM]))
        fk.stop_clock()
        while len(got_poll) < len(got_ws):
            b = poll.next_bars(timeout_s=5)
            assert b is not None
            got_poll.append(_bar_tuple(b[SYM]))
        expected = [tuple(b) for b in fk.released if b[0] > start][: len(got_ws)]
        assert len(got_ws) == 40 and got_ws == expected and got_poll == expected
    finally:
        ws.close()
        poll.close()


def test_feed_option_validation(fake_exchange, bybit_keys):
    with pytest.raises(ValueError, match="feed"):
        make_venue(fake_exchange, feed="carrier-pigeon")
    v = make_venue(fake_exchange, feed="auto")
    try:
        assert v.feed == "ws"
    finally:
        v.close()


# ----------------------------------------------------------------------------- the runtime on the fake exchange


def _settle(cfg, v):
    """The runtime's own restart path (restore + reconcile) without trading: books fills of the last bar."""
    j = Journal(cfg.general.journal)
    try:
        rt = Runtime(cfg, v, j)
        rt.restore()
        return rt.reconcile()
    finally:
        j.close()


def test_run_live_on_fake_bybit_with_faults_never_duplicates_or_loses(tmp_path, fake_exchange, bybit_keys):
    fk = fake_exchange
    cfg = driver_cfg(tmp_path)
    v = make_venue(fk, ws_backoff=(0.02, 0.2))
    events = []
    injected = {"n": 0}

    def progress(e):
        events.append(e["event"])
        if e["event"] == "bar":
            n = e["bars"]
            if n in (3, 12, 21):
                fk.inject_rest("drop")
                fk.inject_rest("5xx")
                fk.inject_rest("429")
                fk.inject_rest("5xx", "/v5/execution/list")
                fk.inject_rest("429", "/v5/order/realtime")
                injected["n"] += 1
            if n in (6, 15):
                fk.inject_ws("disconnect")
            if n in (8, 18):
                fk.inject_ws("duplicate", 3)

    try:
        fk.run_clock(0.3)  # bars slower than the bar loop: a bar whose successor already closed is not traded
        s = run_live(cfg, venue=v, max_bars=30, progress=progress)
        fk.stop_clock()
        rep = _settle(cfg, v)
    finally:
        fk.stop_clock()
        v.close()
    assert s["bars"] == 30 and s["stopped_by"] == "max_bars" and injected["n"] == 3
    assert s["orders"] >= 5, s  # the builtins traded
    hit = set(fk.faults_hit)
    assert {("/v5/order/create", k) for k in ("drop", "5xx", "429")} <= hit, hit
    assert ("/v5/execution/list", "5xx") in hit and fk.ws_disconnects >= 1
    assert rep["position_diff"] == {}
    out = assert_ledger_equals_exchange(Path(cfg.general.journal), fk)
    assert out["fills"] >= 5


# ----------------------------------------------------------------------------- kill -9 crash recovery


def _driver(fk, d: Path, max_bars: int, *extra: str) -> subprocess.CompletedProcess:
    """tests/crucible_driver.py on ``CcxtVenue("bybit")`` against ``fk`` for ``max_bars`` bars; this checkout's
    packages first on the path (an absolute PYTHONPATH of the repository root this file lives in, not an inherited
    relative one that depends on the working directory)."""
    root = DRIVER.parents[1]
    env = {**os.environ, "CRUCIBLE_API_KEY": "test-key", "CRUCIBLE_API_SECRET": "test-secret",
           "CRUCIBLE_BENCH_KEY": "test-bench-key-0123456789",
           "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(DRIVER), "--dir", str(d), "--rest", fk.rest_url, "--ws", fk.ws_url,
           "--max-bars", str(max_bars), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=root)


def _kill9_and_recover(tmp_path, fk, point: str, nth: int) -> None:
    fk.inject_ws("duplicate", 2)
    fk.run_clock(0.05)  # pauses while no client is subscribed (process start-up, after the kill)
    try:
        p1 = _driver(fk, tmp_path, 60, "--kill-at", point, "--kill-nth", str(nth))
        assert p1.returncode == -9, (p1.returncode, p1.stdout[-500:], p1.stderr[-3000:])
        before = fk.state()
        p2 = _driver(fk, tmp_path, 15, "--settle")
        assert p2.returncode == 0, p2.stderr[-3000:]
    finally:
        fk.stop_clock()
    out = json.loads(p2.stdout.strip().splitlines()[-1])
    s, rep = out["summary"], out["reconcile"]
    assert s["bars"] == 15 and s["stopped_by"] == "max_bars"
    assert rep["position_diff"] == {}
    j = Journal(driver_cfg(tmp_path).general.journal, readonly=True)
    try:
        first = j.events("reconcile")[1]["data"]  # [0]: first start, [1]: the restart, [2]: the settle
        orders = {o["client_order_id"]: o for o in j.orders()}
    finally:
        j.close()
    if point == "intent_saved":  # the intent never reached the venue: resent (same id) or abandoned
        assert len(first["resent"]) + len(first["abandoned"]) == 1
        cid = (first["resent"] + first["abandoned"])[0]
        assert cid not in before["orders"]
    elif point == "sent_not_acked":  # at the venue, never acknowledged in the journal: found by its id
        assert len(first["resolved"]) >= 1 and set(first["resolved"]) <= set(before["orders"])
    else:  # filled, not booked: booked by the restart
        assert first["new_fills"] >= 1
    assert all(o["status"] not in ("intent", "unknown") for o in orders.values())
    out = assert_ledger_equals_exchange(Path(driver_cfg(tmp_path).general.journal), fk)
    # the orders sent before the kill filled (the run summary predates the settle, which books the last bar's
    # fills); at intent_saved the killed intent fills only when it was resent -- abandoned (the restart came after
    # its bar: a loaded machine), it never existed at the venue
    least = nth - 1 + len(first["resent"]) if point == "intent_saved" else nth
    assert out["fills"] >= least, (out, first)


def test_kill9_sent_not_acked_then_restart_ledger_equals_exchange(tmp_path, fake_exchange):
    _kill9_and_recover(tmp_path, fake_exchange, "sent_not_acked", 3)


@pytest.mark.parametrize("point,nth", [("intent_saved", 3), ("fills_fetched", 2)])
def test_kill9_other_points_then_restart_ledger_equals_exchange(tmp_path, fake_exchange, point, nth):
    _kill9_and_recover(tmp_path, fake_exchange, point, nth)


class _Crash(Exception):
    pass


def test_intent_on_latest_closed_bar_is_resent_after_restart_on_a_live_venue(tmp_path, bybit_keys):
    end = (int(time.time() * 1000) // 60_000 - 1) * 60_000  # latest closed minute, like a real exchange
    from fake_bybit import FakeBybit, sample_bars
    from crucible.venues.base import Bar

    with FakeBybit(sample_bars(450, end_ms=end), history=450) as fk:
        v = make_venue(fk, feed="poll")
        cfg = driver_cfg(tmp_path)

        def crash(point, ctx):
            if point == "intent_saved":
                raise _Crash(point)

        try:
            j = Journal(cfg.general.journal)
            rt = Runtime(cfg, v, j, fault=crash)
            rt.restore()
            rt.reconcile()
            h = v.history(SYM, 1)
            t = int(h["open_time"][-1])
            assert t == end
            bar = Bar(SYM, t, *(float(h[c][-1]) for c in ("open", "high", "low", "close", "volume")))
            with pytest.raises(_Crash):
                rt.process_bar({SYM: bar})  # the intent is committed, the order never sent
            j.close()
            if v.now_ms() >= end + 2 * 60_000 - 2_000:
                pytest.skip("the minute rolled over: the bar is no longer the latest closed bar")
            j = Journal(cfg.general.journal)
            rt2 = Runtime(cfg, v, j)
            rt2.restore()
            rep = rt2.reconcile()
            intents = [o["client_order_id"] for o in j.orders() if o["bar_time"] == t]
            j.close()
        finally:
            v.close()
        assert intents and rep["abandoned"] == [] and sorted(rep["resent"]) == sorted(intents)
        assert sorted(fk.state()["orders"]) == sorted(intents)  # sent once each, under the journaled ids
