"""The venue interface shared by the replay venue and ccxt exchanges.

Units: prices are quote currency (USDT) per unit of base; quantities are
base units; signed quantities are + for buys, - for sells; fees are quote
currency (USDT) and always >= 0; times are int64 milliseconds since the Unix
epoch, UTC.  A venue's clock (``now_ms``) is the clock the runtime uses, so
replay and live share every line of strategy code.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from forge.core.errors import ForgeError

__all__ = ["BINANCE_VENUE_ORDER_PREFIXES", "BYBIT_VENUE_EXEC_TYPES", "Bar", "Fill", "MarketRules", "VENUE_ACTIONS", "OrderState", "RetryPolicy", "Venue", "VenueAuthError", "VenueDuplicateOrder",
           "VenueError", "VenueNetworkError", "VenuePostOnlyReject", "VenueRejected"]

T = TypeVar("T")


class VenueError(ForgeError):
    """A venue call failed (base class)."""

    exit_code = 6


class VenueNetworkError(VenueError):
    """The request may or may not have reached the venue: the outcome is *unknown*.

    An order submit that raises this must be resolved later by its client
    order id, never resent blindly under a new id.
    """


class VenueRejected(VenueError):
    """The venue answered and refused the request (bad params, insufficient funds, duplicate id...)."""


class VenueDuplicateOrder(VenueRejected):
    """The venue refused an order because it already holds one under that client order id (nothing new was
    created); the runtime fetches that order and compares it with its intent."""


class VenuePostOnlyReject(VenueRejected):
    """A post-only limit order was refused because it would have crossed the book (taken liquidity): nothing
    rests and nothing filled.  Binance USDⓈ-M answers ``-5022`` (ccxt ``OrderNotFillable``); Bybit accepts the
    order and cancels it at once with ``rejectReason = EC_PostOnlyWillTakeLiquidity`` (the venue looks it up);
    the replay venue refuses a buy at or above its estimated ask (a sell at or below its bid).  The runtime
    journals and counts it and lets the intent fall back per its policy (next bar: re-decide; deadline: cross)."""


class VenueAuthError(VenueError):
    """The venue refused the credentials (invalid key or signature): nothing was done, and retrying
    the same request will not help until the operator fixes the keys.  The runtime skips trading."""


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter over a time budget.

    budget_s: total seconds to keep retrying (0: one attempt); base_s: first delay (s), doubled per
    attempt up to max_s; jitter: fraction in [0, 1] of each delay drawn at random ("equal jitter" at 0.5:
    a delay d becomes uniform in [d(1-jitter), d]); sleep: called with a delay, returns True when
    interrupted (stop requested: give up now); clock: monotonic seconds.  Elapsed time is the larger of
    the clock's and the sum of delays slept, so an injected no-op sleep (tests, the replay venue) still
    spends the budget deterministically.  seed: jitter stream (None: OS entropy).
    """

    budget_s: float = 180.0
    base_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.5
    sleep: Callable[[float], bool] | None = None
    clock: Callable[[], float] = time.monotonic
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def delays(self):
        """Yield the successive delays (s) of one retry sequence until the budget is spent."""
        t0, slept, k = self.clock(), 0.0, 0
        while True:
            d = min(self.max_s, self.base_s * 2.0 ** k)
            d *= 1.0 - self.jitter * self._rng.random()
            if max(self.clock() - t0, slept) + d > self.budget_s:
                return
            slept += d
            k += 1
            yield d

    def bounded(self, deadline: float | None) -> "RetryPolicy":
        """A copy that also stops at ``deadline`` (a ``clock()`` time; None: this policy): its budget is capped at the
        time left and a delay that would end after the deadline is not slept (the last error is raised)."""
        if deadline is None:
            return self
        inner = self.sleep

        def sleep(d: float) -> bool:
            if self.clock() + d > deadline:
                return True
            return inner(d) if inner is not None else False

        return replace(self, budget_s=max(0.0, min(self.budget_s, deadline - self.clock())), sleep=sleep)

    def call(self, fn: Callable[[], T], retry_on: tuple[type[BaseException], ...] = (VenueNetworkError,),
             on_retry: Callable[[BaseException, float], None] | None = None) -> T:
        """Call ``fn`` until it returns; exceptions of ``retry_on`` are retried after the next delay, the last
        one is raised when the budget is spent or the sleep is interrupted."""
        delays = self.delays()
        while True:
            try:
                return fn()
            except retry_on as exc:
                d = next(delays, None)
                if d is None:
                    raise
                if on_retry is not None:
                    on_retry(exc, d)
                if self.sleep is not None and self.sleep(d):
                    raise


