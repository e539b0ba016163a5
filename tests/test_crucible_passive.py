"""Passive execution in the Crucible (issue 31 part 5): post-only limit orders on the replay venue and on the
loopback fake Bybit (tests/fake_bybit.py, the real CcxtVenue over REST), cancel/replace under the HMAC client ids,
post-only rejections, the kill rule's cancel-then-reduce-only order, the dead-man's switch, the execution metrics
in the journal, and the replay venue's limit fills against the kline fill rule bar for bar."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from crucible.config import config_from_dict
from crucible.journal import OPEN_STATUSES, Journal
from crucible.journal_exec import slot_exec_metrics
from crucible.runtime import Runtime, run_live
from crucible.venues.base import VenuePostOnlyReject, VenueRejected
from crucible.venues.ccxt_venue import CcxtVenue
from crucible.venues.replay import ReplayVenue
from forge.backtest.fills import kline_limit_fill
from forge.data.loader import load_sample

SYM = "BTCUSDT"


def _cfg(tmp: Path, *, policy: str = "maker-then-cross", deadline: int = 3, slots=None, **general):
    return config_from_dict({
        "crucible": {"journal": str(tmp / "journal.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "requests"), "kill_file": str(tmp / "KILL"), "history_bars": 400,
                     "snapshot_every": 1, "bench_id": "pas1", **general},
        "hotswap": {"enabled": False},
        "cwo": {"move_capital": False},  # no capital moves: a re-size would replace the intents under test
        "execution": {"policy": policy, "deadline_bars": deadline, "cancel_all_after_seconds": 60.0},
        "slots": slots or [{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "capital": 1000.0}],
    }, "test")


# ----------------------------------------------------------------------------- replay venue


def _replay(n: int = 500, **kw) -> ReplayVenue:
    kw.setdefault("maker_fee_bps", 2.0)
    kw.setdefault("taker_fee_bps", 5.0)
    return ReplayVenue({SYM: load_sample()[0].head(400 + n)}, start=400, **kw)


def _rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_default_policy_is_always_taker_no_intents(tmp_path):
    """Old configs (no [execution]) trade market orders exactly as before: no intent, no limit order."""
    cfg = config_from_dict({"crucible": {"journal": str(tmp_path / "j.sqlite"), "champions_dir": str(tmp_path / "c"),
                                         "requests_dir": str(tmp_path / "r"), "kill_file": str(tmp_path / "K"),
                                         "history_bars": 400, "bench_id": "tak1"},
                            "hotswap": {"enabled": False},
                            "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"}]}, "test")
    s = run_live(cfg, venue=_replay(150))
    assert s["orders"] > 5 and s["intents"] == 0 and s["limit_orders"] == 0
    j = Path(cfg.general.journal)
    assert _rows(j, "SELECT COUNT(*) FROM exec_intents") == [(0,)]
    assert _rows(j, "SELECT DISTINCT kind FROM order_exec") == [("market",)]
    m = slot_exec_metrics(sqlite3.connect(j))["a"]
    assert m["fills"] == s["fills"] and m["limit_orders"] == 0 and math.isnan(m["fill_rate"])
    assert m["fee_bps"] == pytest.approx(5.0, rel=1e-3)  # the taker fee (per unit of decision-price notional)


def test_replay_passive_fills_follow_the_kline_rule_bar_for_bar(tmp_path):
    """Every limit order the runtime rests on the replay venue fills in the next bar exactly as the kline fill model
    says (trade-through, at its price, maker fee, volume share) -- the fills the backtest's rule gives, bar for bar."""
    cfg = _cfg(tmp_path)
    v = _replay(500, max_volume_share=0.0005)  # a small share: partial fills happen too
    s = run_live(cfg, venue=v)
    assert s["limit_orders"] > 20 and s["intents"] > 10, s
    j = Path(cfg.general.journal)
    rows = _rows(j, "SELECT e.client_order_id, e.price, e.placed_bar, o.qty, o.status FROM order_exec e "
                    "JOIN orders o USING(client_order_id) WHERE e.kind='limit' ORDER BY o.rowid")
    fills = {}
    for cid, qty, price, fee, t in _rows(j, "SELECT client_order_id, qty, price, fee, time_ms FROM fills"):
        fills.setdefault(cid, []).append((qty, price, fee, t))
    df = load_sample()[0].head(900)
    ot = df["open_time"].to_numpy()
    idx = {int(t): i for i, t in enumerate(ot)}
    lo, hi, vol = df["low"].to_numpy(), df["high"].to_numpy(), df["volume"].to_numpy()
    n_partial = n_none = n_full = 0
    for cid, price, placed, qty, status in rows:
        i = idx[placed] + 1  # placed after bar `placed` closed: first checked against the next bar
        side = 1 if qty > 0 else -1
        want = kline_limit_fill(side, price, abs(qty), lo[i], hi[i], vol[i], 0.0005, 0.0)
        got = fills.get(cid, [])
        if want == 0.0:
            assert got == [] and status in ("canceled", "acked"), (cid, status, got)
            n_none += 1
            continue
        assert len(got) == 1, (cid, got)  # cancelled before a second bar could fill it
        q, p, fee, t = got[0]
        assert t == ot[i] and p == price and q == side * want
        assert fee == pytest.approx(2e-4 * want * price, rel=1e-12)  # the maker fee
        n_partial += want < abs(qty)
        n_full += want == abs(qty)
    assert n_none > 0 and n_full + n_partial > 0 and n_partial > 0, (n_none, n_full, n_partial)
    m = slot_exec_metrics(sqlite3.connect(j))["a"]
    assert 0 < m["fill_rate"] <= 1 and m["fee_bps"] < 5.0 and m["reject_rate"] == 0.0
    assert all(np.isfinite(m[f"markout_{k}_bps"]) for k in (1, 5, 15))
    assert s["crosses"] > 0  # intents that reached their deadline crossed the rest


