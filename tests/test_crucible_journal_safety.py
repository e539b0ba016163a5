"""Journal safety (issue 18, items 3 and 6, journal side): one writer (OS lock naming the holder's pid),
archives that keep every committed row (WAL included) under timestamped names, no archiving of files that
are not journals, and one-line errors (exit 2) for corrupt or foreign files in `crucible live`/`status`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crucible.config import config_from_dict
from crucible.journal import Journal, JournalError, JournalLocked, archive_journal
from crucible.runtime import run_live
from crucible.venues.replay import ReplayVenue
from forge.data.loader import load_sample

SYM = "BTCUSDT"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    return load_sample()[0]


def make_cfg(tmp: Path):
    return config_from_dict({
        "crucible": {"journal": str(tmp / "journal.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "requests"), "kill_file": str(tmp / "KILL"), "history_bars": 400},
        "hotswap": {"enabled": False},
        "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"}]}, "test")


def _counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("orders", "fills", "events", "meta")}
    finally:
        db.close()


def _ready(path: Path) -> bool:
    """The journal exists with its schema and some meta (a writer that just created the file has no tables yet)."""
    try:
        return path.exists() and _counts(path)["meta"] > 0
    except sqlite3.OperationalError:
        return False


def _crucible(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("FORGE_SIGNING_KEY", None)
    return subprocess.Popen([sys.executable, "-c", "import cli; cli.crucible_app()", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# ----------------------------------------------------------------------------- single writer


def test_second_writer_in_process_is_refused_with_pid(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    try:
        with pytest.raises(JournalLocked, match=f"pid {os.getpid()}") as ei:
            Journal(tmp_path / "j.sqlite")
        assert ei.value.pid == os.getpid() and ei.value.exit_code == 2
        r = Journal(tmp_path / "j.sqlite", readonly=True)  # readers take no lock
        r.close()
    finally:
        j.close()
    Journal(tmp_path / "j.sqlite").close()  # released on close


def test_second_crucible_live_exits_2_naming_the_holder(tmp_path):
    """Two real processes: the second `crucible live` on the same journal exits 2 naming the first one's pid
    and touches nothing; `crucible status` works meanwhile; the first one finishes normally."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""
        [crucible]
        journal = "{tmp_path / 'journal.sqlite'}"
        champions_dir = "{tmp_path / 'champions'}"
        requests_dir = "{tmp_path / 'requests'}"
        kill_file = "{tmp_path / 'KILL'}"
        history_bars = 400
        [hotswap]
        enabled = false
        [[slots]]
        id = "a"
        symbol = "BTCUSDT"
        genome = "builtin:momentum"
    """))
    jpath = tmp_path / "journal.sqlite"
    first = _crucible(["live", "--config", str(cfg), "--speed", "120"], tmp_path)  # 2 bars/s until stopped
    try:
        lock = Path(str(jpath) + ".lock")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().strip() == str(first.pid) and _ready(jpath):
                break
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()
        second = _crucible(["live", "--config", str(cfg), "--max-bars", "5"], tmp_path)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2, (out, err)
        msg = " ".join((out + err).split())
        assert f"pid {first.pid}" in msg and "in use" in msg and "Traceback" not in msg
        assert not list(tmp_path.glob("journal.*.sqlite"))  # the running journal was not archived
        st = _crucible(["status", "--journal", str(jpath), "--json"], tmp_path)
        sout, serr = st.communicate(timeout=120)
        assert st.returncode == 0, serr
        assert first.poll() is None  # still trading
    finally:
        first.send_signal(signal.SIGINT)
        try:
            first.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            first.kill()
            first.communicate()
    Journal(jpath).close()  # the lock died with its holder


# ----------------------------------------------------------------------------- archives


def _journal_with_uncheckpointed_wal(path: Path, n: int = 48) -> None:
    """A child process commits n orders and n events, then dies without closing (no checkpoint): the
    committed rows live only in the -wal file."""
    code = textwrap.dedent(f"""
        import os
        from crucible.journal import Journal
        j = Journal({str(path)!r}, synchronous="FULL")
        j.db.execute("PRAGMA wal_autocheckpoint=0")
        with j:
            for i in range({n}):
                j.add_intent(client_order_id=f"cr-a-{{i}}-0", slot="a", symbol="BTCUSDT", qty=0.001, target=1.0,
                             bar_time=i * 60000, seq=0, reason="signal", now_ms=i)
                j.event("test", i, "a", i=i)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_archive_keeps_rows_that_live_only_in_the_wal(tmp_path, sample):
    jpath = tmp_path / "journal.sqlite"
    _journal_with_uncheckpointed_wal(jpath)
    wal = Path(str(jpath) + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    before = _counts(jpath)
    assert before["orders"] == 48 and before["events"] == 48
    cfg = make_cfg(tmp_path)
    s = run_live(cfg, venue=ReplayVenue({SYM: sample.head(360)}, start=300), journal_path=jpath, fresh=True)
    assert s["bars"] == 60
    archives = sorted(tmp_path.glob("journal.*.sqlite"))
    assert len(archives) == 1 and not Path(str(archives[0]) + "-wal").exists()
    assert _counts(archives[0]) == before  # every committed row, none lost
    assert _counts(jpath)["orders"] != 48  # a new journal was started


def test_archives_are_timestamped_and_all_kept(tmp_path, sample):
    cfg = make_cfg(tmp_path)
    jpath = Path(cfg.general.journal)
    counts = []
    for _ in range(3):
        run_live(cfg, venue=ReplayVenue({SYM: sample.head(340)}, start=300), fresh=True)
        counts.append(_counts(jpath))
    archives = sorted(tmp_path.glob("journal.*.sqlite"))
    assert len(archives) == 2 and len({a.name for a in archives}) == 2
    assert [_counts(a) for a in archives] == counts[:2]
    assert not list(tmp_path.glob("*.prev"))
    # two archives within the same timestamp never overwrite each other
    from datetime import datetime, timezone

    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    run_live(cfg, venue=ReplayVenue({SYM: sample.head(310)}, start=300), fresh=False)
    a1 = archive_journal(jpath, now=when)
    Journal(jpath).close()
    a2 = archive_journal(jpath, now=when)
    assert a1 != a2 and a1.exists() and a2.exists()


# ----------------------------------------------------------------------------- foreign and corrupt files


def test_live_refuses_to_archive_a_file_that_is_not_a_journal(tmp_path, sample):
    cfg = make_cfg(tmp_path)
    toml = tmp_path / "settings.toml"
    toml.write_text("[crucible]\njournal = 'x'\n")
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    for path, words in ((toml, "not a SQLite file"), (other, "without the table")):
        before = path.read_bytes()
        for fresh in (True, False):
            with pytest.raises(JournalError, match=words):
                run_live(cfg, venue=ReplayVenue({SYM: sample.head(320)}, start=300), journal_path=path, fresh=fresh)
            assert path.read_bytes() == before  # untouched
        assert not list(tmp_path.glob(f"{path.stem}.*{path.suffix}"))


def _corrupt_journal(tmp_path: Path, sample) -> Path:
    cfg = make_cfg(tmp_path)
    run_live(cfg, venue=ReplayVenue({SYM: sample.head(340)}, start=300))
    jpath = Path(cfg.general.journal)
    data = bytearray(jpath.read_bytes())
    data[100:4096] = os.urandom(3996)  # page 1 (the schema) overwritten after the 100-byte header
    jpath.write_bytes(bytes(data))
    return jpath


def test_cli_one_line_errors_for_corrupt_and_foreign_journals(tmp_path, sample):
    from typer.testing import CliRunner

    from cli import crucible_app

    runner = CliRunner()
    corrupt = _corrupt_journal(tmp_path / "c", sample)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(8192))
    toml = tmp_path / "x.toml"
    toml.write_text("[crucible]\n")
    for path in (corrupt, garbage, toml):
        before = path.read_bytes()
        for args in (["status", "--journal", str(path)], ["live", "--journal", str(path), "--max-bars", "3"]):
            r = runner.invoke(crucible_app, args)
            out = r.output.strip()
            assert r.exit_code == 2, (args, out)
            assert "Traceback" not in out and "error:" in out and str(path.name) in out, out
            assert len(out.splitlines()) <= 3, out  # one message (rich may wrap a long line)
        assert path.read_bytes() == before


