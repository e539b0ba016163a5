"""Terminal rendering shared by the three command-line apps (no I/O of its own).

Pure functions from the library's plain-data events to text or rich
renderables, so they can be tested at any width without a terminal:

* number formats used everywhere (:func:`fmt_num`, :func:`fmt_pct`,
  :func:`fmt_drawdown`, :func:`fmt_p`);
* the ``forge evolve`` progress line (:func:`generation_line`), which keeps
  the most important fields when the terminal is narrow, and
  :class:`EvolveProgress`, which shows it live on a terminal and as one plain
  line per generation when piped;
* the ``crucible live`` dashboard (:func:`crucible_dashboard`) and the
  throttle that refreshes it (:class:`Throttle`);
* the causal-filter decision label (:func:`causal_decision`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["fmt_num", "fmt_pct", "fmt_drawdown", "fmt_p", "fmt_duration", "generation_line", "phase_summary",
           "warmup_message", "compile_message", "kernels_cached", "fit_table", "strategy_name",
           "reconcile_sentence", "event_line", "EvolveProgress", "Throttle", "crucible_dashboard", "causal_decision"]


# --------------------------------------------------------------------------- numbers


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_num(v: Any, digits: int = 3) -> str:
    """A number for a table cell: ints with thousands separators, floats to ``digits`` decimals,
    ``None``/NaN as "—", +inf as "never" (e.g. a time to target never reached), strings unchanged."""
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float) and not math.isfinite(v):
        return "never" if v > 0 else "—"
    return f"{v:.{digits}f}"


def fmt_pct(v: Any, signed: bool = True, digits: int = 2) -> str:
    """A fraction as a percentage (0.0324 -> "+3.24%"); non-numbers as :func:`fmt_num`."""
    if not _finite(v):
        return fmt_num(v)
    return f"{100 * v:+.{digits}f}%" if signed else f"{100 * v:.{digits}f}%"


def fmt_drawdown(v: Any, digits: int = 2) -> str:
    """A maximum drawdown (a loss fraction >= 0, as the backtester reports it) as a negative
    percentage: 0.0151 -> "-1.51%", 0 -> "0.00%"."""
    if not _finite(v):
        return fmt_num(v)
    v = abs(float(v))
    return f"-{100 * v:.{digits}f}%" if v > 0 else f"{0:.{digits}f}%"


def fmt_p(v: Any) -> str:
    """A p- or q-value: 3 significant digits, "<0.001" below 0.001, "—" when absent."""
    if not _finite(v):
        return "—"
    if v < 0.001:
        return "<0.001"
    return f"{v:.3f}" if v < 0.995 else "1.00"


def fmt_duration(seconds: float | None) -> str:
    """Seconds as h:mm:ss ("-:--:--" when unknown)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --------------------------------------------------------------------------- forge evolve progress


def kernels_cached() -> bool:
    """True when numba's cache holds every kernel a ``forge evolve`` run uses, fresh for their sources
    (``forge.warmup.cache_state``: numba's own index test), i.e. the run compiles nothing."""
    from forge.warmup import cache_state

    return cache_state().complete


def compile_message(state: Any) -> str:
    """The progress line while the kernels compile: how far along (share of the compile time of the
    kernels already cached, ``forge.warmup.CacheState``) and why it happens."""
    return (f"compiling numba kernels {100 * state.fraction:3.0f}% ({state.cached}/{state.total} cached; "
            "once per install: forge warmup)")  # <= 80 columns


def warmup_message(cached: Any) -> str:
    """What the user is told while generation 0 runs.  cached: True / False, or a ``CacheState`` (how many
    kernels are still to compile: the run compiles them itself, e.g. with the dask backend)."""
    complete = cached if isinstance(cached, bool) else cached.complete
    if complete:
        return "gen 0: evaluating the initial population…"
    if isinstance(cached, bool):
        return "gen 0: compiling numba kernels (first run only), then evaluating the initial population…"
    return (f"gen 0: compiling numba kernels ({cached.total - cached.cached} of {cached.total} not cached), "
            "then evaluating the initial population…")


