"""forge bench --full: the VM and its subtree cache against DEAP on an evolved population -- the population
(a real 10-generation evolution), its offspring bred as ``forge evolve`` breeds them, the cold-cache and
warm-cache measurements and their rows."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

from forge.core import rng

from loop.bench.vm import _interleaved_best, _tiled_features, library_pset


def evolved_population(generations: int = 10, population: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """The final population of a real evolution (embedded sample, smoke settings, ``generations``
    generations) as its checkpoint entries ({"genome": dict, "fitness": float, "metrics": dict})."""
    import json
    import tempfile
    from pathlib import Path

    from forge.evolution.run import evolve
    from forge.core.runconfig import RunConfig, with_overrides

    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(RunConfig(), "evolve", generations=generations, population=population, seed=seed,
                             output_dir=tmp)
        cfg = with_overrides(cfg, "causal", enabled=False)
        cfg = with_overrides(cfg, "surrogate", candidates_factor=10, top_fraction=0.1, min_train=32)
        res = evolve(cfg, run_dir=Path(tmp) / "run")
        ck = json.loads((res.run_dir / "checkpoint.json").read_text())
    return list(ck["population"])


def evolved_genomes(generations: int = 10, population: int = 100, seed: int = 0) -> list[Any]:
    """The genomes of :func:`evolved_population`."""
    from forge.gp import Genome

    return [Genome.from_dict(e["genome"]) for e in evolved_population(generations, population, seed)]


def offspring_genomes(entries: list[dict[str, Any]], n: int = 200, seed: int = 0) -> list[Any]:
    """Up to ``n`` children of the population ``entries`` (:func:`evolved_population`) bred as ``forge evolve``
    breeds them (``forge.evolution.operators.var_one`` with the default config's crossover / mutation rates,
    tournament size and size limits), without duplicates and without copies of a parent (the run's memo
    would not evaluate those)."""
    from forge.evolution.checkpoint import Codec
    from forge.core.runconfig import EvolveConfig
    from forge.evolution.operators import var_one
    from forge.gp import Genome, build_pset
    from forge.gp import pset as gp_ops

    names = _tiled_features(1)[0]
    pset = build_pset(names)
    codec = Codec(pset)
    ec = EvolveConfig()
    ops = gp_ops.Operators(pset, max_depth=ec.max_depth, max_size=ec.max_size)
    parents = [codec.restore(e) for e in entries]
    seen = {Genome.from_dict(e["genome"]).sha256 for e in entries}
    out: list[Any] = []
    state = random.getstate()
    random.seed(rng.int_seed(seed, "bench", "offspring"))
    try:
        for _ in range(20 * n):
            g = codec.to_genome(codec.new(var_one(parents, ops, ec.cxpb, ec.mutpb, ec.tournament_size)))
            if g.sha256 not in seen and set(g.features) <= set(names):
                seen.add(g.sha256)
                out.append(g)
                if len(out) == n:
                    break
    finally:
        random.setstate(state)
    return out


def vm_warm_cache_vs_deap(parents: list[Any], offspring: list[Any], n_bars: int = 400_000,
                          repeats: int = 5) -> dict[str, Any]:
    """The subtree cache as ``forge evolve``'s workers use it: the cache already holds the subtrees of the
    parents (evaluated in an earlier generation) when a generation's new offspring are evaluated.

    Per pass: a fresh cache is filled with ``parents`` (not timed), then the ``offspring`` are timed through
    it; against the plain VM and DEAP gp.compile + the library kernels (:func:`library_pset`) on the same
    offspring, passes alternating (best of ``repeats`` each).  returns n_offspring, nodes, seconds and
    node-evals/s per side, ratios, and the hit rate of the offspring's lookups."""
    from forge.gp import build_pset, compile_program, deap_compile_function, individual_from_genome, run_program
    from forge.gp.cache import SubtreeCache

    names, X = _tiled_features(n_bars)
    pset = build_pset(names)
    bn_pset = library_pset(names)
    trees = [individual_from_genome(g, pset) for g in offspring]
    rows = [X[i] for i in range(X.shape[0])]
    nodes = sum(len(g.tokens) for g in offspring)
    best = {"cached": float("inf"), "plain": float("inf"), "deap_bn": float("inf")}
    hit_rate = 0.0
    small = np.ascontiguousarray(X[:, :5000])
    check = SubtreeCache(small, names)
    for g in list(parents) + list(offspring):  # JIT warm-up + agreement
        assert np.array_equal(check.run(g), run_program(compile_program(g, names), small))
    for _ in range(repeats):
        cache = SubtreeCache(X, names, max_bytes=2 * 2**30)
        for g in parents:
            cache.run(g)
        h0, m0 = cache.hits, cache.misses
        t0 = time.perf_counter()
        for g in offspring:
            cache.run(g)
        best["cached"] = min(best["cached"], time.perf_counter() - t0)
        hit_rate = (cache.hits - h0) / max(1, cache.hits - h0 + cache.misses - m0)
        del cache
        t0 = time.perf_counter()
        for g in offspring:
            run_program(compile_program(g, names), X)
        best["plain"] = min(best["plain"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        for t in trees:
            np.asarray(deap_compile_function(t, bn_pset)(*rows), dtype=np.float64)
        best["deap_bn"] = min(best["deap_bn"], time.perf_counter() - t0)
    work = nodes * n_bars
    return {"n_parents": len(parents), "n_offspring": len(offspring), "nodes": nodes, "n_bars": n_bars,
            "cache_hit_rate": hit_rate, **{f"{k}_seconds": v for k, v in best.items()},
            **{f"{k}_node_evals_per_s": work / v for k, v in best.items()},
            "ratio_bn_cached": best["deap_bn"] / best["cached"], "ratio_bn_plain": best["deap_bn"] / best["plain"]}


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


def _cache_rows(vc: dict[str, Any]) -> list[dict[str, str]]:
    """The two VM + subtree cache rows of :func:`vm_cache_vs_deap`: vs the numpy references, vs the library kernels."""
    rows = [{"name": f"VM + subtree cache node-evals/s (evolved population, gen 10, {vc['n_trees']} trees, "
                     f"{vc['nodes']} nodes; hit rate {vc['cache_hit_rate']:.0%})",
             "measured": f"{vc['cached_node_evals_per_s'] / 1e6:,.1f} M/s",
             "baseline": "DEAP gp.compile + the project's numpy references, O(n*w) windows (same trees, "
                         "same run, one pass)",
             "baseline_measured": f"{vc['deap_node_evals_per_s'] / 1e6:,.1f} M/s",
             "ratio": f"{vc['ratio_cached']:.2f}x (no cache: {vc['ratio_plain']:.2f}x)", "goal": ">= 3x"}]
    cached_name = rows[-1]["name"]
    if "bn_error" in vc:
        rows.append({"name": cached_name, "measured": f"{vc['cached_node_evals_per_s'] / 1e6:,.1f} M/s",
                     "baseline": "DEAP gp.compile + bottleneck/scipy.signal.lfilter kernels",
                     "baseline_measured": f"not installed (the [bench] extra): {vc['bn_error']}", "ratio": "—", "goal": ">= 5x"})
    else:
        rows.append({"name": cached_name, "measured": f"{vc['cached_node_evals_per_s'] / 1e6:,.1f} M/s",
                     "baseline": "DEAP gp.compile + O(n) library kernels (bottleneck move_*, scipy.signal.lfilter "
                                 "EMA; same trees, same run)",
                     "baseline_measured": f"{vc['deap_bn_node_evals_per_s'] / 1e6:,.1f} M/s",
                     "ratio": f"{vc['ratio_bn_cached']:.2f}x (no cache: {vc['ratio_bn_plain']:.2f}x)",
                     "goal": ">= 5x (no cache >= 3x; issue 21)"})
    return rows


def _warm_cache_row(wc: dict[str, Any]) -> dict[str, str]:
    """The row of :func:`vm_warm_cache_vs_deap`."""
    return {"name": f"VM + subtree cache as forge evolve uses it: {wc['n_offspring']} offspring ({wc['nodes']} nodes) "
                    f"of the evolved population, the cache holding their {wc['n_parents']} parents' subtrees "
                    f"(hit rate {wc['cache_hit_rate']:.0%})",
            "measured": f"{wc['cached_node_evals_per_s'] / 1e6:,.1f} M/s",
            "baseline": "DEAP gp.compile + O(n) library kernels on the same offspring (same run, best of 5 "
                        "alternating passes)",
            "baseline_measured": f"{wc['deap_bn_node_evals_per_s'] / 1e6:,.1f} M/s",
            "ratio": f"{wc['ratio_bn_cached']:.2f}x (no cache: {wc['ratio_bn_plain']:.2f}x)",
            "goal": ">= 5x (issue 21)"}
