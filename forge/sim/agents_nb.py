"""Agent-based market simulation on the numba book (the HF-ABM kernels).

Time is float64 seconds since the simulation start; prices are int64 ticks,
quantities int64 lots (see ``forge.sim.book_nb``).  Agents live in flat
arrays; an indexed binary min-heap of next-wake times (``hp_t``/``hp_a``/
``hp_pos``, keyed by (time, agent id)) is the event schedule.  Each agent
owns a SplitMix64 stream (``forge.sim.rng_nb``), so a seed fixes every draw.

Agents (class per ``ag_type``)
- CLOCK (one, every 1 s): latent log value (random walk scaled by activity
  and the slow variance factor, plus Laplace jumps), log-activity OU process,
  a slow log-variance OU updated once per simulated minute (hours of
  persistence; scales the latent value's variance and, with elasticity
  ``slow_rate_share``, every agent rate) and trade-excitation, the
  momentum EMA of the mid, and recentering of the book's price window.
- NOISE (zero intelligence, Farmer et al. 2005 / Santa Fe model): limit
  orders at a random distance behind the opposite best, market orders,
  and cancellation of a uniformly random resting noise order.
- MM (market makers): ladders of quotes around a reference price skewed by
  inventory and book imbalance; keep unchanged quotes (queue priority);
  withdraw after large mid moves and when a scenario vacuum hits.
- MOMENTUM: market orders when the mid's deviation from its EMA plus an
  order-book-imbalance term exceeds a threshold.
- VALUE (fundamental): market orders when the latent value deviates from the
  mid by more than a threshold.
- Predators (scenario genome, ``SC_*``): stop hunter, liquidity vacuum,
  spoofer/layerer, volatility shock; all react to the strategy's position.
- STRATEGY (one, never scheduled): its market orders are injected by the
  Python driver at bar boundaries (``si[I_STRAT_PENDING]``).

The DSG vector ``p`` holds the ``DSG_NAMES`` parameters in natural units
(see ``forge.sim.params`` for bounds/units); the scenario vector ``sc`` the
``SCENARIO_NAMES`` ones.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from forge.sim.book_nb import (
    B_BASE,
    B_BEST_ASK,
    B_BEST_BID,
    B_N_TRACKED,
    B_NLEV,
    BUY,
    F_MAKER_OWNER,
    F_MAKER_UID,
    F_PRICE,
    F_QTY,
    MSG_CANCEL,
    MSG_LIMIT,
    MSG_MARKET,
    NO_PRICE,
    O_ALIVE,
    O_OWNER,
    O_PRICE,
    O_QTY,
    O_SIDE,
    O_UID,
    SELL,
    book_accepts_nb,
    book_cancel_nb,
    book_depth_nb,
    book_limit_nb,
    book_match_nb,
    book_mid2_nb,
    book_reset_nb,
    book_shift_nb,
)
from forge.sim.nbopts import NO_NRT
from forge.sim.rng_nb import exponential_nb, laplace_nb, normal_nb, randint_nb, uniform_nb

# --------------------------------------------------------------------------- DSG indices
DSG_NAMES = (
    "value_vol_bp",
    "jump_rate_per_hour",
    "jump_size_bp",
    "activity_std",
    "activity_halflife_min",
    "excite_gain",
    "excite_halflife_s",
    "noise_limit_rate",
    "noise_market_rate",
    "noise_cancel_rate",
    "noise_offset_ticks",
    "size_sigma",
    "mm_rate",
    "mm_half_spread_ticks",
    "mm_levels",
    "mm_spacing_ticks",
    "mm_depth",
    "mm_inventory_skew",
    "mm_inventory_limit",
    "mm_withdraw_bp",
    "mm_withdraw_s",
    "mm_imbalance_skew",
    "momentum_rate",
    "momentum_horizon_s",
    "momentum_threshold_bp",
    "momentum_size",
    "imbalance_weight_bp",
    "value_rate",
    "value_threshold_bp",
    "value_size",
    "lot_quote",
    "slow_vol_std",
    "slow_vol_halflife_min",
    "slow_rate_share",
)
P_VALUE_VOL_BP = 0
P_JUMP_RATE_H = 1
P_JUMP_BP = 2
P_ACT_STD = 3
P_ACT_HALFLIFE_MIN = 4
P_EXCITE_GAIN = 5
P_EXCITE_HALFLIFE_S = 6
P_NOISE_LIMIT_RATE = 7
P_NOISE_MARKET_RATE = 8
P_NOISE_CANCEL_RATE = 9
P_NOISE_OFFSET = 10
P_SIZE_SIGMA = 11
P_MM_RATE = 12
P_MM_HALF_SPREAD = 13
P_MM_LEVELS = 14
P_MM_SPACING = 15
P_MM_DEPTH = 16
P_MM_INV_SKEW = 17
P_MM_INV_LIMIT = 18
P_MM_WITHDRAW_BP = 19
P_MM_WITHDRAW_S = 20
P_MM_IMB_SKEW = 21
P_MOM_RATE = 22
P_MOM_HORIZON_S = 23
P_MOM_THRESHOLD_BP = 24
P_MOM_SIZE = 25
P_IMB_WEIGHT = 26
P_VAL_RATE = 27
P_VAL_THRESHOLD_BP = 28
P_VAL_SIZE = 29
P_LOT_QUOTE = 30
P_SLOW_STD = 31
P_SLOW_HALFLIFE_MIN = 32
P_SLOW_RATE_SHARE = 33
N_P = 34

# --------------------------------------------------------------------------- scenario indices
SCENARIO_NAMES = (
    "reactivity",
    "hunt_rate_per_hour",
    "hunt_overshoot_bp",
    "hunt_clip",
    "hunt_max_clips",
    "vacuum_rate_per_hour",
    "vacuum_duration_s",
    "vacuum_fraction",
    "spoof_rate_per_hour",
    "spoof_size",
    "spoof_layers",
    "spoof_offset_ticks",
    "spoof_lifetime_s",
    "shock_rate_per_hour",
    "shock_size_bp",
    "shock_activity",
)
SC_REACTIVITY = 0
SC_HUNT_RATE_H = 1
SC_HUNT_OVERSHOOT_BP = 2
SC_HUNT_CLIP = 3
SC_HUNT_MAX_CLIPS = 4
SC_VAC_RATE_H = 5
SC_VAC_DURATION_S = 6
SC_VAC_FRACTION = 7
SC_SPOOF_RATE_H = 8
SC_SPOOF_SIZE = 9
SC_SPOOF_LAYERS = 10
SC_SPOOF_OFFSET = 11
SC_SPOOF_LIFETIME_S = 12
SC_SHOCK_RATE_H = 13
SC_SHOCK_BP = 14
SC_SHOCK_ACTIVITY = 15
N_SC = 16

# --------------------------------------------------------------------------- agents
T_CLOCK = 0
T_NOISE = 1
T_MM = 2
T_MOM = 3
T_VAL = 4
T_HUNTER = 5
T_VACUUM = 6
T_SPOOFER = 7
T_SHOCK = 8
T_STRATEGY = 9

AF_INV = 0  # lots held (signed)
AF_CASH = 1  # ticks*lots (signed cash flow)
AF_LAST_MID = 2  # ticks, mid at the agent's previous wake
AF_UNTIL = 3  # seconds: MM withdrawn until / spoofer active until
AF_WD_BID_UNTIL = 4  # seconds: MM bid side withdrawn (vacuum) until
AF_WD_ASK_UNTIL = 5
AF_TARGET = 6  # ticks: stop-hunt target
AF_DIR = 7  # +1 / -1: predator push direction
AF_LEFT = 8  # stop-hunt clips left
N_AF = 9

MAXQ = 8  # quote slots per side (MM levels, spoof layers)
CLOCK_DT = 1.0  # seconds between clock ticks
HUNT_INTERVAL = 0.5  # seconds between stop-hunt clips
SPOOF_CHECK = 0.25  # seconds between spoofer book checks
IMB_LEVELS = 5  # ticks of depth per side in the imbalance signal
LN2 = math.log(2.0)
INF = np.inf

# --------------------------------------------------------------------------- scalars
S_T = 0
S_LOGV = 1  # log latent value, log(ticks)
S_H = 2  # OU part of log activity
S_X = 3  # trade excitation
S_ACT = 4  # activity multiplier (rates scale with it)
S_EMA = 5  # ticks
S_MID_CLOCK = 6  # ticks, mid at the previous clock tick
S_STRAT_FILL_QTY = 7  # signed lots filled by the last strategy order
S_STRAT_FILL_NOTIONAL = 8  # ticks*lots of that fill
S_STRAT_MID_BEFORE = 9  # ticks
S_STRAT_MID_AFTER = 10  # ticks
S_STRAT_ENTRY = 11  # ticks, VWAP of the last position-increasing fill
S_HS = 12  # slow log-variance (OU, updated once per simulated minute)
S_VSLOW = 13  # slow variance multiplier of the latent value, exp(hs - ss^2/2) (mean 1)
S_RSLOW = 14  # slow multiplier of the agents' rates, exp(e hs - e^2 ss^2/2) (mean 1)
S_SLOW_NEXT = 15  # seconds: time of the next slow update
N_SF = 16

I_N_MSG = 0
I_N_FILL = 1
I_N_WAKE = 2
I_N_MSG_REC = 3
I_N_TRADE_REC = 4
I_RECORD_MSG = 5
I_RECORD_TRADE = 6
I_LAST_PX = 7
I_NEXT_UID = 8
I_BAR_OFFSET = 9  # burn-in minutes before bar 0
I_MEAN_LOTS = 10  # mean background order size, lots
I_STRAT_PENDING = 11  # signed lots the strategy sends at the next run start
I_STRAT_POS = 12  # lots
I_STRAT_AGENT = 13
I_N_REJECT = 14
I_N_RECENTER = 15
I_MARGIN = 16  # recenter when the mid is this many levels from a window edge
I_FIRST_NOISE = 17
I_N_NOISE = 18
I_FIRST_MM = 19
I_N_MM = 20
I_N_MOM = 21
I_N_VAL = 22
I_N_FINAL = 23  # bars finalised (empty bars filled)
I_PX_BEFORE_BAR0 = 24
I_BAR0_SEEN = 25
I_HEADROOM = 26  # free log rows required before each event while recording
I_MAX_EVENTS = 27  # event budget: stop once book messages or agent wakes reach this (<= 0: none)
I_TRUNCATED = 28  # 1 once the event budget stopped the run
N_SI = 29

# bar fields (ticks / lots)
BAR_OPEN = 0
BAR_HIGH = 1
BAR_LOW = 2
BAR_CLOSE = 3
BAR_VOL = 4
BAR_QUOTE = 5  # sum ticks*lots
BAR_COUNT = 6
BAR_TBV = 7  # taker-buy lots
BAR_TBQ = 8  # taker-buy ticks*lots
N_BAR = 9

STATUS_DONE = 0
STATUS_LOG_FULL = 1
STATUS_BUDGET = 2
SLOW_DT = 60.0  # seconds between updates of the slow volatility component
SLOW_CLAMP = 6.0  # |slow log-variance| is clamped here (numerical safety, > 4 sd at the upper bound)


# --------------------------------------------------------------------------- heap
@njit(**NO_NRT)
def _less(hp_t, hp_a, i, j):
    return hp_t[i] < hp_t[j] or (hp_t[i] == hp_t[j] and hp_a[i] < hp_a[j])


@njit(**NO_NRT)
def _swap(hp_t, hp_a, hp_pos, i, j):
    ti = hp_t[i]
    ai = hp_a[i]
    hp_t[i] = hp_t[j]
    hp_a[i] = hp_a[j]
    hp_t[j] = ti
    hp_a[j] = ai
    hp_pos[hp_a[i]] = i
    hp_pos[hp_a[j]] = j


@njit(**NO_NRT)
def _sift_down(hp_t, hp_a, hp_pos, i):
    n = hp_t.shape[0]
    while True:
        l = 2 * i + 1
        if l >= n:
            return
        c = l
        r = l + 1
        if r < n and _less(hp_t, hp_a, r, l):
            c = r
        if _less(hp_t, hp_a, c, i):
            _swap(hp_t, hp_a, hp_pos, c, i)
            i = c
        else:
            return


@njit(**NO_NRT)
def _sift_up(hp_t, hp_a, hp_pos, i):
    while i > 0:
        par = (i - 1) // 2
        if _less(hp_t, hp_a, i, par):
            _swap(hp_t, hp_a, hp_pos, i, par)
            i = par
        else:
            return


@njit(**NO_NRT)
def heap_build_nb(hp_t, hp_a, hp_pos, wake):
    """Build the schedule from ``wake`` ((n_agents,) float64 first wake times)."""
    n = wake.shape[0]
    for a in range(n):
        hp_t[a] = wake[a]
        hp_a[a] = a
        hp_pos[a] = a
    for i in range(n // 2 - 1, -1, -1):
        _sift_down(hp_t, hp_a, hp_pos, i)


@njit(**NO_NRT)
def heap_update_nb(hp_t, hp_a, hp_pos, a, new_t):
    """Reschedule agent ``a`` to wake at ``new_t`` seconds."""
    i = hp_pos[a]
    old = hp_t[i]
    hp_t[i] = new_t
    if new_t < old:
        _sift_up(hp_t, hp_a, hp_pos, i)
    else:
        _sift_down(hp_t, hp_a, hp_pos, i)


# --------------------------------------------------------------------------- logging / bars
@njit(inline='always', **NO_NRT)
def _log_msg(st, t, kind, side, price, qty, uid, owner):
    ag_f, sf, si, bars, msg_log, trade_log = st
    si[I_N_MSG] += 1
    if si[I_RECORD_MSG] != 0:
        k = si[I_N_MSG_REC]
        r = msg_log[k]
        r.t = t
        r.kind = kind
        r.side = side
        r.price = price
        r.qty = qty
        r.uid = uid
        r.owner = owner
        si[I_N_MSG_REC] = k + 1


@njit(inline='always', **NO_NRT)
def _bar_trade(bars, si, t, px, q, side):
    b = int(t / 60.0) - si[I_BAR_OFFSET]
    if b < 0 or b >= bars.shape[0]:
        return
    if si[I_BAR0_SEEN] == 0:
        si[I_BAR0_SEEN] = 1
        si[I_PX_BEFORE_BAR0] = si[I_LAST_PX]
    fpx = float(px)
    fq = float(q)
    if bars[b, BAR_COUNT] == 0.0:
        bars[b, BAR_OPEN] = fpx
        bars[b, BAR_HIGH] = fpx
        bars[b, BAR_LOW] = fpx
    else:
        if fpx > bars[b, BAR_HIGH]:
            bars[b, BAR_HIGH] = fpx
        if fpx < bars[b, BAR_LOW]:
            bars[b, BAR_LOW] = fpx
    bars[b, BAR_CLOSE] = fpx
    bars[b, BAR_VOL] += fq
    bars[b, BAR_QUOTE] += fpx * fq
    bars[b, BAR_COUNT] += 1.0
    if side == BUY:
        bars[b, BAR_TBV] += fq
        bars[b, BAR_TBQ] += fpx * fq


@njit(inline='always', **NO_NRT)
def _apply_fills(bookt, st, t, taker, side, taker_uid, nf):
    """Book-keep ``nf`` fills in the scratch buffer. returns (lots, ticks*lots)."""
    fb = bookt[5]
    ag_f, sf, si, bars, msg_log, trade_log = st
    filled = 0
    notional = 0.0
    sgn = 1.0 if side == BUY else -1.0
    for j in range(nf):
        px = fb[j, F_PRICE]
        q = fb[j, F_QTY]
        m = fb[j, F_MAKER_OWNER]
        pq = float(px) * float(q)
        ag_f[taker, AF_INV] += sgn * q
        ag_f[taker, AF_CASH] -= sgn * pq
        ag_f[m, AF_INV] -= sgn * q
        ag_f[m, AF_CASH] += sgn * pq
        filled += q
        notional += pq
        _bar_trade(bars, si, t, px, q, side)
        si[I_LAST_PX] = px
        if si[I_RECORD_TRADE] != 0:
            k = si[I_N_TRADE_REC]
            r = trade_log[k]
            r.t = t
            r.price = px
            r.qty = q
            r.taker_side = side
            r.taker_uid = taker_uid
            r.maker_uid = fb[j, F_MAKER_UID]
            r.taker_owner = taker
            r.maker_owner = m
            si[I_N_TRADE_REC] = k + 1
    si[I_N_FILL] += nf
    return filled, notional


# --------------------------------------------------------------------------- order entry
@njit(inline='always', **NO_NRT)
def _limit(bookt, st, t, a, side, price, qty, track):
    """Send a limit order for agent ``a``. returns (slot or -1, uid or -1)."""
    o, lv, bk, free, tracked, fb = bookt
    si = st[2]
    if qty <= 0 or not book_accepts_nb(bk, price):
        si[I_N_REJECT] += 1
        return -1, -1
    uid = si[I_NEXT_UID]
    si[I_NEXT_UID] = uid + 1
    _log_msg(st, t, MSG_LIMIT, side, price, qty, uid, a)
    oid, nf = book_limit_nb(o, lv, bk, free, tracked, side, price, qty, a, uid, track, fb, 0)
    if nf > 0:
        _apply_fills(bookt, st, t, a, side, uid, nf)
    return oid, uid


@njit(inline='always', **NO_NRT)
def _market(bookt, st, t, a, side, qty):
    """Send a market order. returns (lots filled, ticks*lots)."""
    o, lv, bk, free, tracked, fb = bookt
    si = st[2]
    if qty <= 0:
        return 0, 0.0
    uid = si[I_NEXT_UID]
    si[I_NEXT_UID] = uid + 1
    _log_msg(st, t, MSG_MARKET, side, 0, qty, uid, a)
    rem, nf = book_match_nb(o, lv, bk, free, tracked, side, qty, NO_PRICE, fb, 0)
    return _apply_fills(bookt, st, t, a, side, uid, nf)


@njit(inline='always', **NO_NRT)
def _cancel(bookt, st, t, a, oid):
    o, lv, bk, free, tracked, fb = bookt
    if oid < 0 or o[oid, O_ALIVE] == 0:
        return 0
    side = o[oid, O_SIDE]
    px = o[oid, O_PRICE]
    uid = o[oid, O_UID]
    q = book_cancel_nb(o, lv, bk, free, tracked, oid)
    _log_msg(st, t, MSG_CANCEL, side, px, q, uid, a)
    return q


@njit(inline='always', **NO_NRT)
def _slot_alive(o, qs, a, side, k):
    oid = qs[a, side, k, 0]
    return oid >= 0 and o[oid, O_ALIVE] == 1 and o[oid, O_UID] == qs[a, side, k, 1]


@njit(inline='always', **NO_NRT)
def _cancel_slots(bookt, st, qs, t, a, side):
    o = bookt[0]
    for k in range(MAXQ):
        if _slot_alive(o, qs, a, side, k):
            _cancel(bookt, st, t, a, qs[a, side, k, 0])
        qs[a, side, k, 0] = -1
        qs[a, side, k, 1] = -1


@njit(inline='always', **NO_NRT)
def _size(rs, a, mean_lots, sigma):
    """Lognormal order size with mean ``mean_lots`` (>= 1 lot)."""
    q = mean_lots * math.exp(sigma * normal_nb(rs, a) - 0.5 * sigma * sigma)
    n = int(q + 0.5)
    return n if n >= 1 else 1


@njit(inline='always', **NO_NRT)
def _imbalance(lv, bk):
    bq = book_depth_nb(lv, bk, BUY, IMB_LEVELS)
    aq = book_depth_nb(lv, bk, SELL, IMB_LEVELS)
    tot = bq + aq
    if tot == 0:
        return 0.0
    return (bq - aq) / tot


@njit(inline='always', **NO_NRT)
def _wait(rs, a, rate):
    """Exponential waiting time (s) for ``rate`` events/s (inf if rate <= 0)."""
    if rate <= 0.0:
        return INF
    return exponential_nb(rs, a) / rate


# --------------------------------------------------------------------------- agents
@njit(**NO_NRT)
def _slow_set(p, sf):
    """Slow multipliers from the slow log-variance ``sf[S_HS]`` (both have mean 1 at stationarity)."""
    ss = p[P_SLOW_STD]
    e = p[P_SLOW_RATE_SHARE]
    hs = min(max(sf[S_HS], -SLOW_CLAMP), SLOW_CLAMP)
    sf[S_VSLOW] = math.exp(hs - 0.5 * ss * ss)
    sf[S_RSLOW] = math.exp(e * hs - 0.5 * e * e * ss * ss)


@njit(**NO_NRT)
def _slow_update(p, sf, rs, a):
    """One SLOW_DT step of the slow log-variance OU (stationary std slow_vol_std)."""
    tau = max(p[P_SLOW_HALFLIFE_MIN], 1e-6) * 60.0 / LN2
    phi = math.exp(-SLOW_DT / tau)
    sf[S_HS] = sf[S_HS] * phi + p[P_SLOW_STD] * math.sqrt(max(1.0 - phi * phi, 0.0)) * normal_nb(rs, a)
    _slow_set(p, sf)


@njit(**NO_NRT)
def _clock(p, bookt, st, rs, a, t, shift_out):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    # log-activity: OU with stationary std activity_std, half-life in minutes
    tau = max(p[P_ACT_HALFLIFE_MIN], 1e-6) * 60.0 / LN2
    phi = math.exp(-CLOCK_DT / tau)
    s = p[P_ACT_STD]
    sf[S_H] = sf[S_H] * phi + s * math.sqrt(max(1.0 - phi * phi, 0.0)) * normal_nb(rs, a)
    mid = book_mid2_nb(bk, si[I_LAST_PX]) * 0.5
    r_bp = abs(math.log(mid / sf[S_MID_CLOCK])) * 1e4 if sf[S_MID_CLOCK] > 0 else 0.0
    d = math.exp(-LN2 * CLOCK_DT / max(p[P_EXCITE_HALFLIFE_S], 1e-6))
    x = sf[S_X] * d + p[P_EXCITE_GAIN] * (1.0 - d) * r_bp
    sf[S_X] = min(x, 50.0)
    # slow log-variance: OU updated once per simulated minute (persistence of hours)
    if t >= sf[S_SLOW_NEXT]:
        sf[S_SLOW_NEXT] += SLOW_DT
        _slow_update(p, sf, rs, a)
    hh = sf[S_H]
    if hh > 5.0:
        hh = 5.0
    fast = math.exp(hh - 0.5 * s * s) * (1.0 + sf[S_X])
    act = fast * sf[S_RSLOW]
    sf[S_ACT] = act
    # latent value: random walk (variance per minute value_vol_bp^2 * fast activity * slow
    # variance factor) + jumps (rate scaled the same way)
    act_v = fast * sf[S_VSLOW]
    sf[S_LOGV] += p[P_VALUE_VOL_BP] * 1e-4 * math.sqrt(act_v * CLOCK_DT / 60.0) * normal_nb(rs, a)
    if uniform_nb(rs, a) < p[P_JUMP_RATE_H] * act_v * CLOCK_DT / 3600.0:
        sf[S_LOGV] += p[P_JUMP_BP] * 1e-4 * laplace_nb(rs, a)
    # momentum EMA
    k = 1.0 - math.exp(-CLOCK_DT / max(p[P_MOM_HORIZON_S], 1e-6))
    sf[S_EMA] += k * (mid - sf[S_EMA])
    sf[S_MID_CLOCK] = mid
    # keep the mid in the middle half of the price window
    base = bk[B_BASE]
    nlev = bk[B_NLEV]
    m = int(mid)
    if m - base < si[I_MARGIN] or base + nlev - m < si[I_MARGIN]:
        n = book_shift_nb(o, lv, bk, free, tracked, m - nlev // 2, shift_out)
        for i in range(n):
            _log_msg(st, t, MSG_CANCEL, shift_out[i, 3], shift_out[i, 4], shift_out[i, 5], shift_out[i, 2], shift_out[i, 1])
        si[I_N_RECENTER] += 1
    return CLOCK_DT


@njit(**NO_NRT)
def _noise(p, bookt, st, rs, a, t):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    n_tr = bk[B_N_TRACKED]
    lam_l = p[P_NOISE_LIMIT_RATE]
    lam_m = p[P_NOISE_MARKET_RATE]
    lam_c = p[P_NOISE_CANCEL_RATE] * n_tr
    u = uniform_nb(rs, a) * (lam_l + lam_m + lam_c)
    mean_lots = float(si[I_MEAN_LOTS])
    if u < lam_c:
        oid = tracked[randint_nb(rs, a, n_tr)]
        _cancel(bookt, st, t, a, oid)
    elif u < lam_c + lam_m:
        side = BUY if uniform_nb(rs, a) < 0.5 else SELL
        _market(bookt, st, t, a, side, _size(rs, a, mean_lots, p[P_SIZE_SIGMA]))
    else:
        side = BUY if uniform_nb(rs, a) < 0.5 else SELL
        off = int(p[P_NOISE_OFFSET] * exponential_nb(rs, a))
        q = _size(rs, a, mean_lots, p[P_SIZE_SIGMA])
        if side == BUY:
            ref = bk[B_BEST_ASK] if bk[B_BEST_ASK] != NO_PRICE else si[I_LAST_PX] + 1
            px = ref - 1 - off
        else:
            ref = bk[B_BEST_BID] if bk[B_BEST_BID] != NO_PRICE else si[I_LAST_PX] - 1
            px = ref + 1 + off
        _limit(bookt, st, t, a, side, px, q, True)
    rate = (lam_l + lam_m + p[P_NOISE_CANCEL_RATE] * bk[B_N_TRACKED]) * sf[S_ACT] / si[I_N_NOISE]
    return _wait(rs, a, rate)


@njit(**NO_NRT)
def _mm(p, bookt, st, qs, rs, a, t):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    mid = book_mid2_nb(bk, si[I_LAST_PX]) * 0.5
    last = ag_f[a, AF_LAST_MID]
    ag_f[a, AF_LAST_MID] = mid
    rate = p[P_MM_RATE]
    if last > 0.0 and abs(mid - last) / mid * 1e4 > p[P_MM_WITHDRAW_BP]:
        _cancel_slots(bookt, st, qs, t, a, BUY)
        _cancel_slots(bookt, st, qs, t, a, SELL)
        ag_f[a, AF_UNTIL] = t + p[P_MM_WITHDRAW_S]
        return p[P_MM_WITHDRAW_S] + _wait(rs, a, rate)
    mean_lots = float(si[I_MEAN_LOTS])
    depth = max(int(p[P_MM_DEPTH] * mean_lots + 0.5), 1)
    inv = ag_f[a, AF_INV]
    lim = p[P_MM_INV_LIMIT] * depth
    bid_ok = t >= ag_f[a, AF_WD_BID_UNTIL] and inv < lim
    ask_ok = t >= ag_f[a, AF_WD_ASK_UNTIL] and inv > -lim
    ref = mid + p[P_MM_IMB_SKEW] * _imbalance(lv, bk) - p[P_MM_INV_SKEW] * inv / depth
    hs = p[P_MM_HALF_SPREAD]
    levels = min(max(int(p[P_MM_LEVELS] + 0.5), 1), MAXQ)
    spacing = max(int(p[P_MM_SPACING] + 0.5), 1)
    top_bid = int(math.floor(ref - hs))
    top_ask = int(math.ceil(ref + hs))
    if top_ask <= top_bid:
        top_ask = top_bid + 1
    # pass 1: pull quotes that are no longer wanted or no longer at their target
    for side in range(2):
        ok = bid_ok if side == BUY else ask_ok
        for k in range(MAXQ):
            if not _slot_alive(o, qs, a, side, k):
                qs[a, side, k, 0] = -1
                continue
            target = top_bid - k * spacing if side == BUY else top_ask + k * spacing
            if ok and k < levels and o[qs[a, side, k, 0], O_PRICE] == target:
                continue
            _cancel(bookt, st, t, a, qs[a, side, k, 0])
            qs[a, side, k, 0] = -1
    # pass 2: place the missing ones, never crossing the opposite best
    for side in range(2):
        ok = bid_ok if side == BUY else ask_ok
        if not ok:
            continue
        for k in range(levels):
            if qs[a, side, k, 0] >= 0:
                continue
            if side == BUY:
                target = top_bid - k * spacing
                ba = bk[B_BEST_ASK]
                if ba != NO_PRICE and target >= ba:
                    target = ba - 1 - k * spacing
            else:
                target = top_ask + k * spacing
                bb = bk[B_BEST_BID]
                if bb != NO_PRICE and target <= bb:
                    target = bb + 1 + k * spacing
            oid, uid = _limit(bookt, st, t, a, side, target, depth, False)
            qs[a, side, k, 0] = oid
            qs[a, side, k, 1] = uid
    return _wait(rs, a, rate)


@njit(**NO_NRT)
def _momentum(p, bookt, st, rs, a, t):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    mid = book_mid2_nb(bk, si[I_LAST_PX]) * 0.5
    ema = sf[S_EMA]
    sig = (mid - ema) / ema * 1e4 + p[P_IMB_WEIGHT] * _imbalance(lv, bk)
    thr = p[P_MOM_THRESHOLD_BP]
    if sig > thr or sig < -thr:
        side = BUY if sig > 0 else SELL
        _market(bookt, st, t, a, side, _size(rs, a, p[P_MOM_SIZE] * si[I_MEAN_LOTS], p[P_SIZE_SIGMA]))
    return _wait(rs, a, p[P_MOM_RATE] * sf[S_ACT] / si[I_N_MOM])


@njit(**NO_NRT)
def _value(p, bookt, st, rs, a, t):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    mid = book_mid2_nb(bk, si[I_LAST_PX]) * 0.5
    gap = (math.exp(sf[S_LOGV]) - mid) / mid * 1e4
    thr = p[P_VAL_THRESHOLD_BP]
    if gap > thr or gap < -thr:
        side = BUY if gap > 0 else SELL
        _market(bookt, st, t, a, side, _size(rs, a, p[P_VAL_SIZE] * si[I_MEAN_LOTS], p[P_SIZE_SIGMA]))
    return _wait(rs, a, p[P_VAL_RATE] * sf[S_ACT] / si[I_N_VAL])


@njit(**NO_NRT)
def _predator_direction(sc, si, rs, a):
    """+1 / -1: direction the predator pushes the price; 0: stay idle.

    Strategy in a position: adverse to it with probability (1 + reactivity)/2.
    Strategy flat: idle with probability reactivity, else a random direction.
    """
    pos = si[I_STRAT_POS]
    rho = sc[SC_REACTIVITY]
    if pos != 0:
        adverse = -1 if pos > 0 else 1
        return adverse if uniform_nb(rs, a) < 0.5 + 0.5 * rho else -adverse
    if uniform_nb(rs, a) < rho:
        return 0
    return 1 if uniform_nb(rs, a) < 0.5 else -1


@njit(**NO_NRT)
def _hunter(p, sc, bookt, st, rs, a, t):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    rate = sc[SC_HUNT_RATE_H] / 3600.0
    mid = book_mid2_nb(bk, si[I_LAST_PX]) * 0.5
    if ag_f[a, AF_LEFT] > 0:
        d = ag_f[a, AF_DIR]
        tgt = ag_f[a, AF_TARGET]
        if (d < 0 and mid <= tgt) or (d > 0 and mid >= tgt):
            ag_f[a, AF_LEFT] = 0
            return _wait(rs, a, rate)
        side = BUY if d > 0 else SELL
        _market(bookt, st, t, a, side, max(int(sc[SC_HUNT_CLIP] * si[I_MEAN_LOTS] + 0.5), 1))
        ag_f[a, AF_LEFT] -= 1
        if ag_f[a, AF_LEFT] <= 0:
            return _wait(rs, a, rate)
        return HUNT_INTERVAL
    d = _predator_direction(sc, si, rs, a)
    if d == 0:
        return _wait(rs, a, rate)
    # the level to run: the strategy's last entry (where its stop would sit), else the mid
    ref = sf[S_STRAT_ENTRY] if si[I_STRAT_POS] != 0 and sf[S_STRAT_ENTRY] > 0 else mid
    tgt = ref * (1.0 + d * sc[SC_HUNT_OVERSHOOT_BP] * 1e-4)
    if (d < 0 and mid <= tgt) or (d > 0 and mid >= tgt):
        tgt = mid * (1.0 + d * sc[SC_HUNT_OVERSHOOT_BP] * 1e-4)
    ag_f[a, AF_DIR] = d
    ag_f[a, AF_TARGET] = tgt
    ag_f[a, AF_LEFT] = max(int(sc[SC_HUNT_MAX_CLIPS] + 0.5), 1)
    return 1e-3


@njit(**NO_NRT)
def _vacuum(p, sc, bookt, st, qs, rs, a, t):
    ag_f, sf, si, bars, msg_log, trade_log = st
    d = _predator_direction(sc, si, rs, a)
    if d != 0:
        until = t + sc[SC_VAC_DURATION_S]
        # pushing the price down = removing bids (support); up = removing asks
        side = BUY if d < 0 else SELL
        f = AF_WD_BID_UNTIL if side == BUY else AF_WD_ASK_UNTIL
        first = si[I_FIRST_MM]
        for m in range(first, first + si[I_N_MM]):
            if uniform_nb(rs, a) < sc[SC_VAC_FRACTION]:
                ag_f[m, f] = until
                _cancel_slots(bookt, st, qs, t, m, side)
    return _wait(rs, a, sc[SC_VAC_RATE_H] / 3600.0)


@njit(**NO_NRT)
def _spoofer(p, sc, bookt, st, qs, rs, a, t):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    rate = sc[SC_SPOOF_RATE_H] / 3600.0
    if ag_f[a, AF_UNTIL] <= t:
        if ag_f[a, AF_DIR] != 0:  # an episode just ended: pull everything
            _cancel_slots(bookt, st, qs, t, a, BUY)
            _cancel_slots(bookt, st, qs, t, a, SELL)
            ag_f[a, AF_DIR] = 0
            return _wait(rs, a, rate)
        d = _predator_direction(sc, si, rs, a)
        if d == 0:
            return _wait(rs, a, rate)
        ag_f[a, AF_DIR] = d
        ag_f[a, AF_UNTIL] = t + sc[SC_SPOOF_LIFETIME_S]
    d = ag_f[a, AF_DIR]
    # to push the price down, show a wall of asks (and vice versa); never be the best
    side = SELL if d < 0 else BUY
    layers = min(max(int(sc[SC_SPOOF_LAYERS] + 0.5), 1), MAXQ)
    off = max(int(sc[SC_SPOOF_OFFSET] + 0.5), 1)
    size = max(int(sc[SC_SPOOF_SIZE] * si[I_MEAN_LOTS] + 0.5), 1)
    for k in range(layers):
        if _slot_alive(o, qs, a, side, k):
            px = o[qs[a, side, k, 0], O_PRICE]
            at_top = px <= bk[B_BEST_ASK] if side == SELL else px >= bk[B_BEST_BID]
            if at_top:
                _cancel(bookt, st, t, a, qs[a, side, k, 0])
                qs[a, side, k, 0] = -1
                qs[a, side, k, 1] = -1
            continue
        if side == SELL:
            ref = bk[B_BEST_ASK] if bk[B_BEST_ASK] != NO_PRICE else si[I_LAST_PX] + 1
            px = ref + off + k
        else:
            ref = bk[B_BEST_BID] if bk[B_BEST_BID] != NO_PRICE else si[I_LAST_PX] - 1
            px = ref - off - k
        oid, uid = _limit(bookt, st, t, a, side, px, size, False)
        qs[a, side, k, 0] = oid
        qs[a, side, k, 1] = uid
    return min(SPOOF_CHECK, max(ag_f[a, AF_UNTIL] - t, 1e-6))


@njit(**NO_NRT)
def _shock(p, sc, st, rs, a, t):
    ag_f, sf, si, bars, msg_log, trade_log = st
    d = _predator_direction(sc, si, rs, a)
    if d != 0:
        sf[S_LOGV] += d * sc[SC_SHOCK_BP] * 1e-4
        sf[S_H] += sc[SC_SHOCK_ACTIVITY]
    return _wait(rs, a, sc[SC_SHOCK_RATE_H] / 3600.0)


# --------------------------------------------------------------------------- driver kernels
@njit(cache=True)
def init_nb(p, sc, o, lv, bk, free, tracked, ag_type, ag_f, qs, rs, hp_t, hp_a, hp_pos, sf, si, p0):
    """Reset book and agents for a run starting at price ``p0`` ticks, t = 0.

    Every non-predator agent first wakes at a uniform time in [0, 1) s (the
    clock at 0); predators after an exponential wait at their scenario rate.
    """
    nlev = lv.shape[2]
    book_reset_nb(o, lv, bk, free, tracked, p0 - nlev // 2)
    n = ag_type.shape[0]
    for a in range(n):
        for f in range(N_AF):
            ag_f[a, f] = 0.0
        for s in range(2):
            for k in range(MAXQ):
                qs[a, s, k, 0] = -1
                qs[a, s, k, 1] = -1
    sf[:] = 0.0
    sf[S_LOGV] = math.log(float(p0))
    sf[S_EMA] = float(p0)
    sf[S_MID_CLOCK] = float(p0)
    si[I_LAST_PX] = p0
    si[I_NEXT_UID] = 0
    wake = np.empty(n)
    for a in range(n):
        typ = ag_type[a]
        if typ == T_CLOCK:
            sf[S_H] = p[P_ACT_STD] * normal_nb(rs, a)
            hh = min(sf[S_H], 5.0)
            sf[S_HS] = p[P_SLOW_STD] * normal_nb(rs, a)
            _slow_set(p, sf)
            sf[S_SLOW_NEXT] = SLOW_DT
            sf[S_ACT] = math.exp(hh - 0.5 * p[P_ACT_STD] ** 2) * sf[S_RSLOW]
            wake[a] = 0.0
        elif typ == T_STRATEGY:
            wake[a] = INF
        elif typ == T_HUNTER:
            wake[a] = _wait(rs, a, sc[SC_HUNT_RATE_H] / 3600.0)
        elif typ == T_VACUUM:
            wake[a] = _wait(rs, a, sc[SC_VAC_RATE_H] / 3600.0)
        elif typ == T_SPOOFER:
            wake[a] = _wait(rs, a, sc[SC_SPOOF_RATE_H] / 3600.0)
        elif typ == T_SHOCK:
            wake[a] = _wait(rs, a, sc[SC_SHOCK_RATE_H] / 3600.0)
        else:
            wake[a] = uniform_nb(rs, a)
    heap_build_nb(hp_t, hp_a, hp_pos, wake)


@njit(**NO_NRT)
def _strategy_order(bookt, st, t):
    o, lv, bk, free, tracked, fb = bookt
    ag_f, sf, si, bars, msg_log, trade_log = st
    q = si[I_STRAT_PENDING]
    si[I_STRAT_PENDING] = 0
    a = si[I_STRAT_AGENT]
    mid0 = book_mid2_nb(bk, si[I_LAST_PX]) * 0.5
    side = BUY if q > 0 else SELL
    filled, notional = _market(bookt, st, t, a, side, abs(q))
    sgn = 1 if q > 0 else -1
    pos0 = si[I_STRAT_POS]
    pos1 = pos0 + sgn * filled
    si[I_STRAT_POS] = pos1
    flipped = pos0 != 0 and pos1 != 0 and (pos0 > 0) != (pos1 > 0)
    if filled > 0 and (abs(pos1) > abs(pos0) or flipped):
        sf[S_STRAT_ENTRY] = notional / filled
    if pos1 == 0:
        sf[S_STRAT_ENTRY] = 0.0
    sf[S_STRAT_FILL_QTY] = sgn * filled
    sf[S_STRAT_FILL_NOTIONAL] = notional
    sf[S_STRAT_MID_BEFORE] = mid0
    sf[S_STRAT_MID_AFTER] = book_mid2_nb(bk, si[I_LAST_PX]) * 0.5


@njit(**NO_NRT)
def _finalize_bars(bars, si, n_done):
    """Fill bars [I_N_FINAL, n_done) that saw no trade with the previous close."""
    b = si[I_N_FINAL]
    if b >= n_done:
        return
    if b == 0:
        prev = float(si[I_PX_BEFORE_BAR0] if si[I_BAR0_SEEN] != 0 else si[I_LAST_PX])
    else:
        prev = bars[b - 1, BAR_CLOSE]
    while b < n_done:
        if bars[b, BAR_COUNT] == 0.0:
            bars[b, BAR_OPEN] = prev
            bars[b, BAR_HIGH] = prev
            bars[b, BAR_LOW] = prev
            bars[b, BAR_CLOSE] = prev
        prev = bars[b, BAR_CLOSE]
        b += 1
    si[I_N_FINAL] = n_done


@njit(**NO_NRT)
def run_nb(t_end, p, sc, o, lv, bk, free, tracked, fb, shift_out, ag_type, ag_f, qs, rs,
           hp_t, hp_a, hp_pos, sf, si, bars, msg_log, trade_log):
    """Advance the simulation to ``t_end`` seconds.

    A pending strategy order (``si[I_STRAT_PENDING]`` lots, signed) is sent
    first, at the current time.  Bars whose minute has fully elapsed are
    finalised.  returns STATUS_DONE, or STATUS_LOG_FULL if recording is on and
    a log lacks ``si[I_HEADROOM]`` free rows (the caller grows it and calls
    again; no event was lost), or STATUS_BUDGET (and ``si[I_TRUNCATED] = 1``)
    when ``si[I_MAX_EVENTS] > 0`` and the book messages or the agent wakes so
    far reach it: checked before every wake, so the run stops between two
    events (the last wake may overshoot the cap by the messages it sent);
    bars are then *not* finalised (the caller does it).
    """
    bookt = (o, lv, bk, free, tracked, fb)
    st = (ag_f, sf, si, bars, msg_log, trade_log)
    head = si[I_HEADROOM]
    if si[I_STRAT_PENDING] != 0:
        if (si[I_RECORD_MSG] != 0 and si[I_N_MSG_REC] + head > msg_log.shape[0]) or (
            si[I_RECORD_TRADE] != 0 and si[I_N_TRADE_REC] + head > trade_log.shape[0]
        ):
            return STATUS_LOG_FULL
        _strategy_order(bookt, st, sf[S_T])
    else:
        sf[S_STRAT_FILL_QTY] = 0.0
        sf[S_STRAT_FILL_NOTIONAL] = 0.0
    cap = si[I_MAX_EVENTS]
    while hp_t[0] < t_end:
        if cap > 0 and (si[I_N_MSG] >= cap or si[I_N_WAKE] >= cap):
            si[I_TRUNCATED] = 1
            return STATUS_BUDGET
        if (si[I_RECORD_MSG] != 0 and si[I_N_MSG_REC] + head > msg_log.shape[0]) or (
            si[I_RECORD_TRADE] != 0 and si[I_N_TRADE_REC] + head > trade_log.shape[0]
        ):
            return STATUS_LOG_FULL
        a = hp_a[0]
        t = hp_t[0]
        sf[S_T] = t
        typ = ag_type[a]
        if typ == T_CLOCK:
            dt = _clock(p, bookt, st, rs, a, t, shift_out)
        elif typ == T_NOISE:
            dt = _noise(p, bookt, st, rs, a, t)
        elif typ == T_MM:
            dt = _mm(p, bookt, st, qs, rs, a, t)
        elif typ == T_MOM:
            dt = _momentum(p, bookt, st, rs, a, t)
        elif typ == T_VAL:
            dt = _value(p, bookt, st, rs, a, t)
        elif typ == T_HUNTER:
            dt = _hunter(p, sc, bookt, st, rs, a, t)
        elif typ == T_VACUUM:
            dt = _vacuum(p, sc, bookt, st, qs, rs, a, t)
        elif typ == T_SPOOFER:
            dt = _spoofer(p, sc, bookt, st, qs, rs, a, t)
        elif typ == T_SHOCK:
            dt = _shock(p, sc, st, rs, a, t)
        else:
            dt = INF
        si[I_N_WAKE] += 1
        heap_update_nb(hp_t, hp_a, hp_pos, a, t + dt)
    sf[S_T] = t_end
    n_done = int(t_end / 60.0 + 1e-9) - si[I_BAR_OFFSET]
    if n_done > bars.shape[0]:
        n_done = bars.shape[0]
    if n_done > 0:
        _finalize_bars(bars, si, n_done)
    return STATUS_DONE


# --------------------------------------------------------------------------- execution agent (forge.execution.lob_env)
@njit(**NO_NRT)
def strategy_limit_nb(o, lv, bk, free, tracked, fb, ag_f, sf, si, bars, msg_log, trade_log, side, price, qty):
    """The strategy agent sends a limit order now (``sf[S_T]``): it joins the back of its level's queue
    (untracked: background cancels never pick it).  returns (slot or -1, uid or -1); fills of a marketable
    part are booked to the agent's inventory/cash like every fill."""
    bookt = (o, lv, bk, free, tracked, fb)
    st = (ag_f, sf, si, bars, msg_log, trade_log)
    return _limit(bookt, st, sf[S_T], si[I_STRAT_AGENT], side, price, qty, False)


@njit(**NO_NRT)
def strategy_market_nb(o, lv, bk, free, tracked, fb, ag_f, sf, si, bars, msg_log, trade_log, side, qty):
    """The strategy agent sends a market order now. returns (lots filled, ticks*lots)."""
    bookt = (o, lv, bk, free, tracked, fb)
    st = (ag_f, sf, si, bars, msg_log, trade_log)
    return _market(bookt, st, sf[S_T], si[I_STRAT_AGENT], side, qty)


@njit(**NO_NRT)
def strategy_cancel_nb(o, lv, bk, free, tracked, fb, ag_f, sf, si, bars, msg_log, trade_log, oid, uid):
    """Cancel the strategy's order (slot ``oid`` holding ``uid``; a reused slot is left alone). returns lots."""
    if oid < 0 or o[oid, O_ALIVE] == 0 or o[oid, O_UID] != uid:
        return 0
    bookt = (o, lv, bk, free, tracked, fb)
    st = (ag_f, sf, si, bars, msg_log, trade_log)
    return _cancel(bookt, st, sf[S_T], si[I_STRAT_AGENT], oid)
