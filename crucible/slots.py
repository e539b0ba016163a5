"""The bench of slots: slots, their ledgers and client-order-id attribution (was ``crucible/bench.py``;
the replay throughput benchmark is :mod:`crucible.benchmark`).

Every slot trades a champion genome with its own virtual capital (e.g.
$200) inside one venue account, possibly shared with other benches and with
orders placed by hand.  Every client order id carries the bench identity
(``<order_prefix>-<bench id>-<slot id>-<bar minute>-<seq>``, see
:func:`client_order_id`), but a fill is attributed to a slot only when its
client order id is an intent this bench's journal recorded (the runtime looks
it up); anything else at the exchange is reported, never booked.
A slot's ledger is a cash + units account marked at the last close, the
same accounting as the backtester: ``equity = cash + units * mark`` where
``cash = capital - sum(qty * price + fee)`` over the slot's fills.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crucible.venues.base import Fill
from forge.gp import Genome

__all__ = ["Ledger", "MarkBook", "Slot", "client_order_id", "parse_client_order_id", "new_bench_id", "BENCH_ID_RE"]

BENCH_ID_RE = re.compile(r"[a-z0-9]{1,6}")
"""A bench identity: 1-6 lowercase letters/digits (it travels inside every client order id)."""
_B36 = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_bench_id() -> str:
    """A fresh random bench identity (6 lowercase base-36 characters, ~31 bits from ``secrets``)."""
    return "".join(secrets.choice(_B36) for _ in range(6))


def client_order_id(prefix: str, slot: str, bar_time_ms: int, seq: int, bench: str = "") -> str:
    """Deterministic, idempotent client order id ``<prefix>-<bench>-<slot>-<bar minute>-<seq>`` (<= 36 chars).

    bar_time_ms: open time of the bar whose close decided the order (ms UTC); seq: 0, 1, ... per
    (slot, bar); bench: the bench identity ("" gives the bench-less ``<prefix>-<slot>-<minute>-<seq>`` of
    journals written before bench ids existed).  The same inputs always give the same id, so a resend
    is recognised by the venue.  With prefix <= 6, bench <= 6 and slot <= 8 characters the id is at most
    36 characters (Bybit ``orderLinkId`` and Binance ``newClientOrderId`` limits) until the year 2160.
    """
    if bench:
        return f"{prefix}-{bench}-{slot}-{bar_time_ms // 60_000}-{seq}"
    return f"{prefix}-{slot}-{bar_time_ms // 60_000}-{seq}"


def parse_client_order_id(cid: str, prefix: str, bench: str = "") -> str | None:
    """Slot id encoded in ``cid`` when it has this bench's format (prefix and bench identity), else None.

    The format alone proves nothing (anyone can type a look-alike id at the exchange): the runtime
    books a fill only when the id is also an intent in its own journal.
    """
    parts = cid.split("-")
    if bench:
        if len(parts) != 5 or parts[0] != prefix or parts[1] != bench:
            return None
        return parts[2]
    if len(parts) != 4 or parts[0] != prefix:
        return None
    return parts[1]


@dataclass
class Ledger:
    """Cash + units account of one slot (or a shadow challenger).

    capital: starting USDT; cash: USDT; units: signed base units; fees: total USDT paid; realised:
    USDT realised P&L after fees (average-cost method); avg_price: average entry price of the open units;
    transfers: net USDT moved in by the CWO (negative: moved out) — capital, not P&L; funding: net USDT of
    perpetual funding paid (negative: received), part of the realised P&L.
    """

    capital: float
    cash: float = 0.0
    units: float = 0.0
    fees: float = 0.0
    realised: float = 0.0
    avg_price: float = 0.0
    n_fills: int = 0
    transfers: float = 0.0
    funding: float = 0.0

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

    def pay_funding(self, amount: float) -> None:
        """Book ``amount`` USDT of perpetual funding paid by the open units (negative: received), as computed by
        :func:`forge.backtest.costs.funding_payment`; changes cash and realised P&L (so the kill rule sees it)."""
        self.cash -= amount
        self.realised -= amount
        self.funding += amount

    def transfer(self, amount: float) -> None:
        """Move ``amount`` USDT of capital in (negative: out); changes cash, never P&L."""
        self.cash += amount
        self.transfers += amount

    def pnl(self, mark: float) -> float:
        """The slot's own P&L, USDT: equity minus starting capital minus capital transferred in."""
        return self.equity(mark) - self.capital - self.transfers

    def equity(self, mark: float) -> float:
        """USDT: cash + units * mark (realised + unrealised after fees, plus capital)."""
        return self.cash + self.units * mark

    def unrealised(self, mark: float) -> float:
        return self.units * (mark - self.avg_price) if self.units else 0.0


