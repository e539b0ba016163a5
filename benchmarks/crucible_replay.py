"""Crucible replay throughput with the six-slot default bench, fast path vs the exchange code path.

Usage (from the repository root):

    .venv/bin/python benchmarks/crucible_replay.py                     # embedded sample
    .venv/bin/python benchmarks/crucible_replay.py --month 2024-01     # a month of the shared BTCUSDT data
    .venv/bin/python benchmarks/crucible_replay.py --month 2024-01 \
        --hall-of-fame artifacts/runs/real-full/hall_of_fame.json       # six evolved champions instead

Writes ``benchmarks/crucible_replay.json`` (or ``--out``) and prints a Markdown table.  See
``crucible.benchmark`` for what the two paths are; timings are best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crucible.benchmark import replay_throughput  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"


def month_files(month: str, warmup_days: int = 2) -> list[str]:
    """Daily kline files of ``month`` (YYYY-MM) plus the ``warmup_days`` files before it (signal history)."""
    files = sorted(SHARED.glob("BTCUSDT-1m-*.csv"))
    idx = [i for i, f in enumerate(files) if f.name.startswith(f"BTCUSDT-1m-{month}-")]
    if not idx:
        raise SystemExit(f"no files for {month} under {SHARED}")
    return [f"BTCUSDT={f}" for f in files[max(0, idx[0] - warmup_days): idx[-1] + 1]]


def hall_of_fame_config(hof: Path, work: Path, n: int = 6) -> Path:
    """configs/crucible.toml with its slots replaced by the top ``n`` genomes of a run's hall_of_fame.json."""
    members = json.loads(hof.read_text())["members"][:n]
    src = (ROOT / "configs" / "crucible.toml").read_text()
    parts = [src[: src.index("[[slots]]")]]
    for m in members:
        g = work / f"rank{m['rank']}.json"
        g.write_text(json.dumps(m["genome"]))
        parts.append(f'[[slots]]\nid = "hof{m["rank"]}"\nsymbol = "BTCUSDT"\ngenome = "{g}"\ncapital = 200.0\n\n')
    cfg = work / "crucible.toml"
    cfg.write_text("".join(parts))
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--month", help="YYYY-MM of the shared BTCUSDT 1m data (default: the embedded sample)")
    ap.add_argument("--hall-of-fame", type=Path, help="a run's hall_of_fame.json: slots = its top 6 genomes")
    ap.add_argument("--bars", type=int, default=0, help="bars for the fast path (0 = all)")
    ap.add_argument("--baseline-bars", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "crucible_replay.json"))
    a = ap.parse_args()
    data = month_files(a.month) if a.month else None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = hall_of_fame_config(a.hall_of_fame, Path(tmp)) if a.hall_of_fame else ROOT / "configs" / "crucible.toml"
        r = replay_throughput(str(cfg), data=data, bars=a.bars or 10**9, baseline_bars=a.baseline_bars,
                              repeats=a.repeats)
    r["command"] = "benchmarks/crucible_replay.py " + " ".join(sys.argv[1:])
    # the machine is shared: the 1-minute load average before and after says how much CPU the run had
    r["load_average_1m"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2),
                            "cpus": os.cpu_count()}
    Path(a.out).write_text(json.dumps(r, indent=1))
    f, b = r["fast"], r["baseline"]
    print(f"| path | bars | bars/s | orders/bar | seconds |\n|---|---|---|---|---|\n"
          f"| fast (chunked signals, NORMAL + group commit) | {f['bars']:,} | {f['bars_per_s']:,.0f} | "
          f"{f['orders_per_bar']:.2f} | {f['seconds']:.2f} |\n"
          f"| baseline (per-bar rolling window, FULL, commit per bar) | {b['bars']:,} | {b['bars_per_s']:,.0f} | "
          f"{b['orders_per_bar']:.2f} | {b['seconds']:.2f} |\n\nratio {r['ratio']:.1f}x; a 43,200-bar month "
          f"at the fast rate: {r['month_seconds']:.1f} s")
    print(f"fast run: {f['orders']:,} orders, {f['fills']:,} fills, {f['reweights']:,} reweights, {f['kills']} kills, "
          f"{f['swaps']} swaps; final equity {f['final_equity']} (total {f['total_equity']:.2f} USDT of 1,200)")
    la = r["load_average_1m"]
    print(f"load average (1 min) {la['before']} before, {la['after']} after, on {la['cpus']} CPUs")


if __name__ == "__main__":
    main()
