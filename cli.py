"""Command-line edge: three Typer apps (``forge``, ``gauntlet``, ``crucible``).

Thin by design: parse, load config, call one library function, render with
rich.  Library errors (``ForgeError`` subclasses) become a one-line message
and the class's exit code here, and nowhere else.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from forge.core.errors import ConfigError, ForgeError
from forge.jsonsafe import dumps as json_dumps
from forge.ui import fmt_drawdown, fmt_p

# piped output (logs, CI) gets a wide fixed width instead of 80 columns
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

forge_app = typer.Typer(
    help="Forge: evolve trading strategies by typed genetic programming on 1-minute crypto bars.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect Binance kline data: coverage, gaps, duplicates.", no_args_is_help=True)
forge_app.add_typer(data_app, name="data")
gauntlet_app = typer.Typer(
    help="Gauntlet: validate evolved strategies on data evolution never touched.",
    no_args_is_help=True,
    add_completion=False,
)
crucible_app = typer.Typer(
    help="Crucible: run validated champions live (testnet or replay).",
    no_args_is_help=True,
    add_completion=False,
)


config_app = typer.Typer(help="Show the resolved configuration of forge evolve.", no_args_is_help=True)
forge_app.add_typer(config_app, name="config")
runs_app = typer.Typer(help="List and compare forge evolve run directories.", no_args_is_help=True)
forge_app.add_typer(runs_app, name="runs")

# --------------------------------------------------------------------------- exit codes: the one place

EXIT_OK = 0
EXIT_ERROR = 1          # ForgeError without a more specific class
EXIT_USAGE = 2          # bad flag, bad config, unreadable journal (ConfigError, sqlite3.Error, typer usage errors)
EXIT_DATA = 3           # DataError
EXIT_GENOME = 4         # GenomeError
EXIT_RUNDIR = 5         # RunDirError
EXIT_REJECTED = 6       # gauntlet validate --fail-on-reject: no candidate survived
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def exit_code_of(exc: BaseException) -> int:
    """Exit status for an exception reaching the command line (the EXIT_* table above): a ForgeError
    carries its class's code (ConfigError 2, DataError 3, GenomeError 4, RunDirError 5, crucible's
    JournalError 2, others 1); sqlite3.Error (an unreadable journal) 2; Ctrl-C 130."""
    import sqlite3

    if isinstance(exc, ForgeError):
        return int(getattr(exc, "exit_code", EXIT_ERROR))
    if isinstance(exc, sqlite3.Error):
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR


def _version_option(app: str) -> Any:
    def show(value: bool) -> None:
        if value:
            console.print(f"{app} {package_version()}", highlight=False)
            raise typer.Exit(EXIT_OK)

    return typer.Option("--version", help="Print the version and exit.", callback=show, is_eager=True)


def package_version() -> str:
    """The installed distribution's version (``forge-gauntlet-crucible``), else forge.__version__."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("forge-gauntlet-crucible")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        import forge

        return str(getattr(forge, "__version__", "unknown"))


@forge_app.callback()
def _forge_main(version: Annotated[Optional[bool], _version_option("forge")] = None) -> None:
    """Forge: evolve trading strategies by typed genetic programming on 1-minute crypto bars."""


@gauntlet_app.callback()
def _gauntlet_main(version: Annotated[Optional[bool], _version_option("gauntlet")] = None) -> None:
    """Gauntlet: validate evolved strategies on data evolution never touched."""


@crucible_app.callback()
def _crucible_main(version: Annotated[Optional[bool], _version_option("crucible")] = None) -> None:
    """Crucible: run validated champions live (testnet or replay)."""


def _error_line(exc: BaseException) -> str:
    import sqlite3

    if isinstance(exc, sqlite3.Error):
        return f"unreadable SQLite file ({exc})"
    return str(exc)


