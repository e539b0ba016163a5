"""A journal that cannot lie quietly (issue 28, item 5).

On the code before this issue a rolled-back journal (a garbled or deleted SQLite WAL, an older copy of the
file) was used as if it were the whole truth: the bench restarted from the older state, filed its own lost
fills as foreign and traded on; the balance difference gated nothing, and a consistent perpetual account
showed a difference of 263.2 USDT; a full disk ended with "cannot rollback - no transaction is active".
Here each case is detected and the bench starts halted saying why, or stops with one line naming the cause.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crucible.config import config_from_dict
from crucible.journal import Journal, JournalWriteError
from crucible.runtime import Runtime, run_live
from crucible.venues.base import Fill
from crucible.venues.replay import ReplayVenue
from forge.data.loader import load_sample

SYM = "BTCUSDT"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    return load_sample()[0]


def make_cfg(tmp: Path, **crucible):
    return config_from_dict({
        "crucible": {"journal": str(tmp / "journal.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "requests"), "kill_file": str(tmp / "KILL"), "history_bars": 400,
                     "snapshot_every": 1, **crucible},
        "hotswap": {"enabled": False},
        "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"},
                  {"id": "b", "symbol": SYM, "genome": "builtin:meanrev"}]}, "test")


def _files(j: Path) -> list[Path]:
    return [j, Path(f"{j}.anchor"), Path(f"{j}-wal"), Path(f"{j}-shm")]


# ----------------------------------------------------------------------------- rollback on the replay venue


@pytest.mark.parametrize("with_anchor", [False, True], ids=["older_db_copy", "older_db_and_anchor_copy"])
def test_older_copy_of_the_journal_starts_halted(tmp_path, sample, with_anchor):
    """The bench trades 60 bars, its journal is replaced by the copy taken at bar 30 (with or without the
    anchor of that time), and the bench restarts against the same exchange: it starts halted, names the file,
    the last good sequence and what the venue shows, and sends no order.  With the old anchor the chain agrees
    with it: the venue's fills under the bench's own client ids that the journal lacks prove the rollback."""
    cfg = make_cfg(tmp_path)
    jpath = Path(cfg.general.journal)
    v = ReplayVenue({SYM: sample.head(420)}, start=300)
    first = run_live(cfg, venue=v, max_bars=30)
    assert first["orders"] > 0 and first["halted"] is None
    backup = tmp_path / "backup"
    backup.mkdir()
    for f in _files(jpath):
        if f.exists():
            shutil.copy2(f, backup / f.name)
    second = run_live(cfg, venue=v, max_bars=30)
    assert second["fills"] > 0 and second["halted"] is None
    orders_before = len(v.state()["orders"])
    for f in _files(jpath):
        if f.name.endswith(".anchor") and not with_anchor:
            continue  # the anchor written at bar 60 stays: the copy ends before it
        f.unlink(missing_ok=True)
        if (backup / f.name).exists():
            shutil.copy2(backup / f.name, f)
    again = run_live(cfg, venue=v, max_bars=10)
    assert again["halted"] is not None, again
    msg = again["halted"]
    assert "journal in doubt" in msg and str(jpath) in msg and "last chained seq" in msg
    assert "the venue shows positions" in msg
    assert "missing from the journal" in msg  # the venue's own-id fills the copy lacks
    if not with_anchor:
        assert "rolled back or truncated" in msg
    assert len(v.state()["orders"]) == orders_before  # nothing sent while in doubt
    assert again["orders"] == 0


def test_consistent_restart_is_not_in_doubt(tmp_path, sample):
    cfg = make_cfg(tmp_path)
    v = ReplayVenue({SYM: sample.head(400)}, start=300)
    run_live(cfg, venue=v, max_bars=40)
    again = run_live(cfg, venue=v, max_bars=40)
    assert again["halted"] is None and again["bars"] == 40
    rep = again["reconcile"]
    assert rep["doubts"] == [] and abs(rep["balance_diff"]) < 1e-6
    assert rep["balance_check"]["accounting"].startswith("cash")


_CHILD = textwrap.dedent("""
    import os, sys
    from crucible.journal import Journal
    from crucible.venues.base import Fill
    j = Journal(sys.argv[1], synchronous="FULL")
    j.db.execute("PRAGMA wal_autocheckpoint=0")
    def book(i):
        with j:
            cid = f"cr-x1-a-{i}-0"
            j.add_intent(client_order_id=cid, slot="a", symbol="BTCUSDT", qty=0.001, target=1.0,
                         bar_time=i * 60000, seq=0, reason="signal", now_ms=i)
            j.add_fill(Fill(f"t{i}", f"o{i}", cid, "BTCUSDT", 0.001, 60000.0 + i, 0.01, i * 60000 + 1), "a")
    for i in range(10):
        book(i)
    j.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(10, 40):
        book(i)
    os._exit(0)  # dies without closing: the last 30 commits live only in the WAL
