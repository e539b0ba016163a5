"""One default `forge evolve` on the last ``--bars`` shared BTCUSDT bars: the hash of its evaluated sequence and
each generation's clock -- for A/B runs of two trees (``PYTHONPATH=<tree>``, from that tree's root).

Prints ``<evaluations> <sha256 of the (sha256, fitness) sequence, 16 hex> <seconds>``, then per generation: wall
seconds, full evaluations, full-fitness CPU seconds per evaluation (measured in the workers), the phases over
0.02 s, the overhead ratio (wall / necessary-work bound) and the surrogate's hold-out Spearman rho.  Two trees
that evaluate the same genomes in the same order with the same fitness print the same hash.

    PYTHONPATH=. python benchmarks/generation_ab.py --bars 410320 --gens 4
    PYTHONPATH=. python benchmarks/generation_ab.py --gens 3 --preset futures --execution kline-limit
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

from forge.core.runconfig import load_run_config, with_overrides
from forge.data.loader import load_klines
from forge.evolution import evolve

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=410_320)
    ap.add_argument("--gens", type=int, default=4)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--preset", default="", help="[costs] preset (default: the config's)")
    ap.add_argument("--execution", default="", help="[execution] mode (default: the config's)")
    args = ap.parse_args()
    bars, _ = load_klines([args.data])
    bars = bars.tail(args.bars)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(load_run_config(REPO / "configs" / "default.toml"), "evolve", generations=args.gens,
                             output_dir=tmp)
        if args.preset:
            cfg = with_overrides(cfg, "costs", preset=args.preset)
        if args.execution:
            cfg = with_overrides(cfg, "execution", mode=args.execution)
        t0 = time.perf_counter()
        res = evolve(cfg, bars=bars, run_dir=Path(tmp) / "run")
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in (res.run_dir / "evaluated.jsonl").read_text().splitlines()]
        seq = [(r["sha256"], r["fitness"]) for r in rows]
        print(len(seq), hashlib.sha256(json.dumps(seq).encode()).hexdigest()[:16], f"{wall:.1f}s")
        for line in (res.run_dir / "generations.jsonl").read_text().splitlines():
            r = json.loads(line)
            cpu = r["work_cpu_seconds"]["fitness"]
            phases = " ".join(f"{k}={v:.2f}" for k, v in r["phase_seconds"].items() if v >= 0.02)
            print(f"gen {r['gen']}: {r['seconds']:.2f} s, {r['nevals']} evals, {1e3 * cpu / max(r['nevals'], 1):.1f} ms "
                  f"CPU/eval | {phases} | ratio {r['overhead_ratio']:.2f} | rho {r.get('surrogate_spearman_holdout')}")


if __name__ == "__main__":
    main()
