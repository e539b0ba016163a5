"""Issue 27 part 4: what does co-evolution buy on markets it never saw, for what it costs?

Co-evolution (predator/prey encounters in the calibrated LOB simulator) is most of a default generation's time.
This study sets its default from its measured effect.  For each seed, two ``forge evolve`` runs with the
same seed, config and budget, co-evolution **on** and **off**, on one synthetic planted market
(``synthetic:planted``, ``--days`` days, ``--strength``); each run's champion is then scored on what neither
run selected on:

* **out of sample**: the run's own out-of-sample bars (net per-bar Sharpe, the hall of fame's record);
* **a fresh market**: a new realisation of the same planted generator (seed + 1000: same edge, new bars), net
  per-bar Sharpe of the champion's positions under the run's resolved costs;
* **fresh predators**: the ``[coevolution] predators`` initial scenario genomes drawn from another seed
  (stop hunts, liquidity vacuums, spoofing, volatility shocks), one encounter each in the shipped calibrated
  simulator: mean and worst adversarial P&L, bp per bar (the robustness co-evolution is meant to buy).

Paired differences (on - off) are summarised with their mean, the count of seeds where "on" is better, and an
exact two-sided sign test (scipy.stats.binomtest).  Wall seconds of each run are reported beside them.

Usage::

    nice -n 10 python benchmarks/coevolution_effect.py --seeds 0 1 2 3 4 5 --pop 40 --gens 3 \
        --out benchmarks/coevolution_effect.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _fresh_sharpe(genome, names, bars, backtest) -> float:
    """Net per-bar Sharpe of ``genome`` on ``bars`` (a market no run saw) under ``backtest`` costs."""
    from forge.backtest import backtest_metrics
    from forge.data.gaps import bars_since_gap
    from forge.strategy import genome_positions, strategy_features

    feats = strategy_features(bars, tuple(names))
    t = bars["open_time"].to_numpy()
    pos = genome_positions(genome, feats, bars_since_gap(t))
    m = backtest_metrics(bars["open"].to_numpy(), bars["close"].to_numpy(), t, pos, backtest)
    return float(m.sharpe) / np.sqrt(backtest.periods_per_year)


def run_pair(seed: int, pop: int, gens: int, days: int, strength: float, work: Path) -> dict:
    from forge.core import rng
    from forge.core.runconfig import config_from_dict, load_run_config, with_overrides
    from forge.data.synthetic import synthetic_bars
    from forge.evolution.coevolution import Arena, Coevolution
    from forge.evolution.run import evolve
    from forge.gp import Genome

    bars, _ = synthetic_bars(seed, strength, days, kind="planted")
    fresh, _ = synthetic_bars(seed + 1000, strength, days, kind="planted")
    out: dict = {"seed": seed}
    for on in (False, True):
        cfg = load_run_config(REPO / "configs" / "default.toml")
        cfg = with_overrides(cfg, "evolve", population=pop, generations=gens, seed=seed, jobs=1,
                             output_dir=str(work), checkpoint=False, trial_ledger=str(work / f"ledger{seed}{on}.jsonl"))
        cfg = with_overrides(cfg, "coevolution", enabled=on)
        t0 = time.perf_counter()
        res = evolve(cfg, bars=bars, run_dir=work / f"s{seed}-{'on' if on else 'off'}")
        secs = time.perf_counter() - t0
        champ = Genome.from_dict(res.hall_of_fame[0]["genome"])
        rcfg = config_from_dict(res.manifest["config"])
        oos = res.hall_of_fame[0]["out_of_sample"]
        cc = cfg.coevolution
        arena = Arena(cc, res.manifest["features"], None, seed=seed + 7777)  # predators no run met
        coev = Coevolution(cc, arena, rng.generator(seed + 7777, "coevolution"))
        pnl = np.array([1e4 * arena.encounter(champ, s, arena.seed * 1000) for s in coev.pop.scenarios()])
        out["on" if on else "off"] = {
            "seconds": round(secs, 1), "expression": res.hall_of_fame[0]["expression"],
            "oos_sharpe_bar": float(oos["sharpe"]) / np.sqrt(rcfg.backtest.periods_per_year),
            "fresh_sharpe_bar": _fresh_sharpe(champ, res.manifest["features"], fresh, rcfg.backtest),
            "predators_mean_bp": float(pnl.mean()), "predators_worst_bp": float(pnl.min()),
            "same_as_off": None}
    out["on"]["same_as_off"] = out["on"]["expression"] == out["off"]["expression"]
    return out


def summarize(rows: list[dict]) -> dict:
    from scipy.stats import binomtest

    s: dict = {"seeds": len(rows), "champion_changed": sum(not r["on"]["same_as_off"] for r in rows)}
    s["seconds"] = {"mean_on": float(np.mean([r["on"]["seconds"] for r in rows])),
                    "mean_off": float(np.mean([r["off"]["seconds"] for r in rows]))}
    for k in ("oos_sharpe_bar", "fresh_sharpe_bar", "predators_mean_bp", "predators_worst_bp"):
        d = np.array([r["on"][k] - r["off"][k] for r in rows])
        wins, n = int((d > 0).sum()), int((d != 0).sum())
        s[k] = {"mean_on": float(np.mean([r["on"][k] for r in rows])),
                "mean_off": float(np.mean([r["off"][k] for r in rows])),
                "mean_diff_on_minus_off": float(d.mean()), "on_better": wins, "ties": int((d == 0).sum()),
                "sign_test_p": float(binomtest(wins, n).pvalue) if n else None}
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--pop", type=int, default=40)
    ap.add_argument("--gens", type=int, default=3)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--strength", type=float, default=0.2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "coevolution_effect.json"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            r = run_pair(seed, a.pop, a.gens, a.days, a.strength, Path(tmp))
            rows.append(r)
            print(json.dumps(r), flush=True)
    summary = summarize(rows)
    doc = {"command": "python " + " ".join(sys.argv), "load_average_end": os.getloadavg(), "summary": summary,
           "rows": rows}
    Path(a.out).write_text(json.dumps(doc, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
