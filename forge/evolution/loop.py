"""The (mu + lambda) loop, shaped like DEAP's ``eaMuPlusLambda``: vary -> evaluate -> select, with two hooks.

Per generation: lambda children (times the surrogate's ``factor`` when screening) by tournament-selected
subtree crossover / mutation / reproduction (``forge.evolution.operators.var_one``); the surrogate hook
(:class:`forge.evolution.surrogate.Screen`) decides which candidates get the full fitness, else all do; the
co-evolution hook (:class:`forge.evolution.coevolution.Adversary`) adds the adversarial score to the pool
and may select by NSGA-II; else the best mu distinct trees of parents + offspring survive; then the
generation is recorded (hall of fame, logbook, checkpoint, ``generations.jsonl``, progress callback).

Every phase of a generation is timed by the recorder's :class:`forge.evolution.clock.PhaseClock`
(``phase_seconds`` in each ``generations.jsonl`` row); ``evals_per_s`` is full evaluations per second of
the ``fitness`` phase, not of the whole generation.
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
from forge.evolution.clock import PhaseClock
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
    """Records a finished generation: hall of fame, logbook, checkpoint, ``generations.jsonl``, progress.

    save: writes the checkpoint of a state (None: no checkpoints); notify: the progress callback;
    clock: the generation's phase clock (the loop times its phases on it; a fresh one by default).

    Row fields added here: ``seconds`` (wall time of the generation, from its start to after its
    checkpoint), ``phase_seconds`` ({phase: seconds}, ``forge.evolution.clock.PHASES``; the phases are
    disjoint, so their sum is <= ``seconds``), ``evals_per_s`` (``nevals`` / ``phase_seconds["fitness"]``,
    0 when nothing was evaluated), ``encounters`` (co-evolution simulations this generation),
    ``work_cpu_seconds`` ({kind: CPU seconds} of necessary work, ``forge.evolution.clock.WORK``),
    ``work_bound_seconds`` (their sum / the evaluator's workers) and ``overhead_ratio`` (``seconds`` /
    ``work_bound_seconds``; None when there was no such work).
    The checkpoint is written before the row, so the row can carry its cost; a kill between the two
    leaves a checkpoint one row ahead of the log, which ``restore_state`` repairs.
    """

    def __init__(self, run_dir: Path, evaluator: Evaluator, generations: int, notify: ProgressFn,
                 save: Callable[[RunState], None] | None, clock: PhaseClock | None = None):
        self.run_dir, self.evaluator, self.generations = run_dir, evaluator, generations
        self.notify, self.save = notify, save
        self.clock = clock or PhaseClock()
        self.stats = _statistics()
        self._fitness_cpu = evaluator.cpu_seconds  # the evaluator's CPU counter at the last record

    def __call__(self, state: RunState, nevals: int, t0: float, extra: dict[str, Any]) -> None:
        """Record generation ``state.gen``, begun at ``t0`` (``time.perf_counter()``)."""
        clock = self.clock
        pop = state.population
        with clock.phase("bookkeeping"):
            state.hall_of_fame.update(pop)
            row = {k: float(v) for k, v in self.stats.compile(pop).items()}
            size_mean = float(np.mean([len(ind) for ind in pop]))
        if self.save is not None:
            with clock.phase("checkpoint"):
                self.save(state)
        seconds = time.perf_counter() - t0
        phases = clock.seconds()
        fit_s = phases["fitness"]
        clock.work("fitness", self.evaluator.cpu_seconds - self._fitness_cpu)
        self._fitness_cpu = self.evaluator.cpu_seconds
        work = clock.work_seconds()
        bound = sum(work.values()) / max(1, self.evaluator.jobs)
        entry = {
            "gen": state.gen, "nevals": nevals, "evaluated_total": self.evaluator.n_evaluated, **row,
            "size_mean": size_mean,
            "evals_per_s": nevals / fit_s if fit_s > 0 else 0.0, "seconds": seconds,
            "phase_seconds": phases, "encounters": clock.counts().get("encounters", 0),
            "work_cpu_seconds": work, "work_bound_seconds": bound,
            "overhead_ratio": seconds / bound if bound > 0 else None,
            "hof_best": float(state.hall_of_fame[0].fitness.values[0]),
            "cache_hit_rate": self.evaluator.cache_hit_rate, **extra,
        }
        state.logbook.record(**entry)
        append_generation(self.run_dir, entry)
        self.notify({"event": "generation", **entry, "generations": self.generations})


def _coevolve(adversary: Adversary, clock: PhaseClock, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn()`` (a co-evolution step of ``adversary``) as the ``coevolution`` phase of ``clock``, counting
    its encounters and their necessary work (CPU seconds of encounters and quiet markets)."""
    coev = adversary.coev
    before, cpu_before = coev.encounters, dict(coev.cpu_seconds)
    with clock.phase("coevolution"):
        out = fn()
    clock.count("encounters", coev.encounters - before)
    for kind, cpu in coev.cpu_seconds.items():
        clock.work(kind, cpu - cpu_before[kind])
    return out


