"""CWO — continuous weight optimisation of capital among live slots.

Exponentiated gradient (multiplicative weights, Helmbold et al. 1998):
``w_i <- w_i * exp(eta * g_i)`` with score ``g_i = sharpe_i - drawdown_penalty * dd_i``
(per-bar Sharpe of the slot's recent equity curve, current drawdown as a
fraction), then projection onto ``min_weight <= w_i <= max_weight`` with
``sum w = 1`` (``sum w < 1`` when ``n * max_weight < 1``: the rest stays as
unallocated cash), then the turnover ``sum |w_new - w_old|`` is capped at
``max_turnover`` by moving only part of the way (a convex combination, so
bounds and the sum are preserved).  Killed slots get weight 0 (that move is
forced and not turnover-capped).  Reallocation is bookkeeping in the
Crucible's ledger, never an exchange transfer.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

from crucible.config import CwoConfig
from forge.backtest.metrics_nb import drawdown_from_peak_nb, sharpe_per_bar_of_equity_nb

__all__ = ["regime_tilt", "eg_weights", "project_bounded_simplex", "reweight", "scores_nb", "slot_score", "cwo_step_nb",
           "cwo_step_marks_nb"]


@njit(cache=True)
def _project_nb(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    n = v.shape[0]
    if n * hi <= 1.0:
        return np.full(n, hi)
    if n * lo >= 1.0:
        return np.full(n, 1.0 / n)
    a, b = lo - v.max() - 1.0, hi - v.min() + 1.0
    for _ in range(60):  # bisection on the shift tau (the clipped sum is monotone in tau)
        m = 0.5 * (a + b)
        tot = 0.0
        for i in range(n):
            tot += min(max(v[i] + m, lo), hi)
        if tot > 1.0:
            b = m
        else:
            a = m
    w = np.empty(n)
    tau = 0.5 * (a + b)
    tot = 0.0
    for i in range(n):
        w[i] = min(max(v[i] + tau, lo), hi)
        tot += w[i]
    if abs(tot - 1.0) < 1e-9:
        w /= tot
    return w


@njit(cache=True)
def _eg_step_nb(old: np.ndarray, g: np.ndarray, lo: float, hi: float, eta: float,
                max_turnover: float) -> np.ndarray:
    n = old.shape[0]
    if old.sum() <= 0:
        old = np.full(n, 1.0 / n)
    # forced part: the old weights restricted to the live slots, projected onto the constraints
    base = _project_nb(old / old.sum(), lo, hi)
    gg = np.empty(n)
    for i in range(n):
        x = 0.0 if np.isnan(g[i]) else g[i]
        gg[i] = min(max(x, -50.0), 50.0)
    m = base * np.exp(eta * (gg - gg.max()))
    tot = m.sum()
    m = m / tot if tot > 0 else np.full(n, 1.0 / n)
    target = _project_nb(m, lo, hi)
    turnover = np.abs(target - base).sum()
    if turnover > max_turnover:
        target = base + (target - base) * (max_turnover / turnover)
    return target


def project_bounded_simplex(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Weights ``clip(v + tau, lo, hi)`` with tau chosen so they sum to 1 (Euclidean projection).

    v: (n,) float64; 0 <= lo <= hi <= 1.  If ``n * hi <= 1`` every weight is hi; if ``n * lo >= 1``
    every weight is 1/n.  returns (n,) float64.
    """
    v = np.ascontiguousarray(v, dtype=np.float64)
    if v.shape[0] == 0:
        return v.copy()
    return _project_nb(v, float(lo), float(hi))


def slot_score(equity_curve: np.ndarray, drawdown_penalty: float) -> float:
    """Risk-adjusted score: per-bar Sharpe minus ``drawdown_penalty`` x current drawdown (fraction)."""
    e = np.asarray(equity_curve, dtype=np.float64)
    return float(sharpe_per_bar_of_equity_nb(e) - drawdown_penalty * drawdown_from_peak_nb(e))


@njit(cache=True)
def scores_nb(marks: np.ndarray, drawdown_penalty: float) -> np.ndarray:
    """Per-row :func:`slot_score` of a (n, m) float64 array of equity marks (newest last)."""
    out = np.empty(marks.shape[0])
    for i in range(marks.shape[0]):
        e = np.ascontiguousarray(marks[i])
        out[i] = sharpe_per_bar_of_equity_nb(e) - drawdown_penalty * drawdown_from_peak_nb(e)
    return out


