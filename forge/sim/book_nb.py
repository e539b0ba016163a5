"""Price-time-priority limit-order book: numba kernels.

Layout (hftbacktest style: dense tick-indexed levels, integer prices)
- Prices are int64 *ticks* (absolute); quantities are int64 *lots*.
- ``lv``: (2, N_LF, nlev) int64 dense level arrays, ``lv[side, field, idx]``
  with ``idx = price - base``; side BUY=0 (bids), SELL=1 (asks); fields
  L_HEAD / L_TAIL (order slot of the FIFO's first / last order, -1 if none),
  L_QTY (resting lots), L_COUNT (resting orders).
- ``o``: (cap, N_OF) int64 order pool, one row per slot: price, qty, side,
  next/prev slot in the level's FIFO (doubly linked list), owner (agent id),
  uid (unique order id), track (position in the ``tracked`` list or -1),
  alive flag.  Free slots are kept on a stack ``free`` (cap,) int64.
- ``bk``: (N_BF,) int64 book scalars: window base tick, number of levels,
  best bid / best ask (NO_PRICE if that side is empty), free-slot count,
  resting orders per side, tracked count, capacity.
- ``tracked``: (cap,) int64 list of slots flagged at submission (the
  background noise traders' orders) so a uniformly random one can be
  cancelled in O(1).
- ``fb``: (cap, N_FF) int64 fill scratch buffer written by the matching
  functions: maker slot, maker owner, maker uid, price, qty, maker-done flag.

Matching: an incoming order of side s takes liquidity from the opposite
side, best price first, FIFO within a level (price-time priority), until it
is filled, the opposite side is empty, or (limit orders) the next level is
beyond its limit price.  A limit order's remainder rests at the tail of its
level; a market order's remainder is dropped.  Fills always execute at the
resting (maker) order's price.

Every function here takes arrays and scalars only; the Python wrappers in
``forge.sim.market`` / ``forge.sim.book_ref`` validate inputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from forge.sim.nbopts import NO_NRT

BUY = 0
SELL = 1
NO_PRICE = -1

# order pool columns
O_PRICE = 0
O_QTY = 1
O_SIDE = 2
O_NEXT = 3
O_PREV = 4
O_OWNER = 5
O_UID = 6
O_TRACK = 7
O_ALIVE = 8
N_OF = 9

# level fields
L_HEAD = 0
L_TAIL = 1
L_QTY = 2
L_COUNT = 3
N_LF = 4

# book scalars
B_BASE = 0
B_NLEV = 1
B_BEST_BID = 2
B_BEST_ASK = 3
B_N_FREE = 4
B_N_BID = 5
B_N_ASK = 6
B_N_TRACKED = 7
B_CAP = 8
N_BF = 9

# fill scratch columns
F_MAKER_OID = 0
F_MAKER_OWNER = 1
F_MAKER_UID = 2
F_PRICE = 3
F_QTY = 4
F_MAKER_DONE = 5
N_FF = 6

# message kinds
MSG_LIMIT = 0
MSG_MARKET = 1
MSG_CANCEL = 2

MSG_DTYPE = np.dtype(
    [
        ("t", np.float64),  # seconds since simulation start
        ("kind", np.int8),  # MSG_LIMIT / MSG_MARKET / MSG_CANCEL
        ("side", np.int8),  # BUY / SELL (cancel: side of the cancelled order)
        ("price", np.int64),  # ticks (limit: limit price; market: 0; cancel: resting price)
        ("qty", np.int64),  # lots (cancel: lots removed from the book)
        ("uid", np.int64),  # order id (cancel: id of the cancelled order)
        ("owner", np.int32),  # agent id that sent the message
    ]
)
"""One book message (the unit counted as a simulated *event*)."""

BOOK_TRADE_DTYPE = np.dtype(
    [
        ("t", np.float64),  # seconds since simulation start
        ("price", np.int64),  # ticks, the maker's resting price
        ("qty", np.int64),  # lots
        ("taker_side", np.int8),  # BUY (taker bought, hit the ask) / SELL
        ("taker_uid", np.int64),
        ("maker_uid", np.int64),
        ("taker_owner", np.int32),
        ("maker_owner", np.int32),
    ]
)
"""One fill between an incoming (taker) order and a resting (maker) order."""


def new_book(cap: int, nlev: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Allocate (o, lv, bk, free, tracked, fb) for a book of ``cap`` order slots
    and ``nlev`` price levels (call ``book_reset_nb`` before use)."""
    o = np.zeros((cap, N_OF), dtype=np.int64)
    lv = np.zeros((2, N_LF, nlev), dtype=np.int64)
    bk = np.zeros(N_BF, dtype=np.int64)
    free = np.zeros(cap, dtype=np.int64)
    tracked = np.zeros(cap, dtype=np.int64)
    fb = np.zeros((cap + 1, N_FF), dtype=np.int64)
    return o, lv, bk, free, tracked, fb


