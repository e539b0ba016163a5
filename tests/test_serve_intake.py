"""A closed loop that cannot be jammed (issue 28, item 2).

On the code before this issue, ``forge serve --once`` with a missing or garbage seed genome died with exit 4
and left the request ``claimed`` (every later request waited behind it); a FIFO as the seed genome hung the
worker; a 300 MB genome file was read whole; ``time_ms = 10**30`` was accepted.  Here every one of them ends
``unserved`` with its reason in ``<request>.serve.json`` and the worker takes the next request; an exception
inside evolution does the same; a request whose serving killed the worker twice is quarantined; a worker
stopped between attempts is not counted as a crash; ``crucible verify`` uses the same hardened reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from crucible.builtin import builtin_genome
from crucible.watchtower import write_replacement_request
from forge.core.errors import GenomeError
from forge.core.requests import QUARANTINE_AFTER, parse_request
from forge.gp import Genome
from loop.serve import load_serve_config, pending_requests, read_state, serve_pending, serve_request
from test_serve import T0, _config

REPO = Path(__file__).resolve().parents[1]


def _req(tmp: Path, slot: str, day: float = 15, symbol: str = "PLANTUSDT") -> Path:
    return write_replacement_request(tmp / "requests", slot=slot, symbol=symbol,
                                     time_ms=int(T0 + day * 86_400_000), equity=0.5,
                                     killed=builtin_genome("meanrev"), seed=builtin_genome("flow"), seed_score=None)


def _seed(req: Path) -> Path:
    return req.with_name(json.loads(req.read_text())["seed_genome_file"])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_serve_once_survives_hostile_seed_genomes_and_times(tmp_path):
    """One `forge serve --once` over five hostile requests: exit 0 (the old code: exit 4 at the first one, the
    request stuck `claimed`), each `unserved` with a reason naming the problem, none left pending, and the
    FIFO neither blocks nor is opened for reading (the run finishes well inside its timeout)."""
    cfg = _config(tmp_path)
    missing, garbage, fifo, huge, future = (_req(tmp_path, s, day=15 + i / 1440)
                                            for i, s in enumerate(("m1", "g1", "f1", "h1", "t1")))
    _seed(missing).unlink()
    _seed(garbage).write_text("garbage {")
    _seed(fifo).unlink()
    os.mkfifo(_seed(fifo))
    with open(_seed(huge), "r+b") as fh:  # 300 MB (sparse): refused by its size, never read
        fh.truncate(300 * 1024 * 1024)
    d = json.loads(future.read_text())
    d["time_ms"] = 10 ** 30
    future.write_text(json.dumps(d))
    code = "import sys, cli; sys.argv = ['forge'] + sys.argv[1:]; cli.forge_app()"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, "serve", "--once", "-c", str(cfg)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-1500:]
    assert time.monotonic() - t0 < 200
    want = {missing: "cannot stat", garbage: "invalid JSON", fifo: "is a FIFO", huge: "byte limit",
            future: "not a time between 2009-01-01 and 2100-01-01"}
    for req, words in want.items():
        st = read_state(req)
        assert st is not None and st["status"] == "unserved", (req.name, st)
        assert words in st["reason"], (req.name, st["reason"])
        assert st["attempts"] == [] and not st.get("quarantined")
    assert pending_requests(tmp_path / "requests") == []
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing was evolved


def test_request_time_must_lie_within_the_data(tmp_path):
    loop = load_serve_config(_config(tmp_path))  # 16 days of PLANTUSDT from T0; max_request_lag_days = 2
    late = _req(tmp_path, "late", day=16 + 3)
    st = serve_request(loop, late)
    assert st["status"] == "unserved" and "outside the data of PLANTUSDT" in st["reason"]
    early = _req(tmp_path, "early", day=-1)
    st = serve_request(loop, early)
    assert st["status"] == "unserved" and "outside the data" in st["reason"]


def test_parse_request_bounds_every_field(tmp_path):
    good = _req(tmp_path, "p1")
    assert parse_request(good)["slot"] == "p1"
    base = json.loads(good.read_text())
    cases = {"time_ms": (10 ** 30, "not a time"), "slot": ("a/b", "plain names"),
             "seed_genome_file": ("x" * 65, "longer than 64"), "seed_genome_sha256": ("zz", "64 lowercase hex")}
    for key, (value, words) in cases.items():
        bad = tmp_path / "requests" / f"bad-{key}.json"
        bad.write_text(json.dumps({**base, key: value}))
        with pytest.raises(GenomeError, match=words):
            parse_request(bad)
    bad = tmp_path / "requests" / "bool.json"
    bad.write_text(json.dumps({**base, "time_ms": True}))
    with pytest.raises(GenomeError, match="must be int"):
        parse_request(bad)
    deep = tmp_path / "requests" / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GenomeError, match="nested 100,000 levels"):
        parse_request(deep)


def test_swapped_seed_genome_is_unserved(tmp_path):
    """A seed genome replaced by another valid genome: its sha256 no longer matches the request's."""
    loop = load_serve_config(_config(tmp_path))
    req = _req(tmp_path, "p1")
    _seed(req).write_text(builtin_genome("meanrev").to_json())
    st = serve_request(loop, req)
    assert st["status"] == "unserved" and "differs from the request's seed_genome_sha256" in st["reason"]


