"""Fill paging of the real CcxtVenue on ccxt's ``bybit`` against the loopback fake Bybit v5 (tests/fake_bybit.py):
``GET /v5/execution/list`` serves at most 7 days and 100 rows per request (a cursor pages on), so ``fetch_fills``
walks 7-day windows (``startTime`` + ``endTime``) and follows the cursor in each.  ccxt's ``paginate`` (what
``fetch_fills`` used before) sends ``startTime`` only and stops after ``paginationCalls``: it returned the first 7 days
after ``since_ms`` and at most 10,000 rows of them."""

from __future__ import annotations

import math

import pytest
from fake_bybit import FakeBybit, sample_bars
from restart_scenarios import crash_after_send_then_restart

from crucible.config import config_from_dict
from crucible.venues.base import RetryPolicy, VenueNetworkError, VenueRejected
from crucible.venues.ccxt_venue import CcxtVenue

SYM = "BTCUSDT"
DAY = 86_400_000
HOUR = 3_600_000


def _venue(fk: FakeBybit, **kw) -> CcxtVenue:
    return CcxtVenue("bybit", [SYM], api_url=fk.rest_url, timeout_ms=3000, feed="poll", **kw)


@pytest.fixture()
def fake_bybit():
    with FakeBybit(sample_bars(450), history=420) as fk:
        yield fk


@pytest.fixture()
def venue(fake_bybit, bybit_keys):
    v = _venue(fake_bybit)
    yield v
    v.close()


def _calls(fk: FakeBybit, n0: int) -> int:
    return len(fk.execution_requests) - n0


def _want(fk: FakeBybit, since: int) -> list[str]:
    """The fake's execution ids at or after ``since``, in fetch_fills' order (time, trade id)."""
    rows = sorted((e for e in fk.state()["executions"].values() if int(e["execTime"]) >= since),
                  key=lambda e: (int(e["execTime"]), e["execId"]))
    return [e["execId"] for e in rows]


def _raw(venue: CcxtVenue, **q) -> dict:
    return venue._call(venue.ex.privateGetV5ExecutionList, {"category": "linear", "symbol": SYM, **q})["result"]


def test_fake_bybit_execution_list_follows_the_documented_rules(venue, fake_bybit):
    """The fake's ``/v5/execution/list`` (what the paging relies on): newest first; limit default 50, 1..100;
    neither time -> the last 7 days; startTime only -> the 7 days from it; endTime only -> the 7 days before it; both
    more than 7 days apart -> 10001; the cursor pages on within its query only; the past 730 days only."""
    fk = fake_bybit
    now = fk.now_ms()
    fk.add_executions([now - 800 * DAY, now - 20 * DAY, now - 15 * DAY])
    fk.add_executions([now - 3 * DAY + i for i in range(120)])
    ids = _want(fk, 0)
    recent = ids[3:]
    page = _raw(venue)
    assert [r["execId"] for r in page["list"]] == recent[::-1][:50] and page["nextPageCursor"]
    assert len(_raw(venue, limit=100)["list"]) == 100
    with pytest.raises(VenueRejected, match="10001"):
        _raw(venue, limit=101)
    assert [r["execId"] for r in _raw(venue, startTime=now - 21 * DAY, limit=100)["list"]] == [ids[2], ids[1]]
    assert [r["execId"] for r in _raw(venue, endTime=now - 17 * DAY, limit=100)["list"]] == [ids[1]]
    assert _raw(venue, startTime=now - 20 * DAY, endTime=now - 13 * DAY)["list"] != []  # exactly 7 days: allowed
    with pytest.raises(VenueRejected, match="10001"):
        _raw(venue, startTime=now - 20 * DAY, endTime=now - 13 * DAY + 1)
    assert _raw(venue, startTime=now - 801 * DAY, limit=100)["list"] == []  # older than 730 days: not served
    got, cursor = [], ""
    while True:
        q = {"startTime": now - 4 * DAY, "limit": 50, **({"cursor": cursor} if cursor else {})}
        res = _raw(venue, **q)
        got += [r["execId"] for r in res["list"]]
        cursor = res["nextPageCursor"]
        if not res["list"] or not cursor:
            break
    assert got == recent[::-1]
    with pytest.raises(VenueRejected, match="cursor"):
        _raw(venue, startTime=now - 5 * DAY, limit=50, cursor=page["nextPageCursor"])


