"""Bar latency of the trading loop with and without a Forge worker busy beside it (issue 19).

The runtime runs the default six-slot bench on the embedded sample on the *exchange code path* (per-bar
rolling-window signals, ``synchronous=FULL``, every bar committed: what a live bar costs), and the time
of each bar boundary (``Runtime.process_bar``, between consecutive ``bar`` progress events) is recorded.
Three conditions, same bars, one process for the runtime:

* ``idle``: nothing else running;
* ``forge nice 10``: a ``forge evolve`` (default config, embedded sample, 2 workers) running at nice 10,
  as ``crucible live --forge`` starts its worker;
* ``forge nice 0``: the same evolve at normal priority (what the niceness buys).

Usage (from the repository root)::

    .venv/bin/python benchmarks/loop_latency.py [--bars 1500] [--out benchmarks/loop_latency.json]

Prints a Markdown table (p50 / p90 / p99 / max per-bar milliseconds) and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crucible.config import load_crucible_config  # noqa: E402
from crucible.runtime import run_live  # noqa: E402


def bar_latencies(bars: int, work: Path) -> np.ndarray:
    """Per-bar wall milliseconds of ``bars`` bars of the default bench on the exchange code path."""
    cfg = load_crucible_config(ROOT / "configs" / "crucible.toml")
    cfg = dataclasses.replace(cfg, replay=dataclasses.replace(cfg.replay, prefetch_bars=0, speed=0.0),
                              general=dataclasses.replace(cfg.general, journal_sync="FULL",
                                                          champions_dir=str(work / "champions"),
                                                          requests_dir=str(work / "requests"),
                                                          kill_file=str(work / "KILL")))
    stamps: list[float] = []

    def on_event(e: dict[str, Any]) -> None:
        if e.get("event") in ("start", "bar"):
            stamps.append(time.perf_counter())

    run_live(cfg, venue="replay", max_bars=bars, journal_path=work / f"j{time.time_ns()}.sqlite", fresh=True,
             progress=on_event)
    return np.diff(np.asarray(stamps)) * 1e3


def _evolve(work: Path, nice: int) -> subprocess.Popen:
    code = "import sys, cli; sys.argv = ['forge'] + sys.argv[1:]; cli.forge_app()"
    cmd = [sys.executable, "-c", code, "evolve", "--gens", "200", "--jobs", "2", "--out", str(work / "runs")]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def _row(name: str, ms: np.ndarray) -> dict[str, Any]:
    q = np.percentile(ms, [50, 90, 99])
    return {"condition": name, "bars": int(ms.size), "p50_ms": float(q[0]), "p90_ms": float(q[1]),
            "p99_ms": float(q[2]), "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=1500)
    ap.add_argument("--warmup-s", type=float, default=40.0, help="seconds the evolve runs before measuring")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "loop_latency.json")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="loop-latency-") as tmp:
        work = Path(tmp)
        bar_latencies(50, work)  # numba caches and imports
        rows.append(_row("idle", bar_latencies(a.bars, work)))
        for nice in (10, 0):
            proc = _evolve(work, nice)
            try:
                time.sleep(a.warmup_s)  # past the evolve's start-up and causal filter, into its generations
                if proc.poll() is not None:
                    raise SystemExit("the background forge evolve ended before the measurement")
                rows.append(_row(f"forge evolve busy, nice {nice}", bar_latencies(a.bars, work)))
            finally:
                proc.terminate()
                proc.wait(30)
    res = {"command": "benchmarks/loop_latency.py --bars %d" % a.bars, "cpus": os.cpu_count(),
           "load_before": os.getloadavg(), "rows": rows}
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print("| condition | bars | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['condition']} | {r['bars']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['max_ms']:.1f} |")


if __name__ == "__main__":
    main()
