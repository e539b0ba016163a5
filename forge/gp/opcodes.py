"""VM opcodes and numeric guards shared by the primitive table (``forge.gp.primitives``) and the numba
interpreter (``forge.gp.vm_nb``).

``Op`` is a NamedTuple instance of ints (the vectorbt ``enums.py`` pattern): numba reads ``Op.ADD`` inside
an ``@njit`` function as a compile-time constant, Python code reads the same value, so the table and the
kernel cannot drift apart.  Opcode values 1-32 are primitive-set version ``forge-gp/1``, 33-36 (the
turnover-aware primitives) were added in ``forge-gp/2``; values never change once released; 0 is never an
opcode.  The six rolling statistics are consecutive (``TS_MEAN`` .. ``TS_ZSCORE``): the kernel derives the
rolling kind as ``o - Op.TS_MEAN``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DIV_EPS", "Op", "OpT", "SMOOTH_STEP", "STD_REL_EPS"]

DIV_EPS = 1e-12
"""|denominator| below which protected division returns 0."""
STD_REL_EPS = 1e-10
"""A rolling standard deviation at or below this fraction of |mean| counts as zero (flat window)."""
SMOOTH_STEP = 0.25
"""``smooth`` rounds its EMA to multiples of this (floor(v / step + 0.5) * step): a smoothed position moves
in quarter steps, so it trades only when the EMA crosses a step, never dust every bar."""


class OpT(NamedTuple):
    ADD: int = 1
    SUB: int = 2
    MUL: int = 3
    DIV: int = 4
    NEG: int = 5
    ABS: int = 6
    SLOG: int = 7
    ADD_C: int = 8
    MUL_C: int = 9
    LAG: int = 10
    DELTA: int = 11
    TS_MEAN: int = 12
    TS_STD: int = 13
    TS_MIN: int = 14
    TS_MAX: int = 15
    TS_RANK: int = 16
    TS_ZSCORE: int = 17
    TS_CORR: int = 18
    EMA: int = 19
    IF_THEN_ELSE: int = 20
    GT: int = 21
    LT: int = 22
    GT_C: int = 23
    LT_C: int = 24
    AND: int = 25
    OR: int = 26
    NOT: int = 27
    CROSS_ABOVE: int = 28
    LONG_SHORT: int = 29
    LONG_ONLY: int = 30
    SHORT_ONLY: int = 31
    POS_SIGN: int = 32
    LATCH: int = 33
    HYSTERESIS: int = 34
    SMOOTH: int = 35
    MIN_HOLD: int = 36


Op = OpT()
"""The opcodes (``Op.ADD`` == 1, ...)."""
