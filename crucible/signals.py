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

On the replay venue, :class:`ChunkedSignals` runs the same engine once per
chunk: the window is the ``history_bars`` closed bars plus the next
``prefetch_bars`` bars the replay will deliver, and the runtime reads the
value at each bar as that bar closes.  Because features, programs and the
warm-up mask are causal, the value at bar t does not depend on the later
bars in the chunk (tested against the per-bar rolling engine); the chunk's
window starts earlier than the rolling one, so Wilder recursions are, if
anything, closer to the backtester's full-history values.  This pipelining is
what lets a month of 1-minute bars replay in seconds (zipline's chunked
pipeline is the same idea); exchange venues use the per-bar rolling window.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

import numpy as np

from forge.core.errors import GenomeError
from forge.data.gaps import bars_since_gap
from forge.features import FEATURES, BarArrays
from forge.gp import BufferPool, Genome, compile_program, run_program
from forge.strategy import mask_warmup

__all__ = ["ChunkedSignals", "SignalEngine", "check_features"]


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


class ChunkedSignals:
    """Target exposures per bar, computed once per chunk of replay bars (see module docstring).

    engine: a SignalEngine; history_bars: closed bars before the chunk's first bar; prefetch_bars: bars
    after it (> 0).  Series are cached per (symbol, genome sha256); a genome that appears mid-chunk
    (hot-swap, challenger) gets its own chunk from that bar on.
    """

    def __init__(self, engine: SignalEngine, history_bars: int, prefetch_bars: int) -> None:
        if prefetch_bars <= 0:
            raise ValueError(f"prefetch_bars must be > 0, got {prefetch_bars}")
        self.engine = engine
        self.history_bars = int(history_bars)
        self.prefetch_bars = int(prefetch_bars)
        self._chunks: dict[tuple[str, str], list] = {}  # (symbol, sha) -> [open_times, values, last index]
        self.chunks_computed = 0

    def _lookup(self, key: tuple[str, str], bar_time: int) -> float | None:
        c = self._chunks.get(key)
        if c is None:
            return None
        times, values, last = c  # python lists; last: index returned last time
        i = last + 1
        if not (i < len(times) and times[i] == bar_time):
            if last >= 0 and times[last] == bar_time:  # the same genome in another slot
                i = last
            else:
                i = bisect.bisect_left(times, bar_time)
                if i >= len(times) or times[i] != bar_time:
                    return None
        c[2] = i
        return values[i]

    def latest(self, symbol: str, genomes: Mapping[str, Genome], bar_time: int, history, prefetch) -> dict[str, float]:
        """Target exposure at the close of ``bar_time`` (open time, ms) for each genome.

        history(symbol, n) -> closed bars (t included), prefetch(symbol, n) -> the next bars (venue API).
        returns key -> float in [-1, 1].  raises GenomeError for a feature outside the registry.
        """
        out: dict[str, float] = {}
        missing: dict[str, Genome] = {}
        for k, g in genomes.items():
            v = self._lookup((symbol, g.sha256), bar_time)
            if v is None:
                missing[k] = g
            else:
                out[k] = v
        if not missing:
            return out
        h = history(symbol, self.history_bars)
        if h["open_time"].shape[0] == 0 or int(h["open_time"][-1]) != bar_time:
            return {**out, **self.engine.latest(missing, h)}  # the bar is not the venue's latest: no chunk
        a = prefetch(symbol, self.prefetch_bars)
        window = {c: np.concatenate([h[c], a[c]]) for c in h if c in a}
        pos = self.engine.positions(missing, window)
        first = h["open_time"].shape[0] - 1
        times = window["open_time"][first:].tolist()
        live = {g.sha256 for g in genomes.values()}
        for key in [k for k in self._chunks if k[0] == symbol and k[1] not in live]:
            del self._chunks[key]
        for k, g in missing.items():
            self._chunks[(symbol, g.sha256)] = [times, pos[k][first:].tolist(), 0]
            out[k] = float(pos[k][first])
        self.chunks_computed += 1
        return out