def test_exception_in_evolution_ends_the_request_not_the_worker(tmp_path, monkeypatch):
    import loop.serve as serve

    def boom(*_a, **_k):
        raise MemoryError("simulated: evolution ran out of memory")

    monkeypatch.setattr(serve, "evolve", boom)
    loop = load_serve_config(_config(tmp_path))
    first, second = _req(tmp_path, "p1"), _req(tmp_path, "p2", day=15.5)
    states = serve_pending(loop)
    assert [s["status"] for s in states] == ["unserved", "unserved"]
    for st in states:
        assert st["reason"] == "attempt 1: MemoryError: simulated: evolution ran out of memory"
        assert st["attempts"][0]["status"] == "failed"
    assert {read_state(r)["status"] for r in (first, second)} == {"unserved"}


_DIE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import loop.serve as serve
    def die(*a, **k):  # the worker dies inside evolution, as under the OOM killer: no handler runs
        os.kill(os.getpid(), signal.SIGKILL)
    serve.evolve = die
    serve.serve_request(serve.load_serve_config(sys.argv[1]), Path(sys.argv[2]))
""")


def test_request_that_killed_the_worker_twice_is_quarantined(tmp_path):
    loop = load_serve_config(_config(tmp_path))
    req = _req(tmp_path, "p1")
    for n in range(1, QUARANTINE_AFTER + 1):
        p = subprocess.run([sys.executable, "-c", _DIE, str(tmp_path / "loop.toml"), str(req)], cwd=REPO,
                           env=_env(), capture_output=True, text=True, timeout=300)
        assert p.returncode == -9, p.stderr[-800:]
        st = read_state(req)
        assert st["status"] == "claimed" and len(st.get("crashes", [])) == n - 1, st
    st = serve_request(loop, req)  # the third claim: quarantined, no third evolution
    assert st["status"] == "unserved" and st["quarantined"] is True
    assert f"died {QUARANTINE_AFTER} times" in st["reason"] and len(st["crashes"]) == QUARANTINE_AFTER
    assert pending_requests(loop.requests_dir) == []  # a final status: the bench stops waiting


def test_stopped_worker_is_not_a_crash(tmp_path, monkeypatch):
    import loop.serve as serve

    stop = threading.Event()
    stop.set()
    loop = load_serve_config(_config(tmp_path))
    req = _req(tmp_path, "p1")
    assert serve_request(loop, req, stop=stop) is None
    st = read_state(req)
    assert st["status"] == "claimed" and st["interrupted_utc"]

    def boom(*_a, **_k):
        raise ValueError("after a stop")

    monkeypatch.setattr(serve, "evolve", boom)
    st = serve_request(loop, req)
    assert "crashes" not in st and st["status"] == "unserved" and "ValueError: after a stop" in st["reason"]


_SWALLOW = textwrap.dedent("""
    import ctypes, os, signal, sys, time
    from pathlib import Path
    import loop.serve as serve
    CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    def cmp(_a, _b):  # runs inside a C call, as llvmlite's object-cache callbacks do while numba compiles:
        while True:   # the SystemExit the SIGTERM handler raises here is printed and discarded by ctypes
            time.sleep(0.05)
    def stubborn(*_a, **_k):
        Path(sys.argv[2]).write_text("evolving")
        keys = (ctypes.c_int * 2)(2, 1)
        while True:  # the main thread goes on "evolving": only the exit watchdog can end it ...
            ctypes.CDLL(None).qsort(keys, 2, ctypes.sizeof(ctypes.c_int), CMP(cmp))
            if sys.argv[3] == "native_crash":  # ... or it dies in native code, no handler running
                os.kill(os.getpid(), signal.SIGKILL)
    serve.evolve = stubborn
    raise SystemExit(serve.Worker(serve.load_serve_config(sys.argv[1]), say=print, exit_grace_s=1.0).run())
