"""The venue interface shared by the replay venue and ccxt exchanges.

Units: prices are quote currency (USDT) per unit of base; quantities are
base units; signed quantities are + for buys, - for sells; fees are quote
currency (USDT) and always >= 0; times are int64 milliseconds since the Unix
epoch, UTC.  A venue's clock (``now_ms``) is the clock the runtime uses, so
replay and live share every line of strategy code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from forge.core.errors import ForgeError

__all__ = ["Bar", "Fill", "OrderState", "Venue", "VenueError", "VenueNetworkError", "VenueRejected"]


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


@dataclass(frozen=True)
class Fill:
    """One execution (a trade) of an order.

    trade_id: venue trade id, unique per venue (the de-duplication key);
    client_order_id: the id the runtime gave the order; qty: signed base
    units (+ bought, - sold); price: quote per unit incl. slippage; fee: quote
    currency (>= 0); time_ms: execution time.
    """

    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    qty: float
    price: float
    fee: float
    time_ms: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OrderState:
    """An order as the venue knows it.

    status: "open" | "filled" | "canceled" | "rejected"; qty: signed base
    units requested; filled: signed base units filled so far.
    """

    order_id: str
    client_order_id: str
    symbol: str
    qty: float
    filled: float
    status: str
    time_ms: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    def create_market_order(self, symbol: str, qty: float, client_order_id: str) -> OrderState:
        """Submit a market order for ``qty`` signed base units under ``client_order_id``.

        Idempotent by client order id: a second submit with an id the venue
        already knows raises VenueRejected (duplicate) and creates nothing.
        raises VenueNetworkError when the outcome is unknown.
        """

    @abstractmethod
    def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order with this client order id, or None if the venue never accepted it."""

    @abstractmethod
    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        """Orders still open (any symbol when None)."""

    @abstractmethod
    def cancel_order(self, symbol: str, client_order_id: str) -> None:
        """Cancel an open order (no-op if already closed)."""

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

    def close(self) -> None:
        """Release connections (default: nothing)."""
