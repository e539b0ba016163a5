"""Exception hierarchy of the Forge.

Library code raises these; only the CLI edge turns them into exit codes
(freqtrade style).  Every message names *where* (file, line/row, field) and
*what was expected*, so a user can fix the input without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class ForgeError(Exception):
    """Base class of every error the project raises on purpose.

    exit_code: int, process exit status the CLI uses for this error class.
    """

    exit_code = 1


class ConfigError(ForgeError):
    """A configuration file or CLI override is invalid (names the key)."""

    exit_code = 2


class DataError(ForgeError):
    """Market data is missing or malformed.

    file: path of the offending file (or None for in-memory data).
    line: 1-based line number in that file (or row index for frames), or None.
    """

    exit_code = 3

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None):
        self.file = None if file is None else str(file)
        self.line = line
        where = ""
        if self.file is not None:
            where = self.file
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)
        self.reason = message


class GenomeError(ForgeError):
    """A genome file is invalid: unknown primitive, wrong types, bad checksum,
    unsupported schema or primitive-set version."""

    exit_code = 4


class RunDirError(ForgeError):
    """A run directory is missing a file or is inconsistent."""

    exit_code = 5