@njit(cache=True)
def _scores_rows_nb(marks: np.ndarray, rows: np.ndarray, drawdown_penalty: float) -> np.ndarray:
    """``scores_nb(marks[rows], drawdown_penalty)`` with the same floats: each row's sums (the Sharpe's mean, then its
    squared deviations) are accumulated in the same order, but the rows' sums advance together (one bar of every
    row at a time: independent chains the CPU overlaps) and each return ``e[i] / e[i - 1] - 1`` is divided once."""
    k = rows.shape[0]
    n = marks.shape[1]
    g = np.empty(k)
    sh = np.zeros(k)
    ok = np.empty(k, dtype=np.int64)  # rows whose Sharpe is computed (n >= 3, every mark but the last > 0)
    nok = 0
    if n >= 3:
        for j in range(k):
            r = rows[j]
            good = True
            for i in range(n - 1):
                if marks[r, i] <= 0.0:
                    good = False
                    break
            if good:
                ok[nok] = j
                nok += 1
    if nok:
        ret = np.empty((n, nok))
        m = np.zeros(nok)
        for i in range(1, n):
            for q in range(nok):
                r = rows[ok[q]]
                x = marks[r, i] / marks[r, i - 1] - 1.0
                ret[i, q] = x
                m[q] += x
        for q in range(nok):
            m[q] /= n - 1
        ss = np.zeros(nok)
        for i in range(1, n):
            for q in range(nok):
                d = ret[i, q] - m[q]
                ss[q] += d * d
        for q in range(nok):
            sd = np.sqrt(ss[q] / (n - 2))
            sh[ok[q]] = m[q] / sd if sd > 0.0 else 0.0
    for j in range(k):
        r = rows[j]
        if n == 0:
            dd = 0.0
        else:
            peak = marks[r, 0]
            for i in range(1, n):
                if marks[r, i] > peak:
                    peak = marks[r, i]
            dd = 1.0 - marks[r, n - 1] / peak if peak > 0.0 else 1.0
        g[j] = sh[j] - drawdown_penalty * dd
    return g


@njit(cache=True)
def cwo_step_nb(marks: np.ndarray, rows: np.ndarray, old: np.ndarray, drawdown_penalty: float, lo: float, hi: float,
                eta: float, max_turnover: float) -> np.ndarray:
    """:func:`scores_nb` of ``marks[rows]`` then one :func:`eg_weights` step, in one call (the runtime's CWO).

    marks: (n_slots, m) float64 equity marks, newest last; rows: (k,) int64 rows of the live slots; old: (k,)
    their current weights; lo = min(min_weight, 1/k).  returns (k,) float64, the same numbers as
    ``eg_weights(old, scores_nb(marks[rows], drawdown_penalty), cfg)``."""
    return _eg_step_nb(old, _scores_rows_nb(marks, rows, drawdown_penalty), lo, hi, eta, max_turnover)


