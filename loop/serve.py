"""``forge serve``: the Forge worker of the closed loop.

The Crucible's Watchtower writes a replacement request when it kills a slot
(:func:`crucible.watchtower.write_replacement_request`: ``<requests_dir>/<slot>-<minute>.json`` and the
seed genome beside it).  The worker watches that folder (watchdog, plus a periodic rescan), and for each
request:

1. **claims** it: ``<stem>.claim`` is opened and locked with ``fcntl.flock(LOCK_EX | LOCK_NB)`` for as
   long as the request is served.  Two workers never serve one request; a worker that dies (even by
   ``kill -9``) releases the lock with its process, so another worker (or the restarted one) takes over;
2. **evolves** on the request symbol's bars *before* the request time (the last ``window_days``), seeded
   with the request's seed genome when its selection bars precede the run's out-of-sample range
   (:func:`seed_admission`; a seed ranked on live marks up to the request time never does, so it is
   withheld and recorded as such); attempt ``k`` (0-based) uses seed ``seed + k`` and a population of
   ``population * budget_growth**k``.  Every run checkpoints each generation: a request half-served when
   the worker died is resumed from its run's checkpoint, so the result equals an uninterrupted serve;
3. **validates** the run with the gauntlet at level alpha / ``max_attempts`` (:func:`request_alpha`, so the
   request's attempts share its alpha; its out-of-sample range is the window's last part, still before the
   request time) and **publishes** survivors, signed when ``FORGE_SIGNING_KEY`` is set, with
   a lineage (``source``, ``slot``, ``request``, ``run_id``, ``parent_genome_sha256``) in the signed meta;
4. **records** every step in ``<stem>.serve.json`` (schema ``forge-serve/1``, written atomically):
   attempts with run id, run directory, gauntlet report path and sha256, the champion's failed stages
   when nothing survived, and published meta files; ``status`` is ``claimed`` → ``served`` or
   ``unserved`` (after ``max_attempts`` attempts without a survivor, or when the request cannot be served,
   e.g. no bars for its symbol) — a final status is never served again.

A request can never jam the loop: after the claim and before evolving, the request and its seed genome are
read with the hardened readers (:func:`forge.core.requests.parse_request`, :meth:`Genome.load` without
following symlinks: regular files only, size and nesting limits, so a FIFO cannot block the worker and a
300 MB file is refused unread), its time must lie within the data (:func:`request_bars`), and any error
while serving it (a bad file, no data, an exception in evolution or validation) ends it ``unserved`` with
the reason — the worker then takes the next request.  A worker that dies while serving (``kill -9``, out of
memory, a crash in native code) leaves the request ``claimed``; the next worker to claim it records the
crash (``crashes``), and after :data:`forge.core.requests.QUARANTINE_AFTER` (2) crashes the request is
quarantined: ``unserved`` with ``quarantined: true``.  A worker stopped by a signal marks the request
``interrupted`` (not a crash: it resumes from its checkpoint).  The signal handler's ``SystemExit`` can be
discarded by Python (raised inside a ctypes callback -- llvmlite's, while numba compiles -- or a finaliser),
and the handler runs only when the main thread next executes Python code; so a signal thread learns of the
signal from a wakeup fd at once, marks the request, and an exit watchdog ends a signalled worker
:data:`EXIT_GRACE_S` seconds later whatever the main thread is doing (:func:`force_interrupted_exit`; see
:class:`Worker`).  The same thread stops the worker mid-request when its supervising parent is gone.

Configuration is the ``[serve]`` table of a Crucible config (:class:`ServeConfig`); its empty
``requests_dir`` / ``champions_dir`` / ``data`` default to the same config's ``[crucible]`` folders and
``[replay] data``, so the worker serves the bench that wrote the requests.
"""

from __future__ import annotations

