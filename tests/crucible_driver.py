"""Run the Crucible on a real ``CcxtVenue`` against a (fake) Bybit, in its own process, for kill -9 tests.

usage: python tests/crucible_driver.py --dir DIR --rest URL --ws URL --max-bars N
       [--kill-at intent_saved|sent_not_acked|fills_fetched --kill-nth K] [--settle]

Builds the test config (three slots on BTCUSDT: builtin momentum, meanrev, trend; journal, champions,
requests and kill file under DIR; history_bars 400; no hot-swap; kill floor 0), connects a
``CcxtVenue("bybit", feed="ws")`` to the given URLs (keys from ``CRUCIBLE_API_KEY`` /
``CRUCIBLE_API_SECRET``) and calls ``crucible.runtime.run_live(cfg, venue=..., fault=hook,
max_bars=N)``.  The hook sends SIGKILL to this process at the K-th occurrence of the --kill-at point
("fills_fetched" counts only calls that fetched a fill not seen before, i.e. filled but not booked).
--settle then restores the journal and runs the runtime's reconcile once more (books fills of orders
sent on the last bar, resolves their status) without trading.  Prints one JSON line:
{"summary": run_live's summary, "reconcile": the settle reconcile report or null}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def make_cfg(d: Path) -> Any:
    from crucible.config import config_from_dict

    return config_from_dict({
        "crucible": {"journal": str(d / "journal.sqlite"), "champions_dir": str(d / "champions"),
                     "requests_dir": str(d / "requests"), "kill_file": str(d / "KILL"), "history_bars": 400,
                     "snapshot_every": 1},
        "hotswap": {"enabled": False},
        "watchtower": {"kill_floor": 0.0, "stale_feed_seconds": 20.0},
        "slots": [{"id": "a", "symbol": "BTCUSDT", "genome": "builtin:momentum"},
                  {"id": "b", "symbol": "BTCUSDT", "genome": "builtin:meanrev"},
                  {"id": "c", "symbol": "BTCUSDT", "genome": "builtin:trend"}],
    }, "crucible_driver")


def kill_hook(point: str | None, nth: int):
    seen: dict[str, Any] = {"n": 0, "trades": set()}

    def hook(p: str, ctx: dict[str, Any]) -> None:
        if p != point:
            return
        if p == "fills_fetched":
            new = {f.trade_id for f in ctx["fills"]} - seen["trades"]
            seen["trades"] |= new
            if not new:
                return
        seen["n"] += 1
        if seen["n"] == nth:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--rest", required=True)
    ap.add_argument("--ws", required=True)
    ap.add_argument("--max-bars", required=True, type=int)
    ap.add_argument("--kill-at", choices=["intent_saved", "sent_not_acked", "fills_fetched"])
    ap.add_argument("--kill-nth", type=int, default=1)
    ap.add_argument("--settle", action="store_true")
    a = ap.parse_args(argv)

    from crucible.journal import Journal
    from crucible.runtime import Runtime, run_live
    from crucible.venues.ccxt_venue import CcxtVenue

    cfg = make_cfg(a.dir)
    v = CcxtVenue("bybit", ["BTCUSDT"], api_url=a.rest, ws_url=a.ws, feed="ws", timeout_ms=3000)
    try:
        summary = run_live(cfg, venue=v, fault=kill_hook(a.kill_at, a.kill_nth), max_bars=a.max_bars)
        rep = None
        if a.settle:
            j = Journal(cfg.general.journal)
            try:
                rt = Runtime(cfg, v, j)
                rt.restore()
                rep = rt.reconcile()
            finally:
                j.close()
    finally:
        v.close()
    print(json.dumps({"summary": summary, "reconcile": rep}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
