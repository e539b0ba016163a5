"""The trial ledger: every ``forge evolve`` run's trial count per symbol and in-sample bar range (a kernel
contract: the Forge appends, the Gauntlet and ``forge runs list`` read).

A researcher who evolves 20 seeds on the same bars and validates each gets 20 chances at a lucky maximum;
a Deflated Sharpe Ratio that counts only one run's trials misses 19 of them (Bailey & López de Prado 2014,
"The Deflated Sharpe Ratio", J. of Portfolio Management 40(5): N is every trial of the selection, including
the ones in discarded backtests).  The ledger makes those trials visible across runs.

File: append-only JSON lines, one per finished run::

    {"schema": "forge-trial-ledger/1", "run_id", "key": <symbol, or the data source when there is none>,
     "keys": [<every symbol whose bars the run read>],
     "first_open_ms", "last_open_ms" (the run's in-sample bars, i.e. the bars its selection saw),
     "trials": <genomes fully evaluated>, "recorded_utc"}

A panel run (``[universe]``) reads several instruments: its ``keys`` are the symbols of all of them (the traded
one and every candidate leader, market dropped: a spot and a perpetual of one symbol are one market's bars
for this purpose), so two panel runs that trade different symbols but both searched a leader's bars count in
each other's N, and so do a panel run and a single-symbol run of any symbol it read.  Two runs overlap when
they share a key and at least one bar time.  Lines written before ``keys`` existed read as ``[key]``.

Default location: ``<run directory>/../../trial_ledger.jsonl`` (``artifacts/trial_ledger.jsonl`` for runs
under ``artifacts/runs``); ``[evolve] trial_ledger`` names another file.  Appends hold an exclusive
``fcntl.flock`` on the file and are fsynced, so concurrent runs never interleave lines; a torn or foreign
line is skipped by readers.  A run recorded twice (``--resume``) counts once, with its largest count.
The key of a single-symbol run is its symbol: ``[evolve] symbols``' name, else the symbol its Binance kline
files name (so two runs reading the same files under different paths still meet), else the coverage source.
Runs on in-memory bars with no symbol share the key ``"in-memory"`` (their coverage source) and are counted
together when their bar times overlap -- conservative for one market, wrong for unrelated synthetic
markets on one clock, which should each get their own ``[evolve] trial_ledger`` (``loop.honesty`` does).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

__all__ = ["LEDGER_NAME", "SCHEMA", "LedgerEntry", "LedgerTally", "append_entry", "entry_for_manifest",
           "ledger_path", "read_ledger", "tally_overlapping"]

SCHEMA = "forge-trial-ledger/1"
LEDGER_NAME = "trial_ledger.jsonl"


@dataclass(frozen=True)
class LedgerEntry:
    """One run's line: run_id; key: symbol (or data source); first_open_ms / last_open_ms: in-sample bars
    (ms UTC, inclusive); trials: genomes fully evaluated (>= 1); keys: every symbol the run read (a panel's
    instruments; ``(key,)`` when empty)."""

    run_id: str
    key: str
    first_open_ms: int
    last_open_ms: int
    trials: int
    keys: tuple[str, ...] = ()

    @property
    def read(self) -> frozenset[str]:
        """The symbols whose bars this run's selection saw."""
        return frozenset(self.keys or (self.key,))

    def overlaps(self, keys: str | frozenset[str] | tuple[str, ...], first_ms: int, last_ms: int) -> bool:
        """True when this entry read one of ``keys`` (a key or a set of them) and its bars share at least one
        bar time with [first_ms, last_ms]."""
        want = frozenset((keys,)) if isinstance(keys, str) else frozenset(keys)
        return bool(self.read & want) and self.first_open_ms <= last_ms and first_ms <= self.last_open_ms


@dataclass(frozen=True)
class LedgerTally:
    """Runs and trials on bars overlapping one run's in-sample range: runs / trials include the run itself
    when it is recorded; other_runs / other_trials exclude it."""

    runs: int
    trials: int
    other_runs: int
    other_trials: int

    def line(self) -> str:
        """The report line, e.g. "3 runs / 4,812 trials on these bars"."""
        return f"{self.runs} run{'s' if self.runs != 1 else ''} / {self.trials:,} trials on these bars"

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "trials": self.trials, "other_runs": self.other_runs,
                "other_trials": self.other_trials, "line": self.line()}


