"""Predator/prey co-evolution: scenario genomes (predators) against evolved strategies (prey).

Prey are the GP strategies of ``forge evolve``; predators are scenario vectors
of the limit-order-book simulator (``forge.sim.params.SCENARIO_SPECS``: stop
hunts, liquidity vacuums, spoofing/layering, volatility shocks, all reacting
to the strategy's position), searched in [0, 1] coordinates.

Adversarial fitness of a strategy: its mean per-bar return (after taker fees
and the impact of walking the simulated book) inside the calibrated simulator,
averaged over a sample of the current predators plus the predator hall of fame
(which guards against cycling and disengagement). Each encounter is two-pass:
the predator's market is simulated once without the strategy, the strategy's
positions are computed on those bars by the same feature pipeline and VM as
on real data, and then the market is re-simulated with the strategy trading
those positions (its orders walk the book; predators react to its position).
The positions therefore do not react to the strategy's own impact -- an
open-loop approximation that keeps an encounter one vectorised VM call.

Predator fitness: minus the mean return of the strategies it met, minus
``realism_penalty * max(0, D - realism_bound)`` where D is the weighted
stylized-facts distance of its quiet market (no strategy) to the calibrated
simulator's facts (``forge.sim.facts.realism_distance``), so predators cannot
win by making the market unrecognisable.

Predators evolve by tournament selection, blend crossover and Gaussian
mutation in the unit cube (``forge.evolution.operators``: DEAP's ``cxBlend``/``mutGaussian``
semantics written against a numpy Generator, so the state can be checkpointed).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl
from deap import base, creator, tools

from forge.core.config import resolve_path
from forge.data.gaps import bars_since_gap
from forge.core.runconfig import CoevolutionConfig
from forge.evolution.operators import cx_blend, mut_gaussian, sel_best_distinct, sel_tournament_index
from forge.gp import BufferPool, Genome
from forge.sim.calibrate import load_calibrated_facts, load_calibration
from forge.sim.facts import realism_distance, stylized_facts
from forge.sim.market import SimConfig, simulate
from forge.sim.params import SCENARIO_SPECS, no_scenario
from forge.sim.strategy_sim import simulate_with_strategy
from forge.strategy import genome_positions, strategy_features

__all__ = ["Adversary", "Arena", "Coevolution", "OVER_BUDGET_PENALTY", "PredatorPopulation", "combine",
           "pareto_order"]

_ARENA_IDS = itertools.count()
OVER_BUDGET_PENALTY = 1e6
"""Predator fitness penalty (bp per bar) of a scenario whose market exceeds the event budget."""


def _scenario_from_unit(u: np.ndarray) -> np.ndarray:
    return np.array([s.from_unit(float(x)) for s, x in zip(SCENARIO_SPECS, u)], dtype=np.float64)


class Arena:
    """The calibrated simulator in which strategies meet predators.

    dsg: (N_P,) float64 calibrated DSG; feature_names / library: the run's terminals, recomputed on
    simulated bars exactly as on real bars; seed: simulation seed (common random numbers: every
    encounter in a generation uses the same seed).
    """

    def __init__(self, cfg: CoevolutionConfig, feature_names: Sequence[str], library: Any = None, seed: int = 0,
                 regimes: Any = None):
        self.cfg = cfg
        self.calibration_path = resolve_path(cfg.calibration)
        self.dsg = load_calibration(self.calibration_path)
        self.feature_names = tuple(feature_names)
        self.library = library
        self.regimes = regimes  # frozen regime model (forge.features.regimes): filtered on simulated bars
        self.seed = seed
        self._bars: dict[tuple[bytes, int], tuple[pl.DataFrame, bool]] = {}
        self.truncated = 0  # simulations cut short by the event budget
        self._ref: tuple[dict[str, float], dict[str, float]] | None = None
        self.pool = BufferPool()
        self.task_key = f"{os.getpid()}-{next(_ARENA_IDS)}"  # names this arena in the workers' caches

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for the workers without its caches (each process rebuilds them deterministically)."""
        return {"cfg": self.cfg, "dsg": self.dsg, "calibration_path": self.calibration_path, "feature_names": self.feature_names, "library": self.library,
                "regimes": self.regimes, "seed": self.seed, "task_key": self.task_key}

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__dict__.update(st)
        self._bars, self.truncated, self._ref, self.pool = {}, 0, None, BufferPool()

    def sim_config(self, extra_minutes: int = 0) -> SimConfig:
        """The simulator config of an encounter: default agents, the event budget of ``max_events_per_minute``
        over the simulated minutes (``sim_minutes`` + ``extra_minutes`` of a longer warm-up, burn-in included)."""
        base = SimConfig()
        return dataclasses.replace(base, max_events=self.cfg.max_events_per_minute
                                   * (base.burn_in_minutes + self.cfg.sim_minutes + extra_minutes))

    def warmup_for(self, genome: Genome) -> int:
        """Simulated minutes before ``genome`` may trade in an encounter: ``warmup_minutes``, or the genome's
        whole look-back (operators plus its features' own warm-ups) + 1 when longer, capped at
        ``max_warmup_minutes``.  With the fixed 240-minute warm-up a strategy reading 240-bar windows never
        had a full look-back inside the 480 simulated minutes: it stayed flat, scored 0 bp/bar and was immune
        to every predator (issue 17 item 6)."""
        from forge.features.registry import FEATURES
        from forge.gp.genome import parse_tokens, tree_lookback

        lbs = {n: FEATURES[n].lookback for n in genome.features if n in FEATURES}
        if self.library is not None:
            lbs.update({f.name: int(f.lookback) for f in self.library.features if f.name in genome.features})
        if self.regimes is not None:
            lbs.update({n: self.regimes.lookback for n in self.regimes.feature_names if n in genome.features})
        need = tree_lookback(parse_tokens(genome.tokens, genome.constants, genome.root), lbs) + 1
        return int(min(max(self.cfg.warmup_minutes, need), max(self.cfg.warmup_minutes, self.cfg.max_warmup_minutes)))

    def encounter_minutes(self, genome: Genome) -> int:
        """Simulated minutes of ``genome``'s encounter: ``sim_minutes`` lengthened by its extra warm-up."""
        return self.cfg.sim_minutes + (self.warmup_for(genome) - self.cfg.warmup_minutes)

    def simulate_quiet(self, scenario: np.ndarray, seed: int, minutes: int | None = None) -> tuple[pl.DataFrame, bool]:
        """(bars, truncated by the event budget) of the predator's market without the strategy over ``minutes``
        simulated minutes (default ``sim_minutes``); not cached (:meth:`quiet_bars` is)."""
        minutes = self.cfg.sim_minutes if minutes is None else int(minutes)
        res = simulate(self.dsg, minutes, seed, scenario=scenario, config=self.sim_config(minutes - self.cfg.sim_minutes))
        return res.bars, bool(res.truncated)

    def _quiet(self, scenario: np.ndarray, seed: int, minutes: int | None = None) -> tuple[pl.DataFrame, bool]:
        minutes = self.cfg.sim_minutes if minutes is None else int(minutes)
        key = (scenario.tobytes(), seed) if minutes == self.cfg.sim_minutes else (scenario.tobytes(), seed, minutes)
        if key not in self._bars:
            if len(self._bars) > 64:
                self._bars.clear()
            self._bars[key] = self.simulate_quiet(scenario, seed, minutes)
            self.truncated += self._bars[key][1]
        return self._bars[key]

    def quiet_bars(self, scenario: np.ndarray, seed: int) -> pl.DataFrame:
        """Bars of the predator's market without the strategy (cached per scenario and seed)."""
        return self._quiet(scenario, seed)[0]

    def realism(self, scenario: np.ndarray, seed: int, quiet: tuple[pl.DataFrame, bool] | None = None) -> float:
        """Weighted stylized-facts distance of the predator's quiet market (``sim_minutes``; ``quiet``: its
        (bars, truncated) when already simulated) to the reference market; inf when the event budget cut it."""
        if self._ref is None:
            cal = load_calibrated_facts(self.calibration_path)
            if cal is None:  # no calibration file: the default simulator is the reference, unit weights
                # (simulated with the arena's own seed, so the reference never depends on which call came first)
                f = stylized_facts(self.quiet_bars(no_scenario(), self.seed))
                cal = (f, {k: 1.0 for k in f})
            self._ref = cal
        bars, truncated = quiet if quiet is not None else self._quiet(scenario, seed)
        if truncated:  # beyond the event budget: as unrealistic as it gets
            return math.inf
        return float(realism_distance(stylized_facts(bars), *self._ref))

    def encounter(self, genome: Genome, scenario: np.ndarray, seed: int, quiet_bars: pl.DataFrame | None = None
                  ) -> float:
        """Mean per-bar return (after fees and impact) of ``genome`` trading in the predator's market over
        ``sim_minutes - warmup_minutes`` minutes after its warm-up (:meth:`warmup_for`; the simulation is
        lengthened by the extra warm-up, :meth:`encounter_minutes`). Two-pass open loop (module docstring);
        ``quiet_bars``: the first pass when already simulated (``simulate_quiet`` over the same minutes)."""
        warm = self.warmup_for(genome)
        minutes = self.cfg.sim_minutes + (warm - self.cfg.warmup_minutes)
        bars = quiet_bars if quiet_bars is not None else self._quiet(scenario, seed, minutes)[0]
        names = tuple(dict.fromkeys(genome.features))
        fm = strategy_features(bars, names, self.library, self.regimes)
        pos = genome_positions(genome, fm, bars_since_gap(bars["open_time"].to_numpy()), self.pool)
        pos = np.nan_to_num(pos)
        pos[:warm] = 0.0
        res = simulate_with_strategy(self.dsg, scenario, pos, minutes, seed, self.cfg.fee_bps,
                                     config=self.sim_config(minutes - self.cfg.sim_minutes))
        self.truncated += res.truncated
        r = res.returns[warm:]
        return float(np.mean(r)) if r.size else 0.0


