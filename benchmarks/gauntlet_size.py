"""Size of the Gauntlet's test stages on the fixed-seed null suite (``gauntlet.size``).

    PYTHONPATH=. nice -n 5 python benchmarks/gauntlet_size.py --draws 500 --days 3 --workers 2
    PYTHONPATH=. nice -n 5 python benchmarks/gauntlet_size.py --draws 500 --days 10 --workers 2 \
        --stages psr,psr_gross,permutation,permutation_mean --out benchmarks/gauntlet_size_10d.json

writes benchmarks/gauntlet_size.json (every p-value and the rejection table) and prints, per stage and
(market, position), P(p <= alpha) against alpha + 2 Monte-Carlo s.e. at alpha = 0.01, 0.05, 0.10.
Draw i of market kind k uses seed 10_000 + i (the same seeds for every kind).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge.data.synthetic import NULL_MARKETS  # noqa: E402
from gauntlet.size import LEVELS, STAGES, null_pvalues, size_table  # noqa: E402


def _one(args: tuple[str, int, int, tuple[str, ...]]) -> list[dict]:
    kind, seed, days, stages = args
    return null_pvalues(kind, seed, days=days, stages=stages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("gauntlet_size.json"))
    a = ap.parse_args()
    stages = tuple(x for x in a.stages.split(",") if x)
    jobs = [(k, 10_000 + i, a.days, stages) for i in range(a.draws) for k in NULL_MARKETS]
    t0 = time.time()
    rows: list[dict] = []
    with ProcessPoolExecutor(a.workers) as ex:
        for r in ex.map(_one, jobs, chunksize=8):
            rows.extend(r)
    table = size_table(rows)
    a.out.write_text(json.dumps({"draws": a.draws, "days": a.days, "markets": list(NULL_MARKETS), "stages": list(stages),
                                 "seconds": round(time.time() - t0, 1), "table": table, "rows": rows}) + "\n")
    print(f"{a.draws} draws x {len(NULL_MARKETS)} markets, {a.days} days each, {time.time() - t0:.0f} s")
    print(f"{'stage':18s}{'market':10s}{'position':9s}" + "".join(f"  a={x:<4} (bound)" for x in LEVELS))
    for c in table:
        cells = "".join(f"  {c['levels'][x]['rate']:.3f} ({c['levels'][x]['bound']:.3f}){'' if c['levels'][x]['at_size'] else '*'}"
                        for x in LEVELS)
        print(f"{c['stage']:18s}{c['market']:10s}{c['position']:9s}{cells}")


if __name__ == "__main__":
    main()
