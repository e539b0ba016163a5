"""Each fault of the fake Bybit (tests/fake_bybit.py) against the real ``CcxtVenue`` adapter, at the venue
level: what the runtime is told.  The runtime's handling of the same faults (backoff, retargeting, attribution,
outage policy, stale feed) is tested in tests/test_crucible_runtime_safety.py and tests/test_crucible_live.py."""

from __future__ import annotations

import pytest

from crucible.venues.base import RetryPolicy, VenueAuthError, VenueNetworkError, VenueRejected
from crucible.venues.ccxt_venue import CcxtVenue

SYM = "BTCUSDT"


class FakeClock:
    """Monotonic clock advanced only by sleep (minutes of outage in no wall time)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> bool:
        self.slept.append(s)
        self.t += s
        return False


@pytest.fixture()
def venue(fake_exchange, bybit_keys):
    v = CcxtVenue("bybit", [SYM], api_url=fake_exchange.rest_url, ws_url=fake_exchange.ws_url, feed="poll",
                  poll_seconds=0.02, timeout_ms=3000)
    yield v
    v.close()


def _creates(fk) -> int:
    return sum(1 for _m, p in fk.paths if p == "/v5/order/create")


def test_partial_fill_then_cancel_is_reported_as_such(fake_exchange, venue):
    fk = fake_exchange
    fk.inject_rest("partial")
    st = venue.create_market_order(SYM, 0.011, "cid-partial")  # Bybit's create answer is an ack (ids only)
    assert st.client_order_id == "cid-partial" and st.qty == pytest.approx(0.011) and st.order_id
    again = venue.fetch_order(SYM, "cid-partial")
    assert again is not None and again.status == "canceled"  # PartiallyFilledCanceled: not "filled"
    assert again.qty == pytest.approx(0.011) and again.filled == pytest.approx(0.005)  # half the lots
    fills = venue.fetch_fills(SYM)
    assert [(f.client_order_id, f.qty) for f in fills] == [("cid-partial", pytest.approx(0.005))]
    assert venue.fetch_positions() == {SYM: pytest.approx(0.005)}
    venue.create_market_order(SYM, -0.003, "cid-partial-sell")  # the fault was one-shot
    st = venue.fetch_order(SYM, "cid-partial-sell")
    assert st.status == "filled" and st.filled == pytest.approx(-0.003)


@pytest.mark.parametrize("fault,code", [("margin", "110007"), ("min_notional", "110094")])
def test_margin_and_min_notional_rejections_are_final(fake_exchange, venue, fault, code):
    """A rejection is VenueRejected (never retried: one request), nothing happens at the exchange."""
    fk = fake_exchange
    fk.inject_rest(fault)
    with pytest.raises(VenueRejected) as exc:
        venue.create_market_order(SYM, 0.002, f"cid-{fault}")
    assert code in str(exc.value) or fault.split("_")[0] in str(exc.value).lower()
    assert _creates(fk) == 1 and fk.state()["orders"] == {} and fk.state()["position"] == 0.0
    assert venue.fetch_order(SYM, f"cid-{fault}") is None


def test_auth_error_is_not_retried_and_books_nothing(fake_exchange, venue):
    fk = fake_exchange
    fk.inject_rest("auth")
    with pytest.raises(VenueAuthError, match="AuthenticationError"):
        venue.create_market_order(SYM, 0.002, "cid-auth")
    assert _creates(fk) == 1 and fk.state()["orders"] == {}
    fk.inject_rest("auth", "/v5/position/list")
    with pytest.raises(VenueAuthError):
        venue.fetch_positions()  # a read is not retried on bad keys either (retrying cannot fix them)
    assert venue.retries == 0


def test_timestamp_error_on_create_resyncs_and_sends_once(fake_exchange, venue):
    """retCode 10002 (our clock is off, nothing done): the clock is re-synced and the order sent again under the
    same client order id -- it exists exactly once."""
    fk = fake_exchange
    fk.inject_rest("timestamp")
    venue.create_market_order(SYM, 0.002, "cid-ts")
    assert venue.fetch_order(SYM, "cid-ts").status == "filled" and venue.clock_resyncs == 1
    assert _creates(fk) == 2 and list(fk.state()["orders"]) == ["cid-ts"]
    assert len(fk.state()["executions"]) == 1


def test_unknown_order_ids(fake_exchange, venue):
    """A client order id the exchange never saw, and one it acknowledged then lost ("ghost"): lookups say None
    (the runtime resolves acked-but-unknown orders by this); a cancel is refused, never a network error."""
    fk = fake_exchange
    assert venue.fetch_order(SYM, "never-sent") is None
    fk.inject_rest("ghost")
    st = venue.create_market_order(SYM, 0.002, "cid-ghost")
    assert st.order_id and st.client_order_id == "cid-ghost"
    assert venue.fetch_order(SYM, "cid-ghost") is None
    assert venue.fetch_fills(SYM) == [] and venue.fetch_positions() == {}
    with pytest.raises(VenueRejected, match="(?i)not exists|OrderNotFound"):
        venue.cancel_order(SYM, "never-sent")


def test_order_placed_outside_the_bench_is_visible_with_its_own_id(fake_exchange, venue):
    """The venue reports every execution of the account with its client order id (look-alikes included) and the
    net position; attribution of only this journal's intents is the runtime's job
    (test_hand_placed_lookalike_orders_are_reported_never_booked)."""
    fk = fake_exchange
    oid = fk.place_external(0.05, "cr-a-1-0")
    fk.place_external(-0.01, "")
    fills = venue.fetch_fills(SYM)
    assert [(f.client_order_id, f.qty) for f in fills] == [("cr-a-1-0", pytest.approx(0.05)),
                                                            ("", pytest.approx(-0.01))]
    assert fills[0].order_id == oid
    assert venue.fetch_positions() == {SYM: pytest.approx(0.04)}
    got = venue.fetch_order(SYM, "cr-a-1-0")
    assert got is not None and got.status == "filled"


def test_outage_of_minutes_on_reads_and_on_create(fake_exchange, bybit_keys):
    """Reads ride out an outage of minutes (fake clock) under the retry budget; a create during an outage is
    not retried by the venue (it is not idempotent): VenueNetworkError, and nothing reached the exchange."""
    fk = fake_exchange
    fc = FakeClock()
    v = CcxtVenue("bybit", [SYM], api_url=fk.rest_url, ws_url=fk.ws_url, feed="poll", timeout_ms=3000,
                  retry=RetryPolicy(budget_s=300.0, base_s=1.0, max_s=30.0, sleep=fc.sleep, clock=fc.clock))
    try:
        fk.inject_rest("5xx", "*", 10)
        assert v.fetch_balance() == pytest.approx(10_000.0)
        assert v.retries == 10 and sum(fc.slept) >= 60.0  # > 1 minute of (fake) outage
        fk.inject_rest("5xx", "*", 1)
        with pytest.raises(VenueNetworkError):
            v.create_market_order(SYM, 0.002, "cid-outage")
        assert fk.state()["orders"] == {}
        fk.inject_rest("429", "*", 1)
        with pytest.raises(VenueNetworkError):
            v.create_market_order(SYM, 0.002, "cid-outage")
        v.create_market_order(SYM, 0.002, "cid-outage")  # the runtime re-sends under the same id
        assert v.fetch_order(SYM, "cid-outage").status == "filled" and list(fk.state()["orders"]) == ["cid-outage"]
    finally:
        v.close()


def test_rest_klines_with_the_forming_bar_never_deliver_it(fake_exchange, venue):
    fk = fake_exchange
    fk.rest_forming = True
    h = venue.history(SYM, 30)
    assert h["open_time"][-1] == fk.released[-1][0]  # the newest closed bar, not the forming one
    closed = {b[0]: b for b in fk.released}
    assert all(closed[int(t)][4] == c for t, c in zip(h["open_time"], h["close"]))  # final values


def test_rest_klines_with_the_forming_bar_still_give_n_closed_bars(fake_exchange, venue):
    fk = fake_exchange
    fk.rest_forming = True
    h = venue.history(SYM, 30)
    assert h["open_time"].tolist() == [b[0] for b in fk.released[-30:]]


def test_history_longer_than_one_rest_page(bybit_keys):
    from fake_bybit import FakeBybit, sample_bars

    with FakeBybit(sample_bars(2600), history=2500) as fk:
        v = CcxtVenue("bybit", [SYM], api_url=fk.rest_url, ws_url=fk.ws_url, feed="poll", timeout_ms=3000)
        try:
            h = v.history(SYM, 2000)
        finally:
            v.close()
        assert h["open_time"].tolist() == [b[0] for b in fk.released[-2000:]]