def test_replay_kill_rule_cancels_resting_then_reduce_only_market(tmp_path):
    """A perpetual passive slot killed while its limit order rests: the cancel reaches the venue before the closing
    market order, which is reduce-only and closes exactly the units held."""
    calls = []

    class Spy(ReplayVenue):
        def cancel_order(self, symbol, cid):
            calls.append(("cancel", cid))
            return super().cancel_order(symbol, cid)

        def create_market_order(self, symbol, qty, cid, *, reduce_only=False):
            calls.append(("market", cid, qty, reduce_only))
            return super().create_market_order(symbol, qty, cid, reduce_only=reduce_only)

        def create_limit_order(self, symbol, qty, price, cid, **kw):
            calls.append(("limit", cid, qty))
            return super().create_limit_order(symbol, qty, price, cid, **kw)

    cfg = _cfg(tmp_path, deadline=6, slots=[{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "capital": 1000.0,
                                             "costs": "futures"}])
    v = Spy({SYM: load_sample()[0].head(900)}, start=400, maker_fee_bps=2.0, taker_fee_bps=5.0,
            perpetual=[SYM], max_volume_share=0.0005)
    j = Journal(cfg.general.journal, synchronous="NORMAL")
    try:
        rt = Runtime(cfg, v, j)
        rt.run(max_bars=1)
        killed = None
        for _ in range(300):
            b = v.next_bars()
            rt.process_bar(b)
            s = rt.slots["a"]
            resting = [o for o in j.orders(OPEN_STATUSES) if rt._is_limit(o["client_order_id"])]
            if s.ledger.units != 0.0 and resting and v.fetch_order(SYM, resting[0]["client_order_id"]).status == "open":
                cid = resting[0]["client_order_id"]
                units = s.ledger.units
                n0 = len(calls)
                with j:
                    rt.kill_info["a"] = {}
                    s.status = "killed"
                    rt.flatten(s, "kill", b[SYM].open_time)
                killed = (cid, units, calls[n0:])
                break
        assert killed is not None, "no bar with units and a resting order"
        cid, units, after = killed
        assert after[0] == ("cancel", cid)
        assert after[1][0] == "market" and after[1][2] == pytest.approx(-units) and after[1][3] is True
        assert v.fetch_order(SYM, cid).status == "canceled" and j.order(cid)["status"] == "canceled"
        assert "a" not in rt.exec_book.working
        b = v.next_bars()
        rt.process_bar(b)
        assert rt.slots["a"].ledger.units == pytest.approx(0.0, abs=1e-12)
        assert v.fetch_positions() == {}
    finally:
        j.close()


