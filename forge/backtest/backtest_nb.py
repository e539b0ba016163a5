"""Numba kernel of the bar backtester: one streaming pass, fills, equity and metrics.

One core loop (``_backtest_core_nb``, inlined) serves two entry kernels:
``backtest_metrics_nb`` (fitness fast path, ``record`` a compile-time False so
nothing but the metrics is written) and ``backtest_record_nb`` (also equity,
returns, held position and the trade columns), so both report bit-identical
metrics.

Semantics (see ``forge.backtest`` for the user-facing description):

* ``position[t]`` is the target exposure decided at the close of bar t
  (fraction of equity, negative = short); NaN -> 0, clipped to [-1, 1].
  It fills at the open of bar t+1, only if it differs from ``position[t-1]``
  (``position[-1] = 0``).  The target of the last bar never fills.
* Costs come from :mod:`forge.backtest.costs` (the one fill/fee/funding model, shared with the
  Crucible's replay venue and shadow challenger).  At that open, with equity ``E = cash + units * open``, the trade side is
  the sign of ``target * E / open - units``; the fill price is
  ``open * (1 + s)`` for a buy and ``open * (1 - s)`` for a sell
  (``s = slippage_bps / 1e4``); new units are ``target * E / fill_price``;
  the taker fee is ``fee_rate * |traded units| * fill_price`` in quote
  currency.  If slippage would turn the trade around (the current units are
  already within the slippage band of the target) nothing is traded.
* Funding (``funding_rate != 0``): at a bar whose ``open_time`` is a multiple
  of ``funding_interval_ms`` (8 h: 00:00, 08:00, 16:00 UTC; the symbol's interval from its funding
  history, :func:`forge.backtest.costs.funding_interval_ms`) the units held into that open pay
  ``units * open * funding_rate`` (longs pay when the rate is positive);
  it is charged before that open's fill.
* Equity is marked to the close of every bar.  Ruin: when equity at an open
  (after funding) or at a close is <= 0 the position is flattened, equity is
  0 for the rest of the run and no further fills happen (ruin is not a fill).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from forge.backtest.costs import fill_price_nb, funding_payment_nb, is_funding_time_nb, taker_fee_nb

# status codes returned by the kernel (index of the offending bar in the second slot)
STATUS_OK = 0
STATUS_BAD_OPEN = 1
STATUS_BAD_CLOSE = 2

# slots of the metrics vector the kernel fills
M_TOTAL_RETURN = 0
M_CAGR = 1
M_SHARPE = 2
M_SORTINO = 3
M_CALMAR = 4
M_MAX_DRAWDOWN = 5
M_TURNOVER = 6
M_EXPOSURE = 7
M_N_TRADES = 8
M_WIN_RATE = 9
M_TTT_BARS = 10
M_N_BARS = 11
M_FINAL_EQUITY = 12
N_METRICS = 13


@njit(cache=True, inline="always", error_model="numpy")
def _clean_target(x):
    """NaN -> 0, clip to [-1, 1]."""
    if not (x == x):
        return 0.0
    if x > 1.0:
        return 1.0
    if x < -1.0:
        return -1.0
    return x


@njit(cache=True, error_model="numpy")
def count_target_changes_nb(position):
    """Number of bars i < n - 1 whose cleaned target (``_clean_target``) differs from bar i - 1's (0 before
    the first bar): an upper bound on a backtest's fills, the trade columns' capacity.  position: (n,) float64.
    Equals ``count_nonzero(diff(clip(nan_to_num(position[:-1]), -1, 1), prepend=0))`` without its four
    temporaries (~40 µs per call on 8,000 bars, the proxy screen's window)."""
    k = 0
    prev = 0.0
    for i in range(position.shape[0] - 1):
        x = _clean_target(position[i])
        if x != prev:
            k += 1
        prev = x
    return k


_BLOCK = 64
_BLOCK_MASK = _BLOCK - 1


@njit(cache=True, inline="always", error_model="numpy")
def _merge_block_nb(mean, m2, n_a, m, s1, s2):
    """Merge a block of m values into running (mean, M2) over n_a values (Chan et al. 1979).

    s1, s2: sum and sum of squares of the block's values minus ``mean``
    (the shifted-data algorithm: accurate because the shift is the running mean).
    returns (mean, M2) over n_a + m values.
    """
    block_mean = mean + s1 / m
    block_m2 = s2 - s1 * s1 / m
    if block_m2 < 0.0:
        block_m2 = 0.0
    delta = block_mean - mean
    n_ab = n_a + m
    return mean + delta * m / n_ab, m2 + block_m2 + delta * delta * n_a * m / n_ab


@njit(cache=True, inline="always", error_model="numpy")
def _backtest_core_nb(
    open_,
    close,
    open_time,
    position,
    initial_capital,
    fee_rate,
    slip,
    funding_rate,
    funding_interval_ms,
    target_equity,
    periods_per_year,
    record,
    out_metrics,
    equity_out,
    returns_out,
    held_out,
    tr_bar,
    tr_time,
    tr_side,
    tr_units,
    tr_price,
    tr_notional,
    tr_fee,
    tr_pos_before,
    tr_pos_after,
):
    """Run the backtest over all bars in one pass (inlined into the two entry kernels).

    open_, close: (n,) float64 quote currency per unit; open_time: (n,) int64 ms UTC;
    position: (n,) float64 target exposure decided at each close.
    initial_capital: quote currency; fee_rate, slip: fractions (bps / 1e4);
    funding_rate: fraction per funding event; funding_interval_ms: int64 ms between funding times
    (open times that are its multiples pay funding); target_equity: quote currency for TTT;
    periods_per_year: bars per year for annualisation.
    record: bool (a constant in each entry kernel); when True,
    equity_out/returns_out/held_out ((n,) float64) and the tr_* columns
    (length >= number of target changes) are written.
    out_metrics: (N_METRICS,) float64, filled with the metrics (slots M_*).

    returns (status, bad_index, n_fills): status STATUS_OK or STATUS_BAD_OPEN /
    STATUS_BAD_CLOSE with the first bar whose price is not finite and > 0
    (checked branch-free during the pass, located afterwards; on a bad
    status the outputs are meaningless and must be discarded).

    Speed notes: per bar the only branches are well predicted (fills are
    rare); mean/variance use shifted sums per block of 64 bars merged with
    Chan et al.'s update, drawdown a running peak and min(equity / peak).
    """
    n = open_.shape[0]
    inf = np.inf

    cash = initial_capital
    units = 0.0
    held = 0.0  # target exposure of the last fill (0 when flat)
    last_tgt = 0.0  # cleaned position[t-2]: change detection
    ruined = False
    ever_ruined = False
    prev_eq = initial_capital
    peak = initial_capital
    low_ratio = 1.0
    price_sum = 0.0
    price_min = inf
    mean = 0.0
    m2 = 0.0
    s1 = 0.0
    s2 = 0.0
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
    check_funding = funding_rate != 0.0

    for t in range(n):
        o = open_[t]
        c = close[t]
        # price check without a branch per bar: a NaN/inf poisons the sum, a price <= 0 the min
        price_sum += o + c
        price_min = min(price_min, min(o, c))
        held_bar = 0.0
        if ruined:
            eq = 0.0
        else:
            if check_funding and units != 0.0 and is_funding_time_nb(open_time[t], funding_interval_ms):
                cash -= funding_payment_nb(units, o, funding_rate)
            eq_o = cash + units * o
            if eq_o <= 0.0:
                # ruined at the open (gap or funding): flatten, round trip lost
                if units != 0.0:
                    n_trips += 1
                ruined = True
                ever_ruined = True
                cash = 0.0
                units = 0.0
                held = 0.0
                eq = 0.0
            else:
                if t >= 1:
                    tgt = _clean_target(position[t - 1])
                    if tgt != last_tgt:
                        want = tgt * eq_o / o
                        side = 0
                        if want > units:
                            side = 1
                        elif want < units:
                            side = -1
                        if side != 0:
                            fp = fill_price_nb(o, side, slip)
                            nu = tgt * eq_o / fp
                            dq = nu - units
                            if dq * side > 0.0:
                                adq = abs(dq)
                                notional = adq * fp
                                fee = taker_fee_nb(dq, fp, fee_rate)  # = fee_rate * notional, bit for bit
                                cash -= dq * fp + fee
                                # round-trip bookkeeping (costs split by leg size on a flip)
                                if units == 0.0:
                                    entry_eq = eq_o
                                elif nu == 0.0 or nu * units < 0.0:
                                    cost = dq * (fp - o) + fee
                                    exit_eq = eq_o - cost * abs(units) / adq
                                    n_trips += 1
                                    if exit_eq - entry_eq > 0.0:
                                        n_wins += 1
                                    entry_eq = exit_eq
                                if record:
                                    tr_bar[n_fills] = t
                                    tr_time[n_fills] = open_time[t]
                                    tr_side[n_fills] = side
                                    tr_units[n_fills] = dq
                                    tr_price[n_fills] = fp
                                    tr_notional[n_fills] = notional
                                    tr_fee[n_fills] = fee
                                    tr_pos_before[n_fills] = held
                                    tr_pos_after[n_fills] = tgt
                                n_fills += 1
                                notional_sum += notional
                                units = nu
                                held = tgt
                    last_tgt = tgt
                eq = cash + units * c
                held_bar = held
                n_exposed += units != 0.0
                if eq <= 0.0:
                    # ruined at the close: flatten, round trip lost
                    if units != 0.0:
                        n_trips += 1
                    ruined = True
                    ever_ruined = True
                    cash = 0.0
                    units = 0.0
                    held = 0.0
                    eq = 0.0

        r = eq / prev_eq - 1.0 if prev_eq > 0.0 else 0.0
        # shifted sums over a block of _BLOCK bars, merged into (mean, M2) per block
        d = r - mean
        s1 += d
        s2 += d * d
        if (t & _BLOCK_MASK) == _BLOCK_MASK:
            mean, m2 = _merge_block_nb(mean, m2, t + 1 - _BLOCK, _BLOCK, s1, s2)
            s1 = 0.0
            s2 = 0.0
        rd = min(r, 0.0)
        down2 += rd * rd
        sum_eq += eq
        peak = max(peak, eq)
        low_ratio = min(low_ratio, eq / peak)
        # the running max of closes is monotone: counting bars below target gives TTT
        close_peak = max(close_peak, eq)
        n_below += close_peak < target_equity
        if record:
            equity_out[t] = eq
            returns_out[t] = r
            held_out[t] = held_bar
        prev_eq = eq

    if not (0.0 < price_min and price_sum < inf):
        for t in range(n):
            if not (0.0 < open_[t] < inf):
                return STATUS_BAD_OPEN, t, 0
            if not (0.0 < close[t] < inf):
                return STATUS_BAD_CLOSE, t, 0
    rem = n & _BLOCK_MASK
    if rem > 0:
        mean, m2 = _merge_block_nb(mean, m2, n - rem, rem, s1, s2)
    final = prev_eq if n > 0 else initial_capital
    ratio = final / initial_capital
    std = np.sqrt(m2 / (n - 1)) if n >= 2 else np.nan
    write_metrics_nb(out_metrics, n, ratio, final, periods_per_year, mean, std, down2, low_ratio, sum_eq,
                     notional_sum, n_exposed, n_fills, n_wins, n_trips, close_peak, target_equity, ever_ruined,
                     n_below)
    return STATUS_OK, -1, n_fills


@njit(cache=True, inline="always", error_model="numpy")
def write_metrics_nb(out, n, ratio, final, periods_per_year, mean, std, down2, low_ratio, sum_eq, notional_sum,
                     n_exposed, n_fills, n_wins, n_trips, close_peak, target_equity, ever_ruined, n_below):
    """The metrics vector (``M_*`` slots; definitions in :mod:`forge.backtest.metrics`) from a backtest's
    streamed sums: the one place per-bar Sharpe, Sortino, drawdown, CAGR, turnover and TTT are computed,
    shared by the taker backtest and the kline fill model (``forge.backtest.fills_nb``).

    ratio: final / initial equity; mean, std: mean and sample sd (NaN when n < 2) of per-bar returns;
    down2: sum of squared negative returns; low_ratio: lowest equity / running peak; the rest are counts
    and sums as the callers stream them.  Writes ``out`` in place.
    """
    inf = np.inf
    mdd = 1.0 - low_ratio
    years = n / periods_per_year
    if ratio <= 0.0:
        cagr = -1.0
    elif years > 0.0:
        cagr = np.exp(np.log(ratio) / years) - 1.0
    else:
        cagr = np.nan
    ann = np.sqrt(periods_per_year)
    sharpe = np.nan
    if n >= 2:
        if std > 0.0:
            sharpe = mean / std * ann
    sortino = np.nan
    if n >= 1:
        dd = np.sqrt(down2 / n)
        if dd > 0.0:
            sortino = mean / dd * ann
        elif mean > 0.0:
            sortino = inf
    calmar = cagr / mdd if mdd > 0.0 else np.nan
    mean_eq = sum_eq / n if n > 0 else 0.0
    if mean_eq > 0.0:
        turnover = notional_sum / mean_eq
    elif notional_sum > 0.0:
        turnover = inf
    else:
        turnover = 0.0

    out[M_TOTAL_RETURN] = ratio - 1.0
    out[M_CAGR] = cagr
    out[M_SHARPE] = sharpe
    out[M_SORTINO] = sortino
    out[M_CALMAR] = calmar
    out[M_MAX_DRAWDOWN] = mdd
    out[M_TURNOVER] = turnover
    out[M_EXPOSURE] = n_exposed / n if n > 0 else 0.0
    out[M_N_TRADES] = n_fills
    out[M_WIN_RATE] = n_wins / n_trips if n_trips > 0 else np.nan
    out[M_TTT_BARS] = inf if (close_peak < target_equity or ever_ruined) else n_below + 1.0
    out[M_N_BARS] = n
    out[M_FINAL_EQUITY] = final


@njit(cache=True, error_model="numpy")
def backtest_metrics_nb(
    open_,
    close,
    open_time,
    position,
    initial_capital,
    fee_rate,
    slip,
    funding_rate,
    funding_interval_ms,
    target_equity,
    periods_per_year,
    out_metrics,
):
    """Metrics only (fitness fast path): the core with ``record`` a compile-time False.

    Arguments as :func:`_backtest_core_nb`; returns (status, bad_index, n_fills).
    """
    ef = np.empty(0, dtype=np.float64)
    ei = np.empty(0, dtype=np.int64)
    e8 = np.empty(0, dtype=np.int8)
    return _backtest_core_nb(
        open_,
        close,
        open_time,
        position,
        initial_capital,
        fee_rate,
        slip,
        funding_rate,
        funding_interval_ms,
        target_equity,
        periods_per_year,
        False,
        out_metrics,
        ef,
        ef,
        ef,
        ei,
        ei,
        e8,
        ef,
        ef,
        ef,
        ef,
        ef,
        ef,
    )


@njit(cache=True, error_model="numpy")
def backtest_record_nb(
    open_,
    close,
    open_time,
    position,
    initial_capital,
    fee_rate,
    slip,
    funding_rate,
    funding_interval_ms,
    target_equity,
    periods_per_year,
    out_metrics,
    equity_out,
    returns_out,
    held_out,
    tr_bar,
    tr_time,
    tr_side,
    tr_units,
    tr_price,
    tr_notional,
    tr_fee,
    tr_pos_before,
    tr_pos_after,
):
    """Metrics plus equity, returns, held position and trade columns (``record`` = True).

    Arguments as :func:`_backtest_core_nb`; returns (status, bad_index, n_fills).
    """
    return _backtest_core_nb(
        open_,
        close,
        open_time,
        position,
        initial_capital,
        fee_rate,
        slip,
        funding_rate,
        funding_interval_ms,
        target_equity,
        periods_per_year,
        True,
        out_metrics,
        equity_out,
        returns_out,
        held_out,
        tr_bar,
        tr_time,
        tr_side,
        tr_units,
        tr_price,
        tr_notional,
        tr_fee,
        tr_pos_before,
        tr_pos_after,
    )
