"""The bench of slots: slots, their ledgers and client-order-id attribution (was ``crucible/bench.py``;
the replay throughput benchmark is :mod:`crucible.benchmark`).

Every slot trades a champion genome with its own virtual capital (e.g.
$200) inside one venue account, possibly shared with other benches and with
orders placed by hand.  Every client order id carries the bench identity and an
HMAC tag under the bench key (``<order_prefix>-<bench id>-<slot id>-<minute><seq><tag>``,
see :func:`client_order_id`, :func:`is_own_order_id`); a fill is attributed to a
slot only when its client order id is an intent this bench's journal recorded
(and the venue's order matches that intent); anything else at the exchange is
reported, never booked.
A slot's ledger is a cash + units account marked at the last close, the
same accounting as the backtester: ``equity = cash + units * mark`` where
``cash = capital - sum(qty * price + fee)`` over the slot's fills.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crucible.venues.base import Fill
from forge.core.champion import champion_key
from forge.core.errors import ConfigError
from forge.gp import Genome

__all__ = ["Ledger", "MarkBook", "Slot", "client_order_id", "parse_client_order_id", "is_own_order_id", "new_bench_id",
           "BENCH_ID_RE", "bench_key", "key_fingerprint", "BenchKeyMissing", "OrderIdParts", "ORDER_ID_CHARS",
           "ORDER_ID_MAX", "NAME_BUDGET", "REPLAY_DEFAULT_KEY"]

BENCH_ID_RE = re.compile(r"[a-z0-9]{1,6}")
"""A bench identity: 1-6 lowercase letters/digits (it travels inside every client order id)."""
_B36 = "abcdefghijklmnopqrstuvwxyz0123456789"
_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"

ORDER_ID_MAX = 36
"""Longest client order id: Bybit v5 ``orderLinkId`` (letters, digits, ``-`` and ``_``, at most 36) and Binance
USD-M ``newClientOrderId`` (``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``); the ids below use letters, digits and ``-`` only,
valid on both."""
ORDER_ID_CHARS = re.compile(r"[A-Za-z0-9_-]{1,36}")
TAG_MIN, TAG_MAX = 8, 12  # HMAC tag length, base-36 characters (8: 41 bits; 12: 62 bits)
MINUTE_CHARS, SEQ_CHARS = 6, 2  # fixed-width base-36 bar minute (36**6 minutes: until the year 6108) and sequence (< 1296)
NAME_BUDGET = ORDER_ID_MAX - 3 - MINUTE_CHARS - SEQ_CHARS - TAG_MIN
"""len(order_prefix) + len(bench id) + len(slot id) may not exceed this (17), so every id keeps an 8-character tag."""
BENCH_KEY_ENV = "CRUCIBLE_BENCH_KEY"
SIGNING_KEY_ENV = "FORGE_SIGNING_KEY"
REPLAY_DEFAULT_KEY = b"crucible replay default bench key/1"
"""The documented, public key of replay venues when neither ``CRUCIBLE_BENCH_KEY`` nor ``FORGE_SIGNING_KEY`` is set:
replay ids (and the golden journals) stay deterministic; it proves nothing and is refused on exchange venues."""


class BenchKeyMissing(ConfigError):
    """An exchange venue without a bench key: client order ids could be forged (exit status 2)."""


def bench_key(*, exchange: bool, env: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """The secret that tags this bench's client order ids, and where it came from.

    ``CRUCIBLE_BENCH_KEY`` (at least 16 characters, used as UTF-8 bytes), else a key derived from
    ``FORGE_SIGNING_KEY`` (HMAC-SHA256 of a fixed label under it, so the signing key itself never tags an order),
    else on the replay venue :data:`REPLAY_DEFAULT_KEY`.  returns (key bytes, "CRUCIBLE_BENCH_KEY" |
    "FORGE_SIGNING_KEY" | "replay default").  raises BenchKeyMissing on an exchange venue without either variable,
    ConfigError for a ``CRUCIBLE_BENCH_KEY`` shorter than 16 characters.
    """
    env = os.environ if env is None else env
    k = env.get(BENCH_KEY_ENV) or ""
    if k:
        if len(k) < 16:
            raise ConfigError(f"{BENCH_KEY_ENV} must be at least 16 characters (a random secret), got {len(k)}")
        return k.encode(), BENCH_KEY_ENV
    sk = env.get(SIGNING_KEY_ENV) or ""
    if sk:
        return hmac.new(sk.encode(), b"crucible bench order ids/1", hashlib.sha256).digest(), SIGNING_KEY_ENV
    if exchange:
        raise BenchKeyMissing(f"no bench key: set {BENCH_KEY_ENV} (a random secret of 16+ characters) or "
                              f"{SIGNING_KEY_ENV}; without one anybody on the account could forge this bench's "
                              "client order ids, so the Crucible refuses to trade on an exchange")
    return REPLAY_DEFAULT_KEY, "replay default"


def key_fingerprint(key: bytes) -> str:
    """16 hex characters identifying ``key`` (kept in the journal; a different key later is refused)."""
    return hmac.new(key, b"crucible bench key fingerprint/1", hashlib.sha256).hexdigest()[:16]


_PAIRS36 = [a + b for a in _DIGITS36 for b in _DIGITS36]  # the 1,296 two-digit base-36 strings, in order


def _b36(n: int, width: int) -> str:
    """``n`` >= 0 as ``width`` lowercase base-36 digits (zero-padded; two digits per step).
    raises ValueError when it does not fit."""
    out = ""
    while width >= 2:
        n, r = divmod(n, 1296)
        out = _PAIRS36[r] + out
        width -= 2
    if width:
        n, r = divmod(n, 36)
        out = _DIGITS36[r] + out
    if n:
        raise ValueError("value too large for its base-36 field")
    return out


@functools.lru_cache(maxsize=64)
def _minute36(minute: int) -> str:
    """The bar minute field of a client order id (:data:`MINUTE_CHARS` base-36 digits; the orders of a bar share it)."""
    if 0 <= minute < 36 ** MINUTE_CHARS:  # _b36(minute, 6), unrolled
        p = _PAIRS36
        minute, r3 = divmod(minute, 1296)
        r1, r2 = divmod(minute, 1296)
        return f"{p[r1]}{p[r2]}{p[r3]}"
    return _b36(minute, MINUTE_CHARS)


_IPAD = bytes(x ^ 0x36 for x in range(256))  # translation tables: key bytes XOR the HMAC pads (RFC 2104)
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=8)
def _hmac_sha256_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the inner and outer padded key blocks of HMAC-SHA256 (RFC 2104; keys longer than the
    64-byte block are hashed first), so each tag hashes only its message."""
    k = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return hashlib.sha256(k.translate(_IPAD)), hashlib.sha256(k.translate(_OPAD))


