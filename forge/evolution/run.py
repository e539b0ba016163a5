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
from forge.backtest import buy_and_hold
from forge.causal import CausalReport, causal_filter
from forge.core import rng
from forge.core.config import resolve_path, to_dict
from forge.core.errors import ConfigError, GenomeError, RunDirError
from forge.core.provenance import PROVENANCE_FILE, SeedProvenance, seed_provenance
from forge.core.rundir import (
    FILES, HallOfFame, HallOfFameMember, Manifest, read_checkpoint, read_run_config, write_champion, write_hall_of_fame,
    write_json_file, write_manifest, write_run_config,
)
from forge.data.discovery import load_symbol_bars, market_type, symbol_of
from forge.features.l2terminals import L2_FEATURES, attach_l2, has_recording, is_l2_feature
from forge.data.gaps import bars_since_gap, forward_returns
from forge.data.ranges import DataRange, refuse_overlap
from forge.data.loader import Coverage, coverage_of, load_bars
from forge.evolution.checkpoint import Codec, RunState, fresh_state, restore_state, save_state
from forge.evolution.clock import PhaseClock
from forge.evolution.coevolution import Adversary, Arena, Coevolution
from forge.core.runconfig import RunConfig, config_from_dict, config_to_dict, resolve_costs
from forge.evolution.evaluator import Evaluator
from forge.evolution.loop import ProgressFn, Recorder, Toolbox, ea_mu_plus_lambda, full_evaluation, initial_generation
from forge.backtest.fills import FillModel, KlineInputs
from forge.evolution.market import Market, MarketArrays
from forge.evolution.operators import sel_best_distinct, var_one
from forge.evolution.surrogate import Screen, Surrogate
from forge.data.funding import funding_interval_hours, load_funding_history
from forge.data.panel import load_panel, panel_coverage, panel_name
from forge.data.split import holdout_split
from forge.core.runconfig import PANEL_FEATURES
from forge.features import DEFAULT_FEATURES, FeatureMatrix
from forge.features.registry import default_features, funding_feature
from forge.features.library import FeatureLibrary, load_feature_library
from forge.features.regimes import RegimeModel, fit_regime_model, is_regime_feature, load_regime_model, regime_features
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
    """``YYYYmmddTHHMMSSZ-s<seed>-<6 hex of the config>`` (``-<trade spec>`` appended for a panel run)."""
    digest = Genome.canonical_hash(json.dumps(to_dict(cfg.evolve), sort_keys=True))[:6]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    trade = "".join(f"-{t.replace(':', '_')}" for t in cfg.universe.trade)  # one run per traded instrument
    return f"{stamp}-s{cfg.evolve.seed}-{digest}{trade}"


def _seed_trees(paths: tuple[str, ...], pset: gp.PrimitiveSetTyped,
                causal_dropped: frozenset[str] = frozenset()) -> list[gp.PrimitiveTree]:
    """DEAP trees of the ``--seed-genome`` files (DNA recycling).  A seed reading a feature the causal filter
    dropped is left out: seed features pass the filter like any other (issue 29: they used to bypass it)."""
    trees = []
    for p in paths:
        genome = Genome.load(p)
        if genome.root != "P":
            raise GenomeError(f"{p}: seed genome must be a strategy (root 'P'), got root {genome.root!r}")
        if causal_dropped.intersection(genome.features):
            continue
        trees.append(individual_from_genome(genome, pset))
    return trees


def _initial_trees(cfg: RunConfig, ops: gp_ops.Operators, pset: gp.PrimitiveSetTyped,
                   causal_dropped: frozenset[str] = frozenset()) -> list[gp.PrimitiveTree]:
    """The initial population: the seed genomes and mutated copies of them (``seed_fraction``), then random
    trees (ramped half-and-half between the initial depths)."""
    ec = cfg.evolve
    seeds = _seed_trees(ec.seed_genomes, pset, causal_dropped)
    init: list[gp.PrimitiveTree] = list(seeds)
    n_seeded = min(ec.population, int(round(ec.seed_fraction * ec.population))) if seeds else 0
    while len(init) < n_seeded:  # mutated copies of the seeds
        init.append(ops.mutate(seeds[len(init) % len(seeds)]))
    init += ops.init_population(ec.population - len(init), ec.init_min_depth, ec.init_max_depth)
    return init[: ec.population]


