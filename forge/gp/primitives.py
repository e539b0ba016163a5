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

from forge.gp.opcodes import DIV_EPS, STD_REL_EPS, Op


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


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class PrimitiveSpec:
    """One primitive.

    name: token name in genomes; args/ret: type codes ("F", "B", "W", "C",
    "P"); opcode: VM opcode (``forge.gp.vm_nb``); numpy_fn: reference
    implementation; lookback: callable(window or 0) -> bars of history
    before the current bar the primitive reads.
    """

    name: str
    args: tuple[str, ...]
    ret: str
    opcode: int
    numpy_fn: Callable[..., np.ndarray]
    lookback: Callable[[int], int]


def _none(_w: int) -> int:
    return 0


def _one(_w: int) -> int:
    return 1


def _w(w: int) -> int:
    return w


def _w1(w: int) -> int:
    return w - 1


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
)
"""Every primitive of primitive-set version ``PSET_VERSION``."""

BY_NAME: dict[str, PrimitiveSpec] = {p.name: p for p in PRIMITIVES}

PSET_VERSION = "forge-gp/1"
"""Bumped whenever a primitive's name, types or semantics change."""