def _tag(key: bytes, body: str, n: int) -> str:
    inner, outer = _hmac_sha256_pads(key)
    h = inner.copy()
    h.update(body.encode())
    o = outer.copy()
    o.update(h.digest())
    d = int.from_bytes(o.digest()[:8], "big")  # = hmac.new(key, body, sha256).digest()[:8]
    # _b36(d, 13)[:n], unrolled (d < 2**64: six two-digit steps leave a leading digit d < 4)
    p = _PAIRS36
    d, r6 = divmod(d, 1296)
    d, r5 = divmod(d, 1296)
    d, r4 = divmod(d, 1296)
    d, r3 = divmod(d, 1296)
    d, r2 = divmod(d, 1296)
    d, r1 = divmod(d, 1296)
    return f"{_DIGITS36[d]}{p[r1]}{p[r2]}{p[r3]}{p[r4]}{p[r5]}{p[r6]}"[:n]


def new_bench_id() -> str:
    """A fresh random bench identity (6 lowercase base-36 characters, ~31 bits from ``secrets``)."""
    return "".join(secrets.choice(_B36) for _ in range(6))


def client_order_id(prefix: str, slot: str, bar_time_ms: int, seq: int, bench: str, key: bytes) -> str:
    """Deterministic client order id ``<prefix>-<bench>-<slot>-<minute><seq><tag>`` of at most 36 characters.

    prefix: ``[crucible] order_prefix``; slot: slot id; bar_time_ms: open time of the bar whose close decided the
    order (ms UTC), written as 6 base-36 digits of its minute; seq: 0, 1, ... per (slot, bar), 2 base-36 digits
    (< 1296); bench: the bench identity; key: :func:`bench_key`.  tag: the first 8-12 base-36 characters (as many
    as fit in 36; at least 8, i.e. 41 bits) of HMAC-SHA256(key, ``<prefix>-<bench>-<slot>-<minute><seq>``).
    Without the key nobody can compute the bench's next id, and :func:`is_own_order_id` proves an id is this
    bench's from the id alone (after a journal loss too).  Characters: ``[A-Za-z0-9-]``, valid as Bybit
    ``orderLinkId`` and Binance ``newClientOrderId``.  raises ValueError when seq >= 1296, the minute does not fit,
    or prefix + bench + slot exceed :data:`NAME_BUDGET` characters.
    """
    if not bench or len(prefix) + len(bench) + len(slot) > NAME_BUDGET:
        raise ValueError(f"order prefix, bench id and slot id {prefix!r}, {bench!r}, {slot!r}: need a bench id and "
                         f"at most {NAME_BUDGET} characters together")
    if not 0 <= seq < 36 ** SEQ_CHARS:
        raise ValueError(f"order sequence {seq} out of range (< {36 ** SEQ_CHARS} per slot and bar)")
    body = f"{prefix}-{bench}-{slot}-{_minute36(bar_time_ms // 60_000)}{_PAIRS36[seq]}"  # seq: 2 digits
    return body + _tag(key, body, min(TAG_MAX, ORDER_ID_MAX - len(body)))


@dataclass(frozen=True)
class OrderIdParts:
    """A client order id split by format (not yet verified): prefix, bench, slot, bar minute, seq, tag."""

    prefix: str
    bench: str
    slot: str
    minute: int
    seq: int
    tag: str