import faulthandler
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from forge.core.artifacts import atomic_write_json
from forge.core.config import CONFIG_DIR, build_section, read_toml, resolve_path
from forge.core.errors import ConfigError, DataError, ForgeError, GenomeError
from forge.core.requests import (FINAL, QUARANTINE_AFTER, STATE_SCHEMA, ServeConfig, _stem, parse_request, read_state,
                                 state_path)
from forge.core.rundir import FILES
from forge.data.discovery import source_bars, symbol_sources
from forge.data.schema import BAR_MS
from forge.core.runconfig import RunConfig, load_run_config, with_overrides
from forge.evolution.run import evolve
from gauntlet.config import GauntletConfig, load_gauntlet_config
from forge.gp import Genome
from gauntlet.validate import validate_run

__all__ = ["ServeConfig", "load_serve_config", "pending_requests", "serve_request", "serve_pending", "Worker", "read_state",
           "STATE_SCHEMA"]

Say = Callable[[str], None]
EXIT_GRACE_S = 5.0  # seconds a signalled worker's main thread has to unwind before the exit watchdog ends it
HARD_EXIT_S = 10.0  # then seconds until the C-level faulthandler timer dumps the stacks and exits (code 1)
PARENT_POLL_S = 0.5  # seconds between checks that the supervising parent is alive
_STATE_LOCK = threading.Lock()  # this process's writes of a request state: the main thread vs the exit watchdog
_SERVING: set[Path] = set()  # the requests this process holds claimed
_SIGNALLED: list[str] = []  # the UTC time this worker was told to stop (set once, by mark_interrupted)


def _save_state(request: Path, state: dict[str, Any]) -> None:
    """Write a request state; once this worker was signalled, a still-``claimed`` state keeps its
    ``interrupted`` mark (a main thread that went on after a swallowed SystemExit cannot erase it)."""
    with _STATE_LOCK:
        if _SIGNALLED and state.get("status") == "claimed":
            state.setdefault("interrupted_utc", _SIGNALLED[0])
        atomic_write_json(state_path(request), state)


@dataclass(frozen=True)
class Loop:
    """A resolved worker setup: the serve table plus the folders and data it defaults to."""

    serve: ServeConfig
    requests_dir: Path
    champions_dir: Path
    runs_dir: Path
    data: dict[str, list[str]]
    source: str = "defaults"
    run_config: RunConfig = field(default_factory=RunConfig)
    gauntlet: GauntletConfig = field(default_factory=GauntletConfig)


