"""Stylized facts of 1-minute bars — the same functions on real and simulated bars.

Every fact is computed from gap-aware 1-minute log returns: a return exists
only between two bars exactly one minute apart (``forge.data.gaps``), so no
return, aggregated return, autocorrelation pair or lead-lag pair ever
bridges a missing minute.  Bars that did not trade (simulated or real)
repeat the previous close and contribute a zero return, as on Binance.

Facts (``FACT_NAMES``, all float64, dimensionless unless stated):

- ``ret_std_1m``: standard deviation of 1-minute log returns (log units per
  minute; 1e-4 = 1 bp).
- ``kurt_1m`` / ``kurt_5m`` / ``kurt_15m``: excess kurtosis (Fisher, biased
  moment estimator; Gaussian = 0) of non-overlapping k-minute log returns,
  k = 1, 5, 15, blocks aligned to the start of each gap-free segment.
- ``hill_tail``: Hill (1975) tail index of |1-minute return| from its top
  ``tail_frac`` (2.5 %, at least 10) order statistics; Student-t with ``df``
  degrees of freedom gives ≈ df; smaller = heavier tails.
- ``acf_r_k`` (k = 1..10): autocorrelation of 1-minute returns at lag k
  minutes (≈ 0 on liquid markets; slightly negative at lag 1 from bid-ask bounce).
- ``acf_absr_k`` (k = 1..30): autocorrelation of |1-minute return| at lag k
  (volatility clustering: positive and slowly decaying).
- ``vol_absr_corr``: Pearson correlation between a bar's volume and its
  |return| (same bar).
- ``leverage``: mean over k = 1..10 of corr(r_t, |r_{t+k}|) — the
  return–volatility (leverage) correlation, negative when falls raise
  future volatility.

Autocorrelations use the standard estimator: the global mean and variance
of all valid values, and the average cross-product over valid same-segment
pairs.  A fact that cannot be computed (too few returns, zero variance) is
NaN; callers decide how to treat it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from forge.data.gaps import bars_since_gap, segment_ids
from forge.data.schema import BAR_MS

ACF_R_LAGS = tuple(range(1, 11))
ACF_ABSR_LAGS = tuple(range(1, 31))
LEVERAGE_LAGS = tuple(range(1, 11))
KURT_SCALES = (1, 5, 15)
HILL_TAIL_FRAC = 0.025

FACT_NAMES: tuple[str, ...] = (
    ("ret_std_1m",)
    + tuple(f"kurt_{k}m" for k in KURT_SCALES)
    + ("hill_tail",)
    + tuple(f"acf_r_{k}" for k in ACF_R_LAGS)
    + tuple(f"acf_absr_{k}" for k in ACF_ABSR_LAGS)
    + ("vol_absr_corr", "leverage")
)
"""Ordered names of the fact vector (``facts_vector`` follows this order)."""

FACT_GROUPS: dict[str, str] = {
    n: ("acf_r" if n.startswith("acf_r_") else "acf_absr" if n.startswith("acf_absr_") else
        "kurt" if n.startswith("kurt_") else n)
    for n in FACT_NAMES
}
"""Fact name -> group (ret_std_1m, kurt, hill_tail, acf_r, acf_absr, vol_absr_corr, leverage)."""


# --------------------------------------------------------------------------- returns
def returns_and_segments(close: np.ndarray, open_time: np.ndarray | None = None,
                         segment: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gap-aware 1-minute log returns.

    close: (n,) float64 > 0, quote per base; open_time: (n,) int64 ms UTC,
    strictly increasing (None = no gaps); segment: (n,) int64 segment ids
    overriding ``open_time`` (contiguous bars share an id; used by the block
    bootstrap).
    returns (r, seg, pos): r (n,) float64 log return of bar i vs bar i-1
    (NaN at the first bar of every segment), seg (n,) int64 segment id,
    pos (n,) int64 bars since the segment start.
    raises ValueError on shape mismatch or non-positive / non-finite prices.
    """
    c = np.asarray(close, dtype=np.float64).reshape(-1)
    n = c.shape[0]
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        bad = int(np.flatnonzero(~np.isfinite(c) | (c <= 0))[0])
        raise ValueError(f"close[{bad}] = {c[bad]!r}: prices must be finite and > 0")
    if segment is not None:
        seg = np.asarray(segment, dtype=np.int64).reshape(-1)
        if seg.shape[0] != n:
            raise ValueError(f"segment: length {seg.shape[0]} differs from close length {n}")
        starts = np.ones(n, dtype=bool)
        starts[1:] = seg[1:] != seg[:-1]
        idx = np.arange(n, dtype=np.int64)
        pos = idx - np.maximum.accumulate(np.where(starts, idx, 0)) if n else idx
    elif open_time is not None:
        t = np.asarray(open_time, dtype=np.int64).reshape(-1)
        if t.shape[0] != n:
            raise ValueError(f"open_time: length {t.shape[0]} differs from close length {n}")
        seg = segment_ids(t, BAR_MS)
        pos = bars_since_gap(t, BAR_MS)
    else:
        seg = np.zeros(n, dtype=np.int64)
        pos = np.arange(n, dtype=np.int64)
    lc = np.log(c)
    r = np.full(n, np.nan)
    if n > 1:
        r[1:] = lc[1:] - lc[:-1]
    r[pos == 0] = np.nan
    return r, seg, pos


