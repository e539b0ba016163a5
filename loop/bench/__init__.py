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
  "not installed (the [bench] extra): <reason>" instead of a number).

Bars are the embedded sample's real features tiled in time to ``n_bars``.
Timings are best-of-``repeats`` wall clock on one core (numba is single
threaded here; the repeats of the sides are interleaved so a slow spell of a
shared machine hits all of them); JIT compilation is excluded by a warm-up pass.

Modules: ``vm`` (VM vs DEAP, the library-kernel baseline), ``short`` (memory bandwidth, backtest vs
vectorbt, ``run_bench`` and ``render_markdown``), ``cache`` (the VM and its subtree cache on an evolved
population and its offspring), ``full`` (``run_bench_full``: the ``--full`` rows).
"""

import importlib.util

BENCH_EXTRA = ("bottleneck", "vectorbt")
"""The library baselines' packages: the ``[bench]`` extra (``pip install -e ".[bench]"``)."""


def missing_bench_extra() -> list[str]:
    """The packages of the ``[bench]`` extra that are not installed here ([] when all are)."""
    return [m for m in BENCH_EXTRA if importlib.util.find_spec(m) is None]


from loop.bench.cache import (  # noqa: E402
    evolved_genomes,
    evolved_population,
    offspring_genomes,
    vm_cache_vs_deap,
    vm_warm_cache_vs_deap,
)
from loop.bench.full import (  # noqa: E402
    _market,
    end_to_end,
    generation_phases,
    peak_memory_symbols,
    phase_rows,
    run_bench_full,
    surrogate_screens,
    worker_scaling,
)
from loop.bench.short import backtest_vs_vectorbt, memory_bandwidth, render_markdown, run_bench  # noqa: E402
from loop.bench.vm import STD_REL_EPS, kernel_agreement, library_primitives, library_pset, tune_allocator, vm_vs_deap  # noqa: E402

__all__ = [
    "BENCH_EXTRA",
    "missing_bench_extra",
    "STD_REL_EPS", "backtest_vs_vectorbt", "end_to_end", "evolved_genomes", "evolved_population", "generation_phases",
    "kernel_agreement", "offspring_genomes", "tune_allocator", "vm_warm_cache_vs_deap",
    "library_primitives", "library_pset", "memory_bandwidth", "peak_memory_symbols", "phase_rows", "render_markdown",
    "run_bench", "run_bench_full", "surrogate_screens", "vm_cache_vs_deap", "vm_vs_deap", "worker_scaling",
]
