"""The state of a (mu + lambda) run between generations (:class:`RunState`) and its checkpoint: saved after
every generation, restored by ``forge evolve --resume`` so that the resumed run equals an uninterrupted one.

What a checkpoint holds (``forge.core.rundir.Checkpoint``): population and hall of fame as genome JSON with
fitness and metrics, the stdlib ``random`` state (DEAP's operators draw from it), the run's numpy Generator
state (surrogate exploration), the evaluation counters and log lengths, the surrogate's training rows
(``surrogate.npz``) and the predators' state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from deap import base, creator, gp, tools

from forge.core import rng
from forge.core.rundir import (
    Checkpoint, append_generation, iter_evaluated, read_checkpoint, read_generations, read_surrogate_data, start_logs,
    truncate_logs, write_checkpoint, write_surrogate_data,
)
from forge.evolution.coevolution import Coevolution
from forge.evolution.evaluator import Evaluator
from forge.evolution.surrogate import Surrogate
from forge.gp import Genome, individual_from_genome, individual_tokens

__all__ = ["Codec", "RunState", "fresh_state", "rebuilt_generation_row", "restore_state", "save_state"]


def _ensure_creator() -> None:
    if not hasattr(creator, "ForgeFitness"):
        creator.create("ForgeFitness", base.Fitness, weights=(1.0,))
    if not hasattr(creator, "ForgeIndividual"):
        creator.create("ForgeIndividual", gp.PrimitiveTree, fitness=creator.ForgeFitness, metrics=None)


class Codec:
    """Individuals (DEAP trees with ``fitness`` and ``metrics``) to and from genomes and checkpoint entries."""

    MEMO_SIZE = 200_000
    """Genomes the codec remembers (by their tokens and constants) before it starts over."""

    def __init__(self, pset: gp.PrimitiveSetTyped):
        _ensure_creator()
        self.pset = pset
        self._memo: dict[tuple[Any, ...], Genome] = {}

    def new(self, tree: gp.PrimitiveTree) -> Any:
        return creator.ForgeIndividual(tree)

    def to_genome(self, ind: Any) -> Genome:
        """The genome of an individual (``genome_from_individual``).  Bred candidates repeat (about half of a
        generation's 10,000 are copies of others or of known genomes), so genomes are remembered by their tokens,
        the ``repr`` of their constants (-0.0 and 0.0 hash apart in the canonical form) and root: a repeat skips
        the parse, the lookback and the checksum (~28 of ~37 µs)."""
        tokens, constants, root = individual_tokens(ind)
        key = (tokens, tuple(map(repr, constants)), root)
        g = self._memo.get(key)
        if g is None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            g = self._memo[key] = Genome.from_tokens(tokens, constants, root=root)
        return g

    def entry(self, ind: Any) -> dict[str, Any]:
        return {"genome": self.to_genome(ind).to_dict(), "fitness": float(ind.fitness.values[0]),
                "metrics": ind.metrics}

    def restore(self, entry: dict[str, Any]) -> Any:
        ind = self.new(individual_from_genome(Genome.from_dict(entry["genome"]), self.pset))
        ind.fitness.values = (entry["fitness"],)
        ind.metrics = entry["metrics"]
        return ind


def new_hall_of_fame(size: int) -> tools.HallOfFame:
    """DEAP hall of fame of distinct trees (by expression)."""
    return tools.HallOfFame(size, similar=lambda a, b: str(a) == str(b))


@dataclass
class RunState:
    """Everything the loop changes between generations.

    gen: last completed generation (-1 before generation 0); population: individuals with fitness;
    hall_of_fame / logbook: DEAP's; np_rng: the run's numpy Generator (surrogate exploration).  The stdlib
    ``random`` state is global (DEAP) and saved alongside.
    """

    gen: int
    population: list[Any]
    hall_of_fame: tools.HallOfFame
    logbook: tools.Logbook
    np_rng: np.random.Generator


def fresh_state(run_dir: Path, seed: int, hof_size: int) -> RunState:
    """A new run: ``random`` and numpy streams seeded from ``seed``, empty logs."""
    random.seed(rng.int_seed(seed, "evolve", "deap"))
    start_logs(run_dir)
    return RunState(gen=-1, population=[], hall_of_fame=new_hall_of_fame(hof_size), logbook=tools.Logbook(),
                    np_rng=rng.generator(seed, "evolve", "numpy"))


def save_state(run_dir: Path, state: RunState, codec: Codec, evaluator: Evaluator, surrogate: Surrogate | None,
               coev: Coevolution | None) -> None:
    """Write ``checkpoint.json`` (and ``surrogate.npz``) for the state after generation ``state.gen``."""
    if surrogate is not None:
        write_surrogate_data(run_dir, X=np.vstack(surrogate.X) if surrogate.X else np.zeros((0, 0)),
                             y=np.asarray(surrogate.y, dtype=np.float64))
    st = random.getstate()
    write_checkpoint(run_dir, Checkpoint(
        gen=state.gen,
        population=[codec.entry(ind) for ind in state.population],
        hall_of_fame=[codec.entry(ind) for ind in state.hall_of_fame.items],
        random_state=[st[0], list(st[1]), st[2]],
        numpy_state=state.np_rng.bit_generator.state,
        n_evaluated=evaluator.n_evaluated,
        evaluated_lines=len(evaluator.memo),
        surrogate_rows=surrogate.n_train if surrogate is not None else 0,
        coevolution=coev.state() if coev is not None else None,
    ))


def restore_state(run_dir: Path, hof_size: int, codec: Codec, evaluator: Evaluator, surrogate: Surrogate | None,
                  coev: Coevolution | None) -> RunState:
    """The state saved in ``run_dir``'s checkpoint; logs cut back to what it accounts for, the evaluator's
    memo, the surrogate's training rows and the predators restored.  raises RunDirError."""
    ck = read_checkpoint(run_dir)
    st = ck.random_state
    random.setstate((st[0], tuple(st[1]), st[2]))
    np_rng = np.random.Generator(np.random.PCG64())
    np_rng.bit_generator.state = ck.numpy_state
    truncate_logs(run_dir, generations=ck.gen + 1, evaluated=ck.evaluated_lines)
    for record in iter_evaluated(run_dir):
        evaluator.remember(record)
    evaluator.n_evaluated = ck.n_evaluated
    hof = new_hall_of_fame(hof_size)
    hof.items = [codec.restore(e) for e in ck.hall_of_fame]
    hof.keys = [ind.fitness for ind in reversed(hof.items)]
    population = [codec.restore(e) for e in ck.population]
    rows = read_generations(run_dir)
    if len(rows) == ck.gen:  # killed between the checkpoint and its row (the row is written second)
        rows.append(rebuilt_generation_row(ck, rows, population, hof))
        append_generation(run_dir, rows[-1])
    logbook = tools.Logbook()
    for row in rows:
        logbook.record(**row)
    if coev is not None:
        coev.load_state(ck.coevolution)
    if surrogate is not None and ck.surrogate_rows:
        surrogate.observe(*read_surrogate_data(run_dir, ck.surrogate_rows))
    return RunState(gen=ck.gen, population=population, hall_of_fame=hof, logbook=logbook, np_rng=np_rng)


def rebuilt_generation_row(ck: Checkpoint, rows: list[dict[str, Any]], population: list[Any],
                           hof: tools.HallOfFame) -> dict[str, Any]:
    """The ``generations.jsonl`` row of generation ``ck.gen`` rebuilt from its checkpoint (a kill landed
    after the checkpoint and before the row): the population statistics and counters are exact, the
    timings and surrogate statistics were never written and are None; ``rebuilt`` marks the row."""
    fit = np.array([ind.fitness.values[0] for ind in population], dtype=np.float64)
    done_before = int(rows[-1]["evaluated_total"]) if rows else 0
    return {"gen": ck.gen, "nevals": ck.n_evaluated - done_before, "evaluated_total": ck.n_evaluated,
            "best": float(np.max(fit)), "median": float(np.median(fit)), "mean": float(np.mean(fit)),
            "size_mean": float(np.mean([len(ind) for ind in population])), "evals_per_s": None, "seconds": None,
            "phase_seconds": None, "encounters": None, "work_cpu_seconds": None, "work_bound_seconds": None,
            "overhead_ratio": None, "hof_best": float(hof[0].fitness.values[0]),
            "cache_hit_rate": None, "surrogate_spearman": None, "surrogate_spearman_holdout": None,
            "rebuilt": True}