def test_replay_cancel_lost_in_the_network_is_retried_and_never_doubles(tmp_path):
    """The cancel of a resting order fails with a network error (once before the venue, once after it cancelled):
    no replacement is placed until the cancel is confirmed, at most one order of the slot rests at any time, and
    every fill at the venue is booked once."""
    cfg = _cfg(tmp_path, deadline=6)
    v = _replay(300, max_volume_share=0.0005)
    j = Journal(cfg.general.journal, synchronous="NORMAL")
    try:
        rt = Runtime(cfg, v, j)
        rt.run(max_bars=1)
        injected = 0
        for i in range(290):
            resting = [o for o in v.fetch_open_orders(SYM)]
            assert len(resting) <= 1, resting
            if resting and injected < 6 and i % 7 == 0:
                v.inject_cancel("network_before" if injected % 2 else "drop_after_accept")
                injected += 1
            b = v.next_bars()
            if b is None:
                break
            rt.process_bar(b)
        assert injected == 6
        ev = [e for e in j.events("cancel_unknown")]
        assert len(ev) >= 3
        booked = sorted(f["trade_id"] for f in j.fills())
        assert booked == sorted(v.state()["fills"])
        assert rt.slots["a"].ledger.units == pytest.approx(v.fetch_positions().get(SYM, 0.0), abs=1e-12)
        cids = [o["client_order_id"] for o in j.orders()]
        assert len(cids) == len(set(cids)) and set(v.state()["orders"]) <= set(cids)
    finally:
        j.close()


def test_replay_post_only_reject_is_journaled_and_the_intent_goes_on(tmp_path):
    cfg = _cfg(tmp_path, deadline=4)
    v = _replay(200)
    j = Journal(cfg.general.journal, synchronous="NORMAL")
    try:
        rt = Runtime(cfg, v, j)
        rt.run(max_bars=1)
        for i in range(190):
            if i == 40:
                v.cross_next_post_only = 1  # the next limit order is refused as crossing
            b = v.next_bars()
            if b is None:
                break
            rt.process_bar(b)
        assert rt.counters["post_only_rejects"] == 1 and v.post_only_rejects == 1
        rej = [o for o in j.orders() if o["status"] == "rejected"]
        assert len(rej) == 1 and rej[0]["error"].startswith("post-only")
        assert [e["data"]["client_order_id"] for e in j.events("post_only_reject")] == [rej[0]["client_order_id"]]
        assert rt.reject_until == {}  # a post-only refusal does not back the slot off
        m = slot_exec_metrics(j.db)["a"]
        assert m["post_only_rejects"] == 1 and 0 < m["reject_rate"] < 1
        assert rt.counters["limit_orders"] > 5  # the intents went on resting after it
    finally:
        j.close()


# ----------------------------------------------------------------------------- fake Bybit (the real CcxtVenue)


