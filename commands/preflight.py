"""Checks the command line runs before any work starts (nothing is written by them).

A bad input must fail in the first second with one line naming the file or
flag and what was expected, not after the causal filter has run and left a
half-made run directory behind:

* :func:`check_data_paths` — folders of Binance kline files: a stray file
  that is not named like one, or several symbols mixed without ``--symbols``;
* :func:`check_seed_genomes` — every ``--seed-genome`` file loads and verifies;
* :func:`check_dask` — ``--backend dask`` has dask.distributed installed and
  a scheduler that answers; returns the number of workers it reached;
* :func:`prepare_run_dir` — refuse to write into an existing run directory
  unless ``force`` (then the old run's files are removed) or resuming.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Sequence

from forge.core.errors import ConfigError, DataError, RunDirError
from forge.data import synthetic

__all__ = ["KLINE_NAME", "check_data_paths", "check_seed_genomes", "check_dask", "prepare_run_dir",
           "RUN_DIR_MARKERS"]

KLINE_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-1m-(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?:csv|zip)$")
"""Binance public kline file names: ``SYMBOL-1m-YYYY-MM.csv`` (monthly) or ``SYMBOL-1m-YYYY-MM-DD.csv``
(daily), or the same ``.zip``."""

FUNDING_NAME = re.compile(r"^[A-Z0-9]+-fundingRate-\d{4}-\d{2}\.(?:csv|zip)$")
"""Binance funding-rate history files (``forge.data.funding``), allowed beside kline files."""

RUN_DIR_MARKERS = ("run_config.json", "manifest.json", "checkpoint.json", "generations.jsonl")
"""Files whose presence makes a folder a ``forge evolve`` run directory."""


def check_data_paths(paths: Sequence[str | Path] | None, symbols: Sequence[str] | None = None,
                     flag: str = "--symbols") -> dict[str, int]:
    """Check ``--data`` paths before loading them.

    Files named explicitly and ``synthetic:`` market specs are left to the loader.  Inside a folder, every
    ``.csv``/``.zip`` (recursively, as the loader reads them) must be named
    like a Binance kline file, and without ``symbols`` only one symbol may be
    present.  returns {symbol: number of files} over the folders.  raises
    DataError naming a stray file; ConfigError when several symbols are found
    without ``symbols`` (or a requested symbol has no file).
    """
    found: dict[str, int] = {}
    for raw in paths or ():
        if synthetic.is_spec(raw):
            continue  # a synthetic market spec, checked by the loader (forge.data.synthetic.parse_spec)
        p = Path(raw)
        if not p.exists():
            raise DataError("no such file or folder", file=p)
        if not p.is_dir():
            continue
        for f in sorted(x for x in p.rglob("*") if x.is_file() and x.suffix in (".csv", ".zip")):
            m = KLINE_NAME.match(f.name)
            if m is None and FUNDING_NAME.match(f.name):
                continue  # funding-rate history (forge.data.funding), read beside the klines
            if m is None:
                raise DataError(f"not a Binance kline file name (expected SYMBOL-1m-YYYY-MM[-DD].csv or .zip); "
                                f"move it out of {p} or pass the kline files explicitly", file=f)
            found[m["symbol"]] = found.get(m["symbol"], 0) + 1
    if symbols:
        missing = [s for s in symbols if found and s not in found]
        if missing:
            raise ConfigError(f"{flag} {','.join(missing)}: no files of {'this symbol' if len(missing) == 1 else 'these symbols'} "
                              f"under --data (found {', '.join(sorted(found))})")
    elif len(found) > 1:
        names = ", ".join(f"{s} ({n} files)" for s, n in sorted(found.items()))
        raise ConfigError(f"--data: {len(found)} symbols found ({names}): use --symbols "
                          f"{','.join(sorted(found))} to evolve across them, or --symbols ONE for one")
    return found


def check_seed_genomes(paths: Sequence[str | Path] | None) -> int:
    """Load and verify every seed genome file; returns how many. raises GenomeError naming the file."""
    from forge.gp import Genome

    for p in paths or ():
        Genome.load(p)
    return len(paths or ())


def check_dask(scheduler: str, timeout: float = 10.0) -> int:
    """Connect to the Dask scheduler once; returns the number of workers it reports.

    raises ConfigError when dask.distributed is not installed, no scheduler
    address is given, the scheduler does not answer within ``timeout``
    seconds, or it has no workers.
    """
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--backend dask needs dask.distributed: pip install -e '.[cluster]'") from None
    if not scheduler:
        raise ConfigError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    try:
        client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answered ({exc})") from None
    try:
        n = len(client.scheduler_info().get("workers", {}))
    finally:
        client.close()
    if n == 0:
        raise ConfigError(f"--scheduler {scheduler}: the scheduler has no workers")
    return n


def prepare_run_dir(run_dir: str | Path, *, force: bool = False) -> Path:
    """Make ``run_dir`` safe to write a new run into.

    A missing or empty folder is fine.  An existing run directory (any of
    :data:`RUN_DIR_MARKERS`) is refused unless ``force``, in which case it is
    deleted so no file of the old run (``causal.json``, ``surrogate.npz``…)
    survives next to the new one.  A non-empty folder that is not a run
    directory is never deleted.  raises RunDirError.
    """
    p = Path(run_dir)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"--run-dir {p}: exists and is not a folder")
    if not p.is_dir() or not any(p.iterdir()):
        return p
    is_run = any((p / m).exists() for m in RUN_DIR_MARKERS)
    if not is_run:
        raise RunDirError(f"--run-dir {p}: folder is not empty and is not a run directory; choose another path")
    if not force:
        finished = (p / "manifest.json").is_file()
        raise RunDirError(f"--run-dir {p}: holds a {'finished' if finished else 'unfinished'} run; "
                          f"pass --force to replace it" + ("" if finished else f" or --resume {p} to continue it"))
    shutil.rmtree(p)
    return p
