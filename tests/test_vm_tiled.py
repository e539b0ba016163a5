"""Cache-blocked (tiled) VM: bit for bit the interpreter before tiling (``run_program_flat_nb``), for
random trees over every primitive (stateful latch/hysteresis/smooth/min_hold, every rolling and
recursive window), inputs with NaN gaps, warm-up NaNs, infinities and flat stretches, and block sizes
that divide n and that do not (including blocks shorter than the history of the longest window)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from forge.gp import Operators, build_pset, compile_program, genome_from_individual
from forge.gp.opcodes import Op
from forge.gp.primitives import PRIMITIVES
from forge.gp.vm_nb import run_program_flat_nb, run_program_nb, tiled_shape

NAMES = ("f0", "f1", "f2", "f3", "f4")
N = 2400


def _features(n: int = N, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.empty((len(NAMES), n))
    X[0] = rng.standard_normal(n) * 1e-3
    X[0, :30] = np.nan  # a feature's warm-up
    X[1] = 5e4 + np.cumsum(rng.standard_normal(n))  # large level: cancellation in running sums
    X[2] = rng.standard_normal(n)
    X[2, 700:760] = np.nan  # a gap spanning a block boundary
    X[2, 1500] = np.inf
    X[3] = np.repeat(rng.standard_normal(n // 300 + 1), 300)[:n]  # flat stretches longer than any window
    X[4] = np.round(rng.standard_normal(n) * 2) / 2  # many ties (rank), 0/0.5 steps
    return X


def _pair(prog, X, block, clip):
    n = X.shape[1]
    flat = np.full(n, -7.0)
    run_program_flat_nb(prog.op, prog.dst, prog.a, prog.b, prog.c, prog.w, prog.k, X,
                        np.empty((prog.n_registers, n)), flat, clip)
    tiled = np.full(n, 7.0)
    regs = np.full((prog.op.shape[0], tiled_shape(prog.w, block)[1]), np.nan)
    run_program_nb(prog.op, prog.dst, prog.a, prog.b, prog.c, prog.w, prog.k, X, regs, tiled, clip, block)
    return flat, tiled


def _same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


@pytest.fixture(scope="module")
def programs():
    pset = build_pset(NAMES)
    random.seed(11)
    trees = Operators(pset, max_depth=8, max_size=40).init_population(160, 2, 7)
    progs = [compile_program(genome_from_individual(t, pset), NAMES) for t in trees]
    used = {int(o) for p in progs for o in p.op}
    assert used == {p.opcode for p in PRIMITIVES}, f"random trees miss opcodes {({p.opcode for p in PRIMITIVES}) - used}"
    return progs


@pytest.mark.parametrize("block", [1, 100, 240, 600, 1000, 2048, N, 5000])
def test_tiled_equals_flat_bit_for_bit(programs, block):
    """Positions (clipped) and raw root series (NaN kept) are identical bit patterns; 600 and 2400 divide
    n = 2400, the others do not (1 and 100 are shorter than the 248-bar history)."""
    X = _features()
    for prog in programs:
        for clip in (True, False):
            flat, tiled = _pair(prog, X, block, clip)
            assert _same_bits(flat, tiled), (block, clip, np.flatnonzero(flat != tiled)[:5])


def test_every_stateful_and_window_primitive_alone_across_blocks():
    """Each windowed / recursive / stateful primitive at every standard window on each input kind, block
    sizes 1, 7, 97 and 250 (boundaries inside warm-ups, gaps, flat stretches and the infinity)."""
    X = _features()
    one = {"ts_mean", "ts_std", "ts_min", "ts_max", "ts_rank", "ts_zscore", "ema", "lag", "delta", "smooth",
           "min_hold"}
    for w in (2, 5, 10, 11, 20, 60, 240):
        for f in range(len(NAMES)):
            for name in sorted(one):
                code = getattr(Op, name.upper())
                _check_one(np.array([code]), np.array([f]), np.array([0]), w, 0.0, X)
            _check_one(np.array([Op.TS_CORR]), np.array([f]), np.array([(f + 1) % len(NAMES)]), w, 0.0, X)
            _check_one(np.array([Op.CROSS_ABOVE]), np.array([f]), np.array([(f + 2) % len(NAMES)]), 0, 0.0, X)
            _check_one(np.array([Op.HYSTERESIS]), np.array([f]), np.array([0]), w, 0.3, X)
            # latch on events derived from the features: gt_c(f, 0) -> r0, lt_c(f, 0.5) -> r1, latch(r0, r1)
            op = np.array([Op.GT_C, Op.LT_C, Op.LATCH])
            a = np.array([f, f, -1])
            b = np.array([0, 0, -2])
            _check_program(op, np.array([0, 1, 2]), a, b, np.array([0, 0, w]), np.array([0.0, 0.5, 0.0]), X)


def _check_one(op, a, b, w, k, X):
    _check_program(op, np.array([0]), a, b, np.array([w]), np.array([k]), X)


def _check_program(op, dst, a, b, w, k, X):
    from forge.gp.vm import Program

    prog = Program(op=op.astype(np.int64), dst=dst.astype(np.int64), a=a.astype(np.int64), b=b.astype(np.int64),
                   c=np.zeros(len(op), dtype=np.int64), w=w.astype(np.int64), k=k.astype(np.float64),
                   n_registers=int(dst.max()) + 1, lookback=0, n_features=X.shape[0], n_nodes=len(op), sha256="")
    for block in (1, 7, 97, 250):
        flat, tiled = _pair(prog, X, block, False)
        assert _same_bits(flat, tiled), (op.tolist(), w.tolist(), a.tolist(), block,
                                         np.flatnonzero(flat != tiled)[:5])
