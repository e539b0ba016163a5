"""``forge evolve`` and ``forge config show``: run configuration from file and flags, the progress view,
the ``--json`` summary and the hall-of-fame table (also used by ``gauntlet show``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.markup import escape
from rich.table import Table

from commands.edge import EXIT_INTERRUPTED, console, edge, err_console
from forge.core.errors import ConfigError
from forge.core.jsonsafe import dumps as json_dumps
from commands.ui import fmt_drawdown


@edge
def evolve(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config (default: configs/default.toml).")] = None,
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="Kline files or folders (repeatable); default: embedded BTCUSDT sample.")] = None,
    gens: Annotated[Optional[int], typer.Option("--gens", help="Generations.")] = None,
    pop: Annotated[Optional[int], typer.Option("--pop", help="Population size (mu).")] = None,
    offspring: Annotated[Optional[int], typer.Option("--offspring", help="Children per generation (lambda).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Master seed.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Parallel fitness workers (joblib).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Parent folder of run directories.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="Exact run directory to write.")] = None,
    features: Annotated[Optional[str], typer.Option("--features", help="Comma-separated feature names (terminals), or a feature library LIB.json from `forge synthesize` whose features are added.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Finish an interrupted run directory from its checkpoint (with the run's saved config); with --gens N, extend it to N generations.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run directory given with --run-dir (its old files are deleted).")] = False,
    seed_genome: Annotated[Optional[list[Path]], typer.Option("--seed-genome", help="Genome file seeding part of the initial population (repeatable).")] = None,
    allow_unknown_provenance: Annotated[bool, typer.Option("--allow-unknown-provenance", help="Accept a seed genome that records no selection bars although, dated by its file, it may have been selected on out-of-sample bars (recorded in the manifest and gauntlet report).")] = False,
    causal_filter: Annotated[Optional[str], typer.Option("--causal-filter", help="PCMCI feature filter: on|off.")] = None,
    surrogate: Annotated[Optional[str], typer.Option("--surrogate", help="LightGBM offspring screening: on|off.")] = None,
    coevolution: Annotated[Optional[str], typer.Option("--coevolution", help="Predator/prey co-evolution in the calibrated simulator: on|off.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Fitness workers: loky (local processes) or dask (a cluster).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786.")] = None,
    symbols: Annotated[Optional[str], typer.Option("--symbols", help="Comma-separated symbols evaluated together: the SAME strategy on each symbol, fitness aggregated, e.g. BTCUSDT,ETHUSDT (files <SYMBOL>-1m-* under --data).")] = None,
    universe: Annotated[Optional[str], typer.Option("--universe", help="Comma-separated instruments on one clock, SYMBOL[:spot|perp], e.g. BTCUSDT,FILUSDT,ALGOUSDT: the strategy reads every instrument's features (ret_5__BTCUSDT_spot) and trades --trade.")] = None,
    trade: Annotated[Optional[str], typer.Option("--trade", help="Instrument(s) of --universe to trade; A,B evolves one strategy per traded instrument (one run directory each).")] = None,
    l2: Annotated[Optional[Path], typer.Option("--l2", help="A `crucible record` directory: its L2 books of the traded symbol, as 1-minute Liquidity Lens bars, become terminals (l2_ofi_z_60, l2_pressure, ...; NaN = flat where nothing was recorded).")] = None,
    l2_symbols: Annotated[Optional[str], typer.Option("--l2-symbols", help="With --universe: other instruments whose recorded books are joined too (terminals l2_pressure__BTCUSDT_perp); default: the traded one's only.")] = None,
    l2_venue: Annotated[Optional[str], typer.Option("--l2-venue", help="Venue folder of the --l2 recording (default: the only one holding the traded symbol).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a final summary object as strict JSON on stdout (progress goes to stderr).")] = False,
) -> None:
    """Evolve strategies; writes artifacts/runs/<run_id>/ (manifest, generations, hall of fame, champion)."""
    if resume is not None:
        _refuse_with_resume(resume, {
            "--config": config, "--data": data, "--pop": pop, "--offspring": offspring, "--seed": seed,
            "--out": out, "--run-dir": run_dir, "--features": features, "--seed-genome": seed_genome,
            "--causal-filter": causal_filter, "--surrogate": surrogate, "--coevolution": coevolution,
            "--symbols": symbols, "--universe": universe, "--trade": trade, "--jobs": jobs, "--backend": backend, "--scheduler": scheduler,
            "--l2": l2, "--l2-venue": l2_venue, "--l2-symbols": l2_symbols,
            "--force": force or None})
    lib_path = features if features and features.lower().endswith(".json") else None
    if lib_path and not Path(lib_path).is_file():
        raise ConfigError(f"--features {lib_path}: no such feature library file")
    cfg, _flags = resolve_run_config(
        config,
        causal={"enabled": _on_off(causal_filter, "--causal-filter")},
        surrogate={"enabled": _on_off(surrogate, "--surrogate")},
        coevolution={"enabled": _on_off(coevolution, "--coevolution")},
        evolve=dict(
        generations=gens,
        population=pop,
        offspring=offspring,
        seed=seed,
        jobs=jobs,
        output_dir=str(out) if out else None,
        data=tuple(str(p) for p in data) if data else None,
        features=tuple(f.strip() for f in features.split(",") if f.strip()) if features and not lib_path else None,
        feature_library=lib_path,
        seed_genomes=tuple(str(p) for p in seed_genome) if seed_genome else None,
        allow_unknown_provenance=True if allow_unknown_provenance else None,
        backend=backend,
        scheduler=scheduler,
        symbols=tuple(x.strip().upper() for x in symbols.split(",") if x.strip()) if symbols else None,
        ),
        universe=dict(symbols=_csv(universe), trade=_csv(trade)),
        l2=dict(dir=str(l2) if l2 else None, venue=l2_venue, symbols=_csv(l2_symbols)),
    )
    trades = cfg.universe.trade
    if len(trades) > 1:  # one strategy per traded instrument: one run each
        for t in trades:
            one = with_overrides_universe(cfg, t)
            sub = (run_dir / t.replace(":", "_")) if run_dir is not None else None
            _evolve_one(one, sub, force, as_json)
        return
    _evolve_one(cfg, run_dir, force, as_json, resume=resume, gens=gens)


def _csv(value: Optional[str]) -> Optional[tuple[str, ...]]:
    """A comma-separated flag as a tuple of stripped, non-empty items (None when the flag is absent)."""
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


def with_overrides_universe(cfg: Any, trade: str) -> Any:
    """``cfg`` trading only ``trade`` (``--trade A,B`` runs one evolution per instrument)."""
    from forge.core.runconfig import with_overrides

    return with_overrides(cfg, "universe", trade=(trade,))


def _evolve_one(cfg: Any, run_dir: Optional[Path], force: bool, as_json: bool, *, resume: Optional[Path] = None,
                gens: Optional[int] = None) -> None:
    """One ``forge evolve`` run (or resume) with its progress view, Ctrl-C message and summary."""
    from forge.evolution.run import evolve as run_evolve
    from forge.evolution.run import resume_run
    from commands.ui import EvolveProgress

    out = err_console if as_json else console  # --json: stdout carries only the summary object
    # every input checked before any work starts (nothing written yet)
    dask_banner = _preflight(cfg, run_dir, force) if resume is None else ""
    where: dict[str, Any] = {"run_dir": resume if resume is not None else run_dir, "gen": None}
    view = EvolveProgress(out, live=out.is_terminal)
    # dask workers compile on their own machines; here the kernels compile in two child processes from now
    # on, while this process loads the data and runs the causal filter, and the run waits for them before
    # its fitness workers start (the "start" event), so no two processes compile the same kernels
    job = _start_compile(view, cfg.coevolution.enabled) if cfg.evolve.backend == "loky" else None
    on_event = _progress_handler(out, cfg, view, where, dask_banner,
                                 before_workers=lambda: _finish_compile(view, job))
    try:
        if resume is not None:
            result = resume_run(resume, progress=on_event, generations=gens)
        else:
            result = run_evolve(cfg, run_dir=run_dir, progress=on_event)
    except KeyboardInterrupt:
        view.stop()
        err_console.print(interrupted_message(where["run_dir"], where["gen"]), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if job is not None:
            job.stop()
        view.stop()
    if as_json:
        print(json_dumps(evolve_summary(result)))
        return
    print_hall(result.hall_of_fame[:5])
    console.print(f"[green]wrote[/] {result.run_dir}  ({result.manifest['candidates_evaluated']:,} candidates evaluated)")


def _start_compile(view: Any, coevolution: bool) -> Any:
    """Start filling numba's cache when it lacks a kernel the run uses (``forge.warmup.Warmup``: the VM and
    the other kernels compiled side by side in two child processes, the causal filter's kernels left to
    this process's own filter); returns the running job, or None when the cache is complete.  Shows the
    cache state on ``view`` (EvolveProgress)."""
    import os

    from forge.warmup import Warmup, cache_state, run_modules

    state = cache_state(run_modules(coevolution))
    view.cached = state
    if state.complete:
        return None
    view.compiling(state)
    return Warmup(parallel=(os.cpu_count() or 1) > 1, coevolution=coevolution, causal=False)


def _finish_compile(view: Any, job: Any) -> None:
    """Wait for the warm-up ``job`` (None: nothing to wait for), showing how far along it is on ``view``.
    A failed warm-up is reported and the run compiles what it still needs itself."""
    if job is None:
        return
    try:
        _secs, state = job.wait(progress=view.compiling)
    except RuntimeError as exc:
        err_console.print(f"{exc}; the run compiles its kernels itself", highlight=False, markup=False)
        from forge.warmup import cache_state

        view.cached = cache_state(job.mods)
        return
    view.compiling(state)


def _refuse_with_resume(resume: Path, flags: dict[str, Any]) -> None:
    """--resume takes only --gens: raise ConfigError naming every other flag given ({flag: value or None})."""
    given = [flag for flag, v in flags.items() if v is not None]
    if given:
        raise ConfigError(f"--resume {resume} continues the run with its saved config; {', '.join(given)} "
                          "cannot be combined with it (only --gens N, to extend the run to N generations)")


def _preflight(cfg: Any, run_dir: Optional[Path], force: bool) -> str:
    """Check a new run's inputs (data paths, seed genomes, the dask scheduler, --run-dir) before any work;
    returns the dask banner ("" for loky). raises DataError / GenomeError / ConfigError / RunDirError."""
    from commands.preflight import check_dask, check_data_paths, check_seed_genomes, prepare_run_dir

    dask_banner = ""
    if cfg.universe.symbols:
        from forge.data.panel import parse_instrument

        syms = tuple(dict.fromkeys(parse_instrument(x)[0] for x in (*cfg.universe.symbols, *cfg.universe.trade)))
        if not cfg.evolve.data:
            raise ConfigError("--universe needs --data DIR (the folder holding the instruments' kline files)")
        check_data_paths(cfg.evolve.data, syms, flag="--universe")
    else:
        check_data_paths(cfg.evolve.data, cfg.evolve.symbols)
    check_seed_genomes(cfg.evolve.seed_genomes)
    if cfg.evolve.backend == "dask":
        n_workers = check_dask(cfg.evolve.scheduler)
        dask_banner = f"backend dask at {cfg.evolve.scheduler}: {n_workers} worker{'s' if n_workers != 1 else ''}"
    if run_dir is not None:
        prepare_run_dir(run_dir, force=force)
    return dask_banner


def _causal_table(e: dict[str, Any], cfg: Any) -> Table:
    """The PCMCI filter's decision table of a "causal" progress event (one row per candidate feature)."""
    from commands.ui import causal_decision

    kept = set(e["kept"])
    rows = e["rows"]
    decisions = [causal_decision(list(r), kept, cfg.causal.alpha_level) for r in rows[1:]]
    n_floor = sum(d == "kept (floor)" for d in decisions)
    title = f"PCMCI causal filter: kept {len(kept)} of {len(e['candidates'])} features"
    if n_floor:
        title += f" ({n_floor} only to reach keep_at_least={cfg.causal.keep_at_least})"
    table = Table(title=title)
    if rows:
        for col in rows[0]:
            table.add_column(str(col), justify="right")
        for r, dec in zip(rows[1:], decisions):
            table.add_row(*[str(v) for v in r[:-1]], dec)
    return table