def _load_markets(cfg: RunConfig, bars: pl.DataFrame | None, coverage: Coverage | None
                  ) -> tuple[list[Market], FeatureLibrary | None]:
    """Every evolved symbol's market (bars, features incl. a feature library's, split); with ``[universe]``
    the one panel market of the traded instrument (:func:`_load_panel_market`)."""
    ec = cfg.evolve
    library = load_feature_library(ec.feature_library) if ec.feature_library else None
    if cfg.universe.symbols:
        return [_load_panel_market(cfg, library)], library
    if ec.symbols and bars is None:
        loaded = [(sym, *load_symbol_bars(ec.data, sym)) for sym in ec.symbols]
    else:
        if bars is None:
            bars, coverage = load_bars(list(ec.data) or None)
        elif coverage is None:
            coverage = coverage_of(bars)
        loaded = [(ec.symbols[0] if ec.symbols else "", bars, coverage)]
    feature_names = tuple(ec.features) or DEFAULT_FEATURES
    funding = None
    if {market_type(cov) for _s, _b, cov in loaded} == {"futures"}:  # the cost model's interval, and the clock
        split = holdout_split(loaded[0][1]["open_time"].to_numpy(), ec.in_sample_fraction)
        funding = _funding_record(ec.data, loaded[0][0] or symbol_of(loaded[0][2]), split.in_sample_ms[1])
        if not ec.features:
            feature_names = default_features("futures", funding["interval_h"])
    l2 = None
    if cfg.l2.dir:
        if len(loaded) != 1:
            raise ConfigError("--l2 joins one recording onto the traded instrument's bars; it cannot be combined "
                              f"with --symbols ({', '.join(s for s, _b, _c in loaded)})")
        sym, b, cov = loaded[0]
        b, added, l2 = _join_l2(cfg, b, sym or symbol_of(cov))
        loaded = [(sym, b, cov)]
        feature_names = feature_names + tuple(n for n in added if n not in feature_names)
    if library is not None:
        feature_names = feature_names + tuple(n for n in library.names if n not in feature_names)
    universe = {k: v for k, v in (("funding", funding), ("l2", l2)) if v is not None} or None
    markets = [Market.build(sym, b, cov, feature_names, ec.in_sample_fraction, library, universe=universe)
               for sym, b, cov in loaded]
    return markets, library


def _funding_hours(markets: list[Market]) -> int | None:
    """The traded perpetual's funding interval (hours) from its funding history record, None when the run has
    no record (spot, synthetic data, several symbols: the preset's 8 h applies)."""
    uni = markets[0].universe if len(markets) == 1 else None
    rec = (uni or {}).get("funding")
    return int(rec["interval_h"]) if rec else None


def _funding_record(data: tuple[str, ...], symbol: str, until_ms: int) -> dict[str, Any]:
    """{"interval_h", "source", "feature", "files"} of a perpetual's funding interval: from its funding-rate
    history under the data paths up to ``until_ms`` (the in-sample end), else 8 h ("default")."""
    hist = load_funding_history(data, symbol) if (data and symbol) else None
    hours, source = funding_interval_hours(hist, until_ms)
    return {"interval_h": int(hours), "source": source, "feature": funding_feature(int(hours)),
            "settlements": int(hist.height) if hist is not None else 0}


