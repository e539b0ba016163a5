"""Shared selection/variation operators (forge.evolution.operators) match DEAP's semantics draw for draw."""

from __future__ import annotations

import random

import numpy as np
from deap import base, creator, tools

from forge.evolution.operators import cx_blend, mut_gaussian, sel_best_distinct, sel_tournament

if not hasattr(creator, "OpTestFitness"):
    creator.create("OpTestFitness", base.Fitness, weights=(1.0,))


class _Ind:
    def __init__(self, name: str, f: float):
        self.name, self.fitness = name, creator.OpTestFitness()
        self.fitness.values = (f,)

    def __str__(self) -> str:
        return self.name


def test_sel_tournament_equals_deap_draw_for_draw():
    pop = [_Ind(f"t{i}", float((i * 7) % 5)) for i in range(20)]
    random.seed(11)
    ours = [sel_tournament(pop, 3) for _ in range(50)]
    random.seed(11)
    deaps = [tools.selTournament(pop, 1, tournsize=3)[0] for _ in range(50)]
    assert ours == deaps


def test_sel_best_distinct_ties_and_top_up():
    pool = [_Ind("a", 1.0), _Ind("b", 3.0), _Ind("a", 3.0), _Ind("c", 3.0), _Ind("b", 0.5)]
    fit = lambda ind: ind.fitness.values[0]  # noqa: E731
    got = sel_best_distinct(pool, 4, fitness=fit)
    assert [(str(x), fit(x)) for x in got] == [("b", 3.0), ("a", 3.0), ("c", 3.0), ("a", 1.0)]
    got = sel_best_distinct(pool, 5, fitness=fit, top_up=False)
    assert [str(x) for x in got] == ["b", "a", "c"]


def test_blend_and_gaussian_follow_deap_formulas():
    a, b = np.zeros(4), np.ones(4)
    rng, ref = np.random.default_rng(5), np.random.default_rng(5)
    child = cx_blend(a, b, 0.5, rng)
    g = 2.0 * ref.uniform(size=4) - 0.5
    assert np.array_equal(child, g)  # (1 - g) * 0 + g * 1
    x = mut_gaussian(np.zeros(4), 0.1, 1.0, rng)
    assert np.array_equal(x != 0.0, ref.uniform(size=4) < 1.0) and np.allclose(x, ref.normal(0.0, 0.1, 4))
