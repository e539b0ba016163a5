"""The two subtree-cache rows of ``forge bench --full`` alone, one JSON line per run, for alternating A/B runs of
two trees (``PYTHONPATH=<tree>``): ``loop.bench.cache.vm_cache_vs_deap`` (cold: a fresh cache over the evolved
population) and ``vm_warm_cache_vs_deap`` (warm: the population's 200 offspring through a cache holding the parents'
subtrees), each against DEAP gp.compile + bottleneck / scipy kernels on the same trees in the same run.  Needs the
``[bench]`` extra (bottleneck).

    PYTHONPATH=. python benchmarks/subtree_cache_rows.py TAG [--out FILE.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from loop.bench.cache import evolved_population, offspring_genomes, vm_cache_vs_deap, vm_warm_cache_vs_deap
from loop.bench.vm import tune_allocator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tag")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import bottleneck

    from forge.gp import Genome

    entries = evolved_population(seed=0)
    genomes = [Genome.from_dict(e["genome"]) for e in entries]
    tune_allocator()
    row = {"tag": args.tag, "bottleneck": bottleneck.__version__, "load0": round(os.getloadavg()[0], 2)}
    t = time.time()
    c = vm_cache_vs_deap(genomes)
    w = vm_warm_cache_vs_deap(genomes, offspring_genomes(entries, seed=0))
    row.update(cold=c["ratio_bn_cached"], cold_plain=c["ratio_bn_plain"], cold_hit=c["cache_hit_rate"],
               nodes=c["nodes"], warm=w["ratio_bn_cached"], warm_plain=w["ratio_bn_plain"],
               warm_hit=w["cache_hit_rate"], offspring_nodes=w["nodes"], wall=round(time.time() - t, 1),
               load1=round(os.getloadavg()[0], 2))
    print(json.dumps(row))
    if args.out:
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