_WORKER_ARENAS: dict[str, Arena] = {}


def _local_arena(arena: Arena) -> Arena:
    """This process's copy of ``arena`` (kept per process, keyed by the id the caller gave it, so the
    feature library and the realism reference are unpickled and built once)."""
    local = _WORKER_ARENAS.get(arena.task_key)
    if local is None:
        _WORKER_ARENAS.clear()
        local = _WORKER_ARENAS[arena.task_key] = arena
    return local


def _quiet_task(arena: Arena, scenario: np.ndarray, seed: int, minutes: int
                ) -> tuple[pl.DataFrame, bool, float | None, float]:
    """One quiet market (runs in a worker or in-process): the predator's market without a strategy over
    ``minutes`` simulated minutes, and its realism distance when ``minutes == sim_minutes`` (the length
    realism is defined on).  returns (bars, truncated, realism or None, CPU seconds of this task)."""
    t0 = time.process_time()
    local = _local_arena(arena)
    quiet = local.simulate_quiet(scenario, seed, minutes)
    real = local.realism(scenario, seed, quiet) if minutes == local.cfg.sim_minutes else None
    return quiet[0], quiet[1], real, time.process_time() - t0


def _encounter_task(arena: Arena, genome: Genome, scenario: np.ndarray, seed: int, quiet_bars: pl.DataFrame
                    ) -> tuple[float, int, float]:
    """One encounter (runs in a worker or in-process) on its already simulated quiet market.
    returns (per-bar mean return, simulations truncated by the event budget (0/1), CPU seconds)."""
    t0 = time.process_time()
    local = _local_arena(arena)
    before = local.truncated
    pnl = local.encounter(genome, scenario, seed, quiet_bars)
    n_truncated, local.truncated = local.truncated - before, before  # the caller adds it (also in-process)
    return pnl, n_truncated, time.process_time() - t0