# ----------------------------------------------------------------------------- crucible status


def test_status_shows_weights_transfers_and_slot_pnl(tmp_path, sample):
    """Per-slot P&L = last equity snapshot - capital - CWO transfers, weights from the snapshot; transfer
    events change P&L by exactly their amount; the table renders the new columns."""
    from rich.console import Console

    from commands.crucible import status_view
    from crucible.status import status

    cfg = config_from_dict({
        "crucible": {"journal": str(tmp_path / "journal.sqlite"), "champions_dir": str(tmp_path / "champions"),
                     "requests_dir": str(tmp_path / "requests"), "kill_file": str(tmp_path / "KILL"),
                     "history_bars": 400, "snapshot_every": 1},
        "hotswap": {"enabled": False},
        "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"},
                  {"id": "b", "symbol": SYM, "genome": "builtin:meanrev", "capital": 300.0}]}, "test")
    s = run_live(cfg, venue=ReplayVenue({SYM: sample.head(420)}, start=300))
    rep = status(cfg.general.journal)
    by = {r["slot"]: r for r in rep["slots"]}
    for sl in s["slots"]:
        r = by[sl["slot"]]
        assert r["capital"] == (300.0 if sl["slot"] == "b" else 200.0)
        assert r["equity"] == pytest.approx(sl["equity"], abs=1e-9)
        assert r["weight"] == pytest.approx(sl["weight"], abs=1e-12)
        assert r["pnl"] == pytest.approx(sl["equity"] - r["capital"] - r["transfers"], abs=1e-9)
        if "transfers" in sl:  # the runtime's ledger books CWO transfers: status must agree with it
            assert r["transfers"] == pytest.approx(sl["transfers"], abs=1e-6)
            assert r["pnl"] == pytest.approx(sl["pnl"], abs=1e-6)
    assert all(r["transfers"] == 0.0 for r in rep["slots"]) or rep["counts"]["transfers"] > 0
    t_last = max(r["time_ms"] for r in rep["slots"])
    j = Journal(cfg.general.journal)
    try:
        j.event("transfer", t_last, None, amounts={"a": 25.0, "b": -25.0})  # as the runtime journals them
    finally:
        j.close()
    rep2 = status(cfg.general.journal)
    by2 = {r["slot"]: r for r in rep2["slots"]}
    assert by2["a"]["transfers"] == by["a"]["transfers"] + 25.0
    assert by2["a"]["pnl"] == pytest.approx(by["a"]["pnl"] - 25.0) and by2["b"]["pnl"] == pytest.approx(by["b"]["pnl"] + 25.0)
    assert rep2["counts"]["transfers"] == rep["counts"]["transfers"] + 1
    con = Console(width=200, record=True)
    con.print(status_view(rep2, 200))
    text = con.export_text()
    assert "P&L" in text and "transfers" in text and f"{by2['a']['pnl']:+.2f}" in text


