"""The one cost model: fill price, taker fee and perpetual funding of a market order.

Used by the backtester (:mod:`forge.backtest.backtest_nb`, the numba ``*_nb`` versions, inlined), the
Crucible's replay venue (:mod:`crucible.venues.replay`), the shadow challenger (:mod:`crucible.hotswap`)
and the slot ledgers' funding (:mod:`crucible.slots`) -- the Python versions.  Each Python function and its
``_nb`` twin evaluate the same expression in the same order, so they give bit-identical float64 results
(tested in ``tests/test_backtest.py``).

Conventions (units: prices in quote currency per base unit, quantities in signed base units, money in
quote currency, USDT):

* a market order decided at the close of bar t fills at the **open of bar t+1**;
* fill price = ``open * (1 + s)`` for a buy, ``open * (1 - s)`` for a sell, ``s = slippage_bps / 1e4``;
* taker fee = ``fee_rate * (|qty| * price)`` with ``fee_rate = taker_fee_bps / 1e4`` (a fraction of the
  traded notional);
* funding of a linear perpetual: at every funding time (open times that are multiples of the symbol's
  funding interval, UTC: 8 h by default, ``FUNDING_PERIOD_MS``; 4 h or 1 h for many Binance perpetuals, read
  from the funding history by :func:`funding_interval_ms`) the position held into that open pays
  ``units * price * rate`` (longs pay when the rate is positive, shorts receive), ``price`` the bar's open
  (or the venue's mark price live) and ``rate`` the rate per funding event,
  :func:`funding_rate_per_event` of the preset's rate per 8 h (the same cost per day whatever the interval:
  Binance's interest component is 0.03 %/day split over the day's settlements).

Cost presets (a Crucible slot's ``costs`` field): ``"spot"`` (no funding) and ``"futures"`` (linear
perpetual: funding at ``funding_rate_8h``).

numba's on-disk cache does not track dependencies: after editing an ``_nb`` function here, clear
``forge/backtest/__pycache__/backtest_nb*.nbi/.nbc`` so the backtester recompiles with it.
"""

from __future__ import annotations

from numba import njit

__all__ = ["FUNDING_PERIOD_MS", "INSTRUMENTS", "check_funding_interval_ms", "funding_interval_ms",
           "funding_rate_per_event", "fill_price", "taker_fee", "funding_payment", "is_funding_time",
           "fill_price_nb", "taker_fee_nb", "funding_payment_nb", "is_funding_time_nb", "bps"]

FUNDING_PERIOD_MS = 28_800_000
"""8 hours in milliseconds: funding times are ``open_time % FUNDING_PERIOD_MS == 0`` (00:00, 08:00, 16:00 UTC)."""

INSTRUMENTS = ("spot", "futures")
"""Instrument kinds the cost model knows: spot (no funding) and linear perpetual futures (funding every 8 h);
the Crucible's per-slot ``costs`` preset.  (The Forge's fee schedules by market are
:data:`forge.core.runconfig.COST_PRESETS`.)"""


def funding_interval_ms(funding_times_ms, default_ms: int = FUNDING_PERIOD_MS) -> int:
    """The funding interval of a perpetual from its funding history.

    funding_times_ms: funding (settlement) times, ms UTC, any order (Binance's ``fundingRate`` archive column
    ``calc_time``; a few ms of jitter are tolerated).  returns: int ms, the most frequent step between
    consecutive distinct times rounded to a whole hour, over the **latest** 30 steps (Binance has moved
    symbols from 8 h to 4 h; the most recent regime applies).  Steps that round to 0 h (jittered duplicates)
    or exceed 24 h (a missing file) are not intervals and are skipped; ``default_ms`` (8 h) when no step is
    left (fewer than two times).  Ties go to the longer interval.
    """
    import numpy as np

    t = np.unique(np.asarray(funding_times_ms, dtype=np.int64))
    hours = np.rint(np.diff(t) / 3_600_000.0).astype(np.int64) if t.size > 1 else np.zeros(0, np.int64)
    hours = hours[(hours >= 1) & (hours <= 24)][-30:]
    if hours.size == 0:
        return int(default_ms)
    vals, counts = np.unique(hours, return_counts=True)
    return int(vals[::-1][np.argmax(counts[::-1])]) * 3_600_000


