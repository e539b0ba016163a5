"""One seed, many independent random streams.

Every random choice in the project flows from one integer seed through
``numpy.random.SeedSequence``.  Streams are addressed by a *key path* (e.g.
``("evolve", "init")``) so adding a new consumer never shifts the numbers of
the existing ones, and worker count never changes results: work items get
their stream from their own key, not from the worker that runs them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def _key_words(key: tuple[object, ...]) -> list[int]:
    words: list[int] = []
    for part in key:
        digest = hashlib.sha256(repr(part).encode()).digest()
        words.append(int.from_bytes(digest[:4], "little"))
    return words


def seed_sequence(seed: int, *key: object) -> np.random.SeedSequence:
    """SeedSequence for ``seed`` and a key path.

    seed: int >= 0; key: any reprs (str, int) naming the consumer.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key_words(key)))


def generator(seed: int, *key: object) -> np.random.Generator:
    """numpy Generator (PCG64) for ``seed`` and a key path."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *key)))


def python_random(seed: int, *key: object) -> random.Random:
    """stdlib ``random.Random`` seeded from the same key path (DEAP uses stdlib random)."""
    state = seed_sequence(seed, *key).generate_state(4, dtype=np.uint32)
    return random.Random(int.from_bytes(state.tobytes(), "little"))


def int_seed(seed: int, *key: object) -> int:
    """A 63-bit integer seed for numba kernels / LightGBM, from the key path."""
    return int(seed_sequence(seed, *key).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


@contextmanager
def shielded_global_random() -> Iterator[None]:
    """Run library code that must not move Python's global ``random`` stream (DEAP's operators draw from
    it): the state is restored on exit.  Needed because imports draw from it too — e.g. the first
    ``import lightgbm`` imports scikit-learn, which imports rich, whose ``style`` module calls
    ``random.getrandbits`` at import time (found when two runs in one process diverged at generation 1).
    """
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)