def edge(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ForgeError (and sqlite3.Error) into a red one-line message and its exit code."""
    import sqlite3

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ForgeError, sqlite3.Error) as exc:
            err_console.print(f"[bold red]error:[/] {escape(_error_line(exc))}", highlight=False, markup=True,
                              soft_wrap=True)  # one line, never wrapped
            raise typer.Exit(exit_code_of(exc)) from None

    return wrapper


def default_config(name: str) -> Optional[Path]:
    """The packaged default config ``configs/<name>`` (None when not shipped). ./configs is read only
    when passed explicitly with --config, so every app resolves its default the same way."""
    from forge.core.config import CONFIG_DIR

    p = CONFIG_DIR / name
    return p if p.is_file() else None


def _ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


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


# --------------------------------------------------------------------------- forge evolve


@forge_app.command()
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
    causal_filter: Annotated[Optional[str], typer.Option("--causal-filter", help="PCMCI feature filter: on|off.")] = None,
    surrogate: Annotated[Optional[str], typer.Option("--surrogate", help="LightGBM offspring screening: on|off.")] = None,
    coevolution: Annotated[Optional[str], typer.Option("--coevolution", help="Predator/prey co-evolution in the calibrated simulator: on|off.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Fitness workers: loky (local processes) or dask (a cluster).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786.")] = None,
    symbols: Annotated[Optional[str], typer.Option("--symbols", help="Comma-separated symbols evaluated together, e.g. BTCUSDT,ETHUSDT (files <SYMBOL>-1m-* under --data).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a final summary object as strict JSON on stdout (progress goes to stderr).")] = False,
) -> None:
    """Evolve strategies; writes artifacts/runs/<run_id>/ (manifest, generations, hall of fame, champion)."""
    from forge.evolve import evolve as run_evolve
    from forge.evolve import resume_run

    if resume is not None:
        given = [flag for flag, v in (("--config", config), ("--data", data), ("--pop", pop),
                                      ("--offspring", offspring), ("--seed", seed), ("--out", out),
                                      ("--run-dir", run_dir), ("--features", features),
                                      ("--seed-genome", seed_genome), ("--causal-filter", causal_filter),
                                      ("--surrogate", surrogate), ("--coevolution", coevolution),
                                      ("--symbols", symbols), ("--jobs", jobs), ("--backend", backend),
                                      ("--scheduler", scheduler), ("--force", force or None)) if v is not None]
        if given:
            raise ConfigError(f"--resume {resume} continues the run with its saved config; {', '.join(given)} "
                              "cannot be combined with it (only --gens N, to extend the run to N generations)")
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
        backend=backend,
        scheduler=scheduler,
        symbols=tuple(x.strip().upper() for x in symbols.split(",") if x.strip()) if symbols else None,
        ),
    )
    out = err_console if as_json else console  # --json: stdout carries only the summary object
    from forge.preflight import check_dask, check_data_paths, check_seed_genomes, prepare_run_dir
    from forge.ui import EvolveProgress, causal_decision

    dask_banner = ""
    if resume is None:  # every input checked before any work starts (nothing written yet)
        check_data_paths(cfg.evolve.data, cfg.evolve.symbols)
        check_seed_genomes(cfg.evolve.seed_genomes)
        if cfg.evolve.backend == "dask":
            n_workers = check_dask(cfg.evolve.scheduler)
            dask_banner = f"backend dask at {cfg.evolve.scheduler}: {n_workers} worker{'s' if n_workers != 1 else ''}"
        if run_dir is not None:
            prepare_run_dir(run_dir, force=force)
    where: dict[str, Any] = {"run_dir": resume if resume is not None else run_dir, "gen": None}

    view = EvolveProgress(out, live=out.is_terminal)

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "causal":
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
            out.print(table)
        elif e["event"] == "start":
            where["run_dir"] = e.get("run_dir", where["run_dir"])
            s = e["split"]
            out.print(
                f"[bold]run[/] {e['run_id']}  bars {e['n_bars']:,}  in-sample {s['in_sample']['first'][:16]} → "
                f"{s['in_sample']['last'][:16]}  out-of-sample {s['out_of_sample']['first'][:16]} → "
                f"{s['out_of_sample']['last'][:16]}"
            )
            workers = f"jobs={e['jobs']}" if cfg.evolve.backend != "dask" else (dask_banner or "backend dask")
            out.print(f"μ={e['population']} λ={e['offspring']} {workers} features: {', '.join(e['features'])}",
                      highlight=False)
            view.start(e["generations"])
        elif e["event"] == "generation":
            where["gen"] = e.get("gen")
            view.generation(e)
        elif e["event"] == "done":
            view.stop()
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
        view.stop()
    if as_json:
        print(json_dumps(evolve_summary(result)))
        return
    _print_hall(result.hall_of_fame[:5])
    console.print(f"[green]wrote[/] {result.run_dir}  ({result.manifest['candidates_evaluated']:,} candidates evaluated)")


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
    from forge.jsonsafe import revive_nonfinite

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
    from forge.settings import load_run_config, with_overrides

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
    from forge.settings import SECTIONS

    raw = read_toml(cfg.source) if Path(str(cfg.source)).is_file() else {}
    outd: dict[str, dict[str, dict[str, Any]]] = {}
    for name in SECTIONS:
        values = to_dict(getattr(cfg, name))
        in_file = raw.get(name, {}) if isinstance(raw.get(name), dict) else {}
        outd[name] = {k: {"value": v, "source": "flag" if k in applied.get(name, set())
                          else "file" if k in in_file else "default"} for k, v in values.items()}
    return outd


@config_app.command("show")
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


def _print_hall(members: list[dict[str, Any]]) -> None:
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


# --------------------------------------------------------------------------- forge data inspect


@data_app.command("inspect")
@edge
def data_inspect(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Kline CSV/zip files or folders (default: the embedded BTCUSDT sample).")] = None,
    max_gaps: Annotated[int, typer.Option(help="Gaps to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the coverage report as JSON.")] = False,
) -> None:
    """Coverage and gap table of Binance kline files."""
    from forge.data.loader import load_bars
    from forge.preflight import check_data_paths

    check_data_paths(paths)
    _bars, cov = load_bars([str(p) for p in paths] if paths else None)
    if as_json:
        print(json_dumps(cov.to_dict()))
        return
    summary = Table(title=f"Coverage of {cov.source}")
    for col in ("files", "bars", "first", "last", "expected", "missing", "coverage", "gaps", "duplicates", "non-monotonic"):
        summary.add_column(col, justify="right")
    summary.add_row(
        str(len(cov.files)), f"{cov.n_bars:,}", _ms(cov.first_ms), _ms(cov.last_ms), f"{cov.expected_bars:,}",
        f"{cov.missing_bars:,}", f"{100 * cov.coverage_ratio:.2f}%", str(len(cov.gaps)), str(cov.duplicates),
        str(cov.non_monotonic),
    )
    console.print(summary)
    units = {}
    for f in cov.files:
        units[f.time_unit] = units.get(f.time_unit, 0) + 1
    console.print("timestamp units per file: " + ", ".join(f"{u}: {n}" for u, n in sorted(units.items())))
    if cov.gaps:
        gaps = Table(title=f"Gaps ({len(cov.gaps)}; largest first, {min(max_gaps, len(cov.gaps))} shown)")
        for col in ("last bar before", "first bar after", "missing bars"):
            gaps.add_column(col, justify="right")
        for g in sorted(cov.gaps, key=lambda g: -g.missing_bars)[:max_gaps]:
            gaps.add_row(_ms(g.start_ms), _ms(g.end_ms), f"{g.missing_bars:,}")
        console.print(gaps)


# --------------------------------------------------------------------------- forge bench


@forge_app.command()
@edge
def serve(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Crucible TOML whose [serve] table, [crucible] folders and [replay] data the worker uses (default: the packaged configs/crucible.toml).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Serve the pending requests, then exit (no watching).")] = False,
    nice: Annotated[Optional[int], typer.Option("--nice", min=0, max=19, help="Lower this worker's CPU priority by this much (default: [serve] nice when supervised, else 0).")] = None,
    parent_pid: Annotated[Optional[int], typer.Option("--parent-pid", hidden=True, help="Exit when this process (the supervising crucible live) is gone.")] = None,
) -> None:
    """The Forge worker of the closed loop: serve the Crucible's replacement requests (evolve on the
    symbol's bars before the request, gauntlet, publish survivors for the killed slot)."""
    from forge.serve import Worker, adjust_priority, load_serve_config, serve_pending

    loop = load_serve_config(config if config is not None else default_config("crucible.toml"))
    adjust_priority(nice or 0)
    say = lambda m: console.print(escape(m), highlight=False)  # noqa: E731
    if once:
        states = serve_pending(loop, say=say)
        for st in states:
            console.print(f"{st['request']}: {st['status']}" + (f" ({st['reason']})" if st.get("reason") else ""),
                          highlight=False)
        if not states:
            console.print(f"no pending requests in {loop.requests_dir}")
        return
    raise typer.Exit(Worker(loop, say=say, parent_pid=parent_pid).run())


@forge_app.command()
@edge
def synthesize(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML with a [synthesize] table (default: the packaged configs/synthesize.toml); flags override it.")] = None,
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="Kline files or folders (repeatable); default: [synthesize] data, else the embedded BTCUSDT sample.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Feature library JSON to write (default: [synthesize] out).")] = None,
    n_features: Annotated[Optional[int], typer.Option("--n-features", help="Features to accept (default 5).")] = None,
    gens: Annotated[Optional[int], typer.Option("--gens", help="Generations per accepted feature (default 8).")] = None,
    pop: Annotated[Optional[int], typer.Option("--pop", help="Feature trees per generation (default 60).")] = None,
    horizon: Annotated[Optional[int], typer.Option("--horizon", help="Forward-return horizon, bars (default 1).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Master seed (default 0).")] = None,
) -> None:
    """Evolve feature trees by mutual information with the forward return; writes a feature library
    for `forge evolve --features LIB.json` (it records the bars it was fitted on)."""
    from forge.core.config import override
    from forge.data.loader import load_bars
    from forge.synthesize import load_synthesis_config, synthesize as run_synthesize, write_feature_library

    cfg = override(load_synthesis_config(config), "command-line flags", seed=seed, population=pop, generations=gens,
                   n_features=n_features, horizon=horizon, data=tuple(str(p) for p in data) if data else None,
                   out=str(out) if out is not None else None)
    out = Path(cfg.out)
    bars, _ = load_bars(list(cfg.data) or None)

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "accepted":
            console.print(f"[green]accepted[/] {e['name']}: MI in-sample {e['mi_in_sample']:.4f} nats, "
                          f"out-of-sample {e['mi_out_of_sample']:.4f} (null {e['mi_out_of_sample_null']:.4f}, "
                          f"p {e['p_value_out_of_sample']:.3f})  {e['expression']}", highlight=False)
        elif e["event"] == "generation" and not console.is_terminal:
            console.print(f"round {e['round']} gen {e['generation']}  best fitness {e['best_fitness']:+.5f}  "
                          f"MI {e['best_mi']:.5f}", highlight=False)
        elif e["event"] == "no_candidate":
            console.print(f"round {e['round']}: no candidate qualifies; stopping early")

    library = run_synthesize(bars, cfg, progress=on_event)
    write_feature_library(library, out)
    table = Table(title=f"Feature library ({len(library.features)} features) → {out}")
    for col in ("name", "MI IS", "MI OOS", "MI OOS null", "p OOS", "redundancy", "lookback", "expression"):
        table.add_column(col, justify="right" if col != "expression" else "left")
    for f in library.features:
        table.add_row(f.name, f"{f.mi_in_sample:.4f}", f"{f.mi_out_of_sample:.4f}", f"{f.mi_out_of_sample_null:.4f}",
                      f"{f.p_value_out_of_sample:.3f}", f"{f.redundancy:.2f}", str(f.lookback), f.genome.expression())
    console.print(table)