def funding_rate_per_event(rate_8h: float, interval_ms: int = FUNDING_PERIOD_MS) -> float:
    """The funding rate charged at each settlement of a perpetual funding every ``interval_ms`` (ms, > 0) when
    its rate is quoted per 8 h: ``rate_8h * interval_ms / 8 h`` (fraction), the same funding per day at any
    interval.  raises ValueError for an interval that is not a whole number of hours in [1 h, 24 h]."""
    check_funding_interval_ms(interval_ms)
    return rate_8h * (interval_ms / FUNDING_PERIOD_MS)


def check_funding_interval_ms(interval_ms: int) -> int:
    """``interval_ms`` as an int if it is a whole number of hours in [1 h, 24 h] (the intervals exchanges
    use: 1, 2, 4, 8 h), else ValueError naming the value."""
    iv = int(interval_ms)
    if iv != interval_ms or iv % 3_600_000 or not 3_600_000 <= iv <= 86_400_000:
        raise ValueError(f"funding interval must be a whole number of hours in [1, 24] (in ms), got {interval_ms!r}")
    return iv


def bps(x: float) -> float:
    """Basis points -> fraction (``x / 1e4``), the one conversion every caller uses."""
    return x / 1e4


def fill_price(open_: float, side: float, slip: float) -> float:
    """Fill price of a market order at ``open_`` (quote/unit): ``open_ * (1 + slip)`` when ``side > 0`` (buy),
    ``open_ * (1 - slip)`` otherwise (sell).  side: sign of the traded quantity; slip: fraction (bps / 1e4)."""
    return open_ * (1.0 + slip) if side > 0 else open_ * (1.0 - slip)


def taker_fee(qty: float, price: float, fee_rate: float) -> float:
    """Taker fee in quote currency: ``fee_rate * (|qty| * price)``; qty: base units (any sign); fee_rate: fraction."""
    return fee_rate * (abs(qty) * price)


def funding_payment(units: float, price: float, rate_8h: float) -> float:
    """Funding paid (quote currency; negative = received) by ``units`` held at a funding time:
    ``units * price * rate_8h`` (longs pay a positive rate)."""
    return units * price * rate_8h


def is_funding_time(open_time_ms: int, interval_ms: int = FUNDING_PERIOD_MS) -> bool:
    """True when a bar opening at ``open_time_ms`` (ms UTC) is a funding time: a multiple of the funding
    interval ``interval_ms`` (default 8 h; funding times are aligned to 00:00 UTC at every interval)."""
    return open_time_ms % interval_ms == 0


@njit(cache=True, inline="always", error_model="numpy")
def fill_price_nb(open_, side, slip):
    """numba twin of :func:`fill_price` (inlined into kernels)."""
    if side > 0:
        return open_ * (1.0 + slip)
    return open_ * (1.0 - slip)


@njit(cache=True, inline="always", error_model="numpy")
def taker_fee_nb(qty, price, fee_rate):
    """numba twin of :func:`taker_fee`."""
    return fee_rate * (abs(qty) * price)


@njit(cache=True, inline="always", error_model="numpy")
def funding_payment_nb(units, price, rate_8h):
    """numba twin of :func:`funding_payment`."""
    return units * price * rate_8h


@njit(cache=True, inline="always", error_model="numpy")
def is_funding_time_nb(open_time_ms, interval_ms):
    """numba twin of :func:`is_funding_time` (``interval_ms`` passed explicitly)."""
    return open_time_ms % interval_ms == 0
