"""``forge bench``: speed measured side by side in one run, against named baselines.

Rows (every ratio is computed from numbers measured in the same run)
- VM node-evaluations/s vs DEAP ``gp.compile`` on the identical trees and the
  same bars, with two primitive implementations behind DEAP:
  (a) the project's numpy references (``forge.gp.primitives``; rolling windows
      by ``sliding_window_view``, O(n*w) per window) and
  (b) what a user writing DEAP primitives would reach for: bottleneck's
      ``move_mean/move_std/move_min/move_max/move_rank`` (O(n) running
      windows; ``move_rank`` is O(n*w) in C) and ``scipy.signal.lfilter``
      for the EMA (O(n) recursion).  Both sides include turning the tree into
      something runnable (our opcode compiler vs DEAP's string compile) and
      evaluating it over every bar; (b) is checked against the VM on the same
      trees (positions that differ, and each kernel against its reference).
- Memory bandwidth of this machine: a plain numpy ``copyto``/``add`` over
  (n_bars,) float64 arrays (the size of one VM register), and over 128 MB
  arrays (meant to exceed the caches; this VM reports a 300 MiB shared L3,
  so that figure may be partly cached), so VM throughput can be read against the
  physical limit of a VM that materialises every node.
- Backtest bars/s of ``backtest_metrics`` vs vectorbt's own
  ``Portfolio.from_orders``/``from_signals`` on the same bars and positions
  (optional ``bench`` extra; when vectorbt does not import the row says
  "not installable here: <reason>" instead of a number).

Bars are the embedded sample's real features tiled in time to ``n_bars``.
Timings are best-of-``repeats`` wall clock on one core (numba is single
threaded here; the repeats of the sides are interleaved so a slow spell of a
shared machine hits all of them); JIT compilation is excluded by a warm-up pass.
"""

from __future__ import annotations