class _FakeBench:
    """The runtime on the fake exchange, bar by bar, with scripted targets for slot "a"."""

    def __init__(self, fk, tmp: Path, **cfg_kw) -> None:
        self.fk = fk
        self.v = CcxtVenue("bybit", [SYM], api_url=fk.rest_url, ws_url=fk.ws_url, timeout_ms=3000, feed="poll",
                           poll_seconds=0.02)
        self.cfg = _cfg(tmp, **cfg_kw)
        self.j = Journal(self.cfg.general.journal)
        self.rt = Runtime(self.cfg, self.v, self.j, sleep=lambda d: False)
        self.target = 0.0
        self.rt.engine.latest = lambda genomes, hist: {k: self.target for k in genomes}
        self.rt.restore()
        self.rt.reconcile()
        self.v.history(SYM, 1)  # the feed starts after the newest closed bar

    def bar(self, target: float | None = None):
        if target is not None:
            self.target = target
        assert self.fk.step() == 1
        b = self.v.next_bars(timeout_s=10)
        assert b is not None
        self.rt.process_bar(b)
        return b

    def close(self) -> None:
        self.j.close()
        self.v.close()


@pytest.fixture()
def bench(tmp_path, fake_exchange, bybit_keys):
    benches = []

    def make(**kw):
        b = _FakeBench(fake_exchange, tmp_path, **kw)
        benches.append(b)
        return b

    yield make
    for b in benches:
        b.close()


def _ledger_equals_exchange(b: _FakeBench) -> None:
    st = b.fk.state()
    fills = b.j.fills()
    assert sorted(f["trade_id"] for f in fills) == sorted(st["executions"])  # none lost, none twice
    for f in fills:
        e = st["executions"][f["trade_id"]]
        assert f["client_order_id"] == e["orderLinkId"] and f["price"] == pytest.approx(float(e["execPrice"]))
        assert f["fee"] == pytest.approx(float(e["execFee"]))
    assert b.rt.slots["a"].ledger.units == pytest.approx(st["position"], abs=1e-9)
    assert set(st["orders"]) <= {o["client_order_id"] for o in b.j.orders()}


def test_fake_bybit_post_only_rests_then_fills_at_its_limit_with_the_maker_fee(bench):
    b = bench(deadline=5)
    fk = b.fk
    b.bar(1.0)  # the decision: an intent, a PostOnly limit at the bid
    lim = [o for o in fk.state()["orders"].values() if o.get("type") == "Limit"]
    assert len(lim) == 1 and lim[0]["tif"] == "PostOnly" and lim[0]["side"] == "Buy"
    bid, _ask = fk.book()
    assert lim[0]["price"] == pytest.approx(bid)
    for _ in range(6):
        b.bar()
        if fk.state()["position"] > 0:
            break
    ex = [e for e in fk.state()["executions"].values()]
    assert ex and all(e["isMaker"] and e["orderType"] == "Limit" for e in ex)
    for e in ex:
        assert float(e["execPrice"]) == pytest.approx(lim[0]["price"]) or e["orderLinkId"] != lim[0]["orderLinkId"]
        assert float(e["execFee"]) == pytest.approx(fk.maker_fee_rate * float(e["execQty"]) * float(e["execPrice"]),
                                                    rel=1e-6)
    b.bar()
    _ledger_equals_exchange(b)
    m = slot_exec_metrics(b.j.db)["a"]
    assert m["fee_bps"] == pytest.approx(2.0, rel=1e-3) and m["fill_rate"] > 0
    assert fk.dcp_window == 60 and any(e["kind"] == "dcp_armed" for e in b.j.events())
    assert b.rt.passive_warning() is not None and "queue position" in b.rt.passive_warning()


def test_fake_bybit_post_only_reject_then_cross_at_the_deadline(bench):
    b = bench(deadline=2)
    fk = b.fk
    fk.cross_next_post_only = 50  # every PostOnly order finds the book moved through it
    b.bar(1.0)
    for _ in range(4):
        b.bar()
    rej = [o for o in b.j.orders() if o["status"] == "rejected"]
    assert len(rej) >= 1 and all(o["error"].startswith("post-only") for o in rej)
    assert b.rt.counters["post_only_rejects"] == len(rej)
    st = fk.state()
    assert st["position"] > 0  # the deadline crossed the rest with a market order
    mk = [o for o in st["orders"].values() if o.get("type") != "Limit"]
    assert len(mk) == 1 and not mk[0]["reduceOnly"]
    assert b.rt.reject_until == {}
    m = slot_exec_metrics(b.j.db)["a"]
    assert m["reject_rate"] == 1.0 and m["post_only_rejects"] == len(rej)
    _ledger_equals_exchange(b)