@forge_app.command()
@edge
def calibrate(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML with a [calibrate] table (default: the packaged configs/calibrate.toml); flags override it.")] = None,
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="Real kline files or folders (default: [calibrate] data, else the embedded BTCUSDT sample).")] = None,
    in_sample_fraction: Annotated[Optional[float], typer.Option("--in-sample-fraction", help="Fit on this leading share of the bars only, as forge evolve's in-sample range (default 0.7; 1.0 = all bars).")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", help="CMA-ES evaluations, each averaging --seeds simulations (default 60).")] = None,
    minutes: Annotated[Optional[int], typer.Option("--minutes", help="Simulated minutes per evaluation and seed (default 720).")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Simulation seeds per evaluation, common random numbers (default 2).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="CMA-ES seed (default 0).")] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="Loss target: windows (real facts per window of --minutes bars), pooled (the seeds' runs pooled vs as many pooled random real windows) or bootstrap (whole-sample facts, block-bootstrap weights); default windows.")] = None,
    n_boot: Annotated[Optional[int], typer.Option("--n-boot", help="Real replicates for the weights, bootstrap / pooled draws (default 100).")] = None,
    start: Annotated[Optional[Path], typer.Option("--start", help="Warm start from the DSG of an earlier calibration JSON (default: the built-in DSG).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Calibration JSON (default: [calibrate] out).")] = None,
) -> None:
    """Calibrate the LOB simulator's DSG to real 1m bars with CMA-ES (stylized-facts distance) on the in-sample
    head of the data; writes calibration.json (it records the bars it was fitted on)."""
    from forge.core.config import override
    from forge.data.loader import load_bars
    from forge.sim.calibrate import load_calibrate_config, run_calibration, write_calibration

    cfg = override(load_calibrate_config(config), "command-line flags", budget=budget, minutes=minutes, seeds=seeds,
                   seed=seed, target=target, n_boot=n_boot, in_sample_fraction=in_sample_fraction,
                   start=str(start) if start is not None else None, out=str(out) if out is not None else None,
                   data=tuple(str(p) for p in data) if data else None)
    target, out = cfg.target, Path(cfg.out)
    bars, _ = load_bars(list(cfg.data) or None)

    def on_gen(e: dict[str, Any]) -> None:
        console.print(f"gen {e['generation']}  evals {e['evals']}/{e['budget']}  best loss {e['best_loss']:.3f}  "
                      f"(default {e['loss_default']:.3f})  {e['seconds']:.1f} s", highlight=False)

    result = run_calibration(cfg, bars, progress=on_gen)
    write_calibration(result, out)
    table = Table(title=f"Stylized facts: real vs simulated (loss {result.loss_default:.3f} → {result.loss:.3f})")
    for col in ("fact", "real (whole sample)", f"real target ({target})", "simulated", "sim/target", "default DSG",
                "weight"):
        table.add_column(col, justify="right")
    for r in result.facts_rows():
        ratio = r["sim"] / r["target"] if r["target"] else math.nan
        table.add_row(str(r["fact"]), f"{r['real']:.4g}", f"{r['target']:.4g}", f"{r['sim']:.4g}", f"{ratio:.2f}",
                      f"{r['default']:.4g}", f"{r['weight']:.3g}")
    console.print(table)
    console.print(f"wrote {out}")


