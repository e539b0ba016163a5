"""Synthetic 1-minute markets with known truth: ``null``, ``drift`` and ``planted`` (an after-cost tradeable
edge), used by the gauntlet's honesty study (:mod:`loop.honesty`) and by the closed-loop demo.

Markets (1-minute bars on the embedded sample's clock and volume profile, tiled for longer markets):

- ``null``: a fat-tailed random walk with volatility clustering (GARCH(1,1), Student-t(4) innovations,
  the real sample's unconditional 1-minute volatility); the taker-buy share is independent of prices.
- ``drift``: the same plus a constant drift (buy-and-hold gains ``DRIFT_TOTAL`` over the market).
- ``heavy``: as ``null`` with heavier tails and longer volatility memory (Student-t(``HEAVY_DF``)
  innovations, GARCH alpha + beta = 0.98).
- ``seasonal``: as ``null`` with an intraday volatility cycle by the UTC clock (amplitude
  ``SEASON_AMPLITUDE``, peak at 14:00): a clock-driven position meets volatility that depends on the clock.
- ``planted``: a persistent latent state z_t (AR(1), phi ``LATENT_PHI``, unit variance) leaks into the
  taker-buy share (imbalance = ``LEAK`` z_t + ``LEAK_NOISE`` e_t, clipped) and shifts the next bar's mean
  return by ``strength * sigma_t * z_t``.

A market can be named wherever bar data is accepted (``forge evolve --data``, the Crucible's ``[replay]
data``, ``forge serve``) by a spec string ``synthetic:<kind>?seed=<int>&days=<int>&strength=<float>``
(:func:`parse_spec`); the same spec always gives the same bars.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qsl

import numpy as np
import polars as pl

from forge.core.errors import DataError
from forge.data.schema import BAR_COLUMNS, BAR_SCHEMA, SAMPLE_DIR

__all__ = ["synthetic_bars", "parse_spec", "is_spec", "bars_from_spec", "MARKETS", "NULL_MARKETS", "SCHEME",
           "null_positions", "NULL_POSITIONS"]

SCHEME = "synthetic:"

MARKETS = ("null", "drift", "planted", "heavy", "seasonal")
NULL_MARKETS = ("null", "drift", "heavy", "seasonal")
"""The markets with no predictability of the next return (the gauntlet's size suite)."""
HEAVY_DF, HEAVY_GARCH = 3, (0.02, 0.12, 0.86)  # Student-t(3) innovations; GARCH (omega share, alpha, beta)
SEASON_AMPLITUDE = 0.6  # intraday volatility: sigma_t x (1 + A cos(2 pi (hour - 14) / 24)), normalised
LATENT_PHI = 0.995
LEAK, LEAK_NOISE = 0.15, 0.25
DRIFT_TOTAL = 1.0  # log-return of the drift market over its length: buy-and-hold gains e - 1 = +172 %


def _sample() -> pl.DataFrame:
    files = sorted(SAMPLE_DIR.glob("*.parquet"))
    if not files:
        raise DataError("embedded sample missing from the installed package", file=SAMPLE_DIR)
    return pl.read_parquet(files[0]).select(BAR_COLUMNS).cast(BAR_SCHEMA)


def _clock(days: int | None) -> pl.DataFrame:
    sample = _sample()
    if days is None or days * 1440 == sample.height:
        return sample
    n_new = days * 1440
    reps = -(-n_new // sample.height)
    t0 = int(sample["open_time"][0])
    idx = np.arange(n_new)
    return pl.concat([sample] * reps).head(n_new).with_columns(
        pl.Series("open_time", t0 + idx * 60_000, dtype=sample.schema["open_time"]),
        pl.Series("close_time", t0 + idx * 60_000 + 59_999, dtype=sample.schema["close_time"]))


def synthetic_bars(seed: int, strength: float = 0.0, days: int | None = None, *,
                   kind: str | None = None) -> tuple[pl.DataFrame, dict[str, float]]:
    """A synthetic 1-minute market.

    seed: RNG seed; strength: planted coefficient (next-bar mean return = strength * sigma_t * z_t; 0 = no
    edge); days: length (None = the sample's 14 days); kind: one of ``MARKETS`` (default: planted when
    strength > 0, else null; only "planted" uses ``strength``).
    returns: (bars in the Binance kline schema, {"gross_sharpe": per-bar Sharpe of sign(z_t) trading before
    costs, "buy_and_hold": log-return of the market}). raises ValueError for an unknown kind.
    """
    kind = kind or ("planted" if strength > 0 else "null")
    if kind not in MARKETS:
        raise ValueError(f"kind must be one of {MARKETS}, got {kind!r}")
    sample = _clock(days)
    rng = np.random.default_rng(seed)
    n = sample.height
    vol = sample["volume"].to_numpy().astype(np.float64)
    z = np.empty(n)
    z[0] = rng.normal()
    e = rng.normal(0.0, math.sqrt(1 - LATENT_PHI ** 2), n)
    for t in range(1, n):
        z[t] = LATENT_PHI * z[t - 1] + e[t]
    if kind != "planted":
        strength = 0.0
    share = np.clip(LEAK * z + LEAK_NOISE * rng.normal(size=n), -0.98, 0.98)
    r0 = np.diff(np.log(_sample()["close"].to_numpy()))
    sig_bar = float(np.std(r0))
    omega, alpha, beta = sig_bar ** 2 * 0.05, 0.10, 0.85
    innov = rng.standard_t(4, n) / math.sqrt(2.0)  # unit variance
    if kind == "heavy":
        w, alpha, beta = HEAVY_GARCH
        omega = sig_bar ** 2 * w
        innov = rng.standard_t(HEAVY_DF, n) / math.sqrt(HEAVY_DF / (HEAVY_DF - 2.0))
    season = np.ones(n)
    if kind == "seasonal":
        hour = (sample["open_time"].to_numpy() // 3_600_000) % 24
        season = 1.0 + SEASON_AMPLITUDE * np.cos(2 * math.pi * (hour - 14) / 24.0)
        season /= math.sqrt(float(np.mean(season ** 2)))
    drift = DRIFT_TOTAL / n if kind == "drift" else 0.0
    h = np.empty(n)
    r = np.empty(n)
    h[0] = sig_bar ** 2
    r[0] = eps = 0.0
    for t in range(1, n):
        h[t] = omega + alpha * eps ** 2 + beta * h[t - 1]  # GARCH on the innovation only
        sd = math.sqrt(h[t])
        eps = sd * innov[t]
        r[t] = drift + season[t] * eps + strength * sd * z[t - 1]
    close = 60000.0 * np.exp(np.cumsum(r))
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    wig = np.abs(rng.normal(0, 0.3, (2, n))) * np.sqrt(h)
    high = np.maximum(open_, close) * np.exp(wig[0])
    low = np.minimum(open_, close) * np.exp(-wig[1])
    taker_buy = vol * (1.0 + share) / 2.0
    bars = sample.with_columns(
        pl.Series("open", open_), pl.Series("high", high), pl.Series("low", low), pl.Series("close", close),
        pl.Series("taker_buy_volume", taker_buy),
        pl.Series("quote_volume", vol * close), pl.Series("taker_buy_quote_volume", taker_buy * close),
    ).select(sample.columns)
    ideal = np.sign(z[:-1]) * r[1:]
    return bars, {"gross_sharpe": float(ideal.mean() / ideal.std()), "buy_and_hold": float(r.sum())}


def is_spec(path: object) -> bool:
    """True when ``path`` is a ``synthetic:`` market spec rather than a file path."""
    return str(path).startswith(SCHEME)


def parse_spec(spec: str) -> dict[str, object]:
    """Parse ``synthetic:<kind>?seed=<int>&days=<int>&strength=<float>`` into keyword arguments of
    :func:`synthetic_bars` (defaults: seed 0, days 14, strength 0).  raises DataError naming the spec and
    the field when the kind is unknown, a field is not a number, days < 1 or strength < 0."""
    body = spec[len(SCHEME):] if spec.startswith(SCHEME) else spec
    kind, _, query = body.partition("?")
    if kind not in MARKETS:
        raise DataError(f"synthetic market kind must be one of {MARKETS}, got {kind!r}", file=spec)
    out: dict[str, object] = {"kind": kind, "seed": 0, "days": 14, "strength": 0.0}
    for key, val in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in ("seed", "days", "strength"):
            raise DataError(f"unknown field {key!r}; expected seed, days, strength", file=spec)
        try:
            out[key] = float(val) if key == "strength" else int(val)
        except ValueError:
            raise DataError(f"field {key!r}: expected a number, got {val!r}", file=spec) from None
    if int(out["days"]) < 1 or float(out["strength"]) < 0 or int(out["seed"]) < 0:
        raise DataError("days must be >= 1, seed and strength >= 0", file=spec)
    if kind == "planted" and float(out["strength"]) == 0.0:
        raise DataError("a planted market needs strength > 0", file=spec)
    return out


def bars_from_spec(spec: str) -> pl.DataFrame:
    """The bars a ``synthetic:`` spec names (Binance kline schema, 1-minute). raises DataError."""
    kw = parse_spec(spec)
    bars, _ = synthetic_bars(int(kw["seed"]), float(kw["strength"]), int(kw["days"]), kind=str(kw["kind"]))
    return bars


NULL_POSITIONS = ("vol", "inv_vol", "trend", "clock")
"""Positions with no information about the next return (decided from past bars or the clock only)."""


def null_positions(bars: pl.DataFrame, halflife: int = 60) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Positions that know nothing about the next return, for the gauntlet's size suite.

    bars: 1-minute bars (oldest first); halflife: bars of the EWMA of squared log returns (sigma-hat, past
    bars only). returns: name -> (position (n,) float64 in [-1, 1] decided at each close, driver (n,) the
    series it is computed from):
    ``vol``: long in proportion to trailing volatility, sigma-hat / (2 median sigma-hat), capped at 1 (the
    position whose mean P&L beat its circular shifts ~16-29 % of the time at nominal 5 %);
    ``inv_vol``: long in inverse proportion (volatility-managed exposure, Moreira & Muir 2017);
    ``trend``: sign of the trailing 60-bar log return (time-series momentum);
    ``clock``: long 00:00-11:59 UTC, short otherwise.
    """
    close = bars["close"].to_numpy().astype(np.float64)
    r = np.concatenate([[0.0], np.diff(np.log(close))])
    lam = 0.5 ** (1.0 / halflife)
    v = np.empty_like(r)
    acc = float(np.mean(r[: min(len(r), 1440)] ** 2))
    for t in range(len(r)):
        acc = lam * acc + (1 - lam) * r[t] * r[t]
        v[t] = acc
    sig = np.sqrt(v)
    med = float(np.median(sig))
    trend = np.concatenate([np.zeros(60), np.log(close[60:] / close[:-60])])
    hour = (bars["open_time"].to_numpy() // 3_600_000) % 24
    return {"vol": (np.minimum(sig / (2.0 * med), 1.0), sig),
            "inv_vol": (np.minimum(0.5 * med / np.maximum(sig, 1e-12), 1.0), sig),
            "trend": (np.sign(trend), trend),
            "clock": (np.where(hour < 12, 1.0, -1.0), hour.astype(np.float64))}
