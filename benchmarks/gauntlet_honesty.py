"""The gauntlet's accuracy: false discovery rate on null markets, power over planted strength,
p-value calibration (KS test). Writes JSON next to RESULTS.md.

    .venv/bin/python benchmarks/gauntlet_honesty.py --null-seeds 20 --planted-seeds 10 --strengths 0.05,0.1,0.2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gauntlet.honesty import run_study  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--null-seeds", type=int, default=20)
    ap.add_argument("--planted-seeds", type=int, default=10)
    ap.add_argument("--strengths", default="0.05,0.1,0.2")
    ap.add_argument("--population", type=int, default=24)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--days", type=int, default=None, help="synthetic market length (default: the sample's 14 days)")
    ap.add_argument("--out", default="benchmarks/gauntlet_honesty.json")
    a = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        runs, summary = run_study(a.null_seeds, a.planted_seeds, tuple(float(x) for x in a.strengths.split(",")),
                                  Path(work), progress=print, population=a.population, generations=a.generations,
                                  days=a.days)
    summary["seconds"] = time.perf_counter() - t0
    summary["command"] = "python " + " ".join(sys.argv)
    Path(a.out).write_text(json.dumps({"summary": summary, "runs": [r.to_dict() for r in runs]}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
