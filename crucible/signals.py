"""Live signals: the same features and the same VM as the backtester, over a
rolling window of closed bars.

At the close of bar t the engine computes every wanted feature on the last
``history_bars`` closed bars (t included) and runs each genome through
``forge.strategy.genome_positions`` -- the one genome -> positions path of the
backtester, evolution and the gauntlet (same VM, same warm-up mask); the value
at t is the target exposure that trades at the open of t+1.  Features are
causal, so when the window holds every bar since the feed began the live value
at t equals ``genome_positions`` on the full frame at t bit for bit.  With a
shorter window, features of finite memory (returns, rolling statistics,
windowed EMA) are exact once the window covers their lookback, and the Wilder
RSI/ATR recursions (also on 1h bars) are within ``forge.strategy.BURN_IN_TOL``
(relative) of the full-history value once the window also covers their burn-in.
:func:`check_genome` refuses a genome whose ``forge.strategy.required_history``
exceeds ``history_bars`` (the runtime calls it at load and at hot-swap intake):
such a genome would otherwise be masked flat forever, or trade on unconverged
recursions.  Parity over every registry feature: tests/test_crucible_parity.py.

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
from forge.data.panel import split_panel_name
from forge.features.l2terminals import is_l2_feature
from forge.features.regimes import is_regime_feature
from forge.features import FEATURES, BarArrays
from forge.gp import BufferPool, Genome, Program
from forge.strategy import BURN_IN_TOL, bar_features, genome_positions, required_history

__all__ = ["ChunkedSignals", "LiveRegimes", "SignalEngine", "check_features", "check_genome", "required_history"]


def check_features(genome: Genome, history_bars: int | None = None) -> None:
    """raises GenomeError if the genome reads a feature the live engines cannot compute: outside the registry,
    and neither a registry feature of another instrument (``<feature>__<TAG>``, fed as a panel slot,
    :mod:`crucible.panel`), a regime terminal (``regime_p<i>`` / ``regime_next_p<i>``, filtered live with the
    champion's frozen model) nor a recorded-book terminal (``l2_*``, from the bench's books,
    :mod:`crucible.books`; whether the bench has them is checked when the panel registers the genome); or, with
    ``history_bars`` given, if it needs more history than that (see :func:`check_genome`)."""
    missing = [f for f in genome.features if f not in FEATURES and not is_regime_feature(f)
               and not is_l2_feature(f) and split_panel_name(f)[0] not in FEATURES]
    panel = [f for f in missing if split_panel_name(f)[1] is not None]
    if panel:
        raise GenomeError(f"genome {genome.sha256[:12]} reads feature(s) {panel} of other instruments whose base "
                          "feature is outside the registry (synthesized feature libraries are not supported live)")
    if missing:
        raise GenomeError(f"genome {genome.sha256[:12]} reads feature(s) {missing} outside the registry "
                          "(synthesized feature libraries are not supported live)")
    if history_bars is not None:
        need = required_history(genome)
        if need > history_bars:
            reads = ", ".join(sorted(genome.features)) or "no features"
            raise GenomeError(f"genome {genome.sha256[:12]} needs {need} closed bars of history (its lookback plus "
                              f"the burn-in of recursive features to {BURN_IN_TOL:g}; reads {reads}) but "
                              f"history_bars = {history_bars}; raise [general] history_bars to >= {need}")


def check_genome(genome: Genome, history_bars: int) -> None:
    """The live intake check of one genome: every feature in the registry and
    ``required_history(genome) <= history_bars`` (history_bars: closed 1-minute bars in the rolling window).

    raises GenomeError naming the genome, the bars it needs and the bars configured.
    """
    check_features(genome, int(history_bars))


class SignalEngine:
    """Computes target exposures of several genomes on one symbol's bars.

    Compiled programs are cached by genome sha256.  Not thread-safe.
    """

    def __init__(self) -> None:
        self._programs: dict[tuple[str, tuple[str, ...]], Program] = {}
        self._pool = BufferPool()

    def positions(self, genomes: Mapping[str, Genome], bars: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Target exposure series of each genome on ``bars``.

        genomes: key -> Genome; bars: column -> (n,) array (``open_time`` int64 ms, ``open``, ``high``,
        ``low``, ``close``, ``volume``, ``taker_buy_volume`` float64; ``quote_volume``, ``count``,
        ``taker_buy_quote_volume`` for the features that read them), oldest first.
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
            if any(f not in FEATURES for f in g.features):
                raise GenomeError(f"genome {g.sha256[:12]} reads other instruments, regime or book terminals: its signals "
                                  "come from crucible.panel.PanelSignals, not the one-symbol engine")
        bsg = bars_since_gap(t)

        def col(c: str) -> np.ndarray:
            return np.ascontiguousarray(bars[c], dtype=np.float64)

        def opt(c: str) -> np.ndarray | None:
            return col(c) if c in bars else None

        ba = BarArrays(t, col("open"), col("high"), col("low"), col("close"), col("volume"),
                       col("taker_buy_volume"), bsg, opt("quote_volume"), opt("count"), opt("taker_buy_quote_volume"))
        fm = bar_features(ba, names)
        return {key: genome_positions(g, fm, bsg, self._pool, programs=self._programs) for key, g in genomes.items()}

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
        self._gen = 0  # bumped whenever _chunks changes
        # symbol -> (_gen, the genomes' items, [(key, genome, its chunk or None)]): the chunks of the last call's genomes
        self._groups: dict[str, tuple[int, tuple, list]] = {}
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
        items = tuple(genomes.items())
        grp = self._groups.get(symbol)
        if grp is None or grp[0] != self._gen or grp[1] != items:  # the chunks looked up again
            chunks = self._chunks
            grp = self._groups[symbol] = (self._gen, items, [(k, g, chunks.get((symbol, g.sha256))) for k, g in items])
        for k, g, c in grp[2]:
            if c is not None:  # the common case inline: the bar after the one read last from this chunk
                i = c[2] + 1
                times = c[0]
                if i < len(times) and times[i] == bar_time:
                    c[2] = i
                    out[k] = c[1][i]
                    continue
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
        self._gen += 1
        self.chunks_computed += 1
        return out


class LiveRegimes:
    """The regime terminals live: the forward filter advanced bar by bar with the run's frozen parameters
    (``forge.features.regimes.RegimeFilter``; never refitted), one filter per symbol.

    model: a RegimeModel (or the path of a run's ``regime_model.json``).  ``update(symbol, bars)`` at the
    close of each bar (``bars``: the rolling window of closed bars, the new bar last, at least
    ``model.lookback + 1`` rows) returns {terminal: value}; fed every bar from the first bar of the research
    frame, the values equal ``forge.strategy.strategy_features`` on that frame bit for bit (same kernel
    step; tests/test_regimes_live.py); started later, the filter forgets its start at the chain's mixing
    rate.  A bar already seen is not applied twice (a replayed or duplicated close).
    """

    def __init__(self, model) -> None:
        from forge.features.regimes import RegimeModel, RegimeFilter, load_regime_model

        self.model = model if isinstance(model, RegimeModel) else load_regime_model(model)
        self._new = RegimeFilter
        self._filters: dict[str, RegimeFilter] = {}
        self._values: dict[str, dict[int, np.ndarray]] = {}  # symbol -> open time -> values (advance / series)
        self.keep_bars = 20_000  # recorded bars kept per symbol (>= history_bars + prefetch_bars of the runtime)

    @property
    def names(self) -> tuple[str, ...]:
        return self.model.feature_names

    def update(self, symbol: str, bars: Mapping[str, np.ndarray]) -> dict[str, float]:
        f = self._filters.get(symbol)
        if f is None:
            f = self._filters[symbol] = self._new(self.model)
        if np.asarray(bars["open_time"]).shape[0] < self.model.lookback + 1 and f.bars_seen:
            raise GenomeError(f"{symbol}: the regime filter needs >= {self.model.lookback + 1} closed bars per "
                              "update")
        return f.update(bars)

    def advance(self, symbol: str, bars: Mapping[str, np.ndarray]) -> int:
        """Advance ``symbol``'s filter over every bar of ``bars`` (oldest first) newer than the last one seen,
        one :meth:`update` per bar on the trailing ``lookback + 1`` rows, and record each bar's values for
        :meth:`series`.  The first call starts the filter at ``bars``' first row.  returns bars applied."""
        t = np.asarray(bars["open_time"], dtype=np.int64)
        f = self._filters.get(symbol)
        last = f.last_open_ms if f is not None else None
        start = 0 if last is None else int(np.searchsorted(t, last, side="right"))
        names = self.names
        rec = self._values.setdefault(symbol, {})
        w = self.model.lookback + 1
        cols = {c: np.asarray(bars[c]) for c in ("open_time", "close", "volume")}
        if f is None:
            f = self._filters[symbol] = self._new(self.model)
        for i in range(start, t.shape[0]):  # the first rows of a start have fewer than w rows, as research does
            v = f.update({c: x[max(0, i - w + 1):i + 1] for c, x in cols.items()})
            rec[int(t[i])] = np.array([v[n] for n in names])
        keep = self.keep_bars
        if len(rec) > 2 * keep:
            for k in sorted(rec)[:-keep]:
                del rec[k]
        return t.shape[0] - start

    def series(self, symbol: str, open_times: np.ndarray) -> np.ndarray:
        """(len(names), n) float64: the recorded values at ``open_times`` (rows in :attr:`names` order), NaN at
        a bar the filter has not seen (before its start)."""
        rec = self._values.get(symbol, {})
        k = len(self.names)
        nan = np.full(k, np.nan)
        return np.ascontiguousarray(np.stack([rec.get(int(x), nan) for x in open_times], axis=1)) \
            if len(open_times) else np.empty((k, 0))
