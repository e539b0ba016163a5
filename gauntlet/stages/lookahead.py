"""Look-ahead check: recompute the signal on data truncated at many points; any earlier value that
changes means the strategy read the future (features, VM and masking all included)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from gauntlet.stages import StageResult

NAME = "lookahead"


def truncation_points(start: int, stop: int, k: int, seed: int) -> list[int]:
    """k cut points in [start + 1, stop): evenly spaced plus seeded random ones (half each)."""
    even = np.linspace(start + 1, stop - 1, max(k - k // 2, 1)).astype(int)
    rnd = np.random.default_rng(seed).integers(start + 1, stop, size=k // 2)
    return sorted({int(x) for x in np.concatenate([even, rnd])})


def lookahead_check(position_fn: Callable[[pl.DataFrame], np.ndarray], bars: pl.DataFrame,
                    cuts: list[int]) -> dict:
    """position_fn: bars -> (n,) positions; cuts: row counts to truncate at.
    returns: {"violations": [(cut, first_changed_row, max_abs_diff)], "checked": len(cuts)}."""
    full = np.asarray(position_fn(bars), dtype=np.float64)
    bad = []
    for cut in cuts:
        part = np.asarray(position_fn(bars.head(cut)), dtype=np.float64)
        ref = full[:cut]
        same = (part == ref) | (np.isnan(part) & np.isnan(ref))
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            diff = np.abs(np.nan_to_num(part, nan=np.inf) - np.nan_to_num(ref, nan=np.inf))
            bad.append((cut, i, float(np.nanmax(np.where(np.isfinite(diff), diff, np.nan)) if np.isfinite(diff).any() else np.inf)))
    return {"violations": bad, "checked": len(cuts)}


def run(ctx, cand, cfg, shared) -> StageResult:
    a, b = ctx.evaluation
    cuts = truncation_points(a, b, cfg.lookahead_points, cfg.seed)
    res = lookahead_check(cand.position_fn, ctx.bars, cuts)
    v = res["violations"]
    passed = not v
    reason = (f"signal unchanged at {len(cuts)} truncation points" if passed else
              f"signal changed when data was cut at row {v[0][0]} (first changed row {v[0][1]}): reads the future")
    return StageResult(NAME, "truncations with changed values", float(len(v)), None, 0.0, passed, reason,
                       {"cuts": cuts, "violations": [list(x) for x in v]})
