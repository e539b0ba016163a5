"""Passive execution in the Crucible (issue 31 part 5): the same replay bench under always-taker and under
maker-then-cross (post-only limits at the estimated touch, cancel/replace each bar, cross at the deadline).

Bench: the builtin genomes momentum, meanrev and trend on the embedded BTCUSDT 1-minute sample (replay venue,
linear-perpetual costs: taker 5 bp + 1 bp slippage, maker 2 bp; resting orders fill by the kline fill model,
at most ``--share`` of a bar's volume), ``--bars`` bars after 2,000 bars of warm-up; no hot-swap, no CWO capital
moves (weights only), so both runs see the same signals.  Reports per slot and in total: fills, traded notional,
fees and slippage against the decision price (bp of the decision-price notional), the share of the intended
units filled passively, the post-only reject rate, markouts 1 / 5 / 15 minutes after the fills (bp, + = the
price moved the fill's way), final equity, and the runtime's bars/s and the mean policy decision time.

usage: PYTHONPATH=. python benchmarks/crucible_passive.py [--bars 5000] [--share 0.1] [--deadline 5]
       [--out benchmarks/crucible_passive.json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np


def run(policy: str, bars: int, share: float, deadline: int, d: Path) -> dict:
    from crucible.config import config_from_dict
    from crucible.journal_exec import slot_exec_metrics
    from crucible.passive import PassiveMixin
    from crucible.runtime import run_live

    cfg = config_from_dict({
        "crucible": {"journal": str(d / "journal.sqlite"), "champions_dir": str(d / "champions"),
                     "requests_dir": str(d / "requests"), "kill_file": str(d / "KILL"), "history_bars": 400,
                     "bench_id": "bench"},
        "replay": {"warmup_bars": 2000, "max_bars": bars},
        "costs": {"taker_fee_bps": 5.0, "slippage_bps": 1.0},
        "hotswap": {"enabled": False},
        "cwo": {"move_capital": False},
        "execution": {"policy": policy, "deadline_bars": deadline, "maker_fee_bps": 2.0, "max_volume_share": share},
        "slots": [{"id": g[:4], "symbol": "BTCUSDT", "genome": f"builtin:{g}", "costs": "futures"}
                  for g in ("momentum", "meanrev", "trend")],
    }, f"crucible_passive ({policy})")
    timing = {"n": 0, "s": 0.0}
    orig = PassiveMixin._policy_action

    def timed(self, *a):
        t0 = time.perf_counter()
        try:
            return orig(self, *a)
        finally:
            timing["n"] += 1
            timing["s"] += time.perf_counter() - t0

    PassiveMixin._policy_action = timed
    try:
        s = run_live(cfg, venue="replay", fresh=True)
    finally:
        PassiveMixin._policy_action = orig
    db = sqlite3.connect(d / "journal.sqlite")
    try:
        m = slot_exec_metrics(db)
        tot = db.execute("SELECT SUM(qty * decision_price), SUM(fee), SUM(side * (price - decision_price) * qty),"
                         " SUM(maker * qty), SUM(qty) FROM exec_fills").fetchone()
        mk = {k: db.execute(f"SELECT SUM(markout_{k} * qty) / SUM(qty) FROM exec_fills WHERE markout_{k} IS NOT NULL")
              .fetchone()[0] for k in (1, 5, 15)}
    finally:
        db.close()
    notional, fees, slip, maker_q, q = tot
    return {"policy": policy, "bars": s["bars"], "bars_per_s": s["bars_per_s"], "orders": s["orders"],
            "fills": s["fills"], "intents": s.get("intents", 0), "limit_orders": s.get("limit_orders", 0),
            "post_only_rejects": s.get("post_only_rejects", 0), "crosses": s.get("crosses", 0),
            "cancels": s.get("cancels", 0), "total_equity": s["total_equity"],
            "policy_decision_us": 1e6 * timing["s"] / timing["n"] if timing["n"] else None,
            "total": {"notional": notional, "fee_bps": 1e4 * fees / notional, "slippage_bps": 1e4 * slip / notional,
                      "cost_bps": 1e4 * (fees + slip) / notional, "maker_share": maker_q / q,
                      **{f"markout_{k}_bps": v for k, v in mk.items()}},
            "slots": {k: {kk: (None if isinstance(vv, float) and not np.isfinite(vv) else vv) for kk, vv in v.items()}
                      for k, v in m.items()},
            "equity": {x["slot"]: x["equity"] for x in s["slots"]}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=5000)
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--deadline", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/crucible_passive.json"))
    a = ap.parse_args()
    out = []
    for pol in ("always-taker", "maker-then-cross"):
        with tempfile.TemporaryDirectory() as d:
            r = run(pol, a.bars, a.share, a.deadline, Path(d))
        out.append(r)
        t = r["total"]
        print(f"{pol:17s} bars {r['bars']} ({r['bars_per_s']:.0f}/s)  fills {r['fills']}  notional {t['notional']:.0f}  "
              f"fee {t['fee_bps']:.2f} bp  slip {t['slippage_bps']:+.2f} bp  cost {t['cost_bps']:.2f} bp  "
              f"maker {t['maker_share']:.1%}  mk1/5/15 {t['markout_1_bps']:+.2f}/{t['markout_5_bps']:+.2f}/"
              f"{t['markout_15_bps']:+.2f} bp  equity {r['total_equity']:.2f}  PO rejects {r['post_only_rejects']}"
              f"  decision {r['policy_decision_us'] or 0:.0f} us")
        for sid, m in r["slots"].items():
            print(f"   {sid}: fills {m['fills']}  fee {m['fee_bps']:.2f}  slip {m['slippage_bps']:+.2f}  fill rate "
                  f"{m['fill_rate'] if m['fill_rate'] is not None else float('nan'):.3f}  reject rate "
                  f"{m['reject_rate'] if m['reject_rate'] is not None else float('nan'):.3f}  mk1/5/15 "
                  f"{m['markout_1_bps']:+.2f}/{m['markout_5_bps']:+.2f}/{m['markout_15_bps']:+.2f}  "
                  f"equity {r['equity'][sid]:.2f}")
    a.out.write_text(json.dumps({"args": vars(a) | {"out": str(a.out)}, "runs": out}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
