"""forge bench (the default rows): memory bandwidth, backtest vs vectorbt, the rows table of one run
and its Markdown rendering."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from forge.core import rng

from loop.bench.vm import _best_time, _interleaved_best, tune_allocator, vm_vs_deap


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
                     "baseline_measured": f"not installed (the [bench] extra): {vm['bn_error']}", "ratio": "—", "goal": ">= 3x"})
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
                 "baseline_measured": f"not installed (the [bench] extra): {bt['vbt_error']}", "ratio": "—", "goal": ">= 100 M/s"}]
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
    allocator = tune_allocator()
    say("VM vs DEAP (numpy references, bottleneck/scipy kernels) on random trees")
    vm = vm_vs_deap(n_bars=n_bars, n_trees=n_trees, seed=seed)
    say("memory bandwidth")
    bw = memory_bandwidth(n=n_bars)
    say("backtest vs vectorbt")
    bt = backtest_vs_vectorbt(n_bars=n_bars, seed=seed)
    rows = _vm_rows(vm, n_bars) + [_bandwidth_row(bw, vm)] + _backtest_rows(bt)
    machine = f"{platform.machine()} {platform.system()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    return {"machine": machine, "rows": rows,
            "raw": {"vm_vs_deap": vm, "bandwidth": bw, "backtest": bt, "allocator": allocator}}


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
    if results["raw"].get("allocator"):
        lines.append(f"Allocator for every side: {results['raw']['allocator']}.")
    lines.append("")
    return "\n".join(lines)