@njit(**NO_NRT)
def book_reset_nb(o, lv, bk, free, tracked, base):
    """Empty the book; its price window becomes [base, base + nlev) ticks."""
    cap = o.shape[0]
    nlev = lv.shape[2]
    for s in range(2):
        for i in range(nlev):
            lv[s, L_HEAD, i] = -1
            lv[s, L_TAIL, i] = -1
            lv[s, L_QTY, i] = 0
            lv[s, L_COUNT, i] = 0
    for i in range(cap):
        o[i, O_ALIVE] = 0
        o[i, O_TRACK] = -1
        free[i] = cap - 1 - i
        tracked[i] = -1
    bk[B_BASE] = base
    bk[B_NLEV] = nlev
    bk[B_BEST_BID] = NO_PRICE
    bk[B_BEST_ASK] = NO_PRICE
    bk[B_N_FREE] = cap
    bk[B_N_BID] = 0
    bk[B_N_ASK] = 0
    bk[B_N_TRACKED] = 0
    bk[B_CAP] = cap


@njit(**NO_NRT)
def book_accepts_nb(bk, price):
    """True if a limit order at ``price`` ticks is positive (>= 1 tick), fits the
    window and a slot is free."""
    idx = price - bk[B_BASE]
    return price >= 1 and idx >= 0 and idx < bk[B_NLEV] and bk[B_N_FREE] > 0


@njit(**NO_NRT)
def book_mid2_nb(bk, last_price):
    """Twice the mid price in ticks (int64; exact).  One-sided or empty book:
    twice the best of the present side, else twice ``last_price``."""
    bb = bk[B_BEST_BID]
    ba = bk[B_BEST_ASK]
    if bb != NO_PRICE and ba != NO_PRICE:
        return bb + ba
    if bb != NO_PRICE:
        return 2 * bb
    if ba != NO_PRICE:
        return 2 * ba
    return 2 * last_price


@njit(**NO_NRT)
def _untrack(o, bk, tracked, oid):
    pos = o[oid, O_TRACK]
    if pos >= 0:
        last = bk[B_N_TRACKED] - 1
        moved = tracked[last]
        tracked[pos] = moved
        o[moved, O_TRACK] = pos
        tracked[last] = -1
        bk[B_N_TRACKED] = last
        o[oid, O_TRACK] = -1


@njit(**NO_NRT)
def _release(o, bk, free, tracked, oid):
    """Slot ``oid`` leaves the book (already unlinked from its level)."""
    _untrack(o, bk, tracked, oid)
    if o[oid, O_SIDE] == BUY:
        bk[B_N_BID] -= 1
    else:
        bk[B_N_ASK] -= 1
    o[oid, O_ALIVE] = 0
    free[bk[B_N_FREE]] = oid
    bk[B_N_FREE] += 1


@njit(**NO_NRT)
def _unlink(o, lv, side, idx, oid):
    prv = o[oid, O_PREV]
    nxt = o[oid, O_NEXT]
    if prv == -1:
        lv[side, L_HEAD, idx] = nxt
    else:
        o[prv, O_NEXT] = nxt
    if nxt == -1:
        lv[side, L_TAIL, idx] = prv
    else:
        o[nxt, O_PREV] = prv
    lv[side, L_COUNT, idx] -= 1
    lv[side, L_QTY, idx] -= o[oid, O_QTY]


