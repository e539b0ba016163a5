"""The gauntlet's accuracy: false passes on null and drift-only markets, power at planted strengths defined
net of costs (oracle genome with no search, and end to end with ``forge evolve``), and the calibration of
every stage's null p-values (KS). Each finished run is appended to a JSON-lines file as it completes
(``--out``, default ``benchmarks/gauntlet_honesty_runs.jsonl``), so a long study can run in the background
and be summarised at any time with ``--summarize``.

    # planted strengths for net per-bar Sharpe targets (bisection on 120-day markets, 2 seeds)
    .venv/bin/python benchmarks/gauntlet_honesty.py --calibrate 0.01,0.02,0.03,0.05
    # gauntlet power apart from search + null calibration (oracle genome, 20-day markets)
    .venv/bin/python benchmarks/gauntlet_honesty.py --modes oracle --null-seeds 40 --planted-seeds 40
    # end to end (default search 200 x 10, co-evolution off)
    .venv/bin/python benchmarks/gauntlet_honesty.py --modes evolve --targets 0.05 --null-seeds 20 --planted-seeds 10
    # the same under the futures fee preset (5 bps taker + funding; strengths calibrated per preset)
    .venv/bin/python benchmarks/gauntlet_honesty.py --calibrate 0.05 --preset futures
    .venv/bin/python benchmarks/gauntlet_honesty.py --modes evolve --preset futures --targets 0.05 --null-seeds 0 \
        --planted-seeds 10 --jobs 1
    # the pipeline's false passes at a reduced budget (issue 29): published = survived and labelled directional
    .venv/bin/python benchmarks/gauntlet_honesty.py --modes evolve --targets "" --null-seeds 30 --planted-seeds 0 \
        --population 24 --generations 3 --days 14 --out benchmarks/gauntlet_honesty_null_small.jsonl
    .venv/bin/python benchmarks/gauntlet_honesty.py --summarize
    # item 9 on the current gates (false passes per null kind and per budget: --summarize splits both)
    .venv/bin/python benchmarks/gauntlet_honesty.py --modes evolve --targets "" --planted-seeds 0 --jobs 1 \
        --kinds null,drift,heavy,seasonal --null-seeds 5 --seed-offset 300 --out benchmarks/gauntlet_honesty_null_v2.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop.honesty import HonestyRun, run_study, strength_for_net_sharpe, summarize  # noqa: E402

HERE = Path(__file__).resolve().parent
STRENGTHS = HERE / "gauntlet_strengths.json"


def _preset_config(preset: str | None, work: Path, execution: str = "taker", policy: str = "") -> Path:
    """The packaged configs/default.toml with its ``[costs] preset`` set to ``preset`` (None: kept) and its
    ``[execution] mode`` / ``policy`` set (written under work)."""
    from forge.core.config import CONFIG_DIR

    new = (Path(CONFIG_DIR) / "default.toml").read_text()
    subs = [(r'(?m)^mode = "taker"', f'mode = "{execution}"'), (r'(?m)^policy = ""', f'policy = {json.dumps(policy)}')]
    if preset:
        subs.append((r'(?m)^preset = "auto"', f'preset = "{preset}"'))
    for pat, rep in subs:
        new, n = re.subn(pat, rep, new, count=1)
        if n != 1:
            raise SystemExit(f"configs/default.toml: no line matching {pat!r} to replace")
    out = work / f"default-{preset or 'auto'}-{execution}.toml"
    out.write_text(new)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibrate", default=None, help="comma-separated net per-bar Sharpe targets to calibrate")
    ap.add_argument("--modes", default="oracle", help="oracle, evolve or oracle,evolve")
    ap.add_argument("--targets", default="0.01,0.02,0.03,0.05", help="net per-bar Sharpe targets (calibrated)")
    ap.add_argument("--null-seeds", type=int, default=40, help="seeds per null kind (--kinds)")
    ap.add_argument("--kinds", default="null,drift", help="null market kinds (forge.data.synthetic.MARKETS minus planted)")
    ap.add_argument("--planted-seeds", type=int, default=40)
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed index (to continue a study)")
    ap.add_argument("--days", type=int, default=20, help="synthetic market length, days")
    ap.add_argument("--population", type=int, default=200)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--coevolution", action="store_true", help="co-evolution on (off by default for the study)")
    ap.add_argument("--jobs", type=int, default=None, help="fitness worker processes (default: the config's; "
                    "results do not depend on it)")
    ap.add_argument("--preset", default=None, choices=("spot", "futures"),
                    help="[costs] preset of the runs and of --calibrate (default: the config's, auto: spot for "
                    "synthetic bars); strengths are stored per preset")
    ap.add_argument("--execution", default="taker", choices=("taker", "kline-limit", "policy"),
                    help="[execution] mode the runs are evolved and validated with (the kline fill model for "
                    "kline-limit / policy); strengths stay those calibrated with taker fills (equal gross edge)")
    ap.add_argument("--policy", default="", help="execution policy JSON for --execution policy")
    ap.add_argument("--out", default=str(HERE / "gauntlet_honesty_runs.jsonl"))
    ap.add_argument("--summarize", action="store_true", help="summarise --out and write --summary-json")
    ap.add_argument("--summary-json", default=str(HERE / "gauntlet_honesty.json"))
    a = ap.parse_args()
    from forge.core.runconfig import load_run_config, resolve_costs

    config = (_preset_config(a.preset, Path(tempfile.mkdtemp(prefix="honesty-cfg-")), a.execution,
                             str(Path(a.policy).resolve()) if a.policy else "")
              if a.preset or a.execution != "taker" else None)
    costs = resolve_costs(load_run_config(config), ["spot"])[0].backtest
    key = (lambda t: f"{t:g}") if a.preset in (None, "spot") else (lambda t: f"{a.preset}:{t:g}")
    if a.calibrate:
        table = json.loads(STRENGTHS.read_text()) if STRENGTHS.is_file() else {}
        for tgt in (float(x) for x in a.calibrate.split(",")):
            t0 = time.perf_counter()
            s, w = strength_for_net_sharpe(tgt, costs)
            table[key(tgt)] = {"strength": s, "window": w, "taker_fee_bps": costs.taker_fee_bps,
                                 "slippage_bps": costs.slippage_bps, "funding_rate_8h": costs.funding_rate_8h,
                               "preset": a.preset or "auto", "seconds": round(time.perf_counter() - t0, 1),
                               "command": "python " + " ".join(sys.argv)}
            print(f"net per-bar Sharpe {tgt:g}: strength {s:.4f}, oracle window {w}")
        STRENGTHS.write_text(json.dumps(table, indent=1))
        return
    out = Path(a.out)
    if a.summarize:
        runs = [HonestyRun(**json.loads(line)) for line in out.read_text().splitlines() if line.strip()]
        n_oos = round(a.days * 1440 * (1 - load_run_config(None).evolve.in_sample_fraction))
        summary = summarize(runs, n_oos=n_oos)
        summary["runs_file"] = out.name
        summary["command"] = "python " + " ".join(sys.argv)
        Path(a.summary_json).write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        return
    table = json.loads(STRENGTHS.read_text())
    targets = {float(t): (table[key(float(t))]["strength"], table[key(float(t))]["window"])
               for t in a.targets.split(",") if t}

    def sink(r: HonestyRun) -> None:
        with out.open("a") as fh:
            fh.write(json.dumps(r.to_dict()) + "\n")

    with tempfile.TemporaryDirectory() as work:
        run_study(a.null_seeds, a.planted_seeds, targets, Path(work), modes=tuple(a.modes.split(",")),
                  days=a.days, progress=print, sink=sink, seed_offset=a.seed_offset, population=a.population,
                  kinds=tuple(k for k in a.kinds.split(",") if k),
                  generations=a.generations, coevolution=a.coevolution, jobs=a.jobs, config=config)


if __name__ == "__main__":
    main()
