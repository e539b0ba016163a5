"""``forge data download``: fetch kline (and, for perpetuals, funding-rate) files from Binance's public data
archive into the folder layout ``--data`` reads.  The library is :mod:`forge.data.download`; this module
parses the flags, drives a rich progress bar and prints one line per file that is missing or failed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from commands.edge import console, edge
from forge.core.errors import DataError


@edge
def data_download(
    symbols: Annotated[list[str], typer.Argument(help="Symbols, e.g. BTCUSDT ETHUSDT.")],
    market: Annotated[str, typer.Option(help="spot or futures-um (USDⓈ-M perpetuals).")] = "spot",
    interval: Annotated[str, typer.Option(help="Kline interval.")] = "1m",
    start: Annotated[str, typer.Option("--from", help="First month, YYYY-MM.")] = ...,
    end: Annotated[str, typer.Option("--to", help="Last month, YYYY-MM (inclusive; the current month comes as "
                                                   "daily files up to yesterday, UTC).")] = ...,
    dest: Annotated[Path, typer.Option(help="Folder to write <market>/<SYMBOL>/<interval>/ under.")] = Path("data"),
    funding: Annotated[Optional[bool], typer.Option("--funding/--no-funding", help="Also the monthly funding-"
                                                    "rate history (default: on for futures-um).")] = None,
    concurrency: Annotated[int, typer.Option(help="Files downloaded at once.")] = 4,
    retries: Annotated[int, typer.Option(help="Retries per request on 418/429/5xx and connection errors.")] = 5,
    base_url: Annotated[str, typer.Option(help="Archive root (a mirror, or a local server in tests).")]
    = "https://data.binance.vision",
) -> None:
    """Download Binance public 1-minute klines (monthly files, daily for the current month), each checked
    against its published .CHECKSUM (sha256); resumable: verified files are skipped."""
    from forge.data.download import download_files, plan_downloads

    plan = plan_downloads(symbols, market, start, end, dest, interval=interval, funding=funding,
                          base_url=base_url)
    lock = threading.Lock()
    received, total = [0], [len(plan)]
    with Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                  TextColumn("{task.fields[mb]:>8.1f} MB"), TimeElapsedColumn(), console=console,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("download", total=len(plan), mb=0.0)

        def on_event(kind: str, f, value) -> None:
            with lock:
                if kind == "bytes":
                    received[0] += value
                    progress.update(task, mb=received[0] / 1e6)
                    return
                if kind == "start":
                    progress.update(task, description=f"{f.symbol} {f.kind} {f.period}")
                    return
                if value.fallback:
                    total[0] += len(value.fallback)
                    progress.update(task, total=total[0])
                progress.advance(task)
                if value.status in ("missing", "bad_checksum", "failed"):
                    style = {"missing": "yellow", "bad_checksum": "red", "failed": "red"}[value.status]
                    progress.console.print(f"[{style}]{escape(value.message)}[/]", highlight=False,
                                           soft_wrap=True)

        report = download_files(plan, concurrency=concurrency, retries=retries, on_event=on_event)
    got, kept = report.count("downloaded"), report.count("kept")
    nbytes = sum(r.nbytes for r in report.results if r.status == "downloaded")
    console.print(f"{got} downloaded ({nbytes / 1e6:,.1f} MB), {kept} already verified, "
                  f"{report.count('missing')} not in the archive, "
                  f"{report.count('bad_checksum') + report.count('failed')} failed -> {escape(str(dest))}",
                  highlight=False)
    empty = report.symbols_without_data()
    if not report.ok:
        raise DataError(f"{report.count('bad_checksum') + report.count('failed')} file(s) failed (see above); "
                        "run the same command again to resume")
    if empty:
        raise DataError(f"no kline file in the archive for {', '.join(empty)} from {start} to {end} "
                        "(symbol listed later, or misspelt?)")