@njit(**NO_NRT)
def _rescan_bid(lv, bk, idx):
    """Best bid after level ``idx`` emptied (bids exist below it or none)."""
    if bk[B_N_BID] == 0:
        bk[B_BEST_BID] = NO_PRICE
        return
    j = idx - 1
    while lv[BUY, L_COUNT, j] == 0:
        j -= 1
    bk[B_BEST_BID] = bk[B_BASE] + j


@njit(**NO_NRT)
def _rescan_ask(lv, bk, idx):
    if bk[B_N_ASK] == 0:
        bk[B_BEST_ASK] = NO_PRICE
        return
    j = idx + 1
    while lv[SELL, L_COUNT, j] == 0:
        j += 1
    bk[B_BEST_ASK] = bk[B_BASE] + j


@njit(**NO_NRT)
def book_match_nb(o, lv, bk, free, tracked, side, qty, limit_px, fb, nf):
    """Take liquidity for an incoming order of ``side`` and ``qty`` lots.

    limit_px: ticks; NO_PRICE = no limit (market order).  Fills are appended
    to ``fb`` from row ``nf``.  returns (unfilled lots, new nf).
    """
    base = bk[B_BASE]
    mside = SELL if side == BUY else BUY
    while qty > 0:
        if mside == SELL:
            if bk[B_N_ASK] == 0:
                break
            px = bk[B_BEST_ASK]
            if limit_px != NO_PRICE and px > limit_px:
                break
        else:
            if bk[B_N_BID] == 0:
                break
            px = bk[B_BEST_BID]
            if limit_px != NO_PRICE and px < limit_px:
                break
        idx = px - base
        oid = lv[mside, L_HEAD, idx]
        while qty > 0 and oid != -1:
            avail = o[oid, O_QTY]
            q = avail if avail < qty else qty
            nxt = o[oid, O_NEXT]
            fb[nf, F_MAKER_OID] = oid
            fb[nf, F_MAKER_OWNER] = o[oid, O_OWNER]
            fb[nf, F_MAKER_UID] = o[oid, O_UID]
            fb[nf, F_PRICE] = px
            fb[nf, F_QTY] = q
            qty -= q
            if q == avail:
                fb[nf, F_MAKER_DONE] = 1
                _unlink(o, lv, mside, idx, oid)  # subtracts the (full) remaining qty
                o[oid, O_QTY] = 0
                _release(o, bk, free, tracked, oid)
            else:
                fb[nf, F_MAKER_DONE] = 0
                o[oid, O_QTY] = avail - q
                lv[mside, L_QTY, idx] -= q
            nf += 1
            oid = nxt
        if lv[mside, L_COUNT, idx] == 0:
            if mside == SELL:
                _rescan_ask(lv, bk, idx)
            else:
                _rescan_bid(lv, bk, idx)
    return qty, nf


@njit(**NO_NRT)
def _rest(o, lv, bk, free, tracked, side, price, qty, owner, uid, track):
    """Put ``qty`` lots at ``price`` on ``side`` (no crossing check). returns slot."""
    idx = price - bk[B_BASE]
    bk[B_N_FREE] -= 1
    oid = free[bk[B_N_FREE]]
    o[oid, O_PRICE] = price
    o[oid, O_QTY] = qty
    o[oid, O_SIDE] = side
    o[oid, O_NEXT] = -1
    o[oid, O_OWNER] = owner
    o[oid, O_UID] = uid
    o[oid, O_ALIVE] = 1
    tail = lv[side, L_TAIL, idx]
    o[oid, O_PREV] = tail
    if tail == -1:
        lv[side, L_HEAD, idx] = oid
    else:
        o[tail, O_NEXT] = oid
    lv[side, L_TAIL, idx] = oid
    lv[side, L_COUNT, idx] += 1
    lv[side, L_QTY, idx] += qty
    if side == BUY:
        bk[B_N_BID] += 1
        if bk[B_BEST_BID] == NO_PRICE or price > bk[B_BEST_BID]:
            bk[B_BEST_BID] = price
    else:
        bk[B_N_ASK] += 1
        if bk[B_BEST_ASK] == NO_PRICE or price < bk[B_BEST_ASK]:
            bk[B_BEST_ASK] = price
    if track:
        n = bk[B_N_TRACKED]
        tracked[n] = oid
        o[oid, O_TRACK] = n
        bk[B_N_TRACKED] = n + 1
    else:
        o[oid, O_TRACK] = -1
    return oid


