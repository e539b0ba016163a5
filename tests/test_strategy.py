"""Strategies on real features: no look-ahead end to end, warm-up masking across gaps."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from forge.data.gaps import bars_since_gap
from forge.data.loader import load_sample
from forge.features import DEFAULT_FEATURES, compute_features
from forge.gp import Operators, build_pset, compile_program, genome_from_individual, run_program
from forge.strategy import genome_positions, mask_warmup


@pytest.fixture(scope="module")
def bars():
    return load_sample()[0].head(6000)


def test_random_evolved_strategies_never_look_ahead(bars):
    """Features + VM + warm-up mask recomputed on data cut at t equal the full run before t."""
    pset = build_pset(DEFAULT_FEATURES)
    random.seed(3)
    trees = Operators(pset, max_depth=7, max_size=30).init_population(60, 2, 6)
    full_f = compute_features(bars, DEFAULT_FEATURES)
    bsg = bars_since_gap(bars["open_time"].to_numpy())
    full = [genome_positions(genome_from_individual(t, pset), full_f, bsg) for t in trees]
    for cut in (1500, 4321):
        part_bars = bars.head(cut)
        part_f = compute_features(part_bars, DEFAULT_FEATURES)
        part_bsg = bars_since_gap(part_bars["open_time"].to_numpy())
        for t, pos in zip(trees, full):
            part = genome_positions(genome_from_individual(t, pset), part_f, part_bsg)
            np.testing.assert_array_equal(part, pos[:cut], err_msg=str(t))


def test_positions_flat_during_warmup_after_gap(bars):
    gapped = pl.concat([bars.head(3000), bars.slice(3500, 2500)])
    t = gapped["open_time"].to_numpy()
    bsg = bars_since_gap(t)
    assert bsg[3000] == 0
    feats = compute_features(gapped, DEFAULT_FEATURES)
    pset = build_pset(DEFAULT_FEATURES)
    random.seed(4)
    for tree in Operators(pset, max_depth=6, max_size=25).init_population(40, 2, 5):
        g = genome_from_individual(tree, pset)
        prog = compile_program(g, feats.names, dict(zip(feats.names, feats.lookbacks)))
        pos = genome_positions(g, feats, bsg)
        assert np.all(pos[3000:3000 + prog.lookback] == 0.0)
        raw = run_program(prog, feats.values)
        np.testing.assert_array_equal(pos, mask_warmup(raw, bsg, prog.lookback))


def test_bar_features_and_program_memo_are_the_same_path(bars):
    """The live engine's inputs (bar_features on BarArrays, a compiled-program memo) give exactly what the
    backtester's (compute_features, a fresh compile) give."""
    from forge.features import FEATURES, BarArrays
    from forge.strategy import bar_features

    names = tuple(FEATURES)
    a, b = compute_features(bars, names), bar_features(BarArrays.from_bars(bars), names)
    assert a.names == b.names and a.lookbacks == b.lookbacks
    np.testing.assert_array_equal(a.values, b.values)
    pset = build_pset(DEFAULT_FEATURES)
    random.seed(5)
    bsg = bars_since_gap(bars["open_time"].to_numpy())
    memo: dict = {}
    trees = Operators(pset, max_depth=6, max_size=25).init_population(20, 2, 5)
    for t in trees:
        g = genome_from_individual(t, pset)
        ref = genome_positions(g, a, bsg)
        np.testing.assert_array_equal(genome_positions(g, b, bsg, programs=memo), ref)
        np.testing.assert_array_equal(genome_positions(g, b, bsg, programs=memo), ref)  # from the memo
    assert len(memo) == len({genome_from_individual(t, pset).sha256 for t in trees})