def aggregated_returns(close: np.ndarray, pos: np.ndarray, k: int) -> np.ndarray:
    """Non-overlapping k-minute log returns inside gap-free segments.

    close: (n,) float64; pos: (n,) int64 bars since segment start (from
    ``returns_and_segments``); k >= 1 minutes.  returns (m,) float64, one
    return per complete block [segment start + (j-1)k, segment start + jk].
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 minute, got {k}")
    lc = np.log(np.asarray(close, dtype=np.float64))
    i = np.flatnonzero((pos >= k) & (pos % k == 0))
    return lc[i] - lc[i - k]


# --------------------------------------------------------------------------- moments
def excess_kurtosis(x: np.ndarray) -> float:
    """Excess kurtosis m4/m2^2 - 3 of the finite values of x (NaN if < 4 values or zero variance)."""
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 4:
        return math.nan
    d = v - v.mean()
    m2 = float(np.mean(d * d))
    if m2 <= 0.0:
        return math.nan
    return float(np.mean(d ** 4) / (m2 * m2) - 3.0)


def hill_tail_index(x: np.ndarray, tail_frac: float = HILL_TAIL_FRAC, min_k: int = 10) -> float:
    """Hill estimator of the tail index alpha of |x|.

    x: (n,) float64 (NaN ignored; zeros excluded); uses the k = max(min_k,
    floor(tail_frac * n_nonzero)) largest |x|: alpha = 1 / mean(log(x_(i) /
    x_(k+1))), i = 1..k.  returns float (NaN if fewer than k+1 nonzero values).
    """
    a = np.abs(np.asarray(x, dtype=np.float64))
    a = a[np.isfinite(a) & (a > 0)]
    k = max(int(min_k), int(tail_frac * a.size))
    if a.size < k + 1:
        return math.nan
    top = np.sort(a)[::-1][: k + 1]
    h = float(np.mean(np.log(top[:k] / top[k])))
    return 1.0 / h if h > 0 else math.nan


def _pair_corr(x: np.ndarray, y: np.ndarray, seg: np.ndarray, lag: int, mx: float, my: float,
               sx: float, sy: float) -> float:
    """mean over valid same-segment pairs (x_t, y_{t+lag}) of (x-mx)(y-my) / (sx sy)."""
    n = x.shape[0]
    if lag >= n:
        return math.nan
    a = x[: n - lag]
    b = y[lag:]
    ok = np.isfinite(a) & np.isfinite(b) & (seg[: n - lag] == seg[lag:])
    if np.count_nonzero(ok) < 2:
        return math.nan
    return float(np.mean((a[ok] - mx) * (b[ok] - my)) / (sx * sy))


def acf(x: np.ndarray, seg: np.ndarray, lags: tuple[int, ...] | list[int]) -> np.ndarray:
    """Autocorrelation of x at ``lags`` over same-segment pairs.

    x: (n,) float64 (NaN = missing); seg: (n,) int64 segment ids; lags:
    positive ints (bars).  returns (len(lags),) float64 (NaN when undefined).
    """
    x = np.asarray(x, dtype=np.float64)
    v = x[np.isfinite(x)]
    if v.size < 3 or float(np.var(v)) <= 0.0:
        return np.full(len(lags), np.nan)
    m, s = float(v.mean()), float(v.std())
    return np.array([_pair_corr(x, x, seg, int(k), m, m, s, s) for k in lags], dtype=np.float64)


def lead_lag_corr(x: np.ndarray, y: np.ndarray, seg: np.ndarray, lags: tuple[int, ...] | list[int]) -> np.ndarray:
    """corr(x_t, y_{t+k}) for k in ``lags`` over same-segment pairs (global means / stds
    of the finite values). returns (len(lags),) float64 (NaN when undefined)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    vx, vy = x[np.isfinite(x)], y[np.isfinite(y)]
    if vx.size < 3 or vy.size < 3 or float(np.var(vx)) <= 0 or float(np.var(vy)) <= 0:
        return np.full(len(lags), np.nan)
    return np.array([_pair_corr(x, y, seg, int(k), float(vx.mean()), float(vy.mean()), float(vx.std()),
                                float(vy.std())) for k in lags], dtype=np.float64)


