"""``crucible live``, ``crucible status`` and ``crucible verify``: the Crucible's commands, assembled into
``cli:crucible_app``."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from commands.edge import console, default_config, edge
from forge.core.errors import ConfigError
from forge.core.jsonsafe import dumps as json_dumps


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
    the $200 kill rule, capital reweighting and a durable journal; with --forge, the closed loop.

    Ctrl-C (SIGINT) or SIGTERM: per [crucible] on_exit, flatten every slot (default; reduce-only orders on
    perpetuals) and wait up to exit_wait_seconds for the fills, or leave positions; then the summary is printed
    with what is still open.  A second Ctrl-C exits at once (status 130)."""
    from rich.live import Live

    from crucible.runtime import run_live
    from loop.supervisor import forge_worker
    from commands.ui import Throttle, crucible_dashboard, event_line, recent_events, reconcile_sentence

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
        if kind in ("swap", "kill", "killswitch", "reject", "reconcile", "halt", "stale", "challenger", "forge",
                    "outage", "outage_end", "foreign_order", "foreign_fill"):
            line = event_line(e)
            if live_view:
                events.append(escape(line[:160]))
                throttle.flush()
            else:
                console.print(escape(line), highlight=False)
            if kind in ("outage", "outage_end"):
                state["outage"] = e if kind == "outage" else None
        elif kind == "start":
            slots = e.get("slots")
            state.update(venue=e.get("venue"), slots=list(slots) if isinstance(slots, (list, tuple)) else [],
                         warning=e.get("warning"))
            if live_view:
                throttle.flush()
            else:
                console.print(f"crucible: venue {e.get('venue')}, {len(state['slots'])} slots", highlight=False)
                if e.get("warning"):  # passive slots on a testnet (crucible.passive.QUEUE_WARNING)
                    console.print(escape(f"warning: {e['warning']}"), highlight=False)
        elif kind == "bar":
            state.update(slots=e["slots"], time=e["time_ms"], bars=e["bars"])
            if live_view:
                throttle()

    cfg_path = config if config is not None else default_config("crucible.toml")
    _say_if_archiving(cfg_path, venue, journal)
    with Live(crucible_dashboard(state, events), console=console, auto_refresh=False,
              transient=True) if live_view else nullcontext() as live:
        summary = run_live(cfg_path, venue=venue, speed=speed, max_bars=max_bars, until_ms=until_ms,
                           journal_path=journal, progress=on_event, adopt=adopt,
                           worker=forge_worker(cfg_path) if forge else None)
        if live_view:
            throttle.flush()  # the last bars' frame (a fast replay can finish inside one redraw interval)
    console.print(live_summary_table(summary, console.width))
    if summary.get("reconcile"):
        console.print(reconcile_sentence(summary["reconcile"]), highlight=False, markup=False)
    console.print(f"total equity {summary['total_equity']:.2f} USDT; journal {summary['journal']}"
                  + (f"; replacement requests: {', '.join(map(str, summary['requests']))}" if summary["requests"] else ""),
                  highlight=False, markup=False)
    if summary.get("outage_bars") or summary.get("outage"):
        o = summary.get("outage")
        console.print(escape(f"outage: {summary['outage_bars']} bars with venue calls failing"
                             + (f"; still failing since {o['since_ms']} ({o['error']})" if o else "; over")
                             + f"; {summary.get('stale_bars', 0)} stale bars not traded, "
                               f"{summary.get('dropped_intents', 0)} intents dropped"), highlight=False)
    if summary.get("halted"):
        console.print(escape(f"halted: {summary['halted']}"), highlight=False)
    if summary.get("exit_signal"):
        console.print(f"{summary['exit_signal']}: stopped ({summary['stopped_by']})", highlight=False)
    still = summary.get("still_open") or {}
    if still.get("positions") or still.get("orders"):
        pos = ", ".join(f"{p['slot']} {p['units']:+.6g} {p['symbol']}" for p in still.get("positions", []))
        console.print(escape(f"still open: positions [{pos}]; orders {still.get('orders', [])}"), highlight=False)
    else:
        console.print("still open: nothing (every slot flat, no order in flight)", highlight=False)


