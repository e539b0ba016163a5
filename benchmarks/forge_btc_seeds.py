"""Five-seed study of `forge evolve` on real BTCUSDT with the default config (issue 17): is the champion skill
or a copy of the market?

For each seed the script runs the command a user would run (``forge evolve`` with ``configs/default.toml``
on a bounded window of spot BTCUSDT 1-minute bars and a bounded budget), then measures the champion on the
run's out-of-sample bars (the last 30 %, never seen by evolution) beside buy-and-hold of the same bars:

- ``excess_return``: the champion's total return minus buy-and-hold's (both after the run's costs);
- ``oos_alpha_score``: the default objective's score on the out-of-sample bars (one period): mean(r - beta m)
  / std(m) * sqrt(bars per year), r and m the champion's and buy-and-hold's per-bar returns after costs;
- ``exposure``: mean |position held|; ``turnover``: traded notional / mean equity; ``n_trades``: fills;
- ``beta`` and ``corr_bh``: OLS slope and Pearson correlation of the champion's per-bar returns on
  buy-and-hold's -- the "exposure correlation with always-long" (a buy-and-hold clone has both ~1; the
  correlation of the held *position* with always-long's is undefined, a constant has no variance), with
  ``long_share`` / ``short_share``, the share of bars held long / short.

Across seeds: mean and a 95 % Student-t interval (mean +- t(0.975, k-1) * sd / sqrt(k)).

Usage (from the repository root; about 2-4 minutes per seed on one loaded core)::

    nice -n 10 .venv/bin/python benchmarks/forge_btc_seeds.py [--seeds 0,1,2,3,4] [--pop 100] [--gens 5]
        [--coevolution off]
        [--start 2023-10-01] [--days 91] [--out benchmarks/forge_btc_seeds.json]

Co-evolution is off by default here: the shipped simulator calibration records no fitted data range, and
the out-of-sample leak guard (issue 17 item 5) refuses it on real data until it is re-fitted on in-sample bars
(``--coevolution on`` then works); it also costs most of a generation's time on a shared machine.

The default window, 2023-10-01 .. 2023-12-30, is a strong rise (BTC ~27k -> ~42k): the market in which an
objective that rewards beta picks buy-and-hold clones.

The window's daily kline files are linked into ``artifacts/btc_seeds_data/`` (git-ignored) so the CLI's
``--data FOLDER`` reads exactly them.  Results: ``benchmarks/forge_btc_seeds.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def link_window(start: date, days: int, folder: Path) -> list[str]:
    """Symlink the daily files of [start, start + days) into ``folder``; returns the file names.
    raises SystemExit naming the first missing day."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    names = []
    for k in range(days):
        name = f"BTCUSDT-1m-{start + timedelta(days=k)}.csv"
        if not (SRC / name).is_file():
            raise SystemExit(f"{SRC / name}: missing; choose --start/--days inside the shared data")
        (folder / name).symlink_to(SRC / name)
        names.append(name)
    return names