def test_fake_bybit_cancel_replace_is_idempotent_across_a_dropped_cancel(bench):
    """Every bar the resting order is cancelled and replaced under the next sequence number of its intent; a cancel
    whose response is lost (processed, connection dropped) is looked up, the replacement waits, nothing doubles."""
    b = bench(deadline=8)
    fk = b.fk
    fk.set_book(1.0, 1.2)  # a far-away book: resting buys at 1.0 never fill
    b.bar(1.0)
    first = [o for o in fk.open_orders()]
    assert len(first) == 1
    fk.inject_rest("drop", "/v5/order/cancel")
    fk.inject_rest("5xx", "/v5/order/cancel")
    b.bar()
    b.bar()
    b.bar()
    st = fk.state()
    links = [o["orderLinkId"] for o in st["orders"].values()]
    assert len(fk.open_orders()) == 1  # one resting order at any time
    cids = [o["client_order_id"] for o in b.j.orders()]
    assert len(cids) == len(set(cids)) == len(links)
    intent = b.rt.exec_book.working["a"]
    assert all(b.rt.exec_book.orders[c]["intent_id"] == intent["id"] for c in cids)
    seqs = [o["seq"] for o in b.j.orders()]
    assert seqs == list(range(len(seqs))) and len({o["bar_time"] for o in b.j.orders()}) == 1
    assert b.j.events("cancel_unknown")  # the 5xx'd cancel was reported and retried
    statuses = sorted(o["status"] for o in b.j.orders())
    assert statuses.count("acked") == 1 and statuses.count("canceled") == len(statuses) - 1
    fk.set_book(None)
    for _ in range(8):
        b.bar()
    _ledger_equals_exchange(b)
    assert fk.state()["position"] > 0


def test_fake_bybit_kill_rule_cancels_resting_then_reduce_only_market(bench):
    b = bench(deadline=8, slots=[{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "capital": 1000.0}])
    fk = b.fk
    b.bar(1.0)
    for _ in range(6):
        b.bar()
        if fk.state()["position"] > 0:
            break
    assert fk.state()["position"] > 0
    fk.set_book(1.0, 1.2)
    b.bar(-1.0)  # a flip: the buy is done, a sell intent rests far away
    assert [o["side"] for o in fk.open_orders()] == ["Sell"]
    resting = fk.open_orders()[0]["orderLinkId"]
    n0 = len(fk.paths)
    rt = b.rt
    with b.j:
        s = rt.slots["a"]
        s.status = "killed"
        rt.flatten(s, "kill", fk.bars[fk.n_closed - 1][0])
    after = [p for _m, p in fk.paths[n0:] if p in ("/v5/order/cancel", "/v5/order/create")]
    assert after[0] == "/v5/order/cancel" and after[-1] == "/v5/order/create"
    st = fk.state()
    assert st["orders"][resting]["status"] == "Cancelled"
    mk = [o for o in st["orders"].values() if o.get("type") != "Limit"]
    assert len(mk) == 1 and mk[0]["reduceOnly"] and mk[0]["side"] == "Sell"
    assert st["position"] == pytest.approx(0.0, abs=1e-12)
    fk.set_book(None)
    b.bar()
    _ledger_equals_exchange(b)


def test_fake_bybit_dead_mans_switch_fires_and_the_intent_re_rests(bench):
    b = bench(deadline=8)
    fk = b.fk
    fk.set_book(1.0, 1.2)
    b.bar(1.0)
    assert fk.dcp_window == 60 and len(fk.open_orders()) == 1
    assert fk.fire_dcp() == 1 and fk.open_orders() == []  # the bench went away too long: the exchange cancelled
    b.bar()  # the runtime sees its order cancelled, the intent rests a new one
    assert len(fk.open_orders()) == 1
    statuses = [o["status"] for o in b.j.orders()]
    assert statuses == ["canceled", "acked"]