# --------------------------------------------------------------------------- facts
def _bars_arrays(bars: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = [c for c in ("open_time", "close", "volume") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars: missing column(s) {missing}; expected a bar frame (forge.data.schema.BAR_SCHEMA)")
    return (bars["close"].to_numpy().astype(np.float64), bars["volume"].to_numpy().astype(np.float64),
            bars["open_time"].to_numpy().astype(np.int64))


def stylized_facts(
    bars: pl.DataFrame | None = None,
    *,
    close: np.ndarray | None = None,
    volume: np.ndarray | None = None,
    open_time: np.ndarray | None = None,
    segment: np.ndarray | None = None,
) -> dict[str, float]:
    """Every fact of ``FACT_NAMES`` for one series of 1-minute bars.

    Either ``bars`` (a bar frame: uses open_time, close, volume) or arrays:
    close (n,) float64 > 0 quote per base; volume (n,) float64 base units
    (None: ``vol_absr_corr`` is NaN); open_time (n,) int64 ms UTC (None: no
    gaps); segment (n,) int64 ids overriding open_time.
    returns dict fact name -> float (insertion order = FACT_NAMES; NaN when
    undefined, e.g. constant prices).
    raises ValueError on missing columns, shape mismatch or bad prices.
    """
    if bars is not None:
        close, volume, open_time = _bars_arrays(bars)
    if close is None:
        raise ValueError("stylized_facts: pass a bar frame or close=...")
    c = np.asarray(close, dtype=np.float64).reshape(-1)
    r, seg, pos = returns_and_segments(c, open_time, segment)
    ok = np.isfinite(r)
    rv = r[ok]
    out: dict[str, float] = {}
    out["ret_std_1m"] = float(rv.std()) if rv.size >= 2 else math.nan
    for k in KURT_SCALES:
        out[f"kurt_{k}m"] = excess_kurtosis(rv if k == 1 else aggregated_returns(c, pos, k))
    out["hill_tail"] = hill_tail_index(rv)
    for k, v in zip(ACF_R_LAGS, acf(r, seg, ACF_R_LAGS)):
        out[f"acf_r_{k}"] = float(v)
    ar = np.abs(r)
    for k, v in zip(ACF_ABSR_LAGS, acf(ar, seg, ACF_ABSR_LAGS)):
        out[f"acf_absr_{k}"] = float(v)
    if volume is not None:
        vol = np.asarray(volume, dtype=np.float64).reshape(-1)
        if vol.shape[0] != c.shape[0]:
            raise ValueError(f"volume: length {vol.shape[0]} differs from close length {c.shape[0]}")
        out["vol_absr_corr"] = float(lead_lag_corr(np.where(ok, vol, np.nan), ar, seg, [0])[0])
    else:
        out["vol_absr_corr"] = math.nan
    lev = lead_lag_corr(r, ar, seg, LEVERAGE_LAGS)
    out["leverage"] = float(np.mean(lev)) if np.all(np.isfinite(lev)) else math.nan
    return out


def facts_vector(facts: dict[str, float]) -> np.ndarray:
    """(len(FACT_NAMES),) float64 in FACT_NAMES order. raises KeyError on a missing fact."""
    return np.array([float(facts[n]) for n in FACT_NAMES], dtype=np.float64)


def facts_from_vector(vec: np.ndarray) -> dict[str, float]:
    """Inverse of ``facts_vector``."""
    v = np.asarray(vec, dtype=np.float64).reshape(-1)
    if v.shape[0] != len(FACT_NAMES):
        raise ValueError(f"fact vector must have {len(FACT_NAMES)} entries, got {v.shape[0]}")
    return {n: float(x) for n, x in zip(FACT_NAMES, v)}


def block_bootstrap_facts(
    bars: pl.DataFrame,
    *,
    n_boot: int = 100,
    block_minutes: int = 240,
    seed: int = 0,
) -> np.ndarray:
    """Moving-block bootstrap of the fact vector of ``bars``.

    Draws ceil(n / block_minutes) blocks of ``block_minutes`` consecutive
    rows (start uniform over all valid starts, with replacement), concatenates
    them and recomputes every fact; each block is its own segment (and real
    gaps inside a block still split it), so no return joins two blocks.
    returns (n_boot, len(FACT_NAMES)) float64 replicate matrix.
    raises ValueError if bars has fewer than 2 * block_minutes rows.
    """
    from forge.core import rng

    close, volume, open_time = _bars_arrays(bars)
    n = close.shape[0]
    L = int(block_minutes)
    if L < 2 or n < 2 * L:
        raise ValueError(f"block bootstrap needs >= {2 * max(L, 2)} bars (2 blocks of {L}), got {n}")
    seg0 = segment_ids(open_time, BAR_MS)
    n_blocks = -(-n // L)
    g = rng.generator(seed, "sim", "facts", "bootstrap")
    out = np.empty((n_boot, len(FACT_NAMES)), dtype=np.float64)
    offs = np.arange(L, dtype=np.int64)
    for b in range(n_boot):
        starts = g.integers(0, n - L + 1, n_blocks)
        idx = (starts[:, None] + offs[None, :]).reshape(-1)
        blk = np.repeat(np.arange(n_blocks, dtype=np.int64), L)
        s0 = seg0[idx]
        # new segment whenever the block or the original segment changes
        change = np.ones(idx.size, dtype=bool)
        change[1:] = (blk[1:] != blk[:-1]) | (s0[1:] != s0[:-1])
        seg = np.cumsum(change) - 1
        out[b] = facts_vector(stylized_facts(close=close[idx], volume=volume[idx], segment=seg))
    return out


def facts_table(real: dict[str, float], sim: dict[str, float]) -> list[dict[str, Any]]:
    """Rows {fact, real, sim, ratio} (ratio = sim / real, NaN if real is 0) for reports."""
    rows = []
    for n in FACT_NAMES:
        a, b = float(real.get(n, math.nan)), float(sim.get(n, math.nan))
        rows.append({"fact": n, "real": a, "sim": b, "ratio": b / a if a != 0 and math.isfinite(a) else math.nan})
    return rows


LOG_FACTS: dict[str, float] = {"ret_std_1m": 0.0, "hill_tail": 0.0, **{f"kurt_{k}m": 3.0 for k in KURT_SCALES}}
"""Scale-free positive facts compared as log-ratios: name -> shift c, distance coordinate
log(value + c) (c = 3 turns excess kurtosis into kurtosis m4/m2^2 >= 1).  A kurtosis of 73 vs
34 is then as far apart as 34 vs 16 — a squared difference of raw kurtoses would let one
heavy-tailed window dominate the variance and make CMA-ES blind to kurtosis."""


def to_distance_space(vec: np.ndarray) -> np.ndarray:
    """(..., len(FACT_NAMES)) fact vectors -> the coordinates ``realism_distance`` compares:
    log(value + c) for ``LOG_FACTS`` (NaN if value + c <= 0), the value itself otherwise."""
    v = np.array(vec, dtype=np.float64, copy=True)
    for j, n in enumerate(FACT_NAMES):
        if n in LOG_FACTS:
            x = v[..., j] + LOG_FACTS[n]
            with np.errstate(invalid="ignore", divide="ignore"):
                v[..., j] = np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)
    return v


def from_distance_space(vec: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_distance_space` (natural units)."""
    v = np.array(vec, dtype=np.float64, copy=True)
    for j, n in enumerate(FACT_NAMES):
        if n in LOG_FACTS:
            v[..., j] = np.exp(v[..., j]) - LOG_FACTS[n]
    return v


def window_facts(bars: pl.DataFrame, window_minutes: int) -> np.ndarray:
    """Facts of ``bars`` cut into consecutive non-overlapping windows of ``window_minutes`` rows
    (the remainder is dropped; gaps inside a window still split returns, as everywhere).

    Gives the distribution of every fact *at the length of one simulation*, so a simulated
    market is compared like with like (sample kurtosis and autocorrelations depend on the
    sample length).  returns (n_windows, len(FACT_NAMES)) float64 in natural units.
    raises ValueError if fewer than 2 windows fit.
    """
    close, volume, open_time = _bars_arrays(bars)
    L = int(window_minutes)
    n_win = close.shape[0] // L if L > 0 else 0
    if L < 30 or n_win < 2:
        raise ValueError(f"window_facts needs >= 2 windows of >= 30 bars, got {close.shape[0]} bars / {L}")
    out = np.empty((n_win, len(FACT_NAMES)), dtype=np.float64)
    for w in range(n_win):
        sl = slice(w * L, (w + 1) * L)
        out[w] = facts_vector(stylized_facts(close=close[sl], volume=volume[sl], open_time=open_time[sl]))
    return out


def pooled_window_facts(bars: pl.DataFrame, window_minutes: int, n_windows: int, *, n_draws: int = 200,
                        seed: int = 0) -> np.ndarray:
    """Facts of ``n_windows`` distinct random real windows of ``window_minutes`` rows pooled
    into one sample (each window its own segment), repeated ``n_draws`` times.

    The real counterpart of ``forge.sim.calibrate.pooled_facts`` on ``n_windows`` independent
    simulations of ``window_minutes`` bars: same estimator, same sample structure, so pooled
    kurtosis and |r| autocorrelation include the between-window volatility dispersion in both.
    returns (n_draws, len(FACT_NAMES)) float64 in natural units.
    raises ValueError if fewer than n_windows + 1 windows fit.
    """
    from forge.core import rng

    close, volume, open_time = _bars_arrays(bars)
    L = int(window_minutes)
    n_win = close.shape[0] // L if L > 0 else 0
    k = int(n_windows)
    if L < 30 or k < 1 or n_win < k + 1:
        raise ValueError(f"pooled_window_facts needs > {k} windows of >= 30 bars, got {close.shape[0]} bars / {L}")
    seg0 = segment_ids(open_time[: n_win * L], BAR_MS)
    g = rng.generator(seed, "sim", "facts", "pooled_windows")
    offs = np.arange(L, dtype=np.int64)
    out = np.empty((int(n_draws), len(FACT_NAMES)), dtype=np.float64)
    for b in range(int(n_draws)):
        w = g.choice(n_win, size=k, replace=False)
        idx = (w[:, None] * L + offs[None, :]).reshape(-1)
        blk = np.repeat(np.arange(k, dtype=np.int64), L)
        s0 = seg0[idx]
        change = np.ones(idx.size, dtype=bool)
        change[1:] = (blk[1:] != blk[:-1]) | (s0[1:] != s0[:-1])
        out[b] = facts_vector(stylized_facts(close=close[idx], volume=volume[idx], segment=np.cumsum(change) - 1))
    return out


NAN_PENALTY = 25.0
"""Loss contribution (standardised units squared, i.e. 5 bootstrap sd) of a
simulated fact that is NaN while the reference is finite."""


def realism_distance(facts_sim: dict[str, float], facts_ref: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted squared distance between two fact dicts (the calibration loss,
    and the realism term bounding a scenario).

    D = sum over groups g (``FACT_GROUPS``) of (1 / |g|) * sum_{i in g}
    w_i * (T(sim_i) - T(ref_i))^2 in *distance space* T (``to_distance_space``:
    log-ratios for the scale-free facts ``LOG_FACTS`` — 1-minute std,
    kurtoses, Hill index —, plain differences for correlations), with w_i =
    1 / variance of T(fact) (``moment_weights``: over bootstrap replicates or
    real windows of the simulation's length), so each group (std, kurtosis,
    Hill, return ACF, |return| ACF, volume correlation, leverage) counts
    equally however many lags it has.  Facts whose reference or weight is
    missing / NaN are skipped; a NaN simulated fact (or one outside the log's
    domain) with a finite reference adds ``NAN_PENALTY`` * (1 / |g|).
    returns float >= 0 (dimensionless; ~ number of groups when every fact is
    one sd off).
    """
    sizes: dict[str, int] = {}
    for n in FACT_NAMES:
        sizes[FACT_GROUPS[n]] = sizes.get(FACT_GROUPS[n], 0) + 1
    ts = to_distance_space(np.array([float(facts_sim.get(n, math.nan)) for n in FACT_NAMES]))
    tr = to_distance_space(np.array([float(facts_ref.get(n, math.nan)) for n in FACT_NAMES]))
    d = 0.0
    for j, n in enumerate(FACT_NAMES):
        ref = float(tr[j])
        w = float(weights.get(n, math.nan))
        if not (math.isfinite(ref) and math.isfinite(w)) or w <= 0:
            continue
        s = float(ts[j])
        g = 1.0 / sizes[FACT_GROUPS[n]]
        d += g * (NAN_PENALTY if not math.isfinite(s) else w * (s - ref) ** 2)
    return d


def moment_weights(boot: np.ndarray, *, rel_floor: float = 1e-3) -> dict[str, float]:
    """Inverse-variance weights of the fact moments from replicates, in distance space.

    boot: (n_boot, len(FACT_NAMES)) float64 natural-unit replicates
    (``block_bootstrap_facts`` or ``window_facts``; NaN replicates ignored);
    variances are of ``to_distance_space`` of the replicates, the space
    ``realism_distance`` compares in.  The variance of each fact is floored at
    (rel_floor * median |replicate|)^2 + 1e-24 so a degenerate moment cannot
    get an infinite weight.  returns fact name -> weight (1 / variance;
    NaN when fewer than 2 finite replicates).
    """
    b = np.asarray(boot, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != len(FACT_NAMES):
        raise ValueError(f"boot must have shape (n_boot, {len(FACT_NAMES)}), got {b.shape}")
    b = to_distance_space(b)
    out: dict[str, float] = {}
    for j, n in enumerate(FACT_NAMES):
        col = b[:, j][np.isfinite(b[:, j])]
        if col.size < 2:
            out[n] = math.nan
            continue
        var = float(np.var(col, ddof=1))
        floor = (rel_floor * float(np.median(np.abs(col)))) ** 2 + 1e-24
        out[n] = 1.0 / max(var, floor)
    return out