def _serial_map(fn: Any, tasks: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*t) for t in tasks]


@dataclass
class PredatorPopulation:
    """Scenario genomes in unit coordinates: genomes (P, N_SC) float64 in [0, 1]; fitness (P,);
    hof: best predators so far (unit vectors) with their fitness; rng: numpy Generator."""

    genomes: np.ndarray
    fitness: np.ndarray
    hof: list[tuple[float, list[float]]] = field(default_factory=list)

    @classmethod
    def initial(cls, n: int, rng: np.random.Generator) -> PredatorPopulation:
        base = np.array([s.to_unit(v) for s, v in zip(SCENARIO_SPECS, no_scenario())])
        g = rng.uniform(0.0, 1.0, (n, len(SCENARIO_SPECS)))
        g[0] = base  # the quiet market is always a member of the first generation
        return cls(genomes=g, fitness=np.full(n, -np.inf))

    def scenarios(self) -> list[np.ndarray]:
        return [_scenario_from_unit(u) for u in self.genomes]

    def hof_scenarios(self) -> list[np.ndarray]:
        return [_scenario_from_unit(np.array(u)) for _f, u in self.hof]

    def update_hof(self, size: int) -> None:
        items = self.hof + [(float(f), list(map(float, u))) for f, u in zip(self.fitness, self.genomes)]
        best: dict[tuple[float, ...], tuple[float, list[float]]] = {}
        for f, u in items:
            k = tuple(round(x, 12) for x in u)
            if k not in best or f > best[k][0]:
                best[k] = (f, u)
        self.hof = sorted(best.values(), key=lambda t: -t[0])[:size]

    def breed(self, rng: np.random.Generator, sigma: float, tournament: int = 3) -> None:
        """Next generation: elitism of 1, tournament selection, blend crossover (alpha 0.5), Gaussian mutation."""
        n, d = self.genomes.shape
        out = [self.genomes[int(np.argmax(self.fitness))].copy()]
        while len(out) < n:
            p1, p2 = (self.genomes[sel_tournament_index(self.fitness, tournament, rng)] for _ in range(2))
            child = mut_gaussian(cx_blend(p1, p2, 0.5, rng), sigma, 1.0 / d + 0.2, rng)
            out.append(np.clip(child, 0.0, 1.0))
        self.genomes = np.array(out)
        self.fitness = np.full(n, -np.inf)


