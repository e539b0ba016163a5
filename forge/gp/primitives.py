"""The typed primitive set: one table shared by DEAP, the genome format and the VM.

Types (DEAP needs classes): ``FSeries`` (float series, one value per bar),
``BSeries`` (boolean series stored as float64 0.0/1.0), ``Window`` (a window
length in bars, one of ``WINDOWS``), ``Const`` (an ephemeral float constant)
and ``Position`` (the root: target exposure in [-1, 1] decided at each bar's
close).

Every primitive declares its lookback: the bars of history *before* the
current bar that it reads, given its window argument.  A tree's lookback is
the sum along its deepest path (see ``forge.gp.genome``).

Each primitive has two implementations with identical semantics:
- a numpy function (``numpy_fn``) used by DEAP's ``gp.compile`` (the
  benchmark baseline and the reference the VM is tested against);
- an opcode of the numba VM (``forge.gp.vm_nb``).

Turnover-aware primitives (primitive-set version 2; each reads a finite window, so its lookback is exact):

- ``latch(B enter, B leave, W w) -> B``: set/reset latch with a w-bar memory -- 1 while the latest enter
  event in the last w bars is later than every leave event there (leave wins a tie);
- ``hysteresis(F x, C a, W w) -> B``: ``latch(x > |a|, x < -|a|, w)``, enter above |a|, leave below -|a|
  (``add_c`` on x moves the band: any enter level above the leave level is reachable);
- ``smooth(P p, W w) -> P``: position smoothing, the windowed EMA of the position (``ema``'s weights)
  rounded to quarter steps (``SMOOTH_STEP``), so it trades when the average crosses a step, not every bar;
- ``min_hold(P p, W w) -> P``: minimum holding period -- p's latest *confirmed* value (one p had held for
  w consecutive bars) if that confirmation is within the last 2w bars, else flat.  A non-flat output is
  therefore held for at least w bars, a change of p acts after w - 1 bars, and a blip of p shorter than w
  bars is ignored.  Lookback 3w - 2.

NaN semantics (both implementations): arithmetic propagates NaN; a windowed
statistic is NaN until ``w`` valid values fill its window and whenever a NaN
is inside the window; comparisons involving NaN are false (0.0); the root
maps NaN to 0 (flat).  Near-zero denominators: ``div`` returns 0 when
``|b| < 1e-12``; z-score and correlation return 0 when a window's standard
deviation is ``<= 1e-10·|mean|`` (a constant window up to rounding).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from forge.gp.opcodes import DIV_EPS, SMOOTH_STEP, STD_REL_EPS, Op


class FSeries:
    """GP type: (n,) float64 series."""


class BSeries:
    """GP type: (n,) boolean series stored as float64 0.0/1.0."""


class Window:
    """GP type: a window length in bars (terminal only)."""


class Const:
    """GP type: an ephemeral float constant (terminal only)."""


class Position:
    """GP type of the root: (n,) float64 target exposure in [-1, 1]."""


WINDOWS: tuple[int, ...] = (5, 10, 20, 60, 240)
"""Window lengths (bars) available to windowed primitives."""


TYPES = {"F": FSeries, "B": BSeries, "W": Window, "C": Const, "P": Position}


def random_constant() -> float:
    """Ephemeral constant: sign · 10**U(-4, 2), three significant digits.

    Spans 1-minute return scales (1e-4..1e-2), z-scores (~1) and
    oscillators (RSI ~ 50).  Draws from the global ``random`` (seeded by
    the run), as DEAP's ephemerals do.
    """
    mag = 10.0 ** random.uniform(-4.0, 2.0)
    sign = -1.0 if random.random() < 0.5 else 1.0
    return float(f"{sign * mag:.3g}")


# --------------------------------------------------------------------------- numpy reference


def _windows(x: np.ndarray, w: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Sliding windows (n-w+1, w) and an (n,) NaN-filled output to fill at [w-1:]."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] < w:
        return None, out
    return sliding_window_view(x, w), out


def _rolling(x: np.ndarray, w: int, stat: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    win, out = _windows(x, w)
    if win is None:
        return out
    bad = np.isnan(win).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = stat(win)
    out[w - 1:] = np.where(bad, np.nan, val)
    return out


def np_add(a, b):
    return a + b


def np_sub(a, b):
    return a - b


def np_mul(a, b):
    return a * b


def np_div(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(b) < DIV_EPS, 0.0, a / b)


def np_neg(a):
    return -a


def np_abs(a):
    return np.abs(a)


def np_slog(a):
    return np.sign(a) * np.log1p(np.abs(a))


def np_add_c(a, c):
    return a + c


def np_mul_c(a, c):
    return a * c


def np_lag(x, w):
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] > w:
        out[w:] = x[:-w]
    return out


def np_delta(x, w):
    return x - np_lag(x, w)


def np_ts_mean(x, w):
    return _rolling(x, w, lambda v: v.sum(axis=1) / w)


def _std(v: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    m = v.sum(axis=1) / w
    d = v - m[:, None]
    return m, np.sqrt((d * d).sum(axis=1) / w)


def np_ts_std(x, w):
    return _rolling(x, w, lambda v: _std(v, w)[1])


def np_ts_min(x, w):
    return _rolling(x, w, lambda v: v.min(axis=1))


def np_ts_max(x, w):
    return _rolling(x, w, lambda v: v.max(axis=1))


def np_ts_rank(x, w):
    return _rolling(x, w, lambda v: (v < v[:, -1:]).sum(axis=1) / (w - 1))


def np_ts_zscore(x, w):
    def z(v):
        m, s = _std(v, w)
        return np.where(s <= STD_REL_EPS * np.abs(m), 0.0, (v[:, -1] - m) / s)

    return _rolling(x, w, z)


def np_ts_corr(x, y, w):
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] < w:
        return out
    vx, vy = sliding_window_view(x, w), sliding_window_view(y, w)
    bad = np.isnan(vx).any(axis=1) | np.isnan(vy).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, sx = _std(vx, w)
        my, sy = _std(vy, w)
        cov = ((vx - mx[:, None]) * (vy - my[:, None])).sum(axis=1) / w
        flat = (sx <= STD_REL_EPS * np.abs(mx)) | (sy <= STD_REL_EPS * np.abs(my))
        val = np.where(flat, 0.0, cov / (sx * sy))
    out[w - 1:] = np.where(bad, np.nan, val)
    return out


def ema_weights(w: int) -> np.ndarray:
    """(w,) float64 weights of the windowed EMA, oldest first, summing to 1.

    alpha = 2 / (w + 1); weight of the value k bars back is (1 - alpha)**k.
    """
    alpha = 2.0 / (w + 1.0)
    k = np.arange(w - 1, -1, -1, dtype=np.float64)
    wts = (1.0 - alpha) ** k
    return wts / wts.sum()


def np_ema(x, w):
    wts = ema_weights(w)
    return _rolling(x, w, lambda v: v @ wts)


def np_gt(a, b):
    with np.errstate(invalid="ignore"):
        return (a > b).astype(np.float64)


def np_lt(a, b):
    with np.errstate(invalid="ignore"):
        return (a < b).astype(np.float64)


def np_and(a, b):
    return ((a > 0.5) & (b > 0.5)).astype(np.float64)


def np_or(a, b):
    return ((a > 0.5) | (b > 0.5)).astype(np.float64)


def np_not(a):
    return 1.0 - a


def np_cross_above(x, y):
    out = np.zeros(x.shape[0])
    if x.shape[0] > 1:
        with np.errstate(invalid="ignore"):
            out[1:] = ((x[1:] > y[1:]) & (x[:-1] <= y[:-1])).astype(np.float64)
    return out


def np_if_then_else(b, x, y):
    return np.where(b > 0.5, x, y)


def np_long_short(b_long, b_short):
    return b_long - b_short


def np_long_only(b):
    return b + 0.0


def np_short_only(b):
    return -b + 0.0


def np_pos_sign(x):
    return np.nan_to_num(np.sign(x), nan=0.0)


# ---- turnover-aware primitives (primitive-set version 2) ------------------------------------------------
# Each is a function of a finite window of its inputs (no state carried from before the window), so its
# declared lookback is exact: recomputing on the last ``lookback + 1`` bars gives the same value at the last
# bar, bit for bit for ``latch``/``hysteresis``/``min_hold`` (integer logic) and to rounding for ``smooth``
# (the VM's running EMA sums).  Before a full window exists they use the bars there are (``smooth``: NaN);
# ``forge.strategy.mask_warmup`` keeps the position flat until the tree's whole lookback is filled.


def _last_index(event: np.ndarray) -> np.ndarray:
    """(n,) int64: index of the latest True at or before each bar, -1 if none."""
    idx = np.where(event, np.arange(event.shape[0]), -1)
    return np.maximum.accumulate(idx) if idx.size else idx


def np_latch(enter, leave, w):
    """Set/reset latch with a w-bar memory: 1.0 at bar t when the latest ``enter`` event (> 0.5) within
    bars [t-w+1, t] is later than every ``leave`` event (> 0.5) in that window (leave wins a tie), else 0."""
    with np.errstate(invalid="ignore"):
        e = _last_index(enter > 0.5)
        lv = _last_index(leave > 0.5)
    t = np.arange(e.shape[0])
    return ((e >= t - w + 1) & (e > lv)).astype(np.float64)


def np_hysteresis(x, a, w):
    """``latch(x > |a|, x < -|a|, w)``: enter above |a|, leave below -|a| (shift x to move the band)."""
    thr = abs(a)
    with np.errstate(invalid="ignore"):
        return np_latch((x > thr).astype(np.float64), (x < -thr).astype(np.float64), w)


def np_smooth(p, w):
    """Position smoothing: the windowed EMA (``ema``) of a position, rounded to multiples of ``SMOOTH_STEP``."""
    return np.floor(np_ema(p, w) / SMOOTH_STEP + 0.5) * SMOOTH_STEP


def np_min_hold(p, w):
    """Minimum holding period: p at the latest bar s in [t-2w+1, t] at which p had been constant for the w
    bars [s-w+1, s] (a confirmed value); 0 (flat) when no bar of those 2w is confirmed."""
    n = p.shape[0]
    out = np.zeros(n)
    if n == 0:
        return out
    t = np.arange(n)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = ~(p[1:] == p[:-1])
    start = np.maximum.accumulate(np.where(new_run, t, 0))
    conf = _last_index(t - start + 1 >= w)
    ok = (conf >= 0) & (conf >= t - 2 * w + 1)
    out[ok] = p[conf[ok]]
    return out


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class PrimitiveSpec:
    """One primitive.

    name: token name in genomes; args/ret: type codes ("F", "B", "W", "C",
    "P"); opcode: VM opcode (``forge.gp.vm_nb``); numpy_fn: reference
    implementation; lookback: callable(window or 0) -> bars of history
    before the current bar the primitive reads; since: the primitive-set
    version that introduced it (a genome's ``pset_version`` is the highest
    ``since`` among its primitives, so older genomes keep their checksums).
    """

    name: str
    args: tuple[str, ...]
    ret: str
    opcode: int
    numpy_fn: Callable[..., np.ndarray]
    lookback: Callable[[int], int]
    since: int = 1


def _none(_w: int) -> int:
    return 0


def _one(_w: int) -> int:
    return 1


def _w(w: int) -> int:
    return w


def _w1(w: int) -> int:
    return w - 1


def _3w2(w: int) -> int:
    return 3 * w - 2


PRIMITIVES: tuple[PrimitiveSpec, ...] = (
    PrimitiveSpec("add", ("F", "F"), "F", Op.ADD, np_add, _none),
    PrimitiveSpec("sub", ("F", "F"), "F", Op.SUB, np_sub, _none),
    PrimitiveSpec("mul", ("F", "F"), "F", Op.MUL, np_mul, _none),
    PrimitiveSpec("div", ("F", "F"), "F", Op.DIV, np_div, _none),
    PrimitiveSpec("neg", ("F",), "F", Op.NEG, np_neg, _none),
    PrimitiveSpec("abs", ("F",), "F", Op.ABS, np_abs, _none),
    PrimitiveSpec("slog", ("F",), "F", Op.SLOG, np_slog, _none),
    PrimitiveSpec("add_c", ("F", "C"), "F", Op.ADD_C, np_add_c, _none),
    PrimitiveSpec("mul_c", ("F", "C"), "F", Op.MUL_C, np_mul_c, _none),
    PrimitiveSpec("lag", ("F", "W"), "F", Op.LAG, np_lag, _w),
    PrimitiveSpec("delta", ("F", "W"), "F", Op.DELTA, np_delta, _w),
    PrimitiveSpec("ts_mean", ("F", "W"), "F", Op.TS_MEAN, np_ts_mean, _w1),
    PrimitiveSpec("ts_std", ("F", "W"), "F", Op.TS_STD, np_ts_std, _w1),
    PrimitiveSpec("ts_min", ("F", "W"), "F", Op.TS_MIN, np_ts_min, _w1),
    PrimitiveSpec("ts_max", ("F", "W"), "F", Op.TS_MAX, np_ts_max, _w1),
    PrimitiveSpec("ts_rank", ("F", "W"), "F", Op.TS_RANK, np_ts_rank, _w1),
    PrimitiveSpec("ts_zscore", ("F", "W"), "F", Op.TS_ZSCORE, np_ts_zscore, _w1),
    PrimitiveSpec("ts_corr", ("F", "F", "W"), "F", Op.TS_CORR, np_ts_corr, _w1),
    PrimitiveSpec("ema", ("F", "W"), "F", Op.EMA, np_ema, _w1),
    PrimitiveSpec("if_then_else", ("B", "F", "F"), "F", Op.IF_THEN_ELSE, np_if_then_else, _none),
    PrimitiveSpec("gt", ("F", "F"), "B", Op.GT, np_gt, _none),
    PrimitiveSpec("lt", ("F", "F"), "B", Op.LT, np_lt, _none),
    PrimitiveSpec("gt_c", ("F", "C"), "B", Op.GT_C, np_gt, _none),
    PrimitiveSpec("lt_c", ("F", "C"), "B", Op.LT_C, np_lt, _none),
    PrimitiveSpec("and_", ("B", "B"), "B", Op.AND, np_and, _none),
    PrimitiveSpec("or_", ("B", "B"), "B", Op.OR, np_or, _none),
    PrimitiveSpec("not_", ("B",), "B", Op.NOT, np_not, _none),
    PrimitiveSpec("cross_above", ("F", "F"), "B", Op.CROSS_ABOVE, np_cross_above, _one),
    PrimitiveSpec("long_short", ("B", "B"), "P", Op.LONG_SHORT, np_long_short, _none),
    PrimitiveSpec("long_only", ("B",), "P", Op.LONG_ONLY, np_long_only, _none),
    PrimitiveSpec("short_only", ("B",), "P", Op.SHORT_ONLY, np_short_only, _none),
    PrimitiveSpec("pos_sign", ("F",), "P", Op.POS_SIGN, np_pos_sign, _none),
    # turnover-aware (forge-gp/2)
    PrimitiveSpec("latch", ("B", "B", "W"), "B", Op.LATCH, np_latch, _w1, since=2),
    PrimitiveSpec("hysteresis", ("F", "C", "W"), "B", Op.HYSTERESIS, np_hysteresis, _w1, since=2),
    PrimitiveSpec("smooth", ("P", "W"), "P", Op.SMOOTH, np_smooth, _w1, since=2),
    PrimitiveSpec("min_hold", ("P", "W"), "P", Op.MIN_HOLD, np_min_hold, _3w2, since=2),
)
"""Every primitive of primitive-set version ``PSET_VERSION``."""

BY_NAME: dict[str, PrimitiveSpec] = {p.name: p for p in PRIMITIVES}

PSET_VERSION = "forge-gp/2"
"""The newest primitive set.  Bumped whenever primitives are added (``PrimitiveSpec.since``) or a primitive's
name, types or semantics change.  Version 2 added ``latch``, ``hysteresis``, ``smooth`` and ``min_hold``;
every version-1 primitive is unchanged, and a genome that uses only version-1 primitives is still written as
``forge-gp/1`` (same checksum as before)."""


def pset_version_of(names) -> str:
    """The primitive-set version a genome using primitive ``names`` needs (``forge-gp/<max since>``)."""
    return f"forge-gp/{max((BY_NAME[n].since for n in names if n in BY_NAME), default=1)}"
