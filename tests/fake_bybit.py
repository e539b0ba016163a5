"""A fake Bybit v5 exchange on 127.0.0.1 for testing the real ``CcxtVenue`` (no mocks of the adapter).

It runs an ``aiohttp.web`` server in its own thread with its own event loop and serves

* the REST routes ccxt 4.5 calls for linear USDT perpetuals (markets, klines, server time, account
  info, wallet balance, positions, order create / realtime / history, executions), and
* the public WebSocket ``/v5/public/linear``: ``{"op": "subscribe", "args": ["kline.1.BTCUSDT"]}``
  subscribes to 1-minute klines, ``{"op": "ping"}`` is answered with a pong; pushes are Bybit v5
  kline messages ``{"topic", "type": "snapshot", "ts", "data": [{"start", "end", "interval", "open",
  "close", "high", "low", "volume", "turnover", "confirm", "timestamp"}]}``.

State is real: orders by ``orderLinkId`` (a second create with a known id is refused with Bybit's
duplicate error 110072), one execution per market order (fee ``fee_rate`` × notional, USDT), the net
position per symbol (``/v5/position/list``) and a wallet (starting balance + realised P&L − fees,
average-cost method).  Market orders fill at the close of the last closed bar (the current price).

Bar clock: the bars are historical 1-minute bars ``(open_time ms, open, high, low, close, volume)``;
the first ``history`` of them are closed at start, :meth:`FakeBybit.step` closes the next one (driven
by the test, or by :meth:`FakeBybit.run_clock` on a timer).  Each step pushes the closing bar with
``confirm: true`` followed by the next (forming) bar with ``confirm: false``; on subscribe the
forming bar is pushed at once.  REST klines return closed bars only: the bars are historical, so a
client deciding "closed" by the wall clock would take a forming bar for a closed one.

Faults: :meth:`FakeBybit.inject_rest` ("drop": the request is processed, then the connection is
dropped without a response; "5xx": HTTP 503, nothing done; "429": HTTP 429 rate limit, nothing done;
"auth": retCode 10003 invalid API key; "timestamp": retCode 10002 request expired (client clock off),
nothing done; and on ``/v5/order/create`` only: "margin": retCode 110007 not enough available balance;
"min_notional": retCode 110094 order value below the minimum; "partial": the market order fills half its
quantity (rounded down to the lot, at least one lot) and the rest is cancelled, Bybit status
``PartiallyFilledCanceled``; "ghost": the order is acknowledged but the exchange loses it — it never
executes and order lookups by ``orderLinkId`` return nothing).  The path ``"*"`` matches every request,
so ``inject_rest("5xx", "*", n)`` is an outage of the next n requests.  :meth:`FakeBybit.place_external`
books an order placed outside the bench (by hand, or by another program on the same account).
``reduceOnly`` orders that would not reduce the net position are refused (retCode 110017) and are booked with
``reduceOnly: true``; ``api_permissions`` is what ``/v5/user/query-api`` reports for the key.
Unknown order ids: lookups by ``orderLinkId`` or ``orderId`` the exchange does not know return an empty
list, and ``/v5/order/cancel`` answers Bybit's retCode 110001 "order not exists or too late to cancel" (a
market order is filled or cancelled on arrival, so no cancel ever finds an open one).
``rest_forming = True`` makes ``/v5/market/kline`` include the still-forming bar like the real Bybit
(high = low = close = open, volume 0), with the response envelope's ``time`` set to the fake's own
clock (the forming bar's open + 1 s) so a client can tell it from a closed one;
``bar_clock = True`` makes ``/v5/market/time`` answer the bars' own clock (:meth:`FakeBybit.bar_clock_ms`, 1 s
into the forming bar) instead of the wall clock, so a client that takes its clock from the exchange sees the
historical bars as a live exchange would (the latest closed bar is the previous minute; the soak test);
and :meth:`FakeBybit.inject_ws` ("disconnect": the server closes every WebSocket before the next
step's pushes; "duplicate": the next step's messages are each sent twice and the previous step's
messages are replayed after them; "skip": the next step's messages are not sent at all, as if lost
on the way, with the connection kept).

Limit orders (issue 31): ``orderType: Limit`` with ``price`` (a multiple of the 0.10 tick) rests as ``New``; the
book (``/v5/market/orderbook``) is the last close -/+ ``spread_ticks`` ticks.  ``timeInForce: PostOnly`` at or
through the opposite side is accepted and cancelled at once with ``rejectReason: EC_PostOnlyWillTakeLiquidity``
(Bybit v5's behaviour: retCode 0, then status ``Cancelled``); a non-post-only crossing limit is refused.  Each
:meth:`FakeBybit.step` matches the resting orders against the bar that closes: a buy fills only when the bar's
low trades *through* its price (low < price; a sell: high > price), at its price, with ``maker_fee_rate``, for at
most ``limit_fill_share`` of the order's quantity per bar (rounded down to the lot, at least one lot; the rest
keeps resting, ``PartiallyFilled``), one execution each (``isMaker: true``).  ``/v5/order/cancel`` cancels an open
order (retCode 110001 for one that is unknown or no longer open); ``/v5/order/disconnected-cancel-all`` arms the
dead-man's switch (``timeWindow`` s, recorded in ``dcp_window``); :meth:`FakeBybit.fire_dcp` cancels every open
order as the exchange does once the window has passed without the client.  :meth:`FakeBybit.set_book` moves the
touch and ``cross_next_post_only = n`` makes the next n PostOnly orders find the book moved through their
price (tests of post-only rejections).

Executions (``/v5/execution/list``, see ``_execution_list``): served as Bybit v5 documents "Get Trade History" --
newest first, ``limit`` 1..100 (default 50), at most 7 days per request (neither time: the last 7 days; ``startTime``
only: the 7 days from it; ``endTime`` only: the 7 days before it; both further apart -> retCode 10001), the past 730
days only, paged by an opaque ``nextPageCursor`` bound to its query; ``last_page_cursor`` (default True) gives every
non-empty page a cursor, so the end is an empty page.  :meth:`FakeBybit.add_executions` books thousands of fills,
or fills weeks old, at once (paging tests); ``execution_requests`` records every query served.

Times are ms UTC; quantities base units (signed where noted); money USDT.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web
from loopback import start_server

__all__ = ["FakeBybit", "sample_bars"]

LOT = 0.001
TICK = 0.10


def sample_bars(n: int, *, end_ms: int | None = None, offset: int = 0) -> list[tuple[int, float, float, float, float, float]]:
    """``n`` consecutive 1-minute bars from the embedded BTCUSDT sample (rows ``offset..offset+n``),
    re-timed so the last one opens at ``end_ms`` (default: the start of the minute 5 minutes before now,
    so every bar lies in the past of the wall clock).  returns [(open_time, open, high, low, close, volume)]."""
    from forge.data.loader import load_sample

    df = load_sample()[0].slice(offset, n)
    if df.height != n:
        raise ValueError(f"the sample has only {df.height} bars from {offset}")
    if end_ms is None:
        end_ms = (int(time.time() * 1000) // 60_000 - 5) * 60_000
    t0 = end_ms - (n - 1) * 60_000
    cols = [df[c].to_list() for c in ("open", "high", "low", "close", "volume")]
    return [(t0 + 60_000 * i, *(float(c[i]) for c in cols)) for i in range(n)]


class FakeBybit:
    """The fake exchange (see module docstring).

    bars: [(open_time ms, open, high, low, close, volume)] oldest first, 60_000 ms apart; history: bars
    closed at start (>= 1); symbol: the one linear market served; balance: starting wallet, USDT;
    fee_rate: taker fee as a fraction of notional.  Use :meth:`start` / :meth:`stop` (or ``with``).
    """

    def __init__(self, bars: list[tuple], *, history: int = 400, symbol: str = "BTCUSDT",
                 balance: float = 10_000.0, fee_rate: float = 0.00055, maker_fee_rate: float = 0.0002,
                 spread_ticks: int = 1, limit_fill_share: float = 1.0) -> None:
        if not 1 <= history <= len(bars):
            raise ValueError(f"history must be in 1..{len(bars)}, got {history}")
        self.bars = [tuple(b) for b in bars]
        self.symbol = symbol
        self.fee_rate = fee_rate
        self.maker_fee_rate = maker_fee_rate
        self.spread_ticks = spread_ticks
        self.limit_fill_share = limit_fill_share
        self.book_override: tuple[float, float] | None = None
        self.dcp_window: int | None = None
        self.cross_next_post_only = 0  # the next n PostOnly orders find the book moved through their price
        self.dcp_fired = 0
        self.balance0 = balance
        self.n_closed = history
        self.lock = threading.RLock()
        self.paths: list[tuple[str, str]] = []
        self.orders: dict[str, dict[str, Any]] = {}  # orderLinkId -> order
        self.executions: list[dict[str, Any]] = []  # oldest first
        self.position = 0.0  # net, signed base units
        self.avg_price = 0.0
        self.realised = 0.0
        self.fees = 0.0
        self.rest_faults: dict[str, deque[str]] = {}
        self.ws_faults: deque[str] = deque()
        self.faults_hit: list[tuple[str, str]] = []  # (path, kind) of REST faults served
        self.rest_forming = False
        self.bar_clock = False
        # /v5/execution/list: True (default) gives every non-empty page a nextPageCursor, so the end of a window is an
        # empty page (ccxt's sample response has a cursor on a one-row page); False: "" on the last page
        self.last_page_cursor = True
        self.execution_requests: list[dict[str, Any]] = []  # the query of every /v5/execution/list request served
        # /v5/user/query-api "permissions" of the key (Bybit: e.g. {"ContractTrade": ["Order", "Position"],
        # "Wallet": ["AccountTransfer", "Withdraw"]}); tests set "Withdraw" to see the Crucible refuse the key
        self.api_permissions: dict[str, list[str]] = {"ContractTrade": ["Order", "Position"]}
        self.ws_sent: list[dict[str, Any]] = []  # every kline message sent (copies included)
        self.ws_subscribes = 0
        self.ws_disconnects = 0
        self._conns: set[Any] = set()
        self._subs: dict[Any, set[str]] = {}
        self._last_step_msgs: list[dict[str, Any]] = []
        self._n = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clock: asyncio.Future | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Serve on 127.0.0.1 (a free port) in a daemon thread; returns the port."""
        def routes(app: web.Application) -> None:
            app.router.add_get("/v5/public/linear", self._ws)
            app.router.add_route("*", "/{tail:.*}", self._rest)

        return start_server(self, routes, "fake-bybit")

    def stop(self) -> None:
        """Stop the clock, close WebSockets and the server, join the thread."""
        if self._loop is None:
            return
        self.stop_clock()
        self._run(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "FakeBybit":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v5/public/linear"

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ------------------------------------------------------------------ clock

    @property
    def released(self) -> list[tuple]:
        """The closed bars, oldest first."""
        with self.lock:
            return self.bars[: self.n_closed]

    @property
    def remaining(self) -> int:
        """Bars not yet closed."""
        return len(self.bars) - self.n_closed

    def step(self, n: int = 1) -> int:
        """Close the next ``n`` bars (pushing them to subscribers); returns how many were closed."""
        done = 0
        for _ in range(n):
            if not self._run(self._step()):
                break
            done += 1
        return done

    def run_clock(self, interval_s: float, *, only_subscribed: bool = True) -> None:
        """Close one bar every ``interval_s`` seconds until the bars run out or :meth:`stop_clock`;
        with ``only_subscribed`` the clock pauses while no WebSocket client is subscribed."""
        async def tick() -> None:
            while self.remaining > 0:
                await asyncio.sleep(interval_s)
                if only_subscribed and not any(self._subs.values()):
                    continue
                await self._step()

        self._clock = asyncio.run_coroutine_threadsafe(tick(), self._loop)

    def stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _kline(self, i: int, confirm: bool) -> dict[str, Any]:
        t, o, h, lo, c, v = self.bars[i]
        if not confirm:  # the forming bar right after its open
            h, lo, c, v = o, o, o, 0.0
        now = int(time.time() * 1000)
        return {"topic": f"kline.1.{self.symbol}", "type": "snapshot", "ts": now,
                "data": [{"start": t, "end": t + 59_999, "interval": "1", "open": str(o), "close": str(c),
                          "high": str(h), "low": str(lo), "volume": str(v), "turnover": str(v * c),
                          "confirm": confirm, "timestamp": now}]}

    async def _step(self) -> bool:
        with self.lock:
            if self.n_closed >= len(self.bars):
                return False
            self.n_closed += 1
            i = self.n_closed - 1
            self._match_resting(self.bars[i])
            msgs = [self._kline(i, True)]
            if self.n_closed < len(self.bars):
                msgs.append(self._kline(self.n_closed, False))
            fault = self.ws_faults.popleft() if self.ws_faults else None
            prev = self._last_step_msgs
            self._last_step_msgs = msgs
        if fault == "disconnect":
            self.ws_disconnects += 1
            await self._close_all()
            return True
        if fault == "skip":
            return True
        out = [m for m in msgs for _ in range(2)] + prev if fault == "duplicate" else msgs
        for m in out:
            await self._broadcast(m)
        return True

    # ------------------------------------------------------------------ faults & state

    REST_FAULTS = ("drop", "5xx", "429", "auth", "timestamp", "margin", "min_notional", "partial", "ghost")

    def inject_rest(self, kind: str, path: str = "/v5/order/create", n: int = 1) -> None:
        """Queue ``n`` faults (one of ``REST_FAULTS``, see module docstring) for the next requests to
        ``path`` (``"*"``: any path; checked after the path's own queue)."""
        if kind not in self.REST_FAULTS:
            raise ValueError(kind)
        if kind in ("margin", "min_notional", "partial", "ghost") and path != "/v5/order/create":
            raise ValueError(f"{kind} applies to /v5/order/create only")
        with self.lock:
            self.rest_faults.setdefault(path, deque()).extend([kind] * n)

    def inject_ws(self, kind: str, n: int = 1) -> None:
        """Queue ``n`` WebSocket faults ("disconnect" | "duplicate" | "skip"), one per following step."""
        if kind not in ("disconnect", "duplicate", "skip"):
            raise ValueError(kind)
        with self.lock:
            self.ws_faults.extend([kind] * n)

    def place_external(self, qty: float, order_link_id: str = "") -> str:
        """Book a market order placed outside the bench (signed base units, a multiple of the lot) under
        ``order_link_id`` (any string, e.g. a look-alike of the bench's ids); returns its order id."""
        with self.lock:
            code, payload = self._create({"symbol": self.symbol, "orderType": "Market",
                                          "side": "Buy" if qty > 0 else "Sell", "qty": f"{abs(qty):.3f}",
                                          "orderLinkId": order_link_id})
        if code != 200 or payload.get("retCode") != 0:
            raise ValueError(f"external order refused: {payload}")
        return payload["result"]["orderId"]

    def now_ms(self) -> int:
        """The exchange's clock (the wall clock): the "now" of /v5/execution/list's default windows."""
        return int(time.time() * 1000)

    def add_executions(self, times_ms: list[int], *, side: str = "Buy", qty: float = LOT, price: float | None = None,
                       order_link_id: str | None = None) -> str:
        """Book a GTC limit order (``order_link_id``, default ``hist-<n>``) filled by one maker execution of ``qty``
        at each of ``times_ms`` (ms, ascending, none before the newest execution), at ``price`` (default the last
        close at the tick); position and wallet follow.  For paging tests (thousands of fills, fills weeks old)
        without driving orders one by one.  returns the order link id."""
        times = [int(t) for t in times_ms]
        with self.lock:
            newest = int(self.executions[-1]["execTime"]) if self.executions else None
            if times != sorted(times) or (newest is not None and times and times[0] < newest):
                raise ValueError("execution times must ascend from the newest execution's")
            px = round(round((self.bars[self.n_closed - 1][4] if price is None else price) / TICK) * TICK, 2)
            self._n += 1
            link = order_link_id or f"hist-{self._n}"
            total = round(qty * len(times), 9)
            o = {"orderId": f"oid-{self._n}", "orderLinkId": link, "side": side, "qty": f"{total:.3f}", "price": px,
                 "fee": 0.0, "t": times[0] if times else self.now_ms(), "t_upd": times[-1] if times else self.now_ms(),
                 "filled": "0.000", "status": "New", "reduceOnly": False, "type": "Limit", "tif": "GTC",
                 "rejectReason": "EC_NoError", "cum_value": 0.0}
            self.orders[link] = o
            done = 0.0
            for t in times:
                self._n += 1
                fee = round(qty * px * self.maker_fee_rate, 8)
                self._book(qty if side == "Buy" else -qty, px, fee)
                done = round(done + qty, 9)
                o["filled"], o["cum_value"], o["fee"] = f"{done:.3f}", o["cum_value"] + qty * px, o["fee"] + fee
                o["status"] = "Filled" if done >= total - 1e-12 else "PartiallyFilled"
                self.executions.append({
                    "symbol": self.symbol, "orderId": o["orderId"], "orderLinkId": link, "side": side,
                    "orderPrice": str(px), "orderQty": o["qty"], "leavesQty": f"{total - done:.3f}",
                    "orderType": "Limit", "execFee": f"{fee:.8f}", "execId": f"exec-{self._n:06d}", "execPrice": str(px),
                    "execQty": f"{qty:.3f}", "execType": "Trade", "execValue": f"{qty * px:.8f}", "execTime": str(t),
                    "isMaker": True, "feeRate": str(self.maker_fee_rate), "markPrice": str(px), "closedSize": "0",
                    "seq": self._n, "createType": "CreateByUser"})
        return link

    def add_venue_execution(self, qty: float, exec_type: str = "BustTrade", price: float | None = None) -> str:
        """An execution the exchange makes itself of ``qty`` signed base units (``exec_type`` "BustTrade": a takeover
        liquidation, "AdlTrade", "Delivery", "Settle"; no orderLinkId), position and wallet following, at ``price``
        (default the last close); or, for ``exec_type`` "Funding", a funding-fee row (execQty the position's size,
        the position unchanged).  returns its execId."""
        with self.lock:
            px = round(round((self.bars[self.n_closed - 1][4] if price is None else price) / TICK) * TICK, 2)
            self._n += 1
            t = self.now_ms()
            if exec_type == "Funding":
                side, q, fee = ("Buy" if self.position > 0 else "Sell"), abs(self.position), round(abs(self.position) * px * 1e-4, 8)
                self.fees += fee
            else:
                side, q, fee = ("Buy" if qty > 0 else "Sell"), abs(qty), 0.0
                self._book(qty, px, fee)
            eid = f"exec-{self._n:06d}"
            self.executions.append({
                "symbol": self.symbol, "orderId": f"venue-{self._n}", "orderLinkId": "", "side": side,
                "orderPrice": str(px), "orderQty": f"{q:.3f}", "leavesQty": "0", "orderType": "Market",
                "execFee": f"{fee:.8f}", "execId": eid, "execPrice": str(px), "execQty": f"{q:.3f}",
                "execType": exec_type, "execValue": f"{q * px:.8f}", "execTime": str(t), "isMaker": False,
                "feeRate": "0.0001" if exec_type == "Funding" else "0", "markPrice": str(px), "closedSize": "0",
                "seq": self._n, "createType": "CreateByClosing" if exec_type != "Funding" else ""})
        return eid

    def book(self) -> tuple[float, float]:
        """(best bid, best ask): the last close -/+ ``spread_ticks`` ticks, or what :meth:`set_book` set."""
        with self.lock:
            if self.book_override is not None:
                return self.book_override
            c = self.bars[self.n_closed - 1][4]
            mid = round(c / TICK) * TICK
            return round(mid - self.spread_ticks * TICK, 2), round(mid + self.spread_ticks * TICK, 2)

    def set_book(self, bid: float | None, ask: float | None = None) -> None:
        """Pin the touch to (bid, ask) (None: back to the close -/+ spread_ticks)."""
        with self.lock:
            self.book_override = None if bid is None else (float(bid), float(ask))

    def open_orders(self) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders.values() if o["status"] in ("New", "PartiallyFilled")]

    def fire_dcp(self) -> int:
        """The dead-man's switch fires (the client stayed away past ``dcp_window``): every open order is cancelled;
        returns how many.  raises RuntimeError when it was never armed."""
        with self.lock:
            if not self.dcp_window:
                raise RuntimeError("disconnected-cancel-all was not armed")
            n = 0
            for o in self.open_orders():
                o["status"] = "Cancelled"
                o["rejectReason"] = "EC_CancelForNoFullFill"
                n += 1
            self.dcp_fired += 1
            return n

    def _match_resting(self, bar: tuple) -> None:
        """The kline trade-through rule against the bar that just closed (module docstring)."""
        _t, _o, h, lo, _c, _v = bar
        for o in list(self.open_orders()):
            px = o["price"]
            buy = o["side"] == "Buy"
            if not ((lo < px) if buy else (h > px)):
                continue
            qty, done = float(o["qty"]), float(o["filled"])
            left = round(qty - done, 9)
            share = max(1, int(round(qty * self.limit_fill_share / LOT, 9))) * LOT
            q = round(min(left, share), 9)
            signed = q if buy else -q
            fee = round(q * px * self.maker_fee_rate, 8)
            self._book(signed, px, fee)
            self._n += 1
            o["filled"] = f"{done + q:.3f}"
            o["cum_value"] = o.get("cum_value", 0.0) + q * px
            o["fee"] = o.get("fee", 0.0) + fee
            o["status"] = "Filled" if q >= left - 1e-12 else "PartiallyFilled"
            o["t_upd"] = int(time.time() * 1000)
            self.executions.append({
                "symbol": self.symbol, "orderId": o["orderId"], "orderLinkId": o["orderLinkId"], "side": o["side"],
                "orderPrice": str(px), "orderQty": o["qty"], "leavesQty": f"{left - q:.3f}", "orderType": "Limit",
                "execFee": f"{fee:.8f}", "execId": f"exec-{self._n:06d}", "execPrice": str(px), "execQty": f"{q:.3f}",
                "execType": "Trade", "execValue": f"{q * px:.8f}", "execTime": str(o["t_upd"]), "isMaker": True,
                "feeRate": str(self.maker_fee_rate), "markPrice": str(px), "closedSize": "0", "seq": self._n,
                "createType": "CreateByUser"})

    def _create_limit(self, b: dict[str, Any]) -> tuple[int, Any]:
        link = b.get("orderLinkId") or ""
        if link and link in self.orders:
            return 200, {"retCode": 110072, "retMsg": "OrderLinkedID is duplicate", "result": {}, "time": 0}
        qty, px = float(b.get("qty") or 0), float(b.get("price") or 0)
        steps = round(qty / LOT)
        if steps < 1 or abs(steps * LOT - qty) > 1e-9 or px <= 0 or abs(round(px / TICK) * TICK - px) > 1e-9:
            return 200, {"retCode": 10001, "retMsg": f"fake: qty {b.get('qty')} / price {b.get('price')} off the "
                         f"lot {LOT} / tick {TICK}", "result": {}, "time": 0}
        buy = b["side"] == "Buy"
        reduce_only = b.get("reduceOnly") in (True, "true", "True", 1, "1")
        if reduce_only and (self.position == 0 or (self.position > 0) == buy or qty > abs(self.position) + 1e-9):
            return 200, {"retCode": 110017, "retMsg": "Reduce-only rule not satisfied", "result": {}, "time": 0}
        bid, ask = self.book()
        crosses = px >= ask if buy else px <= bid
        post_only = str(b.get("timeInForce") or "") == "PostOnly"
        if post_only and self.cross_next_post_only > 0:  # the book moved between the client's look and its order
            self.cross_next_post_only -= 1
            crosses = True
        if crosses and not post_only:
            return 200, {"retCode": 10001, "retMsg": "fake: crossing limit orders are not served", "result": {},
                         "time": 0}
        self._n += 1
        t = int(time.time() * 1000)
        o = {"orderId": f"oid-{self._n}", "orderLinkId": link, "side": b["side"], "qty": f"{qty:.3f}", "price": px,
             "fee": 0.0, "t": t, "t_upd": t, "filled": "0.000", "status": "New", "reduceOnly": reduce_only,
             "type": "Limit", "tif": "PostOnly" if post_only else "GTC", "rejectReason": "EC_NoError",
             "cum_value": 0.0}
        if crosses:  # Bybit accepts a crossing PostOnly order and cancels it at once
            o["status"], o["rejectReason"] = "Cancelled", "EC_PostOnlyWillTakeLiquidity"
            self.post_only_rejects = getattr(self, "post_only_rejects", 0) + 1
        self.orders[link] = o
        return self._ok({"orderId": o["orderId"], "orderLinkId": link})

    def _cancel(self, q: dict[str, Any]) -> tuple[int, Any]:
        link, oid = q.get("orderLinkId"), q.get("orderId")
        o = self.orders.get(link) if link else next((x for x in self.orders.values() if x["orderId"] == oid), None)
        if o is None or o["status"] not in ("New", "PartiallyFilled"):
            return 200, {"retCode": 110001, "retMsg": "order not exists or too late to cancel", "result": {},
                         "retExtInfo": {}, "time": int(time.time() * 1000)}
        o["status"] = "Cancelled"
        o["rejectReason"] = "EC_PerCancelRequest"
        o["t_upd"] = int(time.time() * 1000)
        self.cancels = getattr(self, "cancels", 0) + 1
        return self._ok({"orderId": o["orderId"], "orderLinkId": o["orderLinkId"]})

    def bar_clock_ms(self) -> int:
        """The exchange clock of the bars: 1 s into the forming bar (after the last bar: 1 s after it closed)."""
        with self.lock:
            t = self.bars[self.n_closed][0] if self.n_closed < len(self.bars) else self.bars[-1][0] + 60_000
        return t + 1_000

    def state(self) -> dict[str, Any]:
        """Exchange-side truth: {"orders": {orderLinkId: order}, "executions": {execId: execution},
        "position": net signed base units, "wallet": USDT, "fees": USDT}."""
        with self.lock:
            return {"orders": {k: dict(v) for k, v in self.orders.items()},
                    "executions": {e["execId"]: dict(e) for e in self.executions},
                    "position": self.position, "wallet": self.balance0 + self.realised - self.fees,
                    "fees": self.fees}

    # ------------------------------------------------------------------ WebSocket

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn_id = f"conn-{id(ws):x}"
        self._conns.add(ws)
        self._subs[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    await ws.send_json({"success": False, "ret_msg": "error:invalid json", "conn_id": conn_id})
                    continue
                op = req.get("op")
                if op == "ping":
                    await ws.send_json({"success": True, "ret_msg": "pong", "conn_id": conn_id,
                                        "req_id": req.get("req_id", ""), "op": "ping"})
                elif op == "subscribe":
                    args = [a for a in req.get("args") or [] if isinstance(a, str)]
                    bad = [a for a in args if a != f"kline.1.{self.symbol}"]
                    if bad:
                        await ws.send_json({"success": False, "ret_msg": f"error:handler not found,topic:{bad[0]}",
                                            "conn_id": conn_id, "req_id": req.get("req_id", ""), "op": "subscribe"})
                        continue
                    self._subs[ws].update(args)
                    self.ws_subscribes += 1
                    await ws.send_json({"success": True, "ret_msg": "", "conn_id": conn_id,
                                        "req_id": req.get("req_id", ""), "op": "subscribe"})
                    with self.lock:
                        cur = self.n_closed if self.n_closed < len(self.bars) else None
                        first = self._kline(cur, False) if cur is not None else None
                    if first is not None:
                        await self._send(ws, first)
                elif op == "unsubscribe":
                    self._subs[ws].difference_update(req.get("args") or [])
                    await ws.send_json({"success": True, "ret_msg": "", "conn_id": conn_id,
                                        "req_id": req.get("req_id", ""), "op": "unsubscribe"})
                else:
                    await ws.send_json({"success": False, "ret_msg": "error:invalid op", "conn_id": conn_id,
                                        "request": req})
        finally:
            self._conns.discard(ws)
            self._subs.pop(ws, None)
        return ws

    async def _send(self, ws: web.WebSocketResponse, msg: dict[str, Any]) -> None:
        try:
            await ws.send_json(msg)
            self.ws_sent.append(msg)
        except (ConnectionError, RuntimeError):
            pass

    async def _broadcast(self, msg: dict[str, Any]) -> None:
        for ws in list(self._conns):
            if msg["topic"] in self._subs.get(ws, ()):
                await self._send(ws, msg)

    async def _close_all(self) -> None:
        for ws in list(self._conns):
            await ws.close(code=1001, message=b"fake: server going away")

    # ------------------------------------------------------------------ REST

    def _ok(self, result: Any) -> tuple[int, Any]:
        return 200, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                     "time": int(time.time() * 1000)}

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        body: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else {}
        path = request.path
        with self.lock:
            self.paths.append((request.method, path))
            faults = self.rest_faults.get(path)
            fault = faults.popleft() if faults else None
            if fault is None and self.rest_faults.get("*"):
                fault = self.rest_faults["*"].popleft()
            if fault:
                self.faults_hit.append((path, fault))
        if fault == "5xx":
            return web.Response(status=503, text="<html>503 Service Temporarily Unavailable</html>",
                                content_type="text/html")
        if fault == "429":
            return web.json_response({"retCode": 10006, "retMsg": "Too many visits!"}, status=429)
        err = {"auth": (10003, "API key is invalid."),
               "timestamp": (10002, "invalid request, please check your server timestamp or recv_window param"),
               "margin": (110007, "ab not enough for new order"),
               "min_notional": (110094, "Order does not meet minimum order value")}.get(fault or "")
        if err is not None:
            return web.json_response({"retCode": err[0], "retMsg": err[1], "result": {}, "retExtInfo": {},
                                      "time": int(time.time() * 1000)})
        with self.lock:
            if fault in ("partial", "ghost"):
                code, payload = self._create({**q, **body}, fault)
            else:
                code, payload = self._handle(path, {**q, **body})
        if fault == "drop":  # processed, then the connection goes away without a response
            request.transport.abort()
            return web.Response(status=204)  # never reaches the client: the transport is gone
        return web.json_response(payload, status=code)

    def _handle(self, path: str, q: dict[str, Any]) -> tuple[int, Any]:
        sym = self.symbol
        if path == "/v5/market/instruments-info":
            return self._ok({"category": "linear", "nextPageCursor": "", "list": [{
                "symbol": sym, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": "BTC",
                "quoteCoin": "USDT", "settleCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0",
                "priceScale": "2", "leverageFilter": {"minLeverage": "1", "maxLeverage": "100", "leverageStep": "0.01"},
                "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
                "lotSizeFilter": {"maxOrderQty": "100", "minOrderQty": "0.001", "qtyStep": "0.001"},
                "unifiedMarginTrade": True, "fundingInterval": 480, "copyTrading": "both"}]})
        if path == "/v5/asset/coin/query-info":
            return self._ok({"rows": [{"name": "USDT", "coin": "USDT", "remainAmount": "1000000", "chains": []}]})
        if path == "/v5/user/query-api":
            return self._ok({"unified": 1, "uta": 1, "readOnly": 0, "permissions": self.api_permissions})
        if path == "/v5/account/info":
            return self._ok({"unifiedMarginStatus": 4, "marginMode": "REGULAR_MARGIN"})
        if path == "/v5/market/time":
            t = self.bar_clock_ms() if self.bar_clock else int(time.time() * 1000)
            code, payload = self._ok({"timeSecond": str(t // 1000), "timeNano": str(t * 1_000_000)})
            payload["time"] = t
            return code, payload
        if path == "/v5/market/kline":
            return self._klines(q)
        if path == "/v5/position/list":
            return self._positions(q)
        if path == "/v5/account/wallet-balance":
            mark = self.bars[self.n_closed - 1][4]
            wallet = self.balance0 + self.realised - self.fees
            upl = self.position * (mark - self.avg_price)
            return self._ok({"list": [{"accountType": "UNIFIED", "totalEquity": f"{wallet + upl:.8f}", "coin": [
                {"coin": "USDT", "equity": f"{wallet + upl:.8f}", "walletBalance": f"{wallet:.8f}", "locked": "0",
                 "unrealisedPnl": f"{upl:.8f}", "totalOrderIM": "0", "totalPositionIM": "0",
                 "availableToWithdraw": f"{wallet:.8f}"}]}]})
        if path == "/v5/order/create":
            return self._create(q)
        if path == "/v5/order/cancel":  # market orders are done on arrival: only resting limits can be cancelled
            return self._cancel(q)
        if path == "/v5/order/disconnected-cancel-all":
            self.dcp_window = int(q.get("timeWindow") or 0)
            return self._ok({})
        if path == "/v5/market/orderbook":
            bid, ask = self.book()
            return self._ok({"s": sym, "b": [[f"{bid:.2f}", "5.000"]], "a": [[f"{ask:.2f}", "5.000"]],
                             "ts": int(time.time() * 1000), "u": self._n, "seq": self._n})
        if path in ("/v5/order/realtime", "/v5/order/history"):
            link, oid = q.get("orderLinkId"), q.get("orderId")
            if link or oid:
                o = self.orders.get(link) if link else next((x for x in self.orders.values()
                                                              if x["orderId"] == oid), None)
                rows = [self._order_row(o)] if o and (not q.get("symbol") or q["symbol"] == sym) else []
            else:
                rows = ([self._order_row(o) for o in self.open_orders()] if path == "/v5/order/realtime" else
                        [self._order_row(o) for o in reversed(list(self.orders.values()))][:50])
            return self._ok({"category": "linear", "list": rows, "nextPageCursor": ""})
        if path == "/v5/execution/list":
            return self._execution_list(q)
        return 404, {"retCode": 10001, "retMsg": f"fake: unknown path {path}"}

    def _klines(self, q: dict[str, Any]) -> tuple[int, Any]:
        if q.get("symbol") != self.symbol or str(q.get("interval")) != "1":
            return 200, {"retCode": 10001, "retMsg": "params error: symbol/interval", "result": {}, "time": 0}
        limit = max(1, min(1000, int(q.get("limit", 200))))
        start, end = int(q.get("start", 0)), int(q.get("end", 2**62))
        shown = self.n_closed + (1 if self.rest_forming and self.n_closed < len(self.bars) else 0)
        rows = [b for b in self.bars[:shown] if start <= b[0] <= end][-limit:]
        if shown > self.n_closed and rows and rows[-1][0] == self.bars[self.n_closed][0]:
            t, o = rows[-1][0], rows[-1][1]
            rows[-1] = (t, o, o, o, o, 0.0)  # the forming bar right after its open
        out = [[str(b[0]), *(str(x) for x in b[1:6]), str(b[5] * b[4])] for b in reversed(rows)]
        code, payload = self._ok({"category": "linear", "symbol": self.symbol, "list": out})
        if self.rest_forming:
            payload["time"] = (self.bars[self.n_closed][0] if self.n_closed < len(self.bars)
                               else self.bars[-1][0] + 60_000) + 1_000
        return code, payload

    def _positions(self, q: dict[str, Any]) -> tuple[int, Any]:
        if q.get("symbol") not in (None, self.symbol) and q.get("settleCoin") != "USDT":
            return self._ok({"category": "linear", "list": [], "nextPageCursor": ""})
        mark = self.bars[self.n_closed - 1][4]
        size = abs(self.position)
        side = "Buy" if self.position > 0 else ("Sell" if self.position < 0 else "")
        row = {"positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": self.symbol, "side": side,
               "size": f"{size:.3f}", "avgPrice": f"{self.avg_price:.8f}", "positionValue": f"{size * self.avg_price:.8f}",
               "tradeMode": 0, "autoAddMargin": 0, "positionStatus": "Normal", "leverage": "10",
               "markPrice": str(mark), "liqPrice": "", "bustPrice": "", "positionIM": "0", "positionMM": "0",
               "takeProfit": "0", "stopLoss": "0", "trailingStop": "0",
               "unrealisedPnl": f"{self.position * (mark - self.avg_price):.8f}",
               "cumRealisedPnl": f"{self.realised - self.fees:.8f}", "createdTime": "1700000000000",
               "updatedTime": str(int(time.time() * 1000)), "seq": self._n, "isReduceOnly": False}
        return self._ok({"category": "linear", "list": [row], "nextPageCursor": ""})

    def _create(self, b: dict[str, Any], fault: str | None = None) -> tuple[int, Any]:
        link = b.get("orderLinkId") or ""
        if b.get("symbol") == self.symbol and b.get("orderType") == "Limit" and b.get("side") in ("Buy", "Sell") \
                and fault is None:
            return self._create_limit(b)
        if b.get("symbol") != self.symbol or b.get("orderType") != "Market" or b.get("side") not in ("Buy", "Sell"):
            return 200, {"retCode": 10001, "retMsg": "fake: only market orders on the served symbol",
                         "result": {}, "time": 0}
        if link and link in self.orders:
            return 200, {"retCode": 110072, "retMsg": "OrderLinkedID is duplicate", "result": {}, "time": 0}
        qty = float(b.get("qty") or 0)
        steps = round(qty / LOT)
        if steps < 1 or abs(steps * LOT - qty) > 1e-9:
            return 200, {"retCode": 10001, "retMsg": f"fake: qty {b.get('qty')} is not a multiple of {LOT}",
                         "result": {}, "time": 0}
        reduce_only = b.get("reduceOnly") in (True, "true", "True", 1, "1")
        if reduce_only:
            signed_req = qty if b["side"] == "Buy" else -qty
            if self.position == 0 or (self.position > 0) == (signed_req > 0) or qty > abs(self.position) + 1e-9:
                return 200, {"retCode": 110017, "retMsg": "Reduce-only rule not satisfied", "result": {}, "time": 0}
        self._n += 1
        if fault == "ghost":  # acknowledged, then lost by the exchange
            return self._ok({"orderId": f"oid-{self._n}", "orderLinkId": link})
        t = int(time.time() * 1000)
        price = self.bars[self.n_closed - 1][4]
        filled = qty
        status = "Filled"
        if fault == "partial":
            filled = max(1, steps // 2) * LOT if steps > 1 else qty
            filled = round(filled, 9)
            status = "PartiallyFilledCanceled" if filled < qty else "Filled"
        signed = filled if b["side"] == "Buy" else -filled
        fee = round(filled * price * self.fee_rate, 8)
        self._book(signed, price, fee)
        o = {"orderId": f"oid-{self._n}", "orderLinkId": link, "side": b["side"], "qty": b["qty"], "price": price,
             "fee": fee, "t": t, "filled": f"{filled:.3f}", "status": status, "reduceOnly": reduce_only}
        self.orders[link] = o
        self.executions.append({
            "symbol": self.symbol, "orderId": o["orderId"], "orderLinkId": link, "side": b["side"],
            "orderPrice": "0", "orderQty": b["qty"], "leavesQty": "0", "orderType": "Market", "execFee": f"{fee:.8f}",
            "execId": f"exec-{self._n:06d}", "execPrice": str(price), "execQty": o["filled"], "execType": "Trade",
            "execValue": f"{filled * price:.8f}", "execTime": str(t), "isMaker": False, "feeRate": str(self.fee_rate),
            "markPrice": str(price), "closedSize": "0", "seq": self._n, "createType": "CreateByUser"})
        return self._ok({"orderId": o["orderId"], "orderLinkId": link})

    def _book(self, qty: float, price: float, fee: float) -> None:
        self.fees += fee
        pos = self.position
        if pos == 0 or (pos > 0) == (qty > 0):
            new = pos + qty
            self.avg_price = (self.avg_price * abs(pos) + price * abs(qty)) / abs(new)
        else:
            closed = min(abs(qty), abs(pos))
            self.realised += closed * (price - self.avg_price) * (1 if pos > 0 else -1)
            new = pos + qty
            if abs(new) < 1e-12:
                new, self.avg_price = 0.0, 0.0
            elif (new > 0) != (pos > 0):
                self.avg_price = price
        self.position = round(new, 9)

    def _order_row(self, o: dict[str, Any]) -> dict[str, Any]:
        filled = float(o["filled"])
        if o.get("type") == "Limit":
            avg = o["cum_value"] / filled if filled else 0.0
            return {"orderId": o["orderId"], "orderLinkId": o["orderLinkId"], "symbol": self.symbol,
                    "price": str(o["price"]), "qty": o["qty"], "side": o["side"], "orderStatus": o["status"],
                    "avgPrice": str(avg) if filled else "", "cumExecQty": o["filled"],
                    "cumExecValue": f"{o['cum_value']:.8f}", "cumExecFee": f"{o['fee']:.8f}",
                    "leavesQty": f"{float(o['qty']) - filled:.3f}" if o["status"] in ("New", "PartiallyFilled")
                    else "0", "orderType": "Limit", "timeInForce": o["tif"], "createdTime": str(o["t"]),
                    "updatedTime": str(o["t_upd"]), "positionIdx": 0, "reduceOnly": bool(o.get("reduceOnly")),
                    "rejectReason": o["rejectReason"]}
        return {"orderId": o["orderId"], "orderLinkId": o["orderLinkId"], "symbol": self.symbol, "price": "0",
                "qty": o["qty"], "side": o["side"], "orderStatus": o["status"], "avgPrice": str(o["price"]),
                "cumExecQty": o["filled"], "cumExecValue": f"{filled * o['price']:.8f}",
                "cumExecFee": f"{o['fee']:.8f}",
                "leavesQty": "0", "orderType": "Market", "timeInForce": "IOC", "createdTime": str(o["t"]),
                "updatedTime": str(o["t"]), "positionIdx": 0, "reduceOnly": bool(o.get("reduceOnly"))}

    EXEC_SPAN_MS = 7 * 86_400_000  # "endTime - startTime <= 7 days"
    EXEC_HISTORY_MS = 730 * 86_400_000  # "Unified account supports getting the past 730 days historical trades data"

    def _execution_list(self, q: dict[str, Any]) -> tuple[int, Any]:
        """``GET /v5/execution/list`` as Bybit documents it (v5 "Get Trade History"): ``category`` required; ``limit``
        1..100, default 50 (outside -> 10001); rows sorted by ``execTime`` descending (ties: the newest booked first);
        neither ``startTime`` nor ``endTime`` -> the last 7 days; ``startTime`` only -> [startTime, startTime + 7
        days]; ``endTime`` only -> [endTime - 7 days, endTime]; both -> ``endTime - startTime <= 7 days`` (else
        10001; the real message text is not documented), both bounds inclusive here; executions older than 730 days
        are not served; ``execType``, ``symbol``, ``orderLinkId`` filter.  ``cursor``: the opaque ``nextPageCursor``
        of the previous page, valid only with the same query (another window, symbol, limit or filter -> 10001);
        with ``last_page_cursor`` (default) every non-empty page carries one, so a window ends with an empty page."""
        self.execution_requests.append(dict(q))

        def refuse(msg: str) -> tuple[int, Any]:
            return 200, {"retCode": 10001, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": self.now_ms()}

        if q.get("category") not in ("linear", "inverse", "spot", "option"):
            return refuse("params error: category is invalid")
        try:
            limit = int(q.get("limit", 50))
            start = None if q.get("startTime") in (None, "") else int(q["startTime"])
            end = None if q.get("endTime") in (None, "") else int(q["endTime"])
        except ValueError:
            return refuse("params error: limit/startTime/endTime must be integers")
        if not 1 <= limit <= 100:
            return refuse(f"params error: limit must be in [1, 100], got {limit}")
        now = self.now_ms()
        if start is None and end is None:
            start, end = now - self.EXEC_SPAN_MS, now
        elif end is None:
            end = start + self.EXEC_SPAN_MS
        elif start is None:
            start = end - self.EXEC_SPAN_MS
        if end < start:
            return refuse("params error: startTime must not be after endTime")
        if end - start > self.EXEC_SPAN_MS:
            return refuse("params error: endTime - startTime cannot exceed 7 days")
        start = max(start, now - self.EXEC_HISTORY_MS)
        key = "|".join(str(q.get(k, "")) for k in ("category", "symbol", "orderLinkId", "execType", "startTime",
                                                   "endTime", "limit"))
        off = 0
        if q.get("cursor"):
            cur = str(q["cursor"])
            off_s, _, sig = cur.partition(":")
            if not off_s.isdigit() or sig != f"{zlib.crc32(key.encode()):08x}":
                return refuse("params error: cursor is invalid for this query")
            off = int(off_s)
        rows = [e for e in self.executions
                if start <= int(e["execTime"]) <= end and q.get("symbol") in (None, "", e["symbol"])
                and q.get("orderLinkId") in (None, "", e["orderLinkId"])
                and q.get("execType") in (None, "", e["execType"])]
        rows = sorted(reversed(rows), key=lambda e: -int(e["execTime"]))  # newest first; ties: newest booked first
        page = rows[off: off + limit]
        more = off + limit < len(rows) or (self.last_page_cursor and bool(page))
        nxt = f"{off + len(page)}:{zlib.crc32(key.encode()):08x}" if more else ""
        return self._ok({"category": q.get("category"), "list": page, "nextPageCursor": nxt})