def _say_if_archiving(cfg_path: Path, venue: str, journal: Optional[Path]) -> None:
    """A replay venue built by ``crucible live`` starts a fresh journal (``crucible.runtime.run_live``): say so
    before an existing one is archived and the replay restarts from its first bar."""
    if venue != "replay":
        return
    from crucible.config import load_crucible_config

    jpath = Path(journal) if journal is not None else Path(load_crucible_config(cfg_path).general.journal)
    if jpath.exists():
        console.print(f"journal {jpath} exists: archiving it (a timestamped copy beside it, nothing deleted) and "
                      "restarting the replay from its first bar", highlight=False, markup=False)


def live_summary_table(summary: dict[str, Any], width: int) -> Any:
    """The ``crucible live`` stop summary: one row per slot (equity, P&L parts, fees, weight, fills, strategy
    by name), fitted to ``width`` columns without cutting a number (``commands.ui.fit_table``)."""
    from commands.ui import fit_table, strategy_name

    bps = summary.get("bars_per_s")
    title = (f"Crucible — {summary['venue']}: {summary['bars']:,} bars, {summary['fills']:,} fills, "
             f"{summary['kills']} kills, {summary['swaps']} swaps ({summary['stopped_by']}"
             + (f"; {bps:,.0f} bars/s)" if isinstance(bps, (int, float)) else ")"))
    cols = [("slot", "left"), ("symbol", "left"), ("status", "left"), ("equity", "right"), ("realised", "right"),
            ("unrealised", "right"), ("fees", "right"), ("weight", "right"), ("fills", "right"), ("strategy", "left")]
    rows = [[str(sl["slot"]), str(sl["symbol"]), str(sl["status"]), f"{sl['equity']:,.2f}", f"{sl['realised']:+,.2f}",
             f"{sl['unrealised']:+,.2f}", f"{sl['fees']:,.2f}", f"{sl['weight']:.3f}", f"{sl['fills']:,}",
             strategy_name(sl)] for sl in summary["slots"]]
    return fit_table(title, cols, rows, width)


