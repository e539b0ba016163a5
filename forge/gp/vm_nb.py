"""The numba interpreter of compiled strategy programs (one kernel for every tree).

A program is a flat list of instructions in postfix order.  Instruction i
has an opcode ``op[i]`` (``forge.gp.primitives``), a destination register
``dst[i]``, up to three operands ``a[i], b[i], c[i]`` (operand ``j >= 0`` is
row ``j`` of the feature matrix X, ``j < 0`` is register ``-1 - j``), an
integer window ``w[i]`` and a float constant ``k[i]``.  Registers are rows
of a reusable (r, n) float64 buffer.  Semantics match the numpy reference
functions in ``forge.gp.primitives`` exactly (up to summation order).
"""

from __future__ import annotations

import numpy as np
from numba import njit

DIV_EPS = 1e-12
STD_REL_EPS = 1e-10

# windowed statistic kinds
_MEAN, _STD, _MIN, _MAX, _RANK, _ZSCORE, _EMA = 0, 1, 2, 3, 4, 5, 6


@njit(cache=True)
def _operand(X, buf, j):
    if j >= 0:
        return X[j]
    return buf[-1 - j]


@njit(cache=True)
def _rolling_nb(x, w, kind, out):
    n = x.shape[0]
    last_nan = -1
    wts = np.empty(w)
    if kind == _EMA:
        alpha = 2.0 / (w + 1.0)
        total = 0.0
        for i in range(w):
            wts[i] = (1.0 - alpha) ** (w - 1 - i)
            total += wts[i]
        for i in range(w):
            wts[i] /= total
    for t in range(n):
        if np.isnan(x[t]):
            last_nan = t
        if t - last_nan < w:
            out[t] = np.nan
            continue
        s = t - w + 1
        if kind == _MIN:
            v = x[s]
            for i in range(s + 1, t + 1):
                if x[i] < v:
                    v = x[i]
            out[t] = v
        elif kind == _MAX:
            v = x[s]
            for i in range(s + 1, t + 1):
                if x[i] > v:
                    v = x[i]
            out[t] = v
        elif kind == _RANK:
            cnt = 0
            xt = x[t]
            for i in range(s, t + 1):
                if x[i] < xt:
                    cnt += 1
            out[t] = cnt / (w - 1.0)
        elif kind == _EMA:
            acc = 0.0
            for i in range(w):
                acc += x[s + i] * wts[i]
            out[t] = acc
        else:
            acc = 0.0
            for i in range(s, t + 1):
                acc += x[i]
            m = acc / w
            if kind == _MEAN:
                out[t] = m
                continue
            ss = 0.0
            for i in range(s, t + 1):
                d = x[i] - m
                ss += d * d
            sd = np.sqrt(ss / w)
            if kind == _STD:
                out[t] = sd
            elif sd <= STD_REL_EPS * abs(m):
                out[t] = 0.0
            else:
                out[t] = (x[t] - m) / sd


@njit(cache=True)
def _corr_nb(x, y, w, out):
    n = x.shape[0]
    last_nan = -1
    for t in range(n):
        if np.isnan(x[t]) or np.isnan(y[t]):
            last_nan = t
        if t - last_nan < w:
            out[t] = np.nan
            continue
        s = t - w + 1
        ax = 0.0
        ay = 0.0
        for i in range(s, t + 1):
            ax += x[i]
            ay += y[i]
        mx = ax / w
        my = ay / w
        sxx = 0.0
        syy = 0.0
        sxy = 0.0
        for i in range(s, t + 1):
            dx = x[i] - mx
            dy = y[i] - my
            sxx += dx * dx
            syy += dy * dy
            sxy += dx * dy
        sx = np.sqrt(sxx / w)
        sy = np.sqrt(syy / w)
        if sx <= STD_REL_EPS * abs(mx) or sy <= STD_REL_EPS * abs(my):
            out[t] = 0.0
        else:
            out[t] = (sxy / w) / (sx * sy)


