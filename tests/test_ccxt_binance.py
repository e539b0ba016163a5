"""The real CcxtVenue on ccxt's ``binanceusdm`` against the loopback fake Binance USDⓈ-M REST API
(tests/fake_binance.py; issue 31 part 5): market and post-only (GTX) limit orders under client order ids, fills with
Binance's commissions (taker 5 bp, maker 2 bp, the futures preset), the kline trade-through rule for resting orders,
-5022 post-only rejections, -2011 cancels, the countdownCancelAll dead-man's switch, balance and positions, signed
requests (a wrong key or secret is a one-line error), fill paging (userTrades' 1000 rows and 7 days per request),
the runtime's passive order path end to end (resting orders, the kill rule's cancel-then-reduce-only order, the
dead-man's switch, a crash around a limit send), and kill -9 of the Crucible in its own process (tests/crucible_driver.py
``--exchange binanceusdm``)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_binance import FakeBinance, sample_bars
from restart_scenarios import crash_after_send_then_restart

from crucible.config import config_from_dict
from crucible.journal import Journal
from crucible.journal_exec import slot_exec_metrics
from crucible.runtime import Runtime
from crucible.venues.base import (
    VenueAuthError,
    VenueDuplicateOrder,
    VenuePostOnlyReject,
    VenueRejected,
)
from crucible.venues.ccxt_venue import CcxtVenue

SYM = "BTCUSDT"
PX = 60_000.0


def _flat(n: int, price: float = PX) -> list[tuple]:
    """``n`` 1-minute bars at one price (o = h = l = c), the last one opening 5 minutes ago."""
    end = (int(time.time() * 1000) // 60_000 - 5) * 60_000
    return [(end - (n - 1 - i) * 60_000, price, price, price, price, 1.0) for i in range(n)]


def _venue(fk: FakeBinance) -> CcxtVenue:
    return CcxtVenue("binanceusdm", [SYM], api_url=fk.rest_url, timeout_ms=3000, feed="poll", poll_seconds=0.02)


@pytest.fixture()
def fake_binance():
    """A started FakeBinance: 600 sample bars, the first 400 closed; stopped after the test."""
    with FakeBinance(sample_bars(600), history=400) as fk:
        yield fk


@pytest.fixture()
def venue(fake_binance, bybit_keys):
    v = _venue(fake_binance)
    yield v
    v.close()


# ----------------------------------------------------------------------------- the venue alone


def test_binance_urls_markets_and_the_demo_sandbox(venue, fake_binance):
    """sandbox=True is Binance's demo trading (ccxt 4.5 refuses private calls to the futures testnet); api_url keeps
    each endpoint's version path; the market rules come from exchangeInfo's filters."""
    import ccxt

    api = venue.ex.urls["api"]
    assert api["fapiPrivateV3"] == fake_binance.rest_url + "/fapi/v3" and api["fapiPublic"] == fake_binance.rest_url + "/fapi/v1"
    assert venue.ex.options.get("enableDemoTrading") is True and not venue.ex.isSandboxModeEnabled
    r = venue.market_rules(SYM)
    assert (r.tick, r.lot, r.min_notional) == (0.1, 0.001, 100.0)
    assert venue.touch(SYM) == fake_binance.book()  # /fapi/v1/depth with a limit Binance accepts (5)
    assert venue.funding_rate(SYM) == pytest.approx(fake_binance.funding_rate)
    real = ccxt.binanceusdm()  # what the unpatched sandbox would do: every private call refused
    real.set_sandbox_mode(True)
    real.apiKey, real.secret = "k", "s"
    with pytest.raises(ccxt.NotSupported, match="demo trading"):
        real.sign("account", ["fapiPrivateV3"], "GET", {})


def test_binance_market_order_with_client_id_fills_with_the_taker_fee(venue, fake_binance, bybit_keys):
    fk = fake_binance
    _bid, ask = fk.book()
    st = venue.create_market_order(SYM, 0.0104, "bn-m1")
    assert st.status == "filled" and st.filled == pytest.approx(0.010) and st.client_order_id == "bn-m1"
    o = fk.state()["orders"]["bn-m1"]
    assert o["type"] == "MARKET" and o["side"] == "BUY" and o["qty"] == pytest.approx(0.010)
    fills = venue.fetch_fills(SYM, venue.now_ms() - 60_000)
    assert len(fills) == 1
    f = fills[0]
    assert (f.client_order_id, f.qty, f.price) == ("bn-m1", pytest.approx(0.010), pytest.approx(ask))
    assert f.fee == pytest.approx(0.0005 * 0.010 * ask, rel=1e-6)  # 5 bp taker
    assert f.trade_id == str(next(iter(fk.state()["trades"].values()))["id"])
    with pytest.raises(VenueDuplicateOrder):  # -4116 clientOrderId is duplicated
        venue.create_market_order(SYM, 0.01, "bn-m1")
    # a restarted bench knows no order ids: the trade (which carries only orderId) is resolved by an order lookup
    fresh = _venue(fk)
    try:
        n = len(fk.paths)
        assert [x.client_order_id for x in fresh.fetch_fills(SYM, fresh.now_ms() - 60_000)] == ["bn-m1"]
        assert ("GET", "/fapi/v1/order") in fk.paths[n:]
        assert fresh.fetch_positions() == {SYM: pytest.approx(0.010)}
    finally:
        fresh.close()
    with pytest.raises(VenueRejected, match="-4164"):  # below MIN_NOTIONAL (100 USDT)
        venue.create_market_order(SYM, 0.001, "bn-m2")
    st = venue.create_market_order(SYM, -0.001, "bn-m3", reduce_only=True)  # reduce-only is exempt from it
    assert st.status == "filled" and fk.state()["orders"]["bn-m3"]["reduceOnly"] is True
    with pytest.raises(VenueRejected, match="-2022"):  # a reduce-only buy would not reduce the long
        venue.create_market_order(SYM, 0.002, "bn-m4", reduce_only=True)
    fk.inject_rest("margin")
    with pytest.raises(VenueRejected, match="InsufficientFunds.*-2019"):
        venue.create_market_order(SYM, 0.01, "bn-m5")
    assert "bn-m5" not in fk.state()["orders"]


@pytest.mark.parametrize("side", [1, -1])
def test_binance_gtx_rests_at_the_touch_and_fills_only_when_the_price_trades_through(bybit_keys, side):
    """A post-only buy at the bid (a sell at the ask) rests; a bar that only touches its price fills nothing; a bar
    through it fills it at its price with the 2 bp maker fee (the kline fill rule)."""
    with FakeBinance(_flat(60), history=58) as fk:
        v = _venue(fk)
        try:
            bid, ask = v.touch(SYM)
            px = bid if side > 0 else ask
            st = v.create_limit_order(SYM, side * 0.01, px, "bn-l1")
            assert (st.status, st.order_type, st.price) == ("open", "limit", pytest.approx(px))
            o = fk.state()["orders"]["bn-l1"]
            assert o["tif"] == "GTX" and o["type"] == "LIMIT" and o["price"] == pytest.approx(px)
            t = fk.bars[fk.n_closed][0]
            fk.bars[fk.n_closed] = (t, PX, max(PX, px), min(PX, px), PX, 1.0)  # touches px
            fk.bars[fk.n_closed + 1] = (t + 60_000, PX, px + 0.1 if side < 0 else PX, px - 0.1 if side > 0 else PX,
                                        PX, 1.0)  # trades through px
            fk.step()
            assert v.fetch_order(SYM, "bn-l1").status == "open" and v.fetch_fills(SYM, v.now_ms() - 60_000) == []
            fk.step()
            now = v.fetch_order(SYM, "bn-l1")
            assert now.status == "filled" and now.filled == pytest.approx(side * 0.01)
            (f,) = v.fetch_fills(SYM, v.now_ms() - 60_000)
            assert (f.client_order_id, f.qty, f.price) == ("bn-l1", pytest.approx(side * 0.01), pytest.approx(px))
            assert f.fee == pytest.approx(0.0002 * 0.01 * px, rel=1e-6)
            assert v.fetch_positions() == {SYM: pytest.approx(side * 0.01)}
        finally:
            v.close()


def test_binance_partial_fill_then_cancel_keeps_the_filled_part(bybit_keys):
    """limit_fill_share 0.5: a bar through the price fills half (PARTIALLY_FILLED, still open); the cancel leaves a
    canceled order with its filled quantity and one maker trade."""
    with FakeBinance(_flat(60), history=58, limit_fill_share=0.5) as fk:
        v = _venue(fk)
        try:
            bid, _ask = v.touch(SYM)
            v.create_limit_order(SYM, 0.01, bid, "bn-h1")
            t = fk.bars[fk.n_closed][0]
            fk.bars[fk.n_closed] = (t, PX, PX, bid - 0.1, PX, 1.0)
            fk.step()
            st = v.fetch_order(SYM, "bn-h1")
            assert (st.status, st.filled) == ("open", pytest.approx(0.005))
            assert fk.state()["orders"]["bn-h1"]["status"] == "PARTIALLY_FILLED"
            v.cancel_order(SYM, "bn-h1")
            st = v.fetch_order(SYM, "bn-h1")
            assert (st.status, st.filled, st.qty) == ("canceled", pytest.approx(0.005), pytest.approx(0.01))
            (f,) = v.fetch_fills(SYM, v.now_ms() - 60_000)
            assert f.qty == pytest.approx(0.005) and f.price == pytest.approx(bid)
            assert v.fetch_positions() == {SYM: pytest.approx(0.005)}
        finally:
            v.close()


def test_binance_crossing_gtx_is_refused_with_5022(venue, fake_binance):
    fk = fake_binance
    bid, ask = fk.book()
    with pytest.raises(VenuePostOnlyReject, match="-5022"):
        venue.create_limit_order(SYM, 0.01, ask, "bn-x1")
    with pytest.raises(VenuePostOnlyReject):
        venue.create_limit_order(SYM, -0.01, bid, "bn-x2")
    assert fk.post_only_rejects == 2 and fk.state()["orders"] == {}  # not recorded, as the real API says
    assert venue.fetch_order(SYM, "bn-x1") is None and venue.fetch_open_orders(SYM) == []
    st = venue.create_limit_order(SYM, 0.01, ask, "bn-x3", post_only=False)  # GTC through the touch: a taker
    assert st.status == "filled" and fk.state()["orders"]["bn-x3"]["tif"] == "GTC"
    (f,) = venue.fetch_fills(SYM, venue.now_ms() - 60_000)
    assert f.fee == pytest.approx(0.0005 * 0.01 * ask, rel=1e-6)


def test_binance_gtx_answered_expired_is_a_post_only_reject_too(venue, fake_binance):
    """The earlier Binance behaviour (a crossing GTX order accepted and EXPIRED at once): VenuePostOnlyReject as
    well, and the lookup reports it rejected with reason "post_only"."""
    fk = fake_binance
    fk.gtx_expires = True
    with pytest.raises(VenuePostOnlyReject, match="answered expired"):
        venue.create_limit_order(SYM, 0.01, fk.book()[1], "bn-e1")
    st = venue.fetch_order(SYM, "bn-e1")
    assert (st.status, st.reason, st.filled) == ("rejected", "post_only", 0.0)
    assert fk.state()["orders"]["bn-e1"]["status"] == "EXPIRED" and venue.fetch_open_orders(SYM) == []


def test_binance_cancel_open_filled_and_unknown_orders(venue, fake_binance):
    """An open order is cancelled; an unknown, filled or already cancelled one is refused (-2011, ccxt OrderNotFound ->
    VenueRejected) and the lookup tells which (the venue's documented behaviour)."""
    fk = fake_binance
    venue.create_market_order(SYM, 0.01, "bn-c2")
    fk.set_book(1000.0, 1000.2)  # a far-away bid: the resting buy never fills
    venue.create_limit_order(SYM, 0.2, 1000.0, "bn-c1")
    venue.cancel_order(SYM, "bn-c1")
    assert fk.state()["orders"]["bn-c1"]["status"] == "CANCELED" and fk.cancels == 1
    for cid in ("bn-c1", "bn-c2", "bn-none"):
        with pytest.raises(VenueRejected, match="OrderNotFound.*-2011"):
            venue.cancel_order(SYM, cid)
    assert venue.fetch_order(SYM, "bn-c1").status == "canceled"
    assert venue.fetch_order(SYM, "bn-c2").status == "filled"
    assert venue.fetch_order(SYM, "bn-none") is None


def test_binance_countdown_cancel_all_arms_disarms_and_fires(venue, fake_binance):
    fk = fake_binance
    fk.set_book(1000.0, 1000.2)
    venue.create_limit_order(SYM, 0.2, 1000.0, "bn-d1")
    assert venue.cancel_all_after(45)
    assert fk.countdowns[SYM][0] == 45_000 and fk.countdown_calls[-1] == (SYM, 45_000)
    assert venue.cancel_all_after(0) and SYM not in fk.countdowns  # 0 disarms
    assert venue.cancel_all_after(0.3)
    time.sleep(0.4)  # the bench stays away longer than the window: the next request finds the orders cancelled
    assert venue.fetch_open_orders(SYM) == [] and fk.countdown_fired == 1
    assert venue.fetch_order(SYM, "bn-d1").status == "canceled"
    venue.create_limit_order(SYM, 0.2, 1000.0, "bn-d2")
    venue.cancel_all_after(60)
    assert fk.fire_countdown() == 1 and venue.fetch_open_orders(SYM) == []


def test_binance_balance_is_the_wallet_and_positions_follow_the_fills(venue, fake_binance):
    """fetch_balance is the wallet (starting balance + realised P&L - fees; the Venue contract, as Bybit's
    ``walletBalance``), not ccxt's ``total`` on Binance (``marginBalance``, which adds the open position's unrealised
    P&L); positions are positionRisk's signed ``positionAmt``."""
    fk = fake_binance
    assert venue.fetch_balance() == pytest.approx(10_000.0) and venue.fetch_positions() == {}
    venue.create_market_order(SYM, 0.02, "bn-p1")
    venue.create_market_order(SYM, -0.03, "bn-p2")
    assert venue.fetch_positions() == {SYM: pytest.approx(-0.01)}
    t = fk.bars[fk.n_closed][0]
    fk.bars[fk.n_closed] = (t, 61_000.0, 61_000.0, 61_000.0, 61_000.0, 1.0)  # the mark moves: uPnL of the short
    fk.step()
    st = fk.state()
    upl = st["position"] * (61_000.0 - fk.avg_price)
    assert abs(upl) > 10.0
    assert venue.fetch_balance() == pytest.approx(st["wallet"], abs=1e-6)
    assert float(venue.ex.fetch_balance()["USDT"]["total"]) == pytest.approx(st["wallet"] + upl, abs=1e-6)
    fees = sum(f.fee for f in venue.fetch_fills(SYM, venue.now_ms() - 60_000))
    assert fees == pytest.approx(st["fees"], rel=1e-9)


@pytest.mark.parametrize("key,secret,code", [("test-key", "wrong-secret", "-1022"), ("other-key", "test-secret", "-2015")])
def test_binance_wrong_key_or_secret_is_a_clear_one_line_error(fake_binance, monkeypatch, key, secret, code):
    import typer

    from commands.edge import edge

    monkeypatch.setenv("CRUCIBLE_API_KEY", key)
    monkeypatch.setenv("CRUCIBLE_API_SECRET", secret)
    v = _venue(fake_binance)
    try:
        with pytest.raises(VenueAuthError, match=code) as exc:
            v.fetch_balance()
        assert "\n" not in str(exc.value) and fake_binance.auth_failures == [int(code)]
        seen = []
        monkeypatch.setattr("commands.edge.err_console.print", lambda msg, **kw: seen.append(msg))
        with pytest.raises(typer.Exit) as ex:
            edge(v.fetch_positions)()
        assert ex.value.exit_code == VenueAuthError.exit_code and len(seen) == 1 and code in seen[0] and "\n" not in seen[0]
    finally:
        v.close()


def test_binance_clock_off_the_exchange_is_resynchronised_once(venue, fake_binance):
    fake_binance.time_offset_ms = -8_000  # the server clock is 8 s behind ours: our timestamps look ahead (-1021)
    assert venue.fetch_balance() == pytest.approx(10_000.0)
    assert venue.clock_resyncs == 1 and ("GET", "/fapi/v1/time") in fake_binance.paths


# ----------------------------------------------------------------------------- fill paging (GET /fapi/v1/userTrades)

DAY = 86_400_000


def _trade_calls(fk: FakeBinance, n0: int) -> int:
    return sum(1 for _m, p in fk.paths[n0:] if p == "/fapi/v1/userTrades")


def _want(fk: FakeBinance, since: int) -> list[str]:
    """The fake's trade ids at or after ``since``, in fetch_fills' order (time, trade id)."""
    rows = sorted((t for t in fk.state()["trades"].values() if t["time"] >= since), key=lambda t: (t["time"], str(t["id"])))
    return [str(t["id"]) for t in rows]


def test_fake_binance_user_trades_follow_the_documented_rules(venue, fake_binance):
    """The fake's ``userTrades`` (what the paging relies on): limit default 500, at most 1000; neither time -> the
    most recent rows of the last 7 days; startTime -> the earliest rows from it; over 7 days -> -4166; fromId with
    a time -> -4133."""
    fk = fake_binance
    now = fk.now_ms()
    fk.add_trades([now - 2 * DAY + i for i in range(1_200)])
    ids = sorted(int(t) for t in fk.state()["trades"])
    raw = venue.ex.fapiPrivateGetUserTrades
    assert [int(r["id"]) for r in raw({"symbol": SYM})] == ids[-500:]
    assert [int(r["id"]) for r in raw({"symbol": SYM, "startTime": now - 3 * DAY})] == ids[:500]
    assert len(raw({"symbol": SYM, "startTime": now - 3 * DAY, "limit": 5_000})) == 1_000
    assert [int(r["id"]) for r in raw({"symbol": SYM, "fromId": ids[1_000], "limit": 1_000})] == ids[1_000:]
    with pytest.raises(VenueRejected, match="-4166"):
        venue._call(raw, {"symbol": SYM, "startTime": now - 8 * DAY, "endTime": now})
    with pytest.raises(VenueRejected, match="-4133"):
        venue._call(raw, {"symbol": SYM, "startTime": now - DAY, "fromId": ids[0]})


def test_binance_fetch_fills_pages_past_1000_rows_without_duplicates(venue, fake_binance):
    """2,600 fills in the hour since ``since_ms``, three per millisecond (page boundaries fall inside a millisecond):
    all returned once, in (time, trade id) order; fills before ``since_ms`` are not; ceil(n / 1000) requests (the
    next page starts at the last page's newest millisecond, inclusive); one order lookup resolves the client id.
    One request (Binance's default limit 500) missed 2,100 of them."""
    fk = fake_binance
    now = fk.now_ms()
    since = now - 3_600_000
    fk.add_trades([since - 5_000] * 3, cid="bn-before")
    n = 2_600
    fk.add_trades([since + i // 3 for i in range(n)], cid="bn-many")
    n0 = len(fk.paths)
    fills = venue.fetch_fills(SYM, since)
    assert len(fills) == n and [f.trade_id for f in fills] == _want(fk, since)
    assert len({f.trade_id for f in fills}) == n and {f.client_order_id for f in fills} == {"bn-many"}
    assert sum(f.qty for f in fills) == pytest.approx(n * 0.001)
    calls = _trade_calls(fk, n0)
    assert calls <= math.ceil(n / 1000) + 1 and calls == 3, calls
    assert fk.paths[n0:].count(("GET", "/fapi/v1/order")) == 1


def test_binance_fetch_fills_spans_more_than_7_days_and_quiet_weeks(venue, fake_binance):
    """Fills over the 20 days since ``since_ms``, with 12 days without any (an empty 7-day window must not end the
    paging) and fills on both sides of each window's edge: all returned, in 3 requests (two 7-day windows with
    startTime and endTime, then startTime only up to the exchange's now).  One request (ccxt's startTime with
    endTime = startTime + 7 days) returned only the first two days'."""
    fk = fake_binance
    now = fk.now_ms()
    since = now - 20 * DAY
    old = [since + i * 3_600_000 for i in range(48)]  # days -20 .. -18
    edge = [since + 7 * DAY + d for d in (-2, -1, 0, 1)]  # the first window's last and the second's first ms
    tail_start = now - 7 * DAY + 3_600_000  # the last window (startTime only) begins about here
    around = [tail_start + d * 10_000 for d in range(-12, 13)]  # every 10 s for 4 min across it
    recent = [now - 5 * DAY + i * 3_600_000 for i in range(5 * 24 - 1)]  # hourly over the last 5 days
    fk.add_trades(old, cid="bn-old")
    fk.add_trades(edge, side="SELL", cid="bn-edge")
    fk.add_trades(around, cid="bn-around")
    fk.add_trades(recent, side="SELL", cid="bn-recent")
    n0 = len(fk.paths)
    fills = venue.fetch_fills(SYM, since)
    want = _want(fk, since)
    assert len(want) == len(old) + len(edge) + len(around) + len(recent)
    assert [f.trade_id for f in fills] == want
    calls = _trade_calls(fk, n0)
    assert calls <= math.ceil(20 / 7) + 1 and calls == 3, calls
    assert venue.fetch_positions() == {SYM: pytest.approx(fk.state()["position"])}
    # since_ms None: the last 7 days (Binance's own default span), complete
    assert [f.trade_id for f in venue.fetch_fills(SYM)] == _want(fk, now - 7 * DAY) == _want(fk, around[0])


def test_binance_fetch_fills_over_1000_fills_in_one_millisecond(venue, fake_binance):
    """1,500 fills sharing one millisecond (one order sweeping the book) two days ago: a full page all in it goes
    on by fromId, then by time from the next millisecond -- all returned once.  The same a week and more ago (fromId
    reaches back only 7 days) is an error, not a short list."""
    fk = fake_binance
    now = fk.now_ms()
    ms = now - 9 * DAY
    fk.add_trades([ms] * 1_100, cid="bn-old-sweep")
    with pytest.raises(VenueRejected, match="cannot be fetched completely"):
        venue.fetch_fills(SYM, ms - DAY)
    ms = now - 2 * DAY
    fk.add_trades([ms - 1] + [ms] * 1_500 + [ms + 1] * 2, cid="bn-sweep")
    n0 = len(fk.paths)
    fills = venue.fetch_fills(SYM, ms - DAY)
    assert [f.trade_id for f in fills] == _want(fk, ms - DAY) and len(fills) == 1_503
    assert len({f.trade_id for f in fills}) == 1_503 and {f.client_order_id for f in fills} == {"bn-sweep"}
    assert _trade_calls(fk, n0) == 4  # from ms - 1 day (full), from ms (full, one ms), fromId, from ms + 1


# ----------------------------------------------------------------------------- the runtime on the fake


def _cfg(tmp: Path, *, deadline: int = 3, on_mismatch: str = "halt"):
    return config_from_dict({
        "crucible": {"journal": str(tmp / "journal.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "requests"), "kill_file": str(tmp / "KILL"), "history_bars": 400,
                     "snapshot_every": 1, "bench_id": "bnc1", "on_mismatch": on_mismatch},
        "hotswap": {"enabled": False},
        "cwo": {"move_capital": False},
        "execution": {"policy": "maker-then-cross", "deadline_bars": deadline, "cancel_all_after_seconds": 60.0},
        "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:momentum", "capital": 1000.0}],
    }, "test")


class _Bench:
    """The runtime on the fake Binance, bar by bar, with scripted targets for slot "a"."""

    def __init__(self, fk: FakeBinance, tmp: Path, **cfg_kw) -> None:
        self.fk = fk
        self.v = _venue(fk)
        self.cfg = _cfg(tmp, **cfg_kw)
        self.j = Journal(self.cfg.general.journal)
        self.rt = Runtime(self.cfg, self.v, self.j, sleep=lambda d: False)
        self.target = 0.0
        self.rt.engine.latest = lambda genomes, hist: {k: self.target for k in genomes}
        self.rt.restore()
        self.rt.reconcile()
        self.v.history(SYM, 1)

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
def bench(tmp_path, fake_binance, bybit_keys):
    benches = []

    def make(min_notional: float = 100.0, **kw):
        fake_binance.min_notional = min_notional  # read by the venue from exchangeInfo when the bench starts
        b = _Bench(fake_binance, tmp_path, **kw)
        benches.append(b)
        return b

    yield make
    for b in benches:
        b.close()


def _ledger_equals_exchange(b: _Bench) -> None:
    st = b.fk.state()
    fills = b.j.fills()
    assert sorted(f["trade_id"] for f in fills) == sorted(st["trades"])  # none lost, none twice
    cid_of = {o["orderId"]: cid for cid, o in st["orders"].items()}
    for f in fills:
        t = st["trades"][f["trade_id"]]
        assert f["client_order_id"] == cid_of[t["orderId"]] and f["price"] == pytest.approx(float(t["price"]))
        assert f["fee"] == pytest.approx(float(t["commission"]))
    assert b.rt.slots["a"].ledger.units == pytest.approx(st["position"], abs=1e-9)
    assert set(st["orders"]) <= {o["client_order_id"] for o in b.j.orders()}


def test_runtime_gtx_rests_then_fills_at_its_limit_with_the_maker_fee(bench):
    b = bench(deadline=5)
    fk = b.fk
    b.bar(1.0)  # the decision: an intent, a GTX limit at the bid
    lim = [o for o in fk.state()["orders"].values() if o["type"] == "LIMIT"]
    assert len(lim) == 1 and lim[0]["tif"] == "GTX" and lim[0]["side"] == "BUY"
    assert lim[0]["price"] == pytest.approx(fk.book()[0])
    for _ in range(6):
        b.bar()
        if fk.state()["position"] > 0:
            break
    trades = list(fk.state()["trades"].values())
    assert trades and all(t["maker"] for t in trades)
    b.bar()
    _ledger_equals_exchange(b)
    m = slot_exec_metrics(b.j.db)["a"]
    assert m["fee_bps"] == pytest.approx(2.0, rel=1e-3) and m["fill_rate"] > 0
    assert fk.countdown_calls and fk.countdown_calls[-1] == (SYM, 60_000)
    assert any(e["kind"] == "dcp_armed" for e in b.j.events())


def test_runtime_post_only_rejects_are_journaled_then_the_deadline_crosses(bench):
    b = bench(deadline=2)
    fk = b.fk
    fk.cross_next_post_only = 50  # every GTX order finds the book moved through it: -5022
    b.bar(1.0)
    for _ in range(4):
        b.bar()
    rej = [o for o in b.j.orders() if o["status"] == "rejected"]
    assert len(rej) >= 1 and all(o["error"].startswith("post-only") for o in rej)
    assert b.rt.counters["post_only_rejects"] == len(rej) == fk.post_only_rejects
    st = fk.state()
    assert st["position"] > 0  # the deadline crossed the rest with a market order
    mk = [o for o in st["orders"].values() if o["type"] == "MARKET"]
    assert len(mk) == 1 and not mk[0]["reduceOnly"]
    m = slot_exec_metrics(b.j.db)["a"]
    assert m["reject_rate"] == 1.0 and m["post_only_rejects"] == len(rej)
    _ledger_equals_exchange(b)


def test_runtime_kill_rule_cancels_resting_then_reduce_only_market(bench):
    b = bench(deadline=8)
    fk = b.fk
    b.bar(1.0)
    for _ in range(6):
        b.bar()
        if fk.state()["position"] > 0:
            break
    assert fk.state()["position"] > 0
    fk.set_book(1000.0, 200_000.0)  # a far-away book: the sell intent's GTX at the ask never fills
    b.bar(-1.0)
    assert [o["side"] for o in fk.open_orders()] == ["SELL"]
    resting = fk.open_orders()[0]["clientOrderId"]
    fk.set_book(None)
    n0 = len(fk.paths)
    with b.j:
        s = b.rt.slots["a"]
        s.status = "killed"
        b.rt.flatten(s, "kill", fk.bars[fk.n_closed - 1][0])
    after = [(m, p) for m, p in fk.paths[n0:] if p == "/fapi/v1/order" and m in ("DELETE", "POST")]
    assert after[0] == ("DELETE", "/fapi/v1/order") and after[-1] == ("POST", "/fapi/v1/order")
    st = fk.state()
    assert st["orders"][resting]["status"] == "CANCELED"
    mk = [o for o in st["orders"].values() if o["type"] == "MARKET"]
    assert len(mk) == 1 and mk[0]["reduceOnly"] and mk[0]["side"] == "SELL"
    assert st["position"] == pytest.approx(0.0, abs=1e-12)
    b.bar()
    _ledger_equals_exchange(b)


def test_runtime_dead_mans_switch_fires_and_the_intent_re_rests(bench):
    b = bench(deadline=8, min_notional=5.0)  # 5 USDT (many USDⓈ-M symbols): the far-away bid below keeps the order
    fk = b.fk
    fk.set_book(1000.0, 1000.2)
    b.bar(1.0)
    assert fk.countdowns[SYM][0] == 60_000 and len(fk.open_orders()) == 1
    assert fk.fire_countdown() == 1 and fk.open_orders() == []
    b.bar()  # the runtime sees its order cancelled, the intent rests a new one and re-arms the countdown
    assert len(fk.open_orders()) == 1 and SYM in fk.countdowns
    assert [o["status"] for o in b.j.orders()] == ["canceled", "acked"]


class _Crash(Exception):
    pass


def test_runtime_crash_after_a_gtx_send_recovers_exactly(tmp_path, bybit_keys):
    """kill -9 after the venue accepted a GTX order but before the ack was journaled: the restart finds it by its
    client id (origClientOrderId), the intent goes on working, a flatten cancels exactly that order."""
    from crucible.venues.base import Bar

    end = (int(time.time() * 1000) // 60_000 - 1) * 60_000  # latest closed minute, like a real exchange
    with FakeBinance(sample_bars(450, end_ms=end), history=450) as fk:
        v = _venue(fk)
        cfg = _cfg(tmp_path, deadline=6)

        def crash(p, ctx):
            if p == "sent_not_acked":
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
            assert at_venue == cids and sorted(fk.state()["orders"]) == cids  # sent once, under the journaled id
            assert j.order(cids[0])["status"] == "acked" and fk.state()["orders"][cids[0]]["status"] == "NEW"
            assert "a" in rt2.exec_book.working and rt2.slots["a"].target == 1.0
            with j:
                assert rt2._clear_resting(rt2.slots["a"])
            assert fk.state()["orders"][cids[0]]["status"] == "CANCELED" and j.order(cids[0])["status"] == "canceled"
            assert fk.open_orders() == [] and "a" not in rt2.exec_book.working
            j.close()
        finally:
            v.close()


def test_restart_of_a_bench_started_over_7_days_ago_books_the_fill_of_the_order_in_flight(tmp_path, fake_binance,
                                                                                          bybit_keys):
    """A bench trading for 10 days is killed after a market order filled but before its ack was journaled: the
    restart's reconcile fetches the fills since the bench started (10 days ago, so over several 7-day windows of
    userTrades) and books this one; the journal's position is the exchange's.  With one request (ccxt's window of
    the 7 days after startTime) the fill was missed: a position difference at restart."""
    fk = fake_binance
    v = _venue(fk)
    try:
        r = crash_after_send_then_restart(_cfg(tmp_path), v, started_days_ago=10,
                                          venue_trades=lambda: fk.state()["trades"],
                                          requests=lambda: _trade_calls(fk, 0))
    finally:
        v.close()
    assert r["report"]["new_fills"] == 1 and r["journal_fills"] == r["venue_trades"]
    assert r["report"]["position_diff"] == {} and r["halted"] is None, r
    assert r["units"] == pytest.approx(fk.state()["position"])
    assert r["requests"] <= 3  # 10 days: one 7-day window, then the last (startTime only)


@pytest.mark.parametrize("fault", ["drop", "5xx", "429"])
def test_runtime_send_never_duplicates_when_the_order_response_is_lost(tmp_path, fake_binance, bybit_keys, fault):
    """The create's response is lost (processed, connection dropped), or the exchange answers 503 / 429 (nothing
    done): the runtime looks the order up by its client id (origClientOrderId) and sends it at most once more under
    the same id; fills fetched twice are booked once."""
    fk = fake_binance
    v = _venue(fk)
    cfg = _cfg(tmp_path)
    j = Journal(cfg.general.journal)
    try:
        rt = Runtime(cfg, v, j)
        rt.restore()
        fk.inject_rest(fault)
        cid = rt.place(rt.slots["a"], 0.01, 1.0, "test", 1_718_000_000_000)
        assert list(fk.state()["orders"]) == [cid] and ("/fapi/v1/order", fault) in fk.faults_hit
        assert j.order(cid)["status"] == "acked"
        since = v.now_ms() - 60_000
        rt._sync_fills([SYM], since)
        rt._sync_fills([SYM], since)
        assert [f["trade_id"] for f in j.fills()] == list(fk.state()["trades"])
        assert rt.slots["a"].ledger.units == pytest.approx(fk.state()["position"])
    finally:
        j.close()
        v.close()


def test_runtime_reconcile_with_an_open_position_and_a_moved_mark_does_not_halt(bench):
    """A restart's reconcile compares the venue's wallet with the journal's realised P&L - fees: an open position's
    unrealised P&L (the mark 1 % away) is not a balance difference."""
    b = bench(deadline=2)
    fk = b.fk
    b.bar(1.0)
    for _ in range(6):
        b.bar()
        if fk.state()["position"] > 0 and not fk.open_orders():
            break
    assert fk.state()["position"] > 0
    c = fk.bars[fk.n_closed - 1][4] * 1.01
    for i in range(fk.n_closed, fk.n_closed + 2):
        fk.bars[i] = (fk.bars[i][0], c, c, c, c, 1.0)
    b.bar()
    rep = b.rt.reconcile()
    assert rep["position_diff"] == {} and b.rt.halted is None, b.rt.halted
    bc = rep["balance_check"]
    assert abs(rep["balance_diff"]) <= bc["tolerance"], rep
    assert bc["venue"] == pytest.approx(fk.state()["wallet"], abs=1e-6)
    _ledger_equals_exchange(b)


def _assert_journal_equals_exchange(journal_path: Path, fk: FakeBinance) -> dict:
    """The journal equals the fake exchange: fills by trade id (client ids through the trades' order ids), orders
    by client order id, the net position."""
    st = fk.state()
    j = Journal(journal_path, readonly=True)
    try:
        fills, orders = j.fills(), j.orders()
    finally:
        j.close()
    booked = [f["trade_id"] for f in fills]
    assert len(booked) == len(set(booked)) and sorted(booked) == sorted(st["trades"])  # none twice, lost or foreign
    cid_of = {o["orderId"]: cid for cid, o in st["orders"].items()}
    for f in fills:
        t = st["trades"][f["trade_id"]]
        sign = 1.0 if t["side"] == "BUY" else -1.0
        assert f["client_order_id"] == cid_of[t["orderId"]]
        assert f["qty"] == pytest.approx(sign * float(t["qty"]), abs=1e-12)
        assert f["price"] == pytest.approx(float(t["price"]), rel=1e-12)
        assert f["fee"] == pytest.approx(float(t["commission"]), rel=1e-9)
    by_cid = {o["client_order_id"]: o for o in orders}
    assert set(st["orders"]) <= set(by_cid)  # every exchange order is journaled
    assert all(o["status"] not in ("intent", "unknown") for o in orders), orders
    assert sum(f["qty"] for f in fills) == pytest.approx(st["position"], abs=1e-9)
    return {"fills": len(fills), "orders": len(orders)}


def test_run_live_passive_on_fake_binance_with_faults_never_duplicates_or_loses(tmp_path, fake_binance, bybit_keys):
    """``crucible live``'s loop (run_live) on the fake Binance with three builtin slots under the passive policy
    (GTX limits, crossing at the deadline), bars on the fake's own timer, and two rounds of faults: the next three
    order creates (whenever they come) have their response dropped (processed), answered 503 and answered 429
    (nothing done), and the next fill query is answered 503; the second round is armed once the first was served,
    and the run ends a few bars after the second was.  Every fill booked once, every exchange order journaled, the
    positions equal.

    Load-independent by construction: the faults fire on the next requests that arrive rather than at a bar number,
    and the clock is paced by the loop (each bar closes 0.3 s after the runtime finished the previous one), so a
    loaded machine slows the run down instead of making it skip bars (a bar whose successor already closed is not
    traded) and leave the faults unserved."""
    import threading

    from crucible_driver import make_cfg

    from crucible.runtime import run_live

    fk = fake_binance
    cfg = make_cfg(tmp_path, policy="maker-then-cross")
    v = _venue(fk)
    pace, stop = threading.Event(), threading.Event()
    armed: list[int] = []  # the bar after which each round of faults was armed
    served: list[int] = []  # the bar by whose end each round had been served
    settle = 6  # bars after the last round (> deadline_bars 4): its intents cross, fill and are synced

    def arm(bar: int) -> None:
        for kind in ("drop", "5xx", "429"):
            fk.inject_rest(kind, method="POST")  # the next creates on /fapi/v1/order
        fk.inject_rest("5xx", "/fapi/v1/userTrades")
        armed.append(bar)

    def progress(e):
        if e["event"] == "bar":
            n = e["bars"]
            if len(served) < len(armed) and fk.faults_pending() == 0:
                served.append(n)
            if not armed and n >= 2:
                arm(n)
            elif len(armed) == 1 and len(served) == 1:
                arm(n)
            elif len(served) == 2 and n >= served[-1] + settle:
                stop.set()  # before the pace: the loop ends after this bar
        if e["event"] in ("start", "bar", "stale"):
            pace.set()  # the next bar closes 0.3 s from now

    try:
        fk.run_clock(0.3, paced_by=pace)
        s = run_live(cfg, venue=v, max_bars=120, progress=progress, stop_event=stop)
        fk.stop_clock()
        j = Journal(cfg.general.journal)
        try:
            rt = Runtime(cfg, v, j)
            rt.restore()
            rep = rt.reconcile()
        finally:
            j.close()
    finally:
        fk.stop_clock()
        v.close()
    assert s["stopped_by"] == "stop_event" and len(armed) == len(served) == 2, (s["stopped_by"], armed, served,
                                                                                 fk.faults_pending())
    assert s["stale_bars"] == 0  # the paced clock: every bar was traded
    hits = [(m, k) for m, p, k in fk.fault_log if p == "/fapi/v1/order"]
    assert hits == [("POST", k) for k in ("drop", "5xx", "429")] * 2, fk.fault_log
    assert fk.faults_hit.count(("/fapi/v1/userTrades", "5xx")) == 2
    assert rep["position_diff"] == {} and rt.halted is None, rt.halted
    limits = [o for o in fk.state()["orders"].values() if o["type"] == "LIMIT"]
    assert limits and all(o["tif"] == "GTX" for o in limits)
    out = _assert_journal_equals_exchange(Path(cfg.general.journal), fk)
    assert out["fills"] >= 2 and s["limit_orders"] >= 2, (out, s)


def test_run_live_with_a_wrong_secret_ends_with_a_one_line_auth_error(tmp_path, fake_binance, monkeypatch):
    """``crucible live`` started with a wrong API secret: the start-up reconcile is refused (-1022) and the run ends
    with VenueAuthError (a one-line error at the CLI, exit code 6), not a traceback; no order is ever sent."""
    import threading

    from crucible.runtime import run_live

    monkeypatch.setenv("CRUCIBLE_BENCH_KEY", "test-bench-key-0123456789")
    monkeypatch.setenv("CRUCIBLE_API_KEY", "test-key")
    monkeypatch.setenv("CRUCIBLE_API_SECRET", "not-the-secret")
    fk = fake_binance
    stop = threading.Event()
    v = _venue(fk)
    cfg = _cfg(tmp_path)
    timer = threading.Timer(20.0, stop.set)  # a safety net only: the run must not wait for it
    timer.start()
    try:
        with pytest.raises(VenueAuthError, match="-1022") as exc:
            run_live(cfg, venue=v, stop_event=stop)
    finally:
        timer.cancel()
        v.close()
    assert not stop.is_set() and "\n" not in str(exc.value) and exc.value.exit_code == 6
    assert -1022 in fk.auth_failures and not any(m == "POST" for m, _p in fk.paths)


# ----------------------------------------------------------------------------- kill -9 of a bench in its own process

DRIVER = Path(__file__).with_name("crucible_driver.py")


def _driver(fk: FakeBinance, d: Path, until_ms: int, *extra: str) -> subprocess.CompletedProcess:
    """tests/crucible_driver.py on ``CcxtVenue("binanceusdm")`` against ``fk``, until the bar closing at ``until_ms``
    (the fake's last one) has been processed; this checkout's packages first on the path."""
    root = DRIVER.parents[1]
    env = {**os.environ, "CRUCIBLE_API_KEY": "test-key", "CRUCIBLE_API_SECRET": "test-secret",
           "CRUCIBLE_BENCH_KEY": "test-bench-key-0123456789",
           "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(DRIVER), "--dir", str(d), "--exchange", "binanceusdm", "--rest", fk.rest_url,
           "--until-ms", str(until_ms), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=root)


@pytest.mark.parametrize("policy,point,nth", [
    ("maker-then-cross", "sent_not_acked", 3),
    ("maker-then-cross", "fills_fetched", 2),
    pytest.param("maker-then-cross", "intent_saved", 3, marks=pytest.mark.slow),  # the default run keeps the
    pytest.param("maker-then-cross", "bar_done", 8, marks=pytest.mark.slow),  # money-critical points (~10 s each)
    ("", "sent_not_acked", 2),  # the market policy
])
def test_kill9_on_fake_binance_then_restart_ledger_equals_exchange(tmp_path, policy, point, nth):
    """The Crucible in its own process on the fake Binance (three builtin slots, passive GTX limits or market
    orders) is SIGKILLed at the nth ``point``, restarted on the same journal and run to the fake's last bar, then
    settled (restore + reconcile): no client order id created twice (no -4116: nothing resent that the exchange
    had), every userTrades fill booked exactly once as executed, the journal's position is the exchange's, and
    every order still resting at the exchange is one the journal holds open.

    Load-independent: the fake's clock is paced by the bench's klines polls (a bar closes 50 ms after the bench
    has seen the previous one; it waits while no bench runs: start-up, the kill, the restart), and the bars are
    finite, so the exchange stands still once the restarted bench has processed the last one -- the settle compares
    a frozen exchange, whatever the machine's load did to the timing."""
    from crucible_driver import make_cfg

    bars = sample_bars(460)
    until = bars[-1][0] + 60_000
    extra = ("--policy", policy) if policy else ()
    with FakeBinance(bars, history=400) as fk:
        fk.run_clock(0.05, paced_by_klines=True)
        try:
            p1 = _driver(fk, tmp_path, until, "--kill-at", point, "--kill-nth", str(nth), *extra)
            assert p1.returncode == -9, (p1.returncode, p1.stdout[-500:], p1.stderr[-3000:])
            before = fk.state()
            p2 = _driver(fk, tmp_path, until, "--settle", *extra)
            assert p2.returncode == 0, p2.stderr[-3000:]
            assert fk.remaining == 0  # the exchange stands still from here on
        finally:
            fk.stop_clock()
        out = json.loads(p2.stdout.strip().splitlines()[-1])
        s, rep = out["summary"], out["reconcile"]
        assert s["stopped_by"] == "until", s["stopped_by"]
        assert rep["position_diff"] == {} and rep["doubts"] == [], rep
        ok = [cid for cid, res in fk.creates if res == "ok"]
        assert len(ok) == len(set(ok)) == len(fk.state()["orders"])  # each client order id created once
        assert not [c for c in fk.creates if c[1] == "-4116"], fk.creates  # and never sent again
        journal = make_cfg(tmp_path).general.journal
        j = Journal(journal, readonly=True)
        try:
            restart = j.events("reconcile")[1]["data"]  # [0]: first start, [1]: the restart, [2]: the settle
            orders = {o["client_order_id"]: o for o in j.orders()}
        finally:
            j.close()
        if point == "intent_saved":  # committed, never sent: resent under its id, or abandoned (its bar had passed)
            assert len(restart["resent"]) + len(restart["abandoned"]) >= 1, restart
            assert not set(restart["resent"] + restart["abandoned"]) & set(before["orders"])
        elif point == "sent_not_acked":  # at the exchange, never acknowledged in the journal: found by its id
            assert restart["resolved"] and set(restart["resolved"]) <= set(before["orders"]), restart
        elif point == "fills_fetched":  # filled, not booked: booked by the restart
            assert restart["new_fills"] >= 1, restart
        got = _assert_journal_equals_exchange(Path(journal), fk)
        assert got["fills"] >= 2, got
        for o in fk.open_orders():  # still resting: the journal holds it open
            assert orders[o["clientOrderId"]]["status"] == "acked", (o, orders.get(o["clientOrderId"]))


def test_runtime_binance_liquidation_order_halts_without_flattening(bench):
    """Binance's own liquidation order (clientOrderId "autoclose-..."; USDⓈ-M user data stream docs) closes the
    bench's position: the bench halts at once and never flattens units the exchange already closed."""
    b = bench(on_mismatch="flatten")
    for _ in range(3):
        b.bar(1.0)
    held = b.fk.state()["position"]
    assert held > 0
    b.fk.add_trades([b.fk.now_ms()], side="SELL", qty=held, cid="autoclose-1596107620040000020")
    assert b.fk.state()["position"] == pytest.approx(0.0, abs=1e-12)
    n_orders = len(b.j.orders())
    for _ in range(3):
        b.bar(1.0)
    assert b.rt.halted is not None and "liquidation" in b.rt.halted and "not flattened" in b.rt.halted
    assert len(b.j.orders()) == n_orders and b.fk.state()["position"] == pytest.approx(0.0, abs=1e-12)
    assert len(b.j.events("venue_action_fill")) == 1 and not b.j.events("foreign_fill")
