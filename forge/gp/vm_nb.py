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

import platform

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from forge.gp.opcodes import DIV_EPS, SMOOTH_STEP, STD_REL_EPS, Op

# windowed statistic kinds
_MEAN, _STD, _MIN, _MAX, _RANK, _ZSCORE, _EMA = 0, 1, 2, 3, 4, 5, 6


@njit(cache=True)
def _operand(X, buf, j):
    if j >= 0:
        return X[j]
    return buf[-1 - j]


# Rolling statistics in O(n) (O(n·w) for ts_rank): running sums of values shifted by the window mean
# at the last exact recompute, recomputed exactly every w bars and whenever cancellation would cost
# precision (variance below CANCEL x the shifted second moment); EMA by the truncated-EMA recursion;
# min/max by a monotonic deque.  The naive per-bar formulas (``_exact_at``) are the reference: every
# value agrees with them to ~1e-12 relative (tests: 1e-9), windows are causal (a prefix of the input
# gives a prefix of the output, bit for bit), and a window with a NaN is NaN.
CANCEL = 1e-4
SMALL_W = 10  # windows up to this length use the naive formula (O(n·w) is cheaper than the bookkeeping)


@njit(cache=True, inline="always")
def _exact_at(x, t, w, kind, wts):
    """The statistic of window x[t-w+1 .. t] by the naive formula (the reference)."""
    s = t - w + 1
    if kind == _RANK:
        cnt = 0
        xt = x[t]
        for i in range(s, t + 1):
            if x[i] < xt:
                cnt += 1
        return cnt / (w - 1.0)
    if kind == _EMA:
        acc = 0.0
        for i in range(w):
            acc += x[s + i] * wts[i]
        return acc
    if kind == _MIN or kind == _MAX:
        v = x[s]
        for i in range(s + 1, t + 1):
            if (kind == _MIN and x[i] < v) or (kind == _MAX and x[i] > v):
                v = x[i]
        return v
    acc = 0.0
    for i in range(s, t + 1):
        acc += x[i]
    m = acc / w
    if kind == _MEAN:
        return m
    ss = 0.0
    for i in range(s, t + 1):
        d = x[i] - m
        ss += d * d
    sd = np.sqrt(ss / w)
    if kind == _STD:
        return sd
    if sd <= STD_REL_EPS * abs(m):
        return 0.0
    return (x[t] - m) / sd


@njit(cache=True)
def _ema_weights(w):
    wts = np.empty(w)
    alpha = 2.0 / (w + 1.0)
    total = 0.0
    for i in range(w):
        wts[i] = (1.0 - alpha) ** (w - 1 - i)
        total += wts[i]
    for i in range(w):
        wts[i] /= total
    return wts, 1.0 - alpha, total


@njit(cache=True)
def _rolling_nb(x, w, kind, out):
    n = x.shape[0]
    wts, beta, total = _ema_weights(w)
    beta_w = beta ** w
    last_nan = -1
    since = 0  # bars since the last exact recompute
    shift = 0.0
    s1 = 0.0
    s2 = 0.0
    u = 0.0  # EMA: sum_k beta^k x[t-k] over the window
    dq = np.empty(n, dtype=np.int64)  # min/max: indices with monotone values
    head = 0
    tail = 0
    run = 0  # consecutive bars equal to x[t]
    last_inf = -w - 1  # an infinity poisons running sums (inf - inf): exact values while one is in the window
    for t in range(n):
        xt = x[t]
        run = run + 1 if t > 0 and xt == x[t - 1] else 1
        if np.isinf(xt):
            last_inf = t
        if np.isnan(xt):
            last_nan = t
            head = 0
            tail = 0
        elif (kind == _MIN or kind == _MAX) and w > SMALL_W:
            while tail > head and ((kind == _MAX and x[dq[tail - 1]] <= xt) or (kind == _MIN and x[dq[tail - 1]] >= xt)):
                tail -= 1
            dq[tail] = t
            tail += 1
        if t - last_nan < w:
            out[t] = np.nan
            continue
        s = t - w + 1
        if kind == _RANK:
            cnt = 0
            for i in range(s, t + 1):
                if x[i] < xt:
                    cnt += 1
            out[t] = cnt / (w - 1.0)
            continue
        if w <= SMALL_W:  # short windows: the naive formula is as fast
            out[t] = _exact_at(x, t, w, kind, wts)
            continue
        if kind == _MIN or kind == _MAX:
            while dq[head] < s:
                head += 1
            out[t] = x[dq[head]]
            continue
        if run >= w or t - last_inf < w:  # flat window (the reference value, the same for every bar of
            # the stretch) or an infinity inside: exact values, then a fresh recompute once it has moved on
            out[t] = out[t - 1] if run > w and t - last_inf >= w else _exact_at(x, t, w, kind, wts)
            since = w
            continue
        fresh = t - last_nan == w or since >= w
        if kind == _EMA:
            if fresh:
                u = 0.0
                for i in range(w):
                    u += x[s + i] * (wts[i] * total)
                since = 0
            else:
                u = beta * u + xt - beta_w * x[s - 1]
                since += 1
            out[t] = u / total
            continue
        if not fresh:
            d_in = xt - shift
            d_out = x[s - 1] - shift
            s1 += d_in - d_out
            s2 += d_in * d_in - d_out * d_out
            since += 1
            if kind != _MEAN:
                var = s2 / w - (s1 / w) * (s1 / w)
                fresh = var <= CANCEL * (s2 / w)  # cancellation: recompute exactly
        if fresh:
            acc = 0.0
            for i in range(s, t + 1):
                acc += x[i]
            shift = acc / w
            s1 = 0.0
            s2 = 0.0
            for i in range(s, t + 1):
                d = x[i] - shift
                s1 += d
                s2 += d * d
            since = 0
            if kind != _MEAN:  # exact values where the window was just recomputed
                out[t] = _exact_at(x, t, w, kind, wts)
                continue
        m = shift + s1 / w
        if kind == _MEAN:
            out[t] = m
            continue
        var = s2 / w - (s1 / w) * (s1 / w)
        sd = np.sqrt(var) if var > 0.0 else 0.0
        if kind == _STD:
            out[t] = sd
        elif sd <= STD_REL_EPS * abs(m):
            out[t] = 0.0
        else:
            out[t] = (xt - m) / sd


@njit(cache=True, inline="always")
def _centred_sums(x, y, t, w):
    """Two-pass moments of windows x, y [t-w+1 .. t]: means mx, my and the sums of dx, dy, dx^2, dy^2,
    dx*dy about them."""
    s = t - w + 1
    ax = 0.0
    ay = 0.0
    for i in range(s, t + 1):
        ax += x[i]
        ay += y[i]
    mx = ax / w
    my = ay / w
    sx1 = sy1 = sxx = syy = sxy = 0.0
    for i in range(s, t + 1):
        dx = x[i] - mx
        dy = y[i] - my
        sx1 += dx
        sy1 += dy
        sxx += dx * dx
        syy += dy * dy
        sxy += dx * dy
    return mx, my, sx1, sy1, sxx, syy, sxy


@njit(cache=True, inline="always")
def _corr_from_centred(mx, my, sxx, syy, sxy, w):
    """The reference's Pearson correlation from two-pass moments; 0.0 when either window is flat."""
    sx = np.sqrt(sxx / w)
    sy = np.sqrt(syy / w)
    if sx <= STD_REL_EPS * abs(mx) or sy <= STD_REL_EPS * abs(my):
        return 0.0
    return (sxy / w) / (sx * sy)


