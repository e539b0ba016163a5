"""Per-phase clock of default `forge evolve` generations on a bounded window of the shared BTCUSDT bars (issue 21).

Runs the default config (``configs/default.toml``: population 200, surrogate 50 x lambda candidates, co-evolution
on, 2 workers) on the last ``--bars`` bars for ``--gens`` generations and prints each generation's
``phase_seconds`` from ``generations.jsonl`` (``forge.evolution.clock``), full evaluations, encounters,
evals/s of fitness time, and the necessary work (CPU seconds of full fitness, encounters, quiet markets), its
bound on the workers and the generation's overhead ratio (wall time / that bound; issue 21's goal <= 2).  Generation 0 includes kernel compilation in fresh worker processes.

    nice -n 10 .venv/bin/python benchmarks/generation_phases.py --bars 200000 --gens 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from forge.data.loader import load_klines
from forge.evolution import evolve
from forge.core.runconfig import load_run_config, with_overrides

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=200_000, help="last N bars of the shared BTCUSDT data")
    ap.add_argument("--gens", type=int, default=3)
    ap.add_argument("--data", type=Path, default=SHARED)
    args = ap.parse_args()
    bars, _ = load_klines([args.data])
    bars = bars.tail(args.bars)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(load_run_config(REPO / "configs" / "default.toml"), "evolve", generations=args.gens,
                             output_dir=tmp)
        t0 = time.perf_counter()
        res = evolve(cfg, bars=bars, run_dir=Path(tmp) / "run")
        print(f"{bars.height:,} bars, {args.gens} generations, {time.perf_counter() - t0:.1f} s in total")
        for line in (res.run_dir / "generations.jsonl").read_text().splitlines():
            r = json.loads(line)
            phases = "  ".join(f"{k} {v:.2f}" for k, v in r["phase_seconds"].items())
            work = "  ".join(f"{k} {v:.2f}" for k, v in r["work_cpu_seconds"].items())
            print(f"gen {r['gen']}: {r['seconds']:.2f} s, {r['nevals']} full evals ({r['evals_per_s']:.0f}/s of fitness "
                  f"time), {r['encounters']} encounters | {phases} | necessary work (CPU s) {work}; bound "
                  f"{r['work_bound_seconds']:.2f} s -> {r['overhead_ratio']:.2f}x")


if __name__ == "__main__":
    main()
