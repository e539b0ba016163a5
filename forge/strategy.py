"""From a genome to positions on bars: the one path shared by evolution,
the gauntlet and the live runtime (``crucible.signals`` calls
:func:`bar_features` and :func:`genome_positions` on its rolling window).

The VM output is masked so that no position is taken before the program's
declared lookback has been filled in the current contiguous segment (the
first bars of the data and the first bars after every gap are flat).

Recursive features (Wilder RSI/ATR, also on 1h bars) have infinite memory: a
value computed on a window that starts later than the data differs from the
full-history value by the seed's residual influence, ((p-1)/p)^k after k
recursion steps.  :func:`required_history` is the number of closed bars a
rolling window must hold so that this residual is below :data:`BURN_IN_TOL`
(relative) for every feature a genome reads, wherever in its lookback the
program reads it; the live runtime refuses a genome that needs more than its
``history_bars`` (see ``crucible.signals.check_genome``).
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from pathlib import Path

import numpy as np
import polars as pl

from forge.core.errors import ConfigError
from forge.data.panel import Instrument, panel_name, split_panel_name
from forge.data.schema import BAR_COLUMNS
from forge.features import FEATURES, BarArrays, FeatureMatrix, compute_features
from forge.features.l2terminals import L2_FEATURES, is_l2_feature, l2_features
from forge.features.library import FeatureLibrary, library_features, load_feature_library
from forge.features.regimes import RegimeModel, is_regime_feature, load_regime_model, regime_features
from forge.gp import BufferPool, Genome, Program, compile_program, parse_tokens, run_program
from forge.gp.cache import SubtreeCache
from forge.gp.genome import tree_lookback

BURN_IN_TOL = 1e-8
"""Relative residual of a recursion's seed accepted as converged (``required_history``)."""


def wilder_burn_in(period: int, tol: float = BURN_IN_TOL) -> int:
    """Recursion steps after the seed of a Wilder average (alpha = 1/period) until the seed's weight
    ((period-1)/period)^k is <= ``tol``: ceil(log(tol) / log(1 - 1/period)).  Wilder 1978.

    period: >= 2; tol: in (0, 1).  returns: int >= 1.  raises ValueError otherwise.
    """
    if period < 2 or not 0.0 < tol < 1.0:
        raise ValueError(f"wilder_burn_in needs period >= 2 and 0 < tol < 1, got period={period}, tol={tol}")
    return int(math.ceil(math.log(tol) / math.log1p(-1.0 / period)))


FEATURE_BURN_IN: dict[str, int] = {
    "rsi_14": wilder_burn_in(14),
    "atr_14": wilder_burn_in(14),
    "mtf_rsi_1h": 60 * wilder_burn_in(14),  # one recursion step per completed 1h bar
}
"""Registry features with infinite memory -> 1-minute bars after their ``lookback`` until the seed's
residual is below BURN_IN_TOL.  Every other registry feature has finite memory (its ``lookback``);
``tests/test_crucible_parity.py`` checks all of them, live window against full history."""


def feature_burn_in(name: str) -> int:
    """1-minute bars of burn-in beyond ``FEATURES[name].lookback`` (0 for finite-memory features)."""
    return FEATURE_BURN_IN.get(name, 0)


def required_history(genome: Genome) -> int:
    """Closed bars (the current one included) a rolling window must hold for the genome's value at its last
    bar to equal the full-history value: recursive features within BURN_IN_TOL, every other one exactly.

    The program's lookback is computed with each feature's warm-up extended by its burn-in
    (``FEATURES[f].lookback + feature_burn_in(f)``) on the path where the program reads it, plus 1.
    Recorded-book terminals (:data:`forge.features.l2terminals.L2_FEATURES`) count their lookback in bars (a
    window of valid book bars is at least that many bars).  Features outside the registry (synthesized
    libraries) count their registry-free lookback as 0.
    returns: int >= 1.  raises GenomeError for a malformed genome.
    """
    lbs = {}
    for f in genome.features:
        base, _tag = split_panel_name(f)
        if base in FEATURES:
            lbs[f] = FEATURES[base].lookback + feature_burn_in(base)
        elif base in L2_FEATURES:
            lbs[f] = L2_FEATURES[base].lookback
    return tree_lookback(parse_tokens(genome.tokens, genome.constants, genome.root), lbs) + 1


