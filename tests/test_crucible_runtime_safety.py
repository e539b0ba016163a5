"""Issue 18, part B: the Crucible runtime safe with real money — own orders only, outage policy, capital
that moves, resume/adopt/mismatch, signal parity, funding, one cost model.  Exchange-side behaviour is
exercised on the fake Bybit of tests/fake_bybit.py (127.0.0.1) through the real CcxtVenue."""

from __future__ import annotations

from pathlib import Path

import pytest

from crucible.config import config_from_dict
from crucible.journal import Journal
from crucible.runtime import Runtime
from crucible.venues.ccxt_venue import CcxtVenue

SYM = "BTCUSDT"


def make_venue(fk, **kw) -> CcxtVenue:
    kw.setdefault("feed", "poll")
    kw.setdefault("poll_seconds", 0.02)
    return CcxtVenue("bybit", [SYM], api_url=fk.rest_url, ws_url=fk.ws_url, timeout_ms=3000, **kw)


def cfg_for(d: Path, slots=None, **sections):
    raw = {
        "crucible": {"journal": str(d / "journal.sqlite"), "champions_dir": str(d / "champions"),
                     "requests_dir": str(d / "requests"), "kill_file": str(d / "KILL"), "history_bars": 400,
                     "snapshot_every": 1},
        "hotswap": {"enabled": False},
        "watchtower": {"stale_feed_seconds": 10.0},
        "slots": slots or [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"},
                           {"id": "b", "symbol": SYM, "genome": "builtin:meanrev"}],
    }
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return config_from_dict(raw, "test")


def start(cfg, v, **kw) -> tuple[Runtime, Journal]:
    j = Journal(cfg.general.journal)
    rt = Runtime(cfg, v, j, **kw)
    rt.restore()
    rt.reconcile()
    v.history(SYM, 1)  # the feed starts after the newest closed bar (as in Runtime.run)
    return rt, j


def step_all(fk, pairs, n: int) -> None:
    """Close n bars at the fake; every runtime processes each of them."""
    for _ in range(n):
        assert fk.step() == 1
        for rt, v in pairs:
            bars = v.next_bars(timeout_s=5)
            assert bars is not None
            rt.process_bar(bars)


# ----------------------------------------------------------------------------- 1. own orders only


def test_hand_placed_lookalike_orders_are_reported_never_booked(tmp_path, fake_exchange, bybit_keys):
    fk = fake_exchange
    v = make_venue(fk)
    cfg = cfg_for(tmp_path)
    rt, j = start(cfg, v)
    try:
        minute = fk.released[-1][0] // 60_000
        fk.place_external(0.05, "cr-a-1-0")  # the old format of slot a's ids, typed by hand
        fk.place_external(-0.02, f"cr-{rt.bench_id}-a-{minute}-0")  # this bench's format, never journaled
        step_all(fk, [(rt, v)], 25)
        rep = rt.reconcile()
        booked = {f["client_order_id"] for f in j.fills()}
        ours = {o["client_order_id"] for o in j.orders()}
        foreign = [e["data"]["fill"]["client_order_id"] for e in j.events("foreign_fill")]
    finally:
        j.close()
        v.close()
    assert sorted(foreign) == sorted(["cr-a-1-0", f"cr-{rt.bench_id}-a-{minute}-0"])  # reported, once each
    assert booked <= ours and "cr-a-1-0" not in booked
    assert all(cid.startswith(f"cr-{rt.bench_id}-") for cid in ours)
    units = sum(s.ledger.units for s in rt.slots.values())
    assert units == pytest.approx(sum(f["qty"] for f in j_fills(cfg)), abs=1e-12)
    # never traded against: the exchange holds exactly the bench's units plus the foreign 0.03
    assert fk.state()["position"] == pytest.approx(units + 0.03, abs=1e-9)
    assert rep["position_diff"] == {}  # the foreign units are explained, not a mismatch
    # both carry this bench's prefix without a valid tag: the bench halted and said why (issue 28)
    assert rt.halted is not None and "foreign order under this bench's ids" in rt.halted