import os
import platform
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
    series.  raises ImportError if bottleneck or scipy is missing.
    """
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

    def short_ok(fn):
        # bottleneck refuses windows longer than the series; the reference returns all NaN there
        def wrapped(*args):
            x, w = args[0], args[-1]
            return np.full(x.shape[0], np.nan) if x.shape[0] < w else fn(*args)

        wrapped.__name__ = fn.__name__
        return wrapped

    return {f.__name__: short_ok(f) for f in (ts_mean, ts_std, ts_min, ts_max, ts_rank, ts_zscore, ts_corr, ema)}


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


# --------------------------------------------------------------------------- memory bandwidth


def memory_bandwidth(n: int = 400_000, big: int = 16_000_000, repeats: int = 20) -> dict[str, Any]:
    """Plain numpy streaming passes over float64 arrays, best of ``repeats``.

    ``copy``: ``np.copyto(dst, src)`` (16 bytes moved per element); ``add``:
    ``np.add(a, b, out=c)`` (24 bytes per element: two reads, one write).  At ``n`` elements (one
    VM register, 8n bytes; usually cache-resident) and at ``big`` elements (8 * big bytes per array,
    meant to exceed the caches: towards main-memory bandwidth).  A VM that materialises every node's (n,) result cannot do
    more binary node-evaluations per second than ``add_elems_per_s``.
    returns {"n", "big", "<copy|add>_<small|big>_gb_per_s", "<...>_elems_per_s"}.
    """
    out: dict[str, Any] = {"n": n, "big": big}
    for label, size, reps in (("small", n, repeats * 10), ("big", big, max(3, repeats // 4))):
        a, b, c = (np.random.default_rng(i).random(size) for i in range(3))
        np.copyto(c, a)
        np.add(a, b, out=c)
        t_copy = _best_time(lambda: np.copyto(c, a), reps)
        t_add = _best_time(lambda: np.add(a, b, out=c), reps)
        out[f"copy_{label}_elems_per_s"] = size / t_copy
        out[f"copy_{label}_gb_per_s"] = 16 * size / t_copy / 1e9
        out[f"add_{label}_elems_per_s"] = size / t_add
        out[f"add_{label}_gb_per_s"] = 24 * size / t_add / 1e9
        del a, b, c
    return out


# --------------------------------------------------------------------------- backtest vs vectorbt


def _bench_bars(n_bars: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """open, close ((n,) float64 USDT, the embedded sample's real bars tiled in time), open_time ((n,)
    int64 ms from 2024-06-01 00:00 UTC) and a target position in {-1, 0, +1} switching to another
    level with probability 1/50 per bar (drawn from ``rng.generator(seed, "bench", "vectorbt")``)."""
    from forge.data.loader import load_sample

    bars, _ = load_sample()
    reps = -(-n_bars // bars.height)
    o = np.ascontiguousarray(np.tile(bars["open"].to_numpy(), reps)[:n_bars], dtype=np.float64)
    c = np.ascontiguousarray(np.tile(bars["close"].to_numpy(), reps)[:n_bars], dtype=np.float64)
    t = 1_717_200_000_000 + 60_000 * np.arange(n_bars, dtype=np.int64)
    g = rng.generator(seed, "bench", "vectorbt")
    change = g.random(n_bars) < 1.0 / 50.0
    shift = g.integers(1, 3, n_bars)
    pos = (np.cumsum(change * shift) % 3 - 1).astype(np.float64)
    return o, c, t, pos


def backtest_vs_vectorbt(n_bars: int = 400_000, seed: int = 0, repeats: int = 100, vbt_repeats: int = 10) -> dict[str, Any]:
    """Bars/s of the project's backtester and of vectorbt's own portfolio simulation on the same bars
    and target positions (:func:`_bench_bars`), default ``BacktestConfig`` costs on both sides.

    The project: ``backtest_metrics`` (fitness path: metrics only) and ``run_backtest`` (equity,
    trade records, metrics).  vectorbt: ``Portfolio.from_orders`` with ``size_type="targetpercent"``,
    orders only where the target changes, ``price`` = ``val_price`` = the next bar's open (the
    project fills the target decided at close t at open t+1), the same fee and slippage; timed as
    the simulation alone and with ``value()``, ``total_return()``, ``sharpe_ratio()`` and
    ``max_drawdown()``; and ``Portfolio.from_signals`` (long/short entries and exits where the
    target changes, default size = all cash).  Best of ``repeats`` (project) / ``vbt_repeats``
    (vectorbt) interleaved calls; the first call of each (JIT) is not timed.

    returns dict with n_bars, fills, ours_metrics_seconds, ours_record_seconds and, when vectorbt
    imports, vbt_version, vbt_orders_seconds, vbt_orders_metrics_seconds, vbt_signals_seconds,
    vbt_fills (orders / signals), vbt_max_rel_equity_diff (orders / signals vs ``run_backtest``);
    else vbt_error (why it is not installable/importable here).
    """
    from forge.backtest import BacktestConfig, backtest_metrics, run_backtest

    o, c, t, pos = _bench_bars(n_bars, seed)
    cfg = BacktestConfig()
    ref = run_backtest(o, c, t, pos, cfg)
    out: dict[str, Any] = {"n_bars": n_bars, "fills": int(ref.trades.shape[0])}
    fns: dict[str, Any] = {"ours_metrics": lambda: backtest_metrics(o, c, t, pos, cfg),
                           "ours_record": lambda: run_backtest(o, c, t, pos, cfg)}
    reps = {"ours_metrics": repeats, "ours_record": max(vbt_repeats, repeats // 10)}
    try:
        import vectorbt as vbt
    except Exception as exc:  # ImportError, or a dependency failing at import time
        out["vbt_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        vbt = None
    if vbt is not None:
        held = np.concatenate(([0.0], pos[:-1]))  # target in force from each bar's open
        chg = held != np.concatenate(([0.0], held[:-1]))
        size = np.where(chg, held, np.nan)
        common = dict(close=c, price=o, fees=cfg.taker_fee_bps / 1e4, slippage=cfg.slippage_bps / 1e4,
                      init_cash=cfg.initial_capital, freq="1min")

        def vbt_orders():
            return vbt.Portfolio.from_orders(size=size, size_type="targetpercent", val_price=o, **common)

        def vbt_orders_metrics():
            pf = vbt_orders()
            return pf.value(), pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown()

        long_e, short_e, flat = chg & (held > 0), chg & (held < 0), chg & (held == 0)

        def vbt_signals():
            return vbt.Portfolio.from_signals(entries=long_e, exits=flat, short_entries=short_e, short_exits=flat,
                                              **common)

        pf_o, pf_s = vbt_orders(), vbt_signals()  # JIT warm-up + agreement
        vbt_orders_metrics()
        eq_o, eq_s = pf_o.value().to_numpy(), pf_s.value().to_numpy()
        out.update({
            "vbt_version": vbt.__version__,
            "vbt_fills_orders": int(pf_o.orders.count()),
            "vbt_fills_signals": int(pf_s.orders.count()),
            "vbt_max_rel_equity_diff_orders": float(np.max(np.abs(eq_o - ref.equity) / ref.equity)),
            "vbt_max_rel_equity_diff_signals": float(np.max(np.abs(eq_s - ref.equity) / ref.equity)),
        })
        fns.update({"vbt_orders": vbt_orders, "vbt_orders_metrics": vbt_orders_metrics, "vbt_signals": vbt_signals})
        reps.update({"vbt_orders": vbt_repeats, "vbt_orders_metrics": vbt_repeats, "vbt_signals": vbt_repeats})
    fns["ours_metrics"]()
    fns["ours_record"]()
    secs = _interleaved_best(fns, reps)
    for k, s in secs.items():
        out[f"{k}_seconds"] = s
        out[f"{k}_bars_per_s"] = n_bars / s
    return out


# --------------------------------------------------------------------------- forge bench (short rows)


def _vm_rows(vm: dict[str, Any], n_bars: int) -> list[dict[str, str]]:
    what = f"({vm['n_trees']} random trees, {vm['nodes']} nodes, {n_bars:,} bars)"
    rows = [{
        "name": f"VM node-evals/s {what}",
        "measured": f"{vm['vm_node_evals_per_s'] / 1e6:,.1f} M/s",
        "baseline": "DEAP gp.compile + the project's numpy references (rolling windows by sliding_window_view, "
                    f"O(n*w); same trees, same run, best of {vm['naive_repeats']})",
        "baseline_measured": f"{vm['deap_node_evals_per_s'] / 1e6:,.1f} M/s",
        "ratio": f"{vm['ratio']:.2f}x",
        "goal": ">= 1.0x",
    }]
    if "bn_error" in vm:
        rows.append({"name": f"VM node-evals/s {what}", "measured": f"{vm['vm_node_evals_per_s'] / 1e6:,.1f} M/s",
                     "baseline": "DEAP gp.compile + bottleneck/scipy.signal.lfilter kernels",
                     "baseline_measured": f"not installable here: {vm['bn_error']}", "ratio": "—", "goal": ">= 3x"})
    else:
        rows.append({
            "name": f"VM node-evals/s {what}",
            "measured": f"{vm['vm_node_evals_per_s'] / 1e6:,.1f} M/s",
            "baseline": f"DEAP gp.compile + O(n) library kernels ({vm['bn_versions']}: bottleneck move_mean/"
                        "move_std/move_min/move_max/move_rank, scipy.signal.lfilter EMA; same trees, same run, "
                        f"best of {vm['repeats']}; positions equal to the VM's on {vm['bn_trees_identical']}/"
                        f"{vm['n_trees']} trees, {vm['bn_bars_differ_fraction']:.3%} of bars differ)",
            "baseline_measured": f"{vm['deap_bn_node_evals_per_s'] / 1e6:,.1f} M/s",
            "ratio": f"{vm['ratio_bn']:.2f}x",
            "goal": ">= 3x (issue 21)",
        })
    return rows


def _bandwidth_row(bw: dict[str, Any], vm: dict[str, Any]) -> dict[str, str]:
    return {
        "name": f"memory bandwidth: numpy add c = a + b over ({bw['n']:,},) float64 (one VM register) / over "
                f"({bw['big']:,},) ({bw['big'] * 8 / 1e6:,.0f} MB per array)",
        "measured": f"{bw['add_small_elems_per_s'] / 1e6:,.0f} / {bw['add_big_elems_per_s'] / 1e6:,.0f} M elem/s "
                    f"({bw['add_small_gb_per_s']:,.1f} / {bw['add_big_gb_per_s']:,.1f} GB/s; copy "
                    f"{bw['copy_small_gb_per_s']:,.1f} / {bw['copy_big_gb_per_s']:,.1f} GB/s)",
        "baseline": "VM node-evals/s above (a VM materialising every node cannot beat one add pass per node)",
        "baseline_measured": f"{vm['vm_node_evals_per_s'] / 1e6:,.1f} M/s",
        "ratio": f"VM at {vm['vm_node_evals_per_s'] / bw['add_small_elems_per_s']:.0%} of the in-cache add bound",
        "goal": "—",
    }


def _backtest_rows(bt: dict[str, Any]) -> list[dict[str, str]]:
    n = bt["n_bars"]
    ours = f"{bt['ours_metrics_bars_per_s'] / 1e6:,.1f} M/s"
    name = (f"backtest_metrics bars/s ({n:,} bars of the embedded sample tiled, 1 column, {bt['fills']:,} fills; "
            f"run_backtest with records: {bt['ours_record_bars_per_s'] / 1e6:,.1f} M/s)")
    if "vbt_error" in bt:
        return [{"name": name, "measured": ours, "baseline": "vectorbt Portfolio.from_orders / from_signals",
                 "baseline_measured": f"not installable here: {bt['vbt_error']}", "ratio": "—", "goal": ">= 100 M/s"}]
    agree = (f"same bars/positions/costs; {bt['vbt_fills_orders']:,} / {bt['vbt_fills_signals']:,} fills, equity "
             f"within {bt['vbt_max_rel_equity_diff_orders']:.1%} / {bt['vbt_max_rel_equity_diff_signals']:.1%} "
             "of run_backtest's")
    return [
        {"name": name, "measured": ours,
         "baseline": f"vectorbt {bt['vbt_version']} Portfolio.from_orders(size_type='targetpercent'), simulation "
                     f"only ({agree})",
         "baseline_measured": f"{bt['vbt_orders_bars_per_s'] / 1e6:,.2f} M/s",
         "ratio": f"{bt['vbt_orders_seconds'] / bt['ours_metrics_seconds']:.1f}x", "goal": ">= 100 M/s"},
        {"name": name, "measured": ours,
         "baseline": f"vectorbt {bt['vbt_version']} from_orders + value/total_return/sharpe_ratio/max_drawdown",
         "baseline_measured": f"{bt['vbt_orders_metrics_bars_per_s'] / 1e6:,.2f} M/s",
         "ratio": f"{bt['vbt_orders_metrics_seconds'] / bt['ours_metrics_seconds']:.1f}x", "goal": "—"},
        {"name": name, "measured": ours,
         "baseline": f"vectorbt {bt['vbt_version']} Portfolio.from_signals (long/short entries and exits), "
                     "simulation only",
         "baseline_measured": f"{bt['vbt_signals_bars_per_s'] / 1e6:,.2f} M/s",
         "ratio": f"{bt['vbt_signals_seconds'] / bt['ours_metrics_seconds']:.1f}x", "goal": "—"},
    ]


def run_bench(n_bars: int = 400_000, n_trees: int = 100, seed: int = 0, progress=None) -> dict[str, Any]:
    """All short ``forge bench`` rows.  returns {"machine", "rows": [...], "raw": {...}}."""
    say = progress or (lambda _m: None)
    say("VM vs DEAP (numpy references, bottleneck/scipy kernels) on random trees")
    vm = vm_vs_deap(n_bars=n_bars, n_trees=n_trees, seed=seed)
    say("memory bandwidth")
    bw = memory_bandwidth(n=n_bars)
    say("backtest vs vectorbt")
    bt = backtest_vs_vectorbt(n_bars=n_bars, seed=seed)
    rows = _vm_rows(vm, n_bars) + [_bandwidth_row(bw, vm)] + _backtest_rows(bt)
    machine = f"{platform.machine()} {platform.system()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    return {"machine": machine, "rows": rows, "raw": {"vm_vs_deap": vm, "bandwidth": bw, "backtest": bt}}


def render_markdown(results: dict[str, Any], command: str) -> str:
    """benchmarks/RESULTS.md body for ``results`` produced by ``command``."""
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` on {results['machine']} (one core; numba single-threaded).",
        "",
        "| benchmark | measured | baseline | baseline measured | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(f"| {r['name']} | {r['measured']} | {r['baseline']} | {r['baseline_measured']} | {r['ratio']} | {r['goal']} |")
    vm = results["raw"]["vm_vs_deap"]
    lines += ["", f"VM and DEAP (numpy references) outputs agree on the benchmark trees' first {vm['check_bars']:,} "
                  f"bars to max |diff| = {vm['max_abs_diff']:.2e}."]
    if "kernel_agreement" in vm:
        ka = vm["kernel_agreement"]
        ks = ", ".join(f"{k} {v:.1e}" + (f" ({ka[k + '_nan_mismatch']} NaN mismatches)" if ka[k + "_nan_mismatch"] else "")
                       for k, v in ka.items() if not k.endswith("_nan_mismatch"))
        lines.append(f"Library kernels vs the references on every feature and window (max |diff| / max(1, max |ref|)): "
                     f"{ks}; ts_rank differs on ties by design (bottleneck averages tied ranks). Trees without "
                     f"ts_rank: max |VM - DEAP+bottleneck| = {vm['bn_max_abs_diff_no_rank']:.2e}.")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- forge bench --full


def evolved_genomes(generations: int = 10, population: int = 100, seed: int = 0) -> list[Any]:
    """The final population of a real evolution (embedded sample, smoke
    settings, ``generations`` generations), read from its checkpoint."""
    import json
    import tempfile
    from pathlib import Path

    from forge.evolve import evolve
    from forge.gp import Genome
    from forge.settings import RunConfig, with_overrides

    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(RunConfig(), "evolve", generations=generations, population=population, seed=seed,
                             output_dir=tmp)
        cfg = with_overrides(cfg, "causal", enabled=False)
        cfg = with_overrides(cfg, "surrogate", candidates_factor=10, top_fraction=0.1, min_train=32)
        res = evolve(cfg, run_dir=Path(tmp) / "run")
        ck = json.loads((res.run_dir / "checkpoint.json").read_text())
    return [Genome.from_dict(e["genome"]) for e in ck["population"]]


def vm_cache_vs_deap(genomes: list[Any], n_bars: int = 400_000, repeats: int = 3) -> dict[str, Any]:
    """VM (subtree cache on, and off) vs DEAP gp.compile on an identical evolved population, DEAP with
    the numpy references (one timed pass: ~20 s) and with the bottleneck/scipy kernels of
    :func:`library_primitives` (best of ``repeats``; ``bn_error`` says why not when missing)."""
    from forge.gp import build_pset, compile_program, deap_compile_function, individual_from_genome, run_program
    from forge.gp.cache import SubtreeCache

    names, X = _tiled_features(n_bars)
    pset = build_pset(names)
    trees = [individual_from_genome(g, pset) for g in genomes]
    rows = [X[i] for i in range(X.shape[0])]
    nodes = sum(len(g.tokens) for g in genomes)

    def run_cached() -> None:
        cache = SubtreeCache(X, names, max_bytes=2 * 2**30)
        for g in genomes:
            cache.run(g)
        run_cached.hit_rate = cache.hit_rate  # type: ignore[attr-defined]

    def run_plain() -> None:
        for g in genomes:
            run_program(compile_program(g, names), X)

    def run_deap() -> None:
        for t in trees:
            np.asarray(deap_compile_function(t, pset)(*rows), dtype=np.float64)

    try:
        bn_pset = library_pset(names)
    except ImportError as exc:
        bn_pset, bn_error = None, str(exc)

    def run_deap_bn() -> None:
        for t in trees:
            np.asarray(deap_compile_function(t, bn_pset)(*rows), dtype=np.float64)

    small = np.ascontiguousarray(X[:, :5000])
    cache = SubtreeCache(small, names)
    for g in genomes:  # JIT warm-up + agreement
        assert np.array_equal(cache.run(g), run_program(compile_program(g, names), small))
    fns = {"cached": run_cached, "plain": run_plain, "deap": run_deap}
    reps = {"cached": repeats, "plain": repeats, "deap": 1}
    if bn_pset is not None:
        fns["deap_bn"], reps["deap_bn"] = run_deap_bn, repeats
    secs = _interleaved_best(fns, reps)
    cached_s, plain_s, deap_s = secs["cached"], secs["plain"], secs["deap"]
    work = nodes * n_bars
    out = {"n_trees": len(genomes), "nodes": nodes, "n_bars": n_bars, "cached_seconds": cached_s,
           "vm_seconds": plain_s, "deap_seconds": deap_s, "cache_hit_rate": run_cached.hit_rate,  # type: ignore[attr-defined]
           "cached_node_evals_per_s": work / cached_s, "vm_node_evals_per_s": work / plain_s,
           "deap_node_evals_per_s": work / deap_s, "ratio_cached": deap_s / cached_s, "ratio_plain": deap_s / plain_s}
    if bn_pset is None:
        out["bn_error"] = bn_error
    else:
        out.update({"deap_bn_seconds": secs["deap_bn"], "deap_bn_node_evals_per_s": work / secs["deap_bn"],
                    "ratio_bn_cached": secs["deap_bn"] / cached_s, "ratio_bn_plain": secs["deap_bn"] / plain_s})
    return out


def _market(n_bars: int):
    from forge.data.gaps import bars_since_gap
    from forge.evolve import MarketArrays
    from forge.features import FeatureMatrix

    names, X = _tiled_features(n_bars)
    from forge.data.loader import load_sample

    bars, _ = load_sample()
    reps = -(-n_bars // bars.height)
    o = np.tile(bars["open"].to_numpy(), reps)[:n_bars]
    c = np.tile(bars["close"].to_numpy(), reps)[:n_bars]
    t = (np.arange(n_bars, dtype=np.int64) * 60_000) + int(bars["open_time"][0])
    fm = FeatureMatrix(names=names, values=X, lookbacks=(0,) * len(names))
    import polars as pl

    frame = pl.DataFrame({"open_time": t, "open": o, "close": c})
    return MarketArrays(feature_names=names, feature_lookbacks=fm.lookbacks, X=X, open_=o, close=c, open_time=t,
                        bars_since_gap=bars_since_gap(t), token=f"bench-{n_bars}"), frame


def worker_scaling(genomes: list[Any], n_bars: int = 400_000, repeats: int = 7) -> dict[str, Any]:
    """Fitness evaluations/s of the same genomes with 1 and 2 joblib workers (cache off).

    Both evaluators stay open and their passes alternate (1, 2, 1, 2, ...), so a slow spell of the
    machine hits both; returns the best pass of each and the median of the per-pair ratios
    (``speedup``), which is robust to one noisy pass (a pass is ~1 s)."""
    from forge.backtest import BacktestConfig
    from forge.evolve import Evaluator
    from forge.settings import FitnessSection

    data, _ = _market(n_bars)
    with Evaluator(data, BacktestConfig(), FitnessSection(), 40, 1) as ev1, \
            Evaluator(data, BacktestConfig(), FitnessSection(), 40, 2) as ev2:
        for ev in (ev1, ev2):
            ev.evaluate(genomes[:4])  # warm-up (workers start, JIT load)
        secs: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeats):
            for jobs, ev in ((1, ev1), (2, ev2)):
                ev.memo.clear()
                t0 = time.perf_counter()
                ev.evaluate(genomes)
                secs[jobs].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(secs[1], secs[2])]
    return {"n_genomes": len(genomes), "n_bars": n_bars, "seconds_1": min(secs[1]), "seconds_2": min(secs[2]),
            "speedup": float(np.median(ratios)), "speedup_per_pair": ratios}


def surrogate_screens(n_candidates: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Candidates screened per second: descriptors incl. the proxy backtest on 2,000 bars, plus the LightGBM ranking."""
    from forge.backtest import BacktestConfig
    from forge.evolve import Evaluator
    from forge.gp import Operators, build_pset, genome_from_individual
    from forge.settings import FitnessSection
    from forge.surrogate import Surrogate, SurrogateSection, describe

    data, _ = _market(2000)
    pset = build_pset(data.feature_names)
    random.seed(rng.int_seed(seed, "bench", "surrogate"))
    trees = Operators(pset, 8, 40).init_population(n_candidates + 300, 2, 6)
    genomes = [genome_from_individual(t, pset) for t in trees]
    sur = Surrogate(SurrogateSection(), seed=seed)
    with Evaluator(data, BacktestConfig(), FitnessSection(), 40, 1) as ev:
        warm = genomes[:300]
        fits = [f for f, _ in ev.evaluate(warm)]
        sur.observe(np.vstack([describe(g, data.feature_names, f) for g, f in zip(warm, fits)]), fits)
        t0 = time.perf_counter()
        cand = genomes[300:]
        proxies = [f for f, _ in ev.evaluate(cand)]
        X = np.vstack([describe(g, data.feature_names, p) for g, p in zip(cand, proxies)])
        sur.select(X, rng.generator(seed, "bench", "select"))
        s = time.perf_counter() - t0
    return {"n_candidates": n_candidates, "seconds": s, "screens_per_s": n_candidates / s}