def _load_panel_market(cfg: RunConfig, library: FeatureLibrary | None) -> Market:
    """The panel market of ``[universe]``: every instrument aligned on the traded one's UTC minutes
    (``forge.data.panel``); terminals: the traded instrument's defaults (with its minutes-to-funding clock
    when it is a perpetual) or ``[evolve] features``, plus ``[universe] features`` (default
    ``PANEL_FEATURES``) of every other instrument as ``<feature>__<TAG>``."""
    ec, uc = cfg.evolve, cfg.universe
    if ec.symbols:
        raise ConfigError("[universe] (--universe) and [evolve] symbols (--symbols) are two modes: a panel of "
                          "instruments read by one strategy, or the same strategy on each symbol; set one")
    if len(uc.trade) != 1:
        raise ConfigError(f"one evolve run trades one instrument; got trade = {list(uc.trade)} "
                          "(forge evolve --trade A,B runs one evolution per traded instrument)")
    tinst, panel, covs, insts = load_panel(ec.data, uc.symbols, uc.trade[0])
    split = holdout_split(panel["open_time"].to_numpy(), ec.in_sample_fraction)
    funding = _funding_record(ec.data, tinst.symbol, split.in_sample_ms[1]) if tinst.market == "perp" else None
    own = tuple(ec.features) or (default_features("futures", funding["interval_h"]) if funding else DEFAULT_FEATURES)
    others = tuple(uc.features) or PANEL_FEATURES
    names = own + tuple(panel_name(f, i) for tag, i in insts.items() if tag != tinst.tag for f in others)
    l2 = None
    if cfg.l2.dir:
        panel, added, l2 = _join_l2(cfg, panel, tinst.symbol, insts, tinst.tag)
        names = names + tuple(n for n in added if n not in names)
    if library is not None:
        names = names + tuple(n for n in library.names if n not in names)
    cover = panel_coverage(panel, covs)
    universe = {"trade": tinst.tag, "specs": list(uc.symbols), "trade_spec": uc.trade[0],
                "naming": "<feature>__<SYMBOL>_<spot|perp> for non-traded instruments; bare names = the traded one",
                "instruments": {tag: {"symbol": i.symbol, "market": i.market, **cover[tag]}
                                for tag, i in insts.items()},
                "funding": funding, **({"l2": l2} if l2 is not None else {})}
    return Market.build(tinst.tag, panel, covs[tinst.tag], names, ec.in_sample_fraction, library, universe=universe)


def _join_l2(cfg: RunConfig, frame: pl.DataFrame, symbol: str, insts: dict[str, Any] | None = None,
             traded: str | None = None) -> tuple[pl.DataFrame, tuple[str, ...], dict[str, Any]]:
    """``[l2]``: join the traded instrument's recorded book (``symbol``; optional when ``[l2] symbols`` names
    other books and it was not recorded) and each ``[l2] symbols`` book of the universe (``insts``, tags ->
    Instrument; ``traded`` its traded tag) onto ``frame``.  returns (frame, the L2 terminals added, the manifest
    record {"books": [attach_l2 records]}).  raises ConfigError / DataError."""
    if cfg.l2.symbols and insts is None:
        raise ConfigError("[l2] symbols (--l2-symbols) joins the books of other instruments of a universe; "
                          "this run has no --universe")
    wanted = tuple(cfg.l2.features or L2_FEATURES)
    books: list[dict[str, Any]] = []
    names: tuple[str, ...] = ()
    if not cfg.l2.symbols or has_recording(cfg.l2.dir, symbol, cfg.l2.venue):
        frame, rec = attach_l2(frame, cfg.l2.dir, symbol, venue=cfg.l2.venue, k=cfg.l2.k)
        books.append(rec)
        names += wanted
    for spec in cfg.l2.symbols:
        inst = _universe_instrument(insts, spec)
        if inst.tag != traded:
            frame, rec = attach_l2(frame, cfg.l2.dir, inst.symbol, venue=cfg.l2.venue, k=cfg.l2.k, instrument=inst)
            books.append(rec)
            names += tuple(panel_name(f, inst) for f in wanted)
    return frame, names, {"books": books}