""")


@pytest.mark.parametrize("damage", ["garbled_wal", "deleted_wal", "truncated_tail", "edited_fill"])
def test_damaged_journal_is_in_doubt(tmp_path, damage):
    jpath = tmp_path / "journal.sqlite"
    subprocess.run([sys.executable, "-c", _CHILD, str(jpath)], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    wal = Path(f"{jpath}-wal")
    assert wal.stat().st_size > 0
    if damage == "garbled_wal":  # SQLite drops every frame from the first bad checksum on, silently
        with open(wal, "r+b") as fh:
            fh.seek(wal.stat().st_size // 3)
            fh.write(os.urandom(4096))
    elif damage == "deleted_wal":
        wal.unlink()
        Path(f"{jpath}-shm").unlink(missing_ok=True)
    else:
        db = sqlite3.connect(jpath)
        if damage == "truncated_tail":
            db.execute("DELETE FROM chain WHERE seq > 70")
            db.execute("DELETE FROM fills WHERE trade_id IN ('t36', 't37', 't38', 't39')")
            db.execute("DELETE FROM orders WHERE client_order_id LIKE 'cr-x1-a-3_-0' AND bar_time >= 35 * 60000")
        else:
            db.execute("UPDATE fills SET qty = 0.002 WHERE trade_id = 't5'")
        db.commit()
        db.close()
    j = Journal(jpath)
    try:
        text = " | ".join(j.doubts)
        if damage == "deleted_wal":
            assert "rolled back or truncated" in text and "ends at seq 20" in text and "records seq 80" in text
        elif damage == "garbled_wal":
            assert "rolled back or truncated" in text and "records seq 80" in text
        elif damage == "truncated_tail":
            assert "ends at seq 70" in text
        else:
            assert "not in the money-event chain or changed" in text and "fill t5" in text
        # the anchor is frozen while in doubt: a reopen finds the same doubt (the evidence survives restarts)
    finally:
        j.close()
    assert Journal(jpath).doubts


def test_journal_without_anchor_is_in_doubt_but_a_legacy_one_is_anchored(tmp_path):
    jpath = tmp_path / "journal.sqlite"
    j = Journal(jpath)
    j.add_intent(client_order_id="cr-a-1-0", slot="a", symbol=SYM, qty=1.0, target=1.0, bar_time=0, seq=0,
                 reason="signal", now_ms=0)
    j.close()
    Path(f"{jpath}.anchor").unlink()
    j = Journal(jpath)
    assert any("no anchor file" in d for d in j.doubts)
    j.close()
    legacy = tmp_path / "legacy.sqlite"  # written before hash chains: no chain rows, no anchor
    j = Journal(legacy)
    j.add_intent(client_order_id="cr-a-1-0", slot="a", symbol=SYM, qty=1.0, target=1.0, bar_time=0, seq=0,
                 reason="signal", now_ms=0)
    j.db.execute("DELETE FROM chain")
    j.close()
    Path(f"{legacy}.anchor").unlink()
    j = Journal(legacy)
    assert j.doubts == [] and j.chain_seq == 1 and Path(f"{legacy}.anchor").is_file()
    j.close()


# ----------------------------------------------------------------------------- balance reconcile


def test_balance_difference_above_tolerance_halts(tmp_path, sample):
    cfg = make_cfg(tmp_path)
    v = ReplayVenue({SYM: sample.head(400)}, start=300)
    run_live(cfg, venue=v, max_bars=30)
    v._cash -= 25.0  # money left the account outside this bench
    again = run_live(cfg, venue=v, max_bars=10)
    assert again["halted"] is not None and "balance" in again["halted"] and "-25.00" in again["halted"]
    assert again["orders"] == 0


def test_consistent_perpetual_account_balances_to_zero(tmp_path, bybit_keys):
    """Fake Bybit (a linear perpetual wallet: balance + realised P&L - fees): after trading, the reconcile's
    balance difference is ~0 (the old formula compared the wallet with spot-like cash and showed the open
    position's notional, e.g. 263.2 USDT)."""
    from fake_bybit import FakeBybit, sample_bars
    from test_crucible_live import _settle, make_venue
    from test_crucible_runtime_safety import SYM, cfg_for, long_genome

    with FakeBybit(sample_bars(600), history=400) as fk:
        # a slot that holds a long throughout: the position is open at the end whichever bars a loaded machine
        # skips as stale (with the three switching builtins alone the run sometimes ended flat)
        cfg = cfg_for(tmp_path, slots=[{"id": "a", "symbol": SYM, "genome": "builtin:momentum"},
                                       {"id": "b", "symbol": SYM, "genome": "builtin:meanrev"},
                                       {"id": "c", "symbol": SYM, "genome": long_genome(tmp_path)}],
                      watchtower={"kill_floor": 0.0})
        v = make_venue(fk)
        try:
            fk.run_clock(0.04)
            s = run_live(cfg, venue=v, max_bars=30)
            fk.stop_clock()
            rep = _settle(cfg, v)
        finally:
            fk.stop_clock()
            v.close()
        st = fk.state()
    assert s["fills"] > 0 and s["halted"] is None and st["position"] != 0.0
    assert rep["balance_check"]["accounting"].startswith("wallet")
    assert abs(rep["balance_diff"]) < 1e-6, rep["balance_check"]
    assert rep["doubts"] == [] and rep["position_diff"] == {}


# ----------------------------------------------------------------------------- write failures


@pytest.mark.parametrize("fault,cause", [("max_page_count", "disk full"), ("query_only", "read-only")])
def test_write_failure_names_its_cause_and_stops_trading(tmp_path, sample, fault, cause):
    cfg = make_cfg(tmp_path)
    v = ReplayVenue({SYM: sample.head(400)}, start=300)
    run_live(cfg, venue=v, max_bars=5)
    j = Journal(cfg.general.journal, synchronous="FULL")
    pages = j.db.execute("PRAGMA page_count").fetchone()[0]
    if fault == "max_page_count":
        j.db.execute(f"PRAGMA max_page_count={pages + 1}")  # the disk is full after one more page
    else:
        j.db.execute("PRAGMA query_only=ON")
    rt = Runtime(cfg, v, j)
    orders = len(v.state()["orders"])
    with pytest.raises(JournalWriteError) as ei:
        rt.run(max_bars=80)
    msg = str(ei.value)
    assert cause in msg and "trading stopped" in msg and "cannot rollback" not in msg and "\n" not in msg
    assert ei.value.cause == cause and ei.value.exit_code == 2
    j.close()
    # whatever was sent was committed as an intent first: every order at the venue is in the journal
    j = Journal(cfg.general.journal, readonly=True)
    assert set(v.state()["orders"]) <= {o["client_order_id"] for o in j.orders()}
    assert len(v.state()["orders"]) >= orders
    j.close()


def test_a_journal_closed_before_its_first_money_event_reopens_clean(tmp_path):
    """A new journal that commits only events (no order or fill yet) writes its anchor at seq 0 with the genesis
    hash; reopening it must not find a doubt (it did: the verifier compared that anchor with no hash at all, so a
    bench restarted before it ever traded halted itself)."""
    jpath = tmp_path / "journal.sqlite"
    j = Journal(jpath)
    with j:
        j.event("start", 0, note="no money yet")
    j.close()
    j = Journal(jpath)
    assert j.doubts == [], j.doubts
    j.add_intent(client_order_id="cr-a-1-0", slot="a", symbol=SYM, qty=1.0, target=1.0, bar_time=0, seq=0,
                 reason="signal", now_ms=0)
    j.close()
    j = Journal(jpath)
    assert j.doubts == [] and j.chain_seq == 1, j.doubts
    j.close()