@forge_app.command()
@edge
def bench(
    bars: Annotated[int, typer.Option(help="Bars per series (tiled from the embedded sample's features).")] = 400_000,
    trees: Annotated[int, typer.Option(help="Random trees in the benchmark population.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the tree population.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Emit results as JSON.")] = False,
    write: Annotated[Optional[Path], typer.Option(help="Also write a Markdown results file (e.g. benchmarks/RESULTS.md).")] = None,
    full: Annotated[bool, typer.Option("--full", help="All rows: evolved population + subtree cache, simulator, surrogate, 1->2 workers, end-to-end on one year, peak memory (minutes).")] = False,
) -> None:
    """Speed, side by side in one run: VM vs DEAP gp.compile+numpy on identical trees; backtest bars/s."""
    from forge.bench import render_markdown, run_bench, run_bench_full

    if full:
        results = run_bench_full(n_bars=bars, seed=seed, progress=lambda m: err_console.print(f"[dim]bench: {m}[/]"))
    else:
        results = run_bench(n_bars=bars, n_trees=trees, seed=seed)
    if write is not None:
        from forge.core.artifacts import atomic_write_text

        # sections below the marker (other benchmarks' results, each with its command) are kept
        marker = "<!-- end of forge bench -->"
        tail = ""
        if write.is_file() and marker in write.read_text():
            tail = write.read_text().split(marker, 1)[1]
        atomic_write_text(write, render_markdown(results, " ".join(["forge"] + sys.argv[1:])) + "\n" + marker + tail)
    if as_json:
        print(json_dumps(results))
        return
    table = Table(title=f"forge bench — {results['machine']}")
    for col in ("benchmark", "measured", "baseline", "baseline measured", "ratio", "goal"):
        table.add_column(col, justify="right")
    for row in results["rows"]:
        table.add_row(row["name"], row["measured"], row["baseline"], row["baseline_measured"], row["ratio"], row["goal"])
    console.print(table)


