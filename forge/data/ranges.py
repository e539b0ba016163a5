"""The range of bars an artifact was fitted on, and the out-of-sample rule that goes with it.

A simulator calibration (``forge calibrate``) and a feature library (``forge synthesize``) are fitted on
real bars; both record that range as ``data_range`` (:class:`DataRange`).  ``forge evolve`` refuses either
when the range overlaps the run's out-of-sample range (:func:`refuse_overlap`): evolution would otherwise
select strategies with information from the bars the hall of fame is later judged on (issue 17 item 5).
Ranges are closed intervals of bar open times in ms UTC; two ranges overlap when they share any instant,
whichever symbol they came from (markets move together; an overlap in time is refused on any symbol).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import polars as pl

from forge.core.errors import ConfigError

__all__ = ["DataRange", "refuse_overlap"]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class DataRange:
    """Bars from ``first_open_ms`` to ``last_open_ms`` (open times, int ms UTC, inclusive); n_bars: rows."""

    first_open_ms: int
    last_open_ms: int
    n_bars: int

    @classmethod
    def of(cls, bars: pl.DataFrame) -> DataRange:
        """The range of a bar frame (``open_time`` int ms).  raises ConfigError for an empty frame."""
        if bars.height == 0:
            raise ConfigError("cannot take the data range of an empty bar frame")
        t = bars["open_time"]
        return cls(int(t.min()), int(t.max()), int(bars.height))

    @classmethod
    def from_dict(cls, d: Any, where: str) -> DataRange:
        """Inverse of :meth:`to_dict`; raises ConfigError naming ``where`` when a field is missing or bad."""
        try:
            first, last, n = d["first_open_ms"], d["last_open_ms"], d["n_bars"]
        except (KeyError, TypeError):
            raise ConfigError(f"{where}: data_range needs first_open_ms, last_open_ms and n_bars, got {d!r}") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (first, last, n)) or first > last:
            raise ConfigError(f"{where}: data_range must hold integers with first_open_ms <= last_open_ms, got {d!r}")
        return cls(first, last, n)

    def to_dict(self) -> dict[str, Any]:
        """``{"first_open_ms", "last_open_ms", "n_bars", "first", "last"}`` (the last two: UTC, for people)."""
        return {"first_open_ms": self.first_open_ms, "last_open_ms": self.last_open_ms, "n_bars": self.n_bars,
                "first": _iso(self.first_open_ms), "last": _iso(self.last_open_ms)}

    def overlaps(self, other: DataRange) -> bool:
        return self.first_open_ms <= other.last_open_ms and other.first_open_ms <= self.last_open_ms

    def __str__(self) -> str:
        return f"{_iso(self.first_open_ms)} .. {_iso(self.last_open_ms)} UTC ({self.n_bars:,} bars)"


def refuse_overlap(what: str, fitted: DataRange, out_of_sample: DataRange, remedy: str) -> None:
    """raises ConfigError (one line naming ``what``, both ranges and ``remedy``) when ``fitted`` overlaps
    ``out_of_sample``."""
    if fitted.overlaps(out_of_sample):
        raise ConfigError(f"{what} was fitted on {fitted}, which overlaps this run's out-of-sample range "
                          f"{out_of_sample}; {remedy}")