def ledger_path(run_dir: str | Path, configured: str | None = None) -> Path:
    """The ledger a run records into: ``configured`` (``[evolve] trial_ledger``) when given, else
    ``<run_dir>/../../trial_ledger.jsonl``."""
    return Path(configured) if configured else Path(run_dir).resolve().parent.parent / LEDGER_NAME


def entry_for_manifest(manifest: Any) -> LedgerEntry | None:
    """The ledger line of a run from its manifest (``forge.core.rundir.Manifest`` or its dict); None when the
    manifest names no in-sample range."""
    d = manifest if isinstance(manifest, dict) else manifest.to_dict()
    try:
        ins = d["split"]["in_sample"]
        first, last = int(ins["first_open_ms"]), int(ins["last_open_ms"])
    except (KeyError, TypeError, ValueError):
        return None
    data = d.get("data") or {}
    cov = data.get("coverage") or {}
    key = (_symbol_key(str(data.get("symbol") or "")) or _files_symbol(cov.get("files") or ())
           or cov.get("source") or "unknown")
    instruments = ((d.get("universe") or {}).get("instruments")) or {}
    syms = {str(v.get("symbol")) for v in instruments.values() if isinstance(v, dict) and v.get("symbol")}
    keys = tuple(sorted(syms | {str(key)})) if syms else ()
    return LedgerEntry(run_id=str(d.get("run_id")), key=str(key), first_open_ms=first, last_open_ms=last,
                       trials=max(1, int(d.get("candidates_evaluated") or 1)), keys=keys)


def _symbol_key(name: str) -> str:
    """A panel instrument tag ``SYMBOL_spot`` / ``SYMBOL_perp`` -> ``SYMBOL``; other names unchanged."""
    for suffix in ("_spot", "_perp"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _files_symbol(files: Any) -> str:
    """The one symbol that every kline file of a coverage record names (``<SYMBOL>-1m-...``), else ""."""
    names = set()
    for f in files:
        base = Path(str(f.get("path", "") if isinstance(f, dict) else f)).name
        if "-1m-" not in base:
            return ""
        names.add(base.split("-1m-")[0])
    return names.pop() if len(names) == 1 else ""


def append_entry(path: str | Path, entry: LedgerEntry) -> Path:
    """Append ``entry`` under an exclusive lock (creating the file and its folder); returns the path.
    raises OSError when the file cannot be written."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"schema": SCHEMA, "run_id": entry.run_id, "key": entry.key,
                       "keys": sorted(entry.read), "first_open_ms": entry.first_open_ms, "last_open_ms": entry.last_open_ms,
                       "trials": entry.trials, "recorded_utc": datetime.now(timezone.utc).isoformat()},
                      sort_keys=True) + "\n"
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return p


def read_ledger(path: str | Path) -> Iterator[LedgerEntry]:
    """The ledger's entries (a missing file is empty; torn, foreign-schema or malformed lines are skipped)."""
    p = Path(path)
    if not p.is_file():
        return
    with open(p, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        try:
            raw = fh.read()
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    for line in raw.splitlines():
        try:
            d = json.loads(line)
            if d.get("schema") != SCHEMA:
                continue
            keys = d.get("keys") or []
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                continue
            yield LedgerEntry(run_id=str(d["run_id"]), key=str(d["key"]), first_open_ms=int(d["first_open_ms"]),
                              last_open_ms=int(d["last_open_ms"]), trials=max(1, int(d["trials"])),
                              keys=tuple(keys))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue


def tally_overlapping(path: str | Path, entry: LedgerEntry) -> LedgerTally:
    """Runs and trials recorded in the ledger at ``path`` on bars overlapping ``entry``'s (a shared symbol and
    bar time); each run counted once (its largest recorded trial count)."""
    best: dict[str, int] = {}
    for e in read_ledger(path):
        if e.overlaps(entry.read, entry.first_open_ms, entry.last_open_ms):
            best[e.run_id] = max(best.get(e.run_id, 0), e.trials)
    others = {r: n for r, n in best.items() if r != entry.run_id}
    own = best.get(entry.run_id)
    return LedgerTally(runs=len(others) + (own is not None), trials=sum(others.values()) + (own or 0),
                       other_runs=len(others), other_trials=sum(others.values()))
