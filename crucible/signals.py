"""Live signals: the same features and the same VM as the backtester, over a
rolling window of closed bars.

At the close of bar t the engine computes every wanted feature on the last
``history_bars`` closed bars (t included), runs each genome's compiled
program with ``forge.gp.run_program`` and masks the warm-up exactly as
``forge.strategy.genome_positions`` does; the value at t is the target
exposure that trades at the open of t+1.  Features are causal, so when the
window holds every bar since the feed began the live value at t equals
``genome_positions`` on the full frame at t bit for bit.  With a shorter
window, features of finite memory (returns, rolling statistics, windowed
EMA) are still exact once the window covers their lookback; the Wilder
RSI/ATR recursions converge to the full-history value (they differ only
while the seed's influence is above float64 resolution).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from forge.core.errors import GenomeError
from forge.data.gaps import bars_since_gap
from forge.features import FEATURES, BarArrays
from forge.gp import BufferPool, Genome, compile_program, run_program
from forge.strategy import mask_warmup

__all__ = ["SignalEngine", "check_features"]


def check_features(genome: Genome) -> None:
    """raises GenomeError if the genome reads a feature the live engine cannot compute (not in the registry)."""
    missing = [f for f in genome.features if f not in FEATURES]
    if missing:
        raise GenomeError(f"genome {genome.sha256[:12]} reads feature(s) {missing} outside the registry "
                          "(synthesized feature libraries are not supported live)")


class SignalEngine:
    """Computes target exposures of several genomes on one symbol's bars.

    Compiled programs are cached by genome sha256.  Not thread-safe.
    """

    def __init__(self) -> None:
        self._programs: dict[tuple[str, tuple[str, ...]], object] = {}
        self._pool = BufferPool()

    def positions(self, genomes: Mapping[str, Genome], bars: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Target exposure series of each genome on ``bars``.

        genomes: key -> Genome; bars: column -> (n,) array (``open_time`` int64 ms, ``open``, ``high``,
        ``low``, ``close``, ``volume``, ``taker_buy_volume`` float64), oldest first.
        returns key -> (n,) float64 in [-1, 1] (the live decision is the last element).
        raises GenomeError for a feature outside the registry.
        """
        t = np.ascontiguousarray(bars["open_time"], dtype=np.int64)
        n = t.shape[0]
        if n == 0:
            return {k: np.zeros(0) for k in genomes}
        names = tuple(sorted({f for g in genomes.values() for f in g.features}))
        for g in genomes.values():
            check_features(g)
        bsg = bars_since_gap(t)

        def col(c: str) -> np.ndarray:
            return np.ascontiguousarray(bars[c], dtype=np.float64)

        ba = BarArrays(t, col("open"), col("high"), col("low"), col("close"), col("volume"),
                       col("taker_buy_volume"), bsg)
        values = np.empty((len(names), n))
        for i, name in enumerate(names):
            values[i] = FEATURES[name].compute(ba)
        lookbacks = {name: FEATURES[name].lookback for name in names}
        out: dict[str, np.ndarray] = {}
        for key, g in genomes.items():
            ck = (g.sha256, names)
            prog = self._programs.get(ck)
            if prog is None:
                prog = compile_program(g, names, lookbacks)
                self._programs[ck] = prog
            pos = run_program(prog, values, self._pool)
            out[key] = mask_warmup(pos, bsg, prog.lookback)
        return out

    def latest(self, genomes: Mapping[str, Genome], bars: Mapping[str, np.ndarray]) -> dict[str, float]:
        """The last bar's target exposure per genome (0.0 on an empty window)."""
        return {k: (float(v[-1]) if v.shape[0] else 0.0) for k, v in self.positions(genomes, bars).items()}