# ----------------------------------------------------------------------------- carried writes (replay hot path)


def _file_rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_acks_and_events_are_carried_to_the_commit_in_order(tmp_path):
    p = tmp_path / "j.sqlite"
    j = Journal(p, synchronous="NORMAL")
    try:
        with j:
            j.add_intent(client_order_id="x-1", slot="a", symbol=SYM, qty=1.0, target=1.0, bar_time=0, seq=0,
                         reason="signal", now_ms=10)
            j.add_intent(client_order_id="x-2", slot="b", symbol=SYM, qty=1.0, target=1.0, bar_time=0, seq=0,
                         reason="signal", now_ms=10)
            j.commit()
            j.set_order_status("x-1", "acked", 20, venue_order_id="V1")
            j.set_order_status("x-2", "acked", 21, venue_order_id="V2")
            j.event("first", 30, "a", n=1)
            j.event("second", 31, None, n=2)
            assert j.order("x-1")["status"] == "acked"  # the in-memory mirror knows at once
            assert _file_rows(p, "SELECT status FROM orders ORDER BY rowid") == [("intent",), ("intent",)]
            assert [e["kind"] for e in j.events()] == ["first", "second"]  # a read inside the batch flushes
            j.set_order_status("x-2", "filled", 40)  # a final status replaces the carried ack
        rows = _file_rows(p, "SELECT client_order_id, status, venue_order_id, updated_ms FROM orders ORDER BY rowid")
        assert rows == [("x-1", "acked", "V1", 20), ("x-2", "filled", "V2", 40)]
        assert _file_rows(p, "SELECT id, kind, data FROM events") == [(1, "first", '{"n": 1}'), (2, "second", '{"n": 2}')]
        with pytest.raises(RuntimeError):
            with j:
                j.event("lost", 50)
                j.set_order_status("x-1", "acked", 51, venue_order_id="V9")
                raise RuntimeError("crash inside the bar")
        assert [e["kind"] for e in j.events()] == ["first", "second"] and j.order("x-1")["venue_order_id"] == "V1"
    finally:
        j.close()


def test_commit_points_only_where_a_venue_outlives_the_process(tmp_path, sample):
    """An injected venue (it may outlive a crash) sees every intent committed before its send; the replay venue
    run_live builds itself dies with the process, so its intents ride on the next group commit."""
    seen: dict[str, list[bool]] = {"injected": [], "own": []}

    def hook(which: str):
        def f(point, ctx):
            if point == "intent_saved":
                cid = ctx["order"]["client_order_id"]
                seen[which].append(bool(_file_rows(Path(cfg.general.journal),
                                                   f"SELECT 1 FROM orders WHERE client_order_id = '{cid}'")))
        return f

    cfg = make_cfg(tmp_path / "injected")
    run_live(cfg, venue=ReplayVenue({SYM: sample.head(500)}, start=300), fault=hook("injected"))
    cfg = make_cfg(tmp_path / "own").with_("replay", warmup_bars=300, max_bars=200)
    run_live(cfg, venue="replay", fault=hook("own"))
    assert seen["injected"] and all(seen["injected"])
    assert seen["own"] and not any(seen["own"])