@njit(cache=True)
def apply_nb(o, xa, xb, xc, w, k, y):
    """Apply one opcode: y[:] = op(xa, xb, xc; window w, constant k).

    xa, xb, xc, y: (n,) float64 (unused operands may alias xa); y must not
    alias an input of a windowed or lagged op.
    """
    n = y.shape[0]
    if o == 1:
        for t in range(n):
            y[t] = xa[t] + xb[t]
    elif o == 2:
        for t in range(n):
            y[t] = xa[t] - xb[t]
    elif o == 3:
        for t in range(n):
            y[t] = xa[t] * xb[t]
    elif o == 4:
        for t in range(n):
            if abs(xb[t]) < DIV_EPS:
                y[t] = 0.0
            else:
                y[t] = xa[t] / xb[t]
    elif o == 5:
        for t in range(n):
            y[t] = -xa[t]
    elif o == 6:
        for t in range(n):
            y[t] = abs(xa[t])
    elif o == 7:
        for t in range(n):
            v = xa[t]
            if v >= 0.0:
                y[t] = np.log1p(v)
            else:
                y[t] = -np.log1p(-v)
    elif o == 8:
        for t in range(n):
            y[t] = xa[t] + k
    elif o == 9:
        for t in range(n):
            y[t] = xa[t] * k
    elif o == 10 or o == 11:
        for t in range(n):
            if t < w:
                y[t] = np.nan
            elif o == 10:
                y[t] = xa[t - w]
            else:
                y[t] = xa[t] - xa[t - w]
    elif o >= 12 and o <= 17:
        _rolling_nb(xa, w, o - 12, y)
    elif o == 18:
        _corr_nb(xa, xb, w, y)
    elif o == 19:
        _rolling_nb(xa, w, _EMA, y)
    elif o == 20:
        for t in range(n):
            y[t] = xb[t] if xa[t] > 0.5 else xc[t]
    elif o == 21:
        for t in range(n):
            y[t] = 1.0 if xa[t] > xb[t] else 0.0
    elif o == 22:
        for t in range(n):
            y[t] = 1.0 if xa[t] < xb[t] else 0.0
    elif o == 23:
        for t in range(n):
            y[t] = 1.0 if xa[t] > k else 0.0
    elif o == 24:
        for t in range(n):
            y[t] = 1.0 if xa[t] < k else 0.0
    elif o == 25:
        for t in range(n):
            y[t] = 1.0 if (xa[t] > 0.5 and xb[t] > 0.5) else 0.0
    elif o == 26:
        for t in range(n):
            y[t] = 1.0 if (xa[t] > 0.5 or xb[t] > 0.5) else 0.0
    elif o == 27:
        for t in range(n):
            y[t] = 1.0 - xa[t]
    elif o == 28:
        if n > 0:
            y[0] = 0.0
        for t in range(1, n):
            y[t] = 1.0 if (xa[t] > xb[t] and xa[t - 1] <= xb[t - 1]) else 0.0
    elif o == 29:
        for t in range(n):
            y[t] = xa[t] - xb[t]
    elif o == 30:
        for t in range(n):
            y[t] = xa[t]
    elif o == 31:
        for t in range(n):
            y[t] = -xa[t]
    elif o == 32:
        for t in range(n):
            v = xa[t]
            y[t] = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)


@njit(cache=True)
def finish_root_nb(root, out, clip_root):
    """out[:] = root as a position (NaN -> 0, clipped to [-1, 1]) or raw."""
    for t in range(root.shape[0]):
        v = root[t]
        if not clip_root:
            out[t] = v
        elif np.isnan(v):
            out[t] = 0.0
        elif v > 1.0:
            out[t] = 1.0
        elif v < -1.0:
            out[t] = -1.0
        else:
            out[t] = v


@njit(cache=True)
def run_program_nb(op, dst, a, b, c, w, k, X, buf, out, clip_root):
    """Run a compiled program over all bars.

    op, dst, a, b, c, w: (m,) int64; k: (m,) float64; X: (f, n) float64
    C-contiguous features; buf: (r, n) float64 scratch registers;
    out: (n,) float64, receives the root: a position (NaN -> 0, clipped
    to [-1, 1]) when clip_root, else the raw float series.
    """
    m = op.shape[0]
    for i in range(m):
        apply_nb(op[i], _operand(X, buf, a[i]), _operand(X, buf, b[i]), _operand(X, buf, c[i]), w[i], k[i],
                 buf[dst[i]])
    finish_root_nb(buf[dst[m - 1]], out, clip_root)