def end_to_end(n_bars: int = 525_600, generations: int = 3) -> dict[str, Any]:
    """Generations per minute of the default config (causal filter on) on
    one year of BTCUSDT 1m bars (the shared data's last year when present,
    else the sample tiled in time)."""
    import json
    import tempfile
    from pathlib import Path

    import polars as pl

    from forge.data.loader import load_klines, load_sample
    from forge.evolve import evolve
    from forge.settings import load_run_config, with_overrides

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"
    if shared.is_dir():
        bars, _ = load_klines([shared])
        bars = bars.tail(n_bars)
        source = f"shared BTCUSDT, last {bars.height:,} bars"
    else:
        sample, _ = load_sample()
        reps = -(-n_bars // sample.height)
        span = sample.height * 60_000
        bars = pl.concat([sample.with_columns(pl.col("open_time") + k * span, pl.col("close_time") + k * span)
                          for k in range(reps)]).head(n_bars)
        source = f"embedded sample tiled to {bars.height:,} bars"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(load_run_config(None), "evolve", generations=generations, output_dir=tmp)
        t0 = time.perf_counter()
        res = evolve(cfg, bars=bars, run_dir=Path(tmp) / "run")
        total = time.perf_counter() - t0
        rows = [json.loads(x) for x in (res.run_dir / "generations.jsonl").read_text().splitlines()]
    later = [r for r in rows if r["gen"] >= 1]
    per_gen = float(np.mean([r["seconds"] for r in later]))
    return {"source": source, "n_bars": bars.height, "generations": generations, "total_seconds": total,
            "seconds_per_generation": per_gen, "generations_per_minute": 60.0 / per_gen,
            "population": cfg.evolve.population, "candidates_per_generation": rows[-1].get("candidates"),
            **generation_phases(later)}


def generation_phases(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean per-phase clock of ``generations.jsonl`` rows (``forge.evolution.clock``): {"phase_seconds":
    {phase: mean s}, "nevals": mean full evaluations, "encounters": mean co-evolution encounters,
    "fitness_evals_per_s": full evaluations per second of fitness time (pooled over the rows)}."""
    from forge.evolution.clock import PHASES

    rows = [r for r in rows if isinstance(r.get("phase_seconds"), dict)]
    if not rows:
        return {"phase_seconds": {}, "nevals": 0.0, "encounters": 0.0, "fitness_evals_per_s": 0.0}
    fit_s = sum(r["phase_seconds"]["fitness"] for r in rows)
    return {"phase_seconds": {p: float(np.mean([r["phase_seconds"][p] for r in rows])) for p in PHASES},
            "nevals": float(np.mean([r["nevals"] for r in rows])),
            "encounters": float(np.mean([r.get("encounters") or 0 for r in rows])),
            "fitness_evals_per_s": sum(r["nevals"] for r in rows) / fit_s if fit_s > 0 else 0.0}


def phase_rows(e2e: dict[str, Any]) -> list[dict[str, str]]:
    """``forge bench --full`` rows of the per-phase table of a default generation (from :func:`end_to_end`)."""
    per_gen = e2e["seconds_per_generation"]
    out = []
    for phase, secs in e2e["phase_seconds"].items():
        extra = ""
        if phase == "fitness":
            extra = f"; {e2e['nevals']:.0f} full evaluations, {e2e['fitness_evals_per_s']:.0f} evals/s of fitness time"
        elif phase == "coevolution":
            extra = f"; {e2e['encounters']:.0f} encounters"
        out.append({"name": f"default generation phase `{phase}` (mean of generations >= 1{extra})",
                    "measured": f"{secs:.2f} s", "baseline": "the generation's wall time",
                    "baseline_measured": f"{per_gen:.2f} s", "ratio": f"{secs / per_gen:.0%}" if per_gen else "—",
                    "goal": "—"})
    return out


def peak_memory_symbols(n_symbols: int = 5, n_bars: int = 525_600) -> dict[str, Any]:
    """Peak RSS of ``forge evolve`` over ``n_symbols`` symbols x one year of 1m bars (1 generation),
    in a child process; symbols are copies of BTCUSDT at other price levels."""
    import resource
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import polars as pl

    from forge.data.loader import load_sample

    sample, _ = load_sample()
    reps = -(-n_bars // sample.height)
    span = sample.height * 60_000
    year = pl.concat([sample.with_columns(pl.col("open_time") + k * span, pl.col("close_time") + k * span)
                      for k in range(reps)]).head(n_bars).with_columns(pl.lit(0).alias("ignore"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        syms = [f"SYM{i}USDT" for i in range(n_symbols)]
        for i, s in enumerate(syms):
            scaled = year.with_columns([pl.col(c) * (1.0 + 0.5 * i) for c in ("open", "high", "low", "close")])
            scaled.write_csv(root / f"{s}-1m-2024-01.csv", include_header=False)
        cmd = [str(Path(sys.executable).parent / "forge"), "evolve", "--data", str(root), "--symbols", ",".join(syms),
               "--gens", "1", "--pop", "50", "--causal-filter", "off", "--out", str(root / "runs")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                              env={**__import__("os").environ, "FORGE_CACHE_DIR": str(root / "cache")})
        secs = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark run failed: {proc.stderr[-2000:]}")
    return {"n_symbols": n_symbols, "n_bars_per_symbol": n_bars, "peak_rss_gib": max(peak_kib, before) / 2**20,
            "seconds": secs}


def run_bench_full(n_bars: int = 400_000, seed: int = 0, progress=None) -> dict[str, Any]:
    """Every ``forge bench --full`` row, measured in one run on this machine."""
    say = progress or (lambda _m: None)
    say("short rows (VM vs DEAP on random trees, memory bandwidth, backtest vs vectorbt)")
    base = run_bench(n_bars=n_bars, seed=seed, progress=say)
    rows, raw = list(base["rows"]), dict(base["raw"])
    say("evolving a population for 10 generations (embedded sample)")
    genomes = evolved_genomes(seed=seed)
    say("VM with subtree cache vs DEAP on the evolved population")
    vc = vm_cache_vs_deap(genomes, n_bars=n_bars)
    raw["vm_cache_vs_deap"] = vc
    rows.append({"name": f"VM + subtree cache node-evals/s (evolved population, gen 10, {vc['n_trees']} trees, "
                         f"{vc['nodes']} nodes; hit rate {vc['cache_hit_rate']:.0%})",
                 "measured": f"{vc['cached_node_evals_per_s'] / 1e6:,.1f} M/s",
                 "baseline": "DEAP gp.compile + the project's numpy references, O(n*w) windows (same trees, "
                             "same run, one pass)",
                 "baseline_measured": f"{vc['deap_node_evals_per_s'] / 1e6:,.1f} M/s",
                 "ratio": f"{vc['ratio_cached']:.2f}x (no cache: {vc['ratio_plain']:.2f}x)", "goal": ">= 3x"})
    cached_name = rows[-1]["name"]
    if "bn_error" in vc:
        rows.append({"name": cached_name, "measured": f"{vc['cached_node_evals_per_s'] / 1e6:,.1f} M/s",
                     "baseline": "DEAP gp.compile + bottleneck/scipy.signal.lfilter kernels",
                     "baseline_measured": f"not installable here: {vc['bn_error']}", "ratio": "—", "goal": ">= 5x"})
    else:
        rows.append({"name": cached_name, "measured": f"{vc['cached_node_evals_per_s'] / 1e6:,.1f} M/s",
                     "baseline": "DEAP gp.compile + O(n) library kernels (bottleneck move_*, scipy.signal.lfilter "
                                 "EMA; same trees, same run)",
                     "baseline_measured": f"{vc['deap_bn_node_evals_per_s'] / 1e6:,.1f} M/s",
                     "ratio": f"{vc['ratio_bn_cached']:.2f}x (no cache: {vc['ratio_bn_plain']:.2f}x)",
                     "goal": ">= 5x (no cache >= 3x; issue 21)"})
    try:
        from forge.sim.market import sim_throughput

        say("simulator events/s")
        st = sim_throughput(seed)
        raw["simulator"] = st
        rows.append({"name": f"simulator book events/s incl. agents (1 day = {st['day_minutes']} bars in "
                             f"{st['seconds_per_day']:.2f} s)",
                     "measured": f"{st['events_per_s'] / 1e6:,.2f} M/s",
                     "baseline": "ABIDES (quoted); pure-Python reference book replaying the same messages, "
                                 "same run (numba book alone on them: "
                                 f"{st['numba_book_msgs_per_s'] / 1e6:,.1f} M/s)",
                     "baseline_measured": f"0.014 M/s; {st['python_book_msgs_per_s'] / 1e6:,.3f} M/s",
                     "ratio": f"{st['sim_vs_abides_ratio']:.0f}x; book vs book {st['book_ratio']:.1f}x",
                     "goal": ">= 3 M/s (issue 21), day <= 1 s"})
    except ImportError:
        pass
    say("surrogate screens/s")
    ss = surrogate_screens(seed=seed)
    raw["surrogate"] = ss
    rows.append({"name": f"surrogate screens/s ({ss['n_candidates']:,} candidates: descriptors + 2,000-bar proxy "
                         "backtest + LightGBM rank)",
                 "measured": f"{ss['screens_per_s']:,.0f} /s", "baseline": "full fitness evaluations/s (below)",
                 "baseline_measured": "see scaling row", "ratio": "—", "goal": "—"})
    say("worker scaling 1 -> 2")
    ws = worker_scaling(genomes, n_bars=n_bars)
    raw["scaling"] = ws
    pairs = ws["speedup_per_pair"]
    rows.append({"name": f"fitness evaluation, 1 -> 2 joblib workers ({ws['n_genomes']} genomes x {n_bars:,} bars; "
                         f"{len(pairs)} alternating passes each, evals/s of the fastest pass, ratio = median of the "
                         f"pass-pair ratios, range {min(pairs):.2f}-{max(pairs):.2f}x)",
                 "measured": f"{ws['n_genomes'] / ws['seconds_2']:,.1f} evals/s on 2",
                 "baseline": "1 worker (same run)", "baseline_measured": f"{ws['n_genomes'] / ws['seconds_1']:,.1f} evals/s",
                 "ratio": f"{ws['speedup']:.2f}x", "goal": ">= 1.8x"})
    say("end-to-end default config on one year")
    e2e = end_to_end()
    raw["end_to_end"] = e2e
    rows.append({"name": f"end-to-end `forge evolve` default config ({e2e['source']}; pop {e2e['population']}, "
                         f"{e2e['candidates_per_generation']:,} candidates/gen)",
                 "measured": f"{e2e['generations_per_minute']:.2f} gen/min",
                 "baseline": "PySR (anchor named; no comparable figure run here)", "baseline_measured": "—",
                 "ratio": "—", "goal": "—"})
    rows.extend(phase_rows(e2e))
    try:
        from crucible.benchmark import replay_throughput

        say("crucible replay throughput (6 slots)")
        cr = replay_throughput(bars=15_000, baseline_bars=1_000)
        raw["crucible_replay"] = cr
        rows.append({"name": f"`crucible live` replay bars/s, 6 built-in slots, embedded sample "
                             f"({cr['fast']['orders_per_bar']:.2f} orders/bar; chunked signals, group commit)",
                     "measured": f"{cr['fast']['bars_per_s']:,.0f} bars/s",
                     "baseline": "same bench on the exchange code path (per-bar rolling window, FULL journal)",
                     "baseline_measured": f"{cr['baseline']['bars_per_s']:,.0f} bars/s",
                     "ratio": f"{cr['ratio']:.1f}x", "goal": ">= 10,000 bars/s"})
    except ImportError:
        pass
    say("peak memory 5 symbols x 1 year")
    mem = peak_memory_symbols()
    raw["memory"] = mem
    rows.append({"name": "peak memory, `forge evolve` 5 symbols x 1 year of 1m bars (1 gen, pop 50)",
                 "measured": f"{mem['peak_rss_gib']:.2f} GiB", "baseline": "goal", "baseline_measured": "4 GiB",
                 "ratio": f"{mem['peak_rss_gib'] / 4:.2f}", "goal": "<= 4 GiB"})
    return {"machine": base["machine"], "rows": rows, "raw": raw}