@njit(cache=True, inline="always")
def _corr_exact_at(x, y, t, w):
    """Pearson correlation of windows x, y [t-w+1 .. t] by the naive two-pass formula (the reference)."""
    mx, my, _sx1, _sy1, sxx, syy, sxy = _centred_sums(x, y, t, w)
    return _corr_from_centred(mx, my, sxx, syy, sxy, w)


@njit(cache=True)
def _corr_nb(x, y, w, out):
    """Rolling Pearson correlation in O(n): shifted running sums, recomputed exactly every w bars and on
    cancellation (see ``_rolling_nb``); 0.0 when either window is flat (as the reference)."""
    n = x.shape[0]
    last_nan = -1
    since = 0
    runx = 0
    runy = 0
    cx = cy = sx1 = sy1 = sxx = syy = sxy = 0.0
    last_inf = -w - 1
    for t in range(n):
        xt = x[t]
        yt = y[t]
        if np.isinf(xt) or np.isinf(yt):
            last_inf = t
        runx = runx + 1 if t > 0 and xt == x[t - 1] else 1
        runy = runy + 1 if t > 0 and yt == y[t - 1] else 1
        if np.isnan(xt) or np.isnan(yt):
            last_nan = t
        if t - last_nan < w:
            out[t] = np.nan
            continue
        s = t - w + 1
        if w <= SMALL_W or runx >= w or runy >= w or t - last_inf < w:  # flat window (the reference's 0.0) or an infinity
            out[t] = _corr_exact_at(x, y, t, w)
            since = w
            continue
        fresh = t - last_nan == w or since >= w
        if not fresh:
            dxi = xt - cx
            dyi = yt - cy
            dxo = x[s - 1] - cx
            dyo = y[s - 1] - cy
            sx1 += dxi - dxo
            sy1 += dyi - dyo
            sxx += dxi * dxi - dxo * dxo
            syy += dyi * dyi - dyo * dyo
            sxy += dxi * dyi - dxo * dyo
            since += 1
            vx = sxx / w - (sx1 / w) * (sx1 / w)
            vy = syy / w - (sy1 / w) * (sy1 / w)
            fresh = vx <= CANCEL * (sxx / w) or vy <= CANCEL * (syy / w)
        if fresh:  # re-centre the running sums on this window; its value is the reference's
            cx, cy, sx1, sy1, sxx, syy, sxy = _centred_sums(x, y, t, w)
            since = 0
            out[t] = _corr_from_centred(cx, cy, sxx, syy, sxy, w)
            continue
        mx = cx + sx1 / w
        my = cy + sy1 / w
        vx = sxx / w - (sx1 / w) * (sx1 / w)
        vy = syy / w - (sy1 / w) * (sy1 / w)
        sdx = np.sqrt(vx)
        sdy = np.sqrt(vy)
        if sdx <= STD_REL_EPS * abs(mx) or sdy <= STD_REL_EPS * abs(my):
            out[t] = 0.0
        else:
            out[t] = (sxy / w - (sx1 / w) * (sy1 / w)) / (sdx * sdy)


@njit(cache=True)
def _latch_nb(enter, leave, thr, use_thr, w, y):
    """Set/reset latch with a w-bar memory (``forge.gp.primitives.np_latch``): y[t] = 1.0 when the latest
    enter event in bars [t-w+1, t] is later than every leave event there (leave wins a tie), else 0.0.
    Events: enter[t] > 0.5 / leave[t] > 0.5, or with use_thr (``hysteresis``) enter[t] > thr / enter[t] < -thr
    (``leave`` unused).  O(n): only the latest index of each event is kept."""
    last_e = -1
    last_l = -1
    for t in range(y.shape[0]):
        if use_thr:
            v = enter[t]
            if v > thr:
                last_e = t
            if v < -thr:
                last_l = t
        else:
            if enter[t] > 0.5:
                last_e = t
            if leave[t] > 0.5:
                last_l = t
        y[t] = 1.0 if (last_e >= 0 and last_e >= t - w + 1 and last_e > last_l) else 0.0


@njit(cache=True)
def _min_hold_nb(p, w, y):
    """Minimum holding period (``forge.gp.primitives.np_min_hold``): y[t] = p at the latest bar s in
    [t-2w+1, t] whose trailing w bars [s-w+1, s] all equal p[s] (a confirmed value), 0.0 if none.  O(n)."""
    run = 0
    conf = -1
    for t in range(y.shape[0]):
        run = run + 1 if t > 0 and p[t] == p[t - 1] else 1
        if run >= w:
            conf = t
        y[t] = p[conf] if (conf >= 0 and conf >= t - 2 * w + 1) else 0.0


