"""numba kernel of the ``alpha`` objective's period scores, for the surrogate's proxy screen.

:func:`forge.evolution.fitness.alpha_score` solves each period's OLS with ``numpy.linalg.lstsq`` (LAPACK's
SVD): exact to rounding, but ~45 µs of call overhead per period on 2,000 bars, and the proxy screen scores
~5,000 candidates x 4 periods a generation (``benchmarks/RESULTS.md``, "The proxy screen in one kernel").
This kernel computes the same estimator -- the intercept of r on [1, m, v] by least squares, the residual
sd with n - 3 degrees of freedom, the appraisal ratio with the residual floor -- from the period's first and
second moments in one pass (nine independent sums; the centred cross-products by subtracting n * mean^2,
which on per-bar returns, whose means are ~1e-2 of their sds, loses ~4 of 16 digits).  It agrees with
``alpha_score`` to 1.1e-10 of max(1, |score|) on a generation's proxy candidates (``tests/test_fitness_nb.py``),
not bit for bit, so only the proxy statistics use it: the full fitness, the hall of fame and the Gauntlet
keep ``lstsq``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["alpha_period_scores_nb"]


@njit(cache=True, error_model="numpy")
def alpha_period_scores_nb(r, m, v, edges, periods_per_year, resid_floor, out):
    """Period scores of :func:`forge.evolution.fitness.alpha_score`, one per period.

    r, m, v: (n,) float64 per-bar returns of the strategy, the market and the volatility-managed market;
    edges: (k + 1,) int64 period boundaries (``period_bounds``: period j is [edges[j], edges[j+1]));
    periods_per_year: bars per year; resid_floor: ``FitnessConfig.resid_sd_floor``;
    out: (k,) float64, written with each period's score -- 0.0 for fewer than 4 bars or a market whose sd is 0,
    as ``alpha_score``.  Collinear m and v (a singular centred 2 x 2 system) fall back to the
    regression on m alone: the same intercept and residuals as lstsq's minimum-norm solution, since the intercept
    is identified whenever m is not flat.  returns True, or False when a period holds a NaN or infinite value
    (its score is then not computed: ``alpha_score``'s ``nan_to_num`` and lstsq are the definition there).
    """
    ann = math.sqrt(periods_per_year)
    ok = True
    for j in range(edges.shape[0] - 1):
        a, b = edges[j], edges[j + 1]
        n = b - a
        out[j] = 0.0
        if n < 4:
            continue
        # one pass, nine independent accumulators
        sy = s1 = s2 = s11 = s12 = s22 = s1y = s2y = syy = 0.0
        finite = True
        for t in range(a, b):
            y, x1, x2 = r[t], m[t], v[t]
            if not (abs(y) < math.inf and abs(x1) < math.inf and abs(x2) < math.inf):
                finite = False
            sy += y
            s1 += x1
            s2 += x2
            s11 += x1 * x1
            s12 += x1 * x2
            s22 += x2 * x2
            s1y += x1 * y
            s2y += x2 * y
            syy += y * y
        if not finite:
            ok = False
            continue
        my, m1, m2 = sy / n, s1 / n, s2 / n
        c11 = s11 - n * m1 * m1
        c12 = s12 - n * m1 * m2
        c22 = s22 - n * m2 * m2
        c1y = s1y - n * m1 * my
        c2y = s2y - n * m2 * my
        cyy = syy - n * my * my
        sd_m = math.sqrt(c11 / (n - 1)) if c11 > 0.0 else 0.0
        if not (sd_m > 0.0 and sd_m < math.inf):
            continue
        det = c11 * c22 - c12 * c12
        if c22 > 0.0 and det > 1e-12 * c11 * c22:
            b1 = (c22 * c1y - c12 * c2y) / det
            b2 = (c11 * c2y - c12 * c1y) / det
        else:
            b1 = c1y / c11
            b2 = 0.0
        alpha = my - b1 * m1 - b2 * m2
        ee = cyy - b1 * c1y - b2 * c2y  # the residual sum of squares (>= 0 up to rounding)
        sd_e = math.sqrt(ee / (n - 3)) if ee > 0.0 else 0.0
        floor = resid_floor * sd_m
        out[j] = alpha / (floor if floor > sd_e else sd_e) * ann  # max(sd_e, floor) as Python's max
    return ok
