"""The closed loop on replay (issue 19): kill -> request -> forge serve -> gauntlet -> publish -> shadow ->
re-arm of the dead slot, asserted from the journal; with the Forge worker killed by SIGKILL mid-evolve
(the supervisor restarts it and the request resumes from its checkpoint, not duplicated) and then the
runtime killed by SIGKILL (the worker stops with it; a restarted ``crucible live --forge`` runs the loop to
the end).

A planted market (``forge.data.synthetic``) where a validated replacement can exist; one slot (mean
reversion, high turnover) dies at a demo kill floor, the other lives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crucible.journal import Journal
from crucible.status import lineage_lines, status
from loop.serve import read_state

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
[crucible]
journal = "artifacts/j.sqlite"
champions_dir = "artifacts/champions"
requests_dir = "artifacts/requests"
kill_file = "artifacts/KILL"
history_bars = 1500
[replay]
data = ["PLANTUSDT=synthetic:planted?seed=11&days=10&strength=0.35"]  # strong enough for an unseeded search: the
# request seed (ranked on live marks up to the request) is withheld, issue 29
warmup_bars = 10080
max_bars = 1400
[watchtower]
kill_floor = 195.0
[hotswap]
poll_bars = 5
shadow_bars = 60
[serve]
runs_dir = "artifacts/runs"
evolve_config = "configs/smoke.toml"
population = 24
generations = 5
window_days = 7
min_bars = 2000
max_attempts = 1
replay_wait_s = 1200  # a fresh install compiles the kernels first (forge warmup inside forge evolve): minutes
[[slots]]
id = "p1"
symbol = "PLANTUSDT"
genome = "builtin:meanrev"
[[slots]]
id = "p2"
symbol = "PLANTUSDT"
genome = "builtin:flow"
"""
CODE = "import sys, cli; sys.argv = ['crucible'] + sys.argv[1:]; cli.crucible_app()"


def _live(tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("FORGE_SIGNING_KEY", None)
    return subprocess.Popen([sys.executable, "-c", CODE, "live", "--config", str(tmp / "loop.toml"), "--forge"],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _wait(cond, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"crucible live ended while waiting for {what}: {proc.stdout.read()[-1500:]}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_closed_loop_rearms_a_dead_slot_through_worker_and_runtime_kills(tmp_path):
    (tmp_path / "loop.toml").write_text(CONFIG)
    reqs, runs = tmp_path / "artifacts" / "requests", tmp_path / "artifacts" / "runs"
    first = _live(tmp_path)
    try:
        _wait(lambda: list(reqs.glob("p1-*.serve.json")), 120, "the worker to claim p1's request", first)
        request = next(p for p in reqs.glob("p1-*.json") if p.name.count(".") == 1)
        ckpt = lambda: list(runs.glob("*/checkpoint.json"))  # noqa: E731
        _wait(ckpt, 240, "the first checkpoint", first)
        worker = read_state(request)["worker_pid"]
        os.kill(worker, signal.SIGKILL)  # the supervisor restarts the worker; it resumes the request
        _wait(lambda: (read_state(request) or {}).get("worker_pid") not in (None, worker), 60,
              "a restarted worker to claim the request", first)
        worker2 = read_state(request)["worker_pid"]
        os.kill(first.pid, signal.SIGKILL)  # the runtime dies mid-evolve ...
        first.wait()
        try:  # ... and its worker with it
            _wait(lambda: _gone(worker2), 30, "the worker to stop with its runtime")
        except BaseException:
            if not _gone(worker2):  # its stacks (faulthandler on SIGUSR1) and log, then end it
                os.kill(worker2, signal.SIGUSR1)
                time.sleep(1.0)
                os.kill(worker2, signal.SIGKILL)
            log = runs / "worker.log"
            print("worker log tail:\n" + (log.read_text()[-6000:] if log.exists() else "(none)"))
            raise
    finally:
        if first.poll() is None:
            first.kill()
    second = _live(tmp_path)
    out, _ = second.communicate(timeout=1800)
    assert second.returncode == 0, out[-2000:]
    st = read_state(request)
    why = {"status": st.get("status"), "reason": st.get("reason"), "crashes": st.get("crashes"),
           "attempts": [{k: a.get(k) for k in ("status", "resumed", "error", "reasons")} for a in st["attempts"]],
           "output": out[-3000:]}
    assert st["status"] == "served" and st["attempts"][0]["resumed"] is True, json.dumps(why, default=str)[:6000]
    assert len(st["attempts"]) == 1 and [p.name for p in runs.iterdir() if p.is_dir()] == [f"{request.stem}-a0"]
    published = st["attempts"][0]["published"]
    assert published

    j = Journal(tmp_path / "artifacts" / "j.sqlite", readonly=True)
    try:
        ev = [(e["kind"], e["slot"], e["data"]) for e in j.events()]
    finally:
        j.close()
    kinds = [k for k, _s, _d in ev]
    kill = kinds.index("kill")
    assert ev[kill][1] == "p1"
    order = [kinds.index(k, kill) for k in ("request", "forge_wait", "shadow_start", "rearm_test", "rearm")]
    assert order == sorted(order), kinds
    wait = next(d for k, _s, d in ev if k == "forge_wait")
    assert wait["status"] == "served"
    rearm = next(d for k, s, d in ev if k == "rearm" and s == "p1")
    lin = rearm["lineage"]
    assert lin["request"] == request.stem and lin["run_id"] == f"{request.stem}-a0" and lin["slot_requested"] == "p1"
    assert lin["verdict"]["survived"] is True and lin["source"] == "forge serve"
    assert lin["parent_genome_sha256"] == json.loads(request.read_text())["seed_genome_sha256"]
    assert lin["previous_left"].startswith("killed at equity")
    assert any(p.endswith(rearm["new"][:16] + ".meta.json") for p in published)

    rep = status(tmp_path / "artifacts" / "j.sqlite")
    p1 = next(r for r in rep["slots"] if r["slot"] == "p1")
    assert p1["status"] == "live" and p1["rearms"] == 1 and p1["lineage"]["run_id"] == lin["run_id"]
    assert rep["counts"]["rearms"] == 1 and rep["counts"]["kills"] >= 1
    assert any(line.startswith("p1:") and lin["run_id"] in line for line in lineage_lines(rep))
    # the re-armed slot traded its new champion with a fresh $200 ledger
    assert "fills" in out and p1["equity"] > 150
