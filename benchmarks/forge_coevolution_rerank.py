"""Issue 17 item 6: does the adversarial term change the champion?

For each seed: ``forge evolve`` with co-evolution off (default config, bounded budget) on a synthetic planted
market, then every hall-of-fame member (distinct strategies ranked by the default backtest fitness) meets the
same predators co-evolution would use -- the ``predators`` initial scenario genomes of ``[coevolution]``
(stop hunts, liquidity vacuums, spoofing, volatility shocks) drawn from the run's seed -- in the shipped
calibrated simulator, ``sim_minutes`` bars each (the in-loop default meets 1 current predator + the predator
hall of fame; here all 6, so the score is the mean over more scenarios, and the worst one is reported too).
Re-ranking by ``backtest + weight * adversarial_bp`` for several weights gives how often the champion changes
and how large the term must be before a strategy the simulator's predators destroy loses its place.

This re-ranks a fixed hall of fame (the members a run without co-evolution found); it does not rerun the
search with the term on, which would also change which members exist.

Usage: ``nice -n 10 .venv/bin/python benchmarks/forge_coevolution_rerank.py [--seeds 0 1 2] [--pop 40]
[--gens 3] [--out benchmarks/forge_coevolution_rerank.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEIGHTS = (1.0, 10.0, 100.0, 1000.0)


def run_seed(seed: int, pop: int, gens: int, work: Path) -> dict:
    from forge.core import rng
    from forge.data.synthetic import synthetic_bars
    from forge.evolution.coevolution import Arena, Coevolution
    from forge.evolution.run import evolve
    from forge.gp import Genome
    from forge.core.runconfig import load_run_config, with_overrides

    bars, _ = synthetic_bars(seed, 0.2, 10, kind="planted")
    cfg = load_run_config(REPO / "configs" / "default.toml")
    cfg = with_overrides(cfg, "evolve", population=pop, generations=gens, seed=seed, jobs=1, output_dir=str(work),
                         checkpoint=False)
    cfg = with_overrides(cfg, "coevolution", enabled=False)
    t0 = time.perf_counter()
    res = evolve(cfg, bars=bars, run_dir=work / f"s{seed}")
    evolve_s = time.perf_counter() - t0
    members = res.hall_of_fame
    genomes = [Genome.from_dict(m["genome"]) for m in members]
    cc = cfg.coevolution
    arena = Arena(cc, res.manifest["features"], None, seed=seed)
    coev = Coevolution(cc, arena, rng.generator(seed, "coevolution"))
    t1 = time.perf_counter()
    scen = coev.pop.scenarios()
    pnl = np.array([[1e4 * arena.encounter(g, s, arena.seed * 1000) for g in genomes] for s in scen])  # bp/bar
    adv_s = time.perf_counter() - t1
    back = np.array([m["fitness"] for m in members])
    adv_mean, adv_worst = pnl.mean(axis=0), pnl.min(axis=0)
    champ = int(np.argmax(back))
    rerank = {}
    for w in WEIGHTS:
        new = int(np.argmax(back + w * adv_mean))
        rerank[str(w)] = {"champion_rank_before": new, "changed": new != champ,
                          "expression": members[new]["expression"]}
    gaps = np.diff(-np.sort(-back))
    return {"seed": seed, "warmup_minutes": cc.warmup_minutes, "sim_minutes": cc.sim_minutes,
            "evolve_seconds": round(evolve_s, 1), "adversarial_seconds": round(adv_s, 1),
            "members": [{"expression": m["expression"], "backtest_fitness": float(b), "adv_mean_bp": float(a),
                         "adv_worst_bp": float(wo), "in_sample_trades": m["in_sample"].get("n_trades"),
                         "in_sample_exposure": m["in_sample"].get("exposure"), "operator_lookback": int(g.lookback),
                         "warmup_minutes_needed": arena.warmup_for(g) if hasattr(arena, "warmup_for") else None}
                        for m, g, b, a, wo in zip(members, genomes, back, adv_mean, adv_worst)],
            "backtest_gap_1st_2nd": float(-gaps[0]) if gaps.size else None,
            "backtest_spread": float(back.max() - back.min()),
            "adv_spread_bp": float(adv_mean.max() - adv_mean.min()), "rerank": rerank}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pop", type=int, default=40)
    ap.add_argument("--gens", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "forge_coevolution_rerank.json")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for s in a.seeds:
            row = run_seed(s, a.pop, a.gens, Path(d))
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("seed", "backtest_gap_1st_2nd", "backtest_spread", "adv_spread_bp",
                                                   "rerank", "adversarial_seconds")}), flush=True)
            a.out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v
                                                  for k, v in vars(a).items()}, "rows": rows}, indent=1))
    summary = {str(w): sum(r["rerank"][str(w)]["changed"] for r in rows) for w in WEIGHTS}
    a.out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                                 "rows": rows, "champion_changed_by_weight": summary}, indent=1))
    print(json.dumps({"champion_changed_by_weight": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
