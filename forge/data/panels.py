"""Synthetic panels: several instruments on one clock with a planted cross-asset edge, or none (issue 30).

:func:`lead_lag_panel` draws ``n_bars`` 1-minute bars for three instruments sharing a market factor:

    m_t ~ N(0, sigma_m^2)                               (the market factor every instrument carries)
    r_M,t = m_t + e_M,t                                  (a large cap, e.g. BTCUSDT spot)
    r_L,t = m_t + e_L,t                                  (the leader)
    r_F,t = m_t + (k/H) * sum_{j=lag..lag+H-1} e_L,t-j + e_F,t
                                                         (the follower: over the next H bars it catches up
                                                          with the leader's *idiosyncratic* move e_L, not m)

with e_* ~ N(0, sigma_e^2) independent, so the carrier is another symbol's idiosyncratic move: the follower's
return is uncorrelated with the lagged market factor.  Spreading the catch-up over H bars (default 15) makes
the signal persistent enough to trade through fees; H = 1 is the one-bar lead-lag (untradeable at taker fees:
it flips every bar).  The predictor the GP can build is the leader's H-bar return minus the market's
(``sub(ret_15__LEAD_spot, ret_15__MKT_spot)``).  ``k = 0`` is the null panel
(shared factor, no edge).  Gaps and late listings can be cut with :func:`drop_minutes` /
:func:`list_from`.  :func:`write_klines` writes a frame as a Binance kline CSV (spot without header,
USDⓈ-M futures with one) under ``DIR/spot|futures-um/SYM/1m/`` -- the layout the loader reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from forge.data.schema import BAR_MS, BAR_SCHEMA, KLINE_COLUMNS

__all__ = ["lead_lag_panel", "planted_panel", "PANEL_KINDS", "bars_from_returns", "drop_minutes", "list_from",
           "write_klines"]

PANEL_KINDS = ("lead_lag", "column", "clock", "regime")
"""Planted classes of :func:`planted_panel` (issue 30's four: a leader, a column, the clock, a regime)."""

T0_MS = 1_704_067_200_000
"""2024-01-01T00:00:00Z, the first bar of every generated panel."""


def bars_from_returns(r: np.ndarray, rng: np.random.Generator, *, price0: float = 100.0,
                      t0_ms: int = T0_MS, volume_mean: float = 50.0) -> pl.DataFrame:
    """A bar frame (BAR_SCHEMA) whose closes follow log returns ``r`` ((n,) float64): open = previous close,
    high/low a small random excursion beyond them, volume log-normal, count Poisson-ish, quote volume =
    volume * close, taker-buy shares uniform in [0.3, 0.7]."""
    n = r.shape[0]
    close = price0 * np.exp(np.cumsum(r))
    open_ = np.concatenate(([price0], close[:-1]))
    ex = np.abs(rng.normal(0.0, 2e-4, (2, n)))
    high = np.maximum(open_, close) * (1 + ex[0])
    low = np.minimum(open_, close) * (1 - ex[1])
    vol = volume_mean * rng.lognormal(0.0, 0.5, n)
    count = np.maximum(1, rng.poisson(vol * 4)).astype(np.int64)
    tb = vol * rng.uniform(0.3, 0.7, n)
    t = t0_ms + np.arange(n, dtype=np.int64) * BAR_MS
    return pl.DataFrame({
        "open_time": t, "open": open_, "high": high, "low": low, "close": close, "volume": vol,
        "close_time": t + BAR_MS - 1, "quote_volume": vol * close, "count": count, "taker_buy_volume": tb,
        "taker_buy_quote_volume": tb * close,
    }, schema=BAR_SCHEMA)


def lead_lag_panel(n_bars: int = 20 * 1440, *, seed: int = 0, strength: float = 2.0, lag: int = 1, horizon: int = 15,
                   sigma_m: float = 8e-4, sigma_e: float = 8e-4,
                   symbols: tuple[str, str, str] = ("MKTUSDT", "LEADUSDT", "FOLLUSDT")) -> dict[str, pl.DataFrame]:
    """{symbol: bar frame} of the (market, leader, follower) panel of the module docstring.

    strength: k, the share of the leader's idiosyncratic move the follower catches up with (0 = null panel);
    lag: bars (>= 1) before the catch-up starts; horizon: H, bars it is spread over (>= 1);
    sigma_m / sigma_e: per-bar std of the factor / idiosyncratic returns.  The follower's predictable part
    has per-bar std k*sigma_e/sqrt(H).  raises ValueError for lag < 1, horizon < 1 or n_bars < 2.
    """
    if lag < 1 or horizon < 1 or n_bars < 2:
        raise ValueError(f"lead_lag_panel needs lag >= 1, horizon >= 1 and n_bars >= 2, got lag={lag}, "
                         f"horizon={horizon}, n_bars={n_bars}")
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, sigma_m, n_bars)
    e = rng.normal(0.0, sigma_e, (3, n_bars))
    csum = np.concatenate(([0.0], np.cumsum(e[1])))
    idx = np.arange(n_bars)
    hi, lo = np.clip(idx - lag + 1, 0, n_bars), np.clip(idx - lag - horizon + 1, 0, n_bars)
    carried = (csum[hi] - csum[lo]) / horizon  # mean of e_L over bars t-lag-H+1 .. t-lag
    r = {symbols[0]: m + e[0], symbols[1]: m + e[1], symbols[2]: m + strength * carried + e[2]}
    return {s: bars_from_returns(x, rng, price0=100.0 * (i + 1)) for i, (s, x) in enumerate(r.items())}


