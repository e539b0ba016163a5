"""Turnover-aware primitives (primitive set 2): semantics, VM == numpy reference, no look-ahead, an exact
declared lookback, and unchanged checksums for genomes of primitive set 1."""

from __future__ import annotations

import numpy as np
import pytest

from forge.core.errors import GenomeError
from forge.gp import BufferPool, Genome, build_pset, compile_program, individual_from_genome, run_program
from forge.gp.cache import SubtreeCache
from forge.gp.primitives import BY_NAME, np_hysteresis, np_latch, np_min_hold, np_smooth, pset_version_of

NAMES = ("f0", "f1")

# (tokens, constants, exact): every new primitive alone and inside longer trees; exact = bit-identical on
# truncation (integer logic on inputs that are themselves exact), else equal to rounding (running EMA sums).
TREES = [
    (["long_only", "hysteresis", "feature:f0", "const:0", "window:20"], [0.8], True),
    (["long_short", "latch", "gt_c", "feature:f0", "const:0", "lt_c", "feature:f0", "const:1", "window:60",
      "hysteresis", "neg", "feature:f0", "const:0", "window:10"], [0.5, -0.3], True),
    (["min_hold", "pos_sign", "feature:f1", "window:5"], [], True),
    (["min_hold", "long_short", "gt_c", "feature:f0", "const:0", "lt_c", "feature:f0", "const:1", "window:10"],
     [0.3, -0.3], True),
    (["smooth", "pos_sign", "feature:f0", "window:20"], [], False),
    (["smooth", "min_hold", "long_only", "hysteresis", "ts_zscore", "feature:f0", "window:20", "const:0",
      "window:60", "window:5", "window:240"], [0.5], False),
    (["min_hold", "smooth", "pos_sign", "ema", "feature:f0", "window:10", "window:5", "window:20"], [], False),
]


