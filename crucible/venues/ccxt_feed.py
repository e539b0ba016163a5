"""The bar feed of :class:`crucible.venues.ccxt_venue.CcxtVenue` (a mixin): one bar store fed by REST polling or
the exchange's public WebSocket (``ccxt.pro`` in its own thread and asyncio loop), delivering closed bars only,
each exactly once, oldest first; gaps, unconfirmed bars and reconnections are backfilled over REST.  The rules
are stated in the :mod:`crucible.venues.ccxt_venue` docstring ("Bar feed"); this module holds the code.

The mixin reads the venue's ``ex`` (the ccxt exchange), ``_usym`` (exchange id -> ccxt symbol), ``retry``,
``_read`` / ``_call`` (error mapping), the store's locks and buffers set up by ``CcxtVenue.__init__``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import numpy as np

from crucible.venues.base import BAR_FIELDS, Bar, VenueAuthError, VenueNetworkError, VenueRejected

__all__ = ["CcxtFeedMixin"]

log = logging.getLogger("crucible.ccxt")

_MIN = 60_000
REST_PAGE = 1000  # rows per REST kline request (Bybit v5 and Binance USD-M allow up to 1,000 / 1,500)


class CcxtFeedMixin:
    """Bar store, REST polling and WebSocket feed of a ccxt venue (see module docstring)."""

    # ------------------------------------------------------------------ bar store

    def now_ms(self) -> int:
        return int(self.ex.milliseconds())

    def _kline_params(self, symbol: str, since: int | None, limit: int, until: int | None = None) -> dict[str, Any]:
        cat = "spot" if symbol in getattr(self, "aux_spot", ()) else "linear"  # a spot panel feed (crucible.panel)
        p: dict[str, Any] = {"category": cat, "symbol": symbol, "interval": "1", "limit": int(limit)}
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

    def _fetch_klines(self, symbol: str, since: int | None, limit: int, read: bool = True,
                      until: int | None = None) -> tuple[list, int | None]:
        """REST klines (caller's thread): (rows oldest first, exchange clock ms or None); until: newest open
        time wanted (ms), for paging back."""
        call = self._read if read else self._call
        if self.exchange_id == "bybit":
            return self._parse_klines(call(self.ex.publicGetV5MarketKline,
                                           self._kline_params(symbol, since, limit, until)))
        if until is not None and since is None:
            since = until - (limit - 1) * _MIN
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
        keep = max(keep, self._hist_limit[symbol])  # never below the longest history asked for
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
        aux = getattr(self, "aux_symbols", ())
        for s in self.symbols:
            if s in aux:  # fed for panel slots only: waited for per slot (bar_closed), never by the delivery
                continue
            end = self._contig_end(s)
            if end is None or end <= cur:
                return None
            nxt.append(min(t for t in self._bars[s] if cur < t <= end))
        return min(nxt)

    def bar_closed(self, symbol: str, t: int) -> bool:
        """Whether ``symbol``'s minute ``t`` (open time, ms) is closed as far as this feed knows: stored, a known
        exchange gap, or followed by a stored bar or gap with no unknown minute between (``crucible.panel`` waits
        on it for the instruments a panel slot reads)."""
        def closed() -> bool:
            with self._cv:
                if t in self._bars[symbol] or t in self._gaps[symbol]:
                    return True
                end = self._contig_end(symbol)
                return end is not None and end >= t

        if closed():
            return True
        # nobody else polls while the runtime waits (poll feed; spot feeds, never on the linear WebSocket): REST at
        # most once per poll_seconds
        if getattr(self, "feed", None) == "poll" or symbol in getattr(self, "aux_spot", ()):
            polled = self.__dict__.setdefault("_aux_polled", {})
            now = time.monotonic()
            if now - polled.get(symbol, -1e18) >= self.poll_seconds:
                polled[symbol] = now
                self._poll_symbol(symbol)
                return closed()
        return False

    def _pop_next(self) -> dict[str, Bar] | None:
        """Deliver the bars at :meth:`_next_time` (advances the cursor), or None.  Caller holds the lock."""
        t = self._next_time()
        if t is None:
            return None
        self._cursor = t
        return {s: self._bars[s][t] for s in self.symbols if t in self._bars[s]}

    def _refresh(self, symbol: str, limit: int) -> None:
        """Fetch up to ``limit`` newest rows over REST (caller's thread) into the store, paging back
        ``REST_PAGE`` rows at a time (each page ends the minute before the oldest row so far)."""
        rows, server = self._fetch_klines(symbol, None, min(limit, REST_PAGE))
        self._add_rest_rows(symbol, rows, server_ms=server)
        got, full = len(rows), len(rows) >= min(limit, REST_PAGE)
        while rows and full and got < limit:
            oldest = int(rows[0][0])
            page = min(limit - got, REST_PAGE)
            rows, server = self._fetch_klines(symbol, None, page, until=oldest - _MIN)
            rows = [r for r in rows if int(r[0]) < oldest]
            if not rows:
                break
            self._add_rest_rows(symbol, rows, server_ms=server)
            got, full = got + len(rows), len(rows) >= page

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
        want = n + 1  # a REST answer's newest row may be the still-forming bar, which is not delivered
        if have < n and self._hist_limit[symbol] < want:
            prev, self._hist_limit[symbol] = self._hist_limit[symbol], want  # _trim keeps this many meanwhile
            try:
                self._refresh(symbol, want)
            except BaseException:
                self._hist_limit[symbol] = prev  # asked again next time
                raise
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
            self._poll_symbol(s)

    def _poll_symbol(self, s: str) -> None:
        """REST poll of one symbol from its last stored bar on; a failed poll is retried next time."""
        with self._cv:
            last = max(self._bars[s]) if self._bars[s] else None
        since, limit = (None, 3) if last is None else (last + _MIN, 1000)
        try:
            rows, server = self._fetch_klines(s, since, limit, read=False)
        except (VenueNetworkError, VenueAuthError, VenueRejected):
            return  # a dropped poll is retried; a long outage shows up as a stale feed
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
        topics = [[self._usym[s], "1m"] for s in self.symbols if s in self._usym]  # spot feeds come over REST
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
