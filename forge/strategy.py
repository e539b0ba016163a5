"""From a genome to positions on bars: the one path shared by evolution,
the gauntlet and the live runtime.

The VM output is masked so that no position is taken before the program's
declared lookback has been filled in the current contiguous segment (the
first bars of the data and the first bars after every gap are flat).
"""

from __future__ import annotations

import numpy as np

from forge.features import FeatureMatrix
from forge.gp import BufferPool, Genome, compile_program, run_program


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
) -> np.ndarray:
    """Target positions of ``genome`` on the bars behind ``features``.

    features: FeatureMatrix whose names include every feature the genome
    reads (extra features are fine); bars_since_gap: (n,) int64.
    returns: (n,) float64 target exposure in [-1, 1], decided at each bar's
    close (the backtester fills it at the next bar's open).
    raises GenomeError if the genome reads a feature that is not available.
    """
    program = compile_program(genome, features.names, dict(zip(features.names, features.lookbacks)))
    pos = run_program(program, features.values, pool)
    return mask_warmup(pos, bars_since_gap, program.lookback)