def parse_client_order_id(cid: str, prefix: str) -> OrderIdParts | None:
    """The parts of ``cid`` when it has the tagged format under ``prefix`` (any bench), else None.

    The format alone proves nothing (anyone can type a look-alike id): :func:`is_own_order_id` checks the tag.
    """
    parts = cid.split("-")
    if len(parts) != 4 or parts[0] != prefix or not BENCH_ID_RE.fullmatch(parts[1]) or not parts[2]:
        return None
    tail = parts[3]
    if len(tail) < MINUTE_CHARS + SEQ_CHARS + TAG_MIN or not all(c in _DIGITS36 for c in tail):
        return None
    return OrderIdParts(prefix, parts[1], parts[2], int(tail[:MINUTE_CHARS], 36),
                        int(tail[MINUTE_CHARS:MINUTE_CHARS + SEQ_CHARS], 36), tail[MINUTE_CHARS + SEQ_CHARS:])


def is_own_order_id(cid: str, key: bytes, prefix: str, bench: str) -> bool:
    """True when ``cid`` is a client order id this bench (``prefix``, ``bench``) minted with ``key``: the format
    parses, names this bench, and its tag equals the HMAC recomputed from the id's own fields (constant-time
    comparison).  Needs no journal: after a journal loss it still tells the bench's orders from anybody else's."""
    p = parse_client_order_id(cid, prefix)
    if p is None or p.bench != bench:
        return False
    try:
        want = client_order_id(prefix, p.slot, p.minute * 60_000, p.seq, bench, key)
    except ValueError:
        return False
    return hmac.compare_digest(want, cid)


def _sign(x: float) -> float:
    """``numpy.sign`` of a Python float, as a float (-1.0, 0.0, 1.0; NaN for NaN) without the numpy call."""
    return 1.0 if x > 0 else (-1.0 if x < 0 else (0.0 if x == 0 else float("nan")))


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
        units = self.units
        if units == 0 or (units > 0 and qty > 0) or (units < 0 and qty < 0):  # units == 0 or _sign(units) == _sign(qty)
            new = units + qty
            self.avg_price = (self.avg_price * abs(units) + price * abs(qty)) / abs(new)
            self.units = new
        else:
            closed = min(abs(qty), abs(units))
            self.realised += closed * (price - self.avg_price) * _sign(units)
            new = units + qty
            if abs(new) < 1e-15:
                new = 0.0
            if new == 0.0:
                self.avg_price = 0.0
            elif _sign(new) != _sign(units):
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
        # returns of the marks kept for the CWO (crucible.allocator.cwo_step_marks_nb): _ret[r, c] is
        # _buf[r, c] / _buf[r, c - 1] - 1 for 1 <= c < _ret_n[0]; a slide or a reset invalidates them all
        self._ret = np.zeros_like(self._buf)
        self._ret_n = np.zeros(1, dtype=np.int64)
        self._bad = np.full(len(slot_ids), -1, dtype=np.int64)  # per row: the last column <= _ret_n[0] - 2 with a mark <= 0

    def push(self, marks: list[float]) -> None:
        """Append one bar's marks, in slot_ids order."""
        if self.n == self._buf.shape[1]:
            self._buf[:, : self.keep] = self._buf[:, self.n - self.keep: self.n]
            self.n = self.keep
            self._ret_n[0] = 0
        self._buf[:, self.n] = marks
        self.n += 1

    def window(self, last: int) -> np.ndarray:
        """(n_slots, m) view of the last ``m = min(last, available)`` marks."""
        return self._buf[:, max(0, self.n - int(last)): self.n]

    def span(self, last: int) -> tuple[int, int]:
        """(lo, hi): :meth:`window` ``(last)`` is ``_buf[:, lo:hi]``."""
        n = self.n
        lo = n - int(last)
        return (lo if lo > 0 else 0), n

    def reset(self, slot_id: str, value: float) -> None:
        """Overwrite every kept mark of one slot with ``value`` (a re-armed slot starts a new equity curve:
        its refill must not read as a return)."""
        self._buf[self.row[slot_id], : self.n] = value
        self._ret_n[0] = 0

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
    policy: the champion's execution policy (``forge.execution.policy.ExecutionPolicy`` from its signed meta;
    None = always-taker, every configured genome and every champion published without one);
    size_multiplier: its signed sizing multiplier (``forge.core.champion.champion_sizing``: fractional Kelly
    measured in-sample; 1.0 = unit sizing) applied to its targets by the runtime's sizing;
    ``identity``: the champion's key (genome sha256, policy sha256) as one string
    (``forge.core.champion.champion_key``: the genome sha256 alone for always-taker).
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
    policy: Any = None
    size_multiplier: float = 1.0

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.capital)

    @property
    def identity(self) -> str:
        return champion_key(self.genome.sha256, None if self.policy is None else self.policy.sha256)

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
                "lineage": self.lineage, "policy": None if self.policy is None else self.policy.sha256[:16],
                "size_multiplier": self.size_multiplier}