def _bar(fraction: float, width: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(round(fraction * width))
    return "█" * full + "░" * (width - full)


PHASE_GROUPS = (("breed", ("breed",)),
                ("surrogate", ("surrogate_proxy", "surrogate_descriptors", "surrogate_ranking")),
                ("fitness", ("fitness",)), ("coev", ("coevolution",)), ("ckpt", ("checkpoint",)))
"""Progress-line label -> phases of ``forge.evolution.clock.PHASES`` it sums."""


def phase_summary(phases: dict[str, Any]) -> str:
    """A generation's per-phase clock in one short field, seconds with one decimal:
    ``"breed 0.1 · surrogate 4.2 · fitness 1.3 · coev 2.0 · ckpt 0.0 s"`` (groups of :data:`PHASE_GROUPS`
    present in ``phases``; "" when none is)."""
    parts = []
    for label, names in PHASE_GROUPS:
        vals = [phases[n] for n in names if _finite(phases.get(n))]
        if vals:
            parts.append(f"{label} {sum(vals):.1f}")
    return " · ".join(parts) + " s" if parts else ""


def generation_line(e: dict[str, Any], *, width: int | None = None, elapsed: float | None = None,
                    eta: float | None = None, bar: bool = True) -> str:
    """One progress line for a ``{"event": "generation"}`` dict of ``forge evolve``.

    e: needs "gen" (0 = initial population), "generations" (the configured
    number; the counter reads ``gen 3/3`` at the end), "best" (best fitness of
    this generation's population), "hof_best" (best so far, the hall of
    fame's top; never falls); optional "median", "evals_per_s",
    "evaluated_total", "surrogate_spearman", "surrogate_spearman_holdout",
    "evals_saved", "phase_seconds" (the generation's per-phase clock, shown
    grouped by :func:`phase_summary`), "overhead_ratio" (wall time / necessary work,
    ``forge.evolution.clock``).  width: terminal columns; fields are dropped, least
    important first, until the line fits (the counter and best-so-far always
    stay), and a progress bar fills spare room.  None: every field, no bar
    (piped logs).  elapsed / eta: seconds.  bar: False leaves the bar out (piped output fitted to
    COLUMNS).  At 80 columns the line keeps the counter, both bests and evals/s.
    """
    total = int(e.get("generations", 0))
    gen = int(e["gen"])
    best_so_far = e.get("hof_best", e.get("best"))
    # (priority, text); lower priority number = kept longer
    fields: list[tuple[float, str]] = [
        (0, f"gen {gen}/{total}"),
        (1, f"best so far {best_so_far:+.3f}" if _finite(best_so_far) else "best so far —"),
        (2, f"gen best {e['best']:+.3f}" if _finite(e.get("best")) else "gen best —"),
    ]
    if elapsed is not None:
        fields.append((3, fmt_duration(elapsed)))
    if elapsed is not None or eta is not None:
        fields.append((4, f"ETA {fmt_duration(eta)}"))
    if _finite(e.get("median")):
        fields.append((6, f"median {e['median']:+.3f}"))
    if _finite(e.get("evals_per_s")):
        fields.append((2.5, f"{e['evals_per_s']:.0f} evals/s"))
    if _finite(e.get("evaluated_total")):
        fields.append((7, f"evaluated {int(e['evaluated_total']):,}"))
    if _finite(e.get("surrogate_spearman")):
        s = f"surrogate ρ {e['surrogate_spearman']:+.2f}"
        if _finite(e.get("surrogate_spearman_holdout")):
            s += f" (hold-out {e['surrogate_spearman_holdout']:+.2f})"
        fields.append((8, s))
    if _finite(e.get("evals_saved")) and e.get("evals_saved"):
        fields.append((9, f"saved {int(e['evals_saved']):,}"))
    if isinstance(e.get("phase_seconds"), dict) and phase_summary(e["phase_seconds"]):
        fields.append((10, phase_summary(e["phase_seconds"])))
    if _finite(e.get("overhead_ratio")):
        fields.append((11, f"{e['overhead_ratio']:.1f}x necessary work"))
    sep = "  "
    if width is None:
        return sep.join(t for _p, t in fields)
    keep = list(fields)
    while len(keep) > 2 and len(sep.join(t for _p, t in keep)) > width:
        keep.remove(max(keep, key=lambda f: f[0]))
    text = [t for _p, t in keep]
    line = sep.join(text)
    if len(line) > width:  # even counter + best so far do not fit: hard cut
        return line[: max(width - 1, 0)] + "…"
    room = width - len(line) - 2 * len(sep)
    if bar and room >= 10:
        frac = gen / total if total else 1.0
        bar = _bar(frac, min(room, 40))
        text.insert(1, bar)
        line = sep.join(text)
    return line


class EvolveProgress:
    """Turns ``forge evolve`` progress events into output.

    console: a rich Console.  live: True on a terminal (one line redrawn in
    place, fitted to the terminal width); False when piped (one plain line
    per generation, nothing redrawn).  emit_table: callback receiving rich
    renderables to print above the progress line (the causal table).
    clock: seconds, for tests.
    """

    def __init__(self, console: Any, *, live: bool, clock: Callable[[], float] = time.monotonic,
                 cached_kernels: bool | None = None):
        self.console = console
        self.live = live
        self.clock = clock
        self.cached: Any = kernels_cached() if cached_kernels is None else cached_kernels
        self._compile_step = -1
        self.t0: float | None = None
        self.last: dict[str, Any] | None = None
        self.gen_seconds: list[float] = []
        self.status = ""
        self._live: Any = None

    # the renderable of the live line: re-rendered at the console's width on every refresh
    def __rich_console__(self, console: Any, options: Any):
        from rich.text import Text

        yield Text(self.current_line(options.max_width), no_wrap=True, overflow="ellipsis")

    def elapsed(self) -> float | None:
        return None if self.t0 is None else self.clock() - self.t0

    def eta(self) -> float | None:
        if self.last is None:
            return None
        remaining = int(self.last.get("generations", 0)) - int(self.last["gen"])
        if remaining <= 0:
            return 0.0
        later = self.gen_seconds[1:]  # generation 0 includes kernel compilation and the initial population
        if not later:
            return None
        return remaining * sum(later) / len(later)

    def current_line(self, width: int | None) -> str:
        if self.last is None:
            line = self.status
            if width is not None and len(line) > width:
                line = line[: max(width - 1, 0)] + "…"
            return line
        return generation_line(self.last, width=width, elapsed=self.elapsed(), eta=self.eta())

    def _start_live(self) -> None:
        if self.live and self._live is None:
            from rich.live import Live

            self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._live.start()

    def compiling(self, state: Any) -> None:
        """Kernels compiling before the run (``forge.warmup.warmup``'s progress): redrawn in place on a
        terminal; piped, one line at the start and at every further 10 % of the compile time."""
        self.status = compile_message(state)
        self.cached = state
        if self.live:
            self._start_live()
            self._live.refresh()
            return
        step = int(10 * state.fraction)
        if step > self._compile_step:
            self._compile_step = step
            self.console.print(self.status, highlight=False, markup=False)

    def start(self, generations: int) -> None:
        self.t0 = self.clock()
        self.status = warmup_message(self.cached)
        if self.live:
            self._start_live()
        else:
            self.console.print(self.status, highlight=False, markup=False)

    def generation(self, e: dict[str, Any]) -> None:
        self.last = dict(e)
        if isinstance(e.get("seconds"), (int, float)):
            self.gen_seconds.append(float(e["seconds"]))
        if self._live is not None:
            self._live.refresh()
        else:
            secs = f"  ({e['seconds']:.1f} s)" if _finite(e.get("seconds")) else ""
            width = self.console.width - len(secs) if self.console.width else None
            self.console.print(generation_line(e, width=width, bar=False) + secs, highlight=False, markup=False,
                               soft_wrap=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


# --------------------------------------------------------------------------- crucible live


class Throttle:
    """Calls ``fn`` at most once per ``interval`` seconds (``clock`` seconds); :meth:`flush` forces it.

    Used by ``crucible live``: the replay can produce thousands of bars a
    second, the dashboard is redrawn a few times a second.
    """

    def __init__(self, fn: Callable[[], None], interval: float = 0.25, clock: Callable[[], float] = time.monotonic):
        self.fn, self.interval, self.clock = fn, interval, clock
        self.last = -math.inf
        self.calls = 0

    def __call__(self) -> bool:
        now = self.clock()
        if now - self.last < self.interval:
            return False
        self.flush(now)
        return True

    def flush(self, now: float | None = None) -> None:
        self.last = self.clock() if now is None else now
        self.calls += 1
        self.fn()


def crucible_dashboard(state: dict[str, Any], events: Iterable[str] = ()) -> Any:
    """The ``crucible live`` dashboard as a rich Table.

    state: {"venue": str, "time": venue time of the last bar, ms since epoch
    (None before the first bar), "bars": int, "slots": [{"slot", "symbol",
    "status", "genome", "equity" (USDT), "weight" (fraction of capital),
    "target" (position, -1..1), "fills"}], "warning": str (optional: shown above the events, e.g. that testnet
    fills say nothing about real queue position)}.  events: recent event lines, shown as the caption (oldest first).
    """
    from rich.markup import escape
    from rich.table import Table

    when = (datetime.fromtimestamp(state["time"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
            if state.get("time") else "—")
    ev = list(events)
    total = sum(float(sl.get("equity") or 0.0) for sl in state.get("slots", []))
    t = Table(title=f"Crucible — {state.get('venue')}  {when} UTC  {state.get('bars', 0):,} bars  "
                    f"equity {total:,.2f} USDT",
              caption="\n".join(([f"[yellow]warning: {escape(state['warning'])}[/]"] if state.get("warning") else [])
                                + ev) or None, caption_justify="left")
    for col in ("slot", "symbol", "status", "strategy", "equity", "weight", "target", "fills"):
        t.add_column(col, justify="left" if col in ("slot", "symbol", "status", "strategy") else "right",
                     no_wrap=col in ("equity", "weight", "target", "fills"), overflow="fold")
    colors = {"live": "green", "killed": "red", "stopped": "yellow"}
    for sl in state.get("slots", []):
        st = str(sl.get("status"))
        t.add_row(str(sl.get("slot")), str(sl.get("symbol")), f"[{colors.get(st, 'white')}]{st}[/]",
                  escape(strategy_name(sl, limit=40)), fmt_num(sl.get("equity"), 2), fmt_num(sl.get("weight"), 3),
                  f"{sl['target']:+.2f}" if _finite(sl.get("target")) else "—", fmt_num(sl.get("fills")))
    return t


def recent_events(maxlen: int = 8) -> deque[str]:
    """A bounded buffer of event lines for :func:`crucible_dashboard`."""
    return deque(maxlen=maxlen)


# --------------------------------------------------------------------------- causal filter


def causal_decision(row: list[str], kept: set[str], alpha: float | None) -> str:
    """Decision label of one causal-table row ``[feature, lag, corr, p, q, decision]``.

    "kept" when the feature's link is significant (q <= alpha), "kept (floor)"
    when it was kept only to reach ``keep_at_least``, "dropped" otherwise
    (or the library's own reason text when it had no link at all).
    """
    name, q, decision = row[0], row[4], row[-1]
    if name not in kept:
        return decision
    if decision.startswith("kept to reach") or decision.startswith("kept (floor"):
        return "kept (floor)"
    try:
        qv = float(q)
    except ValueError:
        return "kept (floor)" if q in ("-", "") else "kept"
    if alpha is not None and qv > alpha:
        return "kept (floor)"
    return "kept"


# --------------------------------------------------------------------------- tables that fit


def fit_table(title: str, columns: list[tuple[str, str]], rows: list[list[Any]], width: int,
              caption: str | None = None) -> Any:
    """A table that never cuts a cell: a rich Table (cells unwrapped) when its natural width fits in
    ``width`` columns, else a vertical layout, one record per row ("header value" pairs flowed into the
    width, each record headed by its first cell).

    columns: [(header, "left" | "right")]; rows: cells as plain strings (never read as markup) or rich
    ``Text`` (kept with their style); width: columns of the output (a console's width).  returns a rich
    renderable.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cells = [[c if isinstance(c, Text) else Text(str(c)) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i].plain) for r in cells]) for i, (h, _j) in enumerate(columns)]
    natural = sum(widths) + 3 * len(columns) + 1  # rich's default box: "│ " + cell + " " per column, closing "│"
    if natural <= width and len(title) <= width:
        t = Table(title=title, caption=caption, caption_justify="left")
        for (h, j), w in zip(columns, widths):
            t.add_column(h, justify=j, no_wrap=True, min_width=w)  # type: ignore[arg-type]
        for r in cells:
            t.add_row(*r)
        return t
    parts: list[Any] = [Text(title, style="bold", overflow="fold")]
    for r in cells:
        parts.append(Text.assemble((f"{columns[0][0]} ", "bold"), r[0], overflow="fold"))
        line = Text("  ", overflow="fold")
        for (h, _j), cell in zip(columns[1:], r[1:]):
            pair = Text.assemble((f"{h} ", "dim"), cell)
            if len(line.plain) > 2 and len(line.plain) + 3 + len(pair.plain) > width:
                parts.append(line)
                line = Text("  ", overflow="fold")
            if len(line.plain) > 2:
                line.append("   ")
            line.append_text(pair)
        if len(line.plain) > 2:
            parts.append(line)
    if caption:
        parts.append(Text(caption, overflow="fold"))
    return Group(*parts)


def strategy_name(slot: dict[str, Any], limit: int | None = None) -> str:
    """The name of a Crucible slot's strategy: its built-in ref ("builtin:momentum"), else the champion's
    expression (from its lineage), else its genome hash.  limit: cut a long expression to this many
    characters with "…" (the hash stays whole)."""
    lin = slot.get("lineage") or {}
    ref = str(lin.get("ref") or "")
    if ref.startswith("builtin:"):
        return ref
    expr = lin.get("expression")
    if expr:
        expr = str(expr)
        return expr if limit is None or len(expr) <= limit else expr[: max(limit - 1, 1)] + "…"
    return str(slot.get("genome") or "—")


def reconcile_sentence(rep: dict[str, Any]) -> str:
    """A reconcile report of the Crucible (``{"resolved", "resent", "abandoned"}`` order-id lists,
    "new_fills", "position_diff" {symbol: base units}, "balance_diff" USDT or None) as one sentence."""
    if not rep:
        return "reconcile: not run"
    n = {k: len(rep.get(k) or []) for k in ("resolved", "resent", "abandoned")}
    orders = (f"{n['resolved']} open order{'s' if n['resolved'] != 1 else ''} found at the venue, "
              f"{n['resent']} resent, {n['abandoned']} abandoned")
    fills = int(rep.get("new_fills") or 0)
    diff = rep.get("position_diff") or {}
    pos = ("positions match the journal" if not diff else
           "positions differ from the journal: " + ", ".join(f"{s} {d:+.8g}" for s, d in sorted(diff.items())))
    bal = rep.get("balance_diff")
    money = "" if not _finite(bal) else f"; balance differs by {bal:+.2f} USDT"
    return f"reconcile: {orders}; {fills} fill{'s' if fills != 1 else ''} booked; {pos}{money}"


def event_line(e: dict[str, Any]) -> str:
    """One ``crucible live`` event as a line: reconcile as a sentence, every other event as key=value pairs."""
    kind = e.get("event")
    if kind == "reconcile":
        return reconcile_sentence({k: v for k, v in e.items() if k != "event"})
    return f"{kind} " + ", ".join(f"{k}={v}" for k, v in e.items() if k != "event")