@pytest.mark.parametrize("last_page_cursor", [True, False])
def test_bybit_fetch_fills_spans_more_than_7_days_and_quiet_weeks(venue, fake_bybit, last_page_cursor):
    """Fills over the 20 days since ``since_ms``, 12 days of them without any (an empty 7-day window must not end the
    paging), fills on both sides of each window's edge and across the start of the last window: all returned, once,
    in (time, id) order, with one request per window (three: two 7-day windows with startTime and endTime, the last
    with startTime only) plus its further pages.  ccxt's paginate returned only the first 7 days (the 48 old fills)."""
    fk = fake_bybit
    fk.last_page_cursor = last_page_cursor
    now = fk.now_ms()
    since = now - 20 * DAY
    old = [since + i * HOUR for i in range(48)]  # days -20 .. -18
    edge = [since + 7 * DAY + d for d in (-2, -1, 0, 1)]  # the first window's last and the second's first ms
    tail_start = now - 7 * DAY + HOUR  # the last window (startTime only) begins about here
    around = [tail_start + d * 10_000 for d in range(-12, 13)]  # every 10 s for 4 min across it
    recent = [now - 5 * DAY + i * HOUR for i in range(5 * 24 - 1)]  # hourly over the last 5 days
    fk.add_executions([since - 1, since - 1], order_link_id="by-before")
    fk.add_executions(old, order_link_id="by-old")
    fk.add_executions(edge, side="Sell", order_link_id="by-edge")
    fk.add_executions(around, order_link_id="by-around")
    fk.add_executions(recent, side="Sell", order_link_id="by-recent")
    n0 = len(fk.execution_requests)
    fills = venue.fetch_fills(SYM, since)
    want = _want(fk, since)
    assert len(want) == len(old) + len(edge) + len(around) + len(recent) == 196
    assert [f.trade_id for f in fills] == want
    assert {f.client_order_id for f in fills} == {"by-old", "by-edge", "by-around", "by-recent"}
    sent = fk.execution_requests[n0:]
    assert all(int(q["limit"]) == 100 and "execType" not in q for q in sent)  # every type; Funding dropped here
    windows = [(q.get("startTime"), q.get("endTime")) for q in sent if not q.get("cursor")]
    assert len(windows) == 3 and windows[-1][1] is None, windows
    assert all(int(e) - int(s) <= 7 * DAY for s, e in windows[:-1])
    # one page each (with the empty page after it when Bybit gives the last page a cursor): the first window holds 48
    # old + 3 edge rows, the second 2 edge (one of them again) + 13 around, the last 12 around + 119 recent: two pages
    assert _calls(fk, n0) == 3 + 1 + (3 if last_page_cursor else 0), sent
    assert sum(f.qty for f in fills) == pytest.approx(0.001 * (len(old) + len(around) - len(edge) - len(recent)))
    # since_ms None: the last 7 days (Bybit's own default span), complete
    assert [f.trade_id for f in venue.fetch_fills(SYM)] == _want(fk, now - 7 * DAY) == _want(fk, around[0])


