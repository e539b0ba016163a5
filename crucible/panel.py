"""Live panel slots and live regime terminals (issue 30 parts 1 and 4, the Crucible side).

A slot is a *panel slot* when its genome reads features of other instruments (``<feature>__<TAG>``,
``forge.data.panel``: ``ret_5__BTCUSDT_spot``) or the regime terminals of a frozen model (``regime_p<i>`` /
``regime_next_p<i>``, ``forge.features.regimes``).  Its signals are computed here, never by the per-symbol
:class:`crucible.signals.SignalEngine`, on the same path as research:

- **panel frame**: the traded instrument's closed bars (the rolling window, or on the replay venue the window
  plus the prefetched chunk, as :class:`crucible.signals.ChunkedSignals`) and every other instrument's bars of
  the same span are aligned by :func:`forge.data.panel.build_panel` -- the research alignment itself (the
  traded instrument's minutes are the clock; another instrument's columns are null where it has no bar, so
  its features are NaN there and the VM's root trades flat);
- **features and positions**: :func:`forge.strategy.strategy_features` and :func:`forge.strategy.genome_positions`
  (the one genome -> positions path), so a replay of the research bars gives the research targets bar for bar
  (tests/test_crucible_panel.py);
- **regime terminals**: :class:`crucible.signals.LiveRegimes`, the forward filter advanced bar by bar with
  the model's frozen parameters from the first bar the runtime sees (the venue's history window at start);
  the window's rows read the values recorded for their bars.  Started at the research frame's first bar the
  values equal research bit for bit; started later the filter forgets its start at the chain's mixing rate.

**Waiting for every instrument** (``[crucible] panel_wait_seconds``): the runtime acts on minute t for a panel
slot only when every instrument it reads has closed t -- a bar at t, or t known to be an exchange gap of that
instrument (venues that can tell: ``bar_closed(symbol, t)``; the replay venue delivers every instrument's bar
of a minute together, so it never waits).  A venue that cannot yet tell is polled until the timeout measured
from the bar's start; then the slot skips the bar (its target, and any challenger's, stays as it was) and a
``panel_skip`` event names the slot, the bar and the instruments that were late.

Feeds: a non-traded instrument is fed by the venue under its bare symbol (``BTCUSDT_spot`` -> ``BTCUSDT``);
one venue symbol is one instrument, so a bench that trades BTCUSDT as spot cannot read ``BTCUSDT_perp``
(refused in one line at start).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.core.errors import ConfigError, GenomeError
from forge.data.gaps import bars_since_gap
from forge.data.panel import Instrument, build_panel, genome_tags, split_panel_name
from forge.data.schema import BAR_MS, BAR_SCHEMA
from forge.features import FeatureMatrix
from forge.features.l2terminals import is_l2_feature
from forge.features.regimes import RegimeModel, is_regime_feature, load_regime_model
from forge.gp import BufferPool, Genome, Program
from forge.strategy import genome_positions, strategy_features

__all__ = ["PanelSignals", "genome_reads", "genome_books", "is_panel_genome", "feed_symbol", "frame_of"]


def genome_reads(genome: Genome) -> tuple[tuple[str, ...], bool]:
    """(tags of the other instruments ``genome`` reads, sorted; whether it reads regime terminals)."""
    return genome_tags(genome.features), any(is_regime_feature(f) for f in genome.features)


def genome_books(genome: Genome, symbol: str) -> tuple[tuple[str, str | None], ...]:
    """The order books ``genome`` reads as recorded-book terminals (``l2_*``) when it trades ``symbol``: sorted
    (venue symbol, instrument tag or None for the traded instrument's own book)."""
    out = set()
    for f in genome.features:
        if is_l2_feature(f):
            tag = split_panel_name(f)[1]
            out.add((feed_symbol(tag), tag) if tag is not None else (symbol.upper(), None))
    return tuple(sorted(out, key=lambda x: (x[0], x[1] or "")))


def is_panel_genome(genome: Genome) -> bool:
    """True when the genome needs this module (other instruments' features, regime terminals or order books)."""
    tags, reg = genome_reads(genome)
    return bool(tags) or reg or any(is_l2_feature(f) for f in genome.features)


def feed_symbol(tag: str) -> str:
    """The venue symbol that feeds instrument ``tag`` (its bare symbol)."""
    return Instrument.from_tag(tag).symbol


def frame_of(cols: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """A bar frame (``forge.data.schema.BAR_SCHEMA``) of venue bar columns (``crucible.venues.base.BAR_FIELDS``;
    ``close_time`` = open_time + 59,999 ms, missing columns 0)."""
    t = np.asarray(cols["open_time"], dtype=np.int64)
    data: dict[str, Any] = {}
    for c, dt in BAR_SCHEMA.items():
        if c == "close_time":
            v = t + (BAR_MS - 1)
        elif c in cols:
            v = np.asarray(cols[c])
        else:
            v = np.zeros(t.shape[0])
        data[c] = pl.Series(c, v).cast(dt)
    return pl.DataFrame(data)


class PanelSignals:
    """Targets of panel genomes (module docstring).

    history_bars: closed bars of the traded instrument in the window; prefetch_bars: bars after it on the
    replay venue (0: the per-bar rolling window); wait_s: ``panel_wait_seconds``; live: an exchange venue
    (waits sleep on ``stop_wait``, a ``threading.Event.wait``-like callable returning True to stop).
    """

    def __init__(self, history_bars: int, prefetch_bars: int = 0, wait_s: float = 5.0, *, live: bool = False,
                 stop_wait: Callable[[float], bool] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        from crucible.signals import LiveRegimes

        self.history_bars = int(history_bars)
        self.prefetch_bars = int(prefetch_bars)
        self.wait_s = float(wait_s)
        self.live = live
        self._stop_wait = stop_wait or (lambda s: time.sleep(s) or False)
        self._clock = clock
        self._LiveRegimes = LiveRegimes
        self.models: dict[str, RegimeModel] = {}  # genome sha256 -> its frozen regime model
        self._regimes: dict[int, Any] = {}  # id(model) -> LiveRegimes
        self._programs: dict[tuple[str, tuple[str, ...]], Program] = {}
        self._pool = BufferPool()
        self._chunks: dict[tuple[str, str], tuple[list[int], list[float]]] = {}  # (symbol, sha) -> chunk
        self.skips = 0
        self.chunks_computed = 0
        self._handles: dict[str, bool] = {}
        self._reads: dict[str, tuple[tuple[str, ...], bool]] = {}  # genome sha256 -> genome_reads
        self._books: dict[tuple[str, str], tuple[tuple[str, str | None], ...]] = {}  # (sha256, symbol) -> genome_books
        self.books: Any = None  # crucible.books.RecordedBooks / LiveBooks, or None (no books: L2 genomes refused)
        self._wait_until: tuple[int, float] | None = None  # (bar open time, clock time the wait for it ends)

    # ------------------------------------------------------------------ registration

    def register(self, genome: Genome, model: RegimeModel | str | Path | None = None, where: str = "",
                 symbol: str = "") -> None:
        """Accept ``genome`` for live panel signals.  model: its frozen regime model (required when it reads
        regime terminals); symbol: the venue symbol it trades (its own book, for L2 terminals).  raises
        GenomeError in one line: a regime genome without a model, a terminal the model does not have, or a genome
        reading an order book the bench has no source of (:mod:`crucible.books`)."""
        _tags, reg = genome_reads(genome)
        books = genome_books(genome, symbol or "?")
        if books:
            what = where or "genome " + genome.sha256[:12]
            terms = ", ".join(sorted(f for f in genome.features if is_l2_feature(f)))
            if self.books is None:
                raise GenomeError(f"{what}: reads recorded L2 book terminals ({terms}) but the bench has no order "
                                  "books: set [l2] dir (the replay venue: a `crucible record` directory) or [l2] live "
                                  "= true (exchange venues: a live book feed)")
            lacking = sorted(b for b, _t in books if not self.books.has(b))
            if lacking:
                src = "the live book feed" if self.books.live else f"the recording {self.books.root}"
                raise GenomeError(f"{what}: reads the order book of {', '.join(lacking)} ({terms}), which {src} "
                                  "does not hold")
        if not reg:
            return
        if model is None:
            raise GenomeError(f"{where or 'genome ' + genome.sha256[:12]}: reads regime terminals "
                              f"{sorted(f for f in genome.features if is_regime_feature(f))} but no regime model "
                              "ships with it (publish it with the run's regime_model.json)")
        m = model if isinstance(model, RegimeModel) else load_regime_model(model)
        bad = sorted(f for f in genome.features if is_regime_feature(f) and f not in m.feature_names)
        if bad:
            raise GenomeError(f"{where or 'genome ' + genome.sha256[:12]}: reads {bad}, which the {m.n_states}-state "
                              "regime model shipped with it does not have")
        for other in self.models.values():  # one filter per identical model
            if other.to_dict() == m.to_dict():
                m = other
                break
        self.models[genome.sha256] = m

    def handles(self, genome: Genome) -> bool:
        """Whether ``genome``'s signals come from here (memoised by genome sha256)."""
        v = self._handles.get(genome.sha256)
        if v is None:
            v = self._handles[genome.sha256] = is_panel_genome(genome)
        return v

    def split(self, genomes: dict[str, Genome]) -> dict[str, Genome]:
        """The entries of ``genomes`` whose signals come from here (:meth:`handles` of each, in their order)."""
        memo = self._handles
        out: dict[str, Genome] = {}
        for k, g in genomes.items():
            v = memo.get(g.sha256)
            if v is None:
                v = self.handles(g)
            if v:
                out[k] = g
        return out

    def regimes_of(self, model: RegimeModel):
        """The LiveRegimes filter bank of ``model`` (one per model, one filter per symbol inside)."""
        r = self._regimes.get(id(model))
        if r is None:
            r = self._regimes[id(model)] = self._LiveRegimes(model)
            r.keep_bars = max(r.keep_bars, 2 * (self.history_bars + self.prefetch_bars))
        return r

    # ------------------------------------------------------------------ readiness

    def await_instruments(self, venue: Any, tags: set[str], bar_time: int) -> set[str]:
        """Wait until every instrument in ``tags`` has closed ``bar_time`` (and every order book ``"l2:<symbol>"``
        in it its lens bar, :mod:`crucible.books`), at most until ``wait_s`` after the first wait of this bar (one
        budget per bar, shared by every traded symbol); returns the tags still late."""
        bars_closed = getattr(venue, "bar_closed", None)
        books = self.books

        def closed(t: str) -> bool:
            if t.startswith("l2:"):
                return books is None or books.closed(t[3:], bar_time)
            return bars_closed is None or bars_closed(feed_symbol(t), bar_time)

        if not tags:
            return set()
        late = {t for t in tags if not closed(t)}
        if self._wait_until is None or self._wait_until[0] != bar_time:  # one wait budget per bar, for every symbol
            self._wait_until = (bar_time, self._clock() + self.wait_s)
        deadline = self._wait_until[1]
        while late and self._clock() < deadline:
            if self._stop_wait(min(0.05, max(0.0, deadline - self._clock()))):
                break
            late = {t for t in late if not closed(t)}
        return late

    # ------------------------------------------------------------------ targets

    def _reads_of(self, genome: Genome) -> tuple[tuple[str, ...], bool]:
        """:func:`genome_reads`, computed once per genome (keyed by its sha256: a hot-swapped genome is a new key)."""
        r = self._reads.get(genome.sha256)
        if r is None:
            r = self._reads[genome.sha256] = genome_reads(genome)
        return r

    def _books_of(self, genome: Genome, symbol: str) -> tuple[tuple[str, str | None], ...]:
        """:func:`genome_books`, computed once per genome and traded symbol."""
        key = (genome.sha256, symbol)
        b = self._books.get(key)
        if b is None:
            b = self._books[key] = genome_books(genome, symbol)
        return b

    def _panel(self, traded: Mapping[str, np.ndarray], tags: tuple[str, ...],
               others: Callable[[str, int, int], Mapping[str, np.ndarray]]) -> pl.DataFrame:
        """The panel frame of the traded window and the other instruments' bars of the same span."""
        t = np.asarray(traded["open_time"])
        lo, hi = int(t[0]), int(t[-1])
        return build_panel(frame_of(traded), {Instrument.from_tag(tag): frame_of(others(feed_symbol(tag), lo, hi))
                                              for tag in tags})

    def positions(self, symbol: str, genomes: Mapping[str, Genome], traded: Mapping[str, np.ndarray],
                  others: Callable[[str, int, int], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Target exposure series of each genome on the traded window (oldest first): the research path on the
        panel frame (module docstring).  others(symbol, first_ms, last_ms) -> that instrument's bars with open
        times in [first_ms, last_ms].  returns key -> (n,) float64 in [-1, 1]."""
        n = np.asarray(traded["open_time"]).shape[0]
        if n == 0:
            return {k: np.zeros(0) for k in genomes}
        tags = tuple(sorted({t for g in genomes.values() for t in self._reads_of(g)[0]}))
        panel = self._panel(traded, tags, others)
        for book, tag in sorted({b for g in genomes.values() for b in self._books_of(g, symbol)},
                                key=lambda x: (x[0], x[1] or "")):
            if self.books is None:
                raise GenomeError(f"a genome trading {symbol} reads the order book of {book}, but the bench has no books")
            panel = self.books.attach(panel, book, Instrument.from_tag(tag) if tag is not None else None)
        times = panel["open_time"].to_numpy()
        bsg = bars_since_gap(times)
        plain = tuple(sorted({f for g in genomes.values() for f in g.features if not is_regime_feature(f)}))
        base = strategy_features(panel, plain) if plain else None
        out: dict[str, np.ndarray] = {}
        for key, g in genomes.items():
            names, rows, lbs = list(plain), [base.values] if base is not None else [], list(base.lookbacks if base else ())
            reg = sorted(f for f in g.features if is_regime_feature(f))
            if reg:
                model = self.models.get(g.sha256)
                if model is None:
                    raise GenomeError(f"genome {g.sha256[:12]} reads regime terminals but no regime model is registered")
                live = self.regimes_of(model)
                live.advance(symbol, traded)
                vals = live.series(symbol, times)
                idx = [model.feature_names.index(f) for f in reg]
                names += reg
                rows.append(vals[idx])
                lbs += [model.lookback] * len(reg)
            fm = FeatureMatrix(names=tuple(names), values=np.ascontiguousarray(np.vstack(rows)) if rows
                               else np.empty((0, n)), lookbacks=tuple(int(x) for x in lbs))
            out[key] = genome_positions(g, fm, bsg, self._pool, programs=self._programs)
        return out

    def targets(self, venue: Any, symbol: str, genomes: Mapping[str, Genome], bar_time: int, *,
                at: int | None = None, report: Callable[..., None] | None = None) -> dict[str, float]:
        """Targets at ``bar_time`` of the panel genomes trading ``symbol`` whose instruments have all closed it
        (waiting as the module docstring says); a genome with a late instrument is left out (its slot skips the
        bar) and ``report("panel_skip", key=..., bar_time=..., late=[tags], waited_s=...)`` is called."""
        needs = {k: set(self._reads_of(g)[0]) | {f"l2:{b}" for b, _t in self._books_of(g, symbol)}
                 for k, g in genomes.items()}
        tags = set().union(*needs.values()) if needs else set()
        t0 = self._clock()
        late = self.await_instruments(venue, tags, bar_time) if at is None else set()
        ready = {k: g for k, g in genomes.items() if not (needs[k] & late)}
        for k, g in genomes.items():
            if k not in ready:
                self.skips += 1
                if report is not None:
                    err = getattr(self.books, "error", None) if any(x.startswith("l2:") for x in needs[k] & late) else None
                    report("panel_skip", key=k, bar_time=bar_time, late=sorted(needs[k] & late),
                           waited_s=round(self._clock() - t0, 3), **({"book_feed_error": err} if err else {}))
        return self.latest(venue, symbol, ready, bar_time, at=at) if ready else {}

    def latest(self, venue: Any, symbol: str, genomes: Mapping[str, Genome], bar_time: int, *,
               at: int | None = None) -> dict[str, float]:
        """Target exposure at the close of ``bar_time`` for each genome trading ``symbol`` (chunked on a venue with
        ``prefetch`` and ``prefetch_bars`` > 0, else on the rolling window).  at: re-processing a bar after a
        restart (the venue's ``history_at`` / ``prefetch_at`` views).  returns key -> float in [-1, 1]."""
        out: dict[str, float] = {}
        missing: dict[str, Genome] = {}
        for k, g in genomes.items():
            c = self._chunks.get((symbol, g.sha256))
            if c is not None:
                i = _index(c[0], bar_time)
                if i is not None:
                    out[k] = c[1][i]
                    continue
            missing[k] = g
        if not missing:
            return out
        if at is not None:
            hist = lambda s, n: venue.history_at(s, n, at)  # noqa: E731
            pre = lambda s, n: venue.prefetch_at(s, n, at)  # noqa: E731
        else:
            hist, pre = venue.history, getattr(venue, "prefetch", None)
        h = hist(symbol, self.history_bars)
        chunk = (self.prefetch_bars > 0 and pre is not None and h["open_time"].shape[0] > 0
                 and int(h["open_time"][-1]) == bar_time)
        window = h
        if chunk:
            a = pre(symbol, self.prefetch_bars)
            window = {c: np.concatenate([h[c], a[c]]) for c in h if c in a}
        span = self.history_bars + (self.prefetch_bars if chunk else 0)

        def others(sym: str, lo: int, hi: int) -> dict[str, np.ndarray]:
            # the other instrument's bars with open times in [lo, hi]: its history up to the bar (doubled until it
            # reaches back to lo: it may have more bars than the traded instrument over the span) and its prefetch
            k = span + 1
            hh = hist(sym, k)
            while hh["open_time"].shape[0] == k and int(hh["open_time"][0]) > lo:
                k *= 2
                hh = hist(sym, k)
            cols = {c: hh[c] for c in hh}
            if chunk:
                aa = pre(sym, span + 1)
                while aa["open_time"].shape[0] == span + 1 and int(aa["open_time"][-1]) < hi:
                    aa = pre(sym, 2 * aa["open_time"].shape[0])
                cols = {c: np.concatenate([hh[c], aa[c]]) for c in hh if c in aa}
            t = np.asarray(cols["open_time"])
            keep = (t >= lo) & (t <= hi)
            return {c: v[keep] for c, v in cols.items()}

        pos = self.positions(symbol, missing, window, others)
        first = h["open_time"].shape[0] - 1
        if chunk:
            times = window["open_time"][first:].tolist()
            live = {g.sha256 for g in genomes.values()}
            for key in [k for k in self._chunks if k[0] == symbol and k[1] not in live]:
                del self._chunks[key]
            for k, g in missing.items():
                self._chunks[(symbol, g.sha256)] = (times, pos[k][first:].tolist())
            self.chunks_computed += 1
        for k in missing:
            v = pos[k]
            out[k] = float(v[first]) if v.shape[0] else 0.0
        return out


def _index(times: list[int], t: int) -> int | None:
    import bisect

    i = bisect.bisect_left(times, t)
    return i if i < len(times) and times[i] == t else None


# ---------------------------------------------------------------------- the runtime's side


def slot_regime_model(regime_model: str, genome_ref: str) -> Path | None:
    """The regime model of a configured slot: its ``regime_model`` path, else the model the published meta beside
    its genome file names (``<stem>.meta.json`` -> ``regime_model``, sha256-checked), else None.
    raises GenomeError (one line) for a named model that is missing or edited."""
    if regime_model:
        p = Path(regime_model)
        if not p.is_file():
            raise GenomeError(f"regime_model {regime_model}: no such file")
        return p
    if genome_ref.startswith("builtin:") or not genome_ref.endswith(".json"):
        return None
    meta_path = Path(genome_ref[: -len(".json")] + ".meta.json")
    if not meta_path.is_file():
        return None
    from forge.core.champion import champion_regime_model, loads_limited, read_regular_file

    meta = loads_limited(read_regular_file(meta_path), str(meta_path))
    return champion_regime_model(meta_path, meta) if isinstance(meta, dict) else None


def panel_feeds(genomes: Mapping[str, tuple[str, Genome]]) -> dict[str, str]:
    """{venue symbol: market} of the other instruments the slots' genomes read (``genomes``: slot id -> (traded
    symbol, genome)).  raises ConfigError when one venue symbol would be two instruments (two markets), or a slot
    reads its own symbol on another market."""
    out: dict[str, str] = {}
    for sid, (_sym, g) in genomes.items():
        for tag in genome_reads(g)[0]:
            inst = Instrument.from_tag(tag)
            if out.setdefault(inst.symbol, inst.market) != inst.market:
                raise ConfigError(f"slot {sid}: reads {tag} but another slot reads {inst.symbol}_{out[inst.symbol]}; one "
                                  "venue symbol is one instrument")
    return out


def check_slot_feeds(slot_id: str, symbol: str, market: str, genome: Genome, venue_symbols: tuple[str, ...],
                     markets: Mapping[str, str]) -> None:
    """One-line ConfigError when the venue does not feed an instrument the slot's genome reads, or feeds that
    symbol as another market.  markets: venue symbol -> "spot" | "perp" of the bench's traded symbols."""
    for tag in genome_reads(genome)[0]:
        inst = Instrument.from_tag(tag)
        if inst.symbol == symbol or (inst.symbol in markets and markets[inst.symbol] != inst.market):
            have = market if inst.symbol == symbol else markets[inst.symbol]
            raise ConfigError(f"slot {slot_id}: reads {tag} but the bench trades {inst.symbol} as {have}; one venue "
                              "symbol is one instrument")
        if inst.symbol not in venue_symbols:
            raise ConfigError(f"slot {slot_id}: reads {tag}, which the venue does not feed (add "
                              f"'{inst.symbol}=path' to [replay] data; exchange venues feed the perpetuals the slots read)")


class RegimeAllocator:
    """The regime slots' tilt of the CWO weights (:func:`crucible.allocator.regime_tilt`): the predicted
    probabilities come from ``model`` filtered bar by bar on ``symbol`` (the same LiveRegimes bank the
    genomes' regime terminals read).  declared: slot id -> declared state."""

    def __init__(self, panel: PanelSignals, model: RegimeModel, symbol: str, declared: Mapping[str, int],
                 kappa: float) -> None:
        self.panel, self.model, self.symbol = panel, model, symbol
        self.declared = dict(declared)
        self.kappa = float(kappa)

    def predicted(self, venue: Any, bar_time: int) -> np.ndarray | None:
        """(k,) one-step-ahead predicted probabilities P(s_{t+1} = i | bars <= t) at the bar ``bar_time``, or None
        before the filter has seen that bar (no bar of ``symbol``)."""
        live = self.panel.regimes_of(self.model)
        h = venue.history(self.symbol, self.panel.history_bars)
        if h["open_time"].shape[0] == 0:
            return None
        live.advance(self.symbol, h)
        v = live.series(self.symbol, np.array([int(h["open_time"][-1])]))[:, 0]
        k = self.model.n_states
        p = v[k:]
        return None if not np.all(np.isfinite(p)) else p

    def apply(self, venue: Any, bar_time: int, ids: list[str], old: np.ndarray, new: np.ndarray,
              cwo: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """The tilted weights of the live slots ``ids`` (``old``: their weights before this reweight, ``new``: the
        EG step's) and what the reweight event journals: {"regime": {"predicted": [...], "declared": {...},
        "q": {...}, "kappa", "model_states"}} (empty when the filter has no value at this bar)."""
        from crucible.allocator import project_bounded_simplex, regime_tilt

        p = self.predicted(venue, bar_time)
        if p is None or not ids:
            return new, {}
        n = len(ids)
        lo, hi = min(cwo.min_weight, 1.0 / n), cwo.max_weight
        o = np.asarray(old, dtype=np.float64)
        base = project_bounded_simplex(o / o.sum() if o.sum() > 0 else np.full(n, 1.0 / n), lo, hi)
        declared = np.array([self.declared.get(i, -1) for i in ids], dtype=np.int64)
        w, q = regime_tilt(base, new, declared, p, self.kappa, lo, hi, cwo.max_turnover)
        return w, {"regime": {"predicted": [float(x) for x in p], "symbol": self.symbol, "kappa": self.kappa,
                              "declared": {i: int(d) for i, d in zip(ids, declared) if d >= 0},
                              "q": {i: float(x) for i, x, d in zip(ids, q, declared) if d >= 0}}}


def make_regime_allocator(cfg: Any, slots: Mapping[str, Any], panel: PanelSignals,
                          slot_models: Mapping[str, Path | None]) -> RegimeAllocator | None:
    """The bench's :class:`RegimeAllocator`, or None when no slot declares a regime (the CWO unchanged).

    cfg: CrucibleConfig; slots: slot id -> Slot; slot_models: slot id -> the model shipped with its champion.
    raises ConfigError in one line: no model, regime slots shipping different models without ``[cwo]
    regime_model``, a declared state outside the model's states, or a regime symbol no slot trades."""
    declared = {sc.id: sc.regime for sc in cfg.slots if sc.regime >= 0}
    if not declared:
        return None
    cwo = cfg.cwo
    if cwo.regime_model:
        path = Path(cwo.regime_model)
        if not path.is_file():
            raise ConfigError(f"{cfg.source} [cwo] regime_model {cwo.regime_model}: no such file")
    else:
        shipped = {sid: slot_models.get(sid) for sid in declared}
        if any(p is None for p in shipped.values()):
            raise ConfigError(f"{cfg.source}: slots {sorted(k for k, p in shipped.items() if p is None)} declare a "
                              "regime but no regime model is named ([cwo] regime_model) or shipped with their champion")
        bodies = {Path(p).read_bytes() for p in shipped.values()}
        if len(bodies) > 1:
            raise ConfigError(f"{cfg.source}: regime slots {sorted(declared)} ship different regime models; name one "
                              "in [cwo] regime_model")
        path = Path(next(iter(shipped.values())))
    try:
        model = load_regime_model(path)
    except Exception as exc:  # noqa: BLE001 - one line
        raise ConfigError(f"{cfg.source} [cwo] regime model: {exc}") from None
    bad = {k: v for k, v in declared.items() if v >= model.n_states}
    if bad:
        raise ConfigError(f"{cfg.source} [[slots]] {sorted(bad)}: regime {sorted(set(bad.values()))} outside the "
                          f"model's {model.n_states} states (0..{model.n_states - 1})")
    symbol = (cwo.regime_symbol or slots[next(iter(declared))].symbol).upper()
    if symbol not in {s.symbol for s in slots.values()}:
        raise ConfigError(f"{cfg.source} [cwo] regime_symbol {symbol}: no slot trades it")
    for other in panel.models.values():  # share the filter with genomes reading the same model
        if other.to_dict() == model.to_dict():
            model = other
            break
    return RegimeAllocator(panel, model, symbol, declared, cwo.regime_tilt)


def setup_runtime_panel(rt: Any) -> RegimeAllocator | None:
    """Called once by :class:`crucible.runtime.Runtime`: build the bench's order books (``[l2]``,
    :func:`crucible.books.make_books`), register every slot's panel genome (its regime model:
    :func:`slot_regime_model`), check that the venue feeds what each reads, build the regime allocator.
    raises ConfigError / GenomeError in one line."""
    from crucible.books import make_books

    cfg, venue = rt.cfg, rt.venue
    symbols = tuple(getattr(venue, "symbols", ()) or ())
    markets = {s.symbol: ("perp" if s.perpetual else "spot") for s in rt.slots.values()}
    books = {b for s in rt.slots.values() for b, _t in genome_books(s.genome, s.symbol)}
    if cfg.l2.live:  # the feed serves the policy's book inputs of every traded symbol too
        books |= {s.symbol for s in rt.slots.values()}
    rt.panel.books = make_books(cfg, venue, rt.journal.path, books)
    models: dict[str, Path | None] = {}
    for sc in cfg.slots:
        s = rt.slots[sc.id]
        models[sc.id] = slot_regime_model(sc.regime_model, sc.genome)
        if not is_panel_genome(s.genome):
            continue
        rt.panel.register(s.genome, models[sc.id], where=f"{cfg.source} [[slots]] {sc.id}", symbol=s.symbol)
        if symbols:
            check_slot_feeds(sc.id, s.symbol, markets[s.symbol], s.genome, symbols, markets)
    return make_regime_allocator(cfg, rt.slots, rt.panel, models)