# --------------------------------------------------------------------------- forge runs / backtest


@runs_app.command("list")
@edge
def runs_list(
    root: Annotated[Optional[Path], typer.Argument(help="Folder of run directories (default: [evolve] output_dir of the packaged config).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as strict JSON.")] = False,
) -> None:
    """Run directories, newest first: status, generations, champion's out-of-sample return vs buy-and-hold."""
    from forge.runs import list_runs
    from forge.settings import load_run_config

    folder = root if root is not None else Path(load_run_config(None).evolve.output_dir)
    rows = list_runs(folder)
    if as_json:
        print(json_dumps({"root": str(folder), "runs": rows}))
        return
    table = Table(title=f"Runs in {folder} ({len(rows)})")
    for col in ("run", "created (UTC)", "status", "gens", "evaluated", "best fit", "OOS ret", "B&H ret", "OOS SR",
                "OOS DD", "gauntlet"):
        table.add_column(col, justify="left" if col in ("run", "created (UTC)", "status") else "right",
                         no_wrap=col != "run")
    from forge.ui import fmt_num, fmt_pct

    for r in rows:
        o, b, g = r["oos"] or {}, r["buy_and_hold"] or {}, r["gauntlet"]
        table.add_row(escape(str(r["run_id"])), str(r["created_utc"])[:16].replace("T", " "), r["status"],
                      f"{r['generations_run']}/{r['generations']}", fmt_num(r["candidates_evaluated"]),
                      fmt_num(r["best_fitness"]), fmt_pct(o.get("total_return")), fmt_pct(b.get("total_return")),
                      fmt_num(o.get("sharpe"), 2), fmt_drawdown(o.get("max_drawdown")),
                      "—" if g is None else f"{g['survivors']}/{g['candidates']}")
    console.print(table)


@runs_app.command("compare")
@edge
def runs_compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to compare.")],
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write a comparison HTML (fitness curves, OOS metrics side by side).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison (with fitness curves) as strict JSON.")] = False,
) -> None:
    """Runs side by side: configuration, best fitness, champion's out-of-sample metrics vs buy-and-hold."""
    from forge.runs import compare_runs, write_compare_html
    from forge.ui import fmt_num, fmt_pct

    comp = compare_runs(runs)
    if html_out is not None:
        write_compare_html(comp, html_out)
    if as_json:
        print(json_dumps(comp))
        return
    table = Table(title=f"{len(comp['runs'])} runs side by side")
    table.add_column("", justify="left", no_wrap=True)
    for r in comp["runs"]:
        table.add_column(escape(str(r["run_id"])), justify="right")

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> None:
        table.add_row(label, *[fn(r) for r in comp["runs"]])

    row("status", lambda r: r["status"])
    row("seed", lambda r: str(r["seed"]))
    row("generations", lambda r: f"{r['generations_run']}/{r['generations']}")
    row("population", lambda r: fmt_num(r["population"]))
    row("evaluated", lambda r: fmt_num(r["candidates_evaluated"]))
    row("best fitness (IS)", lambda r: fmt_num(r["best_fitness"]))
    row("OOS return", lambda r: fmt_pct((r["oos"] or {}).get("total_return")))
    row("B&H return", lambda r: fmt_pct((r["buy_and_hold"] or {}).get("total_return")))
    row("OOS Sharpe", lambda r: fmt_num((r["oos"] or {}).get("sharpe"), 2))
    row("OOS max DD", lambda r: fmt_drawdown((r["oos"] or {}).get("max_drawdown")))
    row("OOS trades", lambda r: fmt_num((r["oos"] or {}).get("n_trades")))
    row("gauntlet", lambda r: "—" if r["gauntlet"] is None else f"{r['gauntlet']['survivors']}/{r['gauntlet']['candidates']} survive")
    console.print(table)
    if html_out is not None:
        console.print(f"wrote {html_out}")


