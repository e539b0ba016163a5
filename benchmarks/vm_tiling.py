"""Tiled (cache-blocked) VM vs the interpreter before tiling vs DEAP + bottleneck, paired passes.

Issue 21 item 2.  The trees, bars and baselines are ``forge bench``'s (``loop.bench.vm``): the 100
random trees of seed 0, 400,000 bars of the embedded sample's features tiled in time, DEAP
``gp.compile`` with bottleneck ``move_*`` / ``scipy.signal.lfilter`` kernels.  Every pass runs all the
sides back to back in alternating order (a shared, loaded machine: a slow spell hits every side of a
pair), and the report gives the median and range of each side's seconds and of the per-pass ratios,
both in wall-clock and in CPU seconds of this process (``time.process_time``; less sensitive to the
other jobs on the machine), plus the load average before and after.

Sides
- ``tiled``: ``forge.gp.run_program`` (compile + cache-blocked interpreter, ``DEFAULT_BLOCK`` bars).
- ``flat``: the same compiled programs through ``run_program_flat_nb`` (one instruction over all bars
  at a time: the interpreter before tiling).
- ``deap_bn``: DEAP gp.compile + bottleneck/scipy kernels (``loop.bench.vm.library_pset``, as forge bench;
  ``smooth`` on the O(n) lfilter EMA too).
- ``add``: ``np.add(a, b, out=c)`` over (400,000,) float64 once per VM node of the trees (the
  memory-bandwidth bound of a VM that materialises every node as a full row), and ``copy`` likewise.
- ``--blocks``: the tiled interpreter at other block sizes (a one-block pass = no tiling).

Usage: ``.venv/bin/python benchmarks/vm_tiling.py [--passes 7] [--bars 400000] [--blocks 256,2048,400000]
[--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np


def _load() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=7, help="alternating passes (default 7)")
    ap.add_argument("--bars", type=int, default=400_000)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blocks", default="", help="extra block sizes of the tiled VM, comma separated")
    ap.add_argument("--no-deap", action="store_true", help="skip the DEAP + bottleneck side")
    ap.add_argument("--json", default=None, help="write the raw timings here")
    args = ap.parse_args(argv)
    if args.passes < 1 or args.bars < 1000 or args.trees < 1:
        sys.exit("vm_tiling: --passes >= 1, --bars >= 1000 and --trees >= 1 expected")
    try:
        blocks = [int(b) for b in args.blocks.split(",") if b.strip()]
    except ValueError:
        sys.exit(f"vm_tiling: --blocks must be comma-separated integers, got {args.blocks!r}")

    from loop.bench.vm import _tiled_features, library_pset, tune_allocator
    from forge.core import rng

    print(f"allocator: {tune_allocator()}")  # as forge bench: the numpy sides at glibc's best settings
    from forge.gp import BufferPool, build_pset, compile_program, deap_compile_function, genome_from_individual, run_program
    from forge.gp import pset as gp_ops
    from forge.gp.vm_nb import DEFAULT_BLOCK, run_program_flat_nb, run_program_nb, tiled_shape

    names, X = _tiled_features(args.bars)
    pset = build_pset(names)
    random.seed(rng.int_seed(args.seed, "bench", "deap"))  # forge bench's trees
    trees = gp_ops.Operators(pset, max_depth=8, max_size=40).init_population(args.trees, 2, 6)
    genomes = [genome_from_individual(t, pset) for t in trees]
    progs = [compile_program(g, names) for g in genomes]
    nodes = sum(len(t) for t in trees)
    n = X.shape[1]
    pool = BufferPool()
    out = np.empty(n)
    flat_buf = np.empty((max(p.n_registers for p in progs), n))
    rows = [X[i] for i in range(X.shape[0])]

    def run_tiled() -> None:  # what forge bench times: compile + run
        for g in genomes:
            run_program(compile_program(g, names), X, pool)

    def run_flat() -> None:
        for g in genomes:
            p = compile_program(g, names)
            run_program_flat_nb(p.op, p.dst, p.a, p.b, p.c, p.w, p.k, X, flat_buf, out, p.is_position)

    def tiled_at(block: int):
        regs = np.empty((max(p.op.shape[0] for p in progs), tiled_shape(np.array([240]), block)[1]))

        def f() -> None:
            for g in genomes:
                p = compile_program(g, names)
                run_program_nb(p.op, p.dst, p.a, p.b, p.c, p.w, p.k, X, regs[: p.op.shape[0]], out,
                               p.is_position, block)
        return f

    a, b, c = (np.random.default_rng(i).random(n) for i in range(3))

    def numpy_add() -> None:
        for _ in range(nodes):
            np.add(a, b, out=c)

    def numpy_copy() -> None:
        for _ in range(nodes):
            np.copyto(c, a)

    fns = {"tiled": run_tiled, "flat": run_flat}
    for blk in blocks:
        fns[f"tiled_b{blk}"] = tiled_at(blk)
    if not args.no_deap:
        bn_pset = library_pset(names)

        def run_deap_bn() -> None:
            for t in trees:
                np.asarray(deap_compile_function(t, bn_pset)(*rows), dtype=np.float64)
        fns["deap_bn"] = run_deap_bn
    fns["add"] = numpy_add
    fns["copy"] = numpy_copy

    # warm-up (JIT, page faults) and the bit-for-bit check of tiled vs flat on these trees
    for p in progs:
        o1 = np.empty(n)
        run_program_flat_nb(p.op, p.dst, p.a, p.b, p.c, p.w, p.k, X, flat_buf, o1, p.is_position)
        o2 = run_program(p, X, pool)
        if not np.array_equal(o1.view(np.int64), o2.view(np.int64)):
            sys.exit(f"vm_tiling: tiled and flat VM differ on program {p.sha256[:12]}")
    for f in fns.values():
        f()
    load0 = _load()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    keys = list(fns)
    for r in range(args.passes):
        order = keys if r % 2 == 0 else keys[::-1]
        for k in order:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    load1 = _load()

    def stats(v):
        return {"median": float(np.median(v)), "min": float(np.min(v)), "max": float(np.max(v))}

    res = {"n_bars": n, "n_trees": len(trees), "nodes": nodes, "passes": args.passes, "block": DEFAULT_BLOCK,
           "load_before": load0, "load_after": load1, "wall": wall, "cpu": cpu, "summary": {}}
    work = nodes * n
    for clock, tab in (("wall", wall), ("cpu", cpu)):
        for k, v in tab.items():
            s = stats(v)
            s["node_evals_per_s_median"] = work / s["median"]
            res["summary"][f"{clock}:{k}"] = s
        for base in ("flat", "deap_bn", "add", "copy"):
            if base in tab:
                res["summary"][f"{clock}:ratio {base}/tiled"] = stats(np.array(tab[base]) / np.array(tab["tiled"]))
    print(f"{len(trees)} trees, {nodes} nodes, {n:,} bars, {args.passes} alternating passes; "
          f"load {load0:.2f} -> {load1:.2f}")
    for key, s in res["summary"].items():
        extra = f"  {s['node_evals_per_s_median'] / 1e6:8.1f} M node-evals/s" if "node_evals_per_s_median" in s else ""
        print(f"{key:28s} median {s['median']:8.3f}  range {s['min']:.3f}-{s['max']:.3f}{extra}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return res


if __name__ == "__main__":
    main()
