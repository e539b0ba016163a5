"""Exposure of the Crucible's slots relative to their equity over a replay (issue 28, item 3).

usage: PYTHONPATH=. python benchmarks/crucible_exposure.py [--bars 3000] [--config configs/crucible.toml]

Replays the embedded BTCUSDT sample with the given config (paths under a temporary directory, a fixed bench id,
``snapshot_every = 1``).  After every bar it measures each live slot's *decided* exposure: |units held + units of
its orders in flight (decided at this bar's close, filled at the next open)| x close / equity; and it reads every
equity snapshot of the journal (one per bar and slot: equity, cash, units, mark — the units *held*, before this
bar's orders fill).  Prints one JSON line: {"bars", "snapshots", "max_decided_leverage", "decided_over_1_05",
"max_held_leverage", "held_over_1_05" (snapshots with equity > 0), "min_cash" (USDT), "negative_cash" (snapshots
with cash < 0), "orders", "fills", "total_equity"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=3000)
    ap.add_argument("--config", default="configs/crucible.toml")
    a = ap.parse_args()
    os.environ.pop("FORGE_SIGNING_KEY", None)
    os.environ.pop("CRUCIBLE_BENCH_KEY", None)
    from crucible.config import config_from_dict
    from crucible.runtime import run_live
    from forge.core.config import read_toml

    with tempfile.TemporaryDirectory() as tmp:
        d = read_toml(a.config)
        t = Path(tmp)
        d["crucible"].update(journal=str(t / "j.sqlite"), champions_dir=str(t / "ch"), requests_dir=str(t / "rq"),
                             kill_file=str(t / "KILL"), bench_id="expo", snapshot_every=1)
        from crucible.runtime import Runtime

        decided: list[float] = []
        after = Runtime._after_bar

        def measure(self, bar_time):  # noqa: ANN001 - a measuring hook on the runtime
            flight: dict[str, float] = {}
            for o in self.journal.orders(("intent", "acked", "unknown")):
                flight[o["slot"]] = flight.get(o["slot"], 0.0) + o["qty"]
            for x in self.slots.values():
                if x.status == "live" and x.mark > 0 and x.equity() > 0:
                    decided.append(abs(x.ledger.units + flight.get(x.id, 0.0)) * x.mark / x.equity())
            after(self, bar_time)

        Runtime._after_bar = measure
        s = run_live(config_from_dict(d, a.config), venue="replay", max_bars=a.bars, fresh=True)
        Runtime._after_bar = after
        db = sqlite3.connect(t / "j.sqlite")
        cols = [r[1] for r in db.execute("PRAGMA table_info(equity)")]
        rows = db.execute("SELECT * FROM equity").fetchall()
        db.close()
    i = {c: cols.index(c) for c in ("equity", "cash", "units", "mark")}
    lev = [abs(r[i["units"]] * r[i["mark"]]) / r[i["equity"]] for r in rows if r[i["equity"]] > 0]
    cash = [r[i["cash"]] for r in rows]
    print(json.dumps({"bars": s["bars"], "snapshots": len(rows), "max_decided_leverage": round(max(decided), 4),
                      "decided_over_1_05": sum(x > 1.05 for x in decided),
                      "max_held_leverage": round(max(lev), 4),
                      "held_over_1_05": sum(x > 1.05 for x in lev), "min_cash": round(min(cash), 4),
                      "negative_cash": sum(c < -1e-9 for c in cash), "orders": s["orders"], "fills": s["fills"],
                      "total_equity": round(s["total_equity"], 4)}))


if __name__ == "__main__":
    main()