def _progress_handler(out: Any, cfg: Any, view: Any, where: dict[str, Any], dask_banner: str,
                      before_workers: Callable[[], None] = lambda: None) -> Callable[[dict[str, Any]], None]:
    """The progress callback of one evolve run: prints the causal table and the run banner to ``out``,
    drives ``view`` (EvolveProgress) and records the run directory and last generation in ``where``
    (what Ctrl-C reports).  before_workers: called at the "start" event, after the banner and before the
    run starts its fitness workers (the kernel warm-up is waited for there)."""

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "causal":
            out.print(_causal_table(e, cfg))
        elif e["event"] == "start":
            where["run_dir"] = e.get("run_dir", where["run_dir"])
            if e.get("run_dir"):  # forge runs list finds it wherever --run-dir put it
                from forge.core.runconfig import load_run_config
                from forge.core.runs import index_path, record_run

                record_run(index_path(load_run_config(None).evolve.output_dir), e["run_id"], e["run_dir"])
            s = e["split"]
            out.print(
                f"[bold]run[/] {e['run_id']}  bars {e['n_bars']:,}  in-sample {s['in_sample']['first'][:16]} → "
                f"{s['in_sample']['last'][:16]}  out-of-sample {s['out_of_sample']['first'][:16]} → "
                f"{s['out_of_sample']['last'][:16]}"
            )
            workers = f"jobs={e['jobs']}" if cfg.evolve.backend != "dask" else (dask_banner or "backend dask")
            out.print(f"μ={e['population']} λ={e['offspring']} {workers} features: {', '.join(e['features'])}",
                      highlight=False)
            if cfg.execution.mode != "taker":
                out.print(f"note: [execution] mode = {cfg.execution.mode!r}: fitness, the out-of-sample report and "
                          "the Gauntlet score positions with the kline fill model (passive limits filled only when a "
                          "later bar trades through them); the default is taker because that backtest is below half "
                          "the taker's speed (benchmarks/RESULTS.md)", highlight=False)
            before_workers()
            view.start(e["generations"])
        elif e["event"] == "generation":
            where["gen"] = e.get("gen")
            view.generation(e)
        elif e["event"] == "done":
            view.stop()

    return on_event


