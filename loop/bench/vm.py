"""forge bench: the VM vs DEAP ``gp.compile`` rows — timing helpers, the bottleneck/scipy library
primitives behind DEAP (the baseline a DEAP user would write) and their agreement with the references."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

from forge.core import rng

STD_REL_EPS = 1e-10  # the flat-window rule of forge.gp.primitives (z-score and correlation are 0)


def _tiled_features(n_bars: int) -> tuple[tuple[str, ...], np.ndarray]:
    from forge.data.loader import load_sample
    from forge.features import DEFAULT_FEATURES, compute_features

    bars, _ = load_sample()
    fm = compute_features(bars, DEFAULT_FEATURES)
    reps = -(-n_bars // fm.values.shape[1])
    X = np.ascontiguousarray(np.tile(fm.values, (1, reps))[:, :n_bars])
    return tuple(fm.names), X


def _best_time(fn, repeats: int) -> float:
    best = math_inf = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best if best < math_inf else 0.0


def _interleaved_best(fns: dict[str, Any], repeats: dict[str, int]) -> dict[str, float]:
    """Best wall time of each callable over ``repeats[name]`` calls, the calls of all callables
    interleaved (a, b, c, a, b, c, ...) so a slow spell of the machine hits every side."""
    best = {k: float("inf") for k in fns}
    for r in range(max(repeats.values())):
        for k, fn in fns.items():
            if r < repeats[k]:
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
    return best


def tune_allocator(mmap_threshold: int = 256 * 2**20, trim_threshold: int = 2**30) -> str:
    """Give the numpy baselines glibc's best allocator settings for the rest of this process.

    DEAP's gp.compile evaluates a tree node by node into fresh (n,) temporaries (3.2 MB at 400,000 bars).
    With glibc's default, dynamic mmap / trim thresholds such blocks are often returned to the kernel when
    freed and page-faulted anew on the next allocation; measured here, that made DEAP + bottleneck 1.5-1.8x
    slower on an evolved population (benchmarks/RESULTS.md).  ``mallopt(M_MMAP_THRESHOLD)`` /
    ``mallopt(M_TRIM_THRESHOLD)`` keep them in the heap, so the baseline is measured at its best.  The VM
    preallocates its buffers and is not affected.

    returns a description of what was set (or why nothing was: not glibc, e.g. macOS or musl)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return f"default allocator (no glibc mallopt in {name!r})"
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    if mallopt(m_mmap_threshold, int(mmap_threshold)) != 1 or mallopt(m_trim_threshold, int(trim_threshold)) != 1:
        return "default allocator (glibc refused mallopt)"
    return (f"glibc mallopt: mmap threshold {mmap_threshold // 2**20} MiB, trim threshold {trim_threshold // 2**20} "
            "MiB (the baselines' temporaries reuse heap pages)")


# --------------------------------------------------------------------------- DEAP + bottleneck/scipy baseline


def _import_bottleneck():
    """(bottleneck, scipy.signal.lfilter, versions text) or raise ImportError naming the extra."""
    try:
        import bottleneck as bn
        import scipy
        from scipy.signal import lfilter
    except ImportError as exc:
        raise ImportError(f"{exc.name} is not installed (pip install -e '.[bench]')") from None
    return bn, lfilter, f"bottleneck {bn.__version__}, scipy {scipy.__version__}"