@njit(cache=True)
def apply_nb(o, xa, xb, xc, w, k, y):
    """Apply one opcode: y[:] = op(xa, xb, xc; window w, constant k).

    xa, xb, xc, y: (n,) float64 (unused operands may alias xa); y must not
    alias an input of a windowed or lagged op.
    """
    n = y.shape[0]
    if o == Op.ADD:
        for t in range(n):
            y[t] = xa[t] + xb[t]
    elif o == Op.SUB:
        for t in range(n):
            y[t] = xa[t] - xb[t]
    elif o == Op.MUL:
        for t in range(n):
            y[t] = xa[t] * xb[t]
    elif o == Op.DIV:
        for t in range(n):
            if abs(xb[t]) < DIV_EPS:
                y[t] = 0.0
            else:
                y[t] = xa[t] / xb[t]
    elif o == Op.NEG:
        for t in range(n):
            y[t] = -xa[t]
    elif o == Op.ABS:
        for t in range(n):
            y[t] = abs(xa[t])
    elif o == Op.SLOG:
        for t in range(n):
            v = xa[t]
            if v >= 0.0:
                y[t] = np.log1p(v)
            else:
                y[t] = -np.log1p(-v)
    elif o == Op.ADD_C:
        for t in range(n):
            y[t] = xa[t] + k
    elif o == Op.MUL_C:
        for t in range(n):
            y[t] = xa[t] * k
    elif o == Op.LAG or o == Op.DELTA:
        for t in range(n):
            if t < w:
                y[t] = np.nan
            elif o == Op.LAG:
                y[t] = xa[t - w]
            else:
                y[t] = xa[t] - xa[t - w]
    elif o >= Op.TS_MEAN and o <= Op.TS_ZSCORE:
        _rolling_nb(xa, w, o - Op.TS_MEAN, y)
    elif o == Op.TS_CORR:
        _corr_nb(xa, xb, w, y)
    elif o == Op.EMA:
        _rolling_nb(xa, w, _EMA, y)
    elif o == Op.IF_THEN_ELSE:
        for t in range(n):
            y[t] = xb[t] if xa[t] > 0.5 else xc[t]
    elif o == Op.GT:
        for t in range(n):
            y[t] = 1.0 if xa[t] > xb[t] else 0.0
    elif o == Op.LT:
        for t in range(n):
            y[t] = 1.0 if xa[t] < xb[t] else 0.0
    elif o == Op.GT_C:
        for t in range(n):
            y[t] = 1.0 if xa[t] > k else 0.0
    elif o == Op.LT_C:
        for t in range(n):
            y[t] = 1.0 if xa[t] < k else 0.0
    elif o == Op.AND:
        for t in range(n):
            y[t] = 1.0 if (xa[t] > 0.5 and xb[t] > 0.5) else 0.0
    elif o == Op.OR:
        for t in range(n):
            y[t] = 1.0 if (xa[t] > 0.5 or xb[t] > 0.5) else 0.0
    elif o == Op.NOT:
        for t in range(n):
            y[t] = 1.0 - xa[t]
    elif o == Op.CROSS_ABOVE:
        if n > 0:
            y[0] = 0.0
        for t in range(1, n):
            y[t] = 1.0 if (xa[t] > xb[t] and xa[t - 1] <= xb[t - 1]) else 0.0
    elif o == Op.LONG_SHORT:
        for t in range(n):
            y[t] = xa[t] - xb[t]
    elif o == Op.LONG_ONLY:
        for t in range(n):
            y[t] = xa[t]
    elif o == Op.SHORT_ONLY:
        for t in range(n):
            y[t] = -xa[t]
    elif o == Op.POS_SIGN:
        for t in range(n):
            v = xa[t]
            y[t] = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)
    elif o == Op.LATCH:
        _latch_nb(xa, xb, 0.0, False, w, y)
    elif o == Op.HYSTERESIS:
        _latch_nb(xa, xa, abs(k), True, w, y)
    elif o == Op.SMOOTH:
        _rolling_nb(xa, w, _EMA, y)
        for t in range(n):
            y[t] = np.floor(y[t] / SMOOTH_STEP + 0.5) * SMOOTH_STEP
    elif o == Op.MIN_HOLD:
        _min_hold_nb(xa, w, y)


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
def run_program_flat_nb(op, dst, a, b, c, w, k, X, buf, out, clip_root):
    """Run a compiled program over all bars, one instruction at a time over every bar (the interpreter
    before cache blocking; kept as the reference of ``run_program_nb``, which is bit-identical).

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


# --------------------------------------------------------------------------- cache-blocked (tiled) interpreter
#
# ``run_program_flat_nb`` above (the interpreter before tiling, kept as the reference) runs one instruction
# over all n bars before the next, so every intermediate is an (n,) row that streams through memory
# (3.2 MB per register at 400,000 bars, larger than L2).  The tiled interpreter runs the *whole program*
# over a block of ``block`` bars, then the next block: instruction i writes row i of a small register
# matrix ``regs`` ((m, H + block) float64; H = history columns), so a block's working set stays in L1/L2.
# Every kernel is the flat kernel's loop body unchanged (same operations in the same order: results are
# bit-identical), resumable at any bar: whatever it carried from one bar to the next (running sums, the
# min/max deque, NaN/infinity/flat-run positions, latch events, the confirmed min_hold value) lives in the
# instruction's rows of ``fs`` (float) / ``ist`` (int) / ``dq`` (deque ring) between blocks; reads into the
# past (x[t-w], the previous output) use the H history columns, refreshed from the end of each block.
# Times in the kernels are global bar indices t; an operand is (array, offset) and bar t sits at
# array[t - offset] (offset 0 for rows of X, t0 - H for register rows while block [t0, t1) runs).
# These kernels are compiled without numba's reference counting (``_nrt=False``): with it every call of
# a small helper took and dropped an atomic reference on each array argument, which cost more than the
# arithmetic (a w=5 rolling mean ran ~15x slower than the same loop without it).  They only touch arrays
# allocated by their caller and cannot allocate (compilation would fail).

NO_NRT = {"cache": True, "_nrt": False, "error_model": "numpy"}
"""``@njit`` options of the tiled interpreter's kernels: no reference counting (see run_program_nb), and
numpy's error model -- a float division by zero gives inf / NaN instead of a Python exception, so the
division carries no zero test and the loops with divisions and square roots vectorise.  Every division
of these kernels has a non-zero divisor or a guard (DIV_EPS, the flat-window rule), so no result
changes; ``tests/test_vm_tiled.py`` checks them bit for bit against the flat interpreter."""
DEFAULT_BLOCK = 2048
"""Bars per block of the tiled interpreter (measured: benchmarks/RESULTS.md, issue 21 item 2)."""

# ist / fs slots
_I_LAST_NAN, _I_SINCE, _I_RUN, _I_LAST_INF, _I_HEAD, _I_TAIL, _I_RUNY = 0, 1, 2, 3, 4, 5, 6
_I_LAST_E, _I_LAST_L, _I_CONF = 0, 1, 1
_N_ISTATE = 8
_N_FSTATE = 8


_X86 = platform.machine().lower() in ("x86_64", "amd64", "x86", "i686")


@intrinsic
def _stream_store(typingctx, arr, idx, val):
    """arr[idx] = val (a float64 array, idx >= 0, no bounds check) as a non-temporal store: the value goes
    to memory without first reading its cache line and without evicting the block's working set.  Stored
    as the double's 64 bits (x86 has a non-temporal store for integers, ``movnti``, not for doubles), so the
    value is the same bit for bit.  For the subtree cache's rows, which are read again only by a later
    genome; ``_store_fence`` after the last one."""
    sig = types.void(arr, types.intp, types.float64)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False,
                                       boundscheck=False)
        i64 = ir.IntType(64)
        st = builder.store(builder.bitcast(args[2], i64), builder.bitcast(ptr, i64.as_pointer()))
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _store_fence(typingctx):
    """Order the non-temporal stores before every later store (``sfence`` on x86, a fence elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse.sfence")
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **NO_NRT)
def _u(i):
    """An index known to be >= 0 as uint64: numba then skips the negative-index fix-up on every access."""
    return np.uint64(i)


@njit(**NO_NRT)
def _exact_at_t(x, j, w, kind, wts):
    """``_exact_at`` (the same operations) of window x[_u(j-w+1 .. j)], j an array index."""
    s = j - w + 1
    if kind == _RANK:
        cnt = 0
        xt = x[_u(j)]
        for i in range(s, j + 1):
            if x[_u(i)] < xt:
                cnt += 1
        return cnt / (w - 1.0)
    if kind == _EMA:
        acc = 0.0
        for i in range(w):
            acc += x[_u(s + i)] * wts[i]
        return acc
    if kind == _MIN or kind == _MAX:
        v = x[_u(s)]
        for i in range(s + 1, j + 1):
            if (kind == _MIN and x[_u(i)] < v) or (kind == _MAX and x[_u(i)] > v):
                v = x[_u(i)]
        return v
    acc = 0.0
    for i in range(s, j + 1):
        acc += x[_u(i)]
    m = acc / w
    if kind == _MEAN:
        return m
    ss = 0.0
    for i in range(s, j + 1):
        d = x[_u(i)] - m
        ss += d * d
    sd = np.sqrt(ss / w)
    if kind == _STD:
        return sd
    if sd <= STD_REL_EPS * abs(m):
        return 0.0
    return (x[_u(j)] - m) / sd


@njit(**NO_NRT)
def _nan_rule_blk(x, ox, y, oy, two, w, out, oo, t0, t1, ist):
    """The NaN rule of the rolling kernels over bars [t0, t1): out is NaN at bar t when a NaN of x (or of
    y when ``two``) is among the bars (t - w, t]; the latest NaN bar is carried in ist.  A block without a
    NaN (found by a vectorised scan) only continues the previous NaN's window; otherwise bar by bar."""
    last_nan = ist[_I_LAST_NAN]
    L = t1 - t0
    xs = x[t0 - ox:t1 - ox]
    ys = y[t0 - oy:t1 - oy]
    nans = 0
    for q in range(L):
        nans += 1 if xs[q] != xs[q] else 0
    if two:
        for q in range(L):
            nans += 1 if ys[q] != ys[q] else 0
    if nans == 0:
        for t in range(t0, min(t1, last_nan + w)):
            out[_u(t - oo)] = np.nan
        return
    for t in range(t0, t1):
        if np.isnan(x[_u(t - ox)]) or (two and np.isnan(y[_u(t - oy)])):
            last_nan = t
        if t - last_nan < w:
            out[_u(t - oo)] = np.nan
    ist[_I_LAST_NAN] = last_nan