class MarkBook:
    """Recent equity marks (USDT) of every slot, one column per bar, newest last.

    slot_ids: row order; keep: marks guaranteed to be kept (the buffer holds 2 x keep and slides the
    newest ``keep`` to the front when full, so windows are contiguous views, never copies).
    """

    def __init__(self, slot_ids: list[str], keep: int) -> None:
        self.row = {sid: i for i, sid in enumerate(slot_ids)}
        self.keep = max(int(keep), 1)
        self._buf = np.zeros((len(slot_ids), 2 * self.keep))
        self.n = 0

    def push(self, marks: list[float]) -> None:
        """Append one bar's marks, in slot_ids order."""
        if self.n == self._buf.shape[1]:
            self._buf[:, : self.keep] = self._buf[:, self.n - self.keep: self.n]
            self.n = self.keep
        self._buf[:, self.n] = marks
        self.n += 1

    def window(self, last: int) -> np.ndarray:
        """(n_slots, m) view of the last ``m = min(last, available)`` marks."""
        return self._buf[:, max(0, self.n - int(last)): self.n]

    def reset(self, slot_id: str, value: float) -> None:
        """Overwrite every kept mark of one slot with ``value`` (a re-armed slot starts a new equity curve:
        its refill must not read as a return)."""
        self._buf[self.row[slot_id], : self.n] = value

    def curve(self, slot_id: str, last: int | None = None) -> np.ndarray:
        """(m,) view of one slot's last ``last`` marks (all kept marks when None)."""
        lo = 0 if last is None else max(0, self.n - int(last))
        return self._buf[self.row[slot_id], lo: self.n]


@dataclass
class Slot:
    """One bench slot.

    id, symbol; genome: the champion being traded; genome_ref: where it came from; capital: USDT;
    status: "live" | "killed" | "stopped"; target: last target exposure ordered in [-1, 1];
    weight: CWO capital weight; previous: earlier champions, newest last (rollback); lineage: where the
    current champion came from (:mod:`crucible.lineage`).
    perpetual: the slot trades a linear perpetual (cost preset "futures": its units pay funding), else spot.
    Recent equity marks live in the runtime's :class:`MarkBook`.
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
    genome_since: int = 0
    perpetual: bool = False
    lineage: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.capital)

    def equity(self) -> float:
        """USDT: the ledger's cash + units * mark (cash alone before the first mark)."""
        led = self.ledger
        return led.cash + led.units * self.mark if self.mark > 0 else led.cash

    def own_equity(self) -> float:
        """Starting capital plus the slot's own P&L (USDT): what the kill rule judges (CWO transfers are
        capital moving between slots, not losses or gains)."""
        return self.equity() - self.ledger.transfers

    def summary(self) -> dict[str, Any]:
        return {"slot": self.id, "symbol": self.symbol, "status": self.status, "genome": self.genome.sha256[:16],
                "equity": self.equity(), "cash": self.ledger.cash, "units": self.ledger.units,
                "realised": float(self.ledger.realised), "unrealised": float(self.ledger.unrealised(self.mark)),
                "fees": self.ledger.fees, "weight": self.weight, "target": self.target,
                "transfers": self.ledger.transfers, "pnl": self.own_equity() - self.capital,
                "costs": "futures" if self.perpetual else "spot", "funding": self.ledger.funding,
                "fills": self.ledger.n_fills, "previous": [g.sha256[:16] for g in self.previous],
                "lineage": self.lineage}
