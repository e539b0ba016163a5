"""From a genome to positions on bars: the one path shared by evolution,
the gauntlet and the live runtime.

The VM output is masked so that no position is taken before the program's
declared lookback has been filled in the current contiguous segment (the
first bars of the data and the first bars after every gap are flat).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from forge.core.errors import ConfigError
from forge.features import FEATURES, FeatureMatrix, compute_features
from forge.features.library import FeatureLibrary, library_features, load_feature_library
from forge.gp import BufferPool, Genome, compile_program, run_program
from forge.gp.cache import SubtreeCache


def strategy_features(
    bars: pl.DataFrame,
    names: tuple[str, ...] | list[str],
    library: FeatureLibrary | str | Path | None = None,
) -> FeatureMatrix:
    """Terminal features for ``names`` on ``bars``: registry features plus
    synthesized ones from a feature library (``forge synthesize``).

    bars: bar frame (``forge.data.schema``), oldest first; names: feature
    names in the wanted row order; library: FeatureLibrary or path of its JSON.
    returns: FeatureMatrix with values (len(names), n) float64.
    raises ConfigError for an unknown name, DataError for a bad library file.
    """
    names = tuple(names)
    lib_vals: dict[str, tuple[np.ndarray, int]] = {}
    if library is not None:
        lib = library if isinstance(library, FeatureLibrary) else load_feature_library(library)
        wanted = [f for f in lib.features if f.name in names]
        if wanted:
            sub = FeatureLibrary(lib.raw_inputs, tuple(wanted), lib.meta)
            lnames, vals, lbs = library_features(sub, bars)
            lib_vals = {n: (vals[i], lbs[i]) for i, n in enumerate(lnames)}
    base = [n for n in names if n not in lib_vals]
    unknown = [n for n in base if n not in FEATURES]
    if unknown:
        raise ConfigError(f"features {unknown} are not in the registry"
                        + (" nor in the feature library" if library is not None else " (pass the feature library?)"))
    fm = compute_features(bars, base) if base else None
    rows, lbs = [], []
    for n in names:
        if n in lib_vals:
            rows.append(lib_vals[n][0]); lbs.append(lib_vals[n][1])
        else:
            i = fm.names.index(n)
            rows.append(fm.values[i]); lbs.append(fm.lookbacks[i])
    values = np.ascontiguousarray(np.vstack(rows)) if rows else np.empty((0, bars.height))
    return FeatureMatrix(names=names, values=values, lookbacks=tuple(int(x) for x in lbs))


def mask_warmup(position: np.ndarray, bars_since_gap: np.ndarray, lookback: int) -> np.ndarray:
    """Flatten positions whose inputs would reach across a gap or before the data.

    position: (n,) float64 in [-1, 1]; bars_since_gap: (n,) int64 from
    ``forge.data.gaps.bars_since_gap``; lookback: bars of history the program
    reads before the current bar.  returns: (n,) float64 (a new array).
    """
    out = np.array(position, dtype=np.float64, copy=True)
    out[np.asarray(bars_since_gap) < lookback] = 0.0
    return out


def genome_positions(
    genome: Genome,
    features: FeatureMatrix,
    bars_since_gap: np.ndarray,
    pool: BufferPool | None = None,
    cache: SubtreeCache | None = None,
) -> np.ndarray:
    """Target positions of ``genome`` on the bars behind ``features`` -- the one genome -> positions path
    (evolution's fitness, the hall-of-fame report, the gauntlet, co-evolution encounters).

    features: FeatureMatrix whose names include every feature the genome
    reads (extra features are fine); bars_since_gap: (n,) int64; pool: VM buffers to reuse;
    cache: a ``forge.gp.cache.SubtreeCache`` built on exactly ``features.values`` (same result, memoised
    windowed subtrees).
    returns: (n,) float64 target exposure in [-1, 1], decided at each bar's
    close (the backtester fills it at the next bar's open).
    raises GenomeError if the genome reads a feature that is not available.
    """
    lookbacks = dict(zip(features.names, features.lookbacks))
    if cache is not None:
        raw, lookback = cache.run(genome), SubtreeCache.lookback(genome, lookbacks)
    else:
        program = compile_program(genome, features.names, lookbacks)
        raw, lookback = run_program(program, features.values, pool), program.lookback
    return mask_warmup(raw, bars_since_gap, lookback)
