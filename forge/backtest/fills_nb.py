"""numba kernels of the kline fill model, the Corwin-Schultz half-spread and the execution policy loop.

User-facing description, units and sources: :mod:`forge.backtest.fills` (fill model) and
:mod:`forge.backtest.spread` (estimator).  The taker backtest (:mod:`forge.backtest.backtest_nb`) is a
separate kernel and is not touched by anything here.

numba's on-disk cache does not track dependencies across modules: after editing a kernel here or in
:mod:`forge.execution.policy_nb`, clear ``forge/backtest/__pycache__/fills_nb*.nbi/.nbc``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from forge.backtest.backtest_nb import STATUS_BAD_CLOSE, STATUS_BAD_OPEN, STATUS_OK, write_metrics_nb
from forge.backtest.costs import funding_payment_nb, is_funding_time_nb
from forge.execution.policy_nb import (
    A_INSIDE,
    A_MARKET,
    A_TOUCH,
    F_BIAS,
    F_FILLED,
    F_IMBALANCE,
    F_OFI,
    F_SPREAD,
    F_TAU,
    F_URGENCY,
    F_VOL,
    N_FEATURES,
    policy_action_nb,
)

CS_K = 3.0 - 2.0 * math.sqrt(2.0)
"""3 - 2 sqrt(2), the constant of Corwin & Schultz (2012) eq. (14)."""

STATUS_BAD_BAR = 3  # high < low, or a bar's range does not contain its open/close, or volume < 0


@njit(cache=True, inline="always", error_model="numpy")
def cs_two_bar_nb(h1, l1, h2, l2):
    """Corwin & Schultz (2012) two-bar spread estimate S (a fraction of price), negative estimates -> 0.

    beta = ln(h1/l1)^2 + ln(h2/l2)^2; gamma = ln(max(h1,h2)/min(l1,l2))^2;
    alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2));
    S = 2 (e^alpha - 1) / (1 + e^alpha); S < 0 -> 0 (the paper's rule for negative two-day estimates).
    """
    a1 = math.log(h1 / l1)
    a2 = math.log(h2 / l2)
    beta = a1 * a1 + a2 * a2
    g = math.log(max(h1, h2) / min(l1, l2))
    gamma = g * g
    alpha = (math.sqrt(2.0 * beta) - math.sqrt(beta)) / CS_K - math.sqrt(gamma / CS_K)
    ea = math.exp(alpha)
    s = 2.0 * (ea - 1.0) / (1.0 + ea)
    return max(0.0, s)


@njit(cache=True, error_model="numpy")
def half_spread_nb(high, low, close, window, tick, out):
    """Causal Corwin-Schultz half-spread (fraction of price) known at the close of each bar.

    high, low, close: (n,) float64 > 0; window: int >= 1, two-bar estimates averaged; tick: price tick
    (quote units, > 0); out: (n,) float64 written with max(mean of the last ``window`` two-bar estimates / 2,
    tick / close[t]).  Bar 0 has no pair: its value is the one-tick floor.  Gap adjustment of the paper
    (sec. II.B): when bar t's low is above the previous close, bar t's high and low are shifted down by the
    gap (up when its high is below the previous close) before the pair is formed.
    """
    n = high.shape[0]
    buf = np.zeros(window)
    total = 0.0
    k = 0
    for t in range(n):
        floor = tick / close[t]
        if t == 0:
            out[t] = floor
            continue
        h2 = high[t]
        l2 = low[t]
        pc = close[t - 1]
        if l2 > pc:
            d = l2 - pc
            h2 -= d
            l2 -= d
        elif h2 < pc:
            d = pc - h2
            h2 += d
            l2 += d
        s = cs_two_bar_nb(high[t - 1], low[t - 1], h2, l2)
        j = k % window
        total += s - buf[j]
        buf[j] = s
        k += 1
        m = min(window, k)
        hs = 0.5 * total / m
        out[t] = max(floor, hs)


@njit(cache=True, inline="always", error_model="numpy")
def floor_to_tick_nb(price, tick):
    """Largest multiple of ``tick`` <= price (a passive buy's price)."""
    return math.floor(price / tick + 1e-9) * tick


@njit(cache=True, inline="always", error_model="numpy")
def ceil_to_tick_nb(price, tick):
    """Smallest multiple of ``tick`` >= price (a passive sell's price)."""
    return math.ceil(price / tick - 1e-9) * tick


@njit(cache=True, inline="always", error_model="numpy")
def floor_to_lot_nb(qty, lot):
    """|qty| rounded down to a multiple of ``lot`` (base units, >= 0); lot <= 0 -> |qty| unrounded."""
    q = abs(qty)
    if lot <= 0.0:
        return q
    return math.floor(q / lot + 1e-9) * lot


@njit(cache=True, inline="always", error_model="numpy")
def limit_price_nb(ref, side, hs, offset, tick):
    """Passive limit price: ``ref * (1 - side * offset * hs)`` rounded to the tick away from the market
    (buy: down, sell: up).  offset 1 = at the estimated touch, 0.5 = inside the spread."""
    raw = ref * (1.0 - side * offset * hs)
    if side > 0:
        return floor_to_tick_nb(raw, tick)
    return ceil_to_tick_nb(raw, tick)


@njit(cache=True, inline="always", error_model="numpy")
def kline_limit_fill_nb(side, price, remaining, bar_low, bar_high, bar_volume, max_share, lot):
    """Base units a resting limit order fills in one bar (>= 0): it fills only if the bar trades *through*
    its price (buy: low < price; sell: high > price; touching is no fill), at most ``max_share`` of the
    bar's volume, rounded down to the lot, never more than ``remaining`` (base units, > 0)."""
    through = bar_low < price if side > 0 else bar_high > price
    if not through:
        return 0.0
    cap = floor_to_lot_nb(max_share * bar_volume, lot)
    return min(remaining, cap)


@njit(cache=True, inline="always", error_model="numpy")
def clean_target_nb(x):
    if not (x == x):
        return 0.0
    if x > 1.0:
        return 1.0
    if x < -1.0:
        return -1.0
    return x


@njit(cache=True, error_model="numpy")
def kline_exec_nb(
    open_, high, low, close, volume, open_time, position, hs,
    initial_capital, taker_rate, maker_rate, funding_rate, funding_interval_ms, target_equity, periods_per_year,
    tick, lot, min_notional, max_share, deadline_bars, vol_halflife, weights, fixed_action,
    out_metrics, equity_out, tr_bar, tr_time, tr_side, tr_units, tr_price, tr_fee, tr_maker, tr_decision,
):
    """Backtest ``position`` with execution intents, an execution policy and the kline fill model.

    open_, high, low, close, volume: (n,) float64 bars (quote/unit, base units); open_time: (n,) int64 ms;
    position: (n,) float64 target exposure decided at each close; hs: (n,) float64 half-spread (fraction)
    known at each close (``half_spread_nb``); rates are fractions (bps / 1e4); tick, lot, min_notional:
    venue rounding (quote, base, quote; lot 0 = none); max_share: share of a bar's volume a resting order
    may take; deadline_bars: bars an intent of zero urgency may rest before crossing (>= 0);
    vol_halflife: bars of the EWMA of squared close-to-close log returns (policy input);
    weights: (N_ACTIONS, N_FEATURES) float64 linear policy; fixed_action: -1 = use the policy, else that
    action every bar (A_MARKET = always-taker, A_TOUCH = maker-then-cross).
    Outputs: out_metrics (N_METRICS,), equity_out (n,), tr_* (capacity >= 2 * (n + 1)) fill columns.
    returns (status, bad_index, n_fills).
    """
    n = open_.shape[0]
    cash = initial_capital
    units = 0.0
    last_tgt = 0.0
    working = False
    rem = 0.0  # signed base units still to trade
    total = 0.0  # |units| of the intent
    side = 0.0
    age = 0
    dl = 0
    urg = 0.0
    dec_px = 0.0
    ruined = False
    ever_ruined = False
    prev_eq = initial_capital
    peak = initial_capital
    low_ratio = 1.0
    sum_r = 0.0
    sum_r2 = 0.0
    down2 = 0.0
    sum_eq = 0.0
    notional_sum = 0.0
    n_exposed = 0
    n_fills = 0
    n_trips = 0
    n_wins = 0
    entry_eq = 0.0
    n_below = 0
    close_peak = 0.0
    v2 = 0.0
    lam = 1.0 - math.exp(-math.log(2.0) / vol_halflife) if vol_halflife > 0 else 1.0
    x = np.zeros(max(N_FEATURES, weights.shape[1]))  # slots past F_OFI stay 0: not observable on klines
    check_funding = funding_rate != 0.0
    for t in range(n):
        o = open_[t]
        c = close[t]
        if not (0.0 < o < np.inf):
            return STATUS_BAD_OPEN, t, 0
        if not (0.0 < c < np.inf):
            return STATUS_BAD_CLOSE, t, 0
        if not (low[t] <= high[t] and volume[t] >= 0.0):
            return STATUS_BAD_BAR, t, 0
        if ruined:
            eq = 0.0
        else:
            if check_funding and units != 0.0 and is_funding_time_nb(open_time[t], funding_interval_ms):
                cash -= funding_payment_nb(units, o, funding_rate)
            if cash + units * o <= 0.0:
                if units != 0.0:
                    n_trips += 1
                ruined = True
                ever_ruined = True
                cash = 0.0
                units = 0.0
                working = False
                eq = 0.0
            else:
                if t >= 1:
                    tgt = clean_target_nb(position[t - 1])
                    if tgt != last_tgt:
                        # a new intent replaces the working one: decided at close t-1 with that equity
                        pc = close[t - 1]
                        eq_dec = cash + units * pc
                        want = tgt * eq_dec / pc
                        rem = want - units
                        total = abs(rem)
                        side = 1.0 if rem > 0 else -1.0
                        urg = 0.5 * abs(tgt - last_tgt) + 0.5 * abs(tgt)
                        urg = min(urg, 1.0)
                        dl = int(math.floor(deadline_bars * (1.0 - 0.5 * urg) + 0.5))
                        age = 0
                        dec_px = pc
                        working = total > 0.0
                        last_tgt = tgt
                    if working:
                        qty_left = floor_to_lot_nb(rem, lot)
                        ref = close[t - 1]
                        if qty_left <= 0.0 or qty_left * ref < min_notional:
                            working = False  # residual below one lot / the minimum notional: dropped
                        else:
                            left = dl - age
                            if left <= 0:
                                act = A_MARKET
                            elif fixed_action >= 0:
                                act = fixed_action
                            else:
                                x[F_BIAS] = 1.0
                                x[F_SPREAD] = 2.0 * hs[t - 1] * 1e3  # spread in units of 10 bp
                                x[F_VOL] = math.sqrt(v2) * 1e3  # per-bar vol in units of 10 bp
                                x[F_URGENCY] = urg
                                x[F_TAU] = left / dl if dl > 0 else 0.0
                                x[F_FILLED] = 1.0 - abs(rem) / total
                                x[F_IMBALANCE] = 0.0  # not observable on klines
                                x[F_OFI] = 0.0  # not observable on klines
                                act = policy_action_nb(weights, x)
                            filled = 0.0
                            px = 0.0
                            fee = 0.0
                            maker = 0
                            if act == A_MARKET:
                                px = o * (1.0 + side * hs[t - 1])
                                filled = qty_left
                                fee = taker_rate * (filled * px)
                            elif act == A_TOUCH or act == A_INSIDE:
                                off = 1.0 if act == A_TOUCH else 0.5
                                px = limit_price_nb(ref, side, hs[t - 1], off, tick)
                                filled = kline_limit_fill_nb(side, px, qty_left, low[t], high[t], volume[t],
                                                             max_share, lot)
                                fee = maker_rate * (filled * px)
                                maker = 1
                            age += 1
                            if filled > 0.0:
                                dq = side * filled
                                eq_before = cash + units * o
                                nu = units + dq
                                cash -= dq * px + fee
                                if units == 0.0:
                                    entry_eq = eq_before
                                elif nu == 0.0 or nu * units < 0.0 or abs(nu) < 1e-12 * abs(units):
                                    exit_eq = cash + nu * o
                                    n_trips += 1
                                    if exit_eq - entry_eq > 0.0:
                                        n_wins += 1
                                    entry_eq = exit_eq
                                tr_bar[n_fills] = t
                                tr_time[n_fills] = open_time[t]
                                tr_side[n_fills] = 1 if side > 0 else -1
                                tr_units[n_fills] = dq
                                tr_price[n_fills] = px
                                tr_fee[n_fills] = fee
                                tr_maker[n_fills] = maker
                                tr_decision[n_fills] = dec_px
                                n_fills += 1
                                notional_sum += filled * px
                                units = nu
                                rem -= dq
                                if act == A_MARKET:
                                    working = False
                eq = cash + units * c
                n_exposed += units != 0.0
                if eq <= 0.0:
                    if units != 0.0:
                        n_trips += 1
                    ruined = True
                    ever_ruined = True
                    cash = 0.0
                    units = 0.0
                    working = False
                    eq = 0.0
        if t >= 1:
            lr = math.log(close[t] / close[t - 1])
            v2 = (1.0 - lam) * v2 + lam * lr * lr
        r = eq / prev_eq - 1.0 if prev_eq > 0.0 else 0.0
        sum_r += r
        sum_r2 += r * r
        rd = min(r, 0.0)
        down2 += rd * rd
        sum_eq += eq
        peak = max(peak, eq)
        low_ratio = min(low_ratio, eq / peak)
        close_peak = max(close_peak, eq)
        n_below += close_peak < target_equity
        equity_out[t] = eq
        prev_eq = eq
    _finish_metrics_nb(out_metrics, n, initial_capital, prev_eq, periods_per_year, sum_r, sum_r2, down2,
                       sum_eq, notional_sum, n_exposed, n_fills, n_trips, n_wins, low_ratio, close_peak,
                       target_equity, ever_ruined, n_below, equity_out)
    return STATUS_OK, -1, n_fills


@njit(cache=True, error_model="numpy")
def _finish_metrics_nb(out, n, initial_capital, final, periods_per_year, sum_r, sum_r2, down2, sum_eq,
                       notional_sum, n_exposed, n_fills, n_trips, n_wins, low_ratio, close_peak,
                       target_equity, ever_ruined, n_below, equity):
    """The metrics vector (definitions of :mod:`forge.backtest.metrics`) from the streamed sums; the
    variance is recomputed in a second pass over the equity curve (two-pass, numerically safe)."""
    ratio = final / initial_capital
    mean = sum_r / n if n > 0 else 0.0
    std = np.nan
    if n >= 2:
        ss = 0.0
        prev = initial_capital
        for t in range(n):
            r = equity[t] / prev - 1.0 if prev > 0.0 else 0.0
            d = r - mean
            ss += d * d
            prev = equity[t]
        std = np.sqrt(ss / (n - 1))
    write_metrics_nb(out, n, ratio, final, periods_per_year, mean, std, down2, low_ratio, sum_eq, notional_sum,
                     n_exposed, n_fills, n_wins, n_trips, close_peak, target_equity, ever_ruined, n_below)
