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


def j_fills(cfg):
    j = Journal(cfg.general.journal, readonly=True)
    try:
        return j.fills()
    finally:
        j.close()


def test_two_benches_on_one_account_book_only_their_own_fills(tmp_path, fake_exchange, bybit_keys):
    fk = fake_exchange
    pairs, journals, cfgs = [], [], []
    for name in ("one", "two"):  # the same default-looking config: same prefix, same slot ids
        d = tmp_path / name
        cfg = cfg_for(d)
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
    total = sum(s.ledger.units for rt, _v in pairs for s in rt.slots.values())
    assert total == pytest.approx(st["position"], abs=1e-9)