def test_bybit_fetch_fills_pages_past_100_calls_without_duplicates(venue, fake_bybit):
    """10,050 fills in the hour since ``since_ms``, three per millisecond: all returned once, in (time, id) order,
    in ceil(n / 100) requests plus the empty last page; fills before ``since_ms`` are not.  ccxt's paginate stopped
    after its 100 calls (10,000 rows, newest first): the oldest 50 were silently missing."""
    fk = fake_bybit
    now = fk.now_ms()
    since = now - HOUR
    fk.add_executions([since - 5_000] * 3, order_link_id="by-before")
    n = 10_050
    fk.add_executions([since + i // 3 for i in range(n)], order_link_id="by-many")
    n0 = len(fk.execution_requests)
    fills = venue.fetch_fills(SYM, since)
    assert len(fills) == n and [f.trade_id for f in fills] == _want(fk, since)
    assert len({f.trade_id for f in fills}) == n and {f.client_order_id for f in fills} == {"by-many"}
    assert sum(f.qty for f in fills) == pytest.approx(n * 0.001)
    assert _calls(fk, n0) == math.ceil(n / 100) + 1


def test_bybit_fetch_fills_since_long_ago_is_clamped_to_730_days(venue, fake_bybit):
    """``since_ms`` 0 (everything): the 730 days Bybit serves, in 105 windows; executions older are not served by
    Bybit at all."""
    fk = fake_bybit
    now = fk.now_ms()
    fk.add_executions([now - 729 * DAY, now - 400 * DAY, now - 3 * DAY])
    n0 = len(fk.execution_requests)
    fills = venue.fetch_fills(SYM, 0)
    assert [f.trade_id for f in fills] == _want(fk, 0) and len(fills) == 3
    windows = [q for q in fk.execution_requests[n0:] if not q.get("cursor")]
    assert len(windows) == math.ceil((730 - 7 + 1 / 24) / 7) + 1 == 105
    assert min(int(q["startTime"]) for q in windows) >= now - 730 * DAY


def test_bybit_fetch_fills_never_returns_a_short_list(fake_bybit, bybit_keys):
    """A page that still fails after the read retries raises VenueNetworkError (the pages before it are not
    returned as if they were all); a cursor the exchange repeats raises VenueRejected, not an endless loop or a
    short list."""
    fk = fake_bybit
    now = fk.now_ms()
    fk.add_executions([now - 2 * DAY + i for i in range(250)])
    v = _venue(fk, retry=RetryPolicy(budget_s=0.5, base_s=0.01, max_s=0.05))
    try:
        n0 = len(fk.execution_requests)
        assert len(v.fetch_fills(SYM, now - 3 * DAY)) == 250
        assert _calls(fk, n0) == 4  # 100 + 100 + 50 + the empty page
        fk.inject_rest("5xx", "/v5/execution/list", 1)  # one failure: retried, complete
        assert len(v.fetch_fills(SYM, now - 3 * DAY)) == 250 and v.retries >= 1
        orig = v.ex.privateGetV5ExecutionList
        calls = {"n": 0}

        def flaky(params):  # the second page's request fails for good
            calls["n"] += 1
            if params.get("cursor"):
                fk.inject_rest("5xx", "/v5/execution/list", 1)
            return orig(params)

        v.ex.privateGetV5ExecutionList = flaky
        with pytest.raises(VenueNetworkError):
            v.fetch_fills(SYM, now - 3 * DAY)

        def looping(params):  # the exchange hands out the same cursor again and again
            res = orig({k: x for k, x in params.items() if k != "cursor"})
            res["result"]["nextPageCursor"] = "stuck"
            return res

        v.ex.privateGetV5ExecutionList = looping
        with pytest.raises(VenueRejected, match="cannot be fetched completely"):
            v.fetch_fills(SYM, now - 3 * DAY)
    finally:
        v.close()


def test_restart_of_a_bybit_bench_started_over_7_days_ago_books_the_fill_of_the_order_in_flight(tmp_path, fake_bybit,
                                                                                                bybit_keys):
    """A bench trading for 10 days is killed after a market order filled but before its ack was journaled: the
    restart's reconcile fetches the fills since the bench started (10 days ago: two windows of /v5/execution/list)
    and books this one; the journal's position is the exchange's.  With ccxt's paginate (the 7 days after
    startTime) the fill was missed: a position difference at restart."""
    fk = fake_bybit
    v = _venue(fk)
    cfg = config_from_dict({
        "crucible": {"journal": str(tmp_path / "journal.sqlite"), "champions_dir": str(tmp_path / "champions"),
                     "requests_dir": str(tmp_path / "requests"), "kill_file": str(tmp_path / "KILL"),
                     "history_bars": 400, "snapshot_every": 1},
        "hotswap": {"enabled": False},
        "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"}],
    }, "test")

    try:
        r = crash_after_send_then_restart(cfg, v, started_days_ago=10, venue_trades=lambda: fk.state()["executions"],
                                          requests=lambda: len([q for q in fk.execution_requests if not q.get("cursor")]))
    finally:
        v.close()
    assert r["report"]["new_fills"] == 1 and r["journal_fills"] == r["venue_trades"]
    assert r["report"]["position_diff"] == {} and r["halted"] is None, r
    assert r["units"] == pytest.approx(fk.state()["position"])
    assert r["requests"] == 2  # two windows (first pages; no cursor)


def test_fill_windows_older_than_the_exchange_serves_warn_once(caplog):
    from crucible.venues.ccxt_venue import _fill_windows

    day = 86_400_000
    now = 1_000 * day
    with caplog.at_level("WARNING", logger="crucible.ccxt"):
        w = _fill_windows(now - 800 * day, now, 7 * day, 730 * day, 3_600_000, shared_boundary=True)
        _fill_windows(now - 800 * day, now, 7 * day, 730 * day, 3_600_000, shared_boundary=True)
        _fill_windows(now - 700 * day, now, 7 * day, 730 * day, 3_600_000, shared_boundary=True)
    assert w[0][0] == now - 730 * day
    warned = [r for r in caplog.records if "cannot be fetched" in r.getMessage()]
    assert len(warned) == 1 and "800 days back" in warned[0].getMessage() and "730 days" in warned[0].getMessage()