def champion_oos(run_dir: Path) -> dict[str, float | str]:
    """Out-of-sample numbers of a run's champion next to buy-and-hold (see the module docstring)."""
    from forge.backtest import run_backtest
    from forge.core.rundir import read_manifest
    from forge.data.discovery import load_symbol_bars  # noqa: F401  (same loader the run used)
    from forge.data.gaps import bars_since_gap
    from forge.data.loader import load_bars
    from forge.core.runconfig import config_from_dict
    from forge.evolution.fitness import objective_scores
    from forge.gp import Genome
    from forge.strategy import genome_positions, strategy_features

    man = read_manifest(run_dir)
    cfg = config_from_dict(man.config)
    bars, _cov = load_bars(list(man.config["evolve"]["data"]))
    champion = Genome.load(run_dir / "champion.json")
    t = bars["open_time"].to_numpy().astype(np.int64)
    o = bars["open"].to_numpy().astype(np.float64)
    c = bars["close"].to_numpy().astype(np.float64)
    feats = strategy_features(bars, man.features)
    pos = genome_positions(champion, feats, bars_since_gap(t))
    a, b = man.split["out_of_sample"]["rows"]
    res = run_backtest(o[a:b], c[a:b], t[a:b], pos[a:b], cfg.backtest)
    bh = run_backtest(o[a:b], c[a:b], t[a:b], np.ones(b - a), cfg.backtest)
    r, m = res.returns, bh.returns
    alpha = objective_scores("alpha", r, m, 1, cfg.backtest.periods_per_year)[0]
    var_m = float(np.var(m))
    beta = float(np.mean((r - r.mean()) * (m - m.mean())) / var_m) if var_m > 0 else math.nan
    sd_r = float(np.std(r))
    corr = float(np.corrcoef(r, m)[0, 1]) if sd_r > 0 and var_m > 0 else 0.0
    held = res.position_held
    hof = json.loads((run_dir / "hall_of_fame.json").read_text())["members"][0]
    return {
        "expression": champion.expression(),
        "fitness": float(hof["fitness"]),
        "in_sample_objective_score": float(hof["in_sample"].get("objective_score", math.nan)),
        "in_sample_exposure": float(hof["in_sample"]["exposure"]),
        "in_sample_n_trades": int(hof["in_sample"]["n_trades"]),
        "oos_bars": int(b - a),
        "total_return": float(res.metrics.total_return),
        "bh_total_return": float(bh.metrics.total_return),
        "excess_return": float(res.metrics.total_return - bh.metrics.total_return),
        "exposure": float(res.metrics.exposure),
        "long_share": float(np.mean(held > 0)),
        "short_share": float(np.mean(held < 0)),
        "turnover": float(res.metrics.turnover),
        "n_trades": int(res.metrics.n_trades),
        "sharpe": float(res.metrics.sharpe),
        "bh_sharpe": float(bh.metrics.sharpe),
        "beta": beta,
        "corr_bh": corr,
        "oos_alpha_score": float(alpha),
        "costs": man.costs,
    }


def summary(rows: list[dict], key: str) -> dict[str, float]:
    v = np.array([r[key] for r in rows], dtype=np.float64)
    k = len(v)
    half = T975.get(k - 1, 1.96) * float(np.std(v, ddof=1)) / math.sqrt(k) if k > 1 else math.nan
    return {"mean": float(v.mean()), "ci95_low": float(v.mean() - half), "ci95_high": float(v.mean() + half),
            "min": float(v.min()), "max": float(v.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--pop", type=int, default=100)
    ap.add_argument("--gens", type=int, default=5)
    ap.add_argument("--start", default="2023-10-01")
    ap.add_argument("--days", type=int, default=91)
    ap.add_argument("--coevolution", default="off", choices=("on", "off"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "forge_btc_seeds.json"))
    ap.add_argument("--runs", default=str(REPO / "artifacts" / "btc_seeds_runs"))
    args = ap.parse_args()
    folder = REPO / "artifacts" / "btc_seeds_data"
    files = link_window(date.fromisoformat(args.start), args.days, folder)
    forge = str(Path(sys.executable).with_name("forge"))
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run_dir = Path(args.runs) / f"seed{seed}"
        cmd = [forge, "evolve", "--data", str(folder), "--gens", str(args.gens), "--pop", str(args.pop),
               "--seed", str(seed), "--jobs", "1", "--coevolution", args.coevolution, "--run-dir", str(run_dir),
               "--force", "--json"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ})
        if done.returncode != 0:
            raise SystemExit(f"seed {seed}: forge evolve failed ({done.returncode}): {done.stderr[-2000:]}")
        row = {"seed": seed, "seconds": round(time.perf_counter() - t0, 1), **champion_oos(run_dir)}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("seed", "seconds", "expression", "excess_return", "exposure",
                                               "n_trades", "beta", "corr_bh")}), flush=True)
    keys = ("excess_return", "total_return", "bh_total_return", "oos_alpha_score", "exposure", "long_share",
            "turnover", "n_trades", "beta", "corr_bh", "sharpe", "fitness", "in_sample_objective_score")
    out = {
        "command": ("forge evolve --data FOLDER --gens {gens} --pop {pop} --seed S --jobs 1 --coevolution {co} "
                    "(configs/default.toml)").format(gens=args.gens, pop=args.pop, co=args.coevolution),
        "data": {"folder": str(folder.relative_to(REPO)), "source": str(SRC), "first_file": files[0],
                 "last_file": files[-1], "n_files": len(files)},
        "seeds": rows,
        "summary": {k: summary(rows, k) for k in keys},
        "interval": "mean +- t(0.975, k-1) * sd / sqrt(k) over seeds",
    }
    Path(args.out).write_text(json.dumps(out, indent=2, allow_nan=True) + "\n")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
