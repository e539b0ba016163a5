"""ReplayVenue: historical 1-minute bars replayed as a live feed, with a
simulated exchange that fills market orders exactly like the backtester.

Fill model (:mod:`forge.backtest.costs`, the backtester's): a market order submitted
while bar t is the last closed bar fills at the **open of bar t+1** at
``open * (1 + s)`` for a buy and ``open * (1 - s)`` for a sell,
``s = slippage_bps / 1e4``; the taker fee is ``taker_fee_bps / 1e4 *
(|qty| * price)`` (USDT).  Trade ids (``R<symbol>-<n>``) and order ids are
deterministic, so two replays of the same bars and orders are identical.

Resting limit orders (:meth:`ReplayVenue.create_limit_order`, issue 31) fill by the kline fill model of the
backtester (:func:`forge.backtest.fills.kline_limit_fill`): in a bar that trades *through* the price (low <
price for a buy, high > price for a sell), at the order's price, with the maker fee, for at most
``max_volume_share`` of the bar's volume; an order placed after bar t closed is first checked against
bar t+1.  The parity test (tests/test_execution_parity.py) drives this venue and the kline backtest with the
same orders and requires the same fills, bar for bar.

Speed: ``speed`` = replay speed as a multiple of real time (1 = one bar per
60 s, 60 = one bar per second); ``None``, ``0`` or ``inf`` = as fast as
possible.  ``faults`` lets tests inject exchange failures (see
:meth:`ReplayVenue.inject`).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import threading
from collections import deque
from typing import Any

import numpy as np
import polars as pl

from crucible.venues.base import (BAR_FIELDS, Bar, Fill, MarketRules, OrderState, Venue, VenueDuplicateOrder,
                                  VenueNetworkError, VenuePostOnlyReject, VenueRejected)
from forge.backtest.costs import bps, fill_price, funding_payment, funding_rate_per_event, is_funding_time, taker_fee
from forge.backtest.fills import infer_tick, kline_limit_fill
from forge.data.schema import BAR_MS

__all__ = ["ReplayVenue"]

ROW_CHUNK = 4096  # bars of a symbol converted to Python values at a time (one ``tolist`` instead of one per bar)


def _maker(cls):
    """``cls(*values)`` for a frozen dataclass, without the ``object.__setattr__`` per field its ``__init__`` makes:
    the same object (fields, equality, hash, repr).  values: the fields in declaration order; a field with a default
    (a plain value, not a factory) may be left out, as in ``cls(...)``."""
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    assert all(n.isidentifier() and not n.startswith("_") for n in names)
    assert all(f.default_factory is dataclasses.MISSING for f in fields)
    params = [n if f.default is dataclasses.MISSING else f"{n}=_default_{n}" for n, f in zip(names, fields)]
    # def make(f1, f2, ...): _o = _new(_cls); _d = _o.__dict__; _d["f1"] = f1; ...; return _o  (one store per field)
    src = (f"def make({', '.join(params)}):\n    _o = _new(_cls)\n    _d = _o.__dict__\n"
           + "".join(f"    _d[{n!r}] = {n}\n" for n in names) + "    return _o\n")
    ns: dict = {"_new": object.__new__, "_cls": cls,
                **{f"_default_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}}
    exec(src, ns)  # noqa: S102 -- the source is built from the dataclass's own field names only
    make = ns["make"]
    make.__doc__ = f"{cls.__name__}(*values) of all {len(names)} fields {names}"
    return make


_bar = _maker(Bar)
_fill = _maker(Fill)
_order = _maker(OrderState)


class ReplayVenue(Venue):
    """Replay of bar frames (one per symbol) from bar index ``start``.

    bars: {symbol: polars bar frame (``forge.data.schema``)}; start: number
    of bars (of the merged timeline) that are history before the replay's
    first bar; end: timeline index to stop at (exclusive; None = all);
    balance: starting cash, USDT; taker_fee_bps, slippage_bps: cost model
    (defaults match ``BacktestConfig``); maker_fee_bps (default: the taker fee), max_volume_share, lot_size,
    tick_size (0: inferred from the prices): resting limit orders (module docstring); funding_rate_8h, perpetual: the symbols traded as linear
    perpetuals pay ``funding_rate_8h`` (scaled to ``funding_interval_h``) on the account's position at every funding time (as the
    backtester and the slot ledgers, :mod:`forge.backtest.costs`); speed: see module docstring;
    stop_event: a threading.Event that interrupts pacing sleeps.
    raises ValueError for empty frames or start outside the data.
    """

    name = "replay"

    def __init__(self, bars: dict[str, pl.DataFrame], *, start: int = 0, end: int | None = None,
                 balance: float = 10_000.0, taker_fee_bps: float = 10.0, slippage_bps: float = 1.0,
                 speed: float | None = None, stop_event: threading.Event | None = None,
                 funding_rate_8h: float = 0.0, funding_interval_h: int = 8, perpetual: tuple[str, ...] | list[str] = (),
                 maker_fee_bps: float | None = None, max_volume_share: float = 0.1, lot_size: float = 0.0,
                 tick_size: float = 0.0) -> None:
        if not bars:
            raise ValueError("ReplayVenue needs at least one symbol's bars")
        self.funding_rate_8h = float(funding_rate_8h)
        self.funding_interval_ms = int(funding_interval_h) * 3_600_000
        self.funding_rate_event = funding_rate_per_event(self.funding_rate_8h, self.funding_interval_ms)
        self.perpetual = tuple(s for s in perpetual if s in bars)
        self.taker_fee_bps = float(taker_fee_bps)
        self.slippage_bps = float(slippage_bps)
        self.maker_fee_bps = self.taker_fee_bps if maker_fee_bps is None else float(maker_fee_bps)
        self.max_volume_share = float(max_volume_share)
        self.lot_size = float(lot_size)
        self.tick_size = float(tick_size)
        self._rules: dict[str, MarketRules] = {}
        self._cancel_faults: deque[str] = deque()
        self.post_only_rejects = 0  # post-only limit orders refused (tests)
        self.cross_next_post_only = 0  # the next n post-only orders are refused as crossing (tests)
        self.cancels = 0  # cancel requests that reached the venue (tests)
        self._resting: list[str] = []  # client order ids of resting limit orders, in submission order
        self._limit_px: dict[str, float] = {}
        self.speed = speed
        self._stop = stop_event or threading.Event()
        self._cols: dict[str, dict[str, np.ndarray]] = {}
        self._rec: dict[str, np.ndarray] = {}
        times = []
        for sym, df in bars.items():
            if df.height == 0:
                raise ValueError(f"{sym}: no bars")
            cols = {}
            for c in BAR_FIELDS:
                if c in df.columns:
                    dtype = np.int64 if c in ("open_time", "count") else np.float64
                    cols[c] = np.ascontiguousarray(df[c].to_numpy(), dtype=dtype)
                else:
                    cols[c] = np.zeros(df.height, dtype=np.int64 if c == "count" else np.float64)
            self._cols[sym] = cols
            rec = np.empty(df.height, dtype=[(c, cols[c].dtype) for c in BAR_FIELDS])
            for c in BAR_FIELDS:
                rec[c] = cols[c]
            self._rec[sym] = rec  # one record per bar: Bar(symbol, *rec[i].item()) in one call
            times.append(cols["open_time"])
        self._row_chunk: dict[str, tuple[int, list[tuple]]] = {}  # symbol -> (first row, rec[first:...].tolist())
        self.symbols = tuple(bars)
        self._timeline = np.unique(np.concatenate(times))
        self._tl: list[int] = self._timeline.tolist()  # the timeline as Python ints (the clock reads it every call)
        self._end = len(self._timeline) if end is None else min(int(end), len(self._timeline))
        if not 0 <= start < self._end:
            raise ValueError(f"start {start} outside the replay's {self._end} bars")
        self._cursor = start - 1  # index of the last closed bar on the timeline (-1: none)
        t0 = self._timeline[self._cursor] if self._cursor >= 0 else None
        self._times = {sym: c["open_time"].tolist() for sym, c in self._cols.items()}
        self._rows = {sym: 0 if t0 is None else int(np.searchsorted(c["open_time"], t0, side="right"))
                      for sym, c in self._cols.items()}  # rows of each symbol closed so far
        # account
        self._cash = float(balance)
        self._pos: dict[str, float] = {s: 0.0 for s in self.symbols}
        self._orders: dict[str, OrderState] = {}  # by client order id
        self._pending: list[str] = []  # client order ids waiting for the next open
        self._fills: dict[str, list[Fill]] = {s: [] for s in self.symbols}
        self._n_orders = 0
        self._n_trades = 0
        self._faults: deque[str] = deque()
        self.submits = 0  # create_market_order calls that reached the venue (tests)

    # ------------------------------------------------------------------ faults (tests)

    def inject(self, *faults: str) -> None:
        """Queue faults for the next ``create_market_order`` calls, one per call:

        "drop_after_accept" (order accepted, response lost -> VenueNetworkError),
        "network_before" (request lost before the venue -> VenueNetworkError),
        "http_5xx" / "rate_limit" (refused with an error, nothing created -> VenueNetworkError),
        "reject" (refused, nothing created -> VenueRejected, as insufficient margin);
        and for ``create_limit_order`` also "post_only" (refused as crossing -> VenuePostOnlyReject).
        """
        self._faults.extend(faults)

    # ------------------------------------------------------------------ clock & feed

    @property
    def cursor(self) -> int:
        """Timeline index of the last closed bar (-1 before the first)."""
        return self._cursor

    def now_ms(self) -> int:
        c = self._cursor
        if c < 0:
            return self._tl[0]
        return self._tl[c] + BAR_MS

    def _idx(self, sym: str) -> int:
        """Rows of ``sym`` closed so far (kept up to date by :meth:`next_bars`)."""
        return self._rows[sym]

    def history(self, symbol: str, n: int) -> dict[str, np.ndarray]:
        cols = self._cols[symbol]
        hi = self._idx(symbol)
        lo = max(0, hi - int(n))
        return {c: v[lo:hi] for c, v in cols.items()}

    def prefetch(self, symbol: str, n: int) -> dict[str, np.ndarray]:
        """The next ``n`` bars of ``symbol`` after the last closed bar (not yet delivered), oldest first,
        as ``history`` columns; fewer at the end of the replay.

        Only the replay venue can do this: it feeds the chunked signal pipeline
        (``[replay] prefetch_bars``), which evaluates causal features and programs once per chunk; a
        value at bar t never depends on these later bars (tested in tests/test_crucible.py).
        """
        cols = self._cols[symbol]
        lo = self._idx(symbol)
        end_t = self._timeline[self._end - 1]
        hi = min(lo + int(n), int(np.searchsorted(cols["open_time"], end_t, side="right")))
        return {c: v[lo:max(lo, hi)] for c, v in cols.items()}

    def history_at(self, symbol: str, n: int, t: int) -> dict[str, np.ndarray]:
        """Like :meth:`history` as it was when the bar opening at ``t`` (ms) had just closed: the last ``n``
        bars with open time <= t (and <= the last closed bar).  Used to re-process bars after a restart."""
        cols = self._cols[symbol]
        hi = min(self._idx(symbol), int(np.searchsorted(cols["open_time"], t, side="right")))
        lo = max(0, hi - int(n))
        return {c: v[lo:hi] for c, v in cols.items()}

    def prefetch_at(self, symbol: str, n: int, t: int) -> dict[str, np.ndarray]:
        """Like :meth:`prefetch` as it was when the bar opening at ``t`` (ms) had just closed."""
        cols = self._cols[symbol]
        lo = int(np.searchsorted(cols["open_time"], t, side="right"))
        end_t = self._timeline[self._end - 1]
        hi = min(lo + int(n), int(np.searchsorted(cols["open_time"], end_t, side="right")))
        return {c: v[lo:max(lo, hi)] for c, v in cols.items()}

    def remaining(self) -> int:
        """Bars left to replay."""
        return self._end - 1 - self._cursor

    def next_bars(self, timeout_s: float | None = None) -> dict[str, Bar] | None:
        if self._cursor + 1 >= self._end:
            return None
        if self.speed and math.isfinite(self.speed) and self.speed > 0:
            if self._stop.wait(60.0 / self.speed):
                return None
        self._cursor += 1
        t = self._tl[self._cursor]
        out: dict[str, Bar] = {}
        rows = self._rows
        chunks = self._row_chunk
        for sym, rec in self._rec.items():
            times, r = self._times[sym], rows[sym]
            while r < len(times) and times[r] <= t:  # = searchsorted(open_time, t, "right"), one step at a time
                r += 1
            rows[sym] = r
            if r and times[r - 1] == t:
                i = r - 1
                c = chunks.get(sym)
                if c is None or not c[0] <= i < c[0] + len(c[1]):  # = rec[i].item() for the next ROW_CHUNK rows
                    c = chunks[sym] = (i, rec[i:i + ROW_CHUNK].tolist())
                out[sym] = _bar(sym, *c[1][i - c[0]])
        if self.perpetual and self.funding_rate_8h and is_funding_time(t, self.funding_interval_ms):
            for sym in self.perpetual:
                b = out.get(sym)
                if b is not None and self._pos[sym] != 0.0:  # the position held into this open pays
                    self._cash -= funding_payment(self._pos[sym], b.open, self.funding_rate_event)
        if self._pending:  # (each is a no-op without orders waiting)
            self._fill_pending(out)
        if self._resting:
            self._fill_resting(out)
        return out

    def funding_rate(self, symbol: str) -> float | None:
        """The configured funding rate per funding event for a perpetual symbol, None for spot symbols."""
        return self.funding_rate_event if symbol in self.perpetual else None

    def _fill_pending(self, bars: dict[str, Bar]) -> None:
        s = bps(self.slippage_bps)
        fee_rate = bps(self.taker_fee_bps)
        still: list[str] = []
        for cid in self._pending:
            o = self._orders[cid]
            bar = bars.get(o.symbol)
            if bar is None:  # no bar for this symbol (gap): wait for its next open
                still.append(cid)
                continue
            price = fill_price(bar.open, o.qty, s)
            fee = taker_fee(o.qty, price, fee_rate)
            self._n_trades += 1
            fill = _fill(f"R{o.symbol}-{self._n_trades}", o.order_id, cid, o.symbol, o.qty, price, fee, bar.open_time)
            self._fills[o.symbol].append(fill)
            self._cash -= o.qty * price + fee
            pos = self._pos[o.symbol] + o.qty
            self._pos[o.symbol] = 0.0 if abs(pos) < 1e-15 else pos  # as the ledgers: no float dust position
            self._orders[cid] = _order(o.order_id, cid, o.symbol, o.qty, o.qty, "filled", o.time_ms, "market", 0.0, "")
        self._pending = still

    def _fill_resting(self, bars: dict[str, Bar]) -> None:
        """Resting limit orders against this bar: the kline fill model (module docstring)."""
        fee_rate = bps(self.maker_fee_bps)
        still: list[str] = []
        for cid in self._resting:
            o = self._orders[cid]
            bar = bars.get(o.symbol)
            if bar is None:
                still.append(cid)
                continue
            side = 1 if o.qty > 0 else -1
            price = self._limit_px[cid]
            left = abs(o.qty) - abs(o.filled)
            q = kline_limit_fill(side, price, left, bar.low, bar.high, bar.volume, self.max_volume_share,
                                 self.lot_size)
            if q > 0.0:
                dq = side * q
                fee = fee_rate * (q * price)
                self._n_trades += 1
                self._fills[o.symbol].append(Fill(f"R{o.symbol}-{self._n_trades}", o.order_id, cid, o.symbol, dq,
                                                  price, fee, bar.open_time))
                self._cash -= dq * price + fee
                self._pos[o.symbol] += dq
                done = q >= left
                self._orders[cid] = OrderState(o.order_id, cid, o.symbol, o.qty, o.filled + dq,
                                               "filled" if done else "open", o.time_ms, "limit", price)
                if done:
                    continue
            still.append(cid)
        self._resting = still

    def create_limit_order(self, symbol: str, qty: float, price: float, client_order_id: str, *,
                           post_only: bool = True, reduce_only: bool = False) -> OrderState:
        """Rest a limit order of ``qty`` base units (signed: + buy) at ``price`` (quote per unit) until filled
        or cancelled (maker; fills by the kline fill model from the next bar on).

        Post-only: refused (VenuePostOnlyReject) when it would cross the replay's estimated touch -- a buy at or
        above ``close * (1 + slippage_bps / 1e4)`` of the last closed bar (its ask), a sell at or below
        ``close * (1 - slippage_bps / 1e4)`` (its bid); a limit the kline fill model prices (below the close for
        a buy) is never refused, as in the backtest.  Faults queued by :meth:`inject` apply to this call as to a
        market order ("post_only" forces a post-only refusal).
        raises VenueRejected on an unknown symbol, a zero/non-finite qty or price, a reduce-only order that does not
        reduce; VenueDuplicateOrder on a known id."""
        fault = self._faults.popleft() if self._faults else None
        if fault in ("network_before", "http_5xx", "rate_limit"):
            raise VenueNetworkError(f"replay fault {fault} on {client_order_id}")
        if fault == "reject":
            raise VenueRejected(f"replay fault: insufficient margin for {client_order_id}")
        if symbol not in self._cols:
            raise VenueRejected(f"unknown symbol {symbol!r}")
        if not (math.isfinite(qty) and qty != 0.0 and math.isfinite(price) and price > 0.0):
            raise VenueRejected(f"limit order needs a finite non-zero qty and price > 0, got {qty!r} @ {price!r}")
        if client_order_id in self._orders:
            raise VenueDuplicateOrder(f"duplicate client order id {client_order_id}")
        if post_only:
            r = self._idx(symbol)
            last = float(self._cols[symbol]["close"][r - 1]) if r else float(self._cols[symbol]["open"][0])
            s = bps(self.slippage_bps)
            crosses = price >= last * (1.0 + s) if qty > 0 else price <= last * (1.0 - s)
            if self.cross_next_post_only > 0:  # the market moved through the price before the order arrived (tests)
                self.cross_next_post_only -= 1
                crosses = True
            if crosses or fault == "post_only":
                self.post_only_rejects += 1
                raise VenuePostOnlyReject(f"post-only {client_order_id} at {price} would cross (last {last})")
        if reduce_only:
            self._check_reduce(symbol, qty, client_order_id)
        self.submits += 1
        self._n_orders += 1
        o = OrderState(f"O{self._n_orders}", client_order_id, symbol, float(qty), 0.0, "open", self.now_ms(),
                       "limit", float(price))
        self._orders[client_order_id] = o
        self._limit_px[client_order_id] = float(price)
        self._resting.append(client_order_id)
        if fault == "drop_after_accept":
            raise VenueNetworkError(f"replay fault: response to {client_order_id} lost after accept")
        return o

    def market_rules(self, symbol: str) -> MarketRules:
        """The replay's rules: ``tick_size`` (0: inferred from the symbol's prices, :func:`forge.backtest.fills.infer_tick`),
        ``lot_size``, no minimum notional."""
        if symbol not in self._rules:
            tick = self.tick_size if self.tick_size > 0 else infer_tick(self._cols[symbol]["close"])
            self._rules[symbol] = MarketRules(tick, self.lot_size, 0.0)
        return self._rules[symbol]

    def _check_reduce(self, symbol: str, qty: float, cid: str) -> None:
        pos = self._pos[symbol] + sum(self._orders[c].qty for c in self._pending if self._orders[c].symbol == symbol)
        if pos == 0.0 or (pos > 0) == (qty > 0) or abs(qty) > abs(pos) + 1e-12:
            raise VenueRejected(f"reduce-only order {cid} ({qty}) would not reduce the position {pos}")

    # ------------------------------------------------------------------ orders

    def create_market_order(self, symbol: str, qty: float, client_order_id: str, *,
                            reduce_only: bool = False) -> OrderState:
        fault = self._faults.popleft() if self._faults else None
        if fault in ("network_before", "http_5xx", "rate_limit"):
            raise VenueNetworkError(f"replay fault {fault} on {client_order_id}")
        if fault == "reject":
            raise VenueRejected(f"replay fault: insufficient margin for {client_order_id}")
        if symbol not in self._cols:
            raise VenueRejected(f"unknown symbol {symbol!r}")
        if not (math.isfinite(qty) and qty != 0.0):
            raise VenueRejected(f"order qty must be finite and non-zero, got {qty!r}")
        if client_order_id in self._orders:
            raise VenueDuplicateOrder(f"duplicate client order id {client_order_id}")
        if reduce_only:
            self._check_reduce(symbol, qty, client_order_id)
        self.submits += 1
        self._n_orders += 1
        o = _order(f"O{self._n_orders}", client_order_id, symbol, float(qty), 0.0, "open", self.now_ms(), "market", 0.0, "")
        self._orders[client_order_id] = o
        self._pending.append(client_order_id)
        if fault == "drop_after_accept":
            raise VenueNetworkError(f"replay fault: response to {client_order_id} lost after accept")
        return o

    def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return self._orders.get(client_order_id)

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return [self._orders[c] for c in (*self._pending, *self._resting)
                if symbol is None or self._orders[c].symbol == symbol]

    def inject_cancel(self, *faults: str) -> None:
        """Queue faults for the next ``cancel_order`` calls, one per call: "drop_after_accept" (cancelled, the
        response lost -> VenueNetworkError), "network_before" (not cancelled -> VenueNetworkError)."""
        self._cancel_faults.extend(faults)

    def cancel_order(self, symbol: str, client_order_id: str) -> None:
        fault = self._cancel_faults.popleft() if self._cancel_faults else None
        if fault == "network_before":
            raise VenueNetworkError(f"replay fault: cancel of {client_order_id} lost before the venue")
        self.cancels += 1
        self._cancel(client_order_id)
        if fault == "drop_after_accept":
            raise VenueNetworkError(f"replay fault: response to the cancel of {client_order_id} lost")

    def _cancel(self, client_order_id: str) -> None:
        if client_order_id in self._resting:
            self._resting.remove(client_order_id)
            o = self._orders[client_order_id]
            self._orders[client_order_id] = OrderState(o.order_id, o.client_order_id, o.symbol, o.qty, o.filled,
                                                       "canceled", o.time_ms, "limit", o.price)
            return
        if client_order_id in self._pending:
            self._pending.remove(client_order_id)
            o = self._orders[client_order_id]
            self._orders[client_order_id] = OrderState(o.order_id, o.client_order_id, o.symbol, o.qty, 0.0,
                                                       "canceled", o.time_ms)

    def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[Fill]:
        fills = self._fills.get(symbol, [])  # appended in time order
        if since_ms is None:
            return list(fills)
        i = len(fills)  # = bisect_left(fills, since_ms, key=time_ms): a few steps back from the end, else the bisection
        lo = max(0, i - 8)
        while i > lo and fills[i - 1].time_ms >= since_ms:
            i -= 1
        if i == lo and i and fills[i - 1].time_ms >= since_ms:
            i = bisect.bisect_left(fills, since_ms, lo=0, hi=i, key=lambda f: f.time_ms)
        return fills[i:]

    def fetch_positions(self) -> dict[str, float]:
        return {s: q for s, q in self._pos.items() if q != 0.0}

    def fetch_balance(self) -> float:
        return self._cash

    def state(self) -> dict[str, Any]:
        """Exchange-side truth for tests: cash, positions, fills per trade id."""
        return {"cash": self._cash, "positions": dict(self._pos),
                "fills": {f.trade_id: f for fs in self._fills.values() for f in fs},
                "orders": dict(self._orders)}
