"""A loopback fake of the public market-data feeds ``crucible record`` reads: Binance USDⓈ-M and Bybit v5.

One ``aiohttp.web`` server on 127.0.0.1 in its own thread and event loop serves real-format messages (the
formats ccxt 4.5 parses, from its ``pro/binance.py`` / ``pro/bybit.py`` and the exchanges' docs):

* **binanceusdm** — REST ``GET /fapi/v1/exchangeInfo`` (markets) and ``GET /fapi/v1/depth?symbol&limit``
  (``{"lastUpdateId", "E", "T", "bids", "asks"}``, the snapshot of the book's current state); WebSocket
  ``/public/ws/<n>`` (ccxt rewrites the ``/ws`` base to the ``public`` category): ``{"method": "SUBSCRIBE",
  "params": ["btcusdt@depth@100ms" | "btcusdt@trade"], "id"}`` is acknowledged with ``{"result": null, "id"}``;
  pushes are ``depthUpdate`` diffs ``{"e", "E", "T", "s", "U", "u", "pu", "b", "a"}`` (each update advances
  the update id by one: ``U = u = pu + 1``) and raw trades ``{"e": "trade", "E", "T", "s", "t", "p", "q",
  "X": "MARKET", "m"}``.
* **bybit** — REST ``GET /v5/market/instruments-info`` (linear markets); WebSocket ``/v5/public/linear``:
  ``{"op": "subscribe", "args": ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"], "req_id"}`` is
  acknowledged, an order-book subscription gets a ``snapshot`` of the top 50 levels at once, then
  ``delta`` messages whose ``u`` increases by one; trades ``{"topic": "publicTrade.BTCUSDT", "type":
  "snapshot", "ts", "data": [{"T", "s", "S", "v", "p", "L", "i", "BT"}]}``; ``{"op": "ping"}`` is answered.

The book model is exact: :meth:`FakeL2.update` changes levels (size 0 deletes), advances the update id
and remembers the state at every id (:meth:`FakeL2.state`, top ``n`` levels) so a test can check each
recorded row against the state the exchange had at that id; ``ts_offset_ms`` shifts the exchange's
clock.  Faults: ``update(..., send=False)`` (a lost
message: a sequence gap for the client), :meth:`FakeL2.disconnect` (every WebSocket closed), and
``replay_trades`` (on every new trade subscription the last k trades are sent again, as an exchange or a
proxy may after a reconnect) and ``hold_subscriptions`` (new subscriptions wait unanswered while True).  Prices quote per base, sizes base units, times ms UTC.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["FakeL2"]


class FakeL2:
    """Fake public feed of ``venue`` ("binanceusdm" | "bybit") for ``symbols`` (see module docstring)."""

    def __init__(self, venue: str, symbols: tuple[str, ...] = ("BTCUSDT",), bybit_depth: int = 50) -> None:
        self.venue = venue
        self.symbols = tuple(symbols)
        self.bybit_depth = bybit_depth
        self.lock = threading.Lock()
        self.books = {s: {"bids": {}, "asks": {}, "u": 1000, "states": {}} for s in self.symbols}
        self.trades: dict[str, list[dict]] = {s: [] for s in self.symbols}
        self.subs: list[tuple[Any, str, str]] = []   # (ws, symbol, "depth" | "trade")
        self.sub_count = {(s, k): 0 for s in self.symbols for k in ("depth", "trade")}
        self.snapshots: list[tuple[str, int]] = []   # (symbol, lastUpdateId) served over REST
        self.replay_trades = 0
        self.ts_offset_ms = 0
        self.hold_subscriptions = False  # True: new subscriptions wait (unacknowledged) until it is False again
        self._next_trade = 5_000_000
        self._bybit_seq = 7_000_000_000
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._main, name="fake-l2", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FakeL2":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def _close() -> None:
            for ws, _s, _k in list(self.subs):
                await ws.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "FakeL2":
        return self.start()

    def __exit__(self, *a: Any) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        path = "/ws" if self.venue == "binanceusdm" else "/v5/public/linear"
        return f"ws://127.0.0.1:{self.port}{path}"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/fapi/v1/exchangeInfo", self._exchange_info)
        app.router.add_get("/fapi/v1/depth", self._depth)
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        app.router.add_get("/public/ws/{n}", self._ws)
        app.router.add_get("/market/ws/{n}", self._ws)
        app.router.add_get("/v5/public/linear", self._ws)
        self._runner = web.AppRunner(app)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    def _now(self) -> int:
        """The exchange's clock (ms): the wall clock shifted by ``ts_offset_ms`` (tests move it to a minute edge)."""
        return int(time.time() * 1000) + self.ts_offset_ms

    # ------------------------------------------------------------------ book model

    def _top(self, s: str, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        b = self.books[s]
        bids = sorted(b["bids"].items(), key=lambda x: -x[0])[:n]
        asks = sorted(b["asks"].items(), key=lambda x: x[0])[:n]
        return bids, asks

    def set_book(self, s: str, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        """Initial levels (no message sent); the state is remembered at the current update id."""
        with self.lock:
            b = self.books[s]
            b["bids"] = {float(p): float(q) for p, q in bids}
            b["asks"] = {float(p): float(q) for p, q in asks}
            b["states"][b["u"]] = self._top(s, 1000)

    def state(self, s: str, nonce: int, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids, asks) best first, top ``n``, as the book was at update id ``nonce``."""
        bids, asks = self.books[s]["states"][nonce]
        return bids[:n], asks[:n]

    def update(self, s: str, bids: list[tuple[float, float]] = (), asks: list[tuple[float, float]] = (),
               send: bool = True) -> int:
        """Apply one diff (size 0 deletes a level), advance the update id by one and push the message
        (unless ``send`` is False: the message is lost on the way).  returns the new update id."""
        u, msg, targets = self._update(s, bids, asks, send)
        for ws in targets:
            self._send(ws, msg)
        return u

    def burst(self, s: str, n: int, seed: int = 0) -> None:
        """n random book updates (one level per side among the best 20) each followed by a trade, all sent
        from the server's loop in one go (no round trip per message): a load test of the client."""
        import random

        rng = random.Random(seed)
        out = []
        for j in range(n):
            bids, asks = self.books[s]["bids"], self.books[s]["asks"]
            bb = sorted(bids, reverse=True)[rng.randrange(min(20, len(bids)))]
            aa = sorted(asks)[rng.randrange(min(20, len(asks)))]
            _u, m1, t1 = self._update(s, [(bb, float(rng.randint(1, 50)))], [(aa, float(rng.randint(1, 50)))], True)
            _i, m2, t2 = self._trade(s, aa, 0.001 * (1 + j % 7), "buy" if j % 2 else "sell")
            out.append((m1, t1))
            out.append((m2, t2))

        async def _all() -> None:
            for m, targets in out:
                data = json.dumps(m)
                for ws in targets:
                    if not ws.closed:
                        await ws.send_str(data)

        asyncio.run_coroutine_threadsafe(_all(), self.loop).result(600)

    def _update(self, s: str, bids: Any, asks: Any, send: bool) -> tuple[int, dict, list]:
        with self.lock:
            b = self.books[s]
            for side, lv in (("bids", bids), ("asks", asks)):
                for p, q in lv:
                    if float(q) == 0.0:
                        b[side].pop(float(p), None)
                    else:
                        b[side][float(p)] = float(q)
            pu = b["u"]
            b["u"] = u = pu + 1
            b["states"][u] = self._top(s, 1000)
            now = self._now()
            if self.venue == "binanceusdm":
                msg = {"e": "depthUpdate", "E": now, "T": now - 1, "s": s, "U": u, "u": u, "pu": pu,
                       "b": [[str(p), str(q)] for p, q in bids], "a": [[str(p), str(q)] for p, q in asks]}
            else:
                self._bybit_seq += 3
                msg = {"topic": f"orderbook.{self.bybit_depth}.{s}", "type": "delta", "ts": now,
                       "data": {"s": s, "b": [[str(p), str(q)] for p, q in bids],
                                "a": [[str(p), str(q)] for p, q in asks], "u": u, "seq": self._bybit_seq},
                       "cts": now - 1}
            targets = [ws for ws, ss, k in self.subs if ss == s and k == "depth"] if send else []
        return u, msg, targets

    def trade(self, s: str, price: float, amount: float, taker_side: str) -> str:
        """Push one trade (taker_side "buy" | "sell"); returns its id."""
        tid, msg, targets = self._trade(s, price, amount, taker_side)
        for ws in targets:
            self._send(ws, msg)
        return tid

    def _trade(self, s: str, price: float, amount: float, taker_side: str) -> tuple[str, dict, list]:
        with self.lock:
            now = self._now()
            if self.venue == "binanceusdm":
                self._next_trade += 1
                tid = str(self._next_trade)
                msg = {"e": "trade", "E": now, "T": now, "s": s, "t": int(tid), "p": str(price), "q": str(amount),
                       "X": "MARKET", "m": taker_side == "sell"}
            else:
                tid = str(uuid.uuid4())
                msg = {"topic": f"publicTrade.{s}", "type": "snapshot", "ts": now,
                       "data": [{"T": now, "s": s, "S": "Buy" if taker_side == "buy" else "Sell", "v": str(amount),
                                 "p": str(price), "L": "PlusTick", "i": tid, "BT": False}]}
            self.trades[s].append(msg)
            targets = [ws for ws, ss, k in self.subs if ss == s and k == "trade"]
        return tid, msg, targets

    def bybit_restart(self, s: str) -> int:
        """Bybit's service restarts: the update id starts again at 1 and a snapshot is pushed on the open
        connections (the client must overwrite its book).  returns the new update id (1)."""
        with self.lock:
            b = self.books[s]
            b["u"] = 1
            b["states"][1] = self._top(s, 1000)
            bids, asks = self._top(s, self.bybit_depth)
            now = self._now()
            self._bybit_seq += 3
            msg = {"topic": f"orderbook.{self.bybit_depth}.{s}", "type": "snapshot", "ts": now,
                   "data": {"s": s, "b": [[str(p), str(q)] for p, q in bids], "a": [[str(p), str(q)] for p, q in asks],
                            "u": 1, "seq": self._bybit_seq}, "cts": now - 1}
            targets = [ws for ws, ss, k in self.subs if ss == s and k == "depth"]
        for ws in targets:
            self._send(ws, msg)
        return 1

    def disconnect(self) -> None:
        """Close every WebSocket (the clients see the connection drop)."""
        async def _close() -> None:
            with self.lock:
                subs, self.subs = list(self.subs), []
            for ws in {id(w): w for w, _s, _k in subs}.values():
                await ws.close()

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(10)

    def wait_for(self, pred: Any, timeout: float = 20.0) -> None:
        t0 = time.monotonic()
        while not pred():
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("fake exchange: condition not reached")
            time.sleep(0.02)

    # ------------------------------------------------------------------ transport

    def _send(self, ws: Any, msg: dict) -> None:
        async def _s() -> None:
            if not ws.closed:
                await ws.send_str(json.dumps(msg))

        fut = asyncio.run_coroutine_threadsafe(_s(), self.loop)
        try:
            fut.result(5)
        except Exception:  # a client gone mid-send
            pass

    async def _exchange_info(self, request: web.Request) -> web.Response:
        syms = []
        for s in self.symbols:
            base = s[:-4]
            syms.append({"symbol": s, "pair": s, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                         "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": base, "quoteAsset": "USDT",
                         "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3,
                         "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                         "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
                         "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                         "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764",
                                      "tickSize": "0.10"},
                                     {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                                     {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120",
                                      "stepSize": "0.001"},
                                     {"filterType": "MIN_NOTIONAL", "notional": "100"}],
                         "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"]})
        return web.json_response({"timezone": "UTC", "serverTime": self._now(), "rateLimits": [],
                                  "exchangeFilters": [], "assets": [], "symbols": syms})

    async def _depth(self, request: web.Request) -> web.Response:
        s = request.query.get("symbol", "")
        limit = int(request.query.get("limit", "100"))
        if s not in self.books:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        with self.lock:
            bids, asks = self._top(s, limit)
            u = self.books[s]["u"]
            self.snapshots.append((s, u))
        now = self._now()
        return web.json_response({"lastUpdateId": u, "E": now, "T": now - 1,
                                  "bids": [[str(p), str(q)] for p, q in bids],
                                  "asks": [[str(p), str(q)] for p, q in asks]})

    async def _instruments(self, request: web.Request) -> web.Response:
        lst = [{"symbol": s, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": s[:-4],
                "quoteCoin": "USDT", "settleCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0",
                "priceScale": "2", "leverageFilter": {"minLeverage": "1", "maxLeverage": "100", "leverageStep": "0.01"},
                "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
                "lotSizeFilter": {"maxOrderQty": "100", "minOrderQty": "0.001", "qtyStep": "0.001"},
                "unifiedMarginTrade": True, "fundingInterval": 480, "copyTrading": "both"} for s in self.symbols]
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "nextPageCursor": "",
                                                                          "list": lst},
                                  "retExtInfo": {}, "time": self._now()})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                if self.venue == "binanceusdm":
                    await self._binance_request(ws, req)
                else:
                    await self._bybit_request(ws, req)
        finally:
            with self.lock:
                self.subs = [x for x in self.subs if x[0] is not ws]
        return ws

    def _replay(self, s: str) -> list[dict]:
        return list(self.trades[s][-self.replay_trades:]) if self.replay_trades else []

    async def _hold(self) -> None:
        while self.hold_subscriptions:
            await asyncio.sleep(0.01)

    async def _binance_request(self, ws: Any, req: dict) -> None:
        if req.get("method") != "SUBSCRIBE":
            return
        await self._hold()
        new = []
        for p in req.get("params", []):
            sym, kind = p.split("@")[0].upper(), p.split("@")[1]
            kind = "depth" if kind == "depth" else "trade"
            new.append((ws, sym, kind))
        await ws.send_str(json.dumps({"result": None, "id": req.get("id")}))
        with self.lock:
            self.subs += new
            replay = []
            for _w, s, k in new:
                self.sub_count[(s, k)] += 1
                if k == "trade":
                    replay += self._replay(s)
        for m in replay:
            await ws.send_str(json.dumps(m))

    async def _bybit_request(self, ws: Any, req: dict) -> None:
        op = req.get("op")
        if op == "ping":
            await ws.send_str(json.dumps({"success": True, "ret_msg": "pong", "conn_id": "fake", "req_id": req.get("req_id"),
                                          "op": "ping"}))
            return
        if op != "subscribe":
            return
        await self._hold()
        await ws.send_str(json.dumps({"success": True, "ret_msg": "", "conn_id": "fake", "req_id": req.get("req_id"),
                                      "op": "subscribe"}))
        out = []
        with self.lock:
            for topic in req.get("args", []):
                parts = topic.split(".")
                s = parts[-1]
                if parts[0] == "orderbook":
                    self.subs.append((ws, s, "depth"))
                    self.sub_count[(s, "depth")] += 1
                    bids, asks = self._top(s, int(parts[1]))
                    now = self._now()
                    self._bybit_seq += 3
                    out.append({"topic": topic, "type": "snapshot", "ts": now,
                                "data": {"s": s, "b": [[str(p), str(q)] for p, q in bids],
                                         "a": [[str(p), str(q)] for p, q in asks], "u": self.books[s]["u"],
                                         "seq": self._bybit_seq}, "cts": now - 1})
                    self.snapshots.append((s, self.books[s]["u"]))
                elif parts[0] == "publicTrade":
                    self.subs.append((ws, s, "trade"))
                    self.sub_count[(s, "trade")] += 1
                    out += self._replay(s)
        for m in out:
            await ws.send_str(json.dumps(m))