def test_ccxt_limit_order_params_and_post_only_mapping(fake_exchange, bybit_keys):
    fk = fake_exchange
    v = CcxtVenue("bybit", [SYM], api_url=fk.rest_url, ws_url=fk.ws_url, timeout_ms=3000, feed="poll")
    try:
        r = v.market_rules(SYM)
        assert (r.tick, r.lot) == (0.1, 0.001)
        bid, ask = v.touch(SYM)
        assert (bid, ask) == fk.book()
        st = v.create_limit_order(SYM, 0.0104, bid, "pa-1")
        assert st.status == "open" and st.order_type == "limit" and st.qty == pytest.approx(0.010)
        o = fk.state()["orders"]["pa-1"]
        assert o["tif"] == "PostOnly" and o["price"] == pytest.approx(bid)
        with pytest.raises(VenuePostOnlyReject):
            v.create_limit_order(SYM, 0.01, ask, "pa-2")
        assert v.fetch_order(SYM, "pa-2").reason == "post_only"
        v.cancel_order(SYM, "pa-1")
        for cid in ("pa-1", "pa-none"):  # already cancelled / unknown: refused (110001), the lookup tells which
            with pytest.raises(VenueRejected, match="OrderNotFound"):
                v.cancel_order(SYM, cid)
        assert v.fetch_order(SYM, "pa-1").status == "canceled" and v.fetch_order(SYM, "pa-none") is None
        assert v.cancel_all_after(45) and fk.dcp_window == 45
    finally:
        v.close()


# ----------------------------------------------------------------------------- crucible status


def test_status_shows_execution_metrics_within_80_columns(tmp_path):
    from rich.console import Console

    from commands.crucible import execution_view, status_view
    from crucible.status import status

    cfg = _cfg(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "capital": 1000.0},
                                {"id": "t", "symbol": SYM, "genome": "builtin:meanrev", "capital": 1000.0,
                                 "execution_policy": "always-taker"}])
    run_live(cfg, venue=_replay(200))
    rep = status(cfg.general.journal)
    ex = rep["execution"]
    assert set(ex) == {"a", "t"} and ex["a"]["limit_orders"] > 0 and ex["t"]["limit_orders"] == 0
    assert ex["t"]["fee_bps"] == pytest.approx(5.0, rel=1e-3) and ex["a"]["fee_bps"] < 5.0  # taker vs maker fees
    con = Console(width=80, record=True)
    con.print(status_view(rep, 80))
    con.print(execution_view(rep, 80))
    text = con.export_text()
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 80
    assert "Execution" in text and "mk15" in text and "rej%" in text
    old = tmp_path / "old.sqlite"  # a journal from before issue 31 has no execution tables
    Journal(old).close()
    assert status(old)["execution"] == {}


class _Crash(Exception):
    pass


