"""Digests of every journal table and the anchor after fixed Crucible replays: run it on two trees and compare.

A speed change of the replay path must leave the journal byte-identical.  This runs four replays of the
built-in six-slot bench (the code under test is whatever ``crucible`` the interpreter imports, so point
``PYTHONPATH`` at the tree to check):

* ``default``  -- 3,000 bars, the replay default (own venue: group commit, no commit points);
* ``injected`` -- 1,500 bars on a venue built outside ``run_live`` (commit points before every send), with venue
  faults queued (a lost response after accept, a request lost before the venue, a rejection, a 5xx);
* ``kills``    -- 1,500 bars with ``kill_floor = 190`` (four Watchtower kills, flattens, replacement requests) and a
  high CWO turnover (many transfers);
* ``passive``  -- 1,500 bars with ``maker-then-cross`` execution (resting limit orders, cancels, markouts).

Usage (from the repository root):

    PYTHONPATH=<tree> python benchmarks/crucible_journal_identity.py OUT.json      # digests of that tree
    python benchmarks/crucible_journal_identity.py --compare A.json B.json       # exit 1 when they differ

Every table is hashed row by row in rowid order (``repr`` of each row: floats bit for bit), the anchor sidecar
byte for byte; the run summary's counters and equities are kept too.  Paths and the bench id are fixed, so the
same code gives the same digests on any tree location.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

WORK = Path("/tmp/crucible-journal-identity")  # fixed: request paths are journaled
SUMMARY_KEYS = ("bars", "orders", "fills", "reweights", "kills", "swaps", "abandoned", "resent", "duplicates_ignored",
                "total_equity", "reserve", "stopped_by", "halted")


def digest(path: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out: dict[str, Any] = {}
    for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
        h = hashlib.sha256()
        n = 0
        for row in con.execute(f'SELECT rowid, * FROM "{t}" ORDER BY rowid'):
            h.update(repr(row).encode())
            h.update(b"\n")
            n += 1
        out[t] = f"{n} rows {h.hexdigest()[:20]}"
    con.close()
    anchor = Path(str(path) + ".anchor")
    out["anchor"] = hashlib.sha256(anchor.read_bytes()).hexdigest()[:20] if anchor.exists() else None
    return out


def scenarios() -> dict[str, dict[str, Any]]:
    from crucible.benchmark import _variant
    from crucible.config import load_crucible_config
    from crucible.runtime import make_venue, run_live

    base = load_crucible_config(None)
    out: dict[str, dict[str, Any]] = {}
    for name, bars in (("default", 3000), ("injected", 1500), ("kills", 1500), ("passive", 1500)):
        d = WORK / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        cfg = _variant(base, prefetch=base.replay.prefetch_bars or 4096, sync="NORMAL", data=None)
        cfg = cfg.with_("general", journal=str(d / "journal.sqlite"), champions_dir=str(d / "champions"),
                        requests_dir=str(d / "requests"), kill_file=str(d / "KILL"), bench_id="ident")
        if name == "kills":
            cfg = cfg.with_("watchtower", kill_floor=190.0).with_("cwo", max_turnover=0.5)
        if name == "passive":
            cfg = cfg.with_("execution", policy="maker-then-cross")
        venue: Any = "replay"
        if name == "injected":
            venue = make_venue(cfg, "replay")
            venue.inject("drop_after_accept", "network_before", "reject", "http_5xx")
        s = run_live(cfg, venue=venue, max_bars=bars, journal_path=d / "journal.sqlite", fresh=True)
        if name == "injected":
            venue.close()
        out[name] = {"tables": digest(d / "journal.sqlite"), "summary": {k: s.get(k) for k in SUMMARY_KEYS},
                     "slots": [(x["slot"], x["equity"], x["cash"], x["units"], x["weight"]) for x in s["slots"]]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="write the digests here (JSON)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    a = ap.parse_args()
    if a.compare:
        x, y = (json.loads(Path(p).read_text()) for p in a.compare)
        bad = 0
        for sc in sorted(set(x) | set(y)):
            for part in ("tables", "summary", "slots"):
                xa, ya = x.get(sc, {}).get(part), y.get(sc, {}).get(part)
                if xa != ya:
                    bad += 1
                    print(f"DIFFERENT {sc} {part}:\n  {xa}\n  {ya}")
            if x.get(sc) == y.get(sc):
                t = x[sc]["tables"]
                print(f"identical {sc}: {len(t) - 1} tables + anchor; " + ", ".join(
                    f"{k} {v.split()[0]}" for k, v in t.items() if k != "anchor"))
        sys.exit(1 if bad else 0)
    res = scenarios()
    text = json.dumps(res, indent=1, sort_keys=True)
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
