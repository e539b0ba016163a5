"""Per-phase clock of default `forge evolve` generations on a bounded window of the shared BTCUSDT bars (issue 21).

Runs the default config (``configs/default.toml``: population 200, surrogate 50 x lambda candidates, 2 workers;
``--preset`` / ``--execution`` override ``[costs] preset`` / ``[execution] mode``) on the last ``--bars`` bars for
``--gens`` generations and prints the evaluated sequence's hash (sha256 of its (sha256, fitness) rows: two trees
that run the same search print the same hash, for A/B runs with ``PYTHONPATH=<tree>``), then each generation's
``phase_seconds`` from ``generations.jsonl`` (``forge.evolution.clock``), full evaluations, encounters, evals/s of
fitness time and CPU ms per evaluation, the necessary work (CPU seconds of full fitness, encounters, quiet
markets), its bound on the workers, the generation's overhead ratio (wall time / that bound) and the surrogate's
hold-out Spearman rho.  Generation 0 includes kernel compilation in fresh worker processes.

    nice -n 10 .venv/bin/python benchmarks/generation_phases.py --bars 200000 --gens 3
    PYTHONPATH=. python benchmarks/generation_phases.py --bars 410320 --gens 3 --preset futures --execution kline-limit
"""

from __future__ import annotations

import argparse
import hashlib
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
        rows = [json.loads(line) for line in (res.run_dir / "evaluated.jsonl").read_text().splitlines()]
        seq = hashlib.sha256(json.dumps([(r["sha256"], r["fitness"]) for r in rows]).encode()).hexdigest()[:16]
        print(f"{bars.height:,} bars, {args.gens} generations, {time.perf_counter() - t0:.1f} s in total; "
              f"{len(rows)} evaluations, sequence {seq}")
        for line in (res.run_dir / "generations.jsonl").read_text().splitlines():
            r = json.loads(line)
            phases = "  ".join(f"{k} {v:.2f}" for k, v in r["phase_seconds"].items())
            work = "  ".join(f"{k} {v:.2f}" for k, v in r["work_cpu_seconds"].items())
            per_eval = 1e3 * r["work_cpu_seconds"]["fitness"] / max(r["nevals"], 1)
            print(f"gen {r['gen']}: {r['seconds']:.2f} s, {r['nevals']} full evals ({r['evals_per_s']:.0f}/s of fitness "
                  f"time, {per_eval:.1f} ms CPU each), {r['encounters']} encounters | {phases} | necessary work "
                  f"(CPU s) {work}; bound {r['work_bound_seconds']:.2f} s -> {r['overhead_ratio']:.2f}x | hold-out rho "
                  f"{r.get('surrogate_spearman_holdout')}")


if __name__ == "__main__":
    main()