@pytest.mark.parametrize("point", ["intent_saved", "sent_not_acked"])
def test_fake_bybit_crash_around_a_limit_send_recovers_exactly(tmp_path, bybit_keys, point):
    """A crash right after a limit order's intent was committed (never sent), or after the venue accepted it (the
    ack lost): the restart sends it once under the journaled id (it was decided on the latest closed bar), or finds
    it by that id; the intent goes on working; a flatten then cancels exactly that order."""
    import time

    from fake_bybit import FakeBybit, sample_bars

    from crucible.venues.base import Bar

    end = (int(time.time() * 1000) // 60_000 - 1) * 60_000  # latest closed minute, like a real exchange
    with FakeBybit(sample_bars(450, end_ms=end), history=450) as fk:
        v = CcxtVenue("bybit", [SYM], api_url=fk.rest_url, ws_url=fk.ws_url, timeout_ms=3000, feed="poll")
        cfg = _cfg(tmp_path, deadline=6)

        def crash(p, ctx):
            if p == point:
                raise _Crash(p)

        try:
            j = Journal(cfg.general.journal)
            rt = Runtime(cfg, v, j, fault=crash)
            rt.engine.latest = lambda genomes, hist: {k: 1.0 for k in genomes}
            rt.restore()
            rt.reconcile()
            h = v.history(SYM, 1)
            t = int(h["open_time"][-1])
            bar = Bar(SYM, t, *(float(h[c][-1]) for c in ("open", "high", "low", "close", "volume")))
            with pytest.raises(_Crash):
                rt.process_bar({SYM: bar})
            j.close()
            at_venue = sorted(fk.state()["orders"])
            if v.now_ms() >= end + 2 * 60_000 - 2_000:
                pytest.skip("the minute rolled over: the bar is no longer the latest closed bar")
            j = Journal(cfg.general.journal)
            rt2 = Runtime(cfg, v, j)
            rt2.restore()
            rt2.reconcile()
            cids = [o["client_order_id"] for o in j.orders()]
            assert len(cids) == 1 and rt2.exec_book.orders[cids[0]]["kind"] == "limit"
            assert at_venue == ([] if point == "intent_saved" else cids)
            assert sorted(fk.state()["orders"]) == cids  # sent once, under the journaled id
            assert j.order(cids[0])["status"] == "acked" and fk.state()["orders"][cids[0]]["status"] == "New"
            assert "a" in rt2.exec_book.working and rt2.slots["a"].target == 1.0  # the intent goes on
            with j:
                assert rt2._clear_resting(rt2.slots["a"])
            assert fk.state()["orders"][cids[0]]["status"] == "Cancelled" and j.order(cids[0])["status"] == "canceled"
            assert fk.open_orders() == [] and "a" not in rt2.exec_book.working
            j.close()
        finally:
            v.close()


@pytest.mark.parametrize("exchange,want", [
    ("bybit", {"orderType": "Limit", "timeInForce": "PostOnly", "orderLinkId": "cid-1", "reduceOnly": True}),
    ("binanceusdm", {"type": "LIMIT", "timeInForce": "GTX", "newClientOrderId": "cid-1", "reduceOnly": True}),
])
def test_limit_params_reach_each_exchange_as_its_post_only_flag(exchange, want):
    """Offline (no network): the venue's limit-order params through ccxt's own request builder give Bybit
    ``timeInForce=PostOnly`` + ``orderLinkId`` and Binance USDⓈ-M ``timeInForce=GTX`` + ``newClientOrderId``."""
    import ccxt

    from crucible.venues.ccxt_venue import limit_order_params

    m = {"id": "BTCUSDT", "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT", "settle": "USDT", "baseId": "BTC",
         "quoteId": "USDT", "settleId": "USDT", "type": "swap", "spot": False, "margin": False, "swap": True,
         "future": False, "option": False, "contract": True, "linear": True, "inverse": False, "active": True,
         "contractSize": 1, "precision": {"amount": 0.001, "price": 0.1},
         "limits": {"amount": {"min": 0.001}, "price": {}, "cost": {"min": 100}},
         "info": {"orderTypes": ["LIMIT", "MARKET"]}}
    ex = getattr(ccxt, exchange)()
    ex.set_markets([m])
    req = ex.create_order_request("BTC/USDT:USDT", "limit", "buy", 0.01, 60000.0,
                                  limit_order_params("cid-1", post_only=True, reduce_only=True))
    assert {k: req.get(k) for k in want} == want
    plain = ex.create_order_request("BTC/USDT:USDT", "limit", "buy", 0.01, 60000.0,
                                    limit_order_params("cid-2", post_only=False, reduce_only=False))
    assert plain.get("timeInForce") not in ("PostOnly", "GTX") and not plain.get("reduceOnly")
