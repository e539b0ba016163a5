"""``forge serve``, ``forge synthesize``, ``forge calibrate`` and ``forge bench``: the long-running
Forge tools besides evolve; each loads its config, calls one library function and renders a table."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from commands.edge import console, default_config, edge, err_console
from forge.core.jsonsafe import dumps as json_dumps


@edge
def serve(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Crucible TOML whose [serve] table, [crucible] folders and [replay] data the worker uses (default: the packaged configs/crucible.toml).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Serve the pending requests, then exit (no watching).")] = False,
    nice: Annotated[Optional[int], typer.Option("--nice", min=0, max=19, help="Lower this worker's CPU priority by this much (default: [serve] nice when supervised, else 0).")] = None,
    parent_pid: Annotated[Optional[int], typer.Option("--parent-pid", hidden=True, help="Exit when this process (the supervising crucible live) is gone.")] = None,
) -> None:
    """The Forge worker of the closed loop: serve the Crucible's replacement requests (evolve on the
    symbol's bars before the request, gauntlet, publish survivors for the killed slot)."""
    from loop.serve import Worker, adjust_priority, load_serve_config, serve_pending

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
    from loop.bench import missing_bench_extra, render_markdown, run_bench, run_bench_full

    missing = missing_bench_extra()
    if missing:  # said before the minutes of measuring, not only in the table's cells
        err_console.print(f"the library baselines need the [bench] extra ({', '.join(missing)} not installed here: "
                          "pip install -e \".[bench]\"); their rows say so instead of a number",
                          highlight=False, markup=False)
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


@edge
def warmup_cmd(
    serial: Annotated[bool, typer.Option("--serial", help="Compile in one process at a time (default: the VM and the other kernels side by side when there are 2+ cores).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {seconds, cached, total, missing} as strict JSON.")] = False,
) -> None:
    """Compile and cache every numba kernel forge evolve uses (for CI and container images; the cache goes
    to NUMBA_CACHE_DIR when set, else __pycache__ beside the package). Nothing to do when already cached."""
    import os

    from commands.ui import compile_message
    from forge.warmup import cache_state, warmup

    before = cache_state()
    secs = 0.0
    state = before
    if not before.complete:
        last = [-1]

        def show(st: Any) -> None:
            step = int(10 * st.fraction)
            if not as_json and step > last[0]:
                last[0] = step
                err_console.print(compile_message(st), highlight=False, markup=False)

        show(before)
        secs, state = warmup(parallel=not serial and (os.cpu_count() or 1) > 1, progress=show)
    where = os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside each kernel module"
    if as_json:
        print(json_dumps({"seconds": round(secs, 1), "cached": state.cached, "total": state.total,
                          "missing": list(state.missing), "cache_dir": where}))
        return
    if before.complete:
        console.print(f"all {state.total} kernels already cached ({where}); nothing to compile", highlight=False)
    else:
        console.print(f"compiled {state.cached - before.cached} kernels in {secs:.0f} s; {state.cached} of "
                      f"{state.total} cached ({where})", highlight=False)
    if not state.complete:
        raise typer.Exit(1)
