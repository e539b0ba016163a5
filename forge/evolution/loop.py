"""The (mu + lambda) loop, shaped like DEAP's ``eaMuPlusLambda``: vary -> evaluate -> select, with two hooks.

Per generation: lambda children (times the surrogate's ``factor`` when screening) by tournament-selected
subtree crossover / mutation / reproduction (``forge.evolution.operators.var_one``); the surrogate hook
(:class:`forge.evolution.surrogate.Screen`) decides which candidates get the full fitness, else all do; the
co-evolution hook (:class:`forge.evolution.coevolution.Adversary`) adds the adversarial score to the pool
and may select by NSGA-II; else the best mu distinct trees of parents + offspring survive; then the
generation is recorded (hall of fame, logbook, ``generations.jsonl``, checkpoint, progress callback).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from deap import tools

from forge.core.rundir import append_evaluated, append_generation
from forge.evolution.checkpoint import Codec, RunState
from forge.evolution.coevolution import Adversary
from forge.evolution.evaluator import Evaluator
from forge.evolution.surrogate import Screen

__all__ = ["Recorder", "Toolbox", "ea_mu_plus_lambda", "full_evaluation", "initial_generation"]

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Toolbox:
    """The loop's operators (DEAP's toolbox): vary(population, n) -> n candidate individuals;
    evaluate(individuals) -> number of new full evaluations (sets ``fitness`` and ``metrics``);
    select(pool, mu) -> the next population."""

    vary: Callable[[list[Any], int], list[Any]]
    evaluate: Callable[[list[Any]], int]
    select: Callable[[list[Any], int], list[Any]]


def full_evaluation(evaluator: Evaluator, codec: Codec, run_dir: Path) -> Callable[[list[Any]], int]:
    """The toolbox's ``evaluate``: full fitness through ``evaluator`` (memoised), every new evaluation
    appended to ``evaluated.jsonl``."""

    def evaluate(individuals: list[Any]) -> int:
        before = evaluator.n_evaluated
        genomes = [codec.to_genome(ind) for ind in individuals]
        results = evaluator.evaluate(genomes, on_new=lambda records: append_evaluated(run_dir, records))
        for ind, (fit, met) in zip(individuals, results):
            ind.fitness.values = (fit,)
            ind.metrics = met
        return evaluator.n_evaluated - before

    return evaluate


def _statistics() -> tools.Statistics:
    stats = tools.Statistics(lambda ind: ind.fitness.values[0])
    stats.register("best", np.max)
    stats.register("median", np.median)
    stats.register("mean", np.mean)
    return stats


class Recorder:
    """Records a finished generation: hall of fame, logbook, ``generations.jsonl``, checkpoint, progress.

    save: writes the checkpoint of a state (None: no checkpoints); notify: the progress callback.
    """

    def __init__(self, run_dir: Path, evaluator: Evaluator, generations: int, notify: ProgressFn,
                 save: Callable[[RunState], None] | None):
        self.run_dir, self.evaluator, self.generations = run_dir, evaluator, generations
        self.notify, self.save = notify, save
        self.stats = _statistics()

    def __call__(self, state: RunState, nevals: int, seconds: float, extra: dict[str, Any]) -> None:
        pop = state.population
        state.hall_of_fame.update(pop)
        row = {k: float(v) for k, v in self.stats.compile(pop).items()}
        entry = {
            "gen": state.gen, "nevals": nevals, "evaluated_total": self.evaluator.n_evaluated, **row,
            "size_mean": float(np.mean([len(ind) for ind in pop])),
            "evals_per_s": nevals / seconds if seconds > 0 else 0.0, "seconds": seconds,
            "hof_best": float(state.hall_of_fame[0].fitness.values[0]),
            "cache_hit_rate": self.evaluator.cache_hit_rate, **extra,
        }
        state.logbook.record(**entry)
        append_generation(self.run_dir, entry)
        if self.save is not None:
            self.save(state)
        self.notify({"event": "generation", **entry, "generations": self.generations})


def initial_generation(state: RunState, individuals: list[Any], toolbox: Toolbox, record: Recorder,
                       t0: float, screen: Screen | None = None, adversary: Adversary | None = None) -> None:
    """Generation 0: evaluate the initial population (the predators move once the first prey exist; the
    surrogate learns from it) and record it.  t0: ``time.perf_counter()`` when building it began."""
    state.population = individuals
    nevals = toolbox.evaluate(individuals)
    extra = adversary.score(individuals, first=True) if adversary is not None else {}
    if screen is not None:
        screen.observe(individuals)
    state.gen = 0
    record(state, nevals, time.perf_counter() - t0,
           {"candidates": len(individuals), "evals_saved": 0, "surrogate_spearman": None,
            "surrogate_spearman_holdout": None, **extra})


def ea_mu_plus_lambda(state: RunState, toolbox: Toolbox, mu: int, lambda_: int, ngen: int, record: Recorder,
                      screen: Screen | None = None, adversary: Adversary | None = None,
                      stop_after: int | None = None) -> tuple[list[Any], tools.Logbook] | None:
    """Run generations ``state.gen + 1 .. ngen`` of (mu + lambda) on ``state`` (changed in place).

    screen: surrogate hook (``factor`` x lambda candidates, only its picks fully evaluated); adversary:
    co-evolution hook (adversarial score of the pool, its own selection in Pareto mode, the predators' step).
    stop_after: return None after this generation (an interrupted run, for tests).
    returns (population, logbook) like DEAP's ``eaMuPlusLambda``.
    """
    for gen in range(state.gen + 1, ngen + 1):
        if stop_after is not None and gen > stop_after:
            return None
        t0 = time.perf_counter()
        n_cand = lambda_ * (screen.factor if screen is not None else 1)
        candidates = toolbox.vary(state.population, n_cand)
        extra: dict[str, Any] = {"candidates": n_cand, "evals_saved": 0, "surrogate_spearman": None,
                                 "surrogate_spearman_holdout": None}
        if screen is not None:
            offspring, nevals, more = screen.screen(candidates, state.np_rng)
            extra.update(more, evals_saved=n_cand - nevals)
        else:
            offspring, nevals = candidates, toolbox.evaluate(candidates)
        pool = state.population + offspring
        if adversary is not None:
            extra.update(adversary.score(pool))
            state.population = adversary.select(pool, mu)
            extra.update(adversary.predator_step(state.population))
        else:
            state.population = toolbox.select(pool, mu)
        state.gen = gen
        record(state, nevals, time.perf_counter() - t0, extra)
    return state.population, state.logbook