def _universe_instrument(insts: dict[str, Any], spec: str) -> Any:
    """The universe instrument an ``[l2] symbols`` spec (``SYMBOL[:market]``) names; raises ConfigError when the
    universe holds none (or several: give the market)."""
    from forge.data.panel import parse_instrument

    sym, mkt = parse_instrument(spec)  # the market is canonical ("spot" | "perp") or None
    hits = [i for i in insts.values() if i.symbol == sym and (mkt is None or i.market == mkt)]
    if len(hits) != 1:
        raise ConfigError(f"[l2] symbols: {spec!r} is {'not an instrument' if not hits else 'ambiguous'} of the "
                          f"universe ({', '.join(insts)}){'; give SYMBOL:spot or SYMBOL:perp' if hits else ''}")
    return hits[0]


def _synthesize_in_run(cfg: RunConfig, markets: list[Market], run_dir: Path | None, resume: bool,
                       notify: ProgressFn) -> tuple[list[Market], FeatureLibrary]:
    """``[evolve] synthesize``: a feature library fitted by ``forge.synthesize`` on the first market's
    **in-sample** bars only (its own selection split inside them), within ``synthesize_seconds``; a resumed run
    reuses the library frozen in its run directory (never refitted).  The markets get its features as
    terminals; the library is written to the run directory like a ``--features`` one, and the out-of-sample
    leak refusal checks its recorded fitted range like any library's."""
    from forge.synthesize import load_synthesis_config, synthesize  # the Forge app; lazy (sklearn)

    frozen = Path(run_dir) / FILES.feature_library if run_dir is not None else None
    if resume and frozen is not None and frozen.is_file():
        library = load_feature_library(frozen)
    else:
        primary = markets[0]
        a, b = primary.split.in_sample
        scfg = dataclasses.replace(load_synthesis_config(None), seed=cfg.evolve.seed)
        t0 = time.perf_counter()
        library = synthesize(primary.bars.slice(a, b - a), scfg, time_budget_s=cfg.evolve.synthesize_seconds)
        library = dataclasses.replace(library, meta={**library.meta, "fitted_in_run": True,
                                                     "seconds": time.perf_counter() - t0})
        notify({"event": "synthesize", "features": list(library.names), "seconds": library.meta["seconds"]})
    ec = cfg.evolve
    rebuilt = [Market.build(m.symbol, m.bars, m.coverage, m.features.names + tuple(
        n for n in library.names if n not in m.features.names), ec.in_sample_fraction, library,
        universe=m.universe)
        for m in markets]
    return rebuilt, library


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