""")


@pytest.mark.parametrize("after", ["goes_on", "native_crash"])
def test_signal_swallowed_by_a_ctypes_callback_still_stops_the_worker_and_marks_interrupted(tmp_path, after):
    """CI (clean clone, cold numba cache) once quarantined the loop test's request: its worker, SIGTERMed by
    PR_SET_PDEATHSIG when the runtime was killed, was in numba; a SystemExit raised by the handler inside
    llvmlite's ctypes callback is discarded by Python, and the request was left ``claimed`` without its
    ``interrupted`` mark, later counted as a second crash.  Here the worker's evolution runs inside a ctypes
    callback the same way, then either goes on (the exit watchdog must end the process, exit code 143) or
    dies in native code (SIGKILL; the handler's own mark must already be on disk): the request is
    ``interrupted``, never a crash."""
    _config(tmp_path)
    req = _req(tmp_path, "p1")
    marker = tmp_path / "evolving"
    proc = subprocess.Popen([sys.executable, "-c", _SWALLOW, str(tmp_path / "loop.toml"), str(marker), after],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=5)[0][-1500:] if proc.poll() is not None else "no start"
        time.sleep(0.3)  # inside the callback's sleep
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Exception ignored on calling ctypes callback" in out and "SystemExit: 143" in out, out[-1500:]
    assert proc.returncode == (143 if after == "goes_on" else -9), out[-1500:]
    st = read_state(req)
    assert st["status"] == "claimed" and st["interrupted_utc"] and "crashes" not in st, st
    st = serve_request(load_serve_config(tmp_path / "loop.toml"), req, stop=_stopped())
    assert st is None and "crashes" not in read_state(req)  # the next claim: no crash recorded


_STUCK = textwrap.dedent("""
    import ctypes, os, sys, time
    from pathlib import Path
    import numba
    import loop.serve as serve
    usleep = ctypes.CDLL(None).usleep
    usleep.argtypes, usleep.restype = (ctypes.c_uint,), ctypes.c_int
    @numba.njit(nogil=True, cache=False)
    def spin(n):  # a native loop that releases the GIL and never returns to Python
        while n >= 0:
            usleep(20000)
            n += 1
        return n
    def stuck(*_a, **_k):
        Path(sys.argv[2]).write_text("evolving")
        while True:
            if sys.argv[3] == "native":
                spin(0)
            time.sleep(0.05)
    serve.evolve = stuck
    spin.compile("(int64,)")
    parent = int(sys.argv[4]) if len(sys.argv) > 4 else None
    raise SystemExit(serve.Worker(serve.load_serve_config(sys.argv[1]), say=print, parent_pid=parent,
                                  exit_grace_s=1.0).run())
""")


def _wait_for(marker: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate(timeout=5)[0][-1500:] if proc.poll() is not None else "no start"


def test_signal_during_a_native_call_that_never_returns_still_stops_the_worker(tmp_path):
    """CI (stop 33): ``crucible live`` was SIGKILLed, its worker got SIGTERM (``PR_SET_PDEATHSIG``) and was
    still running 30 s later.  Python runs a signal handler only when the main thread next executes Python
    code; here it is in a numba ``nogil`` loop that never returns, so only the signal thread (wakeup fd)
    learns of the signal: it must mark the request ``interrupted`` and the exit watchdog end the process
    within its grace (1 s here).  On the code before the signal thread the worker never exits."""
    _config(tmp_path)
    req = _req(tmp_path, "p1")
    marker = tmp_path / "evolving"
    proc = subprocess.Popen([sys.executable, "-c", _STUCK, str(tmp_path / "loop.toml"), str(marker), "native"],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(marker, proc)
        time.sleep(0.5)  # inside spin()
        t0 = time.monotonic()
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143 and took < 20, (proc.returncode, took, out[-1500:])
    assert "exiting now" in out, out[-1500:]
    st = read_state(req)
    assert st["status"] == "claimed" and st["interrupted_utc"] and "crashes" not in st, st


_PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    log = open(sys.argv[3], "w")
    child = subprocess.Popen([sys.executable, "-c", sys.argv[4], sys.argv[1], sys.argv[2], "python",
                              str(os.getpid())], stdout=log, stderr=subprocess.STDOUT)
    print(child.pid, flush=True)
    time.sleep(3600)
""")


