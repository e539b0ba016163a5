"""The bench: slots, their ledgers and client-order-id attribution.

Every slot trades a champion genome with its own virtual capital (e.g.
$200) inside one venue account.  Fills are attributed to slots by the
client order id prefix ``<order_prefix>-<slot id>-`` (see :func:`client_order_id`).
A slot's ledger is a cash + units account marked at the last close, the
same accounting as the backtester: ``equity = cash + units * mark`` where
``cash = capital - sum(qty * price + fee)`` over the slot's fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crucible.venues.base import Fill
from forge.gp import Genome

__all__ = ["Ledger", "Slot", "client_order_id", "parse_client_order_id", "risk_adjusted", "max_drawdown"]


def client_order_id(prefix: str, slot: str, bar_time_ms: int, seq: int) -> str:
    """Deterministic, idempotent client order id ``<prefix>-<slot>-<bar minute>-<seq>`` (<= 36 chars).

    bar_time_ms: open time of the bar whose close decided the order (ms UTC); seq: 0, 1, ... per
    (slot, bar).  The same inputs always give the same id, so a resend is recognised by the venue.
    """
    return f"{prefix}-{slot}-{bar_time_ms // 60_000}-{seq}"


def parse_client_order_id(cid: str, prefix: str) -> str | None:
    """Slot id encoded in ``cid``, or None when the order is not this bench's (other prefix / format)."""
    parts = cid.split("-")
    if len(parts) != 4 or parts[0] != prefix:
        return None
    return parts[1]


@dataclass
class Ledger:
    """Cash + units account of one slot (or a shadow challenger).

    capital: starting USDT; cash: USDT; units: signed base units; fees: total USDT paid; realised:
    USDT realised P&L after fees (average-cost method); avg_price: average entry price of the open units.
    """

    capital: float
    cash: float = 0.0
    units: float = 0.0
    fees: float = 0.0
    realised: float = 0.0
    avg_price: float = 0.0
    n_fills: int = 0

    def __post_init__(self) -> None:
        if self.cash == 0.0 and self.n_fills == 0:
            self.cash = float(self.capital)

    def apply(self, qty: float, price: float, fee: float) -> None:
        """Book one execution: qty signed base units at price (quote/unit) paying fee (USDT)."""
        self.cash -= qty * price + fee
        self.fees += fee
        self.realised -= fee
        if self.units == 0 or np.sign(self.units) == np.sign(qty):
            new = self.units + qty
            self.avg_price = (self.avg_price * abs(self.units) + price * abs(qty)) / abs(new)
            self.units = new
        else:
            closed = min(abs(qty), abs(self.units))
            self.realised += closed * (price - self.avg_price) * np.sign(self.units)
            new = self.units + qty
            if abs(new) < 1e-15:
                new = 0.0
            if new == 0.0:
                self.avg_price = 0.0
            elif np.sign(new) != np.sign(self.units):
                self.avg_price = price
            self.units = new
        self.n_fills += 1

    def apply_fill(self, f: Fill) -> None:
        self.apply(f.qty, f.price, f.fee)

    def equity(self, mark: float) -> float:
        """USDT: cash + units * mark (realised + unrealised after fees, plus capital)."""
        return self.cash + self.units * mark

    def unrealised(self, mark: float) -> float:
        return self.units * (mark - self.avg_price) if self.units else 0.0


def risk_adjusted(equity: np.ndarray) -> float:
    """Per-bar Sharpe of an equity curve: mean / std (ddof=1) of simple per-bar returns; 0 if flat or short."""
    e = np.asarray(equity, dtype=np.float64)
    if e.shape[0] < 3 or np.any(e[:-1] <= 0):
        return 0.0
    r = e[1:] / e[:-1] - 1.0
    sd = r.std(ddof=1)
    return float(r.mean() / sd) if sd > 0 else 0.0


def max_drawdown(equity: np.ndarray) -> float:
    """Current drawdown from the running peak, fraction in [0, 1] (0 for an empty curve)."""
    e = np.asarray(equity, dtype=np.float64)
    if e.shape[0] == 0:
        return 0.0
    peak = e.max()
    return float(1.0 - e[-1] / peak) if peak > 0 else 1.0


@dataclass
class Slot:
    """One bench slot.

    id, symbol; genome: the champion being traded; genome_ref: where it came from; capital: USDT;
    status: "live" | "killed" | "stopped"; target: last target exposure ordered in [-1, 1];
    weight: CWO capital weight; previous: earlier champions, newest last (rollback);
    equity_curve: recent equity marks (USDT), newest last.
    """

    id: str
    symbol: str
    genome: Genome
    genome_ref: str
    capital: float
    ledger: Ledger = field(init=False)
    status: str = "live"
    target: float = 0.0
    weight: float = 0.0
    mark: float = 0.0
    previous: list[Genome] = field(default_factory=list)
    equity_curve: list[float] = field(default_factory=list)
    genome_since: int = 0

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.capital)

    def equity(self) -> float:
        return self.ledger.equity(self.mark) if self.mark > 0 else self.ledger.cash

    def summary(self) -> dict[str, Any]:
        return {"slot": self.id, "symbol": self.symbol, "status": self.status, "genome": self.genome.sha256[:16],
                "equity": self.equity(), "cash": self.ledger.cash, "units": self.ledger.units,
                "realised": float(self.ledger.realised), "unrealised": float(self.ledger.unrealised(self.mark)),
                "fees": self.ledger.fees, "weight": self.weight, "target": self.target,
                "fills": self.ledger.n_fills, "previous": [g.sha256[:16] for g in self.previous]}