def j_fills(cfg):
    j = Journal(cfg.general.journal, readonly=True)
    try:
        return j.fills()
    finally:
        j.close()


def test_two_benches_on_one_account_book_only_their_own_fills(tmp_path, fake_exchange, bybit_keys):
    fk = fake_exchange
    pairs, journals, cfgs = [], [], []
    for name, other in (("one", "two"), ("two", "one")):  # same prefix, same slot ids, each lists the other
        d = tmp_path / name
        cfg = cfg_for(d, crucible={"bench_id": name, "sibling_benches": [other]})
        v = make_venue(fk)
        rt, j = start(cfg, v)
        pairs.append((rt, v))
        journals.append(j)
        cfgs.append(cfg)
    try:
        assert pairs[0][0].bench_id != pairs[1][0].bench_id
        step_all(fk, pairs, 30)
        reps = [rt.reconcile() for rt, _v in pairs]
        fills = [{f["trade_id"]: f for f in j.fills()} for j in journals]
        orders = [{o["client_order_id"] for o in j.orders()} for j in journals]
    finally:
        for j in journals:
            j.close()
        for _rt, v in pairs:
            v.close()
    st = fk.state()
    assert fills[0] and fills[1], "both benches traded"
    assert not set(fills[0]) & set(fills[1])  # no fill booked twice
    assert set(fills[0]) | set(fills[1]) == set(st["executions"])
    for k in (0, 1):
        assert {f["client_order_id"] for f in fills[k].values()} <= orders[k]
        assert reps[k]["position_diff"] == {}
        assert pairs[k][0].halted is None  # a listed sibling's orders are reported, not a threat
    total = sum(s.ledger.units for rt, _v in pairs for s in rt.slots.values())
    assert total == pytest.approx(st["position"], abs=1e-9)


# ----------------------------------------------------------------------------- 2. outage policy

LONG = {"tokens": ["long_only", "gt_c", "feature:ret_1", "const:0"], "constants": [-1e9]}  # always long


def long_genome(d: Path) -> str:
    import json

    from forge.gp import Genome

    p = d / "long.json"
    p.write_text(Genome.from_tokens(LONG["tokens"], LONG["constants"]).to_json())
    return str(p)


