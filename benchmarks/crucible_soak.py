"""Crucible hostile soak (issue 28): kills, journal faults and exchange outages survived, and money lost.

Three parts, each against an exchange that outlives the trader:

* **kill -9** (replay venue served to a runtime subprocess, and the loopback fake Bybit): the runtime is
  SIGKILLed at seeded random moments and restarted each time; it must end with the uninterrupted run's exact
  state (orders, fills, ledgers, the exchange's books).  Money lost = |exchange equity (cash + position at the
  last close) of the soak - that of the uninterrupted run|.  (tests/test_crucible_soak.py's harness.)
* **journal faults** (replay venue): after some bars the journal is damaged -- replaced by an older copy
  (with and without its anchor), its WAL garbled or deleted -- and the bench restarted; or a write fails
  (disk full, read-only).  Survived = the bench starts halted naming the cause (or stops with one line) and no
  order reaches the exchange that the journal does not hold.  Money at risk = the notional of orders sent
  while in doubt (goal 0).
* **outages** (fake Bybit): REST drops / 5xx / 429 on order, execution and order-status calls and WebSocket
  disconnects / duplicates at seeded bars; survived = no duplicate or lost order or fill, positions and the
  wallet reconcile (balance difference within the tolerance).  Money lost = |wallet balance difference|.

Run:  PYTHONPATH=. python benchmarks/crucible_soak.py --replay-kills 6 --exchange-kills 4 --outages 3 --seed 28
(writes benchmarks/crucible_soak.json).  The CI-sized form is the default test run (tests/test_crucible_soak.py,
test_crucible_journal_integrity.py, test_serve_intake.py, test_crucible_journal_lock.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("CRUCIBLE_API_KEY", "test-key")
os.environ.setdefault("CRUCIBLE_API_SECRET", "test-secret")

from crucible.journal import Journal, JournalWriteError  # noqa: E402
from crucible.runtime import Runtime, run_live  # noqa: E402
from crucible.venues.replay import ReplayVenue  # noqa: E402
from forge.data.loader import load_sample  # noqa: E402

SYM = "BTCUSDT"


def _equity(state: dict, close: float) -> float:
    return float(state["cash"]) + sum(float(q) for q in state["positions"].values()) * close


def kill_soak(tmp: Path, replay_kills: int, exchange_kills: int, seed: int) -> dict:
    import test_crucible_soak as soak

    out: dict = {}
    t0 = time.monotonic()
    try:
        (tmp / "replay").mkdir(parents=True, exist_ok=True)
        r = soak.replay_soak(tmp / "replay", kills=replay_kills, n_bars=max(300, 60 * replay_kills), seed=seed)
        out["replay"] = {**r, "survived": r["kills"], "money_lost_usdt": 0.0,
                         "note": "exchange state identical to the uninterrupted run (cash, positions, orders, fills)"}
    except AssertionError as exc:
        out["replay"] = {"survived": 0, "failed": str(exc)[:400]}
    out["replay"]["seconds"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    try:
        (tmp / "exchange").mkdir(parents=True, exist_ok=True)
        r = soak.exchange_soak(tmp / "exchange", kills=exchange_kills, n_bars=max(80, 20 * exchange_kills),
                               seed=seed)
        out["exchange"] = {**r, "survived": r["kills"], "money_lost_usdt": 0.0,
                           "note": "fake Bybit's books identical to the uninterrupted run"}
    except AssertionError as exc:
        out["exchange"] = {"survived": 0, "failed": str(exc)[:400]}
    out["exchange"]["seconds"] = round(time.monotonic() - t0, 1)
    return out


def _cfg(d: Path):
    from crucible.config import config_from_dict

    return config_from_dict({
        "crucible": {"journal": str(d / "journal.sqlite"), "champions_dir": str(d / "champions"),
                     "requests_dir": str(d / "requests"), "kill_file": str(d / "KILL"), "history_bars": 400,
                     "snapshot_every": 1},
        "hotswap": {"enabled": False},
        "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"},
                  {"id": "b", "symbol": SYM, "genome": "builtin:meanrev"}]}, "soak")


def journal_faults(tmp: Path, rounds: int, seed: int) -> dict:
    """Each round: trade, damage the journal one way, restart against the same exchange."""
    rng = random.Random(seed)
    sample = load_sample()[0]
    kinds = ["older_copy", "older_copy_and_anchor", "deleted_wal", "garbled_wal", "disk_full", "read_only"]
    rows = []
    for i in range(rounds * len(kinds)):
        kind = kinds[i % len(kinds)]
        d = tmp / f"fault{i}"
        d.mkdir(parents=True)
        cfg = _cfg(d)
        j = Path(cfg.general.journal)
        v = ReplayVenue({SYM: sample.head(300 + 200)}, start=300)
        n1 = rng.randint(20, 60)
        row = {"fault": kind, "bars_before": n1}
        if kind in ("disk_full", "read_only"):
            run_live(cfg, venue=v, max_bars=n1)
            jr = Journal(j, synchronous="FULL")
            if kind == "disk_full":
                pages = jr.db.execute("PRAGMA page_count").fetchone()[0]
                jr.db.execute(f"PRAGMA max_page_count={pages + rng.randint(1, 4)}")
            else:
                jr.db.execute("PRAGMA query_only=ON")
            try:
                Runtime(cfg, v, jr).run(max_bars=100)
                row.update(detected=False, message="no error")
            except JournalWriteError as exc:
                row.update(detected=True, message=str(exc)[:200], cause=exc.cause)
            finally:
                jr.close()
            r = Journal(j, readonly=True)
            journaled = {o["client_order_id"] for o in r.orders()}
            r.close()
            unjournaled = [c for c in v.state()["orders"] if c not in journaled]
            row.update(orders_not_in_journal=len(unjournaled), money_at_risk_usdt=0.0 if not unjournaled else None,
                       survived=row["detected"] and not unjournaled and "cannot rollback" not in row["message"])
            rows.append(row)
            continue
        run_live(cfg, venue=v, max_bars=n1)
        bak = d / "bak"
        bak.mkdir()
        for f in (j, Path(f"{j}.anchor")):
            shutil.copy2(f, bak / f.name)
        if kind in ("deleted_wal", "garbled_wal"):  # more bars whose commits live only in the WAL
            # keep trading in this process with checkpoints off, then take the files as a crash leaves them
            jr = Journal(j, synchronous="FULL")
            jr.db.execute("PRAGMA wal_autocheckpoint=0")
            rt = Runtime(cfg, v, jr)
            rt.run(max_bars=rng.randint(20, 60))
            # simulate the crash: copy the files as the disk holds them now (no checkpoint, WAL with commits)
            crash = d / "crash"
            crash.mkdir()
            for f in (j, Path(f"{j}-wal"), Path(f"{j}.anchor")):
                if f.exists():
                    shutil.copy2(f, crash / f.name)
            jr.close()
            for f in (j, Path(f"{j}-wal"), Path(f"{j}-shm"), Path(f"{j}.anchor")):
                f.unlink(missing_ok=True)
            for f in crash.iterdir():
                shutil.copy2(f, d / f.name)
            wal = Path(f"{j}-wal")
            if kind == "deleted_wal":
                wal.unlink(missing_ok=True)
            elif wal.exists():
                with open(wal, "r+b") as fh:
                    fh.seek(max(32, wal.stat().st_size // 4))
                    fh.write(os.urandom(8192))
        else:
            run_live(cfg, venue=v, max_bars=rng.randint(20, 60))
            j.unlink()
            for f in (Path(f"{j}-wal"), Path(f"{j}-shm")):
                f.unlink(missing_ok=True)
            shutil.copy2(bak / j.name, j)
            if kind == "older_copy_and_anchor":
                shutil.copy2(bak / f"{j.name}.anchor", Path(f"{j}.anchor"))
        before = dict(v.state()["orders"])
        try:
            again = run_live(cfg, venue=v, max_bars=30)
            halted = again["halted"]
        except Exception as exc:  # noqa: BLE001 - a refusal to start is also "detected"
            again, halted = {"orders": 0}, f"refused to start: {type(exc).__name__}: {str(exc)[:160]}"
        sent = [c for c in v.state()["orders"] if c not in before]
        close = float(sample["close"][min(299 + 200, sample.height - 1)])
        at_risk = sum(abs(float(v.state()["orders"][c].qty)) * close for c in sent) if sent else 0.0
        row.update(detected=halted is not None, message=(halted or "")[:240], orders_sent_in_doubt=len(sent),
                   money_at_risk_usdt=round(at_risk, 2), survived=halted is not None and not sent)
        rows.append(row)
    return {"rounds": rows, "faults": len(rows), "survived": sum(bool(r["survived"]) for r in rows),
            "money_at_risk_usdt": round(sum(float(r.get("money_at_risk_usdt") or 0.0) for r in rows), 2)}


def outages(tmp: Path, rounds: int, seed: int) -> dict:
    from crucible_driver import make_cfg as driver_cfg
    from fake_bybit import FakeBybit, sample_bars
    from test_crucible_live import _settle, assert_ledger_equals_exchange, make_venue

    rng = random.Random(seed)
    rows = []
    for i in range(rounds):
        d = tmp / f"outage{i}"
        d.mkdir(parents=True)
        with FakeBybit(sample_bars(600), history=400) as fk:
            cfg = driver_cfg(d)
            v = make_venue(fk, ws_backoff=(0.02, 0.2))
            at = sorted(rng.sample(range(2, 38), 4))
            hit = {"n": 0}

            def progress(e, at=at, fk=fk, hit=hit):
                if e["event"] == "bar" and e["bars"] in at:
                    for path in (None, "/v5/execution/list", "/v5/order/realtime"):
                        for kind in ("drop", "5xx", "429"):
                            fk.inject_rest(kind, path) if path else fk.inject_rest(kind)
                    fk.inject_ws(rng.choice(["disconnect", "duplicate"]), *([3] if rng.random() < 0.5 else []))
                    hit["n"] += 1

            try:
                fk.run_clock(0.04)
                s = run_live(cfg, venue=v, max_bars=40, progress=progress)
                fk.stop_clock()
                rep = _settle(cfg, v)
            finally:
                fk.stop_clock()
                v.close()
            try:
                led = assert_ledger_equals_exchange(Path(cfg.general.journal), fk)
                ok = rep["position_diff"] == {} and abs(rep["balance_diff"] or 0.0) <= rep["balance_check"]["tolerance"]
                err = None
            except AssertionError as exc:
                led, ok, err = {}, False, str(exc)[:300]
            rows.append({"fault_bars": at, "faults_hit": len(set(fk.faults_hit)), "ws_disconnects": fk.ws_disconnects,
                         "outage_bars": s["outage_bars"], "orders": s["orders"], "fills": led.get("fills"),
                         "balance_diff_usdt": rep["balance_diff"], "position_diff": rep["position_diff"],
                         "survived": ok, "error": err, "halted": s["halted"]})
    return {"rounds": rows, "outages": sum(len(r["fault_bars"]) for r in rows),
            "survived_rounds": sum(r["survived"] for r in rows),
            "money_lost_usdt": round(sum(abs(r["balance_diff_usdt"] or 0.0) for r in rows), 6)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replay-kills", type=int, default=6)
    ap.add_argument("--exchange-kills", type=int, default=4)
    ap.add_argument("--fault-rounds", type=int, default=1, help="rounds over the six journal faults")
    ap.add_argument("--outages", type=int, default=3, help="fake-Bybit runs with 4 outage bars each")
    ap.add_argument("--seed", type=int, default=28)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "crucible_soak.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="crucible-soak-"))
    t0 = time.monotonic()
    res = {"command": "PYTHONPATH=. python benchmarks/crucible_soak.py " + " ".join(argv or sys.argv[1:]),
           "seed": a.seed}
    try:
        res["kills"] = kill_soak(tmp, a.replay_kills, a.exchange_kills, a.seed)
        res["journal_faults"] = journal_faults(tmp, a.fault_rounds, a.seed)
        res["outages"] = outages(tmp, a.outages, a.seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    k = res["kills"]
    res["summary"] = {
        "kills_survived": int(k["replay"].get("survived", 0)) + int(k["exchange"].get("survived", 0)),
        "kills": a.replay_kills + a.exchange_kills,
        "journal_faults_survived": res["journal_faults"]["survived"], "journal_faults": res["journal_faults"]["faults"],
        "outages": res["outages"]["outages"], "outage_rounds_survived": res["outages"]["survived_rounds"],
        "outage_rounds": a.outages,
        "money_lost_usdt": round(float(k["replay"].get("money_lost_usdt") or 0.0)
                                 + float(k["exchange"].get("money_lost_usdt") or 0.0)
                                 + res["journal_faults"]["money_at_risk_usdt"] + res["outages"]["money_lost_usdt"], 6),
        "seconds": round(time.monotonic() - t0, 1)}
    Path(a.out).write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(json.dumps(res["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
