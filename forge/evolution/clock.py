"""The per-phase clock of a generation: where a generation's wall time goes.

Every generation row of ``generations.jsonl`` carries ``phase_seconds``, a dict of wall-clock seconds
(``time.perf_counter``, float >= 0) per phase, in the order of :data:`PHASES`:

* ``breed`` -- tournament selection, crossover, mutation of the candidates (``Toolbox.vary``) and, in
  generation 0, building the initial population;
* ``surrogate_proxy`` -- the proxy backtests of the candidates on the surrogate's proxy windows;
* ``surrogate_descriptors`` -- the cheap descriptor vectors (``forge.evolution.surrogate.describe``) and
  the memo lookups that split candidates into known and unknown;
* ``surrogate_ranking`` -- LightGBM prediction, top/exploration pick and the model's refit;
* ``fitness`` -- the full fitness of the picks (VM + backtest on the in-sample segments, on the workers);
* ``coevolution`` -- the adversarial encounters of the best prey with the predators inside the simulator,
  the predators' own evaluation and breeding;
* ``selection`` -- (mu + lambda) survivor selection;
* ``checkpoint`` -- writing ``checkpoint.json`` (and ``surrogate.npz``);
* ``bookkeeping`` -- hall of fame, statistics, logbook.

The phases are disjoint intervals inside the generation, so their sum is at most the generation's
``seconds`` (the rest: loop overhead and appending the row itself).  Measuring changes no decision of
the search: the clock only reads ``time.perf_counter``.

Beside wall time the clock sums the generation's **necessary work** in CPU seconds (:data:`WORK`, from
``time.process_time`` in the process that did it, so another job on the machine does not inflate it):

* ``fitness`` -- the full evaluations (``Evaluator.cpu_seconds``);
* ``encounters`` -- each encounter's second pass: features and positions on the quiet market, and the
  simulation with the strategy trading;
* ``quiet_markets`` -- each distinct quiet market (predator scenario x encounter length) the generation's
  encounters and realism checks need, simulated once.

``work_bound`` is their sum over the workers that share them (the wall time of that work with nothing
else running, perfectly spread); ``seconds / work_bound`` is the generation's overhead ratio (issue 21's
goal: <= 2).  Everything else -- breeding, the surrogate's proxy backtests and ranking, selection,
checkpointing, idle workers, dispatch -- is overhead by that definition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["PHASES", "PhaseClock", "WORK"]

PHASES = ("breed", "surrogate_proxy", "surrogate_descriptors", "surrogate_ranking", "fitness", "coevolution",
          "selection", "checkpoint", "bookkeeping")
"""Phase names of ``phase_seconds``, in the order they run in a generation."""

WORK = ("fitness", "encounters", "quiet_markets")
"""Kinds of necessary work of ``work_cpu_seconds`` (module docstring)."""


class PhaseClock:
    """Accumulates wall-clock seconds per phase (:data:`PHASES`) within one generation.

    timer: a monotonic clock in seconds (default ``time.perf_counter``; tests inject one).
    ``with clock.phase("fitness"): ...`` adds the block's duration to that phase; phases must not nest
    (a nested phase would count its time twice; raises RuntimeError).  ``start()`` begins a generation
    (all phases zero); ``seconds()`` is a copy of the totals so far.
    """

    def __init__(self, timer: Callable[[], float] = time.perf_counter):
        self.timer = timer
        self._totals = dict.fromkeys(PHASES, 0.0)
        self._counts: dict[str, int] = {}
        self._work = dict.fromkeys(WORK, 0.0)
        self._open: str | None = None

    def start(self) -> None:
        """Reset every phase to zero (the start of a generation)."""
        self._totals = dict.fromkeys(PHASES, 0.0)
        self._counts = {}
        self._work = dict.fromkeys(WORK, 0.0)
        self._open = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as phase ``name``.  raises KeyError for an unknown phase name,
        RuntimeError when another phase is open."""
        if name not in self._totals:
            raise KeyError(f"unknown phase {name!r}; expected one of {', '.join(PHASES)}")
        if self._open is not None:
            raise RuntimeError(f"phase {name!r} started inside phase {self._open!r}: phases must not nest")
        self._open = name
        t0 = self.timer()
        try:
            yield
        finally:
            self._totals[name] += max(0.0, self.timer() - t0)
            self._open = None

    def count(self, name: str, n: int) -> None:
        """Add ``n`` units of work to counter ``name`` (e.g. encounters simulated)."""
        self._counts[name] = self._counts.get(name, 0) + int(n)

    def work(self, kind: str, cpu_seconds: float) -> None:
        """Add ``cpu_seconds`` of necessary work of ``kind`` (:data:`WORK`; KeyError otherwise)."""
        if kind not in self._work:
            raise KeyError(f"unknown work kind {kind!r}; expected one of {', '.join(WORK)}")
        self._work[kind] += max(0.0, float(cpu_seconds))

    def work_seconds(self) -> dict[str, float]:
        """{kind: CPU seconds >= 0} of necessary work since :meth:`start`, in :data:`WORK` order."""
        return dict(self._work)

    def seconds(self) -> dict[str, float]:
        """{phase: seconds >= 0} in :data:`PHASES` order."""
        return dict(self._totals)

    def counts(self) -> dict[str, int]:
        """{counter: units} recorded with :meth:`count` since :meth:`start`."""
        return dict(self._counts)