def bar_features(bars: BarArrays, names: tuple[str, ...] | list[str]) -> FeatureMatrix:
    """Registry features ``names`` on bar columns (``forge.features.BarArrays``, oldest first, ``bsg`` from
    ``forge.data.gaps.bars_since_gap``); the same values as ``compute_features`` on the equal frame.

    returns: FeatureMatrix with values (len(names), n) float64.  raises ConfigError for an unknown name.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"features {unknown} are not in the registry")
    n = bars.close.shape[0]
    values = np.empty((len(names), n))
    for i, name in enumerate(names):
        values[i] = FEATURES[name].compute(bars)
    return FeatureMatrix(names=names, values=values, lookbacks=tuple(FEATURES[x].lookback for x in names))


def instrument_frame(panel: pl.DataFrame, tag: str) -> tuple[pl.DataFrame, np.ndarray]:
    """The bars of instrument ``tag`` inside a panel frame (``forge.data.panel``): (its own bar frame on the
    rows where it has a bar, (m,) int64 row indices of those rows).  raises ConfigError when the frame does
    not hold that instrument."""
    inst = Instrument.from_tag(tag)
    cols = {panel_name(c, inst): c for c in BAR_COLUMNS if c != "open_time"}
    missing = [c for c in cols if c not in panel.columns]
    if missing:
        raise ConfigError(f"the bars hold no instrument {tag} (columns {missing[:2]}...); a genome reading "
                          f"{tag}'s features needs its run's panel (--universe ... with {inst.symbol})")
    present = panel[panel_name("close", inst)].is_not_null().to_numpy()
    sub = panel.filter(pl.Series(present)).select(["open_time", *cols]).rename(cols)
    return sub, np.flatnonzero(present)


def _panel_features(bars: pl.DataFrame, names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, int]]:
    """Features of other instruments (``<feature>__<TAG>``) on the panel's rows: NaN where TAG has no bar."""
    by_tag: dict[str, list[str]] = {}
    for n in names:
        base, tag = split_panel_name(n)
        if tag is not None:
            by_tag.setdefault(tag, []).append(n)
    out: dict[str, tuple[np.ndarray, int]] = {}
    for tag, full in by_tag.items():
        sub, idx = instrument_frame(bars, tag)
        bases = tuple(split_panel_name(n)[0] for n in full)
        unknown = [b for b in bases if b not in FEATURES]
        if unknown:
            raise ConfigError(f"features {[f'{b}__{tag}' for b in unknown]}: {unknown} are not in the registry")
        fm = compute_features(sub, bases) if sub.height else None
        for i, (n, b) in enumerate(zip(full, bases)):
            row = np.full(bars.height, np.nan)
            if fm is not None:
                row[idx] = fm.values[i]
            out[n] = (row, FEATURES[b].lookback)
    return out


def strategy_features(
    bars: pl.DataFrame,
    names: tuple[str, ...] | list[str],
    library: FeatureLibrary | str | Path | None = None,
    regimes: RegimeModel | str | Path | None = None,
) -> FeatureMatrix:
    """Terminal features for ``names`` on ``bars``: registry features plus
    synthesized ones from a feature library (``forge synthesize``) plus the
    filtered / predicted state probabilities of a frozen regime model
    (``regime_p<i>``, ``regime_next_p<i>``; ``forge.features.regimes``) plus the L2 terminals
    (``l2_*``, :mod:`forge.features.l2terminals`) of a frame carrying recorded-book columns.

    bars: bar frame (``forge.data.schema``), oldest first, or a panel frame (``forge.data.panel``: then
    ``<feature>__<TAG>`` names are features of instrument TAG, NaN where it has no bar); names: feature
    names in the wanted row order; library: FeatureLibrary or path of its JSON;
    regimes: RegimeModel or path of its JSON (only filtered, never refitted).
    returns: FeatureMatrix with values (len(names), n) float64.
    raises ConfigError for an unknown name, DataError for a bad library or model file.
    """
    names = tuple(names)
    lib_vals: dict[str, tuple[np.ndarray, int]] = {}
    wanted_regimes = tuple(n for n in names if is_regime_feature(n))
    if wanted_regimes:
        if regimes is None:
            raise ConfigError(f"features {list(wanted_regimes)} are regime terminals; pass the run's regime model "
                              "(regime_model.json)")
        model = regimes if isinstance(regimes, RegimeModel) else load_regime_model(regimes)
        rf = regime_features(model, bars, wanted_regimes)
        lib_vals.update({n: (rf.values[i], rf.lookbacks[i]) for i, n in enumerate(rf.names)})
    if library is not None:
        lib = library if isinstance(library, FeatureLibrary) else load_feature_library(library)
        wanted = [f for f in lib.features if f.name in names]
        if wanted:
            sub = FeatureLibrary(lib.raw_inputs, tuple(wanted), lib.meta)
            lnames, vals, lbs = library_features(sub, bars)
            lib_vals.update({n: (vals[i], lbs[i]) for i, n in enumerate(lnames)})
    wanted_l2 = tuple(n for n in names if is_l2_feature(n))
    if wanted_l2:
        lib_vals.update(l2_features(bars, wanted_l2))
    lib_vals.update(_panel_features(bars, tuple(n for n in names if n not in lib_vals)))
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
    programs: MutableMapping[tuple[str, tuple[str, ...]], Program] | None = None,
) -> np.ndarray:
    """Target positions of ``genome`` on the bars behind ``features`` -- the one genome -> positions path
    (evolution's fitness, the hall-of-fame report, the gauntlet, co-evolution encounters).

    features: FeatureMatrix whose names include every feature the genome
    reads (extra features are fine); bars_since_gap: (n,) int64; pool: VM buffers to reuse;
    cache: a ``forge.gp.cache.SubtreeCache`` built on exactly ``features.values`` (same result, memoised
    windowed subtrees); programs: memo of compiled programs keyed by (genome sha256, feature names), filled
    here (the live engine reuses programs across bars).
    returns: (n,) float64 target exposure in [-1, 1], decided at each bar's
    close (the backtester fills it at the next bar's open).
    raises GenomeError if the genome reads a feature that is not available.
    """
    lookbacks = dict(zip(features.names, features.lookbacks))
    if cache is not None:
        raw, lookback = cache.run(genome), SubtreeCache.lookback(genome, lookbacks)
    else:
        key = (genome.sha256, features.names)
        program = programs.get(key) if programs is not None else None
        if program is None:
            program = compile_program(genome, features.names, lookbacks)
            if programs is not None:
                programs[key] = program
        raw, lookback = run_program(program, features.values, pool), program.lookback
    return mask_warmup(raw, bars_since_gap, lookback)
