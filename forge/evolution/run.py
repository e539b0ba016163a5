"""``forge evolve``: from a config to a run directory.

Flow: bars -> features (causal) -> holdout split (in-sample head, out-of-sample tail) -> PCMCI feature
filter on the in-sample bars -> typed GP population -> (mu + lambda) loop (``forge.evolution.loop``) with
fitness from the numba backtest on the in-sample range only -> hall of fame.  The out-of-sample range is
touched once, after evolution, to report the hall of fame's metrics next to buy-and-hold.

Determinism: DEAP's operators draw from the stdlib ``random`` module, seeded from the run seed; fitness is
a pure function of the genome, so the number of workers never changes the result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from deap import gp, tools

from forge import __version__
from forge.backtest import buy_and_hold, run_backtest
from forge.causal import CausalReport, causal_filter
from forge.core import rng
from forge.core.config import resolve_path, to_dict
from forge.core.errors import ConfigError, GenomeError, RunDirError
from forge.core.rundir import (
    FILES, HallOfFame, HallOfFameMember, Manifest, read_checkpoint, read_run_config, write_champion, write_hall_of_fame,
    write_json_file, write_manifest, write_run_config,
)
from forge.data.discovery import load_symbol_bars, market_type
from forge.data.gaps import bars_since_gap, forward_returns
from forge.data.ranges import DataRange, refuse_overlap
from forge.data.loader import Coverage, coverage_of, load_bars
from forge.evolution.checkpoint import Codec, RunState, fresh_state, restore_state, save_state
from forge.evolution.clock import PhaseClock
from forge.evolution.coevolution import Adversary, Arena, Coevolution
from forge.core.runconfig import RunConfig, config_from_dict, config_to_dict, resolve_costs
from forge.evolution.evaluator import Evaluator
from forge.evolution.loop import ProgressFn, Recorder, Toolbox, ea_mu_plus_lambda, full_evaluation, initial_generation
from forge.evolution.market import Market, MarketArrays
from forge.evolution.operators import sel_best_distinct, var_one
from forge.evolution.surrogate import Screen, Surrogate
from forge.features import DEFAULT_FEATURES, FeatureMatrix
from forge.features.library import FeatureLibrary, load_feature_library
from forge.gp import BufferPool, Genome, build_pset, individual_from_genome
from forge.gp import pset as gp_ops
from forge.sim.calibrate import read_calibration
from forge.strategy import genome_positions

__all__ = ["EvolveResult", "evolve", "distinct_members", "hall_of_fame_report", "make_run_id", "refuse_out_of_sample_leaks", "resume_run"]

PACKAGES = ("deap", "numba", "numpy", "polars", "joblib", "lightgbm", "cma", "tigramite", "dowhy")


@dataclass
class EvolveResult:
    """What ``evolve`` returns: the run directory and in-memory summaries.  hall_of_fame: the members as
    written to ``hall_of_fame.json``; champion: the top genome, None when the run was stopped early
    (``stop_after``), in which case nothing but the checkpoint and logs was written."""

    run_dir: Path
    run_id: str
    hall_of_fame: list[dict[str, Any]]
    champion: Genome | None
    logbook: tools.Logbook
    manifest: dict[str, Any]


def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "forge": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def make_run_id(cfg: RunConfig) -> str:
    """``YYYYmmddTHHMMSSZ-s<seed>-<6 hex of the config>``."""
    digest = Genome.canonical_hash(json.dumps(to_dict(cfg.evolve), sort_keys=True))[:6]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-s{cfg.evolve.seed}-{digest}"


def _seed_trees(paths: tuple[str, ...], pset: gp.PrimitiveSetTyped) -> list[gp.PrimitiveTree]:
    """DEAP trees of the ``--seed-genome`` files (DNA recycling)."""
    trees = []
    for p in paths:
        genome = Genome.load(p)
        if genome.root != "P":
            raise GenomeError(f"{p}: seed genome must be a strategy (root 'P'), got root {genome.root!r}")
        trees.append(individual_from_genome(genome, pset))
    return trees


def _initial_trees(cfg: RunConfig, ops: gp_ops.Operators, pset: gp.PrimitiveSetTyped) -> list[gp.PrimitiveTree]:
    """The initial population: the seed genomes and mutated copies of them (``seed_fraction``), then random
    trees (ramped half-and-half between the initial depths)."""
    ec = cfg.evolve
    seeds = _seed_trees(ec.seed_genomes, pset)
    init: list[gp.PrimitiveTree] = list(seeds)
    n_seeded = min(ec.population, int(round(ec.seed_fraction * ec.population))) if seeds else 0
    while len(init) < n_seeded:  # mutated copies of the seeds
        init.append(ops.mutate(seeds[len(init) % len(seeds)]))
    init += ops.init_population(ec.population - len(init), ec.init_min_depth, ec.init_max_depth)
    return init[: ec.population]


def _load_markets(cfg: RunConfig, bars: pl.DataFrame | None, coverage: Coverage | None
                  ) -> tuple[list[Market], FeatureLibrary | None]:
    """Every evolved symbol's market (bars, features incl. a feature library's, split)."""
    ec = cfg.evolve
    if ec.symbols and bars is None:
        loaded = [(sym, *load_symbol_bars(ec.data, sym)) for sym in ec.symbols]
    else:
        if bars is None:
            bars, coverage = load_bars(list(ec.data) or None)
        elif coverage is None:
            coverage = coverage_of(bars)
        loaded = [(ec.symbols[0] if ec.symbols else "", bars, coverage)]
    feature_names = tuple(ec.features) or DEFAULT_FEATURES
    library = load_feature_library(ec.feature_library) if ec.feature_library else None
    if library is not None:
        feature_names = feature_names + tuple(n for n in library.names if n not in feature_names)
    markets = [Market.build(sym, b, cov, feature_names, ec.in_sample_fraction, library) for sym, b, cov in loaded]
    return markets, library


def _fitted_range_of_library(library: FeatureLibrary, path: str) -> DataRange:
    """The bars a feature library's features were selected on: ``meta.data_range`` (written by ``forge
    synthesize``), else the in-sample range of ``meta.split`` (libraries written before data_range was
    recorded; synthesis selects on that range only).  raises ConfigError when neither is recorded."""
    meta = library.meta or {}
    if "data_range" in meta:
        return DataRange.from_dict(meta["data_range"], f"{path}: meta")
    head = (meta.get("split") or {}).get("in_sample")
    if isinstance(head, dict) and {"first_open_ms", "last_open_ms", "rows"} <= set(head):
        return DataRange(int(head["first_open_ms"]), int(head["last_open_ms"]), int(head["rows"][1] - head["rows"][0]))
    raise ConfigError(f"{path}: feature library records no data range (meta.data_range or meta.split), so it cannot be "
                      "shown to exclude this run's out-of-sample bars; re-synthesize it with `forge synthesize`")


def refuse_out_of_sample_leaks(cfg: RunConfig, markets: list[Market], library: FeatureLibrary | None) -> None:
    """No out-of-sample leak through fitted inputs (issue 17 item 5): refuse a feature library (``--features``)
    or, with co-evolution on, a simulator calibration (``[coevolution] calibration``) fitted on bars that
    overlap any market's out-of-sample range.  A calibration that records no ``data_range`` (written before
    ranges were recorded) is refused too: nothing shows it excludes the out-of-sample bars.  A missing
    calibration file is no leak (the built-in DSG is used).  raises ConfigError (one line: the file, the
    fitted range, the out-of-sample range and the remedy)."""
    cal_path = resolve_path(cfg.coevolution.calibration) if cfg.coevolution.enabled else None
    cal_range = None
    if cal_path is not None and cal_path.is_file():
        cal_range = read_calibration(cal_path).data_range
        if cal_range is None:
            raise ConfigError(f"{cal_path}: simulator calibration records no data_range (written before ranges were "
                              "recorded), so it cannot be shown to exclude this run's out-of-sample bars; re-fit it on "
                              "in-sample bars with `forge calibrate` or run with --coevolution off")
    lib_range = _fitted_range_of_library(library, cfg.evolve.feature_library) if library is not None else None
    for m in markets:
        (a, b), (first, last) = m.split.out_of_sample, m.split.out_of_sample_ms
        oos = DataRange(first, last, b - a)
        if lib_range is not None:
            refuse_overlap(f"{cfg.evolve.feature_library}: feature library", lib_range, oos,
                           "synthesize it on bars before the out-of-sample range (forge synthesize selects on its "
                           "in-sample head)")
        if cal_range is not None:
            refuse_overlap(f"{cal_path}: simulator calibration", cal_range, oos,
                           "re-fit it on in-sample bars (forge calibrate fits the leading in_sample_fraction of "
                           "--data) or run with --coevolution off")


def _filter_features(cfg: RunConfig, markets: list[Market], run_dir: Path, notify: ProgressFn
                     ) -> tuple[list[Market], CausalReport]:
    """PCMCI on the first market's in-sample bars; the markets restricted to the kept features (plus the
    features seed genomes read)."""
    primary = markets[0]
    features, (a, b) = primary.features, primary.split.in_sample
    close = primary.bars["close"].to_numpy().astype(np.float64)
    fwd = forward_returns(close, primary.bars["open_time"].to_numpy())  # never across a gap
    sub = FeatureMatrix(names=features.names, values=np.ascontiguousarray(features.values[:, a:b]),
                        lookbacks=features.lookbacks)
    report = causal_filter(sub, fwd[a:b], cfg.causal, seed=rng.int_seed(cfg.evolve.seed, "causal"))
    write_json_file(run_dir, FILES.causal, report.to_dict())
    notify({"event": "causal", "kept": list(report.kept), "rows": report.render_rows(),
            "candidates": list(features.names)})
    seeded = {f for p in cfg.evolve.seed_genomes for f in Genome.load(p).features}
    names = tuple(n for n in features.names if n in report.kept or n in seeded)
    return [m.select(names) for m in markets], report


def _proxy_segment(data_is: MarketArrays, cfg: RunConfig) -> MarketArrays:
    """The surrogate's proxy data: ``proxy_windows`` windows spread over the in-sample segment."""
    sc = cfg.surrogate
    n_is = data_is.X.shape[1]
    proxy_len = max(100, min(sc.proxy_bars, n_is // (10 * sc.proxy_windows)))
    ends = np.unique(np.linspace(proxy_len, n_is, sc.proxy_windows).astype(int))
    return data_is.windows([(int(e) - proxy_len, int(e)) for e in ends])


def _prepare_run_dir(cfg: RunConfig, run_dir: Path | None, resume: bool) -> tuple[Path, str]:
    """(run directory, run id); a new run's config is saved there first (``run_config.json``)."""
    run_id = run_dir.name if run_dir is not None else make_run_id(cfg)
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.evolve.output_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_run_config(run_dir, config_to_dict(cfg), cfg.source)
    return run_dir, run_id


def evolve(
    cfg: RunConfig,
    *,
    bars: pl.DataFrame | None = None,
    coverage: Coverage | None = None,
    run_dir: Path | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
    stop_after: int | None = None,
) -> EvolveResult:
    """Run ``forge evolve`` and write its run directory (``forge.core.rundir``).

    bars: bar frame (BAR_SCHEMA); None -> ``load_bars(cfg.evolve.data)`` (the embedded sample when no data
    is configured).  run_dir: where to write; None -> ``<output_dir>/<run_id>``.  progress: called with a
    dict after the causal filter (``{"event": "causal", ...}``), after data loading (``"start"``), after each
    generation (``{"event": "generation", "gen", "best", "median", "evals_per_s" (full evaluations per
    second of fitness time), "seconds", "phase_seconds" ({phase: seconds}, ``forge.evolution.clock``),
    "surrogate_spearman" (evaluated set), "surrogate_spearman_holdout" (the random exploration picks),
    "evals_saved", ...}``, the row of ``generations.jsonl``) and
    at the end (``"done"``).  resume: continue the run in ``run_dir`` from its last checkpoint (the result
    equals an uninterrupted run with the same seed).  stop_after: return after this generation without
    writing the final reports (tests use it to simulate an interrupted run).
    returns EvolveResult.  raises ConfigError (also for a feature library or simulator calibration fitted on
    bars overlapping the out-of-sample range, :func:`refuse_out_of_sample_leaks`), DataError, GenomeError,
    RunDirError.
    """
    ec, notify, t_start = cfg.evolve, progress or (lambda _e: None), time.perf_counter()
    if resume and (run_dir is None or not (Path(run_dir) / FILES.checkpoint).is_file()):
        raise RunDirError(f"{run_dir}: no {FILES.checkpoint} to resume from (was the run started with checkpoints on?)")
    markets, library = _load_markets(cfg, bars, coverage)
    refuse_out_of_sample_leaks(cfg, markets, library)
    cfg = resolve_costs(cfg, [market_type(m.coverage) for m in markets])[0]  # [costs] preset -> [backtest] fees
    run_dir, run_id = _prepare_run_dir(cfg, run_dir, resume)
    if library is not None:  # the gauntlet and the Crucible recompute synthesized features from this copy
        write_json_file(run_dir, FILES.feature_library, library.to_dict())
    causal_report = None
    if cfg.causal.enabled:
        markets, causal_report = _filter_features(cfg, markets, run_dir, notify)
    feature_names = markets[0].features.names
    segments = tuple(m.in_sample_arrays() for m in markets)
    pset = build_pset(feature_names)
    codec, ops = Codec(pset), gp_ops.Operators(pset, max_depth=ec.max_depth, max_size=ec.max_size)
    use_surrogate = cfg.surrogate.enabled and ec.generations > 0
    notify({"event": "start", "run_id": run_id, "run_dir": str(run_dir), "n_bars": markets[0].bars.height,
            "split": markets[0].split.to_dict(), "features": list(feature_names), "generations": ec.generations,
            "population": ec.population, "offspring": ec.n_offspring, "jobs": ec.jobs,
            "surrogate": use_surrogate, "resume": resume})
    pool_kw = dict(backend=ec.backend, scheduler=ec.scheduler)
    with Evaluator(segments, cfg.backtest, cfg.fitness, ec.max_size, ec.jobs, ec.subtree_cache_mb,
                   aggregate=ec.symbol_aggregate, **pool_kw) as evaluator, \
            Evaluator(_proxy_segment(segments[0], cfg), cfg.backtest, cfg.fitness, ec.max_size, ec.jobs,
                      **pool_kw) as proxy_eval:
        coev = (Coevolution(cfg.coevolution, Arena(cfg.coevolution, feature_names, library, seed=ec.seed),
                            rng.generator(ec.seed, "coevolution"), map_tasks=evaluator.map)
                if cfg.coevolution.enabled else None)
        surrogate = Surrogate(cfg.surrogate, seed=rng.int_seed(ec.seed, "surrogate")) if use_surrogate else None
        toolbox = Toolbox(
            vary=lambda pop, n: [codec.new(var_one(pop, ops, ec.cxpb, ec.mutpb, ec.tournament_size)) for _ in range(n)],
            evaluate=full_evaluation(evaluator, codec, run_dir),
            select=lambda pool, mu: sel_best_distinct(pool, mu, fitness=lambda ind: ind.fitness.values[0]))
        screen = (Screen(surrogate, evaluator, proxy_eval, feature_names, codec.to_genome, toolbox.evaluate)
                  if surrogate is not None else None)
        adversary = Adversary(coev, cfg.coevolution, codec.to_genome) if coev is not None else None
        save = (lambda st: save_state(run_dir, st, codec, evaluator, surrogate, coev)) if ec.checkpoint else None
        record = Recorder(run_dir, evaluator, ec.generations, notify, save, PhaseClock())
        if resume:
            state = restore_state(run_dir, HOF_POOL_FACTOR * ec.hall_of_fame_size, codec, evaluator, surrogate, coev)
        else:
            state = fresh_state(run_dir, ec.seed, HOF_POOL_FACTOR * ec.hall_of_fame_size)
            initial_generation(state, lambda: [codec.new(t) for t in _initial_trees(cfg, ops, pset)], toolbox,
                               record, screen, adversary)
        done = ea_mu_plus_lambda(state, toolbox, ec.population, ec.n_offspring, ec.generations, record,
                                 screen, adversary, stop_after)
        if done is None:
            return EvolveResult(run_dir=run_dir, run_id=run_id, hall_of_fame=[], champion=None,
                                logbook=state.logbook, manifest={})
    return _finish(cfg, run_dir, run_id, markets, state, codec, evaluator.n_evaluated, library, causal_report,
                   adversary, resume, time.perf_counter() - t_start, notify)


def _finish(cfg: RunConfig, run_dir: Path, run_id: str, markets: list[Market], state: RunState, codec: Codec,
            n_evaluated: int, library: FeatureLibrary | None, causal_report: CausalReport | None,
            adversary: Adversary | None, resumed: bool, seconds: float, notify: ProgressFn) -> EvolveResult:
    """Hall-of-fame report (out-of-sample touched here, once), champion and manifest."""
    distinct = distinct_members(state.hall_of_fame, codec, markets[0], cfg.evolve.hall_of_fame_size)
    members = hall_of_fame_report(distinct, codec, markets, cfg)
    champion = members[0].to_genome()
    primary = markets[0]
    manifest = Manifest(
        run_id=run_id, created_utc=datetime.now(timezone.utc).isoformat(), seed=cfg.evolve.seed,
        config=config_to_dict(cfg), config_source=cfg.source,
        data={"coverage": primary.coverage.to_dict() if primary.coverage is not None else None,
              "n_bars": primary.bars.height, "symbol": primary.symbol or None},
        symbols={m.symbol: {"coverage": m.coverage.to_dict() if m.coverage is not None else None,
                            "n_bars": m.bars.height, "split": m.split.to_dict()} for m in markets}
        if len(markets) > 1 else None,
        symbol_aggregate=cfg.evolve.symbol_aggregate if len(markets) > 1 else None,
        split=primary.split.to_dict(), features=list(primary.features.names),
        causal_filter=causal_report.to_dict() if causal_report is not None else None,
        coevolution=adversary.report() if adversary is not None else None,
        costs=resolve_costs(cfg, [market_type(m.coverage) for m in markets])[1],
        pset_version=champion.pset_version, candidates_evaluated=n_evaluated,
        generations_run=cfg.evolve.generations, resumed=resumed, seconds=seconds, packages=_package_versions(),
        platform={"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        files={"generations": FILES.generations, "hall_of_fame": FILES.hall_of_fame, "champion": FILES.champion,
               "evaluated": FILES.evaluated, "checkpoint": FILES.checkpoint if cfg.evolve.checkpoint else None,
               "feature_library": FILES.feature_library if library is not None else None},
    )
    write_hall_of_fame(run_dir, HallOfFame(run_id=run_id, members=tuple(members)))
    write_champion(run_dir, champion)
    write_manifest(run_dir, manifest)
    notify({"event": "done", "run_dir": str(run_dir), "seconds": seconds, "candidates_evaluated": n_evaluated})
    return EvolveResult(run_dir=run_dir, run_id=run_id, hall_of_fame=[m.to_dict() for m in members],
                        champion=champion, logbook=state.logbook, manifest=manifest.to_dict())


HOF_POOL_FACTOR = 3
"""The run keeps this many times ``hall_of_fame_size`` best distinct expressions; the report picks the
behaviourally distinct ones among them (:func:`distinct_members`)."""
HOF_MAX_CORR = 0.95
"""Two genomes whose in-sample position series correlate at least this much (Pearson), or are equal, count
as one behaviour: the hall of fame keeps the fitter.  (Five members differing in one constant with the same
fitness and the same trades were the norm before, issue 27.)"""


def _same_behaviour(p: np.ndarray, q: np.ndarray) -> bool:
    if np.array_equal(p, q):
        return True
    sp, sq = float(np.std(p)), float(np.std(q))
    if sp == 0.0 or sq == 0.0:  # a constant position: distinct from anything not equal to it
        return False
    return float(np.corrcoef(p, q)[0, 1]) >= HOF_MAX_CORR


def distinct_members(hof: tools.HallOfFame, codec: Codec, market: Market, size: int,
                     pool: BufferPool | None = None) -> list[Any]:
    """The best ``size`` members of ``hof`` (fitness order) whose in-sample position series differ: a member
    whose positions on ``market``'s in-sample bars equal or correlate >= ``HOF_MAX_CORR`` with a fitter
    kept member's is skipped.  Only in-sample bars are read (the choice never sees the out-of-sample range)."""
    pool = pool or BufferPool()
    t = market.bars["open_time"].to_numpy().astype(np.int64)
    bsg = bars_since_gap(t)
    a, b = market.split.in_sample
    kept: list[Any] = []
    kept_pos: list[np.ndarray] = []
    for ind in hof:
        if len(kept) >= size:
            break
        pos = np.array(genome_positions(codec.to_genome(ind), market.features, bsg, pool)[a:b], dtype=np.float64)
        if any(_same_behaviour(pos, q) for q in kept_pos):
            continue
        kept.append(ind)
        kept_pos.append(pos)
    return kept


def hall_of_fame_report(hof: tools.HallOfFame | list[Any], codec: Codec, markets: list[Market],
                        cfg: RunConfig) -> list[HallOfFameMember]:
    """Genome, fitness and in-/out-of-sample metrics of each hall-of-fame member, with buy-and-hold over the
    same out-of-sample bars (the first market's; every market's under ``*_per_symbol`` when there are
    several).  Positions are computed on all bars (warm-ups filled before the out-of-sample range)."""
    oos_arrays, bh = [], []
    for m in markets:
        t = m.bars["open_time"].to_numpy().astype(np.int64)
        o = m.bars["open"].to_numpy().astype(np.float64)
        c = m.bars["close"].to_numpy().astype(np.float64)
        a, b = m.split.out_of_sample
        oos_arrays.append((o[a:b], c[a:b], t[a:b], bars_since_gap(t), (a, b)))
        bh.append(buy_and_hold(o[a:b], c[a:b], t[a:b], cfg.backtest).to_dict())
    members = []
    pool = BufferPool()
    for rank, ind in enumerate(hof):
        genome = codec.to_genome(ind)
        oos = []
        for m, (o, c, t, bsg, (a, b)) in zip(markets, oos_arrays):
            pos = genome_positions(genome, m.features, bsg, pool)
            oos.append(run_backtest(o, c, t, pos[a:b], cfg.backtest).metrics.to_dict())
        fitness = float(ind.fitness.values[0])
        genome = dataclasses.replace(
            genome, meta={"run_fitness": fitness, "rank": rank, "in_sample": ind.metrics, "out_of_sample": oos[0]})
        several = len(markets) > 1
        members.append(HallOfFameMember(
            rank=rank, fitness=fitness, expression=str(ind), size=len(ind), genome=genome.to_dict(),
            in_sample=ind.metrics, out_of_sample=oos[0], out_of_sample_buy_and_hold=bh[0],
            out_of_sample_per_symbol={m.symbol: x for m, x in zip(markets, oos)} if several else None,
            out_of_sample_buy_and_hold_per_symbol={m.symbol: x for m, x in zip(markets, bh)} if several else None,
        ))
    return members


def resume_run(run_dir: Path, *, progress: ProgressFn | None = None, generations: int | None = None) -> EvolveResult:
    """Finish an interrupted run from its checkpoint (``forge evolve --resume RUN_DIR``), or extend a run to
    ``generations`` in total (``--resume RUN_DIR --gens N``; the saved config is updated, so the extended run
    equals a run started with N generations).

    raises RunDirError if the run directory has no saved config or checkpoint; ConfigError if ``generations``
    is below the generations the checkpoint already holds.
    """
    config, source = read_run_config(run_dir)
    if generations is not None:
        done = int(read_checkpoint(run_dir).gen)
        if generations < done:
            raise ConfigError(f"--gens {generations}: {run_dir} already ran {done} generations; extend, not shrink")
        config = {**config, "evolve": {**config["evolve"], "generations": int(generations)}}
        write_run_config(Path(run_dir), config, source)
    return evolve(config_from_dict(config, source=source), run_dir=Path(run_dir), progress=progress, resume=True)
