"""``forge bench``: speed measured side by side in one run, against named baselines.

Rows
- VM node-evaluations/s vs DEAP ``gp.compile`` + numpy on the identical
  trees and the same bars (baseline: DEAP; the ratio is VM / DEAP).  Both
  sides include turning the tree into something runnable (our opcode
  compiler vs DEAP's string compile) and evaluating it over every bar.
- Backtest bars/s of ``backtest_metrics`` (anchor: vectorbt's numba path,
  ~51 M bar-columns/s, quoted, not run here).

Bars are the embedded sample's real features tiled in time to ``n_bars``.
Timings are best-of-``repeats`` wall clock on one core (numba is single
threaded here); JIT compilation is excluded by a warm-up pass.
"""

from __future__ import annotations

import os
import platform
import random
import time
from typing import Any

import numpy as np

from forge.core import rng

VECTORBT_BARS_PER_S = 51e6  # vectorbt numba path, bar-columns/s (quoted anchor, see ARCHITECTURE/issue)


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


def vm_vs_deap(n_bars: int = 400_000, n_trees: int = 100, seed: int = 0, repeats: int = 3) -> dict[str, Any]:
    """Node-evaluations/s of the VM and of DEAP gp.compile+numpy on identical random trees.

    returns dict: nodes, n_bars, vm_seconds, deap_seconds, vm_node_evals_per_s,
    deap_node_evals_per_s, ratio (VM / DEAP), max_abs_diff (agreement check).
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

    def run_vm() -> list[np.ndarray]:
        return [run_program(compile_program(genome_from_individual(t, pset), names), X, pool) for t in trees]

    def run_deap() -> list[np.ndarray]:
        return [np.asarray(deap_compile_function(t, pset)(*rows), dtype=np.float64) for t in trees]

    # warm-up (JIT) and agreement check on the same trees
    small = np.ascontiguousarray(X[:, :5000])
    small_rows = [small[i] for i in range(small.shape[0])]
    diffs = []
    for t in trees:
        a = run_program(compile_program(genome_from_individual(t, pset), names), small, pool)
        b = np.asarray(deap_compile_function(t, pset)(*small_rows), dtype=np.float64)
        diffs.append(float(np.nanmax(np.abs(a - b))) if a.size else 0.0)
    vm_s = _best_time(run_vm, repeats)
    deap_s = _best_time(run_deap, repeats)
    work = nodes * n_bars
    return {
        "n_trees": n_trees,
        "nodes": nodes,
        "n_bars": n_bars,
        "vm_seconds": vm_s,
        "deap_seconds": deap_s,
        "vm_node_evals_per_s": work / vm_s,
        "deap_node_evals_per_s": work / deap_s,
        "ratio": deap_s / vm_s,
        "max_abs_diff": max(diffs) if diffs else 0.0,
    }


def run_bench(n_bars: int = 400_000, n_trees: int = 100, seed: int = 0) -> dict[str, Any]:
    """All ``forge bench`` rows.  returns {"machine", "rows": [...], "raw": {...}}."""
    from forge.backtest import backtest_throughput

    vm = vm_vs_deap(n_bars=n_bars, n_trees=n_trees, seed=seed)
    bt = backtest_throughput(n_bars=n_bars, seed=seed)
    bt_rate = bt["bars_per_s"]
    rows = [
        {
            "name": f"VM node-evals/s ({vm['n_trees']} random trees, {vm['nodes']} nodes, {n_bars:,} bars)",
            "measured": f"{vm['vm_node_evals_per_s'] / 1e6:,.1f} M/s",
            "baseline": "DEAP gp.compile + numpy (same trees, same run)",
            "baseline_measured": f"{vm['deap_node_evals_per_s'] / 1e6:,.1f} M/s",
            "ratio": f"{vm['ratio']:.2f}x",
            "goal": ">= 1.0x",
        },
        {
            "name": f"backtest_metrics bars/s ({n_bars:,} bars)",
            "measured": f"{bt_rate / 1e6:,.1f} M/s",
            "baseline": "vectorbt numba path (quoted anchor)",
            "baseline_measured": f"{VECTORBT_BARS_PER_S / 1e6:,.0f} M/s",
            "ratio": f"{bt_rate / VECTORBT_BARS_PER_S:.2f}x",
            "goal": ">= 100 M/s",
        },
    ]
    machine = f"{platform.machine()} {platform.system()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    return {"machine": machine, "rows": rows, "raw": {"vm_vs_deap": vm, "backtest": bt}}


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
    lines += [
        "",
        f"VM and DEAP outputs agree on the benchmark trees to max |diff| = {vm['max_abs_diff']:.2e}.",
        "",
    ]
    return "\n".join(lines)