@njit(cache=True)
def _marks_scores_nb(buf: np.ndarray, ret: np.ndarray, ret_n: np.ndarray, bad: np.ndarray, lo: int, hi: int,
                     rows: np.ndarray, drawdown_penalty: float) -> np.ndarray:
    """``_scores_rows_nb(buf[:, lo:hi], rows, drawdown_penalty)`` with the same floats, on a :class:`crucible.slots.MarkBook`
    buffer whose returns are kept across calls: ``ret[r, c] = buf[r, c] / buf[r, c - 1] - 1`` for ``1 <= c < ret_n[0]``
    (the columns below ``hi`` not yet divided are divided here, once; a zero divisor leaves a value no score reads: its
    row is not scored), and ``bad[r]``, the last column ``c <= ret_n[0] - 2`` with ``buf[r, c] <= 0`` (-1: none), so a
    row's "every mark but the last > 0" is ``bad[r] < lo``.  Each scored row's sums are accumulated in the same order
    as ``_scores_rows_nb``'s (its peak with its mean), three rows advancing together (independent chains in registers)."""
    nr = buf.shape[0]
    c0 = ret_n[0]
    if c0 <= 1:  # nothing kept (new, slid or reset): from the first column
        c0 = 1
        for r in range(nr):
            bad[r] = -1
    for c in range(c0, hi):
        for r in range(nr):
            d = buf[r, c - 1]
            if d <= 0.0:
                bad[r] = c - 1
            ret[r, c] = buf[r, c] / d - 1.0 if d != 0.0 else 0.0
    if hi > ret_n[0]:
        ret_n[0] = hi
    k = rows.shape[0]
    n = hi - lo
    g = np.empty(k)
    sh = np.zeros(k)
    dd = np.empty(k)
    ok = np.empty(k, dtype=np.int64)  # rows whose Sharpe is computed (n >= 3, every mark but the last > 0)
    nok = 0
    for j in range(k):
        r = rows[j]
        if n >= 3 and bad[r] < lo:
            ok[nok] = j
            nok += 1
        elif n <= 0:
            dd[j] = 0.0
        else:
            peak = buf[r, lo]
            for c in range(lo + 1, hi):
                if buf[r, c] > peak:
                    peak = buf[r, c]
            dd[j] = 1.0 - buf[r, hi - 1] / peak if peak > 0.0 else 1.0
    q = 0
    while q < nok:  # rows q, q1, q2 (the last group repeats its last row when fewer are left)
        q1 = q + 1 if q + 1 < nok else q
        q2 = q + 2 if q + 2 < nok else q1
        r0, r1, r2 = rows[ok[q]], rows[ok[q1]], rows[ok[q2]]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        p0, p1, p2 = buf[r0, lo], buf[r1, lo], buf[r2, lo]
        for c in range(lo + 1, hi):
            a0 += ret[r0, c]
            a1 += ret[r1, c]
            a2 += ret[r2, c]
            x0, x1, x2 = buf[r0, c], buf[r1, c], buf[r2, c]
            if x0 > p0:
                p0 = x0
            if x1 > p1:
                p1 = x1
            if x2 > p2:
                p2 = x2
        a0 /= n - 1
        a1 /= n - 1
        a2 /= n - 1
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        for c in range(lo + 1, hi):
            d0 = ret[r0, c] - a0
            d1 = ret[r1, c] - a1
            d2 = ret[r2, c] - a2
            b0 += d0 * d0
            b1 += d1 * d1
            b2 += d2 * d2
        sd = np.sqrt(b0 / (n - 2))
        sh[ok[q]] = a0 / sd if sd > 0.0 else 0.0
        sd = np.sqrt(b1 / (n - 2))
        sh[ok[q1]] = a1 / sd if sd > 0.0 else 0.0
        sd = np.sqrt(b2 / (n - 2))
        sh[ok[q2]] = a2 / sd if sd > 0.0 else 0.0
        dd[ok[q]] = 1.0 - buf[r0, hi - 1] / p0 if p0 > 0.0 else 1.0
        dd[ok[q1]] = 1.0 - buf[r1, hi - 1] / p1 if p1 > 0.0 else 1.0
        dd[ok[q2]] = 1.0 - buf[r2, hi - 1] / p2 if p2 > 0.0 else 1.0
        q += 3
    for j in range(k):
        g[j] = sh[j] - drawdown_penalty * dd[j]
    return g


@njit(cache=True)
def cwo_step_marks_nb(buf: np.ndarray, ret: np.ndarray, ret_n: np.ndarray, bad: np.ndarray, lo: int, hi: int,
                      rows: np.ndarray, old: np.ndarray, drawdown_penalty: float, lo_w: float, hi_w: float, eta: float,
                      max_turnover: float) -> np.ndarray:
    """:func:`cwo_step_nb` of the window ``buf[:, lo:hi]`` of a :class:`crucible.slots.MarkBook` (its ``_buf``, ``_ret``,
    ``_ret_n``, ``_bad``: :meth:`MarkBook.span`), the same numbers, with the returns kept across calls
    (:func:`_marks_scores_nb`)."""
    return _eg_step_nb(old, _marks_scores_nb(buf, ret, ret_n, bad, lo, hi, rows, drawdown_penalty), lo_w, hi_w, eta,
                       max_turnover)