@forge_app.command("backtest")
@edge
def backtest_cmd(
    genome: Annotated[Path, typer.Argument(help="Genome JSON (e.g. a run's champion.json).")],
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="Kline files or folders, or bar Parquet (repeatable); default: embedded BTCUSDT sample.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Run config whose [backtest] costs apply (default: the packaged one).")] = None,
    features_lib: Annotated[Optional[Path], typer.Option("--features", help="Feature library JSON for synthesized features (default: feature_library.json next to the genome).")] = None,
    trades: Annotated[Optional[Path], typer.Option("--trades", help="Write the trade list: .csv or .parquet.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the equity and drawdown plot (PNG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as strict JSON.")] = False,
) -> None:
    """Backtest one genome on chosen bars: metrics next to buy-and-hold, trade list, equity plot."""
    from forge.backtest_cmd import backtest_genome, plot_equity, write_trades
    from forge.preflight import check_data_paths
    from forge.ui import fmt_num, fmt_pct

    if trades is not None and trades.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--trades {trades}: expected a .csv or .parquet file name")
    check_data_paths(data)
    bt = backtest_genome(genome, data, config=config, library=features_lib)
    files = {}
    if trades is not None:
        files["trades"] = str(write_trades(bt, trades))
    if plot is not None:
        files["plot"] = str(plot_equity(bt, plot))
    summary = {**bt.summary(), "files": files}
    if as_json:
        print(json_dumps(summary))
        return
    d = summary["data"]
    table = Table(title=f"Backtest {summary['genome']['sha256'][:16]} on {d['bars']:,} bars "
                        f"{d['first'][:16]} → {d['last'][:16]}")
    for col in ("", "strategy", "buy-and-hold"):
        table.add_column(col, justify="right" if col else "left")
    m, bh = summary["metrics"], summary["buy_and_hold"]
    for label, key, kind in (("total return", "total_return", "pct"), ("Sharpe (annualised)", "sharpe", "num"),
                             ("Sortino", "sortino", "num"), ("max drawdown", "max_drawdown", "dd"),
                             ("trades (fills)", "n_trades", "int"), ("turnover", "turnover", "num"),
                             ("exposure", "exposure", "pct0"), ("win rate", "win_rate", "pct0"),
                             ("time to target, bars", "ttt_bars", "num"), ("final equity, USDT", "final_equity", "num")):
        f = {"pct": fmt_pct, "dd": fmt_drawdown, "int": fmt_num, "num": lambda v: fmt_num(v, 2),
             "pct0": lambda v: fmt_pct(v, signed=False)}[kind]
        table.add_row(label, f(m.get(key)), f(bh.get(key)))
    console.print(table)
    console.print(f"{summary['genome']['expression']}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"excess return vs buy-and-hold {fmt_pct(summary['excess_return'])}"
                  + "".join(f"; wrote {v}" for v in files.values()), highlight=False)


# --------------------------------------------------------------------------- gauntlet