class FakeClock:
    """Injected clock + sleep: a retry sequence spends minutes of fake time in microseconds."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, d: float) -> bool:
        self.slept.append(d)
        self.t += d
        return False


def test_retry_policy_backoff_jitter_and_budget():
    from crucible.venues.base import RetryPolicy, VenueNetworkError

    fc = FakeClock()
    pol = RetryPolicy(budget_s=300.0, base_s=1.0, max_s=30.0, jitter=0.5, sleep=fc.sleep, clock=fc.clock, seed=1)
    calls = []

    def always_down():
        calls.append(fc.t)
        raise VenueNetworkError("503")

    with pytest.raises(VenueNetworkError):
        pol.call(always_down)
    d = fc.slept
    assert 120.0 < sum(d) <= 300.0 and len(calls) == len(d) + 1  # minutes of backoff, then give up
    for k, x in enumerate(d):  # exponential, capped, jittered within [d/2, d]
        cap = min(30.0, 2.0 ** k)
        assert cap * 0.5 <= x <= cap
    assert len({round(x, 6) for x in d if x > 15}) > 1  # jitter: the capped delays differ
    n = {"k": 0}

    def flaky():
        n["k"] += 1
        if n["k"] < 4:
            raise VenueNetworkError("timeout")
        return "ok"

    assert pol.call(flaky) == "ok" and n["k"] == 4
    stop = RetryPolicy(budget_s=300.0, sleep=lambda d: True)  # interrupted sleep: give up at once
    with pytest.raises(VenueNetworkError):
        stop.call(always_down)


def test_venue_reads_ride_out_a_multi_minute_outage(fake_exchange, bybit_keys):
    from crucible.venues.base import RetryPolicy, VenueNetworkError

    fk = fake_exchange
    fc = FakeClock()
    v = make_venue(fk, retry=RetryPolicy(budget_s=600.0, base_s=1.0, max_s=30.0, sleep=fc.sleep, clock=fc.clock))
    try:
        fk.inject_rest("5xx", "*", 12)
        assert v.fetch_positions() == {}
        assert sum(fc.slept) >= 120.0 and v.retries == 12  # minutes of outage, in fake time
        fk.inject_rest("5xx", "*", 100)
        with pytest.raises(VenueNetworkError):
            v.fetch_balance()  # longer than the budget: the caller decides
        fk.rest_faults.clear()
        fk.inject_rest("timestamp", "/v5/position/list")  # our clock is off: re-sync, retry once
        assert v.fetch_positions() == {} and v.clock_resyncs == 1
    finally:
        v.close()


def test_bar_loop_survives_an_outage_and_resumes(tmp_path, fake_exchange, bybit_keys):
    from crucible.venues.base import RetryPolicy

    fk = fake_exchange
    fc = FakeClock()
    v = make_venue(fk, feed="ws", ws_backoff=(0.02, 0.2),
                   retry=RetryPolicy(budget_s=60.0, base_s=1.0, max_s=30.0, sleep=fc.sleep, clock=fc.clock))
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": long_genome(tmp_path)},
                                   {"id": "b", "symbol": SYM, "genome": "builtin:momentum"}],
                  crucible={"retry_budget_minutes": 3.0})
    rt, j = start(cfg, v, sleep=fc.sleep, clock=fc.clock)
    try:
        for k in range(30):  # each bar's order work ends at its deadline (20 s): the 60 failures span more bars
            if k == 3:
                fk.inject_rest("5xx", "*", 60)  # REST down for many minutes (fake time); the WS feed still runs
            step_all(fk, [(rt, v)], 1)  # never raises
        kinds = [e["kind"] for e in j.events() if e["kind"] in ("outage", "outage_end")]
        lost_requests = sum(1 for _p, k in fk.faults_hit if k == "5xx")
    finally:
        j.close()
        v.close()
    assert lost_requests == 60 and rt.counters["outage_bars"] >= 1
    assert kinds == ["outage", "outage_end"]
    # they waited (fake time), but never past a bar's order deadline: at most 20 s of each bar (issue 28)
    assert 0 < sum(fc.slept) <= 30 * cfg.general.bar_order_deadline_seconds
    out = _ledger_vs_exchange(cfg, fk)
    assert out["a_units"] > 0  # slot a holds its long once the venue is back


def _ledger_vs_exchange(cfg, fk) -> dict:
    j = Journal(cfg.general.journal, readonly=True)
    try:
        fills, orders = j.fills(), j.orders()
    finally:
        j.close()
    st = fk.state()
    assert sorted(f["trade_id"] for f in fills) == sorted(st["executions"])
    assert sum(f["qty"] for f in fills) == pytest.approx(st["position"], abs=1e-9)
    assert all(o["status"] not in ("intent", "unknown") for o in orders[:-2])
    return {"a_units": sum(f["qty"] for f in fills if f["slot"] == "a"), "orders": orders}


def test_acked_order_the_venue_lost_is_marked_lost_and_retargeted(tmp_path, fake_exchange, bybit_keys):
    import time

    fk = fake_exchange
    v = make_venue(fk)
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": long_genome(tmp_path)}],
                  crucible={"order_lookup_timeout_seconds": 0.3})
    rt, j = start(cfg, v)
    try:
        fk.inject_rest("ghost")
        step_all(fk, [(rt, v)], 1)  # the long order is acked, then lost by the exchange
        first = j.orders()[0]
        assert first["status"] == "acked" and not fk.state()["orders"]
        time.sleep(0.35)
        step_all(fk, [(rt, v)], 3)
        rt._sync_fills([SYM], 0)
        orders = j.orders()
        lost = j.events("lost")
    finally:
        j.close()
        v.close()
    assert orders[0]["status"] == "lost" and [e["data"]["client_order_id"] for e in lost] == [first["client_order_id"]]
    assert any(o["status"] == "filled" for o in orders[1:])  # the slot is not frozen: re-sent and filled
    assert rt.slots["a"].ledger.units == pytest.approx(fk.state()["position"]) and fk.state()["position"] > 0


@pytest.mark.parametrize("fault", ["margin", "min_notional"])
def test_rejected_orders_back_off_and_are_reported(tmp_path, fake_exchange, bybit_keys, fault):
    fk = fake_exchange
    v = make_venue(fk)
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": long_genome(tmp_path)}],
                  crucible={"reject_backoff_bars": 3})
    rt, j = start(cfg, v)
    try:
        fk.inject_rest(fault, n=1000)
        step_all(fk, [(rt, v)], 25)
        ev = [e["data"] for e in j.events("order_rejected")]
        creates = sum(1 for _m, p in fk.paths if p == "/v5/order/create")
        fk.rest_faults.clear()
        step_all(fk, [(rt, v)], 25)  # the venue accepts again: the backoff ends, the slot trades
        rt._sync_fills([SYM], 0)  # the last bar's fills
    finally:
        j.close()
        v.close()
    # without backoff every one of the 25 bars would re-send; with 3, 6, 12 bars of backoff: 4 attempts
    assert [e["backoff_bars"] for e in ev] == [3, 6, 12, 24][: len(ev)] and 3 <= len(ev) <= 4
    assert creates == len(ev) and all(fault.split("_")[0] in e["error"].lower() or "110" in e["error"] for e in ev)
    assert fk.state()["position"] > 0 and rt.slots["a"].ledger.units == pytest.approx(fk.state()["position"])


def test_partial_fill_then_cancel_is_retargeted(tmp_path, fake_exchange, bybit_keys):
    fk = fake_exchange
    v = make_venue(fk)
    # one slot: keep the CWO's 0.5 weight from sending half its capital to the reserve (issue 28: that waits for a
    # reducing fill and re-sizes the slot, which is not what this test is about)
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": long_genome(tmp_path)}],
                  cwo={"move_capital": False})
    rt, j = start(cfg, v)
    try:
        fk.inject_rest("partial")
        step_all(fk, [(rt, v)], 4)
        rt._sync_fills([SYM], 0)
        orders = j.orders()
        partial = j.events("partial")
    finally:
        j.close()
        v.close()
    assert orders[0]["status"] == "canceled" and len(partial) == 1
    assert abs(partial[0]["data"]["filled"]) < abs(partial[0]["data"]["qty"])
    assert len(orders) >= 2 and orders[1]["status"] == "filled"  # the remainder was ordered
    eq = rt.slots["a"].equity()
    want = eq / fk.released[-1][4]
    assert rt.slots["a"].ledger.units == pytest.approx(fk.state()["position"])
    assert abs(rt.slots["a"].ledger.units - want) <= 0.0015  # on target, within the 0.001 lot


def test_auth_errors_skip_trading_and_never_book(tmp_path, fake_exchange, bybit_keys):
    fk = fake_exchange
    v = make_venue(fk)
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": long_genome(tmp_path)}])
    rt, j = start(cfg, v)
    try:
        fk.inject_rest("auth", "/v5/order/create", 3)
        fk.inject_rest("auth", "/v5/execution/list", 3)
        step_all(fk, [(rt, v)], 10)  # never raises (each auth fault costs a bar: 6 of them, then trading)
        rt._sync_fills([SYM], 0)
        out = [e["data"]["error"] for e in j.events("outage")]
    finally:
        j.close()
        v.close()
    assert out and "AuthenticationError" in out[0]
    assert rt.slots["a"].ledger.units == pytest.approx(fk.state()["position"]) and fk.state()["position"] > 0


def test_stale_feed_flattens_the_bench(tmp_path, fake_exchange, bybit_keys):
    import threading

    fk = fake_exchange
    stop = threading.Event()
    v = make_venue(fk, stop_event=stop)
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": long_genome(tmp_path)}],
                  watchtower={"stale_feed_seconds": 0.5})
    rt, j = start(cfg, v, stop_event=stop)
    try:
        step_all(fk, [(rt, v)], 3)
        assert rt.slots["a"].ledger.units > 0
        # no new bar: the loop waits stale_feed_seconds, flattens, then we stop it
        threading.Timer(1.5, stop.set).start()
        rt._loop(None, cfg.watchtower.stale_feed_seconds, 0.0)
        rt._sync_fills([SYM], 0)
        stale = j.events("stale")
    finally:
        j.close()
        v.close()
    assert len(stale) == 1 and rt.counters["stale_flattens"] == 1
    assert rt.slots["a"].ledger.units == 0.0 and fk.state()["position"] == pytest.approx(0.0, abs=1e-12)


def test_rest_kline_with_the_forming_bar_is_not_delivered_as_closed(fake_exchange, bybit_keys):
    fk = fake_exchange
    fk.rest_forming = True
    v = make_venue(fk)
    try:
        h = v.history(SYM, 50)
        assert h["open_time"][-1] == fk.released[-1][0]  # the forming bar is not in the history
        got = []
        for _ in range(5):
            fk.step()
            b = v.next_bars(timeout_s=5)
            got.append((b[SYM].open_time, b[SYM].open, b[SYM].high, b[SYM].low, b[SYM].close, b[SYM].volume))
        assert got == [tuple(x) for x in fk.released[-5:]]  # each bar's final values, once, in order
    finally:
        v.close()


# ----------------------------------------------------------------------------- 3. capital that moves


def _replay_rt(tmp_path, slots, **sections):
    from crucible.venues.replay import ReplayVenue
    from forge.data.loader import load_sample

    cfg = cfg_for(tmp_path, slots=slots, **sections)
    v = ReplayVenue({SYM: load_sample()[0].head(700)}, start=400)
    j = Journal(cfg.general.journal, synchronous="NORMAL")
    rt = Runtime(cfg, v, j)
    rt.restore()
    rt.reconcile()
    return rt, v, j


def test_order_sizes_follow_cwo_weights(tmp_path):
    g = long_genome(tmp_path)
    rt, v, j = _replay_rt(tmp_path, [{"id": "a", "symbol": SYM, "genome": g}, {"id": "b", "symbol": SYM, "genome": g}],
                          cwo={"move_capital": True, "max_turnover": 2.0, "max_weight": 1.0, "eta": 0.0,
                               "interval_seconds": 1e9})
    try:
        for _ in range(3):
            rt.process_bar(v.next_bars())
        a, b = rt.slots["a"], rt.slots["b"]
        assert a.ledger.units == pytest.approx(b.ledger.units) and a.ledger.units > 0
        a.weight, b.weight = 0.75, 0.25  # the CWO's decision
        for _ in range(2):  # b is fully invested: its capital leaves once its reducing order has filled
            with j:
                rt._move_capital(v.now_ms())
            for _ in range(2):
                rt.process_bar(v.next_bars())
        tr = j.events("transfer")
    finally:
        j.close()
    assert len(tr) == 2 and tr[0]["data"]["pending"]["b"] > 0  # first: little free to move, b re-sized down
    second = tr[1]["data"]
    assert second["amounts"]["a"] == pytest.approx(-second["amounts"]["b"])  # then it moves (a remainder from the
    assert sum(second["pending"].values()) < 0.01 * second["amounts"]["a"]  # price move since waits one more round)
    total = a.equity() + b.equity()
    assert a.equity() / total == pytest.approx(0.75, abs=0.01)
    assert a.ledger.units / b.ledger.units == pytest.approx(3.0, rel=0.02)  # sizes follow the weights


def test_a_transfer_out_is_not_a_loss_for_the_kill_rule(tmp_path):
    g = long_genome(tmp_path)
    rt, v, j = _replay_rt(tmp_path, [{"id": "a", "symbol": SYM, "genome": g}, {"id": "b", "symbol": SYM, "genome": g}],
                          cwo={"move_capital": True, "max_turnover": 2.0, "max_weight": 1.0, "eta": 0.0,
                               "interval_seconds": 1e9},
                          watchtower={"kill_floor": 150.0})
    try:
        rt.process_bar(v.next_bars())
        rt.slots["a"].weight, rt.slots["b"].weight = 0.2, 0.8  # a's equity drops to ~80 USDT by transfer
        for _ in range(2):  # a is invested: its capital leaves once its reducing order filled (issue 28)
            with j:
                rt._move_capital(v.now_ms())
            for _ in range(3):
                rt.process_bar(v.next_bars())
        kills = j.events("kill")
    finally:
        j.close()
    a = rt.slots["a"]
    assert a.equity() < 150.0 < a.own_equity()  # below the floor by equity, not by its own P&L
    assert a.status == "live" and kills == []


# ----------------------------------------------------------------------------- 4. adopt, mismatch halt, funding, presets


def test_new_journal_facing_exchange_positions_refuses_unless_adopted(tmp_path, fake_exchange, bybit_keys):
    from crucible.reconcile import AdoptRequired

    fk = fake_exchange
    fk.place_external(0.05, "by-hand-1")  # a position the (lost) journal of an earlier bench would explain
    assert fk.state()["position"] == pytest.approx(0.05)
    v = make_venue(fk)
    cfg = cfg_for(tmp_path)
    try:
        j = Journal(cfg.general.journal)
        try:
            with pytest.raises(AdoptRequired, match="--adopt") as ei:
                Runtime(cfg, v, j).restore()
            assert ei.value.exit_code == 2 and "0.05" in str(ei.value)
            assert j.get_meta("started_ms") is None  # nothing written: the next start refuses again
        finally:
            j.close()
        rt, j = start(cfg, v, adopt=True)
        try:
            ev = j.events("adopt")
            base = j.get_meta("baseline_positions")
        finally:
            j.close()
    finally:
        v.close()
    assert len(ev) == 1 and ev[0]["data"]["positions"] == {SYM: pytest.approx(0.05)}
    assert base == {SYM: pytest.approx(0.05)} and rt.halted is None
    assert rt.reconcile_report["position_diff"] == {}  # adopted units are the baseline, not a mismatch


def _replay(sample_rows: int = 1500, start: int = 400, **kw):
    from crucible.venues.replay import ReplayVenue
    from forge.data.loader import load_sample

    return ReplayVenue({SYM: load_sample()[0].head(sample_rows)}, start=start, **kw)


@pytest.mark.parametrize("action", ["halt", "flatten"])
def test_reconcile_mismatch_halts_and_says_why(tmp_path, action):
    from crucible.runtime import run_live

    g = long_genome(tmp_path)
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": g}], crucible={"on_mismatch": action})
    v = _replay()
    first = run_live(cfg, venue=v, max_bars=20)
    assert first["halted"] is None and first["slots"][0]["units"] > 0
    v._pos[SYM] += 0.003  # the account moved without a fill the bench can see (e.g. a liquidation)
    events = []
    again = run_live(cfg, venue=v, max_bars=20, progress=events.append)
    j = Journal(cfg.general.journal, readonly=True)
    try:
        halts = j.events("halt")
        later = j.orders()[first["orders"]:]  # orders placed by the second run
    finally:
        j.close()
    assert len(halts) == 1 and halts[0]["data"]["action"] == action
    assert "0.003" in halts[0]["data"]["reason"] and again["halted"] == halts[0]["data"]["reason"]
    assert any(e["event"] == "halt" for e in events)
    if action == "halt":
        assert later == [] and again["slots"][0]["units"] == first["slots"][0]["units"]  # no new orders
    else:
        assert [o["reason"] for o in later] == ["mismatch"] and again["slots"][0]["units"] == 0.0
    assert again["reweights"] == 0  # capital is not moved while halted


def test_funding_booked_on_futures_slots_like_the_backtester(tmp_path):
    """A futures slot pays funding at every 8 h bar open it holds units into (journaled, in the ledger, at the
    replay venue alike); a spot slot of another run pays none; a restart rebuilds the same ledger."""
    from crucible.runtime import run_live
    from forge.backtest.costs import funding_payment, is_funding_time

    g = long_genome(tmp_path)
    rate = 0.001
    runs = {}
    for preset in ("spot", "futures"):
        d = tmp_path / preset
        d.mkdir()
        cfg = cfg_for(d, slots=[{"id": "a", "symbol": SYM, "genome": g, "costs": preset}],
                      costs={"funding_rate_8h": rate}, cwo={"move_capital": False})
        v = _replay(2000, 300, funding_rate_8h=rate, perpetual=[SYM] if preset == "futures" else [])
        s = run_live(cfg, venue=v)
        j = Journal(cfg.general.journal, readonly=True)
        try:
            runs[preset] = (s, j.events("funding"), v, cfg)
        finally:
            j.close()
    s_spot, ev_spot, _, _ = runs["spot"]
    s, ev, v, cfg = runs["futures"]
    assert ev_spot == [] and s_spot["slots"][0]["funding"] == 0.0 and s_spot["slots"][0]["costs"] == "spot"
    assert len(ev) >= 2 and s["slots"][0]["costs"] == "futures"  # 1,700 bars span at least two funding times
    for e in ev:
        d = e["data"]
        assert is_funding_time(e["time_ms"]) and d["units"] > 0 and d["rate"] == rate
        assert d["amount"] == funding_payment(d["units"], d["price"], rate)
    paid = sum(e["data"]["amount"] for e in ev)
    assert s["slots"][0]["funding"] == pytest.approx(paid, rel=1e-12) and paid > 0
    # the replay venue's account paid the same funding: its cash is the ledger's view of it
    a = s["slots"][0]
    spent = 200.0 - a["cash"]  # no CWO transfers
    assert v.fetch_balance() == pytest.approx(cfg.replay.balance - spent, abs=1e-9)
    # restore from the journal rebuilds the ledger, funding included
    j = Journal(cfg.general.journal)
    try:
        rt = Runtime(cfg, v, j)
        rt.restore()
    finally:
        j.close()
    led = rt.slots["a"].ledger
    assert led.funding == pytest.approx(paid, rel=1e-12) and led.cash == pytest.approx(a["cash"], abs=1e-9)


def test_cost_presets_per_slot(tmp_path):
    from forge.core.errors import ConfigError

    mixed = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "costs": "spot"},
                                     {"id": "b", "symbol": "ETHUSDT", "genome": "builtin:momentum", "costs": "futures"}])
    assert mixed.presets(exchange=False) == {"a": "spot", "b": "futures"}  # one bench, spot and futures slots
    auto = cfg_for(tmp_path)
    assert set(auto.presets(exchange=False).values()) == {"spot"}
    assert set(auto.presets(exchange=True).values()) == {"futures"}  # exchange venues trade linear perpetuals
    with pytest.raises(ConfigError, match="linear perpetuals"):
        mixed.presets(exchange=True)
    clash = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "costs": "spot"},
                                     {"id": "b", "symbol": SYM, "genome": "builtin:momentum", "costs": "futures"}])
    with pytest.raises(ConfigError, match="both as spot and as futures"):
        clash.presets(exchange=False)
    with pytest.raises(ConfigError, match="costs must be"):
        cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "costs": "perp"}])
    with pytest.raises(ConfigError, match="on_mismatch"):
        cfg_for(tmp_path, crucible={"on_mismatch": "ignore"})


def test_funding_at_the_configured_interval_on_slots_and_the_replay_venue(tmp_path):
    """[costs] funding_interval_h = 4: a futures slot pays at every 4 h open it holds units into, at the rate
    per 8 h scaled to 4 h (the backtester's rule, forge.backtest.costs), and the replay venue's account pays the
    same (issue 30 part 3: the interval is the perpetual's own, not a hard-coded 8 h)."""
    from crucible.runtime import run_live
    from forge.backtest.costs import funding_payment, is_funding_time

    g = long_genome(tmp_path)
    rate = 0.001
    cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": g, "costs": "futures"}],
                  costs={"funding_rate_8h": rate, "funding_interval_h": 4}, cwo={"move_capital": False})
    v = _replay(2000, 300, funding_rate_8h=rate, funding_interval_h=4, perpetual=[SYM])
    s = run_live(cfg, venue=v)
    j = Journal(cfg.general.journal, readonly=True)
    try:
        ev = j.events("funding")
    finally:
        j.close()
    h4 = 4 * 3_600_000
    assert len(ev) >= 5  # 1,700 bars span at least five 4 h funding times
    assert any(not is_funding_time(e["time_ms"]) for e in ev)  # some at 04:00/12:00/20:00: not 8 h times
    for e in ev:
        d = e["data"]
        assert is_funding_time(e["time_ms"], h4) and d["rate"] == rate / 2
        assert d["amount"] == funding_payment(d["units"], d["price"], rate / 2)
    a = s["slots"][0]
    assert v.fetch_balance() == pytest.approx(cfg.replay.balance - (200.0 - a["cash"]), abs=1e-9)


def test_funding_interval_is_validated_in_the_crucible_config():
    from crucible.config import CostsConfig
    from forge.core.errors import ConfigError

    for bad in (0, 25, 2.5, True):
        with pytest.raises(ConfigError, match="funding_interval_h"):
            CostsConfig(funding_interval_h=bad).validate()


# ----------------------------------------------------------------------------- 5. the exchange's own executions


def test_a_liquidation_halts_without_flattening_and_a_restart_stays_halted(tmp_path, fake_exchange, bybit_keys):
    """A takeover liquidation (Bybit execType BustTrade: no orderLinkId) closes the bench's position: it is not a
    foreign fill to explain away.  The bench halts at once, never flattens units the exchange already closed, keeps
    the funding-fee rows out of its fills, and a restart's reconcile finds the difference."""
    fk = fake_exchange
    v = make_venue(fk)
    cfg = cfg_for(tmp_path, crucible={"on_mismatch": "flatten"})  # the default action would flatten: it must not
    rt, j = start(cfg, v)
    try:
        for _ in range(40):  # until the bench holds a position
            step_all(fk, [(rt, v)], 1)
            if abs(fk.state()["position"]) > 1e-9 and not j.orders(("intent", "acked", "unknown")):
                break
        held = fk.state()["position"]
        assert abs(held) > 1e-9
        funding_id = fk.add_venue_execution(0.0, "Funding")
        liq_id = fk.add_venue_execution(-held, "BustTrade")
        assert fk.state()["position"] == pytest.approx(0.0, abs=1e-12)
        orders_before = len(j.orders())
        step_all(fk, [(rt, v)], 5)
        halted, orders_after = rt.halted, len(j.orders())
        reported = [e["data"] for e in j.events("venue_action_fill")]
        foreign = [e["data"]["fill"]["trade_id"] for e in j.events("foreign_fill")]
        booked = {f["trade_id"] for f in j.fills()}
    finally:
        j.close()
        v.close()
    assert halted is not None and "liquidation" in halted and liq_id in halted and "not flattened" in halted
    assert [r["fill"]["trade_id"] for r in reported] == [liq_id]  # once, not per bar
    assert liq_id not in booked and liq_id not in foreign
    assert funding_id not in booked and funding_id not in foreign and funding_id not in {r["fill"]["trade_id"] for r in reported}
    assert orders_after == orders_before  # halted: no flatten of the units the exchange closed, no new orders
    assert fk.state()["position"] == pytest.approx(0.0, abs=1e-12)

    v2 = make_venue(fk)
    rt2, j2 = start(cfg_for(tmp_path), v2)
    try:
        rep = rt2.reconcile_report
        again = j2.events("venue_action_fill")
    finally:
        j2.close()
        v2.close()
    assert rep["position_diff"] == {SYM: pytest.approx(-held)}  # the liquidated units are a mismatch, not explained
    assert rt2.halted is not None and len(again) == 1