def eg_weights(old: np.ndarray, scores: np.ndarray, cfg: CwoConfig) -> np.ndarray:
    """One exponentiated-gradient step for the live slots (see module docstring).

    old: (n,) current weights (all zero: start from 1/n); scores: (n,) risk-adjusted scores (NaN = 0).
    returns (n,) float64 within [min(min_weight, 1/n), max_weight], summing to <= 1.
    """
    n = old.shape[0]
    return _eg_step_nb(np.ascontiguousarray(old, dtype=np.float64), np.ascontiguousarray(scores, dtype=np.float64),
                       min(cfg.min_weight, 1.0 / n), cfg.max_weight, cfg.eta, cfg.max_turnover)


def reweight(weights: Mapping[str, float], curves: Mapping[str, np.ndarray], live: set[str],
             cfg: CwoConfig) -> dict[str, float]:
    """New capital weights.

    weights: slot -> current weight (missing = new slot); curves: slot -> recent equity marks (USDT,
    newest last); live: slots that may hold capital.  returns slot -> weight for every key of
    ``weights`` and ``curves``: 0 for slots not live, within [min_weight, max_weight] and summing to
    <= 1 for live ones.
    """
    keys = sorted(set(weights) | set(curves) | live)
    alive = [k for k in keys if k in live]
    out = {k: 0.0 for k in keys}
    if not alive:
        return out
    old = np.array([weights.get(k, 0.0) for k in alive], dtype=np.float64)
    empty = np.zeros(0)
    g = np.array([slot_score(curves.get(k, empty)[-cfg.lookback_bars - 1:], cfg.drawdown_penalty)
                  for k in alive])
    target = eg_weights(old, g, cfg)
    for k, w in zip(alive, target):
        out[k] = float(w)
    return out


def regime_tilt(base: np.ndarray, target: np.ndarray, declared: np.ndarray, predicted: np.ndarray, kappa: float,
                lo: float, hi: float, max_turnover: float) -> tuple[np.ndarray, np.ndarray]:
    """Tilt the CWO's weights toward the slots whose declared regime is predicted (issue 30 part 4).

    Rule: q_i = predicted[declared_i], the one-step-ahead probability P(s_{t+1} = declared_i | bars <= t) of the
    frozen regime model, for a slot declaring a regime, and q_i = 1/k (neutral) for one that declares none; the
    EG target weights become ``target_i * exp(kappa * (q_i - 1/k))``, renormalised and projected onto the same
    bounded simplex (:func:`project_bounded_simplex`: ``lo <= w_i <= hi``, sum 1 when ``n * hi > 1``); then the
    whole move from ``base`` (the old weights as the EG step projected them) is capped at ``max_turnover``
    (sum |w - base|) by a convex combination, so every bound of the CWO still holds: per-slot [lo, hi], the sum,
    the turnover per reweight.  The capital then moves through the runtime's capped transfers, which keep each
    slot's exposure within ``max_leverage`` x its equity (``[crucible] max_leverage``, the exposure bound of the
    safety issue).  kappa = 0, or no slot declaring a regime, returns ``target`` unchanged.

    base, target: (n,) float64 weights of the live slots; declared: (n,) int64 state per slot, -1 = none;
    predicted: (k,) float64 probabilities (sum 1); kappa >= 0.  returns (weights (n,), q (n,)).
    """
    base = np.ascontiguousarray(base, dtype=np.float64)
    target = np.ascontiguousarray(target, dtype=np.float64)
    declared = np.asarray(declared, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.float64)
    k = predicted.shape[0]
    q = np.where(declared >= 0, predicted[np.clip(declared, 0, k - 1)], 1.0 / k)
    n = target.shape[0]
    if kappa == 0.0 or not np.any(declared >= 0) or n * hi <= 1.0:
        return target, q
    m = target * np.exp(kappa * (q - 1.0 / k))
    tot = m.sum()
    tilted = _project_nb(m / tot if tot > 0 else np.full(n, 1.0 / n), lo, hi)
    turnover = np.abs(tilted - base).sum()
    if turnover > max_turnover:
        tilted = base + (tilted - base) * (max_turnover / turnover)
    return tilted, q