def initial_generation(state: RunState, build: Callable[[], list[Any]], toolbox: Toolbox, record: Recorder,
                       screen: Screen | None = None, adversary: Adversary | None = None) -> None:
    """Generation 0: build the initial population (``build()``), evaluate it (the predators move once the
    first prey exist; the surrogate learns from it) and record it."""
    clock = record.clock
    clock.start()
    t0 = time.perf_counter()
    with clock.phase("breed"):
        individuals = build()
    state.population = individuals
    with clock.phase("fitness"):
        nevals = toolbox.evaluate(individuals)
    extra = (_coevolve(adversary, clock, lambda: adversary.score(individuals, first=True))
             if adversary is not None else {})
    if screen is not None:
        screen.observe(individuals, clock)
    state.gen = 0
    record(state, nevals, t0,
           {"candidates": len(individuals), "evals_saved": 0, "surrogate_spearman": None,
            "surrogate_spearman_holdout": None, **extra})


def ea_mu_plus_lambda(state: RunState, toolbox: Toolbox, mu: int, lambda_: int, ngen: int, record: Recorder,
                      screen: Screen | None = None, adversary: Adversary | None = None,
                      stop_after: int | None = None) -> tuple[list[Any], tools.Logbook] | None:
    """Run generations ``state.gen + 1 .. ngen`` of (mu + lambda) on ``state`` (changed in place).

    screen: surrogate hook (``factor`` x lambda candidates, only its picks fully evaluated); adversary:
    co-evolution hook (adversarial score of the pool, its own selection in Pareto mode, the predators' step).
    stop_after: return None after this generation (an interrupted run, for tests).
    Each phase is timed on ``record.clock`` (module docstring).
    returns (population, logbook) like DEAP's ``eaMuPlusLambda``.
    """
    clock = record.clock
    for gen in range(state.gen + 1, ngen + 1):
        if stop_after is not None and gen > stop_after:
            return None
        clock.start()
        t0 = time.perf_counter()
        n_cand = lambda_ * (screen.factor if screen is not None else 1)
        with clock.phase("breed"):
            candidates = toolbox.vary(state.population, n_cand)
        extra: dict[str, Any] = {"candidates": n_cand, "evals_saved": 0, "surrogate_spearman": None,
                                 "surrogate_spearman_holdout": None}
        if screen is not None:
            offspring, nevals, more = screen.screen(candidates, state.np_rng, clock)
            extra.update(more, evals_saved=n_cand - nevals)
        else:
            with clock.phase("fitness"):
                offspring, nevals = candidates, toolbox.evaluate(candidates)
        pool = state.population + offspring
        if adversary is not None:
            extra.update(_coevolve(adversary, clock, lambda: adversary.score(pool)))
            with clock.phase("selection"):
                state.population = adversary.select(pool, mu)
            extra.update(_coevolve(adversary, clock, lambda: adversary.predator_step(state.population)))
        else:
            with clock.phase("selection"):
                state.population = toolbox.select(pool, mu)
        state.gen = gen
        record(state, nevals, t0, extra)
    return state.population, state.logbook