@gauntlet_app.command("validate")
@edge
def gauntlet_validate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory from forge evolve.")],
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="Bars to validate on (default: the run's own out-of-sample range).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Gauntlet TOML (default: the packaged configs/gauntlet.toml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report JSON instead of the table.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report here.")] = None,
    allow_overlap: Annotated[bool, typer.Option("--allow-overlap", help="Accept --data that overlaps the in-sample range.")] = False,
    fail_on_reject: Annotated[bool, typer.Option("--fail-on-reject", help="Exit 6 when no candidate survives.")] = False,
    publish_dir: Annotated[Path, typer.Option("--publish-dir", help="Survivors are published here.")] = Path("artifacts/champions"),
    no_publish: Annotated[bool, typer.Option("--no-publish", help="Do not publish survivors.")] = False,
    max_candidates: Annotated[Optional[int], typer.Option("--max-candidates", help="Validate only the top N of the hall of fame.")] = None,
) -> None:
    """Validate a run's hall of fame: OOS, look-ahead, DSR, PBO, permutation/SPA, PCMCI, DoWhy → verdicts.

    Exit 0 when validation ran; 6 with --fail-on-reject when nothing survives; bad input exits with its
    error's code (config 2, data 3, genome 4, run directory 5; the table at the top of cli.py)."""
    from gauntlet.config import load_gauntlet_config
    from gauntlet.validate import validate_run

    cfg = load_gauntlet_config(config if config is not None else default_config("gauntlet.toml"))
    result = validate_run(run_dir, cfg, data=[str(p) for p in data] if data else None, allow_overlap=allow_overlap,
                          publish_dir=None if no_publish else publish_dir, max_candidates=max_candidates,
                          progress=None if as_json else (lambda m: err_console.print(f"[dim]{m}[/]", highlight=False)))
    # one strict-JSON text for the file validate_run wrote and for --json
    text = result.text
    d = json.loads(text)
    if report is not None:
        from gauntlet.report import write_html_report

        write_html_report(result, report)
    if as_json:
        print(text)
    else:
        sh = d["shared"]
        table = Table(title=f"Gauntlet — run {d['run_id']}: {len(d['survivors'])} of {len(d['candidates'])} survive "
                            f"(effective trials {sh['trials']['n_effective']} of {sh['trials']['n_total']:,}; "
                            f"SPA p {fmt_p(_spa_p(sh))})")
        table.add_column("#", justify="right")
        table.add_column("verdict")
        names = list(d["candidates"][0]["stages"]) if d["candidates"] else []
        for n in names:
            table.add_column(n, justify="right")
        for c, v in zip(d["candidates"], result.verdicts):
            cells = [v["stages"][n].cell() for n in names]
            table.add_row(str(c["rank"]), "[green]SURVIVED[/]" if c["survived"] else "[red]rejected[/]",
                          *[f"[green]{x}[/]" if x.startswith("✓") else f"[red]{x}[/]" for x in cells])
        console.print(table)
        for c in d["candidates"][:3]:
            console.print(f"[bold]#{c['rank']}[/] {c['expression']}", highlight=False)
            for n, s in c["stages"].items():
                console.print(f"   {'✓' if s['passed'] else '✗'} {n}: {s['reason']}", highlight=False)
        console.print(f"wrote {Path(run_dir) / 'gauntlet_report.json'}" + (f", {report}" if report else "")
                      + (f"; published {len(d['published'])} to {publish_dir}" if d["published"] else ""))
    if fail_on_reject and not d["survivors"]:
        raise typer.Exit(EXIT_REJECTED)


def _spa_p(shared: dict[str, Any]) -> Optional[float]:
    """Hansen's SPA p-value of a report's shared block ({"spa": {"p"}} or the older {"spa_p"})."""
    spa = shared.get("spa")
    return spa.get("p") if isinstance(spa, dict) else shared.get("spa_p")


@gauntlet_app.command("show")
@edge
def gauntlet_show(
    run_dir: Annotated[Path, typer.Argument(help="A run directory from forge evolve.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the hall of fame as strict JSON.")] = False,
) -> None:
    """Hall of fame of a run: in-sample vs out-of-sample metrics next to buy-and-hold."""
    from forge.core.rundir import read_hall_of_fame

    hall = read_hall_of_fame(run_dir)  # RunDirError naming the file for a missing/corrupt hall of fame
    members = [m.to_dict() for m in hall.members]
    if as_json:
        from forge.jsonsafe import revive_nonfinite

        print(json_dumps(revive_nonfinite({"run_id": hall.run_id, "run_dir": str(run_dir),
                                           "members": members})))
        return
    _print_hall(members)


# --------------------------------------------------------------------------- crucible