@njit(**NO_NRT)
def _exact_minmax_blk(x, ox, w, kind, y, oy, t0, t1, ist):
    """The min / max windows recomputed in full at every bar (windows <= ``SMALL_W``) over bars [t0, t1),
    with the loops interchanged: the position in the window outer, the block's bars inner, so each pass
    is an element-wise loop over the block that vectorises.  Every bar still combines its window's values
    in window order with the operations of ``_exact_at_t``, so the output is the same bit for bit.
    kind: ``_MIN`` or ``_MAX`` (a literal: one compiled copy each, the test folded away)."""
    L = t1 - t0
    qa = min(max(0, w - 1 - t0), L)  # bars before w - 1 have no full window (NaN by the NaN rule below)
    n = L - qa
    b0 = t0 + qa - ox - w + 1  # index in x of the first value of bar (t0 + qa)'s window
    vy = y[t0 + qa - oy:t1 - oy]
    xs = x[b0:b0 + n]
    for q in range(n):
        vy[q] = xs[q]
    for i in range(1, w):
        xs = x[b0 + i:b0 + i + n]
        for q in range(n):
            v = xs[q]
            if kind == _MIN:
                vy[q] = v if v < vy[q] else vy[q]
            else:
                vy[q] = v if v > vy[q] else vy[q]
    _nan_rule_blk(x, ox, x, ox, False, w, y, oy, t0, t1, ist)


@njit(**NO_NRT)
def _exact_rank_blk(x, ox, w, y, oy, t0, t1, ist):
    """``ts_rank`` over bars [t0, t1): every window in full (as ``_exact_minmax_blk``, loops interchanged;
    bit-identical to ``_exact_at_t``)."""
    L = t1 - t0
    qa = min(max(0, w - 1 - t0), L)
    n = L - qa
    b0 = t0 + qa - ox - w + 1
    vy = y[t0 + qa - oy:t1 - oy]
    xt = x[b0 + w - 1:b0 + w - 1 + n]
    for q in range(n):
        vy[q] = 0.0
    for i in range(w):
        xs = x[b0 + i:b0 + i + n]
        for q in range(n):
            vy[q] += 1.0 if xs[q] < xt[q] else 0.0
    for q in range(n):
        vy[q] = vy[q] / (w - 1.0)
    _nan_rule_blk(x, ox, x, ox, False, w, y, oy, t0, t1, ist)


@njit(**NO_NRT)
def _exact_sums_blk(x, ox, w, kind, y, oy, t0, t1, ist, wts, scr):
    """The mean / std / z-score / EMA windows <= ``SMALL_W`` over bars [t0, t1), recomputed in full at every
    bar (as ``_exact_minmax_blk``, loops interchanged; bit-identical to ``_exact_at_t``).  kind: a literal
    of ``_MEAN``, ``_STD``, ``_ZSCORE``, ``_EMA``.  scr: (>= 3, >= t1 - t0) float64 scratch."""
    L = t1 - t0
    qa = min(max(0, w - 1 - t0), L)
    n = L - qa
    b0 = t0 + qa - ox - w + 1
    vy = y[t0 + qa - oy:t1 - oy]
    acc = scr[0, :n]
    for q in range(n):
        acc[q] = 0.0
    for i in range(w):
        xs = x[b0 + i:b0 + i + n]
        if kind == _EMA:
            wi = wts[i]
            for q in range(n):
                acc[q] += xs[q] * wi
        else:
            for q in range(n):
                acc[q] += xs[q]
    if kind == _EMA:
        for q in range(n):
            vy[q] = acc[q]
    elif kind == _MEAN:
        for q in range(n):
            vy[q] = acc[q] / w
    else:
        m = scr[1, :n]
        ss = scr[2, :n]
        for q in range(n):
            m[q] = acc[q] / w
            ss[q] = 0.0
        for i in range(w):
            xs = x[b0 + i:b0 + i + n]
            for q in range(n):
                d = xs[q] - m[q]
                ss[q] += d * d
        xt = x[b0 + w - 1:b0 + w - 1 + n]
        for q in range(n):  # selects (the flat window's quotient is discarded)
            sd = np.sqrt(ss[q] / w)
            if kind == _STD:
                vy[q] = sd
            else:
                z = (xt[q] - m[q]) / sd
                vy[q] = 0.0 if sd <= STD_REL_EPS * abs(m[q]) else z
    _nan_rule_blk(x, ox, x, ox, False, w, y, oy, t0, t1, ist)


@njit(**NO_NRT)
def _minmax_blk(x, ox, w, kind, y, oy, t0, t1, ist, dq):
    """``_rolling_nb``'s min / max of windows > ``SMALL_W`` over bars [t0, t1) by the monotonic deque (the
    ring dq, its head / tail and the latest NaN bar carried in ist).  kind: ``_MIN`` or ``_MAX`` (a literal)."""
    mask = dq.shape[0] - 1
    last_nan = ist[_I_LAST_NAN]
    head = ist[_I_HEAD]
    tail = ist[_I_TAIL]
    for t in range(t0, t1):
        j = t - ox
        xt = x[_u(j)]
        if np.isnan(xt):
            last_nan = t
            head = 0
            tail = 0
        else:
            while tail > head and ((kind == _MAX and x[_u(dq[_u((tail - 1) & mask)] - ox)] <= xt)
                                   or (kind == _MIN and x[_u(dq[_u((tail - 1) & mask)] - ox)] >= xt)):
                tail -= 1
            dq[_u(tail & mask)] = t
            tail += 1
        if t - last_nan < w:
            y[_u(t - oy)] = np.nan
            continue
        s = t - w + 1
        while dq[_u(head & mask)] < s:
            head += 1
        y[_u(t - oy)] = x[_u(dq[_u(head & mask)] - ox)]
    ist[_I_LAST_NAN] = last_nan
    ist[_I_HEAD] = head
    ist[_I_TAIL] = tail


@njit(**NO_NRT)
def _sums_blk(x, ox, w, kind, y, oy, t0, t1, fs, ist, wts):
    """``_rolling_nb``'s running mean / std / z-score of windows > ``SMALL_W`` over bars [t0, t1), resumed
    from / saved to the state rows fs, ist.  kind: ``_MEAN``, ``_STD`` or ``_ZSCORE`` (a literal)."""
    last_nan = ist[_I_LAST_NAN]
    since = ist[_I_SINCE]
    run = ist[_I_RUN]
    last_inf = ist[_I_LAST_INF]
    head = ist[_I_HEAD]
    tail = ist[_I_TAIL]
    shift = fs[0]
    s1 = fs[1]
    s2 = fs[2]
    for t in range(t0, t1):
        j = t - ox
        xt = x[_u(j)]
        run = run + 1 if t > 0 and xt == x[_u(j - 1)] else 1
        if np.isinf(xt):
            last_inf = t
        if np.isnan(xt):
            last_nan = t
            head = 0
            tail = 0
        if t - last_nan < w:
            y[_u(t - oy)] = np.nan
            continue
        s = t - w + 1
        if run >= w or t - last_inf < w:
            y[_u(t - oy)] = y[_u(t - oy - 1)] if run > w and t - last_inf >= w else _exact_at_t(x, j, w, int(kind), wts)
            since = w
            continue
        fresh = t - last_nan == w or since >= w
        if not fresh:
            d_in = xt - shift
            d_out = x[_u(s - 1 - ox)] - shift
            s1 += d_in - d_out
            s2 += d_in * d_in - d_out * d_out
            since += 1
            if kind != _MEAN:
                var = s2 / w - (s1 / w) * (s1 / w)
                fresh = var <= CANCEL * (s2 / w)
        if fresh:
            acc = 0.0
            for i in range(s - ox, j + 1):
                acc += x[_u(i)]
            shift = acc / w
            s1 = 0.0
            s2 = 0.0
            for i in range(s - ox, j + 1):
                d = x[_u(i)] - shift
                s1 += d
                s2 += d * d
            since = 0
            if kind != _MEAN:
                y[_u(t - oy)] = _exact_at_t(x, j, w, int(kind), wts)
                continue
        m = shift + s1 / w
        if kind == _MEAN:
            y[_u(t - oy)] = m
            continue
        var = s2 / w - (s1 / w) * (s1 / w)
        sd = np.sqrt(var) if var > 0.0 else 0.0
        if kind == _STD:
            y[_u(t - oy)] = sd
        elif sd <= STD_REL_EPS * abs(m):
            y[_u(t - oy)] = 0.0
        else:
            y[_u(t - oy)] = (xt - m) / sd
    ist[_I_LAST_NAN] = last_nan
    ist[_I_SINCE] = since
    ist[_I_RUN] = run
    ist[_I_LAST_INF] = last_inf
    ist[_I_HEAD] = head
    ist[_I_TAIL] = tail
    fs[0] = shift
    fs[1] = s1
    fs[2] = s2


