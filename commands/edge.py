"""The command-line edge shared by the three apps (``forge``, ``gauntlet``, ``crucible``).

The one exit-code table, the ``@edge`` handler that turns library errors into a one-line message and
that code, the two rich consoles every command prints to, and the packaged default configs.  Command
modules (``commands/evolve.py``, ``commands/gauntlet.py``, ``commands/crucible.py``, ...) import from here;
``cli.py`` assembles them into the Typer apps.  Nothing below ``cli`` raises ``typer.Exit`` for an
error except through this module.
"""

from __future__ import annotations

import functools
import sqlite3
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from forge.core.config import CONFIG_DIR
from forge.core.errors import ForgeError

# piped output (logs, CI) gets a wide fixed width instead of 80 columns
def _width(stream: object) -> int | None:
    """Console width: the terminal's (rich reads it, or COLUMNS) on a terminal; piped, COLUMNS when set,
    else 200 (log files keep long lines whole)."""
    if getattr(stream, "isatty", lambda: False)():
        return None
    try:
        cols = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        cols = 0
    return cols if cols > 0 else 200


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

# --------------------------------------------------------------------------- exit codes: the one place

EXIT_OK = 0
EXIT_ERROR = 1          # ForgeError without a more specific class
EXIT_USAGE = 2          # bad flag, bad config, unreadable journal (ConfigError, sqlite3.Error, typer usage errors)
EXIT_DATA = 3           # DataError
EXIT_GENOME = 4         # GenomeError
EXIT_RUNDIR = 5         # RunDirError
EXIT_REJECTED = 6       # gauntlet validate --fail-on-reject: no candidate survived
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def exit_code_of(exc: BaseException) -> int:
    """Exit status for an exception reaching the command line (the EXIT_* table above): a ForgeError
    carries its class's code (ConfigError 2, DataError 3, GenomeError 4, RunDirError 5, crucible's
    JournalError 2, others 1); sqlite3.Error (an unreadable journal) 2; Ctrl-C 130."""
    if isinstance(exc, ForgeError):
        return int(getattr(exc, "exit_code", EXIT_ERROR))
    if isinstance(exc, sqlite3.Error):
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return f"unreadable SQLite file ({exc})"
    return str(exc)


def edge(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ForgeError (and sqlite3.Error) into a red one-line message and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ForgeError, sqlite3.Error) as exc:
            err_console.print(f"[bold red]error:[/] {escape(_error_line(exc))}", highlight=False, markup=True,
                              soft_wrap=True)  # one line, never wrapped
            raise typer.Exit(exit_code_of(exc)) from None

    return wrapper


def default_config(name: str) -> Optional[Path]:
    """The packaged default config ``configs/<name>`` (None when not shipped). ./configs is read only
    when passed explicitly with --config, so every app resolves its default the same way."""
    p = CONFIG_DIR / name
    return p if p.is_file() else None
