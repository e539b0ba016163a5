"""``forge data inspect``, ``forge runs list|compare`` and ``forge backtest``: read-only views of kline
files, run directories and one genome's backtest."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.markup import escape
from rich.table import Table

from commands.edge import console, edge
from forge.core.errors import ConfigError
from forge.core.jsonsafe import dumps as json_dumps
from commands.ui import fmt_drawdown


def _ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


@edge
def data_inspect(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Kline CSV/zip files or folders (default: the embedded BTCUSDT sample).")] = None,
    max_gaps: Annotated[int, typer.Option(help="Gaps to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the coverage report as JSON.")] = False,
) -> None:
    """Coverage and gap table of Binance kline files."""
    from forge.data.loader import load_bars
    from commands.preflight import check_data_paths

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


def _run_places(roots: Optional[list[Path]]) -> tuple[list[Path], Optional[Path]]:
    """(folders to scan, run index or None): the given folders only, else the packaged config's [evolve]
    output_dir and the run index beside it (``forge.core.runs.index_path``: every run forge evolve
    started, wherever --run-dir put it)."""
    from forge.core.runconfig import load_run_config
    from forge.core.runs import index_path

    if roots:
        return list(roots), None
    default = Path(load_run_config(None).evolve.output_dir)
    return [default], index_path(default)


@edge
def runs_list(
    root: Annotated[Optional[Path], typer.Argument(help="Folder of run directories (default: [evolve] output_dir of the packaged config).")] = None,
    roots: Annotated[Optional[list[Path]], typer.Option("--root", help="Also scan this folder of run directories (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as strict JSON.")] = False,
) -> None:
    """Run directories, newest first: status, generations, champion's out-of-sample return vs buy-and-hold.
    Without a folder: the runs under the runs folder and every run forge evolve recorded in
    artifacts/run_index.jsonl (wherever --run-dir put it); with folders (ROOT, --root): the runs in them."""
    from forge.core.runs import find_runs
    from commands.ui import fit_table, fmt_num, fmt_pct

    folders, index = _run_places(([root] if root is not None else []) + list(roots or []))
    rows = find_runs(folders, index)
    if as_json:
        print(json_dumps({"root": str(folders[0]), "roots": [str(f) for f in folders],
                          "index": None if index is None else str(index),
                          "runs": rows}))
        return
    cols = [("run", "left"), ("created (UTC)", "left"), ("status", "left"), ("gens", "right"),
            ("evaluated", "right"), ("best fit", "right"), ("OOS ret", "right"), ("B&H ret", "right"),
            ("OOS SR", "right"), ("OOS DD", "right"), ("gauntlet", "right"), ("on these bars", "right")]
    cells = []
    for r in rows:
        o, b, g = r["oos"] or {}, r["buy_and_hold"] or {}, r["gauntlet"]
        cells.append([str(r["run_id"]), str(r["created_utc"])[:16].replace("T", " "), r["status"],
                      f"{r['generations_run']}/{r['generations']}", fmt_num(r["candidates_evaluated"]),
                      fmt_num(r["best_fitness"]), fmt_pct(o.get("total_return")), fmt_pct(b.get("total_return")),
                      fmt_num(o.get("sharpe"), 2), fmt_drawdown(o.get("max_drawdown")),
                      "—" if g is None else f"{g['survivors']}/{g['candidates']}",
                      "—" if not r.get("ledger") else f"{r['ledger']['runs']} runs / {r['ledger']['trials']:,} trials"])
    where = ", ".join(str(f) for f in folders) + ("" if index is None else " and the run index")
    console.print(fit_table(f"Runs in {where} ({len(rows)})", cols, cells, console.width))
    if rows:
        console.print("compare with: forge runs compare RUN_ID RUN_ID ...", highlight=False)


@edge
def runs_compare(
    runs: Annotated[list[str], typer.Argument(help="Run directories or run ids (as forge runs list prints them).")],
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write a comparison HTML (fitness curves, OOS metrics side by side).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison (with fitness curves) as strict JSON.")] = False,
) -> None:
    """Runs side by side: configuration, best fitness, champion's out-of-sample metrics vs buy-and-hold."""
    from forge.core.runs import compare_runs, resolve_run, write_compare_html
    from commands.ui import fmt_num, fmt_pct

    folders, index = _run_places(None)
    comp = compare_runs([resolve_run(r, folders, index) for r in runs])
    existed = html_out is not None and html_out.exists()
    if html_out is not None:
        write_compare_html(comp, html_out)
    if as_json:
        print(json_dumps(comp))
        return
    table = Table(title=f"{len(comp['runs'])} runs side by side")
    table.add_column("", justify="left", no_wrap=True)
    for r in comp["runs"]:
        table.add_column(escape(str(r["run_id"])), justify="right", overflow="fold")

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
        console.print(f"{'overwrote' if existed else 'wrote'} {html_out}", highlight=False)


@edge
def backtest_cmd(
    genome: Annotated[Path, typer.Argument(help="Genome JSON (e.g. a run's champion.json).")],
    data: Annotated[Optional[list[Path]], typer.Option("--data", "-d", help="Kline files or folders, or bar Parquet (repeatable); default: embedded BTCUSDT sample.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Run config whose [backtest] costs apply (default: the packaged one).")] = None,
    features_lib: Annotated[Optional[Path], typer.Option("--features", help="Feature library JSON for synthesized features (default: feature_library.json next to the genome).")] = None,
    trades: Annotated[Optional[Path], typer.Option("--trades", help="Write the trade list: .csv or .parquet.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the equity and drawdown plot (PNG).")] = None,
    bars_range: Annotated[str, typer.Option("--bars", help="auto (out-of-sample for a run's genome, else all) | out-of-sample | in-sample | all.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as strict JSON.")] = False,
    l2: Annotated[Optional[Path], typer.Option("--l2", help="The genome's L2 recording (forge evolve --l2) at another path than its record's.")] = None,
) -> None:
    """Backtest one genome on chosen bars: metrics next to buy-and-hold, trade list, equity plot. A run's
    genome (a champion.json beside its manifest) runs on the run's out-of-sample bars by default."""
    from commands.backtest import backtest_genome, panel_symbols, plot_equity, write_trades
    from commands.preflight import check_data_paths
    from commands.ui import fmt_num, fmt_pct

    if trades is not None and trades.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--trades {trades}: expected a .csv or .parquet file name")
    check_data_paths(data, panel_symbols(genome))
    bt = backtest_genome(genome, data, config=config, library=features_lib, bars_range=bars_range, l2_dir=l2)
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
    table = Table(title=f"Backtest {summary['genome']['sha256'][:16]} on {d['bars']:,} bars ({d['range']}) "
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
