"""Forge ablations on 90 days of real BTCUSDT 1m bars (needs ../shared/data).

(a) surrogate ablation: full evaluations the surrogate-screened run needs to reach the
    no-surrogate run's final best fitness (same seed, same budget of generations);
(b) the default `forge evolve` with every stage on (causal filter, surrogate, co-evolution),
    2 workers: wall time;
(c) champions' out-of-sample metrics with and without the causal filter and the adversarial
    fitness, side by side (2 x 2).

    .venv/bin/python benchmarks/forge_ablation.py [--days 90] [--pop 200] [--gens 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forge.data.loader import load_bars  # noqa: E402
from forge.evolution.run import evolve
from forge.core.runconfig import load_run_config, with_overrides

DATA = REPO.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"


def _run(bars, work: Path, name: str, *, pop: int, gens: int, surrogate: bool, causal: bool, adversarial: bool,
         jobs: int, proxy_windows: int | None = None) -> dict:
    cfg = load_run_config(REPO / "configs" / "default.toml")
    cfg = with_overrides(cfg, "evolve", population=pop, offspring=pop, generations=gens, jobs=jobs,
                         output_dir=str(work), seed=0)
    cfg = with_overrides(cfg, "surrogate", enabled=surrogate)
    if proxy_windows is not None:
        cfg = with_overrides(cfg, "surrogate", proxy_windows=proxy_windows)
    cfg = with_overrides(cfg, "causal", enabled=causal)
    cfg = with_overrides(cfg, "coevolution", enabled=adversarial)
    t0 = time.perf_counter()
    res = evolve(cfg, bars=bars, run_dir=work / name)
    seconds = time.perf_counter() - t0
    gens_rows = [json.loads(x) for x in (res.run_dir / "generations.jsonl").read_text().splitlines()]
    champ = res.hall_of_fame[0]
    return {"name": name, "seconds": seconds, "surrogate": surrogate, "causal": causal, "adversarial": adversarial,
            "features": res.manifest["features"], "generations": gens_rows,
            "champion": {"expression": champ["expression"], "in_sample": champ["in_sample"],
                         "out_of_sample": champ["out_of_sample"],
                         "buy_and_hold": champ["out_of_sample_buy_and_hold"]}}


def _surrogate_ablation(runs: dict) -> dict | None:
    """(a): full evaluations each run needed to reach the no-surrogate run's final best; None without both runs."""
    if "no_surrogate" not in runs or "surrogate" not in runs:
        return None
    ns, su = runs["no_surrogate"]["generations"], runs["surrogate"]["generations"]
    target = ns[-1]["hof_best"]
    ns_evals = next(g["evaluated_total"] for g in ns if g["hof_best"] >= target)
    su_hit = next((g for g in su if g["hof_best"] >= target), None)
    rho = [g["surrogate_spearman"] for g in su if g.get("surrogate_spearman") is not None]
    rho_h = [g["surrogate_spearman_holdout"] for g in su if g.get("surrogate_spearman_holdout") is not None]
    return {
        "target_best_fitness": target, "evaluations_without_surrogate": ns_evals,
        "evaluations_with_surrogate": su_hit["evaluated_total"] if su_hit else None,
        "reached": su_hit is not None,
        "ratio": ns_evals / su_hit["evaluated_total"] if su_hit else None,
        "surrogate_final_best": su[-1]["hof_best"],
        "spearman_mean": sum(rho) / len(rho) if rho else None, "spearman_per_generation": rho,
        "spearman_holdout_mean": sum(rho_h) / len(rho_h) if rho_h else None,
        "spearman_holdout_per_generation": rho_h}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--pop", type=int, default=200)
    ap.add_argument("--gens", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/forge_ablation.json")
    ap.add_argument("--proxy-windows", type=int, default=None, help="override [surrogate] proxy_windows")
    ap.add_argument("--runs", default="no_surrogate,surrogate,no_causal,no_causal_adversarial,all_on",
                    help="subset of the runs (the adversarial ones cost minutes per generation)")
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found")
    files = sorted(DATA.glob("BTCUSDT-1m-2024-*.csv"))[: a.days]
    bars, cov = load_bars([str(f) for f in files])
    first, last = cov.to_dict()["first"], cov.to_dict()["last"]
    print(f"{len(files)} files, {bars.height:,} bars {first} → {last}")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, kw in [("no_surrogate", dict(surrogate=False, causal=True, adversarial=False)),
                         ("surrogate", dict(surrogate=True, causal=True, adversarial=False)),
                         ("no_causal", dict(surrogate=True, causal=False, adversarial=False)),
                         ("no_causal_adversarial", dict(surrogate=True, causal=False, adversarial=True)),
                         ("all_on", dict(surrogate=True, causal=True, adversarial=True))]:
            if name not in a.runs.split(","):
                continue
            runs[name] = _run(bars, work, name, pop=a.pop, gens=a.gens, jobs=2, proxy_windows=a.proxy_windows, **kw)
            r = runs[name]
            print(f"{name}: {r['seconds']:.1f} s, champion OOS {r['champion']['out_of_sample']}")
    # (a) evaluations to reach the no-surrogate final best
    summary = {
        "data": {"files": len(files), "bars": bars.height, "first": first, "last": last},
        "surrogate_ablation": _surrogate_ablation(runs),
        "all_on_seconds_2_workers": runs["all_on"]["seconds"] if "all_on" in runs else None,
        "all_on_seconds_per_generation": [g["seconds"] for g in runs["all_on"]["generations"]] if "all_on" in runs else None,
        "champions": {k: {"causal": v["causal"], "adversarial": v["adversarial"], "surrogate": v["surrogate"],
                          "seconds": v["seconds"], **v["champion"]} for k, v in runs.items()},
        "command": "python " + " ".join(sys.argv),
    }
    Path(a.out).write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "champions"}, indent=2, default=str))


if __name__ == "__main__":
    main()