def status_view(rep: dict[str, Any], width: int) -> Any:
    """``crucible status``'s slot table from :func:`crucible.status.status` (slot, status, strategy by name,
    origin, equity, P&L, ...) fitted to ``width`` columns without cutting a cell (``commands.ui.fit_table``)."""
    from crucible.status import lineage_origin
    from commands.ui import fit_table, strategy_name

    c = rep["counts"]
    title = (f"Crucible bench — {rep['journal']} ({rep['venue']}): {c['fills']} fills, {c['swaps']} swaps, "
             f"{c['kills']} kills, {c['reweights']} reweights, {c['rejects']} rejected files")

    def f(x: Any, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    cols = [("slot", "left"), ("symbol", "left"), ("status", "left"), ("strategy", "left"), ("from", "left"),
            ("equity", "right"), ("P&L", "right"), ("weight", "right"), ("transfers", "right"), ("units", "right"),
            ("fills", "right"), ("fees", "right"), ("swaps", "right"), ("kills", "right")]
    rows = [[str(r["slot"]), str(r["symbol"]), str(r["status"]), strategy_name(r), lineage_origin(r.get("lineage")),
             f(r["equity"], ",.2f"), f(r.get("pnl"), "+,.2f"), f(r["weight"], ".3f"), f(r.get("transfers"), "+,.2f"),
             f(r["units"], ".6f"), str(r["fills"]), f(r["fees"], ",.2f"), str(r["swaps"]), str(r["kills"])]
            for r in rep["slots"]]
    return fit_table(title, cols, rows, width)


def execution_view(rep: dict[str, Any], width: int) -> Any:
    """``crucible status``'s execution table (issue 31) from ``rep["execution"]``
    (:func:`crucible.journal_exec.slot_exec_metrics`): per slot fills, fees and slippage against the decision price
    (bp of the decision-price notional), the share of the intended units filled passively, the post-only reject
    rate and the markouts 1 / 5 / 15 minutes after the fills (bp; + = the price moved the fill's way), fitted to
    ``width`` columns (``commands.ui.fit_table``), with a note on the units."""
    from rich.console import Group
    from rich.text import Text

    from commands.ui import fit_table

    def f(x: Any, fmt: str) -> str:
        return "—" if x is None or (isinstance(x, float) and x != x) else format(x, fmt)

    cols = [("slot", "left"), ("fills", "right"), ("fee", "right"), ("slip", "right"), ("fill%", "right"),
            ("rej%", "right"), ("mk1", "right"), ("mk5", "right"), ("mk15", "right")]
    rows = [[sid, str(m["fills"]), f(m["fee_bps"], ".2f"), f(m["slippage_bps"], "+.2f"),
             f(100 * m["fill_rate"] if m["fill_rate"] == m["fill_rate"] else None, ".1f"),
             f(100 * m["reject_rate"] if m["reject_rate"] == m["reject_rate"] else None, ".1f"),
             f(m["markout_1_bps"], "+.2f"), f(m["markout_5_bps"], "+.2f"), f(m["markout_15_bps"], "+.2f")]
            for sid, m in sorted(rep["execution"].items())]
    note = Text("fee, slip (vs the decision price), mk1/5/15 (markouts 1/5/15 min after the fill; + = moved the fill's "
                "way): bp; fill% = intended units filled passively; rej% = post-only orders refused as crossing",
                style="dim")
    return Group(fit_table("Execution (per slot)", cols, rows, width), note)


@edge
def crucible_status(
    journal: Annotated[Path, typer.Option("--journal", help="SQLite journal.")] = Path("artifacts/crucible/journal.sqlite"),
    as_json: Annotated[bool, typer.Option("--json", help="Emit JSON.")] = False,
) -> None:
    """The bench as recorded in the journal: slots, equity, weights, kills, swaps, each champion's lineage,
    each replacement request's state at the Forge worker, and why trading halted (read-only)."""
    from crucible.status import lineage_lines, request_lines, status

    rep = status(journal)
    if as_json:
        print(json_dumps(rep))
        return
    console.print(status_view(rep, console.width))
    if rep.get("execution"):
        console.print(execution_view(rep, console.width))
    for line in lineage_lines(rep) + request_lines(rep):
        console.print(escape(line), highlight=False)


@edge
def crucible_verify(files: Annotated[list[Path], typer.Argument(help="Genome JSON files (e.g. champion.json).")]) -> None:
    """Check genome files as the Crucible will before trading them: a regular file (no symlink, FIFO or
    device; at most 1 MiB; JSON nested at most 64 levels), schema, versions, checksum, primitives.  Exit 4
    naming the first bad file."""
    from forge.gp import Genome

    table = Table(title="Genome verification")
    for col in ("file", "sha256", "features", "lookback", "nodes"):
        table.add_column(col)
    for f in files:
        g = Genome.load(f, follow_symlinks=False)  # hardened reader: never blocks, never reads a huge file
        table.add_row(str(f), g.sha256[:16], ", ".join(g.features), str(g.lookback), str(len(g.tokens)))
    console.print(table)
    console.print(f"[green]{len(files)} genome file(s) valid[/]")


@edge
def crucible_record(
    venue: Annotated[str, typer.Option("--venue", help="binanceusdm | bybit (mainnet public feeds; no keys needed).")],
    symbols: Annotated[str, typer.Option("--symbols", help="Comma-separated exchange symbols, e.g. BTCUSDT,ETHUSDT (USDT linear perpetuals).")],
    depth: Annotated[int, typer.Option("--depth", help="Book levels per side stored (1..1000).")] = 20,
    dest: Annotated[Path, typer.Option("--dest", help="Recording directory (DEST/<venue>/<SYMBOL>/{l2,trades,gaps}/YYYY-MM-DD.parquet).")] = Path("artifacts/l2"),
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Stop after this many seconds (> 0; default: until Ctrl-C / SIGTERM).")] = None,
    flush_seconds: Annotated[float, typer.Option("--flush-seconds", help="Part-file interval: a kill loses at most this many seconds of rows.")] = 1.0,
    idle_seconds: Annotated[float, typer.Option("--idle-seconds", help="Reconnect a book stream silent this long (a stalled connection); raise it for quiet symbols.")] = 30.0,
    lens_k: Annotated[int, typer.Option("--lens-k", help="Levels / ticks of the live Liquidity Lens line printed per symbol and minute (OFI, book pressure, density, spread).")] = 5,
    ws_url: Annotated[Optional[str], typer.Option("--ws-url", hidden=True, help="WebSocket base URL override (loopback fakes).")] = None,
    rest_url: Annotated[Optional[str], typer.Option("--rest-url", hidden=True, help="REST origin override (loopback fakes).")] = None,
) -> None:
    """Record L2 order books (top --depth levels, exchange time, receive time, update id) and trades from a
    mainnet public feed to daily Parquet files, rotating at UTC midnight, with gap markers on every
    (re)connect and sequence gap.  Testnet books are not evidence, so only mainnet feeds are recorded.
    Ctrl-C / SIGTERM: the buffered rows are flushed, then the summary is printed."""
    from crucible.record import check_args, parse_symbols, record

    check_args(venue, depth)
    if not 1 <= lens_k <= depth:
        raise ConfigError(f"--lens-k {lens_k}: expected 1..{depth} (the recorded depth)")
    syms = parse_symbols(symbols)
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"--max-seconds {max_seconds}: expected > 0")
    if not flush_seconds > 0:
        raise ConfigError(f"--flush-seconds {flush_seconds}: expected > 0")
    if not idle_seconds > 0:
        raise ConfigError(f"--idle-seconds {idle_seconds}: expected > 0")

    def on_event(e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "gap":
            def hms(ms: Any) -> str:
                if ms is None:
                    return "(nothing recorded before)"
                return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

            console.print(escape(f"gap {e['symbol']} {e['stream']} ({e['reason']}): {hms(e['start_recv_ms'])} -> "
                                 f"{hms(e['end_recv_ms'])} UTC (receive time)"), highlight=False)
        elif kind in ("reconnect", "error"):
            console.print(escape(f"{kind} {e.get('symbol', '')} {e.get('stream', e.get('what', ''))}: "
                                 f"{e.get('reason', '')} {e.get('error', '')}"), highlight=False)
        elif kind == "lens":
            t = datetime.fromtimestamp(e["open_time"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")

            def f(x: Any, fmt: str) -> str:
                return "—" if x is None or x != x else format(x, fmt)

            console.print(escape(f"lens {e['symbol']} {t}: OFI {f(e['ofi'], '+,.4g')} ({e['ofi_n']} updates), pressure "
                                 f"{f(e['pressure'], '+.3f')} (close {f(e['pressure_close'], '+.3f')}), density "
                                 f"{f(e['density'], ',.4g')}/tick, spread {f(e['spread'], '.6g')}"
                                 + (" [gap]" if e["gap"] else "")), highlight=False)
        elif kind == "rotate":
            console.print(escape(f"rotated {e['from']} -> {e['to']} (finished day compacted)"), highlight=False)

    console.print(escape(f"recording {venue} {','.join(syms)} depth {depth} -> {dest} (mainnet public feed)"),
                  highlight=False)
    s = record(venue, syms, depth, str(dest), max_seconds, flush_seconds=flush_seconds, ws_url=ws_url,
               rest_url=rest_url, lens_k=lens_k, idle_seconds=idle_seconds, progress=on_event)
    console.print(escape(f"recorded {s['l2_rows']:,} book states, {s['trade_rows']:,} trades, {s['gaps']} gap markers, "
                         f"{s['reconnects']} reconnects ({s['sequence_gaps']} sequence gaps); dropped duplicates: "
                         f"{s['dup_trades']} trades, {s['dup_books']} books; {s['parts']} part files, "
                         f"{s['bytes']:,} bytes in {s['seconds']:.1f} s -> {s['dest']}"), highlight=False)
