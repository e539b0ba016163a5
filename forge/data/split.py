"""The one in-sample / out-of-sample split of a bar series (``forge evolve``, ``forge synthesize``).

A single holdout: the leading ``in_sample_fraction`` of the bars is what a search may see, the rest is the
out-of-sample tail, touched only to report.  (Walk-forward folds are the gauntlet's business.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from forge.core.errors import DataError

__all__ = ["Split", "holdout_split", "split_point"]


def split_point(n: int, in_sample_fraction: float) -> int:
    """Number of in-sample bars of a series of ``n`` bars: ``int(n * in_sample_fraction)``."""
    return int(n * in_sample_fraction)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()


@dataclass(frozen=True)
class Split:
    """Holdout split: bar index ranges [start, stop) and the open times (ms) of their first and last bars."""

    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]
    in_sample_ms: tuple[int, int]
    out_of_sample_ms: tuple[int, int]

    def to_dict(self, with_iso: bool = True) -> dict[str, Any]:
        """``{"in_sample": {"rows", "first_open_ms", "last_open_ms", "first", "last"}, "out_of_sample": ...}``
        (``first``/``last`` ISO-8601 UTC, left out with ``with_iso=False``)."""
        out: dict[str, Any] = {}
        for name, rows, ms in (("in_sample", self.in_sample, self.in_sample_ms),
                               ("out_of_sample", self.out_of_sample, self.out_of_sample_ms)):
            out[name] = {"rows": list(rows), "first_open_ms": ms[0], "last_open_ms": ms[1]}
            if with_iso:
                out[name].update(first=_iso(ms[0]), last=_iso(ms[1]))
        return out


def holdout_split(open_time: np.ndarray, in_sample_fraction: float, min_bars: int = 100) -> Split:
    """Split bars into an in-sample head and an out-of-sample tail.

    open_time: (n,) int64 ms, increasing.  in_sample_fraction: share of the bars in the head (the head holds
    ``split_point(n, in_sample_fraction)`` bars).  raises DataError if either side would hold fewer than
    ``min_bars`` bars (``min_bars`` >= 1).
    """
    n = len(open_time)
    n_is = split_point(n, in_sample_fraction)
    if n_is < min_bars or n - n_is < min_bars:
        raise DataError(
            f"need at least {min_bars} bars on each side of the in/out-of-sample split, got {n_is} in-sample "
            f"and {n - n_is} out-of-sample of {n} bars (in_sample_fraction={in_sample_fraction})"
        )
    return Split(
        in_sample=(0, n_is),
        out_of_sample=(n_is, n),
        in_sample_ms=(int(open_time[0]), int(open_time[n_is - 1])),
        out_of_sample_ms=(int(open_time[n_is]), int(open_time[n - 1])),
    )