def interrupted_message(run_dir: Any, gen: Optional[int]) -> str:
    """What Ctrl-C prints: the command that resumes from the last checkpoint (written after every
    generation), or why there is nothing to resume."""
    if run_dir is None:
        return "interrupted before the run directory was created; nothing to resume"
    if not (Path(run_dir) / "checkpoint.json").is_file():
        return (f"interrupted before the first checkpoint of {run_dir}; nothing to resume "
                f"(start again with --run-dir {run_dir} --force)")
    done = f" after generation {gen}" if gen is not None else ""
    return f"interrupted{done}; resume with: forge evolve --resume {run_dir}"


def evolve_summary(result: Any) -> dict[str, Any]:
    """The ``forge evolve --json`` object: run id and directory, generations, evaluations, seconds,
    the best-so-far fitness per generation, and the hall of fame (rank, sha256, expression, size,
    fitness, in-sample / out-of-sample / buy-and-hold metrics), champion first."""
    from forge.core.jsonsafe import revive_nonfinite

    m = result.manifest
    curve = []
    gen_file = Path(result.run_dir) / "generations.jsonl"
    if gen_file.is_file():
        for line in gen_file.read_text().splitlines():
            try:
                g = json.loads(line)
            except ValueError:
                continue
            curve.append({"gen": g.get("gen"), "best": g.get("best"), "best_so_far": g.get("hof_best"),
                          "median": g.get("median")})
    hall = [{"sha256": (h.get("genome") or {}).get("sha256"), **{k: v for k, v in h.items() if k != "genome"}}
            for h in result.hall_of_fame]
    return revive_nonfinite({
        "schema": "forge-evolve-summary/1", "run_id": result.run_id, "run_dir": str(result.run_dir),
        "generations_run": m.get("generations_run"), "candidates_evaluated": m.get("candidates_evaluated"),
        "seconds": m.get("seconds"), "resumed": m.get("resumed"), "features": m.get("features"),
        "split": m.get("split"), "champion": hall[0] if hall else None, "hall_of_fame": hall, "generations": curve,
        "files": m.get("files")})