# One compiled function per rolling kind, each calling the kernels of its kind with the kind a literal
# (numba compiles one copy per literal value and lowers it as a constant, so LLVM folds the kind tests):
# windows recomputed in full (``_exact_*_blk``: every ts_rank window and windows <= ``SMALL_W``), the EMA
# recursion (``_ema_blk``), the running sums (``_sums_blk``) or the min / max deque (``_minmax_blk``).
# Grouped by what they share, so each kernel holds only the code of its kinds: numba types every branch
# of a function whatever its literal arguments, and type inference and lowering were the first run's
# compile time (benchmarks/cold_start.py, issue 27; they are called, not inline='always', because
# numba's inlining copies the callee's IR with its whole variable scope per block).  A call per block
# (2048 bars) costs nothing measurable; every kind runs the same operations in the same order as before.
@njit(**NO_NRT)
def _roll_mean_blk(x, ox, w, y, oy, t0, t1, fs, ist, dq, wts, total, beta, beta_w, scr):
    if w <= SMALL_W:
        _exact_sums_blk(x, ox, w, _MEAN, y, oy, t0, t1, ist, wts, scr)
    else:
        _sums_blk(x, ox, w, _MEAN, y, oy, t0, t1, fs, ist, wts)


@njit(**NO_NRT)
def _roll_std_blk(x, ox, w, y, oy, t0, t1, fs, ist, dq, wts, total, beta, beta_w, scr):
    if w <= SMALL_W:
        _exact_sums_blk(x, ox, w, _STD, y, oy, t0, t1, ist, wts, scr)
    else:
        _sums_blk(x, ox, w, _STD, y, oy, t0, t1, fs, ist, wts)


@njit(**NO_NRT)
def _roll_zscore_blk(x, ox, w, y, oy, t0, t1, fs, ist, dq, wts, total, beta, beta_w, scr):
    if w <= SMALL_W:
        _exact_sums_blk(x, ox, w, _ZSCORE, y, oy, t0, t1, ist, wts, scr)
    else:
        _sums_blk(x, ox, w, _ZSCORE, y, oy, t0, t1, fs, ist, wts)


@njit(**NO_NRT)
def _roll_min_blk(x, ox, w, y, oy, t0, t1, fs, ist, dq, wts, total, beta, beta_w, scr):
    if w <= SMALL_W:
        _exact_minmax_blk(x, ox, w, _MIN, y, oy, t0, t1, ist)
    else:
        _minmax_blk(x, ox, w, _MIN, y, oy, t0, t1, ist, dq)


@njit(**NO_NRT)
def _roll_max_blk(x, ox, w, y, oy, t0, t1, fs, ist, dq, wts, total, beta, beta_w, scr):
    if w <= SMALL_W:
        _exact_minmax_blk(x, ox, w, _MAX, y, oy, t0, t1, ist)
    else:
        _minmax_blk(x, ox, w, _MAX, y, oy, t0, t1, ist, dq)


@njit(**NO_NRT)
def _roll_rank_blk(x, ox, w, y, oy, t0, t1, fs, ist, dq, wts, total, beta, beta_w, scr):
    _exact_rank_blk(x, ox, w, y, oy, t0, t1, ist)


@njit(**NO_NRT)
def _roll_ema_blk(x, ox, w, y, oy, t0, t1, fs, ist, dq, wts, total, beta, beta_w, scr):
    if w <= SMALL_W:
        _exact_sums_blk(x, ox, w, _EMA, y, oy, t0, t1, ist, wts, scr)
    else:
        _ema_blk(x, ox, w, y, oy, t0, t1, fs, ist, wts, total, beta, beta_w)


@njit(**NO_NRT)
def _ema_blk(x, ox, w, y, oy, t0, t1, fs, ist, wts, total, beta, beta_w):
    """``_rolling_nb``'s EMA (windows > ``SMALL_W``) over bars [t0, t1) with a fast path: a bar whose input
    is finite, with no NaN or infinity in its window, no flat run of w bars and no exact recompute due, only
    advances the recursion (the state tests of the full path all come out the same way there).  Every
    other bar takes the full path, the same statements as ``_rolling_nb``; the output is the same bit
    for bit.  Most bars of a position series take the fast path, so the recursion's own dependency chain
    is most of the cost."""
    last_nan = ist[_I_LAST_NAN]
    since = ist[_I_SINCE]
    run = ist[_I_RUN]
    last_inf = ist[_I_LAST_INF]
    head = ist[_I_HEAD]
    tail = ist[_I_TAIL]
    u = fs[3]
    t = t0
    while t < t1:
        j = t - ox
        xt = x[_u(j)]
        run_new = run + 1 if t > 0 and xt == x[_u(j - 1)] else 1
        if xt - xt == 0.0 and t - last_nan > w and t - last_inf >= w and run_new < w and since < w:
            run = run_new
            u = beta * u + xt - beta_w * x[_u(j - w)]
            since += 1
            y[_u(t - oy)] = u / total
            t += 1
            continue
        run = run_new
        if np.isinf(xt):
            last_inf = t
        if np.isnan(xt):
            last_nan = t
            head = 0
            tail = 0
        if t - last_nan < w:
            y[_u(t - oy)] = np.nan
            t += 1
            continue
        s = t - w + 1
        if run >= w or t - last_inf < w:
            y[_u(t - oy)] = y[_u(t - oy - 1)] if run > w and t - last_inf >= w else _exact_at_t(x, j, w, int(_EMA), wts)
            since = w
            t += 1
            continue
        if t - last_nan == w or since >= w:
            u = 0.0
            for i in range(w):
                u += x[_u(s - ox + i)] * (wts[i] * total)
            since = 0
        else:
            u = beta * u + xt - beta_w * x[_u(s - 1 - ox)]
            since += 1
        y[_u(t - oy)] = u / total
        t += 1
    ist[_I_LAST_NAN] = last_nan
    ist[_I_SINCE] = since
    ist[_I_RUN] = run
    ist[_I_LAST_INF] = last_inf
    ist[_I_HEAD] = head
    ist[_I_TAIL] = tail
    fs[3] = u


@njit(**NO_NRT)
def _centred_sums_t(x, ox, y, oy, t, w):
    """``_centred_sums`` (the same operations) with bar t at x[_u(t - ox)], y[_u(t - oy)]."""
    s = t - w + 1
    ax = 0.0
    ay = 0.0
    for i in range(s, t + 1):
        ax += x[_u(i - ox)]
        ay += y[_u(i - oy)]
    mx = ax / w
    my = ay / w
    sx1 = sy1 = sxx = syy = sxy = 0.0
    for i in range(s, t + 1):
        dx = x[_u(i - ox)] - mx
        dy = y[_u(i - oy)] - my
        sx1 += dx
        sy1 += dy
        sxx += dx * dx
        syy += dy * dy
        sxy += dx * dy
    return mx, my, sx1, sy1, sxx, syy, sxy