@crucible_app.command("live")
@edge
def crucible_live(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Crucible TOML (default: the packaged configs/crucible.toml).")] = None,
    venue: Annotated[str, typer.Option("--venue", help="replay (offline, default) | bybit-testnet | binance-demo (keys from env vars).")] = "replay",
    speed: Annotated[Optional[float], typer.Option("--speed", help="Replay speed as a multiple of real time (0 = as fast as possible).")] = None,
    max_bars: Annotated[Optional[int], typer.Option("--max-bars", min=1, help="Stop after this many bars (>= 1).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Stop at this venue time: ISO 8601 (UTC if no offset), e.g. 2024-06-01T12:00.")] = None,
    journal: Annotated[Optional[Path], typer.Option("--journal", help="SQLite journal (default from the config).")] = None,
    adopt: Annotated[bool, typer.Option("--adopt", help="A new journal may take the positions already at the venue as its baseline (otherwise it refuses to start).")] = False,
    forge: Annotated[bool, typer.Option("--forge", help="Run the Forge worker (forge serve) as a supervised child: killed slots are re-armed by validated replacements (closed loop).")] = False,
) -> None:
    """Trade the bench of champions ($200 each) on a replay venue or an exchange testnet, with hot-swap,
    the $200 kill rule, capital reweighting and a durable journal; with --forge, the closed loop."""
    from rich.live import Live

    from crucible.runtime import run_live
    from forge.ui import Throttle, crucible_dashboard, recent_events

    until_ms = None
    if until is not None:
        try:
            dt = datetime.fromisoformat(until)
        except ValueError:
            raise ConfigError(f"--until {until!r}: expected an ISO 8601 time such as 2024-06-01T12:00") from None
        until_ms = int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp() * 1000)
    live_view = console.is_terminal
    events = recent_events(8)
    state: dict[str, Any] = {"slots": [], "time": None, "bars": 0, "venue": venue}
    live: Any = None

    def redraw() -> None:
        if live is not None:
            live.update(crucible_dashboard(state, events), refresh=True)

    throttle = Throttle(redraw, interval=0.25)  # a few redraws per second, however fast the replay

    def on_event(e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind in ("swap", "kill", "killswitch", "reject", "reconcile", "halt", "stale", "challenger", "forge"):
            line = f"{kind} " + ", ".join(f"{k}={v}" for k, v in e.items() if k != "event")
            if live_view:
                events.append(escape(line[:160]))
                throttle.flush()
            else:
                console.print(escape(line), highlight=False)
        elif kind == "start":
            slots = e.get("slots")
            state.update(venue=e.get("venue"), slots=list(slots) if isinstance(slots, (list, tuple)) else [])
            if live_view:
                throttle.flush()
            else:
                console.print(f"crucible: venue {e.get('venue')}, {len(state['slots'])} slots", highlight=False)
        elif kind == "bar":
            state.update(slots=e["slots"], time=e["time_ms"], bars=e["bars"])
            if live_view:
                throttle()

    with Live(crucible_dashboard(state, events), console=console, auto_refresh=False,
              transient=True) if live_view else nullcontext() as live:
        summary = run_live(config if config is not None else default_config("crucible.toml"), venue=venue, speed=speed, max_bars=max_bars, until_ms=until_ms,
                           journal_path=journal, progress=on_event, adopt=adopt, forge=forge)
    table = Table(title=f"Crucible — {summary['venue']}: {summary['bars']:,} bars, {summary['fills']:,} fills, "
                        f"{summary['kills']} kills, {summary['swaps']} swaps ({summary['stopped_by']}; "
                        f"{summary['bars_per_s']:.0f} bars/s)")
    for col in ("slot", "symbol", "status", "equity", "realised", "unrealised", "fees", "weight", "fills", "genome"):
        table.add_column(col, justify="right")
    for sl in summary["slots"]:
        table.add_row(str(sl["slot"]), str(sl["symbol"]), str(sl["status"]), f"{sl['equity']:.2f}",
                      f"{sl['realised']:.2f}", f"{sl['unrealised']:.2f}", f"{sl['fees']:.2f}", f"{sl['weight']:.3f}",
                      str(sl["fills"]), str(sl["genome"])[:24])
    console.print(table)
    console.print(f"total equity {summary['total_equity']:.2f} USDT; journal {summary['journal']}"
                  + (f"; replacement requests: {', '.join(map(str, summary['requests']))}" if summary["requests"] else ""))


@crucible_app.command("status")
@edge
def crucible_status(
    journal: Annotated[Path, typer.Option("--journal", help="SQLite journal.")] = Path("artifacts/crucible/journal.sqlite"),
    as_json: Annotated[bool, typer.Option("--json", help="Emit JSON.")] = False,
) -> None:
    """The bench as recorded in the journal: slots, equity, weights, kills, swaps and each champion's
    lineage (read-only)."""
    from crucible.status import lineage_lines, status, status_table

    rep = status(journal)
    if as_json:
        print(json_dumps(rep))
        return
    console.print(status_table(rep))
    for line in lineage_lines(rep):
        console.print(escape(line), highlight=False)


@crucible_app.command("verify")
@edge
def crucible_verify(files: Annotated[list[Path], typer.Argument(help="Genome JSON files (e.g. champion.json).")]) -> None:
    """Check genome files as the Crucible will before trading them: schema, versions, checksum, primitives."""
    from forge.gp import Genome

    table = Table(title="Genome verification")
    for col in ("file", "sha256", "features", "lookback", "nodes"):
        table.add_column(col)
    for f in files:
        g = Genome.load(f)
        table.add_row(str(f), g.sha256[:16], ", ".join(g.features), str(g.lookback), str(len(g.tokens)))
    console.print(table)
    console.print(f"[green]{len(files)} genome file(s) valid[/]")


if __name__ == "__main__":  # pragma: no cover
    forge_app()