def load_serve_config(path: str | Path | None) -> Loop:
    """Read ``[serve]`` (and the ``[crucible]`` folders and ``[replay] data`` it defaults to) from a Crucible
    config file (None = the packaged ``configs/crucible.toml``).  raises ConfigError naming file and key."""
    p = Path(path) if path is not None else CONFIG_DIR / "crucible.toml"
    raw = read_toml(p) if p.is_file() or path is not None else {}
    src = str(p)
    table = raw.get("serve", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{src}: [serve] must be a table")
    sc = build_section(ServeConfig, dict(table), f"{src} [serve]")
    general, replay = raw.get("crucible", {}), raw.get("replay", {})
    req = sc.requests_dir or str(general.get("requests_dir", "artifacts/requests"))
    champ = sc.champions_dir or str(general.get("champions_dir", "artifacts/champions"))
    data = symbol_sources(list(sc.data) or list(replay.get("data", [])), f"{src} [serve]/[replay]")
    run_cfg = load_run_config(resolve_path(sc.evolve_config) if sc.evolve_config else None)
    gcfg = load_gauntlet_config(resolve_path(sc.gauntlet_config) if sc.gauntlet_config else None)
    return Loop(sc, Path(req), Path(champ), Path(sc.runs_dir), data, src, run_cfg, gcfg)


# --------------------------------------------------------------------------- request files


def pending_requests(requests_dir: Path) -> list[Path]:
    """Replacement requests in ``requests_dir`` without a final state, oldest first (by name: ``<slot>-<minute>``
    sorts by slot; the request's ``time_ms`` orders them)."""
    try:
        names = [e for e in os.scandir(requests_dir) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    out = []
    for e in names:
        n = e.name
        if not n.endswith(".json") or n.endswith((".genome.json", ".serve.json")) or n.startswith("."):
            continue
        st = read_state(Path(e.path))
        if st is None or st.get("status") not in FINAL:
            out.append(Path(e.path))
    def key(p: Path) -> tuple[int, str]:
        try:
            return p.stat(follow_symlinks=False).st_mtime_ns, p.name
        except OSError:  # removed meanwhile: served last (and found gone then)
            return 1 << 62, p.name

    return sorted(out, key=key)


class Claim:
    """An exclusive, process-lifetime claim on one request (``<stem>.claim``, ``flock``)."""

    def __init__(self, request: Path) -> None:
        self.path = request.with_name(_stem(request) + ".claim")
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since_utc": _utc()}).encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat()


def _load_request(request: Path) -> dict[str, Any]:
    """The request (:func:`parse_request`) with its seed genome read and verified: a regular file beside it
    (no symlink, at most 1 MiB), a valid genome whose sha256 matches the request's ``seed_genome_sha256``.
    raises GenomeError naming the file and the problem."""
    req = parse_request(request)
    seed = request.with_name(req["seed_genome_file"])
    g = Genome.load(seed, follow_symlinks=False)
    want = req.get("seed_genome_sha256")
    if want and g.sha256 != want:
        raise GenomeError(f"{seed}: seed genome sha256 {g.sha256[:16]}… differs from the request's "
                          f"seed_genome_sha256 {str(want)[:16]}…")
    return req


# --------------------------------------------------------------------------- serving


def request_bars(loop: Loop, symbol: str, time_ms: int) -> pl.DataFrame:
    """Closed bars of ``symbol`` that ended by ``time_ms``, the last ``window_days`` of them.
    raises ConfigError when the symbol has no data, DataError for bad data, a ``time_ms`` outside the data
    (not after its first bar, or later than its last bar's close by more than ``[serve]
    max_request_lag_days``) or fewer than ``min_bars`` bars."""
    bars = source_bars(loop.data, symbol, f"{loop.source} [serve]/[replay]")
    if bars.height:
        first, last_close = int(bars["open_time"][0]), int(bars["open_time"][-1]) + BAR_MS
        lag = int(loop.serve.max_request_lag_days * 86_400_000)
        if not first < time_ms <= last_close + lag:
            raise DataError(f"request time {time_ms} ms is outside the data of {symbol} ({first} .. {last_close} ms, "
                            f"+ [serve] max_request_lag_days = {loop.serve.max_request_lag_days:g})", file=loop.source)
    window = int(loop.serve.window_days * 1440)
    bars = bars.filter(pl.col("open_time") + BAR_MS <= time_ms).tail(window)
    if bars.height < loop.serve.min_bars:
        raise DataError(f"only {bars.height} bars of {symbol} before the request time, fewer than "
                        f"[serve] min_bars = {loop.serve.min_bars}", file=loop.source)
    return bars


def seed_admission(seed_file: Path, bars: pl.DataFrame, in_sample_fraction: float) -> dict[str, Any]:
    """Whether a request's seed genome may seed a run on ``bars`` without leaking its out-of-sample range.

    The seed's selection bars (``forge.core.provenance.seed_provenance``: a Crucible request records every bar
    up to the request time, since ``_best_genome`` ranked it on live marks) must lie in the run's in-sample
    range; the run's out-of-sample range is the last ``1 - in_sample_fraction`` of ``bars`` (the split
    ``forge evolve`` makes).  A seed whose bars overlap it -- always the case for a request's seed, whose
    ranking ran up to the window's end, and for a seed of unknown provenance -- is withheld and the attempt
    evolves from random trees: a leak-free run instead of a refused one.  The Pit Crew's shadow period,
    bars after the request, stays the final forward test before a swap.
    returns {"used": bool, "source", "selected_on", "out_of_sample", "reason"}.
    """
    from forge.core.provenance import seed_provenance
    from forge.data.ranges import DataRange
    from forge.data.split import holdout_split

    t = bars["open_time"].to_numpy()
    split = holdout_split(t, in_sample_fraction)
    a, b = split.out_of_sample
    oos = DataRange(int(t[a]), int(t[b - 1]), b - a)
    try:
        prov = seed_provenance(seed_file)
    except (ForgeError, OSError) as exc:
        return {"used": False, "source": None, "selected_on": None, "out_of_sample": oos.to_dict(),
                "reason": f"seed unreadable: {exc}"}
    hit = prov.overlapping(oos)
    rec = {"used": not hit, "source": prov.source, "selected_on": [r.to_dict() for r in prov.selected_on],
           "out_of_sample": oos.to_dict()}
    rec["reason"] = (f"withheld: selected on {hit[0]} ({prov.source}), overlapping the run's out-of-sample range "
                     f"{oos}" if hit else "seeded: its selection bars precede the out-of-sample range")
    return rec


def request_alpha(gauntlet: GauntletConfig, max_attempts: int) -> GauntletConfig:
    """The gauntlet config of one attempt: level alpha / max_attempts, so the request's attempts share its alpha
    (Bonferroni; Dunn 1961, "Multiple Comparisons Among Means", JASA 56(293)): P(any of k attempts passes a
    no-skill candidate) <= sum of their levels = alpha, whatever the dependence between attempts on the same
    bars (without it, up to 1 - (1 - alpha)^k)."""
    import dataclasses

    return dataclasses.replace(gauntlet, alpha=gauntlet.alpha / max(1, int(max_attempts))).validate()


def _attempt_config(loop: Loop, seed_file: Path, attempt: int, seed: dict[str, Any] | None = None) -> RunConfig:
    """The run config of attempt ``attempt``; seeded with ``seed_file`` only when ``seed`` (a
    :func:`seed_admission` record) says ``used`` (None: seeded, for callers that checked nothing)."""
    cfg, sc = loop.run_config, loop.serve
    pop = sc.population or cfg.evolve.population
    pop = max(4, int(round(pop * sc.budget_growth ** attempt)))
    offspring = int(round(pop * cfg.evolve.offspring / cfg.evolve.population)) if cfg.evolve.offspring else 0
    seeds = (str(seed_file),) if seed is None or seed.get("used") else ()
    return with_overrides(cfg, "evolve", seed=sc.seed + attempt, population=pop, offspring=offspring,
                          generations=sc.generations or cfg.evolve.generations,
                          seed_genomes=seeds, checkpoint=True, output_dir=str(loop.runs_dir), data=())


def _reasons(report: Any) -> list[dict[str, Any]]:
    return [{"rank": v["rank"], "expression": v["expression"], "failed": list(v["failed"])}
            for v in report.verdicts[:5]]


def _run_attempt(loop: Loop, request: Path, req: dict[str, Any], bars: pl.DataFrame, attempt: int,
                 rec: dict[str, Any], save: Callable[[], None], say: Say) -> None:
    stem = _stem(request)
    run_dir = loop.runs_dir / f"{stem}-a{attempt}"
    seed_file = request.with_name(req["seed_genome_file"])
    seed = seed_admission(seed_file, bars, loop.run_config.evolve.in_sample_fraction)
    cfg = _attempt_config(loop, seed_file, attempt, seed)
    rec["seed_genome"] = seed
    finished = (run_dir / FILES.hall_of_fame).is_file()
    resume = not finished and (run_dir / FILES.checkpoint).is_file()
    if not finished and not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # a run that died before its first checkpoint starts over
    rec.update(run_id=run_dir.name, run_dir=str(run_dir), population=cfg.evolve.population,
               generations=cfg.evolve.generations, seed=cfg.evolve.seed, status="running",
               resumed=bool(rec.get("resumed")) or resume)
    save()
    if not finished:
        say(f"{stem}: attempt {attempt + 1}: evolving {cfg.evolve.population}x{cfg.evolve.generations} on "
            f"{bars.height:,} bars{' (resumed from checkpoint)' if resume else ''}")
        evolve(cfg, bars=bars, run_dir=run_dir, resume=resume)
    lineage = {"source": "forge serve", "slot": req["slot"], "request": stem, "run_id": run_dir.name,
               "parent_genome_sha256": str(req.get("seed_genome_sha256") or "")}
    gcfg = request_alpha(loop.gauntlet, loop.serve.max_attempts)
    rec["alpha"] = gcfg.alpha
    report = validate_run(run_dir, gcfg, publish_dir=loop.champions_dir, bars=bars,
                          symbol=req["symbol"].upper(), lineage=lineage)
    rp = run_dir / FILES.gauntlet_report
    rec.update(gauntlet_report=str(rp), gauntlet_report_sha256=hashlib.sha256(rp.read_bytes()).hexdigest(),
               published=list(report.published), reasons=_reasons(report),
               status="published" if report.published else "no_survivor", finished_utc=_utc())
    say(f"{stem}: attempt {attempt + 1}: " + (f"published {len(report.published)} champion(s)" if report.published
                                              else "no survivor (" + "; ".join(
                                                  f"{r['expression']}: {', '.join(r['failed'])}"
                                                  for r in rec["reasons"][:2]) + ")"))


def _fail(exc: BaseException) -> str:
    """One line for an unexpected exception while serving (its type and first line)."""
    msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def serve_request(loop: Loop, request: Path, *, say: Say | None = None,
                  stop: threading.Event | None = None) -> dict[str, Any] | None:
    """Claim and serve one request (see the module docstring).  returns its final state, or None when
    another worker holds the claim or ``stop`` was set between attempts (the request is then marked
    ``interrupted``: it resumes later from its checkpoint).  Never raises for a bad request: an unreadable
    request or seed genome, a time outside the data, no data, or any exception while evolving or validating
    ends it ``unserved`` with the reason; a request whose earlier claims ended with the worker dead
    :data:`QUARANTINE_AFTER` times is quarantined (``unserved``, ``quarantined: true``).  Only a signal
    (SystemExit / KeyboardInterrupt) propagates, after marking the request ``interrupted``."""
    say = say or (lambda _m: None)
    claim = Claim(request)
    try:
        got = claim.acquire()
    except OSError as exc:  # e.g. <stem>.claim is a symlink (O_NOFOLLOW) or the folder is read-only
        state = {"schema": STATE_SCHEMA, "request": request.name, "attempts": [], "created_utc": _utc(),
                 "status": "unserved", "finished_utc": _utc(),
                 "reason": f"{claim.path}: cannot claim the request ({exc.strerror or exc})"}
        try:
            atomic_write_json(state_path(request), state)
        except OSError:
            pass
        say(f"{request.name}: unserved: {state['reason']}")
        return state
    if not got:
        return None
    state: dict[str, Any] = {}
    save = lambda: _save_state(request, state)  # noqa: E731
    _SERVING.add(request)
    try:
        prev = read_state(request)
        state = prev or {"schema": STATE_SCHEMA, "request": request.name, "attempts": [], "created_utc": _utc()}
        if state.get("status") in FINAL:
            return state
        if prev is not None and prev.get("status") == "claimed" and not prev.get("interrupted_utc"):
            # the last worker to claim it died while serving it (the flock died with it; no signal handler ran)
            crashes = state.setdefault("crashes", [])
            crashes.append({"worker_pid": prev.get("worker_pid"), "claimed_utc": prev.get("claimed_utc"),
                            "found_utc": _utc(), "attempt": len(prev.get("attempts") or [])})
            pids = ", ".join(str(c.get("worker_pid")) for c in crashes)
            if len(crashes) >= QUARANTINE_AFTER:
                state.update(status="unserved", quarantined=True, finished_utc=_utc(),
                             reason=f"quarantined: the worker died {len(crashes)} times while serving this request "
                                    f"(pids {pids}); not served again")
                save()
                say(f"{request.name}: {state['reason']}")
                return state
            say(f"{request.name}: the worker serving it (pid {prev.get('worker_pid')}) died; crash "
                f"{len(crashes)} of {QUARANTINE_AFTER} before quarantine")
        state.pop("interrupted_utc", None)
        state.update(status="claimed", worker_pid=os.getpid(), claimed_utc=_utc())
        save()
        try:
            req = _load_request(request)
            state.update(slot=req["slot"], symbol=req["symbol"], time_ms=req["time_ms"])
            bars = request_bars(loop, req["symbol"], req["time_ms"])
            state.update(bars={"n": bars.height, "first_ms": int(bars["open_time"][0]),
                               "last_ms": int(bars["open_time"][-1])})
        except Exception as exc:  # noqa: BLE001 - any failure of intake: unserved with its reason
            reason = str(exc) if isinstance(exc, ForgeError) else _fail(exc)
            state.update(status="unserved", reason=reason, finished_utc=_utc())
            save()
            say(f"{request.name}: unserved: {reason}")
            return state
        attempts: list[dict[str, Any]] = state["attempts"]
        k = 0
        try:
            for k in range(loop.serve.max_attempts):
                if k < len(attempts) and attempts[k].get("status") in ("published", "no_survivor"):
                    if attempts[k]["status"] == "published":
                        break
                    continue
                if stop is not None and stop.is_set():
                    state["interrupted_utc"] = _utc()
                    save()
                    return None
                if k == len(attempts):
                    attempts.append({"attempt": k, "started_utc": _utc()})
                _run_attempt(loop, request, req, bars, k, attempts[k], save, say)
                save()
                if attempts[k]["status"] == "published":
                    break
        except Exception as exc:  # noqa: BLE001 - a failing attempt ends the request, never the worker
            reason = f"attempt {k + 1}: " + (str(exc) if isinstance(exc, ForgeError) else _fail(exc))
            if k < len(attempts):
                attempts[k].update(status="failed", error=reason, finished_utc=_utc())
            state.update(status="unserved", reason=reason, finished_utc=_utc())
            save()
            say(f"{request.name}: unserved: {reason}")
            return state
        served = any(a.get("status") == "published" for a in attempts)
        state.update(status="served" if served else "unserved", finished_utc=_utc(),
                     reason=None if served else f"no survivor in {len(attempts)} attempt(s)")
        save()
        return state
    except BaseException:  # a signal (SystemExit from the worker's handler, KeyboardInterrupt): not a crash
        if state.get("status") == "claimed":
            state["interrupted_utc"] = _utc()
            try:
                save()
            except OSError:
                pass
        raise
    finally:
        _SERVING.discard(request)
        claim.release()


def mark_interrupted(*, blocking: bool, timeout_s: float = 5.0, say: Say | None = None) -> bool:
    """Record that this worker was told to stop: every request it holds ``claimed`` gets ``interrupted_utc``
    on disk now, and later saves keep it (:func:`_save_state`), so whatever happens next -- the normal
    unwind, a SystemExit that Python discards, a crash in native code -- the next claim resumes the request
    from its checkpoint instead of counting a crash.  ``blocking=False`` (the signal handler, which runs in
    the main thread and may have interrupted a save holding the lock) skips the write when the lock is
    busy: the unwinding save then writes the mark.  returns whether the states were written."""
    if not _SIGNALLED:
        _SIGNALLED.append(_utc())
    if not _STATE_LOCK.acquire(blocking, timeout_s if blocking else -1):
        return False
    try:
        for request in sorted(_SERVING):
            st = read_state(request)
            if st and st.get("status") == "claimed" and st.get("worker_pid") == os.getpid() \
                    and not st.get("interrupted_utc"):
                st["interrupted_utc"] = _SIGNALLED[0]
                atomic_write_json(state_path(request), st)
                if say is not None:
                    say(f"{request.name}: marked interrupted (resumes from its checkpoint)")
        return True
    except (OSError, ForgeError):
        return False
    finally:
        _STATE_LOCK.release()


def force_interrupted_exit(code: int, say: Say | None = None) -> None:
    """End this process now (``os._exit(code)``) after :func:`mark_interrupted` (waiting at most 5 s for the
    state lock).  The exit watchdog of :class:`Worker` calls it when a signal's ``SystemExit`` did not end
    the process: Python discards an exception raised by a signal handler that runs inside a ctypes callback
    (e.g. llvmlite's object-cache callbacks while numba compiles or loads its cache) or a finaliser
    ("Exception ignored ..."), and the worker would go on serving after its runtime died.  Never returns."""
    try:
        mark_interrupted(blocking=True, say=say)
    except BaseException:  # noqa: BLE001 - exiting regardless; the next claim then records a crash
        pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve_pending(loop: Loop, *, say: Say | None = None, stop: threading.Event | None = None) -> list[dict[str, Any]]:
    """Serve every pending request once (oldest first); returns the states of those this worker finished."""
    done = []
    for request in pending_requests(loop.requests_dir):
        if stop is not None and stop.is_set():
            break
        st = serve_request(loop, request, say=say, stop=stop)
        if st is not None:
            done.append(st)
    return done


class _Wake(FileSystemEventHandler):
    """watchdog handler: any change to a ``.json`` file in the folder wakes the worker."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if str(getattr(event, "dest_path", "") or event.src_path).endswith(".json"):
            self.wake.set()


class Worker:
    """The long-running worker: a watchdog observer on the requests folder wakes it, and it rescans every
    ``poll_seconds`` anyway (events can be missed on some file systems).  It stops at once on
    SIGTERM/SIGINT (exit code 128 + signal; a request being served resumes later from its checkpoint),
    and when ``parent_pid`` (the supervising ``crucible live``) is gone, even mid-request (a thread checks
    the parent every :data:`PARENT_POLL_S` seconds and signals this process SIGTERM); between requests it
    also stops when ``stop`` is set.

    A signal is learnt twice: by Python's handler (:meth:`_on_signal`, which raises ``SystemExit`` in the
    main thread for a normal unwind, but runs only when the main thread next executes Python code) and, at
    once, by a signal thread reading the byte the C-level handler writes to a wakeup fd
    (:func:`signal.set_wakeup_fd`).  That thread marks the claimed request ``interrupted`` and starts the
    exit deadline whatever the main thread does (a long native call that releases the GIL: an LLVM pass
    while numba compiles, a LightGBM or polars call; a ctypes callback that discards the ``SystemExit``):
    :meth:`_exit_watchdog` ends the process ``exit_grace_s`` seconds after the signal, and a
    :func:`faulthandler.dump_traceback_later` timer (C level, no GIL needed) ``HARD_EXIT_S`` seconds later
    dumps every thread's stack to the log and exits with code 1.  ``kill -USR1 <pid>`` dumps the stacks
    without stopping (:func:`faulthandler.register`)."""

    def __init__(self, loop: Loop, *, say: Say | None = None, parent_pid: int | None = None,
                 exit_grace_s: float = EXIT_GRACE_S) -> None:
        self.loop, self.say, self.parent_pid = loop, say or (lambda _m: None), parent_pid
        self.exit_grace_s = exit_grace_s
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.signalled = threading.Event()  # armed: the exit deadline runs (set once, by _arm)
        self._raised = threading.Event()  # the handler raised its SystemExit (only the first signal raises)
        self._arm_lock = threading.RLock()
        self._hard_armed = False
        self.exit_code = 0

    def _arm(self, signum: int, *, from_handler: bool) -> None:
        """Record the first signal's exit code, stop, and start the exit deadline (once per process); mark
        the claimed request interrupted.  The handler (main thread, maybe inside a save holding the state
        lock) marks without blocking; the signal thread waits for the lock, and arms the C-level timer."""
        with self._arm_lock:  # re-entrant: a second signal's handler can run inside the first one's
            first = not self.signalled.is_set()
            if first:
                self.exit_code = 128 + signum
                self.stop.set()
                self.wake.set()
                self.signalled.set()
            hard = not from_handler and not self._hard_armed
            self._hard_armed = self._hard_armed or hard
        if hard:
            faulthandler.dump_traceback_later(self.exit_grace_s + HARD_EXIT_S, exit=True)
        if first or not from_handler:
            mark_interrupted(blocking=not from_handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Stop now: unwinding releases the claim and shuts the evolution pool down; every record is
        written atomically, so the request resumes from its last checkpoint.  Only the first signal raises
        (a second one must not cut short the ``interrupted`` write of the first); when its ``SystemExit`` is
        swallowed (see :func:`force_interrupted_exit`) the exit watchdog ends the process ``exit_grace_s``
        later."""
        self._arm(signum, from_handler=True)  # sets stop and wake
        if self._raised.is_set():
            return
        self._raised.set()
        raise SystemExit(self.exit_code)

    def _signal_thread(self, sock: socket.socket) -> None:
        """Read the signal numbers the C-level handler writes to the wakeup fd; every ``PARENT_POLL_S``
        seconds check the parent (gone: SIGTERM this process, as ``PR_SET_PDEATHSIG`` would)."""
        sock.settimeout(PARENT_POLL_S)
        told_parent = False
        while True:
            try:
                data = sock.recv(64)
            except TimeoutError:
                data = b""
            except OSError:
                return
            for signum in data:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._arm(signum, from_handler=False)
            if not told_parent and not self._parent_alive():
                told_parent = True
                self.say(f"forge serve: parent {self.parent_pid} is gone; stopping")
                os.kill(os.getpid(), signal.SIGTERM)

    def _exit_watchdog(self) -> None:
        self.signalled.wait()
        time.sleep(self.exit_grace_s)  # the main thread had its chance to unwind (and exit) normally
        self.say(f"forge serve: still running {self.exit_grace_s:g} s after the signal (its SystemExit was "
                 "discarded, or the main thread is in a long native call, or the unwind is slow); exiting now")
        force_interrupted_exit(self.exit_code, self.say)

    def _parent_alive(self) -> bool:
        return self.parent_pid is None or os.getppid() == self.parent_pid

    def run(self) -> int:
        """Serve until stopped (main thread only: it installs signal handlers).  returns 0; a signal ends
        it with ``SystemExit(128 + signal)``."""
        self.loop.requests_dir.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(_Wake(self.wake), str(self.loop.requests_dir), recursive=False)
        observer.start()
        rsock, wsock = socket.socketpair()
        wsock.setblocking(False)
        old_fd = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        if hasattr(signal, "SIGUSR1"):
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        threading.Thread(target=self._exit_watchdog, name="forge-serve-exit-watchdog", daemon=True).start()
        threading.Thread(target=self._signal_thread, args=(rsock,), name="forge-serve-signals", daemon=True).start()
        self.say(f"forge serve: watching {self.loop.requests_dir} (pid {os.getpid()})")
        try:
            while not self.stop.is_set() and self._parent_alive():
                serve_pending(self.loop, say=self.say, stop=self.stop)
                self.wake.wait(self.loop.serve.poll_seconds)
                self.wake.clear()
        finally:
            observer.stop()
            observer.join(timeout=5)
        signal.set_wakeup_fd(old_fd)
        self.say("forge serve: stopped")
        return 0


def adjust_priority(nice: int) -> None:
    """Lower this process's CPU priority by ``nice`` (no-op for 0)."""
    if nice:
        os.nice(nice)