@njit(**NO_NRT)
def _corr_from_centred_t(mx, my, sxx, syy, sxy, w):
    sx = np.sqrt(sxx / w)
    sy = np.sqrt(syy / w)
    if sx <= STD_REL_EPS * abs(mx) or sy <= STD_REL_EPS * abs(my):
        return 0.0
    return (sxy / w) / (sx * sy)


@njit(**NO_NRT)
def _corr_exact_blk(x, ox, y, oy, w, out, oo, t0, t1, ist, scr):
    """``ts_corr`` windows <= ``SMALL_W`` over bars [t0, t1): ``_centred_sums_t`` and
    ``_corr_from_centred_t`` of every bar with the loops interchanged (window position outer, the block's
    bars inner: element-wise passes that vectorise; each bar's sums in window order, so bit-identical).
    scr: (>= 5, >= t1 - t0) float64 scratch."""
    L = t1 - t0
    qa = min(max(0, w - 1 - t0), L)
    n = L - qa
    bx = t0 + qa - ox - w + 1
    by = t0 + qa - oy - w + 1
    mx = scr[0, :n]
    my = scr[1, :n]
    sxx = scr[2, :n]
    syy = scr[3, :n]
    sxy = scr[4, :n]
    for q in range(n):
        mx[q] = 0.0
        my[q] = 0.0
        sxx[q] = 0.0
        syy[q] = 0.0
        sxy[q] = 0.0
    for i in range(w):
        xs = x[bx + i:bx + i + n]
        ys = y[by + i:by + i + n]
        for q in range(n):
            mx[q] += xs[q]
            my[q] += ys[q]
    for q in range(n):
        mx[q] = mx[q] / w
        my[q] = my[q] / w
    for i in range(w):  # one accumulator per loop: fewer arrays per loop, so each vectorises
        xs = x[bx + i:bx + i + n]
        for q in range(n):
            dx = xs[q] - mx[q]
            sxx[q] += dx * dx
    for i in range(w):
        ys = y[by + i:by + i + n]
        for q in range(n):
            dy = ys[q] - my[q]
            syy[q] += dy * dy
    for i in range(w):
        xs = x[bx + i:bx + i + n]
        ys = y[by + i:by + i + n]
        for q in range(n):
            sxy[q] += (xs[q] - mx[q]) * (ys[q] - my[q])
    vo = out[t0 + qa - oo:t1 - oo]
    for q in range(n):  # selects, no branch: the loop vectorises (a flat window's quotient is discarded)
        sx = np.sqrt(sxx[q] / w)
        sy = np.sqrt(syy[q] / w)
        v = (sxy[q] / w) / (sx * sy)
        vo[q] = 0.0 if (sx <= STD_REL_EPS * abs(mx[q])) | (sy <= STD_REL_EPS * abs(my[q])) else v
    _nan_rule_blk(x, ox, y, oy, True, w, out, oo, t0, t1, ist)


@njit(**NO_NRT)
def _corr_blk(x, ox, y, oy, w, out, oo, t0, t1, fs, ist, scr):
    """``_corr_nb`` over bars [t0, t1), resumed from / saved to the state rows fs, ist."""
    if w <= SMALL_W:
        _corr_exact_blk(x, ox, y, oy, w, out, oo, t0, t1, ist, scr)
        return
    last_nan = ist[_I_LAST_NAN]
    since = ist[_I_SINCE]
    runx = ist[_I_RUN]
    runy = ist[_I_RUNY]
    last_inf = ist[_I_LAST_INF]
    cx = fs[0]
    cy = fs[1]
    sx1 = fs[2]
    sy1 = fs[3]
    sxx = fs[4]
    syy = fs[5]
    sxy = fs[6]
    for t in range(t0, t1):
        xt = x[_u(t - ox)]
        yt = y[_u(t - oy)]
        if np.isinf(xt) or np.isinf(yt):
            last_inf = t
        runx = runx + 1 if t > 0 and xt == x[_u(t - 1 - ox)] else 1
        runy = runy + 1 if t > 0 and yt == y[_u(t - 1 - oy)] else 1
        if np.isnan(xt) or np.isnan(yt):
            last_nan = t
        if t - last_nan < w:
            out[_u(t - oo)] = np.nan
            continue
        s = t - w + 1
        if w <= SMALL_W or runx >= w or runy >= w or t - last_inf < w:
            mx, my, _a, _b, vxx, vyy, vxy = _centred_sums_t(x, ox, y, oy, t, w)
            out[_u(t - oo)] = _corr_from_centred_t(mx, my, vxx, vyy, vxy, w)
            since = w
            continue
        fresh = t - last_nan == w or since >= w
        if not fresh:
            dxi = xt - cx
            dyi = yt - cy
            dxo = x[_u(s - 1 - ox)] - cx
            dyo = y[_u(s - 1 - oy)] - cy
            sx1 += dxi - dxo
            sy1 += dyi - dyo
            sxx += dxi * dxi - dxo * dxo
            syy += dyi * dyi - dyo * dyo
            sxy += dxi * dyi - dxo * dyo
            since += 1
            vx = sxx / w - (sx1 / w) * (sx1 / w)
            vy = syy / w - (sy1 / w) * (sy1 / w)
            fresh = vx <= CANCEL * (sxx / w) or vy <= CANCEL * (syy / w)
        if fresh:
            cx, cy, sx1, sy1, sxx, syy, sxy = _centred_sums_t(x, ox, y, oy, t, w)
            since = 0
            out[_u(t - oo)] = _corr_from_centred_t(cx, cy, sxx, syy, sxy, w)
            continue
        mx = cx + sx1 / w
        my = cy + sy1 / w
        vx = sxx / w - (sx1 / w) * (sx1 / w)
        vy = syy / w - (sy1 / w) * (sy1 / w)
        sdx = np.sqrt(vx)
        sdy = np.sqrt(vy)
        if sdx <= STD_REL_EPS * abs(mx) or sdy <= STD_REL_EPS * abs(my):
            out[_u(t - oo)] = 0.0
        else:
            out[_u(t - oo)] = (sxy / w - (sx1 / w) * (sy1 / w)) / (sdx * sdy)
    ist[_I_LAST_NAN] = last_nan
    ist[_I_SINCE] = since
    ist[_I_RUN] = runx
    ist[_I_RUNY] = runy
    ist[_I_LAST_INF] = last_inf
    fs[0] = cx
    fs[1] = cy
    fs[2] = sx1
    fs[3] = sy1
    fs[4] = sxx
    fs[5] = syy
    fs[6] = sxy


@njit(**NO_NRT)
def _latch_blk(enter, oe, leave, ol, thr, use_thr, w, y, oy, t0, t1, ist):
    """``_latch_nb`` over bars [t0, t1); the latest enter / leave event indices carried in ist.

    Branch-free: the event indices are updated by selects and the output is one select of the three
    tests combined with ``&`` (events are data-dependent, so branches on them mispredicted; the result is
    the same integer / 0.0-1.0 logic, bit for bit).  use_thr: a literal at every call site (one compiled
    copy each)."""
    last_e = ist[_I_LAST_E]
    last_l = ist[_I_LAST_L]
    L = t1 - t0
    ve = enter[t0 - oe:t1 - oe]
    vl = leave[t0 - ol:t1 - ol]
    vy = y[t0 - oy:t1 - oy]
    for q in range(L):
        t = t0 + q
        if use_thr:
            v = ve[q]
            last_e = t if v > thr else last_e
            last_l = t if v < -thr else last_l
        else:
            last_e = t if ve[q] > 0.5 else last_e
            last_l = t if vl[q] > 0.5 else last_l
        vy[q] = 1.0 if ((last_e >= 0) & (last_e >= t - w + 1) & (last_e > last_l)) else 0.0
    ist[_I_LAST_E] = last_e
    ist[_I_LAST_L] = last_l