def _ar1(rng: np.random.Generator, n: int, halflife: float) -> np.ndarray:
    """A unit-variance AR(1) series whose autocorrelation halves every ``halflife`` bars."""
    phi = 0.5 ** (1.0 / halflife)
    u = rng.normal(0.0, np.sqrt(1.0 - phi * phi), n)
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + u[i]
    return x


def planted_panel(kind: str, n_bars: int = 20 * 1440, *, seed: int = 0, strength: float = 1.0,
                  sigma_m: float = 8e-4, sigma_e: float = 8e-4, halflife: float = 30.0,
                  symbols: tuple[str, str, str] = ("MKTUSDT", "LEADUSDT", "FOLLUSDT")
                  ) -> tuple[dict[str, pl.DataFrame], dict[str, float]]:
    """({symbol: bar frame}, parameters) of a three-instrument panel sharing a market factor, with an edge of
    class ``kind`` planted in the last (traded) instrument F; ``strength`` 0 is the null panel of every kind.

    * ``lead_lag``: :func:`lead_lag_panel` (the carrier: the leader's idiosyncratic move).
    * ``column``: a latent AR(1) x (unit variance, ``halflife`` bars) scales F's **trade count** only
      (count ~ Poisson(4 v exp(0.6 x)), v the bar's volume; volume, quote volumes and taker shares do not carry
      it), and F's next return drifts by ``strength * 0.1 * sigma_e * x_{t-1}``.
    * ``clock``: F's return at a bar drifts by ``strength * 0.1 * sigma_e * sin(2 pi (minute of day) / 1440 +
      phase)``, phase ~ U(0, 2 pi) per seed (``parameters["phase"]``): an intraday seasonality, flat on average.
    * ``regime``: every instrument's returns (market and idiosyncratic) are scaled by a two-state Markov
      volatility regime (0.6x / 1.6x, mean stay 720 bars, ``parameters["vol_threshold"]`` = the geometric mean
      of the two regimes' per-bar std of F); a latent AR(1) x shows in F's taker-buy share (0.5 + 0.15 x,
      clipped to [0.05, 0.95]) and F's next return drifts by ``strength * 0.1 * sigma_e * g * x_{t-1}`` with g = +1
      in the calm regime and -1 in the volatile one: the same rule earns in one regime and loses in the other,
      so ungated it is about flat.

    The predictable part's per-bar std is ``strength * 0.1 * sigma_e`` (clock: / sqrt 2) for the last three.
    raises ValueError for an unknown kind or n_bars < 2.
    """
    if kind == "lead_lag":
        return lead_lag_panel(n_bars, seed=seed, strength=strength, sigma_m=sigma_m, sigma_e=sigma_e,
                              symbols=symbols), {}
    if kind not in PANEL_KINDS:
        raise ValueError(f"kind must be one of {PANEL_KINDS}, got {kind!r}")
    if n_bars < 2:
        raise ValueError(f"planted_panel needs n_bars >= 2, got {n_bars}")
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, sigma_m, n_bars)
    e = rng.normal(0.0, sigma_e, (3, n_bars))
    x = _ar1(rng, n_bars, halflife)
    x_prev = np.concatenate(([0.0], x[:-1]))
    a = strength * 0.1 * sigma_e
    params: dict[str, float] = {}
    scale = np.ones(n_bars)
    if kind == "clock":
        phase = float(rng.uniform(0.0, 2.0 * np.pi))
        params["phase"] = phase
        minute = (T0_MS // BAR_MS + np.arange(n_bars)) % 1440
        drift = a * np.sin(2.0 * np.pi * minute / 1440.0 + phase)
    elif kind == "regime":
        flips = rng.random(n_bars) < 1.0 / 720.0
        state = np.cumsum(flips) % 2  # 0 calm, 1 volatile; starts calm
        scale = np.where(state == 0, 0.6, 1.6)
        tot = float(np.hypot(sigma_m, sigma_e))
        params["vol_threshold"] = tot * float(np.sqrt(0.6 * 1.6))
        drift = a * np.where(state == 0, 1.0, -1.0) * x_prev
    else:  # column
        drift = a * x_prev
    r = [scale * (m + e[0]), scale * (m + e[1]), scale * (m + e[2]) + drift]
    frames = {s: bars_from_returns(v, rng, price0=100.0 * (i + 1)) for i, (s, v) in enumerate(zip(symbols, r))}
    f = frames[symbols[2]]
    if kind == "column" and strength > 0:
        vol = f["volume"].to_numpy()
        count = np.maximum(1, rng.poisson(vol * 4.0 * np.exp(0.6 * x))).astype(np.int64)
        frames[symbols[2]] = f.with_columns(pl.Series("count", count))
    elif kind == "regime" and strength > 0:
        vol, close = f["volume"].to_numpy(), f["close"].to_numpy()
        tb = vol * np.clip(0.5 + 0.15 * x, 0.05, 0.95)
        frames[symbols[2]] = f.with_columns(pl.Series("taker_buy_volume", tb),
                                            pl.Series("taker_buy_quote_volume", tb * close))
    return frames, params


def drop_minutes(bars: pl.DataFrame, start: int, stop: int) -> pl.DataFrame:
    """``bars`` without rows [start, stop) (a data gap)."""
    return pl.concat([bars.head(start), bars.slice(stop)])


def list_from(bars: pl.DataFrame, first: int) -> pl.DataFrame:
    """``bars`` from row ``first`` on (a symbol listed later)."""
    return bars.slice(first)


def write_klines(bars: pl.DataFrame, root: str | Path, symbol: str, market: str = "spot",
                 name: str = "2024-01") -> Path:
    """Write ``bars`` as ``root/<spot|futures-um>/<symbol>/1m/<symbol>-1m-<name>.csv`` in Binance's kline
    format (12 columns, ``ignore`` = 0; futures with a header row).  returns the file path."""
    folder = Path(root) / ("spot" if market == "spot" else "futures-um") / symbol / "1m"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{symbol}-1m-{name}.csv"
    df = bars.with_columns(pl.lit(0).alias("ignore")).select(KLINE_COLUMNS)
    df.write_csv(path, include_header=market != "spot", float_precision=10)
    return path
