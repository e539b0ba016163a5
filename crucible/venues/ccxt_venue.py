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
becomes :class:`VenueNetworkError` — outcome unknown; ``DuplicateOrderId`` and
other exchange refusals become :class:`VenueRejected`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from crucible.venues.base import BAR_FIELDS, Bar, Fill, OrderState, Venue, VenueNetworkError, VenueRejected

__all__ = ["CcxtVenue", "KEY_ENV"]

KEY_ENV = {"bybit": ("BYBIT_API_KEY", "BYBIT_API_SECRET"), "binanceusdm": ("BINANCE_API_KEY", "BINANCE_API_SECRET")}


def _keys(exchange_id: str) -> tuple[str | None, str | None]:
    k, s = os.environ.get("CRUCIBLE_API_KEY"), os.environ.get("CRUCIBLE_API_SECRET")
    if k and s:
        return k, s
    ek, es = KEY_ENV.get(exchange_id, ("", ""))
    return os.environ.get(ek) or None, os.environ.get(es) or None


class CcxtVenue(Venue):
    """Live venue over a ccxt exchange (synchronous API).

    exchange_id: "bybit" or "binanceusdm"; symbols: exchange symbol ids ("BTCUSDT"); sandbox: testnet;
    api_url: override of every ``urls['api']`` entry; poll_seconds: bar polling interval;
    stop_event: interrupts waits; taker_fee_bps: informational.
    raises VenueNetworkError if markets cannot be loaded.
    """

    live = True

    def __init__(self, exchange_id: str, symbols: list[str], *, sandbox: bool = True, api_url: str | None = None,
                 poll_seconds: float = 2.0, stop_event: threading.Event | None = None, timeout_ms: int = 10_000,
                 taker_fee_bps: float = 5.5) -> None:
        import ccxt

        self._ccxt = ccxt
        key, secret = _keys(exchange_id)
        opts: dict[str, Any] = {"enableRateLimit": api_url is None, "timeout": timeout_ms,
                                "options": {"defaultType": "swap"}}
        if key and secret:
            opts.update(apiKey=key, secret=secret)
        if exchange_id == "bybit":
            opts["options"].update(fetchMarkets={"types": ["linear"]}, enableUnifiedAccount=True,
                                   enableUnifiedMargin=False, loadAllOptions=False)
        self.ex = getattr(ccxt, exchange_id)(opts)
        if sandbox:
            self.ex.set_sandbox_mode(True)
        if api_url is not None:
            api = self.ex.urls["api"]
            self.ex.urls["api"] = {k: api_url for k in api} if isinstance(api, dict) else api_url
        self.name = f"{exchange_id}{'-sandbox' if sandbox else ''}"
        self.exchange_id = exchange_id
        self.symbols = tuple(symbols)
        self.taker_fee_bps = taker_fee_bps
        self.poll_seconds = poll_seconds
        self._stop = stop_event or threading.Event()
        self._bars: dict[str, dict[int, Bar]] = {s: {} for s in self.symbols}
        self._last_delivered: int | None = None
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

    def __repr__(self) -> str:  # never show credentials
        return f"CcxtVenue({self.name}, {list(self.symbols)})"

    # ------------------------------------------------------------------ error mapping

    def _call(self, fn, *args, **kw):
        ccxt = self._ccxt
        try:
            return fn(*args, **kw)
        except ccxt.DuplicateOrderId as exc:
            raise VenueRejected(f"duplicate client order id ({exc})"[:300]) from None
        except ccxt.NetworkError as exc:  # includes RequestTimeout, ExchangeNotAvailable, DDoSProtection
            raise VenueNetworkError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except ccxt.ExchangeError as exc:
            raise VenueRejected(f"{type(exc).__name__}: {str(exc)[:200]}") from None

    # ------------------------------------------------------------------ clock & bars

    def now_ms(self) -> int:
        return int(self.ex.milliseconds())

    def _refresh(self, symbol: str, limit: int) -> None:
        rows = self._call(self.ex.fetch_ohlcv, self._usym[symbol], "1m", None, limit)
        now = self.now_ms()
        for r in rows:
            t = int(r[0])
            if t + 60_000 <= now:  # closed bars only
                self._bars[symbol][t] = Bar(symbol, t, float(r[1]), float(r[2]), float(r[3]), float(r[4]),
                                            float(r[5]))

    def history(self, symbol: str, n: int) -> dict[str, np.ndarray]:
        if len(self._bars[symbol]) < n:
            self._refresh(symbol, min(int(n), 1000))
        ts = sorted(self._bars[symbol])[-int(n):]
        bars = [self._bars[symbol][t] for t in ts]
        out = {}
        for c in BAR_FIELDS:
            dtype = np.int64 if c in ("open_time", "count") else np.float64
            out[c] = np.array([getattr(b, c) for b in bars], dtype=dtype)
        return out

    def next_bars(self, timeout_s: float | None = None) -> dict[str, Bar] | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._stop.is_set():
            try:
                for s in self.symbols:
                    self._refresh(s, 3)
            except VenueNetworkError:
                pass  # a dropped poll is retried; a long outage shows up as a stale feed
            latest = min((max(b) if b else -1) for b in self._bars.values())
            if latest >= 0 and (self._last_delivered is None or latest > self._last_delivered):
                self._last_delivered = latest
                return {s: self._bars[s][latest] for s in self.symbols if latest in self._bars[s]}
            if deadline is not None and time.monotonic() >= deadline:
                return None
            self._stop.wait(self.poll_seconds)
        return None

    # ------------------------------------------------------------------ orders

    def _order_state(self, o: dict[str, Any], symbol: str) -> OrderState:
        sign = 1.0 if o.get("side") == "buy" else -1.0
        st = {"open": "open", "closed": "filled", "canceled": "canceled", "rejected": "rejected",
              "expired": "canceled"}.get(o.get("status") or "open", "open")
        return OrderState(str(o.get("id")), str(o.get("clientOrderId") or ""), symbol,
                          sign * float(o.get("amount") or 0.0), sign * float(o.get("filled") or 0.0), st,
                          int(o.get("timestamp") or self.now_ms()))

    def create_market_order(self, symbol: str, qty: float, client_order_id: str) -> OrderState:
        usym = self._usym[symbol]
        amount = float(self.ex.amount_to_precision(usym, abs(qty)))
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
            resp = self._call(self.ex.privateGetV5OrderRealtime,
                              {"category": "linear", "symbol": m["id"], "orderLinkId": client_order_id})
            rows = ((resp or {}).get("result") or {}).get("list") or []
            if not rows:
                resp = self._call(self.ex.privateGetV5OrderHistory,
                                  {"category": "linear", "symbol": m["id"], "orderLinkId": client_order_id})
                rows = ((resp or {}).get("result") or {}).get("list") or []
            if not rows:
                return None
            return self._order_state(self.ex.parse_order(rows[0], m), symbol)
        try:
            o = self._call(self.ex.fetch_order, None, usym, {"origClientOrderId": client_order_id})
        except VenueRejected as exc:
            if "OrderNotFound" in str(exc):
                return None
            raise
        return self._order_state(o, symbol)

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        out = []
        for s in ([symbol] if symbol else self.symbols):
            for o in self._call(self.ex.fetch_open_orders, self._usym[s]):
                out.append(self._order_state(o, s))
        return out

    def cancel_order(self, symbol: str, client_order_id: str) -> None:
        self._call(self.ex.cancel_order, None, self._usym[symbol], {"clientOrderId": client_order_id})

    def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[Fill]:
        trades = self._call(self.ex.fetch_my_trades, self._usym[symbol], since_ms)
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
        for p in self._call(self.ex.fetch_positions, list(self._usym.values())):
            s = rev.get(p["symbol"])
            if s is None:
                continue
            q = float(p.get("contracts") or 0.0) * float(p.get("contractSize") or 1.0)
            if q:
                out[s] = q if p.get("side") == "long" else -q
        return out

    def fetch_balance(self) -> float:
        b = self._call(self.ex.fetch_balance)
        return float((b.get("USDT") or {}).get("total") or 0.0)
