"""CcxtVenue: a real exchange through ccxt (Bybit testnet, Binance USDⓈ-M demo/testnet).

Keys come only from environment variables (``CRUCIBLE_API_KEY`` /
``CRUCIBLE_API_SECRET``, or ``BYBIT_API_KEY`` / ``BYBIT_API_SECRET``,
``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``); they are handed to ccxt and
never logged, journaled or included in ``repr``.  ``sandbox=True`` calls
``set_sandbox_mode(True)`` (Bybit testnet; Binance futures testnet/demo).
``api_url`` replaces every entry of ccxt's ``urls['api']`` (tests point it at
a fake exchange on 127.0.0.1).

Symbols are given as exchange ids (``BTCUSDT``) and traded as linear USDT
perpetuals (``BTC/USDT:USDT``).  Client order ids travel as ccxt's
``clientOrderId`` param (Bybit ``orderLinkId``, Binance ``newClientOrderId``).
ccxt ``NetworkError`` (timeouts, 5xx, 429 rate limits, DDoS protection)
becomes :class:`VenueNetworkError` — outcome unknown (idempotent reads are retried under ``retry``, a
:class:`RetryPolicy`: exponential backoff with jitter over a time budget; an order submit is never
retried here — the runtime resolves it by client order id first); ``InvalidNonce`` (the request's
timestamp is off the exchange clock) re-synchronises the clock offset (``load_time_difference``) and
retries once; ``AuthenticationError`` becomes :class:`VenueAuthError`; ``DuplicateOrderId`` and other
exchange refusals (insufficient margin, below the minimum notional, ...) become :class:`VenueRejected`.
A market order the exchange cancelled after a partial fill (Bybit ``PartiallyFilledCanceled``, which
ccxt reports as "closed") is reported as "canceled" with its filled quantity.

REST klines (Bybit): the response includes the still-forming bar; a row is closed when a newer row
exists or its minute has passed on the exchange's clock (the response's ``time``), never the local one.

Bar feed (``feed``): ``"ws"`` streams 1-minute klines over the exchange's public WebSocket with
ccxt's own websocket client (``ccxt.pro``, ``watch_ohlcv_for_symbols``) in a background thread with
its own asyncio loop; ``"poll"`` polls ``fetch_ohlcv`` over REST every ``poll_seconds``; ``"auto"``
(default) is "ws" for Bybit when ``ccxt.pro`` imports, else "poll".  Both feeds share one bar store
and one delivery rule: ``next_bars`` returns **closed** bars only, each exactly once, oldest first,
starting after the newest bar visible when the feed was first used (first ``history`` or
``next_bars`` call), and ``history`` never shows a bar that ``next_bars`` has not delivered yet.
A WebSocket bar is closed when the exchange confirms it (Bybit ``confirm: true``; ccxt's parsed
candles drop that flag, so the venue subclasses the ccxt.pro exchange and reads the raw message in
``handle_ohlcv`` before ccxt does) or when a newer bar has started; a bar closed by a newer bar
without its confirmation, any gap in the stream, and every (re)connection are backfilled over REST
(``fetch_ohlcv``), so no bar is lost; duplicated or replayed messages are de-duplicated by open
time.  On a disconnect the feed reconnects with exponential backoff (``ws_backoff`` seconds, min and
max).  A REST kline row is closed when a newer row exists or its minute has passed on the local
clock.  ``ws_url`` overrides the public linear WebSocket URL (tests).  The WebSocket client gets no
API keys (public data only).  ``quote_volume`` and the taker columns are 0 (ccxt's candles do not
carry them), whichever feed delivered the bar.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
from typing import Any

import numpy as np

from crucible.venues.base import (BAR_FIELDS, Bar, Fill, OrderState, RetryPolicy, Venue, VenueAuthError,
                                  VenueNetworkError, VenueRejected)

__all__ = ["CcxtVenue", "KEY_ENV", "FEEDS"]

log = logging.getLogger("crucible.ccxt")

FEEDS = ("auto", "ws", "poll")
WS_FEED_EXCHANGES = ("bybit",)
_MIN = 60_000

KEY_ENV = {"bybit": ("BYBIT_API_KEY", "BYBIT_API_SECRET"), "binanceusdm": ("BINANCE_API_KEY", "BINANCE_API_SECRET")}


def _keys(exchange_id: str) -> tuple[str | None, str | None]:
    k, s = os.environ.get("CRUCIBLE_API_KEY"), os.environ.get("CRUCIBLE_API_SECRET")
    if k and s:
        return k, s
    ek, es = KEY_ENV.get(exchange_id, ("", ""))
    return os.environ.get(ek) or None, os.environ.get(es) or None


class CcxtVenue(Venue):
    """Live venue over a ccxt exchange (synchronous API; the WebSocket feed runs in its own thread).

    exchange_id: "bybit" or "binanceusdm"; symbols: exchange symbol ids ("BTCUSDT"); sandbox: testnet;
    api_url: override of every REST ``urls['api']`` entry; feed: "auto" | "ws" | "poll" (see module
    docstring; "ws" needs Bybit and ccxt.pro); ws_url: override of the public linear WebSocket URL;
    poll_seconds: REST polling interval of the "poll" feed (s); ws_backoff: (first, max) reconnect delay
    (s); ws_idle_seconds: no kline message for this long → backfill over REST; stop_event: interrupts
    waits; timeout_ms: REST timeout; taker_fee_bps: informational; retry: RetryPolicy of idempotent reads
    (default: 20 s budget, 0.2 s first delay, sleeping on stop_event).
    raises VenueNetworkError if markets cannot be loaded, VenueRejected for a symbol without a linear
    market, ValueError for an unknown feed or "ws" on an exchange/ccxt without WebSocket support.
    """

    live = True

    def __init__(self, exchange_id: str, symbols: list[str], *, sandbox: bool = True, api_url: str | None = None,
                 feed: str = "auto", ws_url: str | None = None, poll_seconds: float = 2.0,
                 ws_backoff: tuple[float, float] = (0.05, 10.0), ws_idle_seconds: float = 90.0,
                 stop_event: threading.Event | None = None, timeout_ms: int = 10_000,
                 taker_fee_bps: float = 5.5, retry: RetryPolicy | None = None) -> None:
        import ccxt

        if feed not in FEEDS:
            raise ValueError(f"feed must be one of {FEEDS}, got {feed!r}")
        self._ccxt = ccxt
        key, secret = _keys(exchange_id)
        opts: dict[str, Any] = {"enableRateLimit": api_url is None, "timeout": timeout_ms,
                                "options": {"defaultType": "swap"}}
        if key and secret:
            opts.update(apiKey=key, secret=secret)
        if exchange_id == "bybit":
            opts["options"].update(fetchMarkets={"types": ["linear"]}, enableUnifiedAccount=True,
                                   enableUnifiedMargin=False, loadAllOptions=False)
        self._public_opts = {k: v for k, v in opts.items() if k not in ("apiKey", "secret")}
        self.ex = getattr(ccxt, exchange_id)(opts)
        self._sandbox = sandbox
        if sandbox:
            self.ex.set_sandbox_mode(True)
        self._api_url = api_url
        if api_url is not None:
            api = self.ex.urls["api"]
            self.ex.urls["api"] = {k: api_url for k in api} if isinstance(api, dict) else api_url
        self.name = f"{exchange_id}{'-sandbox' if sandbox else ''}"
        self.exchange_id = exchange_id
        self.symbols = tuple(symbols)
        self.taker_fee_bps = taker_fee_bps
        self.poll_seconds = poll_seconds
        self.ws_backoff = (float(ws_backoff[0]), float(ws_backoff[1]))
        self.ws_idle_seconds = ws_idle_seconds
        self._ws_url = ws_url
        self._stop = stop_event or threading.Event()
        self.retry = retry or RetryPolicy(budget_s=20.0, base_s=0.2, max_s=5.0)
        if self.retry.sleep is None:
            self.retry.sleep = self._stop.wait
        self.retries = 0  # reads retried after a network error (observability, tests)
        self.clock_resyncs = 0
        # bar store, shared by the caller's thread and the WebSocket thread
        self._cv = threading.Condition()
        self._bars: dict[str, dict[int, Bar]] = {s: {} for s in self.symbols}  # closed bars by open time
        self._newest_start: dict[str, int] = {s: -1 for s in self.symbols}  # newest bar seen started (ms)
        self._need_backfill: set[str] = set()
        self._gaps: dict[str, set[int]] = {s: set() for s in self.symbols}  # minutes the exchange has no bar for
        self._cursor: int | None = None  # open time of the last bar delivered (or shown before delivery)
        self._hist_limit: dict[str, int] = {s: 0 for s in self.symbols}
        self.ws_reconnects = 0  # WebSocket connections lost (observability, tests)
        self.backfills = 0  # REST backfills run by the WebSocket feed
        self.ws_messages = 0  # kline messages received
        try:
            self.ex.load_markets()
        except ccxt.NetworkError as exc:
            raise VenueNetworkError(f"{self.name}: cannot load markets ({type(exc).__name__})") from None
        self._usym = {}
        for s in self.symbols:
            m = next((m for m in self.ex.markets.values() if m["id"] == s and m.get("linear")), None)
            if m is None:
                raise VenueRejected(f"{self.name}: no linear market {s}")
            self._usym[s] = m["symbol"]
        self.feed = self._choose_feed(feed)
        self._ws_thread: threading.Thread | None = None
        self._ws_loop: asyncio.AbstractEventLoop | None = None
        self._ws_task: asyncio.Task | None = None
        self._closing = threading.Event()
        if self.feed == "ws":
            self._start_ws()

    def __repr__(self) -> str:  # never show credentials
        return f"CcxtVenue({self.name}, {list(self.symbols)}, feed={self.feed})"

    def _choose_feed(self, feed: str) -> str:
        if feed == "poll":
            return "poll"
        ok = self.exchange_id in WS_FEED_EXCHANGES
        if ok:
            try:
                importlib.import_module("ccxt.pro")
            except ImportError:
                ok = False
        if feed == "ws" and not ok:
            raise ValueError(f"{self.name}: the WebSocket bar feed needs ccxt.pro and one of {WS_FEED_EXCHANGES}")
        return "ws" if ok else "poll"

    # ------------------------------------------------------------------ error mapping

    def _call(self, fn, *args, **kw):
        ccxt = self._ccxt
        try:
            try:
                return fn(*args, **kw)
            except ccxt.InvalidNonce:  # our timestamps are off the exchange clock: re-sync, try once more
                self.clock_resyncs += 1
                if hasattr(self.ex, "load_time_difference"):
                    self.ex.options["adjustForTimeDifference"] = True
                    self.ex.load_time_difference()
                return fn(*args, **kw)
        except ccxt.AuthenticationError as exc:
            raise VenueAuthError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except ccxt.DuplicateOrderId as exc:
            raise VenueRejected(f"duplicate client order id ({exc})"[:300]) from None
        except ccxt.NetworkError as exc:  # includes RequestTimeout, ExchangeNotAvailable, DDoSProtection
            raise VenueNetworkError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except ccxt.ExchangeError as exc:
            raise VenueRejected(f"{type(exc).__name__}: {str(exc)[:200]}") from None

    def _read(self, fn, *args, **kw):
        """``_call`` for idempotent reads: a network error (timeout, 5xx, 429) is retried under
        ``self.retry`` (backoff with jitter, interrupted by stop_event) before VenueNetworkError is raised."""
        def count(exc: BaseException, delay: float) -> None:
            self.retries += 1
            log.warning("%s: %s; retrying in %.2f s", self.name, str(exc)[:120], delay)

        return self.retry.call(lambda: self._call(fn, *args, **kw), on_retry=count)

    # ------------------------------------------------------------------ bar store

    def now_ms(self) -> int:
        return int(self.ex.milliseconds())

    def _kline_params(self, symbol: str, since: int | None, limit: int, until: int | None = None) -> dict[str, Any]:
        p: dict[str, Any] = {"category": "linear", "symbol": symbol, "interval": "1", "limit": int(limit)}
        if since is not None:
            p["start"] = int(since)
        if until is not None:
            p["end"] = int(until)
        return p

    @staticmethod
    def _parse_klines(resp: Any) -> tuple[list[list[Any]], int | None]:
        """Rows [open_time, o, h, l, c, v] oldest first and the exchange clock (ms) of a raw Bybit v5 kline
        response; raises VenueNetworkError for a malformed answer (retried like a dropped response)."""
        try:
            lst = resp["result"]["list"]
            rows = [[int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])] for r in lst]
            server = resp.get("time")
            return sorted(rows, key=lambda r: r[0]), (int(server) if server is not None else None)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise VenueNetworkError(f"malformed kline response ({type(exc).__name__})") from None

    def _fetch_klines(self, symbol: str, since: int | None, limit: int, read: bool = True) -> tuple[list, int | None]:
        """REST klines (caller's thread): (rows oldest first, exchange clock ms or None)."""
        call = self._read if read else self._call
        if self.exchange_id == "bybit":
            return self._parse_klines(call(self.ex.publicGetV5MarketKline, self._kline_params(symbol, since, limit)))
        return call(self.ex.fetch_ohlcv, self._usym[symbol], "1m", since, limit), None

    def _add_rest_rows(self, symbol: str, rows: list[list[Any]], complete_from: int | None = None,
                       server_ms: int | None = None) -> int:
        """Store the closed rows of a ccxt OHLCV list; returns how many bars were new.

        A row is closed when a newer row exists or its minute has passed on the exchange's clock
        (``server_ms``, the kline response's time; the local clock when the exchange gives none): the
        newest row of a Bybit response is the still-forming bar.
        REST is authoritative for the span it answered: a minute inside it without a row is recorded as
        an exchange gap (so the feed does not wait for it).  complete_from: the ``since`` of a request
        known to have returned every bar from there on (else the span starts at the oldest row).
        """
        now = self.now_ms() if server_ms is None else int(server_ms)
        new = 0
        with self._cv:
            newest = max([int(r[0]) for r in rows] + [self._newest_start[symbol]])
            store = self._bars[symbol]
            closed = []
            for r in rows:
                t = int(r[0])
                if not (t < newest or t + _MIN <= now):
                    continue
                closed.append(t)
                if t not in store:
                    store[t] = Bar(symbol, t, float(r[1]), float(r[2]), float(r[3]), float(r[4]),
                                   float(r[5] or 0.0))
                    new += 1
            if closed:
                lo = min(closed) if complete_from is None else -(-complete_from // _MIN) * _MIN
                gaps = self._gaps[symbol]
                for t in range(lo, max(closed), _MIN):
                    if t not in store:
                        gaps.add(t)
            self._newest_start[symbol] = newest
            if new:
                self._trim(symbol)
                self._cv.notify_all()
        return new

    def _contig_end(self, symbol: str) -> int | None:
        """Newest stored bar reachable from the cursor (from the newest bar before delivery starts)
        without crossing a minute that is neither stored nor a known exchange gap.  Caller holds the lock."""
        store, gaps = self._bars[symbol], self._gaps[symbol]
        if not store:
            return None
        t = self._cursor if self._cursor is not None else max(store)
        end = t if t in store else None
        top = max(store)
        while t < top and (t + _MIN in store or t + _MIN in gaps):
            t += _MIN
            if t in store:
                end = t
        return end

    def _trim(self, symbol: str, keep: int = 5_000) -> None:
        store = self._bars[symbol]
        if len(store) > 2 * keep:
            cut = sorted(store)[-keep]
            if self._cursor is not None:
                cut = min(cut, self._cursor)
            for t in [t for t in store if t < cut]:
                del store[t]
            self._gaps[symbol] = {t for t in self._gaps[symbol] if t >= cut}

    def _on_kline(self, message: dict[str, Any]) -> None:
        """Sink of raw Bybit kline messages (WebSocket thread): store confirmed bars, detect gaps."""
        topic = str(message.get("topic") or "")
        parts = topic.split(".")
        if len(parts) != 3 or parts[0] != "kline" or parts[1] != "1" or parts[2] not in self._bars:
            return
        symbol = parts[2]
        with self._cv:
            self.ws_messages += 1
            store = self._bars[symbol]
            for d in message.get("data") or []:
                try:
                    t = int(d["start"])
                    vals = [float(d[k]) for k in ("open", "high", "low", "close", "volume")]
                except (KeyError, TypeError, ValueError):
                    continue
                confirmed = d.get("confirm") is True
                # every bar before t is closed now: any we lack must come over REST
                end = self._contig_end(symbol)
                if end is None or t - _MIN > end:
                    self._need_backfill.add(symbol)
                self._newest_start[symbol] = max(self._newest_start[symbol], t)
                if confirmed and t not in store:
                    store[t] = Bar(symbol, t, *vals)
                    self._cv.notify_all()

    def _next_time(self) -> int | None:
        """Open time of the next bar to deliver: the oldest stored bar after the cursor, once every symbol
        has a stored bar after the cursor with no unknown minute before it (a symbol without a bar at that
        time has an exchange gap there).  Caller holds the lock."""
        cur = self._cursor
        if cur is None:
            return None
        nxt = []
        for s in self.symbols:
            end = self._contig_end(s)
            if end is None or end <= cur:
                return None
            nxt.append(min(t for t in self._bars[s] if cur < t <= end))
        return min(nxt)

    def _pop_next(self) -> dict[str, Bar] | None:
        """Deliver the bars at :meth:`_next_time` (advances the cursor), or None.  Caller holds the lock."""
        t = self._next_time()
        if t is None:
            return None
        self._cursor = t
        return {s: self._bars[s][t] for s in self.symbols if t in self._bars[s]}

    def _refresh(self, symbol: str, limit: int) -> None:
        """Fetch up to ``limit`` newest bars over REST (caller's thread) into the store."""
        rows, server = self._fetch_klines(symbol, None, limit)
        self._add_rest_rows(symbol, rows, server_ms=server)

    def _init_cursor(self) -> None:
        """Start the delivery after the newest bar closed for every symbol (REST if the store is empty)."""
        for s in self.symbols:
            if not self._bars[s]:
                self._refresh(s, 3)
        with self._cv:
            if self._cursor is None:
                newest = [max(self._bars[s]) for s in self.symbols if self._bars[s]]
                if len(newest) == len(self.symbols):
                    self._cursor = min(newest)

    def history(self, symbol: str, n: int) -> dict[str, np.ndarray]:
        n = int(n)
        with self._cv:
            have = sum(1 for t in self._bars[symbol] if self._cursor is None or t <= self._cursor)
        want = min(n, 1000)
        if have < n and self._hist_limit[symbol] < want:
            self._refresh(symbol, want)
            self._hist_limit[symbol] = want
        if self._cursor is None:
            self._init_cursor()
        with self._cv:
            ts = sorted(t for t in self._bars[symbol] if self._cursor is None or t <= self._cursor)[-n:]
            bars = [self._bars[symbol][t] for t in ts]
        out = {}
        for c in BAR_FIELDS:
            dtype = np.int64 if c in ("open_time", "count") else np.float64
            out[c] = np.array([getattr(b, c) for b in bars], dtype=dtype)
        return out

    def next_bars(self, timeout_s: float | None = None) -> dict[str, Bar] | None:
        """The next closed bar time's bars, {symbol: Bar} (see module docstring); None on timeout or stop."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._stop.is_set():
            if self._cursor is None:
                try:
                    self._init_cursor()
                except VenueNetworkError:
                    pass
            if self._cursor is not None:
                with self._cv:
                    out = self._pop_next()
                if out is not None:
                    return out
                if self.feed == "poll":
                    self._poll_once()
                    with self._cv:
                        out = self._pop_next()
                    if out is not None:
                        return out
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if self.feed == "ws":
                wait = 0.5 if left is None else min(0.5, left)
                with self._cv:
                    if self._cursor is not None:
                        self._cv.wait_for(lambda: self._peek() or self._stop.is_set(), wait)
            else:
                self._stop.wait(self.poll_seconds if left is None else min(self.poll_seconds, left))
        return None

    def _peek(self) -> bool:
        return self._next_time() is not None

    def _poll_once(self) -> None:
        """REST poll of every symbol from the last stored bar on; a failed poll is retried next time."""
        for s in self.symbols:
            with self._cv:
                last = max(self._bars[s]) if self._bars[s] else None
            since, limit = (None, 3) if last is None else (last + _MIN, 1000)
            try:
                rows, server = self._fetch_klines(s, since, limit, read=False)
            except (VenueNetworkError, VenueAuthError, VenueRejected):
                continue  # a dropped poll is retried; a long outage shows up as a stale feed
            self._add_rest_rows(s, rows, since if since is not None and len(rows) < limit else None, server)

    # ------------------------------------------------------------------ WebSocket feed (own thread & loop)

    def _start_ws(self) -> None:
        loop = asyncio.new_event_loop()
        self._ws_loop = loop
        self._ws_ready = threading.Event()
        self._ws_thread = threading.Thread(target=self._ws_main, name=f"{self.name}-ws-feed", daemon=True)
        self._ws_thread.start()
        self._ws_ready.wait(10)

    def _make_pro(self) -> Any:
        import ccxt.pro

        sink = self._on_kline

        class _Feed(getattr(ccxt.pro, self.exchange_id)):  # reads Bybit's "confirm" before ccxt drops it
            def handle_ohlcv(self, client: Any, message: dict) -> Any:
                sink(message)
                return super().handle_ohlcv(client, message)

        pro = _Feed({**self._public_opts, "options": dict(self._public_opts["options"])})
        if self._sandbox:
            pro.set_sandbox_mode(True)
        api = pro.urls["api"]
        if self._api_url is not None:
            for k in list(api):
                if k != "ws":
                    api[k] = self._api_url
        if self._ws_url is not None:
            api["ws"] = {**api["ws"], "public": {**api["ws"]["public"], "linear": self._ws_url}}
        pro.set_markets(self.ex.markets, self.ex.currencies)
        return pro

    def _ws_main(self) -> None:
        loop = self._ws_loop
        asyncio.set_event_loop(loop)
        pro = None
        try:
            pro = self._make_pro()
            self._ws_task = loop.create_task(self._ws_run(pro))
            self._ws_ready.set()
            loop.run_until_complete(self._ws_task)
        except asyncio.CancelledError:
            pass
        except Exception:  # pragma: no cover - a feed bug must not kill the process silently
            log.exception("%s: WebSocket feed stopped", self.name)
        finally:
            self._ws_ready.set()
            if pro is not None:
                try:
                    loop.run_until_complete(pro.close())
                except Exception:  # pragma: no cover
                    pass
            loop.close()

    async def _ws_run(self, pro: Any) -> None:
        ccxt = self._ccxt
        topics = [[self._usym[s], "1m"] for s in self.symbols]
        delay = self.ws_backoff[0]
        with self._cv:
            self._need_backfill.update(self.symbols)
        while not self._closing.is_set():
            try:
                await self._backfill(pro)
                await asyncio.wait_for(pro.watch_ohlcv_for_symbols(topics), timeout=self.ws_idle_seconds)
                delay = self.ws_backoff[0]
                await self._backfill(pro)
            except asyncio.TimeoutError:
                with self._cv:
                    self._need_backfill.update(self.symbols)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ccxt NetworkError/ExchangeError, OSError, or a bug: never stop the feed
                if not isinstance(exc, (ccxt.BaseError, OSError)):
                    log.exception("%s: unexpected bar feed error", self.name)
                self.ws_reconnects += 1
                with self._cv:
                    self._need_backfill.update(self.symbols)
                log.warning("%s: bar feed: %s (%s); retrying in %.2f s", self.name, type(exc).__name__,
                            str(exc)[:120], delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.ws_backoff[1])

    async def _backfill(self, pro: Any) -> None:
        """Fetch over REST every bar after the last one reachable without a hole, for symbols flagged by a
        gap or a (re)connection; raises ccxt errors (the caller backs off and retries)."""
        with self._cv:
            todo = sorted(self._need_backfill)
        for s in todo:
            with self._cv:
                end = self._contig_end(s)
            since = None if end is None else end + _MIN
            rows: list[list[Any]] = []
            until = None
            complete = since is not None
            server = None
            for _page in range(10):  # newest 1000 bars per page, walking back to `since`
                raw = await pro.publicGetV5MarketKline(self._kline_params(s, since, 1000 if since is not None else 3,
                                                                          until))
                page, srv = self._parse_klines(raw)
                server = srv if server is None else server
                rows = page + rows
                if since is None or not page or int(page[0][0]) <= since or len(page) < 1000:
                    break
                until = int(page[0][0]) - 1
            else:
                complete = False
            self.backfills += 1
            self._add_rest_rows(s, rows, since if complete else None, server)
            with self._cv:
                end = self._contig_end(s)
                if end is not None and end + _MIN >= self._newest_start[s]:
                    self._need_backfill.discard(s)  # nothing is missing below the newest started bar
                self._cv.notify_all()

    def close(self) -> None:
        """Stop the WebSocket feed (joins its thread) and release connections."""
        self._closing.set()
        loop, task = self._ws_loop, self._ws_task
        if loop is not None and task is not None and self._ws_thread is not None and self._ws_thread.is_alive():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # loop already closed
                pass
            self._ws_thread.join(5)
        with self._cv:
            self._cv.notify_all()

    # ------------------------------------------------------------------ orders

    def _order_state(self, o: dict[str, Any], symbol: str) -> OrderState:
        sign = 1.0 if o.get("side") == "buy" else -1.0
        st = {"open": "open", "closed": "filled", "canceled": "canceled", "rejected": "rejected",
              "expired": "canceled"}.get(o.get("status") or "open", "open")
        amount, filled = float(o.get("amount") or 0.0), float(o.get("filled") or 0.0)
        if st == "filled" and filled < amount - 1e-12:  # closed with a remainder: cancelled after a partial fill
            st = "canceled"
        return OrderState(str(o.get("id")), str(o.get("clientOrderId") or ""), symbol,
                          sign * amount, sign * filled, st, int(o.get("timestamp") or self.now_ms()))

    def create_market_order(self, symbol: str, qty: float, client_order_id: str) -> OrderState:
        usym = self._usym[symbol]
        try:
            amount = float(self.ex.amount_to_precision(usym, abs(qty)))
        except self._ccxt.InvalidOrder as exc:  # below the lot size
            raise VenueRejected(f"order qty {qty} is below {symbol}'s lot size ({str(exc)[:120]})") from None
        if amount <= 0:
            raise VenueRejected(f"order qty {qty} rounds to 0 at {symbol}'s lot size")
        side = "buy" if qty > 0 else "sell"
        o = self._call(self.ex.create_order, usym, "market", side, amount, None, {"clientOrderId": client_order_id})
        st = self._order_state(o, symbol)
        return OrderState(st.order_id, client_order_id, symbol, np.sign(qty) * amount, st.filled, st.status,
                          st.time_ms)

    def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        usym = self._usym[symbol]
        if self.exchange_id == "bybit":
            m = self.ex.market(usym)
            resp = self._read(self.ex.privateGetV5OrderRealtime,
                              {"category": "linear", "symbol": m["id"], "orderLinkId": client_order_id})
            rows = ((resp or {}).get("result") or {}).get("list") or []
            if not rows:
                resp = self._read(self.ex.privateGetV5OrderHistory,
                                  {"category": "linear", "symbol": m["id"], "orderLinkId": client_order_id})
                rows = ((resp or {}).get("result") or {}).get("list") or []
            if not rows:
                return None
            return self._order_state(self.ex.parse_order(rows[0], m), symbol)
        try:
            o = self._read(self.ex.fetch_order, None, usym, {"origClientOrderId": client_order_id})
        except VenueRejected as exc:
            if "OrderNotFound" in str(exc):
                return None
            raise
        return self._order_state(o, symbol)

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        out = []
        for s in ([symbol] if symbol else self.symbols):
            for o in self._read(self.ex.fetch_open_orders, self._usym[s]):
                out.append(self._order_state(o, s))
        return out

    def cancel_order(self, symbol: str, client_order_id: str) -> None:
        self._call(self.ex.cancel_order, None, self._usym[symbol], {"clientOrderId": client_order_id})

    def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[Fill]:
        # Bybit pages executions (newest first, 50 per page by default): follow the cursor to the end
        params = {"paginate": True, "paginationCalls": 100} if self.exchange_id == "bybit" else {}
        trades = self._read(self.ex.fetch_my_trades, self._usym[symbol], since_ms, None, params)
        out = []
        for t in trades:
            sign = 1.0 if t["side"] == "buy" else -1.0
            fee = float((t.get("fee") or {}).get("cost") or 0.0)
            cid = t.get("clientOrderId") or (t.get("info") or {}).get("orderLinkId") or ""
            out.append(Fill(str(t["id"]), str(t.get("order") or ""), str(cid), symbol, sign * float(t["amount"]),
                            float(t["price"]), abs(fee), int(t["timestamp"])))
        out.sort(key=lambda f: (f.time_ms, f.trade_id))
        return out

    def fetch_positions(self) -> dict[str, float]:
        out = {}
        rev = {u: s for s, u in self._usym.items()}
        for p in self._read(self.ex.fetch_positions, list(self._usym.values())):
            s = rev.get(p["symbol"])
            if s is None:
                continue
            q = float(p.get("contracts") or 0.0) * float(p.get("contractSize") or 1.0)
            if q:
                out[s] = q if p.get("side") == "long" else -q
        return out

    def funding_rate(self, symbol: str) -> float | None:
        """The exchange's current funding rate of the linear perpetual (ccxt ``fetch_funding_rate``), one attempt;
        None when the exchange does not answer it (the runtime then uses ``[costs] funding_rate_8h``)."""
        try:
            r = self._call(self.ex.fetch_funding_rate, self._usym[symbol])
            rate = r.get("fundingRate") if isinstance(r, dict) else None
            return float(rate) if rate is not None else None
        except Exception as exc:  # noqa: BLE001 - a missing rate falls back to the configured one
            log.warning("%s: funding rate of %s unavailable (%s); using [costs] funding_rate_8h",
                        self.name, symbol, str(exc)[:120])
            return None

    def fetch_balance(self) -> float:
        b = self._read(self.ex.fetch_balance)
        return float((b.get("USDT") or {}).get("total") or 0.0)