@njit(**NO_NRT)
def book_limit_nb(o, lv, bk, free, tracked, side, price, qty, owner, uid, track, fb, nf):
    """Limit order: match up to ``price`` ticks, rest the remainder.

    The caller must have checked ``book_accepts_nb(bk, price)``.
    returns (slot of the resting remainder or -1 if fully filled, new nf).
    """
    rem, nf = book_match_nb(o, lv, bk, free, tracked, side, qty, price, fb, nf)
    if rem > 0:
        return _rest(o, lv, bk, free, tracked, side, price, rem, owner, uid, track), nf
    return -1, nf


@njit(**NO_NRT)
def book_cancel_nb(o, lv, bk, free, tracked, oid):
    """Cancel the resting order in slot ``oid``. returns lots removed (0 if not alive)."""
    if oid < 0 or o[oid, O_ALIVE] == 0:
        return 0
    side = o[oid, O_SIDE]
    px = o[oid, O_PRICE]
    q = o[oid, O_QTY]
    idx = px - bk[B_BASE]
    _unlink(o, lv, side, idx, oid)
    _release(o, bk, free, tracked, oid)
    if lv[side, L_COUNT, idx] == 0:
        if side == BUY and px == bk[B_BEST_BID]:
            _rescan_bid(lv, bk, idx)
        elif side == SELL and px == bk[B_BEST_ASK]:
            _rescan_ask(lv, bk, idx)
    return q


@njit(**NO_NRT)
def book_depth_nb(lv, bk, side, n_levels):
    """Resting lots on ``side`` within ``n_levels`` ticks of that side's best."""
    if side == BUY:
        if bk[B_N_BID] == 0:
            return 0
        idx = bk[B_BEST_BID] - bk[B_BASE]
        tot = 0
        j = idx
        while j >= 0 and j > idx - n_levels:
            tot += lv[BUY, L_QTY, j]
            j -= 1
        return tot
    if bk[B_N_ASK] == 0:
        return 0
    idx = bk[B_BEST_ASK] - bk[B_BASE]
    nlev = bk[B_NLEV]
    tot = 0
    j = idx
    while j < nlev and j < idx + n_levels:
        tot += lv[SELL, L_QTY, j]
        j += 1
    return tot


@njit(**NO_NRT)
def book_shift_nb(o, lv, bk, free, tracked, new_base, out):
    """Move the price window to [new_base, new_base + nlev).

    Orders outside the new window are cancelled; each is written to ``out``
    (rows: slot, owner, uid, side, price, qty) so the caller can log it.
    returns the number of cancelled orders.
    """
    nlev = bk[B_NLEV]
    base = bk[B_BASE]
    n = 0
    for side in range(2):
        for idx in range(nlev):
            px = base + idx
            if px >= new_base and px < new_base + nlev:
                continue
            oid = lv[side, L_HEAD, idx]
            while oid != -1:
                nxt = o[oid, O_NEXT]
                out[n, 0] = oid
                out[n, 1] = o[oid, O_OWNER]
                out[n, 2] = o[oid, O_UID]
                out[n, 3] = side
                out[n, 4] = px
                out[n, 5] = o[oid, O_QTY]
                n += 1
                book_cancel_nb(o, lv, bk, free, tracked, oid)
                oid = nxt
    shift = new_base - base
    # in place (no allocation): read ahead of the write position (ascending when the window moves
    # up, descending when it moves down), so every level is read before it is overwritten
    for side in range(2):
        for k in range(nlev):
            idx = k if shift >= 0 else nlev - 1 - k
            src = idx + shift
            if src >= 0 and src < nlev:
                for f in range(N_LF):
                    lv[side, f, idx] = lv[side, f, src]
            else:
                lv[side, L_HEAD, idx] = -1
                lv[side, L_TAIL, idx] = -1
                lv[side, L_QTY, idx] = 0
                lv[side, L_COUNT, idx] = 0
    bk[B_BASE] = new_base
    return n


