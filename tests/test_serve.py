"""forge serve: the Forge worker of the closed loop (issue 19).

A replacement request written by the Crucible's Watchtower is claimed, served on the symbol's bars before
the request time, validated and published with a signed lineage; a final request is never served twice;
two workers never serve one request; a worker killed by SIGKILL mid-evolve is resumed from the run's
checkpoint and gives the same result as an uninterrupted serve; a request that cannot be served ends
``unserved`` with its reason.
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

from crucible.builtin import builtin_genome
from crucible.watchtower import write_replacement_request
from loop.serve import Claim, load_serve_config, pending_requests, read_state, serve_pending, serve_request
from forge.core.champion import verify_champion

REPO = Path(__file__).resolve().parents[1]
# Strength 0.35 (was 0.2): since issue 29 the request's seed genome is withheld when it was selected on the
# attempt's out-of-sample bars (always, for a seed ranked on live marks), and PBO runs over cluster
# representatives and DoWhy adjusts on the PCMCI graph's backdoor set; at 0.2 the unseeded 24 x 3 search's
# champion (OOS Sharpe 0.098/bar, permutation p 0.005) failed PBO (0.65 over 8 representatives, mostly variants
# of the one edge) and DoWhy (placebo p 0.15 after adjusting on return_lag1, the rule's own input). This test
# is about the serve mechanics; that power loss is recorded in the issue-29 notes.
PLANTED = "synthetic:planted?seed=11&days=16&strength=0.35"
T0 = 1718582400000  # first bar of the embedded sample's clock


def _config(tmp: Path, data: str = PLANTED, **serve: object) -> Path:
    table = {"runs_dir": str(tmp / "runs"), "evolve_config": "configs/smoke.toml", "population": 24,
             "generations": 3, "window_days": 12, "min_bars": 2000, "max_attempts": 1} | serve
    lines = ["[crucible]", f'requests_dir = "{tmp / "requests"}"', f'champions_dir = "{tmp / "champions"}"',
             "[replay]", f'data = ["PLANTUSDT={data}"]', "[serve]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    p = tmp / "loop.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _request(tmp: Path, symbol: str = "PLANTUSDT", day: int = 15) -> Path:
    return write_replacement_request(tmp / "requests", slot="p1", symbol=symbol, time_ms=T0 + day * 86_400_000,
                                     equity=0.5, killed=builtin_genome("meanrev"), seed=builtin_genome("flow"),
                                     seed_score=None)


def test_serve_publishes_with_lineage_and_never_twice(tmp_path):
    loop = load_serve_config(_config(tmp_path))
    req = _request(tmp_path)
    assert pending_requests(loop.requests_dir) == [req]
    [state] = serve_pending(loop)
    assert state["status"] == "served", state
    a = state["attempts"][0]
    assert a["status"] == "published" and a["published"] and not a["resumed"]
    # the run saw only bars that closed before the request time: 12 days of them
    assert state["bars"]["n"] == 12 * 1440 and state["bars"]["last_ms"] + 60_000 <= state["time_ms"]
    genome, meta = verify_champion(a["published"][0])
    assert meta["symbol"] == "PLANTUSDT"
    assert meta["lineage"] == {"source": "forge serve", "slot": "p1", "request": req.stem, "run_id": a["run_id"],
                               "parent_genome_sha256": builtin_genome("flow").sha256}
    assert meta["gauntlet_report_sha256"] == a["gauntlet_report_sha256"]
    assert read_state(req)["status"] == "served"
    assert pending_requests(loop.requests_dir) == []
    assert serve_pending(loop) == []  # final: not served again


def test_claim_is_exclusive_across_processes(tmp_path):
    req = _request(tmp_path)
    mine = Claim(req)
    assert mine.acquire()
    code = ("import sys; from pathlib import Path; from loop.serve import Claim; "
            "sys.exit(0 if Claim(Path(sys.argv[1])).acquire() else 3)")
    held = subprocess.run([sys.executable, "-c", code, str(req)], cwd=REPO)
    assert held.returncode == 3  # another worker cannot claim it
    assert serve_request(load_serve_config(_config(tmp_path)), req) is None
    mine.release()
    free = subprocess.run([sys.executable, "-c", code, str(req)], cwd=REPO)
    assert free.returncode == 0


def test_unservable_requests_end_unserved_with_reason(tmp_path):
    loop = load_serve_config(_config(tmp_path))
    nodata = _request(tmp_path, symbol="ETHUSDT")
    st = serve_request(loop, nodata)
    assert st["status"] == "unserved" and "no data for ETHUSDT" in st["reason"]
    early = write_replacement_request(tmp_path / "requests", slot="p2", symbol="PLANTUSDT", time_ms=T0 + 3_600_000,
                                      equity=0.5, killed=builtin_genome("meanrev"), seed=builtin_genome("flow"),
                                      seed_score=None)
    st = serve_request(loop, early)
    assert st["status"] == "unserved" and "fewer than [serve] min_bars" in st["reason"]
    bad = tmp_path / "requests" / "evil-1.json"
    bad.write_text('{"schema": "crucible-request/1", "slot": "x", "symbol": "../etc", "time_ms": 1, '
                   '"seed_genome_file": "../../x"}')
    st = serve_request(loop, bad)
    assert st["status"] == "unserved" and "plain names" in st["reason"]


def test_null_market_request_is_unserved_with_the_gauntlets_reasons(tmp_path):
    loop = load_serve_config(_config(tmp_path, data="synthetic:null?seed=5&days=16"))
    st = serve_request(loop, _request(tmp_path))
    assert st["status"] == "unserved" and st["reason"] == "no survivor in 1 attempt(s)"
    a = st["attempts"][0]
    assert a["status"] == "no_survivor" and a["published"] == []
    assert a["reasons"] and all(r["failed"] for r in a["reasons"])
    assert not list((tmp_path / "champions").glob("*.meta.json"))


def _hall(run_dir: str) -> list:
    return [m["genome"] for m in json.loads((Path(run_dir) / "hall_of_fame.json").read_text())["members"]]


def test_worker_killed_mid_evolve_resumes_from_checkpoint(tmp_path):
    """SIGKILL the worker after its first checkpoint; the restarted worker resumes the same run (no second
    run directory, ``resumed`` recorded) and ends with the hall of fame of an uninterrupted serve."""
    cfg = _config(tmp_path, generations=6)
    req = _request(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import sys, cli; sys.argv = ['forge'] + sys.argv[1:]; cli.forge_app()"
    cmd = [sys.executable, "-c", code, "serve", "--once", "-c", str(cfg)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "runs" / f"{req.stem}-a0" / "checkpoint.json"
    deadline = time.monotonic() + 300
    while not ckpt.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"worker ended before its first checkpoint: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = read_state(req)
    assert st["status"] == "claimed" and st["attempts"][0]["status"] == "running"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-800:]
    st = read_state(req)
    assert st["status"] in ("served", "unserved") and st["attempts"][0]["resumed"] is True
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [f"{req.stem}-a0"]
    # an uninterrupted serve of the same request elsewhere gives the same hall of fame
    other = tmp_path / "again"
    other.mkdir()
    loop2 = load_serve_config(_config(other, generations=6))
    req2 = _request(other)
    st2 = serve_request(loop2, req2)
    assert _hall(st2["attempts"][0]["run_dir"]) == _hall(st["attempts"][0]["run_dir"])
    assert st2["status"] == st["status"]