@njit(**NO_NRT)
def _min_hold_blk(p, op_, w, y, oy, t0, t1, fs, ist):
    """``_min_hold_nb`` over bars [t0, t1); the run length, the confirmed bar and its value p[_u(conf)]
    carried in ist / fs (p is never rewritten, so the carried value is p[_u(conf)] bit for bit).

    Branch-free (selects; bar 0, which has no previous bar, peeled off): the same run / confirmation
    logic, the output a copy of a carried input value or 0.0, bit for bit."""
    run = ist[_I_RUN]
    conf = ist[_I_CONF]
    pconf = fs[7]
    ts = t0
    if ts == 0 and t1 > 0:
        run = 1
        if run >= w:
            conf = 0
            pconf = p[_u(0 - op_)]
        y[_u(0 - oy)] = pconf if (conf >= 0 and conf >= 0 - 2 * w + 1) else 0.0
        ts = 1
    L = t1 - ts
    vp = p[ts - op_:t1 - op_]
    vq = p[ts - 1 - op_:t1 - 1 - op_]
    vy = y[ts - oy:t1 - oy]
    for q in range(L):
        t = ts + q
        v = vp[q]
        run = run + 1 if v == vq[q] else 1
        c = run >= w
        conf = t if c else conf
        pconf = v if c else pconf
        vy[q] = pconf if ((conf >= 0) & (conf >= t - 2 * w + 1)) else 0.0
    ist[_I_RUN] = run
    ist[_I_CONF] = conf
    fs[7] = pconf


@njit(**NO_NRT)
def apply_blk(o, xa, oa, xb, ob, xc, oc, w, k, y, oy, t0, t1, fs, ist, dq, wts, ec, scr):
    """Apply one opcode over bars [t0, t1): y[_u(t - oy)] = op(xa[_u(t - oa)], xb[_u(t - ob)], xc[t - oc]; w, k).

    xa, xb, xc, y: float64 rows (unused operands may alias xa); oa, ob, oc, oy: int offsets (bar t of an
    operand sits at index t - offset); fs ((8,) float64), ist ((8,) int64), dq ((cap,) int64, cap a power
    of two > w) carry the state of stateful opcodes between calls (zeroed / ist[0] = -1 etc. by
    ``init_state_nb`` before bar 0); wts ((>= w,) float64) and ec ((3,) total, beta, beta**w) are the
    truncated-EMA weights of ``_ema_weights(w)``; scr ((>= 5, >= t1 - t0) float64) is scratch of the
    windows recomputed in full (``_exact_*_blk``).  y must not alias an input.
    """
    L = t1 - t0
    # views of the block [t0, t1) of each operand: element-wise loops index from 0 (no negative-index
    # fix-up on every access, so LLVM can vectorise them)
    va = xa[t0 - oa:t1 - oa]
    vb = xb[t0 - ob:t1 - ob] if o != Op.LAG and o != Op.DELTA else va
    vc = xc[t0 - oc:t1 - oc] if o == Op.IF_THEN_ELSE else va
    vy = y[t0 - oy:t1 - oy]
    if o == Op.ADD:
        for q in range(L):
            vy[q] = va[q] + vb[q]
    elif o == Op.SUB or o == Op.LONG_SHORT:
        for q in range(L):
            vy[q] = va[q] - vb[q]
    elif o == Op.MUL:
        for q in range(L):
            vy[q] = va[q] * vb[q]
    elif o == Op.DIV:
        for q in range(L):
            v = vb[q]
            vy[q] = 0.0 if abs(v) < DIV_EPS else va[q] / v
    elif o == Op.NEG or o == Op.SHORT_ONLY:
        for q in range(L):
            vy[q] = -va[q]
    elif o == Op.ABS:
        for q in range(L):
            vy[q] = abs(va[q])
    elif o == Op.SLOG:
        for q in range(L):
            v = va[q]
            if v >= 0.0:
                vy[q] = np.log1p(v)
            else:
                vy[q] = -np.log1p(-v)
    elif o == Op.ADD_C:
        for q in range(L):
            vy[q] = va[q] + k
    elif o == Op.MUL_C:
        for q in range(L):
            vy[q] = va[q] * k
    elif o == Op.LAG or o == Op.DELTA:
        for t in range(t0, t1):
            if t < w:
                y[_u(t - oy)] = np.nan
            elif o == Op.LAG:
                y[_u(t - oy)] = xa[_u(t - w - oa)]
            else:
                y[_u(t - oy)] = xa[_u(t - oa)] - xa[_u(t - w - oa)]
    elif o == Op.TS_MEAN:  # one compiled function per kind (_roll_*_blk): the kind is a constant there
        _roll_mean_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
    elif o == Op.TS_STD:
        _roll_std_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
    elif o == Op.TS_MIN:
        _roll_min_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
    elif o == Op.TS_MAX:
        _roll_max_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
    elif o == Op.TS_RANK:
        _roll_rank_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
    elif o == Op.TS_ZSCORE:
        _roll_zscore_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
    elif o == Op.TS_CORR:
        _corr_blk(xa, oa, xb, ob, w, y, oy, t0, t1, fs, ist, scr)
    elif o == Op.EMA:
        _roll_ema_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
    elif o == Op.IF_THEN_ELSE:
        for q in range(L):
            vy[q] = vb[q] if va[q] > 0.5 else vc[q]
    elif o == Op.GT:
        for q in range(L):
            vy[q] = 1.0 if va[q] > vb[q] else 0.0
    elif o == Op.LT:
        for q in range(L):
            vy[q] = 1.0 if va[q] < vb[q] else 0.0
    elif o == Op.GT_C:
        for q in range(L):
            vy[q] = 1.0 if va[q] > k else 0.0
    elif o == Op.LT_C:
        for q in range(L):
            vy[q] = 1.0 if va[q] < k else 0.0
    elif o == Op.AND:
        for q in range(L):
            vy[q] = 1.0 if (va[q] > 0.5 and vb[q] > 0.5) else 0.0
    elif o == Op.OR:
        for q in range(L):
            vy[q] = 1.0 if (va[q] > 0.5 or vb[q] > 0.5) else 0.0
    elif o == Op.NOT:
        for q in range(L):
            vy[q] = 1.0 - va[q]
    elif o == Op.CROSS_ABOVE:
        for t in range(t0, t1):
            if t == 0:
                y[_u(t - oy)] = 0.0
            else:
                y[_u(t - oy)] = 1.0 if (xa[_u(t - oa)] > xb[_u(t - ob)] and xa[_u(t - 1 - oa)] <= xb[_u(t - 1 - ob)]) else 0.0
    elif o == Op.LONG_ONLY:
        for q in range(L):
            vy[q] = va[q]
    elif o == Op.POS_SIGN:
        for q in range(L):
            v = va[q]
            vy[q] = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)
    elif o == Op.LATCH:
        _latch_blk(xa, oa, xb, ob, 0.0, False, w, y, oy, t0, t1, ist)
    elif o == Op.HYSTERESIS:
        _latch_blk(xa, oa, xa, oa, abs(k), True, w, y, oy, t0, t1, ist)
    elif o == Op.SMOOTH:
        # rounded block by block: the flat-window rule of the next block then copies a rounded y[t-1]
        # where the flat interpreter copied the unrounded one; rounding is idempotent on multiples of
        # SMOOTH_STEP, so the output is the same bit for bit (tested across block boundaries)
        _roll_ema_blk(xa, oa, w, y, oy, t0, t1, fs, ist, dq, wts, ec[0], ec[1], ec[2], scr)
        for q in range(L):
            vy[q] = np.floor(vy[q] / SMOOTH_STEP + 0.5) * SMOOTH_STEP
    elif o == Op.MIN_HOLD:
        _min_hold_blk(xa, oa, w, y, oy, t0, t1, fs, ist)


