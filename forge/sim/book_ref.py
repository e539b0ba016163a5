"""Plain-Python reference limit-order book (the oracle for ``book_nb``).

Same semantics as the numba engine — price-time priority, fills at the
maker's price, limit remainder rests at the tail of its level, market
remainder dropped, cancel of a dead order is a no-op — written the obvious
way: a dict of price levels holding ``collections.deque`` FIFOs and two heaps
(lazy deletion) for the best prices.  It serves two purposes: parity tests
(identical fills on the same message stream) and the side-by-side speed
baseline in ``forge bench``.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import NamedTuple

import numpy as np

from forge.core.errors import ForgeError
from forge.sim.book_nb import BUY, MSG_CANCEL, MSG_DTYPE, MSG_LIMIT, MSG_MARKET, SELL, replay_nb


class Fill(NamedTuple):
    """One fill: taker/maker order ids, price (ticks), qty (lots), taker side (BUY=0/SELL=1)."""

    taker_uid: int
    maker_uid: int
    price: int
    qty: int
    taker_side: int


class RefBook:
    """Pure-Python price-time-priority book.

    Prices are int ticks, quantities int lots, sides BUY=0 / SELL=1.
    """

    def __init__(self) -> None:
        # price -> deque of [uid, qty, owner, alive]
        self.levels: tuple[dict[int, deque], dict[int, deque]] = ({}, {})
        self.live: tuple[dict[int, int], dict[int, int]] = ({}, {})  # price -> live orders
        self.heaps: tuple[list[int], list[int]] = ([], [])  # bids store -price
        self.orders: dict[int, tuple[int, int, list]] = {}  # uid -> (side, price, entry)

    # -- best prices ---------------------------------------------------------
    def best(self, side: int) -> int | None:
        """Best price of ``side`` in ticks, or None if that side is empty."""
        heap = self.heaps[side]
        live = self.live[side]
        while heap:
            px = -heap[0] if side == BUY else heap[0]
            if live.get(px, 0) > 0:
                return px
            heapq.heappop(heap)
        return None

    def depth(self, side: int, price: int) -> int:
        """Resting lots at ``price`` on ``side``."""
        q = self.levels[side].get(price)
        return 0 if q is None else sum(e[1] for e in q if e[3])

    # -- messages ------------------------------------------------------------
    def _match(self, uid: int, side: int, qty: int, limit: int | None, fills: list[Fill]) -> int:
        mside = SELL if side == BUY else BUY
        levels = self.levels[mside]
        live = self.live[mside]
        while qty > 0:
            px = self.best(mside)
            if px is None:
                break
            if limit is not None and ((side == BUY and px > limit) or (side == SELL and px < limit)):
                break
            fifo = levels[px]
            while qty > 0 and fifo:
                entry = fifo[0]
                if not entry[3]:
                    fifo.popleft()
                    continue
                q = min(qty, entry[1])
                fills.append(Fill(uid, entry[0], px, q, side))
                qty -= q
                entry[1] -= q
                if entry[1] == 0:
                    entry[3] = False
                    fifo.popleft()
                    live[px] -= 1
                    del self.orders[entry[0]]
        return qty

    def limit(self, uid: int, side: int, price: int, qty: int, owner: int = 0) -> list[Fill]:
        """Limit order; returns its fills (the remainder rests)."""
        fills: list[Fill] = []
        rem = self._match(uid, side, qty, price, fills)
        if rem > 0:
            entry = [uid, rem, owner, True]
            fifo = self.levels[side].get(price)
            if fifo is None:
                fifo = self.levels[side][price] = deque()
            fifo.append(entry)
            n = self.live[side].get(price, 0)
            self.live[side][price] = n + 1
            if n == 0:
                heapq.heappush(self.heaps[side], -price if side == BUY else price)
            self.orders[uid] = (side, price, entry)
        return fills

    def market(self, uid: int, side: int, qty: int, owner: int = 0) -> list[Fill]:
        """Market order; returns its fills (an unfilled remainder is dropped)."""
        fills: list[Fill] = []
        self._match(uid, side, qty, None, fills)
        return fills

    def cancel(self, uid: int) -> int:
        """Cancel order ``uid``; returns lots removed (0 if not resting)."""
        rec = self.orders.pop(uid, None)
        if rec is None:
            return 0
        side, price, entry = rec
        entry[3] = False
        self.live[side][price] -= 1
        return entry[1]


def _check_messages(msgs: np.ndarray) -> None:
    if not isinstance(msgs, np.ndarray) or msgs.dtype != MSG_DTYPE or msgs.ndim != 1:
        raise ForgeError(f"messages must be a 1-d numpy array of forge.sim.book_nb.MSG_DTYPE, got {getattr(msgs, 'dtype', type(msgs))}")
    kinds = msgs["kind"]
    bad = np.flatnonzero((kinds < MSG_LIMIT) | (kinds > MSG_CANCEL))
    if bad.size:
        raise ForgeError(f"message row {int(bad[0])}: kind {int(kinds[bad[0]])} not in (0=limit, 1=market, 2=cancel)")
    bad = np.flatnonzero((msgs["side"] != BUY) & (msgs["side"] != SELL))
    if bad.size:
        raise ForgeError(f"message row {int(bad[0])}: side {int(msgs['side'][bad[0]])} not in (0=buy, 1=sell)")
    taker = kinds != MSG_CANCEL
    bad = np.flatnonzero(taker & (msgs["qty"] <= 0))
    if bad.size:
        raise ForgeError(f"message row {int(bad[0])}: qty must be > 0 lots, got {int(msgs['qty'][bad[0]])}")
    lim = kinds == MSG_LIMIT
    bad = np.flatnonzero(lim & (msgs["price"] <= 0))
    if bad.size:
        raise ForgeError(f"message row {int(bad[0])}: limit price must be > 0 ticks, got {int(msgs['price'][bad[0]])}")
    bad = np.flatnonzero(msgs["uid"] < 0)
    if bad.size:
        raise ForgeError(f"message row {int(bad[0])}: uid must be >= 0")


def replay_reference(msgs: np.ndarray) -> list[Fill]:
    """Replay a MSG_DTYPE stream through ``RefBook``. returns every fill in order."""
    _check_messages(msgs)
    book = RefBook()
    fills: list[Fill] = []
    for kind, side, price, qty, uid, owner in zip(
        msgs["kind"].tolist(), msgs["side"].tolist(), msgs["price"].tolist(),
        msgs["qty"].tolist(), msgs["uid"].tolist(), msgs["owner"].tolist(),
    ):
        if kind == MSG_LIMIT:
            fills.extend(book.limit(uid, side, price, qty, owner))
        elif kind == MSG_MARKET:
            fills.extend(book.market(uid, side, qty, owner))
        else:
            book.cancel(uid)
    return fills


def replay_numba(msgs: np.ndarray, capacity: int | None = None) -> list[Fill]:
    """Replay a MSG_DTYPE stream through the numba engine (``book_nb``).

    capacity: order-pool slots (default: number of limit messages, never full).
    returns every fill in order, as ``Fill`` tuples (same as ``replay_reference``).
    raises ForgeError on malformed messages or if the pool overflows.
    """
    fills_arr, n_rej = replay_numba_arrays(msgs, capacity)
    if n_rej:
        raise ForgeError(f"order pool of {capacity} slots overflowed ({n_rej} limit orders rejected); raise capacity")
    return [Fill(*(int(v) for v in row)) for row in fills_arr]


def replay_numba_arrays(msgs: np.ndarray, capacity: int | None = None) -> tuple[np.ndarray, int]:
    """Like ``replay_numba`` but returns ((n_fills, 5) int64 rows
    (taker_uid, maker_uid, price, qty, taker_side), rejected count)."""
    _check_messages(msgs)
    m = msgs.shape[0]
    lim = msgs["kind"] == MSG_LIMIT
    cap = int(capacity) if capacity is not None else max(int(lim.sum()), 1)
    prices = msgs["price"][lim]
    lo = int(prices.min()) if prices.size else 1
    hi = int(prices.max()) if prices.size else 1
    max_uid = int(msgs["uid"].max()) if m else 0
    fills = np.zeros((2 * m + 1, 5), dtype=np.int64)
    n, n_rej = replay_nb(
        np.ascontiguousarray(msgs["kind"]), np.ascontiguousarray(msgs["side"]),
        np.ascontiguousarray(msgs["price"]), np.ascontiguousarray(msgs["qty"]),
        np.ascontiguousarray(msgs["uid"]), np.ascontiguousarray(msgs["owner"]),
        cap, lo, hi - lo + 1, max_uid, fills,
    )
    return fills[:n], int(n_rej)
