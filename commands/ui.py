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
           "warmup_message", "kernels_cached", "EvolveProgress", "Throttle", "crucible_dashboard", "causal_decision"]


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


def kernels_cached(package_dir: Path | None = None) -> bool:
    """True when numba's on-disk cache of the VM kernels exists (``forge/gp/__pycache__/vm_nb.*.nbi``),
    i.e. this is not the first run on this machine and no compilation is expected."""
    import forge

    root = package_dir or Path(forge.__file__).resolve().parent
    return any((root / "gp" / "__pycache__").glob("vm_nb.*.nbi"))


def warmup_message(cached: bool) -> str:
    """What the user is told while generation 0 runs (kernel compilation dominates a first run)."""
    if cached:
        return "gen 0: evaluating the initial population…"
    return "gen 0: compiling kernels (first run only: about 5 minutes on 2 cores), then evaluating the initial population…"


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
                    eta: float | None = None) -> str:
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
    (piped logs).  elapsed / eta: seconds.
    """
    total = int(e.get("generations", 0))
    gen = int(e["gen"])
    best_so_far = e.get("hof_best", e.get("best"))
    # (priority, text); lower priority number = kept longer
    fields: list[tuple[int, str]] = [
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
        fields.append((5, f"{e['evals_per_s']:.0f} evals/s"))
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
    if room >= 10:
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
        self.cached = kernels_cached() if cached_kernels is None else cached_kernels
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

    def start(self, generations: int) -> None:
        self.t0 = self.clock()
        self.status = warmup_message(self.cached)
        if self.live:
            from rich.live import Live

            self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._live.start()
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
            self.console.print(generation_line(e) + secs, highlight=False, markup=False)

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
    "target" (position, -1..1), "fills"}]}.  events: recent event lines,
    shown as the caption (oldest first).
    """
    from rich.table import Table

    when = (datetime.fromtimestamp(state["time"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
            if state.get("time") else "—")
    ev = list(events)
    total = sum(float(sl.get("equity") or 0.0) for sl in state.get("slots", []))
    t = Table(title=f"Crucible — {state.get('venue')}  {when} UTC  {state.get('bars', 0):,} bars  "
                    f"equity {total:,.2f} USDT",
              caption="\n".join(ev) or None, caption_justify="left")
    for col in ("slot", "symbol", "status", "champion", "equity", "weight", "target", "fills"):
        t.add_column(col, justify="left" if col in ("slot", "symbol", "status", "champion") else "right",
                     no_wrap=col in ("equity", "weight", "target", "fills"))
    colors = {"live": "green", "killed": "red", "stopped": "yellow"}
    for sl in state.get("slots", []):
        st = str(sl.get("status"))
        t.add_row(str(sl.get("slot")), str(sl.get("symbol")), f"[{colors.get(st, 'white')}]{st}[/]",
                  str(sl.get("genome"))[:12], fmt_num(sl.get("equity"), 2), fmt_num(sl.get("weight"), 3),
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