def library_primitives() -> dict[str, Any]:
    """The windowed primitives of ``forge.gp.primitives`` rewritten with well-kept O(n) libraries,
    as a user writing DEAP primitives would: name -> function of ((n,) float64, window) (or two
    series and a window for ``ts_corr``) returning (n,) float64.

    Same semantics as the references (NaN until ``w`` values and whenever a NaN is in the window,
    population std, the flat-window rule of z-score and correlation, here also tested as
    ``max - min <= 1e-10 |mean|`` because a running std keeps rounding residue in a constant
    window), except two differences inherited from the libraries: ``ts_rank`` uses
    ``bottleneck.move_rank``, which averages ties (the reference counts strictly smaller values),
    and running sums/recursions carry rounding error from earlier, larger values into nearly flat
    windows (the reference is two-pass per window; the VM recomputes exactly every ``w`` bars), so
    z-scores and correlations of such windows, and comparisons right at a threshold, can differ.
    Infinite inputs poison bottleneck's running sums and the lfilter state for the rest of the
    series.  ``smooth`` (position smoothing) is the rounded lfilter EMA, as the reference rounds its
    EMA (before, the bench kept the reference's O(n*w) ``smooth`` here, which flattered the VM).
    raises ImportError if bottleneck or scipy is missing.
    """
    from forge.gp.opcodes import SMOOTH_STEP

    bn, lfilter, _ = _import_bottleneck()

    def ts_mean(x, w):
        return bn.move_mean(x, w, min_count=w)

    def ts_std(x, w):
        return bn.move_std(x, w, min_count=w, ddof=0)

    def ts_min(x, w):
        return bn.move_min(x, w, min_count=w)

    def ts_max(x, w):
        return bn.move_max(x, w, min_count=w)

    def ts_rank(x, w):  # move_rank is in [-1, 1]; the reference's rank is in [0, 1]
        return (bn.move_rank(x, w, min_count=w) + 1.0) * 0.5

    def flat(x, w, m, s):
        # the reference's rule (std <= 1e-10 |mean|), plus max - min <= 1e-10 |mean| so a constant
        # window is flat although a running std leaves rounding residue from earlier windows in it
        rng_ = bn.move_max(x, w, min_count=w) - bn.move_min(x, w, min_count=w)
        return (s <= STD_REL_EPS * np.abs(m)) | (rng_ <= STD_REL_EPS * np.abs(m))

    def ts_zscore(x, w):
        m = bn.move_mean(x, w, min_count=w)
        s = bn.move_std(x, w, min_count=w, ddof=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(flat(x, w, m, s), 0.0, (x - m) / s)

    def ts_corr(x, y, w):
        mx, my = bn.move_mean(x, w, min_count=w), bn.move_mean(y, w, min_count=w)
        sx, sy = bn.move_std(x, w, min_count=w, ddof=0), bn.move_std(y, w, min_count=w, ddof=0)
        cov = bn.move_mean(x * y, w, min_count=w) - mx * my
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(flat(x, w, mx, sx) | flat(y, w, my, sy), 0.0, cov / (sx * sy))
        out[np.isnan(cov)] = np.nan  # a NaN in either window wins over the flat rule (as in the reference)
        return out

    def ema(x, w):
        # windowed (truncated) EMA of forge.gp.primitives.ema_weights via the infinite IIR sum:
        # S_t = y_t - beta**w * y_{t-w}, y = lfilter([1], [1, -beta], x); NaN windows masked after
        beta = 1.0 - 2.0 / (w + 1.0)
        nan = np.isnan(x)
        y = lfilter([1.0], [1.0, -beta], np.where(nan, 0.0, x))
        s = y.copy()
        s[w:] -= beta**w * y[:-w]
        out = s * ((1.0 - beta) / (1.0 - beta**w))
        out[: w - 1] = np.nan
        if nan.any():
            out[bn.move_max(nan.astype(np.float64), w, min_count=1) > 0] = np.nan
        return out

    def smooth(p, w):
        # position smoothing on the same O(n) EMA, rounded to SMOOTH_STEP as forge.gp.primitives.np_smooth
        return np.floor(ema(p, w) / SMOOTH_STEP + 0.5) * SMOOTH_STEP

    def short_ok(fn):
        # bottleneck refuses windows longer than the series; the reference returns all NaN there
        def wrapped(*args):
            x, w = args[0], args[-1]
            return np.full(x.shape[0], np.nan) if x.shape[0] < w else fn(*args)

        wrapped.__name__ = fn.__name__
        return wrapped

    return {f.__name__: short_ok(f) for f in (ts_mean, ts_std, ts_min, ts_max, ts_rank, ts_zscore, ts_corr, ema,
                                              smooth)}


def library_pset(feature_names):
    """``forge.gp.build_pset`` with the windowed primitives' DEAP context entries replaced by
    :func:`library_primitives` (so ``gp.compile`` of the same trees runs the library kernels)."""
    from forge.gp import build_pset

    pset = build_pset(feature_names)
    for name, fn in library_primitives().items():
        if name not in pset.context:
            raise KeyError(f"primitive {name!r} is not in the primitive set")
        pset.context[name] = fn
    return pset


def kernel_agreement(X: np.ndarray) -> dict[str, float]:
    """Per library kernel: max |library - reference| / max(1, max |reference|) over every feature
    row of X (f, n) and every window of ``forge.gp.primitives.WINDOWS``, plus whether both are NaN
    on the same bars (``<name>_nan_mismatch``: count of bars NaN in one only)."""
    from forge.gp.primitives import BY_NAME, WINDOWS

    out: dict[str, float] = {}
    for name, fn in library_primitives().items():
        ref_fn = BY_NAME[name].numpy_fn
        worst, nan_mis = 0.0, 0
        for i in range(X.shape[0]):
            for w in WINDOWS:
                args = (X[i], X[(i + 1) % X.shape[0]], w) if name == "ts_corr" else (X[i], w)
                a, b = fn(*args), ref_fn(*args)
                both = ~np.isnan(a) & ~np.isnan(b)
                nan_mis += int(np.count_nonzero(np.isnan(a) != np.isnan(b)))
                if both.any():
                    worst = max(worst, float(np.max(np.abs(a[both] - b[both]))) / max(1.0, float(np.max(np.abs(b[both])))))
        out[name] = worst
        out[f"{name}_nan_mismatch"] = nan_mis
    return out


def _vm_deap_agreement(trees: list[Any], pset: Any, bn_pset: Any, names: tuple[str, ...], small: np.ndarray,
                       pool: Any) -> tuple[list[float], int, int, float]:
    """Run every tree through the VM, DEAP on the numpy references and (when ``bn_pset`` is not None) DEAP
    on the library kernels over ``small`` (n_features, n_check) float64 bars; doubles as the JIT warm-up.

    returns (max |VM - reference| per tree, trees whose library positions equal the VM's on every bar,
    bars where they differ summed over trees, max |VM - library| over trees without ts_rank)."""
    from forge.gp import compile_program, deap_compile_function, genome_from_individual, run_program

    small_rows = [small[i] for i in range(small.shape[0])]
    diffs, bn_same, bn_bars, bn_diff_no_rank = [], 0, 0, 0.0
    for t in trees:
        a = run_program(compile_program(genome_from_individual(t, pset), names), small, pool)
        b = np.asarray(deap_compile_function(t, pset)(*small_rows), dtype=np.float64)
        diffs.append(float(np.nanmax(np.abs(a - b))) if a.size else 0.0)
        if bn_pset is not None:
            c = np.asarray(deap_compile_function(t, bn_pset)(*small_rows), dtype=np.float64)
            differ = int(np.count_nonzero(a != c))
            bn_same += differ == 0
            bn_bars += differ
            if "ts_rank" not in str(t) and a.size:
                bn_diff_no_rank = max(bn_diff_no_rank, float(np.max(np.abs(a - c))))
    return diffs, bn_same, bn_bars, bn_diff_no_rank


def vm_vs_deap(n_bars: int = 400_000, n_trees: int = 100, seed: int = 0, repeats: int = 5,
               naive_repeats: int = 3, check_bars: int = 50_000) -> dict[str, Any]:
    """Node-evaluations/s of the VM and of DEAP gp.compile on identical random trees, DEAP running
    (a) the project's numpy references and (b) the bottleneck/scipy kernels when installed.

    returns dict: nodes, n_bars, vm_seconds, deap_seconds, vm_node_evals_per_s,
    deap_node_evals_per_s, ratio (DEAP naive time / VM time), max_abs_diff (VM vs naive on the
    first ``check_bars`` bars), and when bottleneck imports: deap_bn_seconds,
    deap_bn_node_evals_per_s, ratio_bn, bn_trees_identical / bn_bars_differ_fraction (VM vs
    library positions on the check bars), bn_max_abs_diff_no_rank (trees without ts_rank),
    kernel_agreement (:func:`kernel_agreement`), bn_versions; else bn_error (why not).
    """
    from forge.gp import BufferPool, build_pset, compile_program, deap_compile_function, genome_from_individual, run_program
    from forge.gp import pset as gp_ops

    names, X = _tiled_features(n_bars)
    pset = build_pset(names)
    random.seed(rng.int_seed(seed, "bench", "deap"))
    ops = gp_ops.Operators(pset, max_depth=8, max_size=40)
    trees = ops.init_population(n_trees, 2, 6)
    nodes = sum(len(t) for t in trees)
    rows = [X[i] for i in range(X.shape[0])]
    pool = BufferPool()
    try:
        bn_pset = library_pset(names)
        _, _, bn_versions = _import_bottleneck()
        bn_error = None
    except ImportError as exc:
        bn_pset, bn_versions, bn_error = None, None, str(exc)

    def run_vm() -> None:
        for t in trees:
            run_program(compile_program(genome_from_individual(t, pset), names), X, pool)

    def run_deap() -> None:
        for t in trees:
            np.asarray(deap_compile_function(t, pset)(*rows), dtype=np.float64)

    def run_deap_bn() -> None:
        for t in trees:
            np.asarray(deap_compile_function(t, bn_pset)(*rows), dtype=np.float64)

    # warm-up (JIT) and agreement check on the same trees, first check_bars bars
    small = np.ascontiguousarray(X[:, :min(check_bars, n_bars)])
    diffs, bn_same, bn_bars, bn_diff_no_rank = _vm_deap_agreement(trees, pset, bn_pset, names, small, pool)
    fns = {"vm": run_vm, "deap": run_deap}
    reps = {"vm": repeats, "deap": naive_repeats}
    if bn_pset is not None:
        fns["deap_bn"], reps["deap_bn"] = run_deap_bn, repeats
    secs = _interleaved_best(fns, reps)
    work = nodes * n_bars
    out: dict[str, Any] = {
        "n_trees": n_trees,
        "nodes": nodes,
        "n_bars": n_bars,
        "vm_seconds": secs["vm"],
        "deap_seconds": secs["deap"],
        "vm_node_evals_per_s": work / secs["vm"],
        "deap_node_evals_per_s": work / secs["deap"],
        "ratio": secs["deap"] / secs["vm"],
        "max_abs_diff": max(diffs) if diffs else 0.0,
        "check_bars": small.shape[1],
        "repeats": repeats,
        "naive_repeats": naive_repeats,
    }
    if bn_pset is None:
        out["bn_error"] = bn_error
    else:
        out.update({
            "bn_versions": bn_versions,
            "deap_bn_seconds": secs["deap_bn"],
            "deap_bn_node_evals_per_s": work / secs["deap_bn"],
            "ratio_bn": secs["deap_bn"] / secs["vm"],
            "bn_trees_identical": bn_same,
            "bn_bars_differ_fraction": bn_bars / (n_trees * small.shape[1]),
            "bn_max_abs_diff_no_rank": bn_diff_no_rank,
            "kernel_agreement": kernel_agreement(small),
        })
    return out