def test_worker_stops_mid_request_when_its_parent_is_gone_without_a_death_signal(tmp_path):
    """Where ``PR_SET_PDEATHSIG`` is missing (not Linux) or lost, the worker's parent watch must stop it even
    while it serves a request (before: only between requests, so it evolved on for minutes after the
    runtime died).  The parent here starts the worker without the death signal and is then SIGKILLed."""
    _config(tmp_path)
    req = _req(tmp_path, "p1")
    marker, log = tmp_path / "evolving", tmp_path / "worker.log"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path / "loop.toml"), str(marker), str(log),
                               _STUCK], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        _wait_for(marker, parent)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            try:
                if Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    break
            except OSError:
                break
            time.sleep(0.1)
        alive = time.monotonic() >= deadline
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    if alive:
        os.kill(worker, 9)
    out = log.read_text()
    assert not alive, out[-1500:]
    assert "is gone; stopping" in out, out[-1500:]
    st = read_state(req)
    assert st["status"] == "claimed" and st["interrupted_utc"] and "crashes" not in st, st


def _stopped() -> threading.Event:
    ev = threading.Event()
    ev.set()
    return ev


def test_crucible_verify_uses_the_hardened_reader(tmp_path):
    good = tmp_path / "g.json"
    good.write_text(builtin_genome("flow").to_json())
    link = tmp_path / "link.json"
    link.symlink_to(good)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(300 * 1024 * 1024)
    code = "import sys, cli; sys.argv = ['crucible'] + sys.argv[1:]; cli.crucible_app()"
    ok = subprocess.run([sys.executable, "-c", code, "verify", str(good)], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    for f, words in ((fifo, "is a FIFO"), (big, "byte limit"), (link, "symbolic link")):
        p = subprocess.run([sys.executable, "-c", code, "verify", str(f)], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=120)
        out = " ".join((p.stdout + p.stderr).split())
        assert p.returncode == 4 and words in out and "Traceback" not in out, out
    assert Genome.load(link).sha256 == builtin_genome("flow").sha256  # a trusted path may still be a symlink


def test_crucible_status_shows_each_request_state(tmp_path):
    from crucible.journal import Journal
    from crucible.status import request_lines, status

    loop = load_serve_config(_config(tmp_path))
    bad = _req(tmp_path, "p1")
    _seed(bad).write_text("garbage")
    serve_request(loop, bad)
    waiting = _req(tmp_path, "p2", day=15.5)
    j = Journal(tmp_path / "journal.sqlite")
    j.event("request", T0, "p1", path=str(bad))
    j.event("request", T0 + 60_000, "p2", path=str(waiting))
    j.close()
    rep = status(tmp_path / "journal.sqlite")
    assert [(r["slot"], r["status"]) for r in rep["requests"]] == [("p1", "unserved"), ("p2", "pending")]
    lines = request_lines(rep)
    assert "unserved" in lines[0] and "invalid JSON" in lines[0] and "pending" in lines[1]
