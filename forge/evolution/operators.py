"""Selection and variation operators shared by strategy evolution, feature synthesis and predator
co-evolution (DEAP-style names: ``sel*``, ``cx*``, ``mut*``, ``var*``).

Tree operators draw from the stdlib ``random`` module (as DEAP's do), so a run seeded once is reproducible;
the vector operators of the predators take an explicit numpy ``Generator`` so its state can be checkpointed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from operator import attrgetter
from typing import Any, TypeVar

import numpy as np

from forge.gp import pset as gp_ops

__all__ = ["cx_blend", "mut_gaussian", "sel_best_distinct", "sel_tournament", "sel_tournament_index",
           "var_one"]

T = TypeVar("T")


def sel_tournament(individuals: Sequence[T], tournsize: int, key: Callable[[T], Any] = attrgetter("fitness")) -> T:
    """One individual: the best by ``key`` of ``tournsize`` drawn uniformly with replacement (DEAP's
    ``selTournament`` with k=1, the same draws from ``random``; ties go to the first drawn)."""
    return max([random.choice(individuals) for _ in range(tournsize)], key=key)


def var_one(population: Sequence[Any], ops: gp_ops.Operators, cxpb: float, mutpb: float, tournsize: int) -> Any:
    """One child (DEAP's ``varOr`` for a single offspring): with probability ``cxpb`` the first child of
    subtree crossover of two tournament-selected parents, with ``mutpb`` a mutant of one, else a clone."""
    r = random.random()
    if r < cxpb:
        p1, p2 = (sel_tournament(population, tournsize) for _ in range(2))
        return ops.crossover(p1, p2)[0]
    if r < cxpb + mutpb:
        return ops.mutate(sel_tournament(population, tournsize))
    return ops.clone(sel_tournament(population, tournsize))


def sel_best_distinct(pool: Sequence[T], mu: int, fitness: Callable[[T], float], key: Callable[[T], Hashable] = str,
                      top_up: bool = True) -> list[T]:
    """(mu + lambda) selection of the offspring: the best ``mu`` of ``pool`` by ``fitness`` with distinct
    ``key`` (ties broken by first appearance); with ``top_up`` the best duplicates fill the rest when fewer
    than ``mu`` are distinct."""
    ranked = sorted(range(len(pool)), key=lambda i: (-fitness(pool[i]), i))
    seen: set[Hashable] = set()
    chosen, spare = [], []
    for i in ranked:
        k = key(pool[i])
        (spare if k in seen else chosen).append(pool[i])
        seen.add(k)
    return (chosen + spare if top_up else chosen)[:mu]


def sel_tournament_index(fitness: np.ndarray, tournsize: int, rng: np.random.Generator) -> int:
    """Row index of a tournament winner among ``tournsize`` rows drawn with replacement (fitness: (n,))."""
    idx = rng.integers(0, fitness.shape[0], tournsize)
    return int(idx[int(np.argmax(fitness[idx]))])


def cx_blend(a: np.ndarray, b: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """First child of DEAP's ``cxBlend``: ``(1 - g) * a + g * b``, g ~ U(-alpha, 1 + alpha) per gene."""
    gamma = (1.0 + 2 * alpha) * rng.uniform(size=a.shape[0]) - alpha
    return (1.0 - gamma) * a + gamma * b


def mut_gaussian(x: np.ndarray, sigma: float, indpb: float, rng: np.random.Generator) -> np.ndarray:
    """DEAP's ``mutGaussian`` (mean 0): each gene gets N(0, sigma) noise with probability ``indpb``
    (the mask and a full noise vector are drawn in that order)."""
    mask = rng.uniform(size=x.shape[0]) < indpb
    return x + mask * rng.normal(0.0, sigma, x.shape[0])
