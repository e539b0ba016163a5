"""Size of the Gauntlet's test stages on the fixed-seed null suite (``gauntlet.size``).

    PYTHONPATH=. nice -n 5 python benchmarks/gauntlet_size.py --draws 500 --days 3 --workers 2
    PYTHONPATH=. nice -n 5 python benchmarks/gauntlet_size.py --draws 500 --days 10 --workers 2 \
        --stages psr,psr_gross,permutation,permutation_mean --out benchmarks/gauntlet_size_10d.json
    PYTHONPATH=. nice -n 5 python benchmarks/gauntlet_size.py --power 0.094,0.132 --draws 40 --workers 2 \
        --out benchmarks/gauntlet_power_stages.json

``--power S1,S2``: instead of the null suite, each stage's pass rate at 5 % for the oracle rule on the last
30 % of 20-day planted markets of those strengths (0.094 / 0.132 = net per-bar Sharpe 0.03 / 0.05 after the
default costs, ``benchmarks/gauntlet_strengths.json``); draw i uses seed 30_000 + i.

writes benchmarks/gauntlet_size.json (every p-value and the rejection table) and prints, per stage and
(market, position), P(p <= alpha) against alpha + 2 Monte-Carlo s.e. at alpha = 0.01, 0.05, 0.10.
Draw i of market kind k uses seed 10_000 + i (the same seeds for every kind; ``--seed0 S``: S + i, a replication
on seeds the fixed suite never used); ``--markets`` restricts the study to some of the null markets.
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


def _power(args: tuple[int, float, tuple[str, ...]]) -> dict:
    from gauntlet.size import planted_pvalues

    seed, strength, stages = args
    return planted_pvalues(seed, strength, stages=stages)


def power_main(a: argparse.Namespace, stages: tuple[str, ...]) -> None:
    strengths = [float(x) for x in a.power.split(",")]
    jobs = [(30_000 + i, st, stages) for st in strengths for i in range(a.draws)]
    t0 = time.time()
    with ProcessPoolExecutor(a.workers) as ex:
        rows = list(ex.map(_power, jobs, chunksize=2))
    table = {}
    for st in strengths:
        rs = [r for r in rows if r["strength"] == st]
        table[str(st)] = {s: float(sum(1 for r in rs if r.get(s) is not None and r[s] <= 0.05)) / len(rs)
                          for s in stages}
        if not {"psr", "permutation", "pcmci", "dowhy"} <= set(stages):
            continue
        table[str(st)]["all_four_gates"] = float(sum(
            1 for r in rs if all(r.get(s) is not None and r[s] <= 0.05 for s in ("psr", "permutation", "pcmci", "dowhy"))
        )) / len(rs)
    a.out.write_text(json.dumps({"draws": a.draws, "strengths": strengths, "stages": list(stages),
                                 "seconds": round(time.time() - t0, 1), "pass_rate_at_5pct": table,
                                 "rows": rows}) + "\n")
    print(f"power: {a.draws} planted markets per strength, {time.time() - t0:.0f} s")
    for st, t in table.items():
        print(st, {k: round(v, 3) for k, v in t.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    ap.add_argument("--summarize", action="store_true", help="tabulate the rows an earlier (interrupted) run wrote")
    ap.add_argument("--power", default="", help="planted strengths: measure power instead of size")
    ap.add_argument("--seed0", type=int, default=10_000, help="draw i uses seed SEED0 + i (the fixed suite: 10000)")
    ap.add_argument("--markets", default=",".join(NULL_MARKETS), help="comma-separated subset of " + ",".join(NULL_MARKETS))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("gauntlet_size.json"))
    a = ap.parse_args()
    stages = tuple(x for x in a.stages.split(",") if x)
    if a.power:
        return power_main(a, stages)
    markets = tuple(x for x in a.markets.split(",") if x)
    bad = [m for m in markets if m not in NULL_MARKETS]
    if bad:
        ap.error(f"--markets: {bad} not among {list(NULL_MARKETS)}")
    jobs = [(k, a.seed0 + i, a.days, stages) for i in range(a.draws) for k in markets]
    t0 = time.time()
    rows: list[dict] = []
    part = a.out.with_suffix(".rows.jsonl")  # every finished draw, so an interrupted study keeps its rows
    if a.summarize:
        rows = [json.loads(x) for x in part.read_text().splitlines() if x.strip()]
        a.draws = len({r["seed"] for r in rows})
    else:
        part.write_text("")
        with ProcessPoolExecutor(a.workers) as ex, part.open("a") as fh:
            for r in ex.map(_one, jobs, chunksize=1):
                rows.extend(r)
                fh.write("".join(json.dumps(x) + "\n" for x in r))
                fh.flush()
    table = size_table(rows)
    a.out.write_text(json.dumps({"draws": a.draws, "days": a.days, "markets": list(markets), "seed0": a.seed0, "stages": list(stages),
                                 "seconds": round(time.time() - t0, 1), "table": table, "rows": rows}) + "\n")
    print(f"{a.draws} draws x {len(markets)} markets, {a.days} days each, {time.time() - t0:.0f} s")
    print(f"{'stage':18s}{'market':10s}{'position':9s}" + "".join(f"  a={x:<4} (bound)" for x in LEVELS))
    for c in table:
        cells = "".join(f"  {c['levels'][x]['rate']:.3f} ({c['levels'][x]['bound']:.3f}){'' if c['levels'][x]['at_size'] else '*'}"
                        for x in LEVELS)
        print(f"{c['stage']:18s}{c['market']:10s}{c['position']:9s}{cells}")


if __name__ == "__main__":
    main()
