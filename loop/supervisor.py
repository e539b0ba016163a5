"""The Forge worker as a supervised child of ``crucible live --forge`` (issue 19).

:class:`ForgeSupervisor` starts ``forge serve`` (the same interpreter, ``--parent-pid`` of the runtime,
``--nice`` lowering its CPU priority) beside the trading loop, checks it at every bar (one ``poll()``
call), restarts it with exponential backoff when it dies, and stops it with the runtime (SIGTERM, then
SIGKILL after ``stop_timeout_s``).  If the runtime itself is killed (even ``kill -9``) the worker stops
too: on Linux the kernel sends it SIGTERM (``PR_SET_PDEATHSIG``), and everywhere the worker exits when
its parent pid changes.  A request the worker was serving stays claimed by nobody and is resumed from
its run's checkpoint by the next worker (:mod:`loop.serve`).

On replay the market clock is the runtime's own, so a kill would be followed by the rest of the data in
seconds, long before evolution ends; with ``[serve] replay_wait_s`` > 0 the runtime waits (at most that
many wall seconds per request) for the requests it wrote to reach a final state before it trades the next
bar — evolution then costs no market time, which is optimistic and said so in the journal
(``forge_wait`` events with the wall seconds waited).  Exchange venues never wait.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge.core.errors import ConfigError

__all__ = ["ForgeSupervisor", "worker_command", "forge_worker"]

log = logging.getLogger("crucible")
Report = Callable[..., None]
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the worker's parent-pid watch still stops it


def worker_command(config: str | Path | None, nice: int, parent_pid: int) -> list[str]:
    """argv of the supervised worker: ``forge serve`` run by this interpreter (so the child uses the same
    installation), watching the requests folder of ``config``."""
    code = "import sys, cli; sys.argv = ['forge'] + sys.argv[1:]; cli.forge_app()"
    cmd = [sys.executable, "-c", code, "serve", "--nice", str(nice), "--parent-pid", str(parent_pid)]
    if config is not None:
        cmd += ["--config", str(Path(config).resolve())]
    return cmd


class ForgeSupervisor:
    """Run and supervise one ``forge serve`` child.

    config: the Crucible config file (its ``[serve]`` table); nice: CPU niceness of the child; log_path:
    the child's stdout/stderr are appended there; report: ``report(kind, **data)`` callback (the runtime
    journals ``forge_worker`` events); max_backoff_s: restart delay cap (doubling from 1 s).
    """

    def __init__(self, config: str | Path | None, *, nice: int = 10, log_path: str | Path = "artifacts/serve/worker.log",
                 report: Report | None = None, max_backoff_s: float = 60.0) -> None:
        self.config, self.nice, self.log_path = config, nice, Path(log_path)
        self.report = report or (lambda *_a, **_k: None)
        self.max_backoff_s = max_backoff_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._next_start = 0.0
        self._backoff = 1.0
        self._log: Any = None

    def start(self) -> None:
        """Start the worker (no-op while one runs)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        cmd = worker_command(self.config, self.nice, os.getpid())
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        self.report("forge_worker", state="started", pid=self.proc.pid, restarts=self.restarts)
        log.info("forge serve started (pid %d, nice %d, log %s)", self.proc.pid, self.nice, self.log_path)

    def check(self) -> None:
        """Called every bar: restart a dead worker after its backoff.  One ``poll()`` when it is alive."""
        if self.proc is None:
            return
        code = self.proc.poll()
        if code is None:
            return
        now = time.monotonic()
        if self._next_start == 0.0:
            self.report("forge_worker", state="exited", pid=self.proc.pid, code=code)
            log.warning("forge serve exited with code %s; restarting in %.0f s", code, self._backoff)
            self._next_start = now + self._backoff
            self._backoff = min(self._backoff * 2.0, self.max_backoff_s)
        elif now >= self._next_start:
            self._next_start = 0.0
            self.restarts += 1
            self.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the worker, SIGKILL it after ``timeout_s``; idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.report("forge_worker", state="stopped", pid=self.proc.pid, code=self.proc.returncode)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def forge_worker(config: str | Path | None) -> Callable[..., ForgeSupervisor]:
    """The worker factory ``crucible live --forge`` hands to :func:`crucible.runtime.run_live`: a
    :class:`ForgeSupervisor` running ``forge serve`` on ``config``'s ``[serve]`` table, logging to
    ``<[serve] runs_dir>/worker.log``.  raises ConfigError when ``config`` is not a file path (the child
    reads the same file)."""
    if not isinstance(config, (str, Path)):
        raise ConfigError("crucible live --forge needs the config as a file (the Forge worker reads it)")

    def build(cfg: Any, report: Report) -> ForgeSupervisor:
        return ForgeSupervisor(config, nice=cfg.serve.nice, log_path=Path(cfg.serve.runs_dir) / "worker.log",
                               report=report)

    return build