@dataclass(frozen=True)
class Bar:
    """One closed 1-minute bar (``forge.data.schema`` units)."""

    symbol: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float = 0.0
    count: int = 0
    taker_buy_volume: float = 0.0
    taker_buy_quote_volume: float = 0.0

    @property
    def close_time(self) -> int:
        return self.open_time + 59_999


BYBIT_VENUE_EXEC_TYPES = {
    # Bybit v5 execType (https://bybit-exchange.github.io/docs/v5/enum#exectype) of executions the exchange makes
    "BustTrade": "liquidation (takeover)", "AdlTrade": "auto-deleveraging", "Delivery": "delivery (contract delisted)",
    "Settle": "settlement (contract delisted)",
}
BINANCE_VENUE_ORDER_PREFIXES = {
    # Binance USDⓈ-M clientOrderId prefixes of the orders the exchange places itself (liquidation, ADL, delisting)
    "autoclose-": "liquidation", "adl_autoclose": "auto-deleveraging", "settlement_autoclose-": "settlement",
}
VENUE_ACTIONS = {**BYBIT_VENUE_EXEC_TYPES, **BINANCE_VENUE_ORDER_PREFIXES}
"""Executions a venue makes on its own of an account's position -> what they are (``Fill.venue_action``)."""


@dataclass(frozen=True)
class Fill:
    """One execution (a trade) of an order.

    trade_id: venue trade id, unique per venue (the de-duplication key);
    client_order_id: the id the runtime gave the order; qty: signed base
    units (+ bought, - sold); price: quote per unit incl. slippage; fee: quote
    currency (>= 0); time_ms: execution time; venue_action: "" for the execution of an order someone placed, else
    the kind of execution the venue made on its own account of the position -- a liquidation, an auto-deleveraging,
    a delivery or settlement (:data:`VENUE_ACTIONS`: Bybit's ``execType``, Binance's order-id prefix) -- which no
    slot ledger can have booked.
    """

    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    qty: float
    price: float
    fee: float
    time_ms: int
    venue_action: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``venue_action`` only when set (journal events of ordinary fills keep their text)."""
        d = asdict(self)
        if not self.venue_action:
            del d["venue_action"]
        return d


@dataclass(frozen=True)
class OrderState:
    """An order as the venue knows it.

    status: "open" | "filled" | "canceled" | "rejected"; qty: signed base
    units requested; filled: signed base units filled so far; order_type: "market", "limit", ...
    (lowercase, as ccxt); price: a limit order's price (quote per unit; 0 for market orders); reason: why the venue
    closed it where it says ("post_only" for a post-only order cancelled because it would have crossed; "" else).
    """

    order_id: str
    client_order_id: str
    symbol: str
    qty: float
    filled: float
    status: str
    time_ms: int
    order_type: str = "market"
    price: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MarketRules:
    """A market's order rules: tick (quote per unit, > 0: the price step), lot (base units, >= 0: the size step,
    0 = none) and min_notional (quote, >= 0: the smallest order value)."""

    tick: float
    lot: float = 0.0
    min_notional: float = 0.0


BAR_FIELDS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume", "count",
              "taker_buy_volume", "taker_buy_quote_volume")


class Venue(ABC):
    """A market venue: bars in, market orders out, account state on demand.

    Every method may raise VenueNetworkError (outcome unknown) or
    VenueRejected (refused); readers are safe to retry.
    """

    name: str = "venue"
    taker_fee_bps: float = 0.0
    slippage_bps: float = 0.0

    @abstractmethod
    def now_ms(self) -> int:
        """Venue clock, ms UTC (replay: the close time of the last closed bar + 1 ms)."""

    @abstractmethod
    def history(self, symbol: str, n: int) -> dict[str, np.ndarray]:
        """The last ``n`` closed bars of ``symbol`` (fewer if not available), oldest first.

        returns {column: (k,) array} with the columns of ``BAR_FIELDS``
        (open_time int64 ms, prices float64 quote/unit, volumes float64).
        """

    @abstractmethod
    def next_bars(self, timeout_s: float | None = None) -> dict[str, Bar] | None:
        """Block until the next 1-minute bar has closed; returns {symbol: Bar}
        for the venue's symbols, or None when the feed has ended (replay) or
        timed out (live: a stale feed)."""

    @abstractmethod
    def create_market_order(self, symbol: str, qty: float, client_order_id: str, *,
                            reduce_only: bool = False) -> OrderState:
        """Submit a market order for ``qty`` signed base units under ``client_order_id`` (``reduce_only``: it may
        only reduce the account's position, perpetuals; the runtime passes it only when True).

        Idempotent by client order id: a second submit with an id the venue
        already knows raises VenueDuplicateOrder and creates nothing.
        raises VenueNetworkError when the outcome is unknown.
        """

    def create_limit_order(self, symbol: str, qty: float, price: float, client_order_id: str, *,
                           post_only: bool = True, reduce_only: bool = False) -> OrderState:
        """Rest a limit order for ``qty`` signed base units at ``price`` (quote per unit, already on the venue's tick:
        :meth:`market_rules`) under ``client_order_id``; ``post_only``: it may only add liquidity (Bybit
        ``timeInForce=PostOnly``, Binance USDⓈ-M ``timeInForce=GTX``); ``reduce_only`` as for market orders.

        Idempotent by client order id (VenueDuplicateOrder).  raises VenuePostOnlyReject when a post-only order
        would cross, VenueNetworkError when the outcome is unknown, VenueRejected otherwise.  Default: the venue
        has no limit orders (VenueRejected), so passive policies fall back to market orders."""
        raise VenueRejected(f"{self.name}: limit orders are not supported")

    def market_rules(self, symbol: str) -> MarketRules:
        """Tick, lot and minimum notional of ``symbol`` (default: a 1e-8 tick, no lot, no minimum)."""
        return MarketRules(1e-8)

    def touch(self, symbol: str) -> tuple[float, float] | None:
        """The current best bid and ask (quote per unit) where the venue has a book; None when it has none (the
        runtime then estimates the touch from the bars, as the kline fill model)."""
        return None

    def cancel_all_after(self, seconds: float) -> bool:
        """Arm (or re-arm) the venue's dead-man's switch: every open order is cancelled if the bench does not call
        again within ``seconds`` (0 disarms).  returns False when the venue offers none (default)."""
        return False

    @abstractmethod
    def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order with this client order id, or None if the venue never accepted it."""

    @abstractmethod
    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        """Orders still open (any symbol when None)."""

    @abstractmethod
    def cancel_order(self, symbol: str, client_order_id: str) -> None:
        """Cancel an open order.  One the venue does not hold open (already filled or cancelled, unknown) is a no-op
        or refused with VenueRejected, as the venue answers; either way the caller looks the order up for its final
        state.  raises VenueNetworkError when the outcome is unknown."""

    @abstractmethod
    def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[Fill]:
        """Executions of ``symbol`` at or after ``since_ms``, oldest first."""

    @abstractmethod
    def fetch_positions(self) -> dict[str, float]:
        """Net position per symbol, signed base units (0 omitted)."""

    @abstractmethod
    def fetch_balance(self) -> float:
        """Cash balance, USDT (fees and realised P&L included; for spot-like
        replay accounting, cash after buys/sells)."""

    def round_qty(self, symbol: str, qty: float) -> float:
        """``qty`` (signed base units) as the venue would book it (its lot size; default: unchanged)."""
        return float(qty)

    def set_deadline(self, seconds: float | None) -> None:
        """Bound the venue's own retries of reads (lookups) to ``seconds`` from now (None: no bound); the runtime
        sets it to what is left of the bar's order deadline.  Default: nothing to bound."""

    def stale_backlog(self) -> bool:
        """True when a newer closed bar than the one just delivered is already waiting (the loop fell behind): the
        runtime then marks that bar and runs the kill rule but sends no signal orders for it.  Default False (the
        replay venue never falls behind)."""
        return False

    def api_permissions(self) -> dict[str, Any] | None:
        """What the API key may do, where the venue reports it: {"withdraw": bool, "read_only": bool, "raw": ...};
        None when the venue cannot tell (the replay venue)."""
        return None

    def funding_rate(self, symbol: str) -> float | None:
        """Current perpetual funding rate of ``symbol`` per 8 h, a fraction (None: not known here; the runtime
        then uses ``[costs] funding_rate_8h``)."""
        return None

    def close(self) -> None:
        """Release connections (default: nothing)."""
