"""Why did the `timing` objective still pick buy-and-hold clones on BTCUSDT (issue 17)?  A diagnosis on a
bounded window of real spot BTCUSDT 1-minute bars.

Part 1 -- fixed strategies: the fitness, its objective score S, the per-period scores, fills and exposure of
always-long, flat, the issue's champion and a few simple rules, under each objective given.

Part 2 -- small searches: ``forge.evolution.run.evolve`` with ``configs/default.toml`` but the objective
given, a small budget and co-evolution off (CPU); the share of evaluated strategies floored (fewer than
``min_trades`` fills) and at or below the -sharpe_cap clip, and the top hall-of-fame members with their
in-sample exposure and fills.

Usage (from the repository root, ~1-2 min per objective and seed on a loaded core)::

    nice -n 10 .venv/bin/python benchmarks/forge_fitness_diagnosis.py [--objectives timing,alpha]
        [--seeds 0,1] [--pop 60] [--gens 4] [--start 2024-04-01] [--days 91]
        [--out benchmarks/forge_fitness_diagnosis.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"

RULES = {
    "always_long": (["pos_sign", "add_c", "abs", "feature:ret_1", "const:0"], [1.0]),
    "flat": (["long_only", "gt_c", "abs", "feature:ret_1", "const:0"], [1e9]),
    "issue_champion": (["long_only", "lt_c", "ts_mean", "feature:mtf_ret_15m", "window:60", "const:0"], [0.00487]),
    "long_unless_ret15_gt_0.6pct": (["long_only", "lt_c", "feature:ret_15", "const:0"], [0.006]),
    "long_unless_ret60_lt_-0.4pct": (["long_only", "gt_c", "feature:ret_60", "const:0"], [-0.004]),
    "sign_of_15m_return": (["pos_sign", "feature:mtf_ret_15m"], []),
}


def window_files(start: date, days: int) -> list[str]:
    files = [SRC / f"BTCUSDT-1m-{start + timedelta(days=k)}.csv" for k in range(days)]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: missing; choose --start/--days inside the shared data")
    return [str(p) for p in files]


def fixed_rules(files: list[str], objective: str) -> dict[str, dict]:
    from forge.data.loader import load_klines
    from forge.core.runconfig import load_run_config
    from forge.evolution.evaluator import Evaluator
    from forge.evolution.market import Market
    from forge.features import DEFAULT_FEATURES
    from forge.gp import Genome
    import dataclasses

    cfg = load_run_config(REPO / "configs" / "default.toml")
    bars, cov = load_klines(files)
    seg = Market.build("BTCUSDT", bars, cov, DEFAULT_FEATURES, cfg.evolve.in_sample_fraction).in_sample_arrays()
    fit = dataclasses.replace(cfg.fitness, objective=objective)
    genomes = [Genome.from_tokens(t, c) for t, c in RULES.values()]
    with Evaluator(seg, cfg.backtest, fit, cfg.evolve.max_size, 1) as ev:
        res = ev.evaluate(genomes)
    return {name: {"fitness": f, "objective_score": m.get("objective_score"), "period_scores": m.get("period_scores"),
                   "n_trades": m["n_trades"], "exposure": m["exposure"], "max_drawdown": m["max_drawdown"],
                   "total_return": m["total_return"]}
            for name, (f, m) in zip(RULES, res)}


def search(files: list[str], objective: str, seed: int, pop: int, gens: int, out: Path) -> dict:
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import evolve

    cfg = load_run_config(REPO / "configs" / "default.toml")
    cfg = with_overrides(cfg, "evolve", data=tuple(files), seed=seed, population=pop, generations=gens, jobs=1,
                         output_dir=str(out))
    cfg = with_overrides(cfg, "fitness", objective=objective)
    cfg = with_overrides(cfg, "coevolution", enabled=False)
    res = evolve(cfg, run_dir=out / f"{objective}_seed{seed}")
    f = np.array([json.loads(line)["fitness"] for line in open(res.run_dir / "evaluated.jsonl")])
    top = [{"fitness": m["fitness"], "expression": m["expression"], "in_sample_exposure": m["in_sample"]["exposure"],
            "in_sample_n_trades": m["in_sample"]["n_trades"], "oos_exposure": m["out_of_sample"]["exposure"],
            "oos_total_return": m["out_of_sample"]["total_return"],
            "oos_bh_total_return": m["out_of_sample_buy_and_hold"]["total_return"]} for m in res.hall_of_fame[:3]]
    return {"objective": objective, "seed": seed, "evaluated": int(f.size),
            "share_floored": float(np.mean(f <= cfg.fitness.floor)),
            "share_at_or_below_minus_cap": float(np.mean(f <= -cfg.fitness.sharpe_cap)),
            "median_fitness": float(np.median(f)), "top": top}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objectives", default="timing,alpha")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--pop", type=int, default=60)
    ap.add_argument("--gens", type=int, default=4)
    ap.add_argument("--start", default="2024-04-01")
    ap.add_argument("--days", type=int, default=91)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "forge_fitness_diagnosis.json"))
    args = ap.parse_args()
    files = window_files(date.fromisoformat(args.start), args.days)
    objectives = args.objectives.split(",")
    result = {"window": {"first": Path(files[0]).name, "last": Path(files[-1]).name},
              "fixed_rules": {o: fixed_rules(files, o) for o in objectives}, "searches": []}
    for o in objectives:
        for name, row in result["fixed_rules"][o].items():
            print(o, name, json.dumps({k: row[k] for k in ("fitness", "objective_score", "n_trades", "exposure")}))
    for o in objectives:
        for s in (int(x) for x in args.seeds.split(",")):
            row = search(files, o, s, args.pop, args.gens, REPO / "artifacts" / "fitness_diagnosis")
            result["searches"].append(row)
            print(json.dumps({k: row[k] for k in ("objective", "seed", "share_floored",
                                                  "share_at_or_below_minus_cap")}), row["top"][0], flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