@njit(cache=True)
def replay_nb(kind, side, price, qty, uid, owner, cap, base, nlev, max_uid, fills):
    """Replay a message stream through a fresh book; write every fill.

    kind/side: (m,) int8; price/qty/uid: (m,) int64; owner: (m,) int32.
    fills: (k, 5) int64 output rows (taker_uid, maker_uid, price, qty,
    taker_side) with k >= number of fills.  Limit prices must lie in
    [base, base + nlev).  returns (number of fills, number of rejected limit
    orders (pool full)).
    """
    o = np.zeros((cap, N_OF), dtype=np.int64)
    lv = np.zeros((2, N_LF, nlev), dtype=np.int64)
    bk = np.zeros(N_BF, dtype=np.int64)
    free = np.zeros(cap, dtype=np.int64)
    tracked = np.zeros(cap, dtype=np.int64)
    fb = np.zeros((cap + 1, N_FF), dtype=np.int64)
    slot_of = np.full(max_uid + 1, -1, dtype=np.int64)
    book_reset_nb(o, lv, bk, free, tracked, base)
    n_fills = 0
    n_rej = 0
    for i in range(kind.shape[0]):
        k = kind[i]
        nf = 0
        if k == MSG_LIMIT:
            if not book_accepts_nb(bk, price[i]):
                n_rej += 1
                continue
            oid, nf = book_limit_nb(o, lv, bk, free, tracked, side[i], price[i], qty[i], owner[i], uid[i], False, fb, 0)
            if oid >= 0:
                slot_of[uid[i]] = oid
        elif k == MSG_MARKET:
            rem, nf = book_match_nb(o, lv, bk, free, tracked, side[i], qty[i], NO_PRICE, fb, 0)
        else:
            s = slot_of[uid[i]]
            if s >= 0 and o[s, O_ALIVE] == 1 and o[s, O_UID] == uid[i]:
                book_cancel_nb(o, lv, bk, free, tracked, s)
        for j in range(nf):
            fills[n_fills, 0] = uid[i]
            fills[n_fills, 1] = fb[j, F_MAKER_UID]
            fills[n_fills, 2] = fb[j, F_PRICE]
            fills[n_fills, 3] = fb[j, F_QTY]
            fills[n_fills, 4] = side[i]
            n_fills += 1
    return n_fills, n_rej


@njit(**NO_NRT)
def book_queue_ahead_nb(o, lv, oid):
    """Lots resting ahead of the live order in slot ``oid`` at its price level (price-time priority: the
    orders before it in the level's FIFO).  An order joins the back of its level (``_rest``), so this is its
    exact queue position; it fills only once these lots are consumed by takers or cancelled.
    returns -1 if the slot is not alive."""
    if oid < 0 or o[oid, O_ALIVE] == 0:
        return -1
    tot = 0
    j = o[oid, O_PREV]
    while j != -1:
        tot += o[j, O_QTY]
        j = o[j, O_PREV]
    return tot


@njit(**NO_NRT)
def book_top_nb(lv, bk, out):
    """Top of book into ``out`` (4,) int64: best bid, best ask (NO_PRICE if empty), lots at each best."""
    base = bk[B_BASE]
    bb = bk[B_BEST_BID]
    ba = bk[B_BEST_ASK]
    out[0] = bb
    out[1] = ba
    out[2] = lv[BUY, L_QTY, bb - base] if bb != NO_PRICE else 0
    out[3] = lv[SELL, L_QTY, ba - base] if ba != NO_PRICE else 0
