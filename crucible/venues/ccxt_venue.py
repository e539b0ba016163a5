"""CcxtVenue: a real exchange through ccxt (Bybit testnet, Binance USDⓈ-M demo trading).

Keys come only from environment variables (``CRUCIBLE_API_KEY`` /
``CRUCIBLE_API_SECRET``, or ``BYBIT_API_KEY`` / ``BYBIT_API_SECRET``,
``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``); they are handed to ccxt and
never logged, journaled or included in ``repr``.  ``sandbox=True`` is Bybit's
testnet (``set_sandbox_mode(True)``) and Binance USDⓈ-M's demo trading
(``enable_demo_trading(True)``, demo-fapi.binance.com: ccxt 4.5 refuses every
private call to the retired futures testnet).  ``api_url`` replaces the scheme
and host of every entry of ccxt's ``urls['api']``, keeping its path (Binance's
``/fapi/v1`` | ``/fapi/v2`` | ``/fapi/v3``), and ccxt still reads error codes as
for the original URLs (tests point it at a fake exchange on 127.0.0.1:
tests/fake_bybit.py, tests/fake_binance.py).

Binance USDⓈ-M specifics: a GTX (post-only) order that would cross is refused
with ``-5022`` (ccxt ``OrderNotFillable`` -> :class:`VenuePostOnlyReject`); a
duplicate ``newClientOrderId`` is ``-4116`` (-> :class:`VenueDuplicateOrder`);
a cancel of an order not open is ``-2011``; ``userTrades`` rows carry the
``orderId`` only, so a fill's client order id is resolved from the order
responses seen, else by one ``GET /fapi/v1/order?orderId=`` per order; ``userTrades`` answers at most 1000 rows
and 7 days per request, so ``fetch_fills`` pages it (7-day windows, then by time or ``fromId``); the
touch reads ``/fapi/v1/depth`` with limit 5 (it takes 5, 10, 20, ... only).

Bybit fills: ``GET /v5/execution/list`` answers at most 100 rows (a ``nextPageCursor`` pages on) and 7 days per
request, the past 730 days, so ``fetch_fills`` walks 7-day windows (``startTime`` + ``endTime``) and follows the
cursor in each (:meth:`CcxtVenue._bybit_executions`), not ccxt's ``paginate``.

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
from typing import Any

import numpy as np

from crucible.venues.base import (BINANCE_VENUE_ORDER_PREFIXES, BYBIT_VENUE_EXEC_TYPES, Bar, Fill, MarketRules,
                                  OrderState, RetryPolicy, Venue, VenueAuthError, VenueDuplicateOrder, VenueError,
                                  VenueNetworkError, VenuePostOnlyReject, VenueRejected)
from crucible.venues.ccxt_feed import CcxtFeedMixin

__all__ = ["CcxtVenue", "KEY_ENV", "FEEDS", "POST_ONLY_REJECT_BYBIT", "limit_order_params"]

log = logging.getLogger("crucible.ccxt")

FEEDS = ("auto", "ws", "poll")
POST_ONLY_REJECT_BYBIT = "EC_PostOnlyWillTakeLiquidity"
"""Bybit v5 ``rejectReason`` of a PostOnly order cancelled because it would have taken liquidity."""
WS_FEED_EXCHANGES = ("bybit",)
_MIN = 60_000
_BINANCE_PAGE = 1000  # GET /fapi/v1/userTrades: limit, max 1000
_BINANCE_WINDOW_MS = 7 * 86_400_000 - 1  # endTime - startTime: "cannot be longer than 7 days"
_BINANCE_HISTORY_MS = 180 * 86_400_000  # "Only support querying trade in the past 6 months"
_BINANCE_SKEW_MS = 3_600_000  # margin of the last window ("startTime" only) against clock differences
_BYBIT_PAGE = 100  # GET /v5/execution/list: limit [1, 100], default 50
_BYBIT_WINDOW_MS = 7 * 86_400_000  # "If both are passed, the rule is endTime - startTime <= 7 days"
_BYBIT_HISTORY_MS = 730 * 86_400_000  # "Unified account supports getting the past 730 days historical trades data"
_BYBIT_SKEW_MS = 3_600_000  # margin of the last window ("startTime" only) against clock differences
_BYBIT_MAX_PAGES = 10_000  # per 7-day window (a million executions): past it VenueRejected, never a short list

KEY_ENV = {"bybit": ("BYBIT_API_KEY", "BYBIT_API_SECRET"), "binanceusdm": ("BINANCE_API_KEY", "BINANCE_API_SECRET")}


_CLAMP_WARNED: set[tuple[int, int]] = set()  # (history_ms, since_ms) already warned about (once per process)


def _fill_windows(since_ms: int | None, now: int, span_ms: int, history_ms: int, skew_ms: int, *,
                 shared_boundary: bool) -> list[tuple[int, int | None]]:
    """The request windows ``[(start, end), ...]`` (ms) of a fill history from ``since_ms`` (None: ``now - span_ms``,
    the exchanges' own default span) to ``now``: clamped to the ``history_ms`` the exchange serves (a warning, once per
    ``since_ms``), each at most
    ``span_ms`` long and all in the past; the last begins at least ``skew_ms`` after ``now - span_ms`` and has
    end None (sent with its start only, so the exchange's own clock ends it).  shared_boundary: consecutive windows
    share their boundary millisecond (Bybit: whichever bound is inclusive, none falls between two windows), else
    the next starts 1 ms after the previous end (Binance: both bounds inclusive)."""
    start = now - span_ms if since_ms is None else int(since_ms)
    if start < now - history_ms:
        # the exchange serves no older fills: those are the journal's own (booked when they happened); a fill
        # the journal lacks from then would show as the reconcile's position difference, never silently
        key = (history_ms, start)
        if key not in _CLAMP_WARNED:
            _CLAMP_WARNED.add(key)
            log.warning("fills before %d ms (%.0f days back) cannot be fetched: the exchange serves %d days; "
                        "the journal's fills of that time stand", now - history_ms, (now - start) / 86_400_000,
                        history_ms // 86_400_000)
        start = now - history_ms
    last_start = now - span_ms + skew_ms  # from here on: the start only
    out: list[tuple[int, int | None]] = []
    while start < last_start:
        end = min(start + span_ms, last_start if shared_boundary else last_start - 1)
        out.append((start, end))
        start = end if shared_boundary else end + 1
    out.append((start, None))
    return out


def limit_order_params(client_order_id: str, *, post_only: bool, reduce_only: bool) -> dict[str, Any]:
    """ccxt params of a limit order: ``clientOrderId`` (Bybit ``orderLinkId``, Binance ``newClientOrderId``),
    ``postOnly`` (Bybit ``timeInForce=PostOnly``, Binance USDⓈ-M ``timeInForce=GTX``), ``reduceOnly``; checked
    against ccxt's own request builders offline in tests/test_crucible_passive.py."""
    params: dict[str, Any] = {"clientOrderId": client_order_id}
    if post_only:
        params["postOnly"] = True
    if reduce_only:
        params["reduceOnly"] = True
    return params


def _keys(exchange_id: str) -> tuple[str | None, str | None]:
    k, s = os.environ.get("CRUCIBLE_API_KEY"), os.environ.get("CRUCIBLE_API_SECRET")
    if k and s:
        return k, s
    ek, es = KEY_ENV.get(exchange_id, ("", ""))
    return os.environ.get(ek) or None, os.environ.get(es) or None


def _venue_action(trade: dict[str, Any], client_order_id: str) -> str:
    """The ``Fill.venue_action`` of a ccxt trade: Bybit's ``execType`` when it is one the exchange makes itself
    (``BYBIT_VENUE_EXEC_TYPES``), or the prefix of a Binance order id the exchange placed (liquidation, ADL, settlement);
    "" for an ordinary execution."""
    kind = str((trade.get("info") or {}).get("execType") or "")
    if kind in BYBIT_VENUE_EXEC_TYPES:
        return kind
    return next((p for p in BINANCE_VENUE_ORDER_PREFIXES if client_order_id.startswith(p)), "")


class CcxtVenue(CcxtFeedMixin, Venue):
    """Live venue over a ccxt exchange (synchronous API; the WebSocket feed runs in its own thread).

    exchange_id: "bybit" or "binanceusdm"; symbols: exchange symbol ids ("BTCUSDT"); sandbox: Bybit testnet /
    Binance demo trading; api_url: scheme and host for every REST ``urls['api']`` entry (paths kept); feed: "auto" | "ws" | "poll" (see module
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
                 taker_fee_bps: float = 5.5, retry: RetryPolicy | None = None,
                 aux_symbols: tuple[str, ...] | list[str] = (), aux_spot: tuple[str, ...] | list[str] = ()) -> None:
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
        if sandbox and exchange_id == "binanceusdm":
            # ccxt 4.5 refuses every private call to the futures testnet (NotSupported: "testnet/sandbox mode is not
            # supported for futures anymore"); Binance's demo trading (demo-fapi.binance.com) is the sandbox now
            self.ex.enable_demo_trading(True)
        elif sandbox:
            self.ex.set_sandbox_mode(True)
        self._api_url = api_url
        if api_url is not None:
            self._point_api_at(api_url)
        self.name = f"{exchange_id}{'-sandbox' if sandbox else ''}"
        self.exchange_id = exchange_id
        # aux_symbols: perpetuals fed for panel slots (crucible.panel) but not traded: they never hold back the
        # delivery of a bar (a late one is waited for per slot, ``bar_closed``)
        # aux_spot: spot instruments fed the same way (Bybit only: its v5 klines with category=spot, over REST;
        # never subscribed on the linear WebSocket, never traded, no orders or positions looked up)
        self.aux_spot = tuple(s for s in dict.fromkeys(aux_spot) if s not in symbols)
        if self.aux_spot and exchange_id != "bybit":
            raise VenueRejected(f"{exchange_id}: spot feeds {list(self.aux_spot)} are supported on bybit only")
        self.aux_symbols = tuple(s for s in dict.fromkeys([*aux_symbols, *self.aux_spot]) if s not in symbols)
        self.symbols = tuple(symbols) + self.aux_symbols
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
        self._deadline: float | None = None  # retry.clock() time by which reads stop retrying (set_deadline)
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
        self._cid_of_order: dict[str, str] = {}  # venue order id -> client order id (Binance trades carry only the former)
        try:
            self.ex.load_markets()
        except ccxt.NetworkError as exc:
            raise VenueNetworkError(f"{self.name}: cannot load markets ({type(exc).__name__})") from None
        self._usym = {}
        for s in self.symbols:
            if s in self.aux_spot:
                continue  # klines only, by exchange id (no ccxt market needed)
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

    def _point_api_at(self, api_url: str) -> None:
        """Send every REST request to ``api_url``'s scheme and host, keeping each ``urls['api']`` entry's path
        (Binance's ``/fapi/v1``, ``/fapi/v2``, ``/fapi/v3`` tell its API versions apart; Bybit's entries have none),
        and let ccxt classify error codes as for the original URLs (Binance picks its USDⓈ-M error table by the
        URL's host, e.g. -5022 -> OrderNotFillable)."""
        from urllib.parse import urlsplit, urlunsplit

        new = urlsplit(api_url)
        api = self.ex.urls["api"]
        if not isinstance(api, dict):
            self.ex.urls["api"] = api_url
            return
        bases: dict[str, str] = {}
        for k, v in list(api.items()):
            if not isinstance(v, str):
                api[k] = api_url
                continue
            old = urlsplit(v)
            api[k] = urlunsplit((new.scheme, new.netloc, new.path.rstrip("/") + old.path, "", ""))
            bases[api[k]] = v
        by_url = getattr(self.ex, "get_exceptions_by_url", None)
        if by_url is not None:
            longest_first = sorted(bases.items(), key=lambda kv: -len(kv[0]))

            def classify(url: str | None, kind: str) -> dict:
                for here, there in longest_first:
                    if url and url.startswith(here):
                        return by_url(there + url[len(here):], kind)
                return by_url(url, kind)

            self.ex.get_exceptions_by_url = classify

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
            raise VenueDuplicateOrder(f"duplicate client order id ({exc})"[:300]) from None
        except (ccxt.OrderNotFillable, ccxt.OrderImmediatelyFillable) as exc:  # Binance -5022: GTX would cross
            raise VenuePostOnlyReject(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except ccxt.NetworkError as exc:  # includes RequestTimeout, ExchangeNotAvailable, DDoSProtection
            raise VenueNetworkError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except ccxt.ExchangeError as exc:
            if "duplicate" in str(exc).lower() or "110072" in str(exc):  # Bybit 110072 "OrderLinkedID is duplicate"
                raise VenueDuplicateOrder(f"duplicate client order id ({type(exc).__name__}: {str(exc)[:200]})") from None
            raise VenueRejected(f"{type(exc).__name__}: {str(exc)[:200]}") from None

    def _read(self, fn, *args, **kw):
        """``_call`` for idempotent reads: a network error (timeout, 5xx, 429) is retried under
        ``self.retry`` (backoff with jitter, interrupted by stop_event) before VenueNetworkError is raised."""
        def count(exc: BaseException, delay: float) -> None:
            self.retries += 1
            log.warning("%s: %s; retrying in %.2f s", self.name, str(exc)[:120], delay)

        policy = self.retry.bounded(self._deadline)  # the runtime's bar deadline bounds the retries
        return policy.call(lambda: self._call(fn, *args, **kw), on_retry=count)

    def set_deadline(self, seconds: float | None) -> None:
        """Bound the retries of reads to ``seconds`` from now on ``retry.clock`` (None: only the retry budget)."""
        self._deadline = None if seconds is None else self.retry.clock() + float(seconds)

    def stale_backlog(self) -> bool:
        """A newer closed bar than the last one delivered is already in the bar store."""
        with self._cv:
            return self._cursor is not None and self._next_time() is not None

    def round_qty(self, symbol: str, qty: float) -> float:
        """``qty`` at the market's lot size (ccxt ``amount_to_precision``), sign kept; 0.0 below one lot."""
        try:
            return float(np.sign(qty)) * float(self.ex.amount_to_precision(self._usym[symbol], abs(qty)))
        except self._ccxt.InvalidOrder:
            return 0.0

    def api_permissions(self) -> dict[str, Any] | None:
        """What the API key may do (Bybit ``/v5/user/query-api``: ``readOnly`` and ``permissions.Wallet`` —
        "Withdraw" there means it can withdraw); None where the exchange does not report it (or on failure)."""
        if self.exchange_id != "bybit":
            return None
        try:
            resp = self._read(self.ex.privateGetV5UserQueryApi)
        except (VenueNetworkError, VenueRejected) as exc:
            log.warning("%s: API key permissions unavailable (%s)", self.name, str(exc)[:120])
            return None
        res = (resp or {}).get("result") or {}
        perms = res.get("permissions") or {}
        wallet = [str(x) for x in (perms.get("Wallet") or [])]
        withdraw = any("withdraw" in x.lower() for x in wallet) or any(
            "withdraw" in str(x).lower() for v in perms.values() if isinstance(v, list) for x in v)
        return {"withdraw": bool(withdraw), "read_only": str(res.get("readOnly")) == "1", "raw": perms}


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
        otype = str(o.get("type") or "market").lower()
        info = o.get("info") or {}
        if o.get("id") and o.get("clientOrderId"):
            self._cid_of_order[str(o["id"])] = str(o["clientOrderId"])
        reason = ""
        if otype == "limit" and filled == 0.0 and (
                str(info.get("rejectReason") or "") == POST_ONLY_REJECT_BYBIT
                or (o.get("status") == "expired" and str(info.get("timeInForce") or "").upper() == "GTX")):
            st, reason = "rejected", "post_only"  # Bybit cancels a crossing PostOnly order; Binance expires a GTX one
        return OrderState(str(o.get("id")), str(o.get("clientOrderId") or ""), symbol,
                          sign * amount, sign * filled, st, int(o.get("timestamp") or self.now_ms()),
                          otype, float(o.get("price") or 0.0) if otype == "limit" else 0.0, reason)

    def create_market_order(self, symbol: str, qty: float, client_order_id: str, *,
                            reduce_only: bool = False) -> OrderState:
        usym = self._usym[symbol]
        try:
            amount = float(self.ex.amount_to_precision(usym, abs(qty)))
        except self._ccxt.InvalidOrder as exc:  # below the lot size
            raise VenueRejected(f"order qty {qty} is below {symbol}'s lot size ({str(exc)[:120]})") from None
        if amount <= 0:
            raise VenueRejected(f"order qty {qty} rounds to 0 at {symbol}'s lot size")
        side = "buy" if qty > 0 else "sell"
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if reduce_only:
            params["reduceOnly"] = True
        o = self._call(self.ex.create_order, usym, "market", side, amount, None, params)
        st = self._order_state(o, symbol)
        return OrderState(st.order_id, client_order_id, symbol, np.sign(qty) * amount, st.filled, st.status,
                          st.time_ms)

    def create_limit_order(self, symbol: str, qty: float, price: float, client_order_id: str, *,
                           post_only: bool = True, reduce_only: bool = False) -> OrderState:
        """A limit order through ccxt ``create_order(symbol, "limit", side, amount, price, params)``: amount at the
        lot (``amount_to_precision``), price at the tick (``price_to_precision``); params ``clientOrderId``,
        ``postOnly`` (ccxt sends Bybit ``timeInForce=PostOnly`` and Binance USDⓈ-M ``timeInForce=GTX``,
        ccxt 4.5 ``bybit.create_order_request`` / ``binance.create_order_request``), ``reduceOnly``.
        A crossing post-only order: Binance refuses it (``-5022``, ccxt OrderNotFillable -> VenuePostOnlyReject; a
        GTX order answered EXPIRED at once, Binance's behaviour before -5022, raises VenuePostOnlyReject too);
        Bybit accepts and cancels it (``rejectReason`` EC_PostOnlyWillTakeLiquidity), so on Bybit the order is looked
        up once after the create and a post-only cancellation raises VenuePostOnlyReject too (if that lookup
        fails, the runtime's next lookup reports the order "rejected" with reason "post_only")."""
        usym = self._usym[symbol]
        try:
            amount = float(self.ex.amount_to_precision(usym, abs(qty)))
            px = float(self.ex.price_to_precision(usym, price))
        except self._ccxt.InvalidOrder as exc:
            raise VenueRejected(f"limit order {qty} @ {price} is below {symbol}'s lot/tick ({str(exc)[:120]})") from None
        if amount <= 0 or px <= 0:
            raise VenueRejected(f"limit order {qty} @ {price} rounds to 0 at {symbol}'s lot/tick")
        params = limit_order_params(client_order_id, post_only=post_only, reduce_only=reduce_only)
        o = self._call(self.ex.create_order, usym, "limit", "buy" if qty > 0 else "sell", amount, px, params)
        st = self._order_state(o, symbol)
        if post_only and st.reason == "post_only":  # answered closed at once: e.g. Binance's older EXPIRED GTX
            raise VenuePostOnlyReject(f"post-only {client_order_id} at {px} would take liquidity (the exchange "
                                      f"answered {o.get('status')})")
        st = OrderState(st.order_id, client_order_id, symbol, float(np.sign(qty)) * amount, st.filled, st.status,
                        st.time_ms, "limit", px)
        if post_only and self.exchange_id == "bybit":
            try:
                now = self.fetch_order(symbol, client_order_id)
            except VenueError:
                now = None
            if now is not None and now.reason == "post_only":
                raise VenuePostOnlyReject(f"post-only {client_order_id} at {px} would take liquidity (Bybit "
                                          f"{POST_ONLY_REJECT_BYBIT})")
            if now is not None:
                st = now
        return st

    def market_rules(self, symbol: str) -> MarketRules:
        """Tick (``precision.price``), lot (``precision.amount``) and minimum notional (``limits.cost.min``, 0 when
        the exchange gives none) of the linear market, from ccxt's loaded markets (precision mode TICK_SIZE)."""
        m = self.ex.market(self._usym[symbol])
        prec, lim = m.get("precision") or {}, m.get("limits") or {}
        tick = float(prec.get("price") or 0.0)
        if tick >= 1.0 and self.ex.precisionMode != self._ccxt.TICK_SIZE:  # DECIMAL_PLACES: digits, not a step
            tick = 10.0 ** -tick
        lot = float(prec.get("amount") or 0.0)
        if lot >= 1.0 and self.ex.precisionMode != self._ccxt.TICK_SIZE:
            lot = 10.0 ** -lot
        return MarketRules(tick if tick > 0 else 1e-8, lot, float((lim.get("cost") or {}).get("min") or 0.0))

    def touch(self, symbol: str) -> tuple[float, float] | None:
        """Best bid and ask from ccxt ``fetch_order_book(symbol, n)`` (None when a side is empty): n = 1, or 5 on
        Binance USDⓈ-M, whose ``/fapi/v1/depth`` takes only 5, 10, 20, 50, 100, 500, 1000 (-4021 otherwise)."""
        b = self._read(self.ex.fetch_order_book, self._usym[symbol], 5 if self.exchange_id == "binanceusdm" else 1)
        bids, asks = b.get("bids") or [], b.get("asks") or []
        if not bids or not asks:
            return None
        return float(bids[0][0]), float(asks[0][0])

    def cancel_all_after(self, seconds: float) -> bool:
        """The exchange's dead-man's switch.  Bybit: ccxt ``cancel_all_orders_after(ms)`` -> ``POST
        /v5/order/disconnected-cancel-all`` {timeWindow: s, product: DERIVATIVES} (Bybit's DCP: it cancels the
        account's orders once the *private WebSocket* has been disconnected for ``timeWindow`` s, 3..300; a bench
        trading over REST only arms the window, so on Bybit this protects a session that also holds that socket).
        Binance USDⓈ-M: ccxt has no unified call; the raw ``POST /fapi/v1/countdownCancelAll`` {symbol,
        countdownTime: ms} per symbol (ccxt ``fapiPrivatePostCountdownCancelAll``): a countdown the next call resets,
        0 cancels it.  returns True when armed, False where the exchange offers none."""
        if self.exchange_id == "bybit":
            window = 0 if seconds <= 0 else int(min(300, max(3, round(seconds))))
            self._call(self.ex.cancel_all_orders_after, window * 1000)
            return True
        if self.exchange_id == "binanceusdm":
            for s in self.symbols:
                self._call(self.ex.fapiPrivatePostCountdownCancelAll,
                           {"symbol": self.ex.market(self._usym[s])["id"], "countdownTime": int(max(0.0, seconds) * 1000)})
            return True
        return False

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
        for s in ([symbol] if symbol else list(self._usym)):  # linear markets only (not spot feeds)
            for o in self._read(self.ex.fetch_open_orders, self._usym[s]):
                out.append(self._order_state(o, s))
        return out

    def cancel_order(self, symbol: str, client_order_id: str) -> None:
        """ccxt ``cancel_order(None, symbol, params)`` by client order id: Bybit ``{"orderLinkId": id}`` (ccxt 4.5's
        ``bybit.cancel_order_request`` passes params through untranslated, so ``clientOrderId`` would not reach
        Bybit), Binance ``{"clientOrderId": id}`` (ccxt sends ``origClientOrderId``).  An order the exchange does not
        hold open (unknown, filled or already cancelled: Bybit 110001, Binance -2011, ccxt OrderNotFound) is refused
        with VenueRejected -- the caller looks the order up for its final state."""
        key = "orderLinkId" if self.exchange_id == "bybit" else "clientOrderId"
        self._call(self.ex.cancel_order, None, self._usym[symbol], {key: client_order_id})

    def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[Fill]:
        """Every execution of ``symbol`` at or after ``since_ms`` up to now: a list of :class:`Fill` sorted by
        ``(time_ms, trade_id)``, each trade id once.

        Bybit: :meth:`_bybit_executions`, an explicit loop over ``GET /v5/execution/list`` -- one request answers at
        most 100 rows (a cursor pages on) and at most 7 days (``startTime`` only: the 7 days after it), so ccxt's
        ``paginate`` (what this did before: ``startTime`` = ``since_ms``, never an ``endTime``, at most 100 calls)
        silently returned only the first 7 days after ``since_ms`` and at most 10,000 rows of them.  Binance USDⓈ-M:
        :meth:`_binance_user_trades`, an explicit loop over ``GET /fapi/v1/userTrades`` -- one request answers at most
        1000 rows and at most 7 days from ``startTime``, so one call (what this did before) silently missed fills: the
        501st after ``since_ms`` and everything more than 7 days after it.  since_ms None: the last 7 days (both
        exchanges' own default span).

        raises VenueNetworkError when a page still fails after the read retries (``retry``; a page is retried on its
        own, the pages before it are not fetched again), VenueAuthError / VenueRejected as every call; Binance:
        VenueRejected when more than 1000 fills share one millisecond older than fromId paging reaches (see
        :meth:`_binance_user_trades`); Bybit: VenueRejected when a window's cursor repeats or does not end (see
        :meth:`_bybit_executions`) -- never a silently short list."""
        if self.exchange_id == "binanceusdm":
            trades = self._binance_user_trades(symbol, since_ms)
        elif self.exchange_id == "bybit":
            trades = self._bybit_executions(symbol, since_ms)
        else:
            trades = self._read(self.ex.fetch_my_trades, self._usym[symbol], since_ms)
        out: dict[str, Fill] = {}
        for t in trades:
            sign = 1.0 if t["side"] == "buy" else -1.0
            fee = float((t.get("fee") or {}).get("cost") or 0.0)
            cid = t.get("clientOrderId") or (t.get("info") or {}).get("orderLinkId") or self._client_id_of(
                symbol, str(t.get("order") or ""))
            f = Fill(str(t["id"]), str(t.get("order") or ""), str(cid), symbol, sign * float(t["amount"]),
                     float(t["price"]), abs(fee), int(t["timestamp"]), _venue_action(t, str(cid)))
            out.setdefault(f.trade_id, f)
        return sorted(out.values(), key=lambda f: (f.time_ms, f.trade_id))

    def _bybit_executions(self, symbol: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Every ``GET /v5/execution/list`` row of ``symbol`` from ``since_ms`` to now but its Funding rows, as ccxt
        trades (``parse_trades``, the parser ccxt's ``fetch_my_trades`` uses), deduplicated by execution id (any order).

        Bybit's rules (v5 "Get Trade History"): rows sorted by ``execTime`` descending (the newest first; the order of
        rows sharing an ``execTime`` is not defined); ``limit`` 1..100, default 50; ``cursor`` = the previous page's
        ``nextPageCursor``; neither ``startTime`` nor ``endTime`` -> the last 7 days; ``startTime`` only -> startTime
        to startTime + 7 days; ``endTime`` only -> the 7 days before it; both -> ``endTime - startTime <= 7 days``;
        a unified account is served the past 730 days.

        Why not ccxt's ``paginate`` (``fetch_paginated_call_cursor``, ccxt 4.5): every request sends ``startTime`` =
        ``since`` and no ``endTime``, so Bybit answers only the 7 days after ``since_ms``, and the cursor walks those
        7 days only (newest first); it stops without an error after ``paginationCalls`` requests (100 here: 10,000
        rows), and retries failed pages itself.  Against tests/fake_bybit.py: 51 of 196 fills over 20 days with a
        quiet week (only the first 7 days), 10,000 of 10,050 fills in one hour (the oldest 50 lost), none at all for
        ``since_ms`` 0 (the 7 days after the epoch).

        The loop here: 7-day windows from ``since_ms`` (clamped to the 730 days Bybit serves; None: now - 7 days), each
        sent as ``startTime`` + ``endTime`` (``endTime - startTime`` = 7 days, the documented maximum), all in the
        past; consecutive windows share their boundary millisecond (whether Bybit's ``startTime`` or ``endTime`` is
        inclusive, no millisecond falls between two windows; a row seen twice is dropped by id); the last window,
        which begins at least an hour (``_BYBIT_SKEW_MS``) after now - 7 days, is sent with ``startTime`` only, so
        the exchange's own clock ends it.  Within a window: pages of 100 rows following ``nextPageCursor`` until a
        page is empty or comes without a cursor (rows sharing a millisecond are the cursor's business, not split by
        time as on Binance).  A cursor that repeats, or a window over ``_BYBIT_MAX_PAGES`` pages, raises VenueRejected
        (completeness cannot be guaranteed).  Requests: one per window (ceil((days - 7 + 1/24) / 7) + 1 for ``since_ms``
        ``days`` ago; 105 for 730 days) plus one per further page of 100 rows, plus one empty page per non-empty window
        when Bybit gives the last page a cursor; each is one ``_read`` (retried on network errors)."""
        usym = self._usym[symbol]
        market = self.ex.market(usym)
        windows = _fill_windows(since_ms, int(self.ex.nonce()), _BYBIT_WINDOW_MS, _BYBIT_HISTORY_MS, _BYBIT_SKEW_MS,
                               shared_boundary=True)  # nonce: the exchange's clock as signed requests estimate it
        first = windows[0][0]
        seen: dict[str, dict[str, Any]] = {}
        for start, end in windows:
            # every execType: a liquidation (BustTrade), an auto-deleveraging (AdlTrade) or a delisting's Delivery /
            # Settle changes the position too (``Fill.venue_action``); only Funding rows, fees on the position with
            # its size as execQty, are not executions and are dropped below
            request: dict[str, Any] = {"category": "linear", "symbol": market["id"], "startTime": start,
                                       "limit": _BYBIT_PAGE}
            if end is not None:
                request["endTime"] = end
            cursor, cursors = "", set()
            for _page in range(_BYBIT_MAX_PAGES):
                query = {**request, "cursor": cursor} if cursor else request
                resp = self._read(self.ex.privateGetV5ExecutionList, query)
                result = (resp or {}).get("result") or {}
                rows = result.get("list") or []
                for t in self.ex.parse_trades([r for r in rows if r.get("execType") != "Funding"], market):
                    if int(t["timestamp"]) >= first:
                        seen.setdefault(str(t["id"]), t)
                cursor = str(result.get("nextPageCursor") or "")
                if not rows or not cursor:
                    break
                if cursor in cursors:
                    raise VenueRejected(f"{self.name}: /v5/execution/list of {symbol} from {start} ms repeated the "
                                        f"cursor {cursor!r}; its executions cannot be fetched completely")
                cursors.add(cursor)
            else:
                raise VenueRejected(f"{self.name}: over {_BYBIT_MAX_PAGES} pages of {symbol}'s executions in the 7 "
                                    f"days from {start} ms; they cannot be fetched completely")
        return list(seen.values())

    def _binance_user_trades(self, symbol: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Every ``GET /fapi/v1/userTrades`` row of ``symbol`` from ``since_ms`` to now, as ccxt trades, deduplicated
        by trade id (any order).

        Binance's rules (USDⓈ-M "Account Trade List"): at most ``limit`` rows (default 500, max 1000), ordered by trade
        id, the earliest first from ``startTime``; ``endTime - startTime`` at most 7 days (-4166); with neither, the
        last 7 days (the most recent rows); ``fromId`` (trades with id >= it) cannot be sent with either time (-4133);
        only the past 6 months are served.

        Why not ccxt's ``paginate`` (``fetch_paginated_call_dynamic``, ccxt 4.5): by default it walks *backward*: the
        first request sends no time (the most recent rows), every next one ``until`` = the oldest row's time - 1 and
        no ``since``, i.e. "endTime only" (Binance: the 7 days before it, earliest rows first), so rows between pages
        are skipped, a 7-day gap without trades ends it, and rows sharing the boundary millisecond are lost;
        ``paginationDirection: forward`` steps ``since`` to the newest row's time + 1 (the same boundary loss) and
        stops at the first empty page (a quiet week ends it); both stop silently after ``paginationCalls`` (default
        10) requests and retry failed pages themselves; it does deduplicate by id.  Against tests/fake_binance.py:
        backward 2000 and forward 2596 of 2600 fills in one hour; 119 and 48 of 167 over 20 days with a quiet week.

        The loop here: 7-day time windows from ``since_ms`` (clamped to the 6 months Binance serves), each sent as
        ``startTime`` + ``endTime`` (a span of 7 days - 1 ms), all of them in the past; the last window, which
        begins at least an hour (``_BINANCE_SKEW_MS``) after now - 7 days, is sent with ``startTime`` only, so the
        exchange's own clock ends it (7 days later, past its now).  A full page (1000 rows) is followed by the next
        from its newest row's time *inclusive* (rows of that millisecond come again and are dropped by id), until a
        page is short.  A full page all in one millisecond (over 1000 fills at once, e.g. one order sweeping the book)
        continues by ``fromId`` = its largest id + 1 with no times, keeping the rows of that millisecond, then goes
        on from the next one; without times Binance filters to the last 7 days, so such a millisecond older than
        that (less the skew margin) raises VenueRejected instead of dropping fills.  Requests: one per window
        (ceil((days - 7) / 7) + 1) plus one per further full page (a page adds 1000 rows less those of its newest
        millisecond); each is one ``_read`` (retried on network errors)."""
        usym = self._usym[symbol]
        now = int(self.ex.nonce())  # the exchange's clock as the signed requests' timestamp estimates it
        seen: dict[str, dict[str, Any]] = {}
        for start, end in _fill_windows(since_ms, now, _BINANCE_WINDOW_MS, _BINANCE_HISTORY_MS, _BINANCE_SKEW_MS,
                                       shared_boundary=False):
            cursor = start
            while True:  # pages of the window [start, end] (end None: to the exchange's now)
                params = {} if end is None else {"endTime": end}
                page = self._read(self.ex.fetch_my_trades, usym, cursor, _BINANCE_PAGE, params)
                for t in page:
                    seen.setdefault(str(t["id"]), t)
                if len(page) < _BINANCE_PAGE:
                    break
                newest = max(int(t["timestamp"]) for t in page)
                if newest > cursor:
                    cursor = newest  # inclusive: the rest of that millisecond comes with the next page
                    continue
                self._binance_same_ms(symbol, cursor, page, seen, now)
                cursor += 1
                if end is not None and cursor > end:
                    break
        return list(seen.values())

    def _binance_same_ms(self, symbol: str, ms: int, page: list[dict[str, Any]], seen: dict[str, dict[str, Any]],
                         now: int) -> None:
        """The rows of millisecond ``ms`` after a full page all in it: by ``fromId`` (no times), into ``seen``."""
        if ms < now - _BINANCE_WINDOW_MS + _BINANCE_SKEW_MS:
            raise VenueRejected(f"{self.name}: over {_BINANCE_PAGE} fills of {symbol} at {ms} ms; Binance pages them "
                                f"by fromId within its last 7 days only, so they cannot be fetched completely")
        while len(page) >= _BINANCE_PAGE and all(int(t["timestamp"]) == ms for t in page):
            from_id = max(int(t["id"]) for t in page) + 1
            page = self._read(self.ex.fetch_my_trades, self._usym[symbol], None, _BINANCE_PAGE, {"fromId": from_id})
            for t in page:
                if int(t["timestamp"]) == ms:
                    seen.setdefault(str(t["id"]), t)

    def _client_id_of(self, symbol: str, order_id: str) -> str:
        """The client order id of a venue order id: Binance's ``userTrades`` carry only ``orderId``, so an id not seen
        in an order response is looked up once (``GET /fapi/v1/order?orderId=``); "" when the exchange has no such
        order (or the trade names none)."""
        if not order_id or self.exchange_id != "binanceusdm":  # Bybit executions carry orderLinkId ("" is none)
            return ""
        if order_id not in self._cid_of_order:
            try:
                self._order_state(self._read(self.ex.fetch_order, order_id, self._usym[symbol]), symbol)
            except VenueRejected as exc:
                if "OrderNotFound" not in str(exc):
                    raise
            self._cid_of_order.setdefault(order_id, "")
        return self._cid_of_order[order_id]

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
        """The USDT wallet balance (fees and realised P&L included, no unrealised P&L): ccxt's ``total`` on Bybit
        (``walletBalance``); on Binance USDⓈ-M ccxt's ``total`` is ``marginBalance`` (wallet + unrealised P&L), so the
        account's ``assets[USDT].walletBalance`` is read instead."""
        b = self._read(self.ex.fetch_balance)
        if self.exchange_id == "binanceusdm":
            for a in (b.get("info") or {}).get("assets") or []:
                if a.get("asset") == "USDT" and a.get("walletBalance") is not None:
                    return float(a["walletBalance"])
        return float((b.get("USDT") or {}).get("total") or 0.0)
