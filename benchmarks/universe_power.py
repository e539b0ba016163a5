"""Power on planted panels and false passes on null panels: the default search + Gauntlet (issue 30).

See :mod:`loop.panel_power` for the panels, the oracle the strength is calibrated with and what a row records.

Usage (from the repository root, ``PYTHONPATH=.``):

    python benchmarks/universe_power.py --kind clock --calibrate 0.05     # strength for net per-bar Sharpe 0.05
    python benchmarks/universe_power.py --kind lead_lag --target 0.05 --seeds 10 --seed-offset 4000 \\
        --out benchmarks/universe_power_lead_lag_005.jsonl
    python benchmarks/universe_power.py --kind lead_lag --null --seeds 20 --seed-offset 4100 \\
        --out benchmarks/universe_power_null.jsonl                          # strength 0: the class's null panel
    python benchmarks/universe_power.py --summarize benchmarks/universe_power_*.jsonl --summary-json OUT.json

Rows are appended one JSON line per run as it finishes (a study stopped part-way keeps its finished runs).
Strengths are stored in ``benchmarks/gauntlet_strengths.json`` under ``panel_<kind>:<target>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STRENGTHS = ROOT / "benchmarks" / "gauntlet_strengths.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibrate", type=float, help="net per-bar Sharpe target to calibrate the strength for")
    ap.add_argument("--kind", choices=("lead_lag", "column", "clock", "regime", "book"), default="lead_lag")
    ap.add_argument("--null", action="store_true", help="run the class's null panels (strength 0)")
    ap.add_argument("--target", type=float, default=0.05, help="lead_lag: the calibrated net Sharpe target")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-offset", type=int, default=4000)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--causal", choices=("on", "off"), default="on",
                    help="off: evolve without the PCMCI feature filter (a diagnostic; the default search has it on)")
    ap.add_argument("--regimes", choices=("on", "off"), default="off",
                    help="on: with the predictive-regime terminals ([regimes] enabled; rows *_regimes)")
    ap.add_argument("--synthesize", type=float, default=0.0,
                    help="[evolve] synthesize on with this budget in seconds (rows <kind>_synth); 0 = off (default)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--summarize", nargs="*", type=Path, help="JSON-lines files to summarize")
    ap.add_argument("--summary-json", type=Path)
    a = ap.parse_args()

    from forge.core.runconfig import load_run_config, resolve_costs
    from loop.honesty import HonestyRun
    from loop.panel_power import run_panel, strength_for_panel_sharpe, summarize_panels

    def key(t: float) -> str:
        return f"panel_{a.kind}:{t:g}"

    if a.calibrate is not None:
        costs = resolve_costs(load_run_config(None), ["spot"])[0].backtest
        t0 = time.perf_counter()
        s, w = strength_for_panel_sharpe(a.calibrate, costs, kind=a.kind)
        table = json.loads(STRENGTHS.read_text()) if STRENGTHS.is_file() else {}
        table[key(a.calibrate)] = {"strength": s, "window": w, "taker_fee_bps": costs.taker_fee_bps,
                                   "slippage_bps": costs.slippage_bps, "preset": "spot",
                                   "seconds": round(time.perf_counter() - t0, 1),
                                   "command": "python " + " ".join(sys.argv) + " (bisection, 12 steps, 120-day "
                                              "panels, seeds 7 and 8)"}
        STRENGTHS.write_text(json.dumps(table, indent=1))
        print(f"net {a.calibrate:g}: strength {s:.4f} (oracle window {w}) in {time.perf_counter() - t0:.0f} s")
        return
    if a.summarize is not None:
        runs = [HonestyRun(**json.loads(line)) for p in a.summarize for line in p.read_text().splitlines() if line]
        out = summarize_panels(runs)
        text = json.dumps(out, indent=1)
        if a.summary_json:
            a.summary_json.write_text(text + "\n")
        print(text)
        return
    if a.out is None:
        ap.error("give --calibrate, --summarize, or --out")
    strength, target = 0.0, None
    if not a.null:
        table = json.loads(STRENGTHS.read_text())
        if key(a.target) not in table:
            ap.error(f"no calibrated strength {key(a.target)!r} in {STRENGTHS}: run --calibrate {a.target:g}")
        strength, target = float(table[key(a.target)]["strength"]), a.target
    with tempfile.TemporaryDirectory(prefix="universe-power-") as tmp:
        for seed in range(a.seed_offset, a.seed_offset + a.seeds):
            r = run_panel(seed, strength, Path(tmp), kind=a.kind, days=a.days, target=target, jobs=a.jobs,
                          causal=a.causal == "on", regimes=a.regimes == "on", synthesize=a.synthesize)
            with a.out.open("a") as fh:
                fh.write(json.dumps(r.to_dict()) + "\n")
            print(f"{r.kind} seed {seed}: {'PUBLISHED' if r.champion_published else 'rejected'} "
                  f"reads carrier={r.champion_uses_planted} edge={r.champion_edge_kind} "
                  f"[{', '.join(n for n, ok in r.stage_passed.items() if not ok)}] {r.champion_expression} "
                  f"({r.seconds} s)", flush=True)


if __name__ == "__main__":
    main()