class Coevolution:
    """Drives the predator side inside ``forge evolve`` (see :class:`Adversary`, the loop's hook).

    Per generation: ``score(genomes)`` gives each strategy's adversarial score against a seeded sample
    of ``predators_met`` current predators plus the predator hall of fame; ``step(prey)`` evaluates the
    predators against the best strategies, updates the predator hall of fame and breeds the next
    predators. ``state()``/``from_state`` checkpoint everything, including the numpy RNG.
    """

    def __init__(self, cfg: CoevolutionConfig, arena: Arena, rng: np.random.Generator, map_tasks: Any = None):
        """map_tasks(fn, [args, ...]) -> [fn(*args), ...] in order (e.g. ``forge.evolution.evaluator.Evaluator.map``
        runs the encounters on the fitness workers); default: in this process.  Results do not depend
        on it: every encounter is a pure function of (DSG, genome, scenario, seed)."""
        self.cfg, self.arena, self.rng = cfg, arena, rng
        self.map_tasks = map_tasks or _serial_map
        self.pop = PredatorPopulation.initial(cfg.predators, rng)
        self.generation = 0
        self.history: list[dict[str, Any]] = []
        self._met: list[int] = []
        self.encounters = 0  # strategy-in-simulator encounters run by this object (work counter, not state)
        # CPU seconds of that work (worker process time; counters, not state): the encounters' second pass
        # (features, positions, the simulation with the strategy) and the distinct quiet markets
        self.cpu_seconds = {"encounters": 0.0, "quiet_markets": 0.0}
        self._quiet_cache: dict[tuple[bytes, int], tuple[pl.DataFrame, bool, float | None]] = {}
        self._quiet_seed: int | None = None

    def _sim_seed(self) -> int:
        return int(self.arena.seed * 1000 + self.generation)

    def begin_generation(self) -> None:
        """Choose the predators strategies meet this generation."""
        self._met = sorted(int(i) for i in self.rng.choice(self.cfg.predators, self.cfg.predators_met, replace=False))

    def opponents(self) -> list[np.ndarray]:
        sc = self.pop.scenarios()
        return [sc[i] for i in self._met] + self.pop.hof_scenarios()

    def _quiet_markets(self, scenarios: Sequence[np.ndarray], minutes: Sequence[int], seed: int
                       ) -> dict[tuple[bytes, int], tuple[pl.DataFrame, bool, float | None]]:
        """The quiet markets of every scenario at every length in ``minutes``, each simulated once per
        generation (one task per distinct (scenario, minutes); kept in this process for the generation's
        other phase): {(scenario bytes, minutes): (bars, truncated, realism at ``sim_minutes`` else None)}.

        Before, each encounter task simulated its own quiet market in whichever worker ran it, so one market
        was simulated again in every worker (and for every phase) that needed it."""
        if self._quiet_seed != seed:
            self._quiet_cache, self._quiet_seed = {}, seed
        todo: dict[tuple[bytes, int], tuple[np.ndarray, int]] = {}
        for sc in scenarios:
            for m in minutes:
                key = (sc.tobytes(), int(m))
                if key not in self._quiet_cache:
                    todo.setdefault(key, (sc, int(m)))
        out = self.map_tasks(_quiet_task, [(self.arena, sc, seed, m) for sc, m in todo.values()])
        for key, (bars, truncated, real, cpu) in zip(todo, out):
            self._quiet_cache[key] = (bars, truncated, real)
            self.arena.truncated += truncated
            self.cpu_seconds["quiet_markets"] += cpu
        return self._quiet_cache

    def _encounters(self, pairs: list[tuple[Genome, np.ndarray]], seed: int) -> list[float]:
        """Per-bar mean return of each (genome, scenario) encounter, in order (one task each)."""
        minutes = [self.arena.encounter_minutes(g) for g, _s in pairs]
        quiet = self._quiet_markets(list({s.tobytes(): s for _g, s in pairs}.values()), sorted(set(minutes)), seed)
        out = self.map_tasks(_encounter_task, [(self.arena, g, s, seed, quiet[(s.tobytes(), m)][0])
                                               for (g, s), m in zip(pairs, minutes)])
        self.encounters += len(pairs)
        self.arena.truncated += sum(t for _p, t, _c in out)
        self.cpu_seconds["encounters"] += sum(c for _p, _t, c in out)
        return [p for p, _t, _c in out]

    def score(self, genomes: Sequence[Genome]) -> list[float]:
        """Adversarial score of each genome: mean per-bar return in bp against this generation's opponents."""
        if not self._met:
            self.begin_generation()
        opp = self.opponents()
        genomes = list(genomes)
        pnl = np.array(self._encounters([(g, s) for s in opp for g in genomes], self._sim_seed()))
        pnl = pnl.reshape(len(opp), len(genomes))
        return [1e4 * float(np.mean(pnl[:, j])) for j in range(len(genomes))]

    def step(self, prey: Sequence[Genome], n_prey: int = 3) -> dict[str, Any]:
        """Evaluate predators against the top ``n_prey`` strategies, keep the hall of fame, breed."""
        seed = self._sim_seed()
        prey = list(prey)[:n_prey]
        scenarios = self.pop.scenarios()
        # every quiet market of this step in one batch: the encounters' lengths, and sim_minutes (realism)
        minutes = {self.arena.encounter_minutes(g) for g in prey} | {self.cfg.sim_minutes}
        quiet = self._quiet_markets(scenarios, sorted(minutes), seed)
        flat = self._encounters([(g, s) for s in scenarios for g in prey], seed)
        out = [(flat[i * len(prey):(i + 1) * len(prey)], quiet[(s.tobytes(), self.cfg.sim_minutes)][2])
               for i, s in enumerate(scenarios)]
        fits, real = [], []
        for pnls, d in out:
            pnl = float(np.mean(pnls)) * 1e4 if pnls else 0.0
            real.append(d)
            if math.isfinite(d):
                fits.append(-pnl - self.cfg.realism_penalty * max(0.0, d - self.cfg.realism_bound))
            else:  # over the event budget: below every scenario that stays within it
                fits.append(-pnl - OVER_BUDGET_PENALTY)
        self.pop.fitness = np.array(fits)
        self.pop.update_hof(self.cfg.predator_hof)
        row = {"generation": self.generation, "predator_best": float(np.max(fits)),
               "predator_mean": float(np.mean(fits)),
               "realism_mean": (float(np.mean([d for d in real if math.isfinite(d)]))
                                if any(math.isfinite(d) for d in real) else None),
               "over_budget": int(sum(not math.isfinite(d) for d in real)),
               "realism_of_best": (float(real[int(np.argmax(fits))]) if math.isfinite(real[int(np.argmax(fits))])
                                   else None),
               "hof_best": self.pop.hof[0][0] if self.pop.hof else None}
        self.history.append(row)
        self.pop.breed(self.rng, self.cfg.mutation_sigma)
        self.generation += 1
        self._met = []
        return row

    def hall_of_fame(self) -> list[dict[str, Any]]:
        return [{"fitness": f, "scenario": {s.name: v for s, v in zip(SCENARIO_SPECS, _scenario_from_unit(np.array(u)))}}
                for f, u in self.pop.hof]

    def state(self) -> dict[str, Any]:
        return {"generation": self.generation, "genomes": self.pop.genomes.tolist(),
                "fitness": [None if not math.isfinite(f) else float(f) for f in self.pop.fitness],
                "hof": self.pop.hof, "rng": self.rng.bit_generator.state, "history": self.history, "met": self._met}

    def load_state(self, st: dict[str, Any]) -> None:
        self.generation = int(st["generation"])
        self.pop.genomes = np.array(st["genomes"], dtype=np.float64)
        self.pop.fitness = np.array([-np.inf if f is None else f for f in st["fitness"]], dtype=np.float64)
        self.pop.hof = [(float(f), list(u)) for f, u in st["hof"]]
        self.rng.bit_generator.state = st["rng"]
        self.history = list(st["history"])
        self._met = list(st["met"])