def refuse_out_of_sample_leaks(cfg: RunConfig, markets: list[Market], library: FeatureLibrary | None,
                               regimes: RegimeModel | None = None) -> list[SeedProvenance]:
    """No out-of-sample leak through fitted inputs (issue 17 item 5): refuse a feature library (``--features``,
    or synthesized in the run), a regime model (``[regimes]``, fitted in the run or given as ``model``) or,
    with co-evolution on, a simulator calibration (``[coevolution] calibration``) fitted on bars that overlap
    any market's out-of-sample range; and (issue 29 item 1) a seed genome (``--seed-genome``, a request's
    seed, a resumed run's seeds) selected on such bars (``forge.core.provenance``): always when its selection
    record is known, and when it has none (selected, for all we know, on every bar before its file's time)
    unless ``[evolve] allow_unknown_provenance``.  returns every seed's provenance.  A calibration that records no ``data_range`` (written before
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
    lib_label = cfg.evolve.feature_library or "feature library synthesized in the run"
    lib_range = _fitted_range_of_library(library, lib_label) if library is not None else None
    seeds = [seed_provenance(p) for p in cfg.evolve.seed_genomes]
    for m in markets:
        (a, b), (first, last) = m.split.out_of_sample, m.split.out_of_sample_ms
        oos = DataRange(first, last, b - a)
        if lib_range is not None:
            refuse_overlap(f"{lib_label}: feature library", lib_range, oos,
                           "synthesize it on bars before the out-of-sample range (forge synthesize selects on its "
                           "in-sample head)")
        if regimes is not None:
            refuse_overlap(f"{cfg.regimes.model or FILES.regime_model}: regime model", regimes.data_range, oos,
                           "fit it on bars before the out-of-sample range ([regimes] enabled fits it on the "
                           "in-sample head; a [regimes] model file must be fitted on earlier bars)")
        if cal_range is not None:
            refuse_overlap(f"{cal_path}: simulator calibration", cal_range, oos,
                           "re-fit it on in-sample bars (forge calibrate fits the leading in_sample_fraction of "
                           "--data) or run with --coevolution off")
        for s in seeds:
            hit = s.overlapping(oos)
            if not hit:
                continue
            if s.known:
                raise ConfigError(f"{s.path}: seed genome was selected on {hit[0]} ({s.source}), which overlaps this "
                                  f"run's out-of-sample range {oos}; seed with a genome selected before it, or "
                                  "evolve without the seed")
            if not cfg.evolve.allow_unknown_provenance:
                raise ConfigError(f"{s.path}: seed genome records no selection bars, so it counts as selected on "
                                  f"every bar before its file's time ({hit[0]}), which overlaps this run's "
                                  f"out-of-sample range {oos}; use a published champion or a run's champion.json, "
                                  "or pass --allow-unknown-provenance (recorded in the manifest and report)")
    return seeds


def _regime_model(cfg: RunConfig, markets: list[Market], run_dir: Path | None, resume: bool) -> RegimeModel | None:
    """The run's frozen regime model (``[regimes]``), or None when off.  Fitted on the first market's
    IN-SAMPLE bars only (``forge.features.regimes.fit_regime_model``, seed from the run seed); a resumed run
    reads its own ``regime_model.json`` and a ``[regimes] model`` file is read as is: never refitted."""
    rc = cfg.regimes
    if not rc.enabled:
        return None
    if resume:
        return load_regime_model(Path(run_dir) / FILES.regime_model)
    if rc.model:
        return load_regime_model(resolve_path(rc.model))
    m = markets[0]
    a, b = m.split.in_sample
    return fit_regime_model(m.bars.slice(a, b - a), inputs=tuple(rc.inputs), rv_window=rc.rv_window,
                            min_states=rc.min_states, max_states=rc.max_states, covariance_type=rc.covariance_type,
                            n_iter=rc.n_iter, n_init=rc.n_init, max_bars=rc.max_bars, seed=rng.int_seed(cfg.evolve.seed, "regimes"),
                            meta={"symbol": m.symbol or None, "fitted_on": "in-sample rows "
                                  f"[{a}, {b}) of {m.symbol or 'the data'}"})


def _with_regimes(market: Market, model: RegimeModel) -> Market:
    """``market`` with the regime terminals appended to its features (filtered with the frozen model)."""
    fm = market.features
    extra = tuple(n for n in model.feature_names if n not in fm.names)
    rf = regime_features(model, market.bars, extra)
    return dataclasses.replace(market, features=FeatureMatrix(
        names=fm.names + rf.names, values=np.ascontiguousarray(np.vstack([fm.values, rf.values])),
        lookbacks=tuple(fm.lookbacks) + tuple(rf.lookbacks)))


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
    # seed genomes' features get no exemption; regime terminals gate rules: their own linear link to the
    # return is ~0 by design, so they are kept
    names = tuple(n for n in features.names if n in report.kept or is_regime_feature(n))
    return [m.select(names) for m in markets], report


def run_fill_model(cfg: RunConfig, markets: list[Market]) -> FillModel:
    """The run's fill model (``[execution] mode`` with the [costs] preset's maker fee resolved for these
    markets, ``forge.backtest.fills.FillModel.for_run``): fitness, the out-of-sample report and the Gauntlet
    score positions with it.  raises ConfigError (bad [execution], unreadable policy file)."""
    costs = resolve_costs(cfg, [market_type(m.coverage) for m in markets], _funding_hours(markets))[1]
    return FillModel.for_run(cfg.execution, costs, costs["taker_fee_bps"])


def _kline_rows(fill: FillModel, bars: pl.DataFrame, rows: tuple[int, int]) -> KlineInputs | None:
    """The kline inputs of ``rows`` (estimated on the bars up to rows[1]; None for taker)."""
    kl = fill.inputs(*(bars[k].to_numpy()[:rows[1]] for k in ("high", "low", "close", "volume")))
    return kl.rows(*rows) if kl is not None else None


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
    if ec.synthesize:
        markets, library = _synthesize_in_run(cfg, markets, run_dir, resume, notify)
    regimes = _regime_model(cfg, markets, run_dir, resume)
    seeds = refuse_out_of_sample_leaks(cfg, markets, library, regimes)
    cfg = resolve_costs(cfg, [market_type(m.coverage) for m in markets],
                        _funding_hours(markets))[0]  # [costs] preset -> [backtest] fees and funding interval
    run_dir, run_id = _prepare_run_dir(cfg, run_dir, resume)
    if library is not None:  # the gauntlet and the Crucible recompute synthesized features from this copy
        write_json_file(run_dir, FILES.feature_library, library.to_dict())
    if regimes is not None:  # the frozen artifact the gauntlet and the Crucible filter with
        if not resume:
            write_json_file(run_dir, FILES.regime_model, regimes.to_dict())
        markets = [_with_regimes(m, regimes) for m in markets]
    causal_report = None
    write_json_file(run_dir, PROVENANCE_FILE, {"allow_unknown_provenance": ec.allow_unknown_provenance,
                                               "seeds": [s.to_dict() for s in seeds]})
    candidates = set(markets[0].features.names)
    if cfg.causal.enabled:
        markets, causal_report = _filter_features(cfg, markets, run_dir, notify)
    causal_dropped = frozenset(candidates - set(markets[0].features.names))
    feature_names = markets[0].features.names
    fill = run_fill_model(cfg, markets)
    segments = tuple(m.in_sample_arrays(fill) for m in markets)
    pset = build_pset(feature_names)
    codec, ops = Codec(pset), gp_ops.Operators(pset, max_depth=ec.max_depth, max_size=ec.max_size)
    use_surrogate = cfg.surrogate.enabled and ec.generations > 0
    notify({"event": "start", "run_id": run_id, "run_dir": str(run_dir), "n_bars": markets[0].bars.height,
            "split": markets[0].split.to_dict(), "features": list(feature_names), "generations": ec.generations,
            "population": ec.population, "offspring": ec.n_offspring, "jobs": ec.jobs,
            "surrogate": use_surrogate, "resume": resume})
    pool_kw = dict(backend=ec.backend, scheduler=ec.scheduler)
    with Evaluator(segments, cfg.backtest, cfg.fitness, ec.max_size, ec.jobs, ec.subtree_cache_mb,
                   aggregate=ec.symbol_aggregate, fill=fill, **pool_kw) as evaluator, \
            Evaluator(_proxy_segment(segments[0], cfg), cfg.backtest, cfg.fitness, ec.max_size, ec.jobs,
                      fill=fill, proxy=True, **pool_kw) as proxy_eval:
        coev = (Coevolution(cfg.coevolution, Arena(cfg.coevolution, feature_names, library, seed=ec.seed,
                                                   regimes=regimes),
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
            initial_generation(state, lambda: [codec.new(t) for t in _initial_trees(cfg, ops, pset, causal_dropped)], toolbox,
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
    fill = run_fill_model(cfg, markets)
    members = hall_of_fame_report(distinct, codec, markets, cfg, fill=fill)
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
        costs={**resolve_costs(cfg, [market_type(m.coverage) for m in markets], _funding_hours(markets))[1],
               "execution": fill.describe()},
        universe=primary.universe,
        pset_version=champion.pset_version, candidates_evaluated=n_evaluated,
        generations_run=cfg.evolve.generations, resumed=resumed, seconds=seconds, packages=_package_versions(),
        platform={"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        files={"generations": FILES.generations, "hall_of_fame": FILES.hall_of_fame, "champion": FILES.champion,
               "evaluated": FILES.evaluated, "checkpoint": FILES.checkpoint if cfg.evolve.checkpoint else None,
               "feature_library": FILES.feature_library if library is not None else None,
               "regime_model": FILES.regime_model if (run_dir / FILES.regime_model).is_file() else None},
    )
    write_hall_of_fame(run_dir, HallOfFame(run_id=run_id, members=tuple(members)))
    write_champion(run_dir, champion)
    write_manifest(run_dir, manifest)
    _record_trials(run_dir, manifest, cfg.evolve.trial_ledger)
    notify({"event": "done", "run_dir": str(run_dir), "seconds": seconds, "candidates_evaluated": n_evaluated})
    return EvolveResult(run_dir=run_dir, run_id=run_id, hall_of_fame=[m.to_dict() for m in members],
                        champion=champion, logbook=state.logbook, manifest=manifest.to_dict())


def _record_trials(run_dir: Path, manifest: Manifest, configured: str) -> None:
    """Append the run's trial count on its in-sample bars to the trial ledger (``forge.core.ledger``).
    raises RunDirError when the ledger cannot be written (the count is part of the run's honesty record)."""
    from forge.core.ledger import append_entry, entry_for_manifest, ledger_path

    entry = entry_for_manifest(manifest)
    if entry is None:
        return
    path = ledger_path(run_dir, configured)
    try:
        append_entry(path, entry)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot record the run's trials in the trial ledger ({exc.strerror or exc})") from None


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
                        cfg: RunConfig, *, fill: FillModel | None = None) -> list[HallOfFameMember]:
    """Genome, fitness and in-/out-of-sample metrics of each hall-of-fame member, with buy-and-hold over the
    same out-of-sample bars (the first market's; every market's under ``*_per_symbol`` when there are
    several).  Positions are computed on all bars (warm-ups filled before the out-of-sample range); every
    backtest uses the run's fill model (``fill``; default :func:`run_fill_model`), buy-and-hold's too."""
    if fill is None:
        fill = run_fill_model(cfg, markets)
    oos_arrays, bh = [], []
    for m in markets:
        t = m.bars["open_time"].to_numpy().astype(np.int64)
        o = m.bars["open"].to_numpy().astype(np.float64)
        c = m.bars["close"].to_numpy().astype(np.float64)
        a, b = m.split.out_of_sample
        kl = _kline_rows(fill, m.bars, (a, b))
        oos_arrays.append((o[a:b], c[a:b], t[a:b], bars_since_gap(t), (a, b), kl))
        bh.append((buy_and_hold(o[a:b], c[a:b], t[a:b], cfg.backtest) if fill.taker else
                   fill.run(o[a:b], c[a:b], t[a:b], np.ones(b - a), cfg.backtest, kl).metrics).to_dict())
    members = []
    pool = BufferPool()
    for rank, ind in enumerate(hof):
        genome = codec.to_genome(ind)
        oos = []
        for m, (o, c, t, bsg, (a, b), kl) in zip(markets, oos_arrays):
            pos = genome_positions(genome, m.features, bsg, pool)
            oos.append(fill.run(o, c, t, pos[a:b], cfg.backtest, kl).metrics.to_dict())
        fitness = float(ind.fitness.values[0])
        meta = {"run_fitness": fitness, "rank": rank, "in_sample": ind.metrics, "out_of_sample": oos[0]}
        if markets[0].universe is not None and markets[0].universe.get("trade"):  # a panel genome: what it trades
            meta["universe"] = {"trade": markets[0].universe["trade"],
                                "instruments": list(markets[0].universe["instruments"])}
        if (markets[0].universe or {}).get("l2") and any(is_l2_feature(f) for f in genome.features):
            meta["l2"] = markets[0].universe["l2"]  # the recording its book terminals are rebuilt from
        genome = dataclasses.replace(genome, meta=meta)
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
