"""Per-agent random streams for the simulator (numba).

Each agent owns one uint64 SplitMix64 state (Steele, Lea & Flood 2014,
"Fast splittable pseudorandom number generators"), seeded from the run seed
and the agent's key path via ``forge.core.rng``.  An agent's draws therefore
depend only on (seed, agent) and on how many draws *that* agent made, never
on other agents — the basis of common random numbers in calibration and of
clean with/without-strategy comparisons.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from forge.sim.nbopts import NO_NRT

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@njit(**NO_NRT)
def next_u64_nb(state, i):
    """Next uint64 of stream ``i`` of ``state`` ((n,) uint64, advanced in place)."""
    s = state[i] + _GOLDEN
    state[i] = s
    z = (s ^ (s >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**NO_NRT)
def uniform_nb(state, i):
    """Uniform float64 in the open interval (0, 1)."""
    return (float(next_u64_nb(state, i) >> _S11) + 0.5) * _INV53


@njit(**NO_NRT)
def exponential_nb(state, i):
    """Exponential(1) float64."""
    return -math.log(uniform_nb(state, i))


@njit(**NO_NRT)
def normal_nb(state, i):
    """Standard normal float64 (Box-Muller, one value per two uniforms)."""
    u1 = uniform_nb(state, i)
    u2 = uniform_nb(state, i)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(**NO_NRT)
def laplace_nb(state, i):
    """Laplace (double exponential) with mean |x| = 1."""
    e = exponential_nb(state, i)
    return e if uniform_nb(state, i) < 0.5 else -e


@njit(**NO_NRT)
def randint_nb(state, i, n):
    """Uniform integer in [0, n) (n >= 1)."""
    k = int(uniform_nb(state, i) * n)
    return k if k < n else n - 1