def combine(backtest: float, adversarial: float, cfg: CoevolutionConfig) -> float:
    """Weighted dual fitness (mode "weighted"): backtest fitness + weight * adversarial bp per bar."""
    return float(backtest + cfg.weight * adversarial)


def pareto_order(objectives: np.ndarray, k: int) -> list[int]:
    """Indices of the k selected rows by NSGA-II (DEAP's ``selNSGA2``) over (n, m) objectives, all maximised."""
    if not hasattr(creator, "FitnessCoev"):
        creator.create("FitnessCoev", base.Fitness, weights=(1.0,) * objectives.shape[1])

    class _P:
        __slots__ = ("fitness", "i")

    items = []
    for i, row in enumerate(objectives):
        p = _P()
        p.i = i
        p.fitness = creator.FitnessCoev()
        p.fitness.values = tuple(float(x) if math.isfinite(x) else -1e18 for x in row)
        items.append(p)
    return [p.i for p in tools.selNSGA2(items, k)]



class Adversary:
    """The co-evolution hook of the (mu + lambda) loop: dual fitness of the strategies and the predators' move.

    coev: the predator side; to_genome: individual -> Genome.  Each individual's ``metrics`` gets
    ``backtest_fitness`` (its fitness from the historical backtest) and ``adversarial_bp`` (bp per bar inside
    the simulator); in mode "weighted" its fitness becomes :func:`combine` of the two, in mode "pareto" it
    keeps the backtest fitness and selection is NSGA-II over both.
    """

    def __init__(self, coev: Coevolution, cfg: CoevolutionConfig, to_genome: Callable[[Any], Genome]):
        self.coev, self.cfg, self.to_genome = coev, cfg, to_genome

    def score(self, individuals: list[Any], first: bool = False) -> dict[str, Any]:
        """Adversarial scores of the best ``adversarial_top`` individuals by backtest fitness (the rest get the
        worst score measured); ``first``: generation 0, the predators move once the first prey exist."""
        self.coev.begin_generation()
        backtest = [ind.metrics.get("backtest_fitness", ind.fitness.values[0]) if isinstance(ind.metrics, dict)
                    else ind.fitness.values[0] for ind in individuals]
        order = sorted(range(len(individuals)), key=lambda i: (-backtest[i], i))
        top = order[: self.cfg.adversarial_top]
        measured = self.coev.score([self.to_genome(individuals[i]) for i in top])
        scores = [min(measured)] * len(individuals)
        for i, adv in zip(top, measured):
            scores[i] = adv
        for ind, b, adv in zip(individuals, backtest, scores):
            ind.metrics = {**(ind.metrics or {}), "backtest_fitness": b, "adversarial_bp": adv}
            if self.cfg.mode == "weighted":
                ind.fitness.values = (combine(b, adv, self.cfg),)
        out = {"adversarial_mean_bp": float(np.mean(measured)), "adversarial_evaluated": len(top)}
        if first:
            out.update(self.predator_step(individuals))
        return out

    def select(self, pool: list[Any], mu: int) -> list[Any]:
        """The next population: NSGA-II over (backtest fitness, adversarial bp) in mode "pareto", else the
        best ``mu`` distinct trees by the combined fitness."""
        if self.cfg.mode == "pareto":
            objectives = np.array([[ind.metrics["backtest_fitness"], ind.metrics["adversarial_bp"]] for ind in pool])
            return [pool[i] for i in pareto_order(objectives, mu)]
        return sel_best_distinct(pool, mu, fitness=lambda ind: ind.fitness.values[0])

    def predator_step(self, population: list[Any]) -> dict[str, Any]:
        """Predators evaluated against the best strategies by backtest fitness, then bred."""
        ranked = sorted(population, key=lambda ind: -ind.metrics["backtest_fitness"])
        row = self.coev.step([self.to_genome(ind) for ind in ranked])
        return {"predator_best": row["predator_best"], "predator_realism": row["realism_of_best"]}

    def report(self) -> dict[str, Any]:
        """The manifest's ``coevolution`` entry."""
        return {"mode": self.cfg.mode, "predator_hall_of_fame": self.coev.hall_of_fame(),
                "history": self.coev.history}