@njit(**NO_NRT)
def _run_blocks_nb(op, src_a, src_b, src_c, w, k, X, regs, hist, block, out, clip_root, fs, ist, dq, wts, ec,
                   keep, scr, S, store):
    m = op.shape[0]
    n = X.shape[1]
    for t0 in range(0, n, block):
        t1 = min(t0 + block, n)
        g0 = t0 - hist  # bar of column 0 of every register row during this block
        for i in range(m):
            ca = src_a[i]
            cb = src_b[i]
            cc = src_c[i]
            xa = X[ca] if ca >= 0 else regs[-1 - ca]
            xb = X[cb] if cb >= 0 else regs[-1 - cb]
            xc = X[cc] if cc >= 0 else regs[-1 - cc]
            apply_blk(op[i], xa, 0 if ca >= 0 else g0, xb, 0 if cb >= 0 else g0, xc, 0 if cc >= 0 else g0,
                      w[i], k[i], regs[i], g0, t0, t1, fs[i], ist[i], dq[i], wts[i], ec[i], scr)
            r = store[i]
            if r >= 0:  # the subtree cache keeps this instruction's values: copy the block into row r of S
                vs = S[r][t0:t1]
                vi = regs[i][t0 - g0:t1 - g0]
                for q in range(t1 - t0):
                    _stream_store(vs, q, vi[q])
        vr = regs[m - 1][t0 - g0:t1 - g0]
        vo = out[t0:t1]
        if clip_root:  # a position: NaN -> 0, clipped to [-1, 1] (selects, so the loop vectorises)
            for q in range(t1 - t0):
                v = vr[q]
                v = 1.0 if v > 1.0 else v
                v = -1.0 if v < -1.0 else v
                vo[q] = 0.0 if v != v else v
        else:
            for q in range(t1 - t0):
                vo[q] = vr[q]
        if t1 < n and hist > 0:  # the last hist bars of the block become the history of the next one
            L = t1 - t0
            for i in range(m):
                if not keep[i]:
                    continue
                r = regs[i]
                for q in range(hist):  # ascending: safe when the ranges overlap (block < hist)
                    r[q] = r[L + q]


MIN_HISTORY = 248
"""History columns of a register row at least (max window 240 + 1, rounded up to 8): one row length for
every program of the standard windows, so a ``BufferPool`` is not reallocated between programs."""


def tiled_shape(w: np.ndarray, block: int) -> tuple[int, int]:
    """(history columns H, register row length H + block) of the tiled interpreter for a program with
    windows w ((m,) int64): H >= max(w) + 1 (the deepest read into the past: x[t - w])."""
    wmax = int(w.max()) if w.shape[0] else 0
    hist = max(MIN_HISTORY, (wmax + 1 + 7) // 8 * 8)
    return hist, hist + int(block)


@njit(cache=True)
def run_program_nb(op, dst, a, b, c, w, k, X, regs, out, clip_root, block):
    """Run a compiled program over all bars (``run_program_store_nb`` storing nothing)."""
    run_program_store_nb(op, dst, a, b, c, w, k, X, regs, out, clip_root, block, np.empty((1, 1)),
                         np.full(op.shape[0], -1, dtype=np.int64))


@njit(cache=True)
def run_program_store_nb(op, dst, a, b, c, w, k, X, regs, out, clip_root, block, S, store):
    """Run a compiled program over all bars, block by block (cache-blocked; bit-identical to
    ``run_program_flat_nb``).

    op, dst, a, b, c, w: (m,) int64; k: (m,) float64; X: (f, n) float64 C-contiguous features; regs:
    (>= m, H + block) float64 scratch, H = history columns >= max(w) + 1 (``tiled_shape``; contents
    undefined); out: (n,)
    float64 receives the root: a position (NaN -> 0, clipped to [-1, 1]) when clip_root, else the raw
    series; block: bars per block (>= 1); S: (r, n) float64 rows written by the instructions i with
    store[i] >= 0 (store: (m,) int64): S[store[i]] receives instruction i's values at every bar (the
    subtree cache keeps a genome's windowed subtrees while the genome runs; S may be the matrix X is a
    view of, as long as no instruction reads a row before it is written).  Allocates the per-instruction
    state (a few KB) and the operand map (register -> the instruction that last wrote it) and runs
    ``_run_blocks_nb``.
    """
    m = op.shape[0]
    wmax = 1
    for i in range(m):
        wmax = max(wmax, w[i])
    hist = regs.shape[1] - block
    cap = 1
    while cap < wmax + 2:
        cap *= 2
    writer = np.full(max(m, 1), -1, dtype=np.int64)  # register -> instruction
    src_a = np.empty(m, dtype=np.int64)
    src_b = np.empty(m, dtype=np.int64)
    src_c = np.empty(m, dtype=np.int64)
    for i in range(m):
        src_a[i] = a[i] if a[i] >= 0 else -1 - writer[-1 - a[i]]
        src_b[i] = b[i] if b[i] >= 0 else -1 - writer[-1 - b[i]]
        src_c[i] = c[i] if c[i] >= 0 else -1 - writer[-1 - c[i]]
        writer[dst[i]] = i
    keep = np.zeros(m, dtype=np.bool_)  # rows read into the past: history carried between blocks
    for i in range(m):
        o = op[i]
        if (o >= Op.LAG and o <= Op.EMA) or o == Op.CROSS_ABOVE or o == Op.SMOOTH or o == Op.MIN_HOLD:
            keep[i] = True  # a rolling op reads its own previous output (the flat-window rule)
            for src in (src_a[i], src_b[i], src_c[i]):
                if src < 0:
                    keep[-1 - src] = True
    fs = np.zeros((m, _N_FSTATE))
    ist = np.zeros((m, _N_ISTATE), dtype=np.int64)
    dq = np.zeros((m, cap), dtype=np.int64)
    wts = np.zeros((m, wmax))
    ec = np.zeros((m, 3))
    for i in range(m):
        wi = w[i]
        ist[i, _I_LAST_NAN] = -1  # = _I_LAST_E (latch)
        ist[i, _I_LAST_INF] = -wi - 1
        # slot 1 is _I_SINCE of a rolling op (starts at 0) and _I_LAST_L / _I_CONF of latch / min_hold (-1)
        ist[i, _I_SINCE] = -1 if (op[i] == Op.LATCH or op[i] == Op.HYSTERESIS or op[i] == Op.MIN_HOLD) else 0
        if wi > 0:
            ww, beta, total = _ema_weights(wi)
            wts[i, :wi] = ww
            ec[i, 0] = total
            ec[i, 1] = beta
            ec[i, 2] = beta ** wi
    scr = np.empty((5, block))  # scratch of the windows recomputed in full (_exact_sums_blk, _corr_exact_blk)
    _run_blocks_nb(op, src_a, src_b, src_c, w, k, X, regs, hist, block, out, clip_root, fs, ist, dq, wts, ec, keep,
                   scr, S, store)
    _store_fence()
