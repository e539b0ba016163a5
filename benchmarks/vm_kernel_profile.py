"""Per-program VM timings and the allocator effect on the DEAP + bottleneck baseline (issue 21, last pass).

Single-kernel programs over 400,000 bars of the embedded sample's features (tiled VM, best of 9), the
library kernels they compare with, and -- with ``--population`` -- DEAP + bottleneck against the VM (cached
and plain) on the evolved population of ``loop.bench.evolved_genomes(seed=0)``, five alternating passes.
Run it twice to see the allocator effect: once as is (glibc's defaults) and once with ``--tune-allocator``
(``loop.bench.tune_allocator``, as ``forge bench`` does).

    .venv/bin/python benchmarks/vm_kernel_profile.py
    .venv/bin/python benchmarks/vm_kernel_profile.py --population
    .venv/bin/python benchmarks/vm_kernel_profile.py --population --tune-allocator
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _best(fn, repeats: int = 9) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def kernels() -> None:
    from loop.bench.vm import _tiled_features, library_primitives
    from forge.gp import BufferPool, Genome, compile_program, run_program

    names, X = _tiled_features(400_000)
    pool = BufferPool()
    f1, f2 = "feature:ret_15", "feature:ret_60"
    ls = ["long_short", "gt_c", f1, "const:0", "lt_c", f1, "const:0"]
    cases = {
        "add_c (raw root)": (["add_c", f1, "const:0"], "F"),
        "long_short(gt_c, lt_c)": (ls, "P"),
        "long_short(cross_above, lt_c)": (["long_short", "cross_above", f1, f2, "lt_c", f1, "const:0"], "P"),
        "long_short(latch(gt_c, lt_c, 10), lt_c)": (["long_short", "latch", "gt_c", f1, "const:0", "lt_c", f1,
                                                     "const:0", "window:10", "lt_c", f1, "const:0"], "P"),
        "smooth(long_short(gt_c, lt_c), 240)": (["smooth", *ls, "window:240"], "P"),
        "ts_mean(mtf_ret_1h, 10)": (["ts_mean", "feature:mtf_ret_1h", "window:10"], "F"),
        "ts_corr(mtf_ret_1h, mtf_rsi_1h, 10)": (["ts_corr", "feature:mtf_ret_1h", "feature:mtf_rsi_1h", "window:10"], "F"),
    }
    for label, (tokens, root) in cases.items():
        consts = [0.0] if any(t.startswith("const:") for t in tokens) else []
        prog = compile_program(Genome.from_tokens(tokens, consts, root=root), names)
        run_program(prog, X, pool)
        print(f"VM  {label:42s} {_best(lambda: run_program(prog, X, pool)) * 1e3:7.2f} ms")
    lib = library_primitives()
    x, y = X[names.index("mtf_ret_1h")], X[names.index("mtf_rsi_1h")]
    print(f"lib ts_mean w10 {_best(lambda: lib['ts_mean'](x, 10)) * 1e3:.2f} ms, "
          f"ts_corr w10 {_best(lambda: lib['ts_corr'](x, y, 10)) * 1e3:.2f} ms, "
          f"smooth w240 {_best(lambda: lib['smooth'](np.sign(x), 240)) * 1e3:.2f} ms")


def population() -> None:
    from loop.bench import evolved_genomes
    from loop.bench.vm import _tiled_features, library_pset
    from forge.gp import build_pset, compile_program, deap_compile_function, individual_from_genome, run_program
    from forge.gp.cache import SubtreeCache

    names, X = _tiled_features(400_000)
    genomes = evolved_genomes(seed=0)
    trees = [individual_from_genome(g, build_pset(names)) for g in genomes]
    bn = library_pset(names)
    rows = [X[i] for i in range(X.shape[0])]

    def deap():
        for t in trees:
            np.asarray(deap_compile_function(t, bn)(*rows), dtype=np.float64)

    def cached():
        cache = SubtreeCache(X, names, max_bytes=2 * 2**30)
        for g in genomes:
            cache.run(g)

    def plain():
        for g in genomes:
            run_program(compile_program(g, names), X)

    sides = {"deap+bottleneck": deap, "VM cached": cached, "VM plain": plain}
    for f in sides.values():
        f()
    for _ in range(5):
        print("  ".join(f"{k} {_best(f, 1):.3f} s" for k, f in sides.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", action="store_true", help="the evolved-population passes instead of kernels")
    ap.add_argument("--tune-allocator", action="store_true", help="loop.bench.tune_allocator() first")
    args = ap.parse_args()
    if args.tune_allocator:
        from loop.bench import tune_allocator

        print(f"allocator: {tune_allocator()}")
    population() if args.population else kernels()


if __name__ == "__main__":
    main()
