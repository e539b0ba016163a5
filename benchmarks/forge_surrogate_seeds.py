"""Surrogate value on the default objective (issue 17 acceptance): over several seeds, the full fitness
evaluations a surrogate-screened run needs to reach the no-surrogate run's final best in-sample fitness.

For each seed two ``forge evolve`` runs on the same bars with the default config (objective ``alpha``, 4
sub-periods, mean - std) except the bounded budget below: ``no_surrogate`` (every offspring fully evaluated,
``population`` x (generations + 1) evaluations) and ``surrogate`` (the default screen: ``candidates_factor``
x offspring candidates ranked by LightGBM on cheap proxy backtests, the top ``top_fraction`` plus
``explore_fraction`` at random fully evaluated), the surrogate run given ``--sur-gens`` generations.  The
target is the no-surrogate run's final hall-of-fame best; ``evaluations_*`` are ``evaluated_total`` at the
first generation whose best reaches it (``generations.jsonl``); ratio = no-surrogate / surrogate (goal >= 5).

Bounded for the shared 2-core machine: ``--days`` daily spot BTCUSDT files from ``--data`` (default the first
30 of ``artifacts/btc_seeds_data``, linked by ``benchmarks/forge_btc_seeds.py``), the causal filter and
co-evolution off (orthogonal to the screen; all 16 registry features are terminals), one worker.

Usage: ``nice -n 10 .venv/bin/python benchmarks/forge_surrogate_seeds.py [--seeds 0 1 2 3 4] [--pop 60]
[--gens 6] [--sur-gens 6] [--days 30] [--out benchmarks/forge_surrogate_seeds.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _run(bars, work: Path, name: str, seed: int, pop: int, gens: int, surrogate: bool) -> dict:
    from forge.evolution.run import evolve
    from forge.core.runconfig import load_run_config, with_overrides

    cfg = load_run_config(REPO / "configs" / "default.toml")
    cfg = with_overrides(cfg, "evolve", population=pop, offspring=pop, generations=gens, jobs=1, seed=seed,
                         output_dir=str(work), checkpoint=False)
    cfg = with_overrides(cfg, "surrogate", enabled=surrogate)
    cfg = with_overrides(cfg, "causal", enabled=False)
    cfg = with_overrides(cfg, "coevolution", enabled=False)
    t0 = time.perf_counter()
    res = evolve(cfg, bars=bars, run_dir=work / f"{name}-{seed}")
    rows = [json.loads(x) for x in (res.run_dir / "generations.jsonl").read_text().splitlines()]
    return {"seconds": round(time.perf_counter() - t0, 1), "champion": res.hall_of_fame[0]["expression"],
            "curve": [(r["gen"], r["evaluated_total"], r["hof_best"]) for r in rows],
            "spearman_holdout": [r.get("surrogate_spearman_holdout") for r in rows]}


def compare(ns: dict, su: dict) -> dict:
    """Evaluations each run needed to reach the no-surrogate run's final best (None: not reached)."""
    target = ns["curve"][-1][2]
    ns_evals = next(e for _g, e, b in ns["curve"] if b >= target)
    hit = next(((g, e) for g, e, b in su["curve"] if b >= target), None)
    return {"target": target, "evaluations_without_surrogate": ns_evals,
            "evaluations_with_surrogate": hit[1] if hit else None, "generation_reached": hit[0] if hit else None,
            "ratio": ns_evals / hit[1] if hit else None, "surrogate_final_best": su["curve"][-1][2],
            "surrogate_total_evaluations": su["curve"][-1][1], "no_surrogate_total_evaluations": ns["curve"][-1][1]}


def main(argv: list[str] | None = None) -> int:
    from forge.data.loader import load_bars

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--pop", type=int, default=60)
    ap.add_argument("--gens", type=int, default=6)
    ap.add_argument("--sur-gens", type=int, default=6)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--data", type=Path, default=REPO / "artifacts" / "btc_seeds_data")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "forge_surrogate_seeds.json")
    a = ap.parse_args(argv)
    files = sorted(a.data.glob("*.csv"))[: a.days]
    if len(files) < a.days:
        print(f"{a.data}: expected {a.days} daily kline files, found {len(files)} "
              "(run benchmarks/forge_btc_seeds.py once to link them)", file=sys.stderr)
        return 2
    bars, _cov = load_bars([str(f) for f in files])
    out = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
           "data": {"files": [f.name for f in (files[0], files[-1])], "bars": bars.height}, "seeds": {}}
    with tempfile.TemporaryDirectory() as d:
        for s in a.seeds:
            ns = _run(bars, Path(d), "no_surrogate", s, a.pop, a.gens, False)
            su = _run(bars, Path(d), "surrogate", s, a.pop, a.sur_gens, True)
            out["seeds"][str(s)] = {"no_surrogate": ns, "surrogate": su, **compare(ns, su)}
            print(json.dumps({"seed": s, **compare(ns, su), "seconds": [ns["seconds"], su["seconds"]]}), flush=True)
            a.out.write_text(json.dumps(out, indent=1))
    ratios = [v["ratio"] for v in out["seeds"].values()]
    reached = [r for r in ratios if r is not None]
    out["summary"] = {"reached": f"{len(reached)}/{len(ratios)}", "ratios": ratios,
                      "median_ratio_of_reached": statistics.median(reached) if reached else None,
                      "goal_met_seeds (ratio >= 5)": sum(r >= 5 for r in reached)}
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
