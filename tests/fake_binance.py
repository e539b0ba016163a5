"""A fake Binance USDⓈ-M futures REST API on 127.0.0.1 for testing the real ``CcxtVenue("binanceusdm")`` (no mocks
of the adapter).  Sister of tests/fake_bybit.py: the same ``aiohttp.web`` server in its own thread and event loop,
the same bar clock (:meth:`FakeBinance.step` closes the next historical 1-minute bar, driven by the test or by
:meth:`FakeBinance.run_clock` on a timer) and the same kline fill rule for resting limit orders.  REST only (the venue polls klines on Binance; no WebSocket).

Routes (what ccxt 4.5 ``binanceusdm`` calls for CcxtVenue; the paths keep Binance's ``/fapi/v1``, ``/fapi/v2`` and
``/fapi/v3`` prefixes, so point every ``urls['api']`` entry's scheme and host at :attr:`FakeBinance.rest_url`):

* public: ``GET /fapi/v1/exchangeInfo`` (one PERPETUAL symbol, filters PRICE_FILTER ``tickSize`` 0.10, LOT_SIZE and
  MARKET_LOT_SIZE ``stepSize`` 0.001, MIN_NOTIONAL ``notional``), ``/fapi/v1/time``, ``/fapi/v1/klines`` (closed bars
  only, oldest first: the bars are historical, so a client deciding "closed" by the wall clock would take a forming
  bar for a closed one -- as in the Bybit fake), ``/fapi/v1/depth`` (``limit`` must be one of 5, 10, 20, 50, 100, 500,
  1000 like the real API, else -4021 "Invalid depth limit."), ``/fapi/v1/ticker/bookTicker``, ``/fapi/v1/premiumIndex``
  (``lastFundingRate`` = :attr:`funding_rate`);
* signed (``X-MBX-APIKEY`` header, ``timestamp``, optional ``recvWindow`` (default 5000 ms), ``signature`` = hex
  HMAC-SHA256 of the query string concatenated with the body, without the signature; Binance's SIGNED endpoint
  rule): ``GET /fapi/v3/account``, ``/fapi/v2/account``, ``/fapi/v3/positionRisk`` (only symbols with a position or
  open orders, as V3 does), ``/fapi/v2/positionRisk``, ``/fapi/v1/leverageBracket`` (ccxt loads it before
  positions), ``POST /fapi/v1/order``, ``GET /fapi/v1/order`` (``orderId`` or ``origClientOrderId``),
  ``DELETE /fapi/v1/order``, ``GET /fapi/v1/openOrders``, ``GET /fapi/v1/userTrades``,
  ``POST /fapi/v1/countdownCancelAll``.

Errors are Binance's ``{"code", "msg"}`` bodies (HTTP 400; 401 for key errors): no ``X-MBX-APIKEY`` -> -2014
"API-key format invalid."; an unknown key -> -2015 "Invalid API-key, IP, or permissions for action."; a wrong
signature -> -1022 "Signature for this request is not valid."; a timestamp more than 1 s ahead of the server clock
(``time.time() + time_offset_ms``) or older than ``recvWindow`` -> -1021; an unknown symbol -> -1121; a client id
outside ``^[.A-Z:/a-z0-9_-]{1,36}$`` -> -4015 "Client order id is not valid."; a client id the account already used
-> -4116 "clientOrderId is duplicated." (the fake refuses every known id, like tests/fake_bybit.py; Binance documents
uniqueness only "among open orders", so a client must never rely on -4116 for a filled order -- the runtime looks an
order up by id before any resend); quantity off the step -> -1111; price off the tick -> -4014; notional below
MIN_NOTIONAL without reduceOnly -> -4164; a reduceOnly order that would not reduce the position -> -2022
"ReduceOnly Order is rejected."; a GTX (post-only) order at or through the opposite touch -> -5022 "Due to the order
could not be executed as maker, the Post Only order will be rejected. The order will not be recorded in the order
history" (the real API's answer since 2023: the order is not booked at all; ``gtx_expires = True`` books it and
answers EXPIRED instead, the earlier behaviour); lookups of an unknown order -> -2013
"Order does not exist."; a cancel of an order that is unknown, filled or already cancelled -> -2011 "Unknown order
sent.".

Orders: ``MARKET`` fills at once at the opposite touch with the taker fee (``newOrderRespType=RESULT``, which ccxt
sends for contracts, answers the final state; ``ACK`` answers status NEW); a ``LIMIT`` order (``timeInForce`` GTC or
GTX) rests as NEW, except a marketable GTC limit, which fills at once at the touch as a taker.  Each
:meth:`FakeBinance.step` matches resting orders against the bar that closes: a buy fills only when the bar's low
trades *through* its price (low < price; a sell: high > price; touching is no fill), at its price, with
``maker_fee_rate``, for at most ``limit_fill_share`` of the order's quantity per bar (rounded down to the lot, at least
one lot; the rest keeps resting, PARTIALLY_FILLED).  Every fill is one trade in ``/fapi/v1/userTrades``
(``commission`` >= 0 in USDT, ``maker``, ``realizedPnl``; trades carry ``orderId``, not the client id -- as Binance);
``userTrades`` pages as Binance documents it (limit <= 1000, 7-day spans, fromId; see ``_user_trades``), and
:meth:`FakeBinance.add_trades` books thousands of fills, or fills weeks old, at once (paging tests).
The book is the last close (rounded to the tick) -/+ ``spread_ticks`` ticks, 5 BTC a side, or what
:meth:`set_book` pins; ``cross_next_post_only = n`` makes the next n GTX orders find the book moved through them.

Dead-man's switch: ``POST /fapi/v1/countdownCancelAll`` {symbol, countdownTime ms} arms (or, with 0, disarms) a
countdown per symbol; once ``countdownTime`` ms pass without a new call, every open order of the symbol is cancelled
(checked on every request and step, against the wall clock); :meth:`FakeBinance.fire_countdown` expires the armed
countdowns now (the bench went away for longer than the window).

Faults: :meth:`FakeBinance.inject_rest` ("drop": processed, then the connection is dropped without a response;
"5xx": HTTP 503, nothing done; "429": HTTP 429 with code -1003, nothing done; "margin": -2019 "Margin is
insufficient." on ``/fapi/v1/order`` only) arms faults that fire on the next requests that arrive for a path
(optionally one method only: ``method="POST"`` on ``/fapi/v1/order`` hits the next creates, not lookups or
cancels), whenever they come; :meth:`FakeBinance.faults_pending` counts those armed and not yet served, so a test
driven by a timer waits for its faults to be consumed instead of guessing when the client will send.
:meth:`FakeBinance.run_clock` with ``paced_by`` closes a bar only ``interval_s`` after the client signalled it
processed the previous one (a loaded machine slows the bars down with the client instead of making it skip them);
``paced_by_klines`` paces it by the client's klines polls instead (a client in another process, killed and
restarted: the clock waits for it).  :attr:`FakeBinance.creates` logs every order create (client id, outcome).

Wallet: starting ``balance`` + realised P&L - commissions (average-cost method), one-way mode (``positionSide``
BOTH), leverage 20.  Times are ms UTC; quantities base units; money USDT.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from loopback import start_server
from fake_bybit import sample_bars

__all__ = ["LOT", "TICK", "FakeBinance", "sample_bars"]

LOT = 0.001
TICK = 0.10
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
OPEN = ("NEW", "PARTIALLY_FILLED")
LEVERAGE = 20


class _ApiError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def _true(v: Any) -> bool:
    return str(v).lower() == "true"


class FakeBinance:
    """The fake exchange (see module docstring).

    bars: [(open_time ms, open, high, low, close, volume)] oldest first, 60_000 ms apart; history: bars closed at start
    (>= 1); symbol: the one USDⓈ-M perpetual served; balance: starting wallet, USDT; taker_fee_rate / maker_fee_rate:
    fees as fractions of notional (the futures preset: 5 bp / 2 bp); min_notional: MIN_NOTIONAL, USDT; api_key /
    api_secret: the only key pair accepted.  Use :meth:`start` / :meth:`stop` (or ``with``).
    """

    def __init__(self, bars: list[tuple], *, history: int = 400, symbol: str = "BTCUSDT", balance: float = 10_000.0,
                 taker_fee_rate: float = 0.0005, maker_fee_rate: float = 0.0002, spread_ticks: int = 1,
                 limit_fill_share: float = 1.0, min_notional: float = 100.0, funding_rate: float = 0.0001,
                 api_key: str = "test-key", api_secret: str = "test-secret") -> None:
        if not 1 <= history <= len(bars):
            raise ValueError(f"history must be in 1..{len(bars)}, got {history}")
        self.bars = [tuple(b) for b in bars]
        self.symbol = symbol
        self.taker_fee_rate = taker_fee_rate
        self.maker_fee_rate = maker_fee_rate
        self.spread_ticks = spread_ticks
        self.limit_fill_share = limit_fill_share
        self.min_notional = min_notional
        self.funding_rate = funding_rate
        self.api_key, self.api_secret = api_key, api_secret
        self.balance0 = balance
        self.n_closed = history
        self.time_offset_ms = 0  # the server clock minus the wall clock (tests of -1021)
        self.lock = threading.RLock()
        self.paths: list[tuple[str, str]] = []  # (method, path) of every request
        self.orders: dict[str, dict[str, Any]] = {}  # clientOrderId -> order
        self.trades: list[dict[str, Any]] = []  # oldest first
        self.position = 0.0  # net, signed base units
        self.avg_price = 0.0
        self.realised = 0.0
        self.fees = 0.0
        self.book_override: tuple[float, float] | None = None
        self.cross_next_post_only = 0
        self.gtx_expires = False  # True: a crossing GTX order is booked and answered EXPIRED (Binance before -5022)
        self.countdowns: dict[str, tuple[int, int]] = {}  # symbol -> (countdownTime ms, armed at server ms)
        self.countdown_calls: list[tuple[str, int]] = []  # (symbol, countdownTime) of every call
        self.countdown_fired = 0  # countdowns that expired (orders cancelled)
        self.post_only_rejects = 0
        self.cancels = 0
        self.auth_failures: list[int] = []  # Binance codes of refused signed requests
        self.rest_faults: dict[str, deque[str]] = {}  # path, or "METHOD path", -> armed faults, next first
        self.faults_hit: list[tuple[str, str]] = []  # (path, kind) of REST faults served
        self.fault_log: list[tuple[str, str, str]] = []  # (method, path, kind) of REST faults served
        self.creates: list[tuple[str, str]] = []  # (newClientOrderId, "ok" or the Binance error code) of every create
        self._klines_served = threading.Event()  # a klines request was served since the last bar closed
        self._n = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Serve on 127.0.0.1 (a free port) in a daemon thread; returns the port."""
        return start_server(self, lambda app: app.router.add_route("*", "/{tail:.*}", self._rest), "fake-binance")

    def stop(self) -> None:
        """Stop the clock and the server, join their threads."""
        self.stop_clock()
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FakeBinance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ clock, book, state

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.time_offset_ms

    @property
    def remaining(self) -> int:
        """Bars not yet closed."""
        return len(self.bars) - self.n_closed

    def step(self, n: int = 1) -> int:
        """Close the next ``n`` bars (resting orders are matched against each); returns how many were closed."""
        done = 0
        with self.lock:
            for _ in range(n):
                if self.n_closed >= len(self.bars):
                    break
                self._expire_countdowns()
                self.n_closed += 1
                self._match_resting(self.bars[self.n_closed - 1])
                self._klines_served.clear()  # a klines request from now on has seen this bar
                done += 1
        return done

    def run_clock(self, interval_s: float, *, paced_by: threading.Event | None = None,
                  paced_by_klines: bool = False) -> None:
        """Close one bar every ``interval_s`` seconds (a daemon thread) until the bars run out or :meth:`stop_clock`.

        paced_by: the client sets this event when it is ready for the next bar (it processed the last one); each bar
        then closes ``interval_s`` after the event was set (the event is cleared when it is taken), never earlier --
        the clock runs on its own thread and timer, but cannot get ahead of a client slowed down by machine load.
        paced_by_klines: the same pacing across processes (a client in a subprocess, killed and restarted): each bar
        closes ``interval_s`` after the first ``/fapi/v1/klines`` request served since the previous bar closed (the
        client has seen the newest bar; the poll feed asks only while it waits for the next one), so the clock pauses
        while no client is alive and never runs more than one bar ahead of the client's polls."""
        self.stop_clock()
        stop = self._clock_stop = threading.Event()

        def ready() -> bool:
            for ev in ((paced_by,) if paced_by is not None else ()) + ((self._klines_served,) if paced_by_klines else ()):
                while not ev.wait(0.05):
                    if stop.is_set():
                        return False
                if ev is paced_by:
                    paced_by.clear()
            return True

        def tick() -> None:
            while ready() and not stop.wait(interval_s) and self.step() == 1:
                pass

        self._clock = threading.Thread(target=tick, name="fake-binance-clock", daemon=True)
        self._clock.start()

    def stop_clock(self) -> None:
        if getattr(self, "_clock", None) is not None:
            self._clock_stop.set()
            self._clock.join(5)
            self._clock = None

    def last(self) -> float:
        return self.bars[self.n_closed - 1][4]

    def book(self) -> tuple[float, float]:
        """(best bid, best ask): the last close at the tick -/+ ``spread_ticks`` ticks, or what :meth:`set_book` set."""
        with self.lock:
            if self.book_override is not None:
                return self.book_override
            mid = round(self.last() / TICK) * TICK
            return round(mid - self.spread_ticks * TICK, 2), round(mid + self.spread_ticks * TICK, 2)

    def set_book(self, bid: float | None, ask: float | None = None) -> None:
        """Pin the touch to (bid, ask) (None: back to the close -/+ spread_ticks)."""
        with self.lock:
            self.book_override = None if bid is None else (float(bid), float(ask))

    def open_orders(self) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders.values() if o["status"] in OPEN]

    def inject_rest(self, kind: str, path: str = "/fapi/v1/order", n: int = 1, *, method: str | None = None) -> None:
        """Arm ``n`` faults ("drop" | "5xx" | "429" | "margin", see module docstring) for the next requests to
        ``path`` (``"*"``: any path) that arrive, whenever they come; method: only requests with this HTTP method
        ("POST": creates on ``/fapi/v1/order``), None: any.  A request takes a fault armed for its method and path
        first, then one for its path, then one for ``"*"``."""
        if kind not in ("drop", "5xx", "429", "margin"):
            raise ValueError(kind)
        if kind == "margin" and path != "/fapi/v1/order":
            raise ValueError("margin applies to /fapi/v1/order only")
        key = path if method is None else f"{method.upper()} {path}"
        with self.lock:
            self.rest_faults.setdefault(key, deque()).extend([kind] * n)

    def faults_pending(self) -> int:
        """Faults armed by :meth:`inject_rest` and not served yet."""
        with self.lock:
            return sum(len(q) for q in self.rest_faults.values())

    def fire_countdown(self) -> int:
        """Every armed countdown expires now (the client stayed away past its window): their symbols' open orders are
        cancelled; returns how many orders.  raises RuntimeError when none is armed."""
        with self.lock:
            if not self.countdowns:
                raise RuntimeError("countdownCancelAll was not armed")
            return self._expire_countdowns(force=True)

    def add_trades(self, times_ms: list[int], *, side: str = "BUY", qty: float = LOT, price: float | None = None,
                   cid: str | None = None) -> str:
        """Book a GTC limit order (client id ``cid``, default ``hist-<n>``) filled by one maker trade of ``qty`` at
        each of ``times_ms`` (server ms, ascending, none before the newest trade: trade ids ascend with time, as
        Binance's), at ``price`` (default the last close at the tick); position and wallet follow.  For paging tests
        (thousands of fills, fills weeks old) without driving orders one by one.  returns the client id."""
        times = [int(t) for t in times_ms]
        with self.lock:
            if times != sorted(times) or (self.trades and times and times[0] < self.trades[-1]["time"]):
                raise ValueError("trade times must ascend from the newest trade's")
            px = round(round((self.last() if price is None else price) / TICK) * TICK, 2)
            self._n += 1
            cid = cid or f"hist-{self._n}"
            now = self.now_ms()
            o = {"orderId": 8_000_000 + self._n, "clientOrderId": cid, "side": side, "type": "LIMIT", "tif": "GTC",
                 "qty": round(qty * len(times), 9), "price": px, "filled": 0.0, "cum_quote": 0.0, "status": "NEW",
                 "reduceOnly": False, "t": times[0] if times else now, "t_upd": now}
            self.orders[cid] = o
            for t in times:
                self._book_fill(o, qty, px, maker=True, time_ms=t)
        return cid

    def state(self) -> dict[str, Any]:
        """Exchange-side truth: {"orders": {clientOrderId: order}, "trades": {trade id (str): trade}, "position": net
        signed base units, "wallet": USDT, "fees": USDT}."""
        with self.lock:
            return {"orders": {k: dict(v) for k, v in self.orders.items()},
                    "trades": {str(t["id"]): dict(t) for t in self.trades},
                    "position": self.position, "wallet": self.balance0 + self.realised - self.fees, "fees": self.fees}

    def _expire_countdowns(self, force: bool = False) -> int:
        now, n = self.now_ms(), 0
        for sym, (ms, armed) in list(self.countdowns.items()):
            if force or now >= armed + ms:
                del self.countdowns[sym]
                self.countdown_fired += 1
                for o in self.open_orders():
                    o["status"], o["t_upd"] = "CANCELED", now
                    n += 1
        return n

    # ------------------------------------------------------------------ accounting

    def _book_fill(self, o: dict[str, Any], qty: float, price: float, maker: bool, time_ms: int | None = None) -> None:
        """One trade of order ``o``: ``qty`` > 0 base units at ``price`` (at ``time_ms``, default now); updates the
        order, position and wallet."""
        buy = o["side"] == "BUY"
        fee = round(qty * price * (self.maker_fee_rate if maker else self.taker_fee_rate), 8)
        signed = qty if buy else -qty
        pos, realised = self.position, 0.0
        if pos == 0 or (pos > 0) == (signed > 0):
            new = pos + signed
            self.avg_price = (self.avg_price * abs(pos) + price * qty) / abs(new)
        else:
            closed = min(qty, abs(pos))
            realised = closed * (price - self.avg_price) * (1 if pos > 0 else -1)
            new = pos + signed
            if abs(new) < 1e-12:
                new, self.avg_price = 0.0, 0.0
            elif (new > 0) != (pos > 0):
                self.avg_price = price
        self.position = round(new, 9)
        self.realised += realised
        self.fees += fee
        self._n += 1
        now = self.now_ms()
        o["filled"] = round(o["filled"] + qty, 9)
        o["cum_quote"] += qty * price
        o["status"] = "FILLED" if o["filled"] >= o["qty"] - 1e-12 else "PARTIALLY_FILLED"
        o["t_upd"] = now
        self.trades.append({
            "buyer": buy, "commission": f"{fee:.8f}", "commissionAsset": "USDT", "id": 100_000 + self._n,
            "maker": maker, "orderId": o["orderId"], "price": f"{price:.2f}", "qty": f"{qty:.3f}",
            "quoteQty": f"{qty * price:.8f}", "realizedPnl": f"{realised:.8f}", "side": o["side"],
            "positionSide": "BOTH", "symbol": self.symbol, "time": now if time_ms is None else int(time_ms)})

    def _match_resting(self, bar: tuple) -> None:
        """The kline trade-through rule against the bar that just closed (module docstring)."""
        _t, _o, h, lo, _c, _v = bar
        for o in self.open_orders():
            px, buy = o["price"], o["side"] == "BUY"
            if not ((lo < px) if buy else (h > px)):
                continue
            left = round(o["qty"] - o["filled"], 9)
            share = max(1, int(round(o["qty"] * self.limit_fill_share / LOT, 9))) * LOT
            self._book_fill(o, round(min(left, share), 9), px, maker=True)

    # ------------------------------------------------------------------ HTTP

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        raw_q = request.query_string
        raw_b = (await request.read()).decode() if request.can_read_body else ""
        path = request.path
        with self.lock:
            self.paths.append((request.method, path))
            faults = (self.rest_faults.get(f"{request.method} {path}") or self.rest_faults.get(path)
                      or self.rest_faults.get("*"))
            fault = faults.popleft() if faults else None
            if fault:
                self.faults_hit.append((path, fault))
                self.fault_log.append((request.method, path, fault))
        if fault == "5xx":
            return web.Response(status=503, text="<html>503 Service Temporarily Unavailable</html>",
                                content_type="text/html")
        if fault == "429":
            return web.json_response({"code": -1003, "msg": "Too many requests; current limit of IP is 2400 requests "
                                      "per minute."}, status=429)
        try:
            with self.lock:
                self._expire_countdowns()
                if fault == "margin":
                    raise _ApiError(-2019, "Margin is insufficient.")
                payload = self._handle(request.method, path, raw_q, raw_b, request.headers)
        except _ApiError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)
        if fault == "drop":  # processed, then the connection goes away without a response
            request.transport.abort()
            return web.Response(status=204)
        return web.json_response(payload)

    def _signed(self, raw_q: str, raw_b: str, headers: Any) -> dict[str, str]:
        """Check a SIGNED request (module docstring); returns its parameters."""
        key = headers.get("X-MBX-APIKEY")
        try:
            if not key:
                raise _ApiError(-2014, "API-key format invalid.", 401)
            if key != self.api_key:
                raise _ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            params = dict(parse_qsl(raw_q, keep_blank_values=True))
            params.update(parse_qsl(raw_b, keep_blank_values=True))
            sig = params.pop("signature", None)
            if not sig:
                raise _ApiError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
            unsigned = "".join(re.sub(r"(^|&)signature=[^&]*", "", s) for s in (raw_q, raw_b))
            want = hmac.new(self.api_secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, sig.lower()):
                raise _ApiError(-1022, "Signature for this request is not valid.")
        except _ApiError as exc:
            self.auth_failures.append(exc.code)
            raise
        try:
            ts, window = int(params.get("timestamp", "")), int(params.get("recvWindow", 5000))
        except ValueError:
            raise _ApiError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
        now = self.now_ms()
        if ts > now + 1000:
            raise _ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            raise _ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")
        return params

    def _symbol(self, p: dict[str, str], required: bool = True) -> None:
        s = p.get("symbol")
        if s is None and not required:
            return
        if s is None:
            raise _ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if s != self.symbol:
            raise _ApiError(-1121, "Invalid symbol.")

    def _handle(self, method: str, path: str, raw_q: str, raw_b: str, headers: Any) -> Any:
        public = {("GET", "/fapi/v1/exchangeInfo"), ("GET", "/fapi/v1/time"), ("GET", "/fapi/v1/klines"),
                  ("GET", "/fapi/v1/depth"), ("GET", "/fapi/v1/ticker/bookTicker"), ("GET", "/fapi/v1/premiumIndex")}
        if (method, path) in public:
            p = dict(parse_qsl(raw_q))
            if path == "/fapi/v1/exchangeInfo":
                return self._exchange_info()
            if path == "/fapi/v1/time":
                return {"serverTime": self.now_ms()}
            self._symbol(p)
            if path == "/fapi/v1/klines":
                rows = self._klines(p)
                self._klines_served.set()
                return rows
            bid, ask = self.book()
            if path == "/fapi/v1/depth":
                limit = int(p.get("limit", 500))
                if limit not in DEPTH_LIMITS:
                    raise _ApiError(-4021, f"'{limit}' is not valid depth limit.")
                now = self.now_ms()
                return {"lastUpdateId": 1_000 + self._n, "E": now, "T": now,
                        "bids": [[f"{bid:.2f}", "5.000"]], "asks": [[f"{ask:.2f}", "5.000"]]}
            if path == "/fapi/v1/ticker/bookTicker":
                return {"symbol": self.symbol, "bidPrice": f"{bid:.2f}", "bidQty": "5.000", "askPrice": f"{ask:.2f}",
                        "askQty": "5.000", "time": self.now_ms(), "lastUpdateId": 1_000 + self._n}
            mark = f"{self.last():.2f}"
            return {"symbol": self.symbol, "markPrice": mark, "indexPrice": mark, "estimatedSettlePrice": mark,
                    "lastFundingRate": f"{self.funding_rate:.8f}", "interestRate": "0.00010000",
                    "nextFundingTime": (self.now_ms() // 28_800_000 + 1) * 28_800_000, "time": self.now_ms()}
        known = {("GET", "/fapi/v2/account"), ("GET", "/fapi/v3/account"), ("GET", "/fapi/v2/positionRisk"),
                 ("GET", "/fapi/v3/positionRisk"), ("GET", "/fapi/v1/leverageBracket"), ("POST", "/fapi/v1/order"),
                 ("GET", "/fapi/v1/order"), ("DELETE", "/fapi/v1/order"), ("GET", "/fapi/v1/openOrders"),
                 ("GET", "/fapi/v1/userTrades"), ("POST", "/fapi/v1/countdownCancelAll")}
        if (method, path) not in known:
            raise _ApiError(-5000, f"Path {path}, Method {method} is invalid", 404)
        p = self._signed(raw_q, raw_b, headers)
        if path.endswith("/account"):
            return self._account(v3=path.startswith("/fapi/v3"))
        if path.endswith("/positionRisk"):
            self._symbol(p, required=False)
            return self._position_rows(v3=path.startswith("/fapi/v3"))
        if path == "/fapi/v1/leverageBracket":
            return [{"symbol": self.symbol, "notionalCoef": 1.0, "brackets": [
                {"bracket": 1, "initialLeverage": 125, "notionalCap": 50_000, "notionalFloor": 0,
                 "maintMarginRatio": 0.004, "cum": 0.0}]}]
        self._symbol(p)
        if path == "/fapi/v1/order" and method == "POST":
            try:
                row = self._create(p)
            except _ApiError as exc:
                self.creates.append((str(p.get("newClientOrderId", "")), str(exc.code)))
                raise
            self.creates.append((str(p.get("newClientOrderId", "")), "ok"))
            return row
        if path == "/fapi/v1/order":
            o = self._find(p)
            if o is None and method == "GET":
                raise _ApiError(-2013, "Order does not exist.")
            if o is None:
                raise _ApiError(-2011, "Unknown order sent.")
            if method == "GET":
                return self._order_row(o, with_time=True)
            if o["status"] not in OPEN:
                raise _ApiError(-2011, "Unknown order sent.")
            o["status"], o["t_upd"] = "CANCELED", self.now_ms()
            self.cancels += 1
            return self._order_row(o)
        if path == "/fapi/v1/openOrders":
            return [self._order_row(o, with_time=True) for o in self.open_orders()]
        if path == "/fapi/v1/userTrades":
            return self._user_trades(p)
        ms = int(p.get("countdownTime", -1))  # /fapi/v1/countdownCancelAll
        if ms < 0:
            raise _ApiError(-1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or malformed.")
        self.countdown_calls.append((self.symbol, ms))
        if ms == 0:
            self.countdowns.pop(self.symbol, None)
        else:
            self.countdowns[self.symbol] = (ms, self.now_ms())
        return {"symbol": self.symbol, "countdownTime": str(ms)}

    # ------------------------------------------------------------------ endpoints

    def _exchange_info(self) -> dict[str, Any]:
        return {"timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                "limit": 2400},
                               {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
                "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True,
                                                   "autoAssetExchange": "-10000"}],
                "symbols": [{
                    "symbol": self.symbol, "pair": self.symbol, "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
                    "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000", "baseAsset": "BTC",
                    "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3,
                    "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                    "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
                        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": f"{self.min_notional:g}"},
                        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                         "multiplierDecimal": "4"}],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                                   "TRAILING_STOP_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"], "permissionSets": ["GRID", "COPY"]}]}

    def _klines(self, p: dict[str, str]) -> list[list[Any]]:
        if p.get("interval") != "1m":
            raise _ApiError(-1120, "Invalid interval.")
        limit = max(1, min(1500, int(p.get("limit", 500))))
        start, end = int(p.get("startTime", 0)), int(p.get("endTime", 2**62))
        rows = [b for b in self.bars[: self.n_closed] if start <= b[0] <= end]
        rows = rows[:limit] if "startTime" in p else rows[-limit:]
        return [[t, f"{o:.2f}", f"{h:.2f}", f"{lo:.2f}", f"{c:.2f}", f"{v:.3f}", t + 59_999, f"{v * c:.4f}", 100,
                 f"{v / 2:.3f}", f"{v * c / 2:.4f}", "0"] for t, o, h, lo, c, v in rows]

    def _account(self, v3: bool) -> dict[str, Any]:
        mark = self.last()
        wallet = self.balance0 + self.realised - self.fees
        upl = self.position * (mark - self.avg_price)
        im = abs(self.position) * mark / LEVERAGE
        oim = sum((o["qty"] - o["filled"]) * o["price"] for o in self.open_orders()) / LEVERAGE
        avail = wallet + upl - im - oim
        f = lambda x: f"{x:.8f}"
        asset = {"asset": "USDT", "walletBalance": f(wallet), "unrealizedProfit": f(upl), "marginBalance": f(wallet + upl),
                 "maintMargin": f(im * 0.1), "initialMargin": f(im + oim), "positionInitialMargin": f(im),
                 "openOrderInitialMargin": f(oim), "crossWalletBalance": f(wallet), "crossUnPnl": f(upl),
                 "availableBalance": f(avail), "maxWithdrawAmount": f(avail), "updateTime": self.now_ms()}
        if not v3:
            asset["marginAvailable"] = True
        return {"totalInitialMargin": f(im + oim), "totalMaintMargin": f(im * 0.1), "totalWalletBalance": f(wallet),
                "totalUnrealizedProfit": f(upl), "totalMarginBalance": f(wallet + upl),
                "totalPositionInitialMargin": f(im), "totalOpenOrderInitialMargin": f(oim),
                "totalCrossWalletBalance": f(wallet), "totalCrossUnPnl": f(upl), "availableBalance": f(avail),
                "maxWithdrawAmount": f(avail), "assets": [asset],
                "positions": [{"symbol": r["symbol"], "positionSide": "BOTH", "positionAmt": r["positionAmt"],
                               "unrealizedProfit": r["unRealizedProfit"], "isolatedMargin": "0", "notional": r["notional"],
                               "isolatedWallet": "0", "initialMargin": r["initialMargin"],
                               "maintMargin": r["maintMargin"], "updateTime": r["updateTime"]}
                              for r in self._position_rows(v3=True)]}

    def _position_rows(self, v3: bool) -> list[dict[str, Any]]:
        if v3 and self.position == 0 and not self.open_orders():
            return []  # V3 answers only symbols with a position or open orders
        mark = self.last()
        upl = self.position * (mark - self.avg_price)
        notional = self.position * mark
        row = {"symbol": self.symbol, "positionSide": "BOTH", "positionAmt": f"{self.position:.3f}",
               "entryPrice": f"{self.avg_price:.8f}", "breakEvenPrice": f"{self.avg_price:.8f}",
               "markPrice": f"{mark:.8f}", "unRealizedProfit": f"{upl:.8f}", "liquidationPrice": "0",
               "isolatedMargin": "0", "notional": f"{notional:.8f}", "marginAsset": "USDT", "isolatedWallet": "0",
               "initialMargin": f"{abs(notional) / LEVERAGE:.8f}", "maintMargin": f"{abs(notional) * 0.004:.8f}",
               "positionInitialMargin": f"{abs(notional) / LEVERAGE:.8f}", "openOrderInitialMargin": "0", "adl": 0,
               "bidNotional": "0", "askNotional": "0", "updateTime": self.now_ms()}
        if not v3:
            row.update(leverage=str(LEVERAGE), marginType="cross", isAutoAddMargin="false", maxNotionalValue="5000000")
        return [row]

    def _find(self, p: dict[str, str]) -> dict[str, Any] | None:
        cid, oid = p.get("origClientOrderId"), p.get("orderId")
        if cid is None and oid is None:
            raise _ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if cid is not None:
            return self.orders.get(cid)
        return next((o for o in self.orders.values() if str(o["orderId"]) == str(oid)), None)

    def _create(self, p: dict[str, str]) -> dict[str, Any]:
        side, typ = p.get("side"), p.get("type")
        if side not in ("BUY", "SELL"):
            raise _ApiError(-1117, "Invalid side.")
        if typ not in ("MARKET", "LIMIT"):
            raise _ApiError(-1116, "Invalid orderType.")
        cid = p.get("newClientOrderId") or f"fake-{self._n + 1}"
        if not CLIENT_ID.match(cid):
            raise _ApiError(-4015, "Client order id is not valid.")
        if cid in self.orders:
            raise _ApiError(-4116, "clientOrderId is duplicated.")
        try:
            qty = float(p.get("quantity", ""))
        except ValueError:
            raise _ApiError(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.") from None
        steps = round(qty / LOT)
        if steps < 1 or abs(steps * LOT - qty) > 1e-9:
            raise _ApiError(-1111, "Precision is over the maximum defined for this asset.")
        buy, reduce_only = side == "BUY", _true(p.get("reduceOnly"))
        if reduce_only and (self.position == 0 or (self.position > 0) == buy or qty > abs(self.position) + 1e-9):
            raise _ApiError(-2022, "ReduceOnly Order is rejected.")
        bid, ask = self.book()
        tif = "GTC"
        price = 0.0
        if typ == "LIMIT":
            tif = p.get("timeInForce", "")
            if not tif:
                raise _ApiError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
            if tif not in ("GTC", "GTX"):
                raise _ApiError(-1116, f"Invalid timeInForce (the fake serves GTC and GTX): {tif}.")
            try:
                price = float(p.get("price", ""))
            except ValueError:
                raise _ApiError(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.") from None
            if price <= 0 or abs(round(price / TICK) * TICK - price) > 1e-9:
                raise _ApiError(-4014, "Price not increased by tick size.")
        ref = price if typ == "LIMIT" else (ask if buy else bid)
        if not reduce_only and qty * ref < self.min_notional - 1e-9:
            raise _ApiError(-4164, f"Order's notional must be no smaller than {self.min_notional:g} (unless you choose "
                            "reduce only).")
        crosses = typ == "LIMIT" and (price >= ask if buy else price <= bid)
        if tif == "GTX" and self.cross_next_post_only > 0:  # the book moved between the client's look and its order
            self.cross_next_post_only -= 1
            crosses = True
        if tif == "GTX" and crosses and self.gtx_expires:
            self.post_only_rejects += 1
            self._n += 1
            now = self.now_ms()
            o = {"orderId": 8_000_000 + self._n, "clientOrderId": cid, "side": side, "type": typ, "tif": tif,
                 "qty": round(qty, 9), "price": price, "filled": 0.0, "cum_quote": 0.0, "status": "EXPIRED",
                 "reduceOnly": reduce_only, "t": now, "t_upd": now}
            self.orders[cid] = o
            return self._order_row(o)
        if tif == "GTX" and crosses:
            self.post_only_rejects += 1
            raise _ApiError(-5022, "Due to the order could not be executed as maker, the Post Only order will be "
                            "rejected. The order will not be recorded in the order history")
        self._n += 1
        now = self.now_ms()
        o = {"orderId": 8_000_000 + self._n, "clientOrderId": cid, "side": side, "type": typ, "tif": tif,
             "qty": round(qty, 9), "price": price, "filled": 0.0, "cum_quote": 0.0, "status": "NEW",
             "reduceOnly": reduce_only, "t": now, "t_upd": now}
        self.orders[cid] = o
        if typ == "MARKET" or crosses:  # a taker at the touch
            self._book_fill(o, o["qty"], ask if buy else bid, maker=False)
        if p.get("newOrderRespType", "ACK") == "ACK":
            return {**self._order_row(o), "status": "NEW", "executedQty": "0", "cumQty": "0", "cumQuote": "0",
                    "avgPrice": "0.00"}
        return self._order_row(o)

    def _order_row(self, o: dict[str, Any], with_time: bool = False) -> dict[str, Any]:
        avg = o["cum_quote"] / o["filled"] if o["filled"] else 0.0
        row = {"orderId": o["orderId"], "symbol": self.symbol, "status": o["status"], "clientOrderId": o["clientOrderId"],
               "price": f"{o['price']:.2f}", "avgPrice": f"{avg:.5f}", "origQty": f"{o['qty']:.3f}",
               "executedQty": f"{o['filled']:.3f}", "cumQty": f"{o['filled']:.3f}", "cumQuote": f"{o['cum_quote']:.5f}",
               "timeInForce": o["tif"], "type": o["type"], "reduceOnly": o["reduceOnly"], "closePosition": False,
               "side": o["side"], "positionSide": "BOTH", "stopPrice": "0.00", "workingType": "CONTRACT_PRICE",
               "priceProtect": False, "origType": o["type"], "priceMatch": "NONE",
               "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "updateTime": o["t_upd"]}
        if with_time:
            row["time"] = o["t"]
        return row

    def _user_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/userTrades`` as Binance documents it (USDⓈ-M "Account Trade List"): ``limit`` default 500,
        max 1000; rows ordered by trade id; ``fromId`` with ``startTime`` or ``endTime`` -> -4133; ``endTime -
        startTime`` over 7 days -> -4166; neither time -> the last 7 days ("Default gets most recent trades": without
        ``fromId`` the most recent ``limit`` rows, with it the first ``limit`` rows from that id -- the literal reading
        of the docs, under which fromId never reaches past the last 7 days); ``startTime`` only -> 7 days from it,
        ``endTime`` only -> the 7 days before it, the earliest ``limit`` rows of the span first.  Not modelled: "only
        the past 6 months" (the client never asks for more)."""
        limit = max(1, min(1000, int(p.get("limit", 500))))
        start, end = p.get("startTime"), p.get("endTime")
        if "fromId" in p and (start or end):
            raise _ApiError(-4133, "fromId cannot be sent with startTime or endTime.")
        latest = start is None and end is None and "fromId" not in p
        if start is None and end is None:
            end = self.now_ms()
            start = end - 7 * 86_400_000
        elif start is None:
            start = int(end) - 7 * 86_400_000
        elif end is None:
            end = int(start) + 7 * 86_400_000
        start, end = int(start), int(end)
        if end - start > 7 * 86_400_000:
            raise _ApiError(-4166, "The time between startTime and endTime cannot be longer than 7 days.")
        rows = sorted((t for t in self.trades if start <= t["time"] <= end and t["id"] >= int(p.get("fromId", 0))),
                      key=lambda t: t["id"])
        return rows[-limit:] if latest else rows[:limit]