def resolve_run_config(config: Optional[Path], **flags: dict[str, Any]) -> tuple[Any, dict[str, set[str]]]:
    """Load the run config (``config`` or the packaged default) and apply command-line overrides.

    flags: {section: {key: value or None}}; None values are not overrides.
    returns (RunConfig, {section: set of keys set by a flag}). raises ConfigError.
    """
    from forge.core.runconfig import load_run_config, with_overrides

    cfg = load_run_config(config)
    applied: dict[str, set[str]] = {}
    for section, changes in flags.items():
        real = {k: v for k, v in changes.items() if v is not None}
        if real:
            cfg = with_overrides(cfg, section, **real)
            applied[section] = set(real)
    return cfg, applied


def config_provenance(cfg: Any, applied: dict[str, set[str]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{section: {key: {"value", "source"}}} where source is "flag", "file" (the key is in the TOML
    file ``cfg.source``) or "default" (the dataclass default)."""
    from forge.core.config import read_toml, to_dict
    from forge.core.runconfig import SECTIONS

    raw = read_toml(cfg.source) if Path(str(cfg.source)).is_file() else {}
    outd: dict[str, dict[str, dict[str, Any]]] = {}
    for name in SECTIONS:
        values = to_dict(getattr(cfg, name))
        in_file = raw.get(name, {}) if isinstance(raw.get(name), dict) else {}
        outd[name] = {k: {"value": v, "source": "flag" if k in applied.get(name, set())
                          else "file" if k in in_file else "default"} for k, v in values.items()}
    return outd


@edge
def config_show(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config (default: the packaged configs/default.toml).")] = None,
    gens: Annotated[Optional[int], typer.Option("--gens", help="Generations.")] = None,
    pop: Annotated[Optional[int], typer.Option("--pop", help="Population size (mu).")] = None,
    offspring: Annotated[Optional[int], typer.Option("--offspring", help="Children per generation (lambda).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Master seed.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Parallel fitness workers.")] = None,
    causal_filter: Annotated[Optional[str], typer.Option("--causal-filter", help="on|off.")] = None,
    surrogate: Annotated[Optional[str], typer.Option("--surrogate", help="on|off.")] = None,
    coevolution: Annotated[Optional[str], typer.Option("--coevolution", help="on|off.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="loky or dask.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {section: {key: {value, source}}} as strict JSON.")] = False,
) -> None:
    """The configuration forge evolve would run with, each value with its source: default, file or flag."""
    cfg, applied = resolve_run_config(
        config, causal={"enabled": _on_off(causal_filter, "--causal-filter")},
        surrogate={"enabled": _on_off(surrogate, "--surrogate")},
        coevolution={"enabled": _on_off(coevolution, "--coevolution")},
        evolve={"generations": gens, "population": pop, "offspring": offspring, "seed": seed, "jobs": jobs,
                "backend": backend})
    prov = config_provenance(cfg, applied)
    if as_json:
        print(json_dumps({"source": cfg.source, "sections": prov}))
        return
    table = Table(title=f"Resolved forge evolve config (file: {cfg.source})")
    for col in ("section", "key", "value", "source"):
        table.add_column(col, justify="left")
    colors = {"flag": "cyan", "file": "yellow", "default": "dim"}
    for section, keys in prov.items():
        for k, item in keys.items():
            table.add_row(section, k, escape(json.dumps(item["value"])),
                          f"[{colors[item['source']]}]{item['source']}[/]")
    console.print(table)


def _on_off(value: Optional[str], flag: str) -> Optional[bool]:
    if value is None:
        return None
    if value.lower() not in ("on", "off"):
        raise typer.BadParameter(f"{flag} takes 'on' or 'off', got {value!r}")
    return value.lower() == "on"


def print_hall(members: list[dict[str, Any]]) -> None:
    console.print(hall_table(members, console.width))
    if console.width < 150:  # narrow terminal: expressions below the table, one line each
        for m in members:
            console.print(f"#{m['rank']} {m['expression']}", highlight=False, markup=False, soft_wrap=True)


def hall_table(members: list[dict[str, Any]], width: int) -> Table:
    """Hall-of-fame table (in-sample fitness; out-of-sample metrics next to buy-and-hold). Below 150
    columns it is compact (short headers, 2 decimals, no expression column: the caller prints the
    expressions below), so no number is cut at 80 columns."""
    from rich import box

    wide = width >= 150
    digits = 3 if wide else 2
    heads = (("#", "fitness", "IS Sharpe", "OOS return", "OOS Sharpe", "OOS max DD", "OOS trades", "B&H return",
              "B&H Sharpe", "size") if wide else
             ("#", "fit", "IS SR", "OOS ret", "OOS SR", "OOS DD", "trades", "B&H ret", "B&H SR", "size"))
    table = Table(title="Hall of fame (in-sample fitness; out-of-sample vs buy-and-hold)",
                  box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, pad_edge=wide, collapse_padding=not wide,
                  show_edge=wide)
    for col in heads:
        table.add_column(col, justify="right", no_wrap=not wide)
    if wide:
        table.add_column("expression", overflow="fold", max_width=60)

    def num(v: Any) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) and math.isfinite(v) else _fmt(v)

    for m in members:
        isd, oos, bh = m["in_sample"], m["out_of_sample"], m["out_of_sample_buy_and_hold"]
        cells = [str(m["rank"]), num(m["fitness"]), num(isd["sharpe"]), _fmt(oos["total_return"], pct=True),
                 num(oos["sharpe"]), fmt_drawdown(oos["max_drawdown"]), _fmt(oos["n_trades"]),
                 _fmt(bh["total_return"], pct=True), num(bh["sharpe"]), str(m["size"])]
        table.add_row(*cells, *([m["expression"]] if wide else []))
    return table


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return "never" if v > 0 else "—"
    if pct:
        return f"{100 * v:+.2f}%"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.3f}"