def _features(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.empty((2, n))
    X[0] = rng.standard_normal(n)
    X[1] = np.repeat(rng.integers(-1, 2, n // 3 + 1), rng.integers(3, 9, n // 3 + 1))[:n].astype(float)  # runs of 3-8
    return X


def test_new_primitives_are_in_the_pset_and_declare_their_lookback():
    pset = build_pset(NAMES)
    names = {p.name for ps in pset.primitives.values() for p in ps}
    assert {"latch", "hysteresis", "smooth", "min_hold"} <= names
    assert [BY_NAME[n].lookback(20) for n in ("latch", "hysteresis", "smooth", "min_hold")] == [19, 19, 19, 58]
    v1 = {p.name for ps in build_pset(NAMES, max_version=1).primitives.values() for p in ps}
    assert not v1 & {"latch", "hysteresis", "smooth", "min_hold"} and len(v1) == 32  # feature synthesis' set
    g = Genome.from_tokens(*TREES[5][:2])
    assert g.lookback == 239 + 13 + 59 + 19  # smooth w240 + min_hold w5 + hysteresis w60 + ts_zscore w20


def test_semantics_by_hand():
    enter = np.array([0, 1, 0, 0, 0, 0, 1, 0, 1, 0], dtype=float)
    leave = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0], dtype=float)
    # entered at 1, left at 3; entered at 6 and held (memory 3 bars: 6, 7, 8), enter and leave together at 8 -> 0
    np.testing.assert_array_equal(np_latch(enter, leave, 3), [0, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    # with a 2-bar memory the entry at 1 expires at 3 by itself
    np.testing.assert_array_equal(np_latch(enter, np.zeros(10), 2), [0, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    x = np.array([0.0, 0.9, 0.2, -0.2, -0.6, 0.1, 0.7, 0.0, np.nan, 0.0])
    # enter above 0.5, leave below -0.5, memory 4: in the band the state is kept up to 4 bars after the entry
    np.testing.assert_array_equal(np_hysteresis(x, -0.5, 4), [0, 1, 1, 1, 0, 0, 1, 1, 1, 1])
    p = np.array([0, 1, 1, 1, -1, 1, 1, 1, 1, -1, -1, 0, 0, 0], dtype=float)
    # long confirmed after 3 equal bars (index 3); the 1-bar and 2-bar blips are ignored; flat once confirmed
    np.testing.assert_array_equal(np_min_hold(p, 3), [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0])
    # a signal that never settles again: the last confirmed value is remembered for 2w bars, then flat
    flips = np.array([1, 1, 1, -1, 1, -1, 1, -1, 1, -1], dtype=float)
    np.testing.assert_array_equal(np_min_hold(flips, 3), [0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    ema = BY_NAME["ema"].numpy_fn(p, 5)[4:]
    np.testing.assert_array_equal(np_smooth(p, 5)[4:], np.round(ema * 4) / 4)  # no exact .125 ties here
    assert set(np.unique(np_smooth(p, 5)[4:])) <= {-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0}


@pytest.mark.parametrize("tokens,consts,exact", TREES)
def test_vm_equals_reference_and_subtree_cache(tokens, consts, exact):
    X = _features()
    g = Genome.from_tokens(tokens, consts)
    assert g.pset_version == "forge-gp/2"
    vm = run_program(compile_program(g, NAMES), X)
    pset = build_pset(NAMES)
    from forge.gp import deap_compile_function
    ref = np.asarray(deap_compile_function(individual_from_genome(g, pset), pset)(*X), dtype=np.float64)
    ref = np.clip(np.nan_to_num(ref, nan=0.0), -1.0, 1.0)
    np.testing.assert_allclose(vm, ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(SubtreeCache(X, NAMES).run(g), vm)


@pytest.mark.parametrize("tokens,consts,exact", TREES)
def test_no_look_ahead_and_the_declared_lookback_is_enough(tokens, consts, exact):
    """(a) Altering every bar after t leaves the output up to t unchanged (bit for bit); (b) the value at t
    computed from the last ``lookback + 1`` bars only equals the full-history value -- bit for bit for the
    integer-logic primitives, to 1e-9 where a running EMA sum rounds differently."""
    X = _features(2500, seed=4)
    g = Genome.from_tokens(tokens, consts)
    prog = compile_program(g, NAMES)
    pool = BufferPool()
    full = run_program(prog, X, pool)
    rng = np.random.default_rng(1)
    for t in (400, 1111, 1999):
        Y = X.copy()
        Y[:, t + 1:] = rng.standard_normal(Y[:, t + 1:].shape) * 3.0
        np.testing.assert_array_equal(run_program(prog, Y, pool)[: t + 1], full[: t + 1])
    L = prog.lookback
    worst = 0.0
    for t in range(L, X.shape[1], 37):
        part = run_program(prog, np.ascontiguousarray(X[:, t - L: t + 1]), pool)[-1]
        if exact:
            assert part == full[t], (t, part, full[t])
        worst = max(worst, abs(part - full[t]))
    assert worst <= 1e-9


@pytest.mark.parametrize("name", ["latch", "hysteresis", "smooth", "min_hold"])
def test_declared_lookback_is_tight(name):
    """One bar fewer than the declared lookback changes the value on a built series (the lookback is not
    padded, so the warm-up mask costs no more bars than needed)."""
    w = 5
    L = BY_NAME[name].lookback(w)
    if name in ("latch", "hysteresis"):
        x = np.zeros(L + 1)
        x[0] = 1.0  # the only entry, exactly w - 1 bars back: still latched
        fn = (lambda v: np_latch(v, np.zeros_like(v), w)) if name == "latch" else (lambda v: np_hysteresis(v, 0.5, w))
    elif name == "smooth":
        x = np.ones(L + 1)  # one bar short of a full window: no average yet (NaN, flat at the root)
        fn = lambda v: np_smooth(v, w)  # noqa: E731
    else:
        # 1 confirmed over bars 0..w-1, then a signal that never settles: the confirmation is 2w - 1 bars old
        x = np.array([1.0] * w + [-1.0, 0.0] * w)[: L + 1]
        fn = lambda v: np_min_hold(v, w)  # noqa: E731
    full = fn(x)[-1]
    short = fn(x[1:])[-1]
    assert full != 0.0 and not (short == full), (full, short)


def test_min_hold_holds_positions_and_hysteresis_cuts_switches():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(20_000)
    raw = np.sign(x)
    for w in (5, 10, 20):
        out = np_min_hold(raw, w)
        change = np.flatnonzero(np.diff(out) != 0) + 1
        runs = np.diff(np.concatenate([[0], change, [out.shape[0]]]))
        values = out[np.concatenate([[0], change])]
        assert np.all(runs[1:-1][values[1:-1] != 0] >= w)  # every complete non-flat holding lasts >= w bars
    switches = lambda p: int(np.count_nonzero(np.diff(p)))  # noqa: E731
    z = np.empty_like(x)  # a persistent signal (AR(1), phi 0.9, sd ~1) like a smoothed feature
    z[0] = 0.0
    for i in range(1, z.shape[0]):
        z[i] = 0.9 * z[i - 1] + 0.45 * x[i]
    plain = (z > 0.5).astype(float)
    hyst = np_hysteresis(z, 0.5, 60)  # enter above 0.5, leave below -0.5
    assert switches(hyst) < switches(plain) / 2  # 976 vs 2,456 when written
    smooth = np_smooth(raw, 20)[19:]
    assert np.abs(np.diff(smooth)).sum() < np.abs(np.diff(raw[19:])).sum() / 3
    assert switches(smooth) < switches(raw[19:])  # quarter steps: no dust trade every bar


def test_primitive_set_1_genomes_keep_their_version_and_checksum(tmp_path):
    # tokens and sha256 of a genome written before primitive set 2 existed (a Crucible replacement request)
    old = Genome.from_tokens(["pos_sign", "sub", "ts_mean", "feature:ret_1", "window:20", "ts_mean",
                              "feature:ret_1", "window:240"])
    assert old.pset_version == "forge-gp/1"
    assert old.sha256 == "4e21fa13685fdf9547d0c4fa0b23c1cd0f837cbaf93cff59ac0205b87ff98d12"
    assert pset_version_of(["long_only", "gt_c"]) == "forge-gp/1"
    assert pset_version_of(["min_hold", "long_only", "gt_c"]) == "forge-gp/2"
    new = Genome.from_tokens(*TREES[2][:2])
    assert Genome.from_json(new.to_json()) == new
    with pytest.raises(GenomeError, match="pset_version 'forge-gp/1' does not match"):
        Genome.from_dict(dict(new.to_dict(), pset_version="forge-gp/1"))
