"""``crucible status``: the bench as recorded in a journal (read-only).

:func:`status` returns plain data; :func:`status_table` renders it with rich.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from crucible.journal import OPEN_STATUSES, Journal, JournalError
from forge.core.errors import ConfigError

__all__ = ["status", "status_table"]


def status(journal_path: str | Path) -> dict[str, Any]:
    """Read a journal.

    returns {"journal", "venue", "started_ms", "last_bar_ms", "slots": [{"slot", "symbol", "status",
    "genome", "capital", "equity", "cash", "units", "mark", "weight", "time_ms", "transfers", "pnl", "swaps",
    "kills", "fills", "fees"}], "counts": {"orders", "fills", "swaps", "kills", "reweights", "transfers",
    "rejects", "open_orders"}, "recent": [last 10 events {"time_ms", "kind", "slot", "data"}]}.
    Money in USDT, from the latest equity snapshot: ``weight`` is the CWO capital weight; ``transfers`` the
    net capital moved into the slot by the CWO (sum over ``transfer`` events, see :func:`_amount`; negative:
    moved out); ``pnl`` the slot's own P&L = equity - capital - transfers (None before the first snapshot).
    raises ConfigError if the file does not exist; JournalError (one line, exit 2) if it is not a crucible
    journal, is corrupt, or SQLite fails while reading.  Takes no lock: works while ``crucible live`` writes.
    """
    p = Path(journal_path)
    if not p.is_file():
        raise ConfigError(f"{p}: no journal (run `crucible live` first)")
    try:
        return _status(p)
    except sqlite3.Error as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JournalError(f"{p}: cannot read the journal: {msg}") from None


def _status(p: Path) -> dict[str, Any]:
    j = Journal(p, readonly=True)
    try:
        eq = j.last_equity()
        meta_slots = j.get_meta("slots", {}) or {}
        events = j.events()
        fills = j.fills()
        genome_now: dict[str, str] = {}
        for e in events:
            if e["kind"] in ("swap", "rollback") and e["slot"]:
                genome_now[e["slot"]] = e["data"]["new"][:16]
        rows = []
        for sid in sorted(set(meta_slots) | set(eq)):
            m, r = meta_slots.get(sid, {}), eq.get(sid, {})
            sf = [f for f in fills if f["slot"] == sid]
            cap = m.get("capital")
            moved = sum(_amount(e, sid) for e in events if e["kind"] == "transfer"
                        and (r.get("time_ms") is None or e["time_ms"] <= r["time_ms"]))
            eqv = r.get("equity")
            rows.append({
                "slot": sid, "symbol": m.get("symbol"), "status": r.get("status", "?"),
                "genome": genome_now.get(sid, m.get("genome")), "capital": cap, "equity": eqv, "cash": r.get("cash"),
                "units": r.get("units"), "mark": r.get("mark"), "weight": r.get("weight"),
                "time_ms": r.get("time_ms"), "transfers": moved,
                "pnl": None if eqv is None or cap is None else float(eqv) - float(cap) - moved,
                "swaps": sum(1 for e in events if e["kind"] == "swap" and e["slot"] == sid),
                "kills": sum(1 for e in events if e["kind"] == "kill" and e["slot"] == sid),
                "fills": len(sf), "fees": sum(f["fee"] for f in sf)})
        counts = {"orders": len(j.orders()), "fills": len(fills),
                  "swaps": sum(e["kind"] == "swap" for e in events), "kills": sum(e["kind"] == "kill" for e in events),
                  "reweights": sum(e["kind"] == "reweight" for e in events),
                  "transfers": sum(e["kind"] == "transfer" for e in events),
                  "rejects": sum(e["kind"] == "reject" for e in events), "open_orders": len(j.orders(OPEN_STATUSES))}
        recent = [e for e in events if e["kind"] != "reweight"][-10:]
        return {"journal": str(p), "venue": j.get_meta("venue"), "started_ms": j.get_meta("started_ms"),
                "last_bar_ms": j.get_meta("last_bar_ms"), "slots": rows, "counts": counts, "recent": recent}
    finally:
        j.close()


def _amount(event: dict[str, Any], slot: str) -> float:
    """USDT moved into ``slot`` by a ``transfer`` event: data ``{"amounts": {slot: USDT, ...}}`` (one event
    per reweight, as the runtime writes it) or, on an event of that slot, data ``{"amount": USDT}``; 0 when
    absent or not a number."""
    d = event["data"] if isinstance(event["data"], dict) else {}
    a = d["amounts"].get(slot) if isinstance(d.get("amounts"), dict) else (
        d.get("amount") if event["slot"] == slot else None)
    return float(a) if isinstance(a, (int, float)) and not isinstance(a, bool) else 0.0


def status_table(report: dict[str, Any]):
    """A rich Table of the slots in ``report`` (from :func:`status`)."""
    from rich.table import Table

    c = report["counts"]
    t = Table(title=f"Crucible bench — {report['journal']} ({report['venue']}): {c['fills']} fills, "
                    f"{c['swaps']} swaps, {c['kills']} kills, {c['reweights']} reweights, {c['rejects']} rejected files")
    for col in ("slot", "symbol", "status", "genome", "equity", "P&L", "weight", "transfers", "units", "fills", "fees",
                "swaps", "kills"):
        t.add_column(col, justify="left" if col in ("slot", "symbol", "status", "genome") else "right")

    def f(x: Any, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    for r in report["slots"]:
        st = r["status"]
        color = {"live": "green", "killed": "red", "stopped": "yellow"}.get(st, "white")
        t.add_row(r["slot"], str(r["symbol"]), f"[{color}]{st}[/]", str(r["genome"])[:24], f(r["equity"], ".2f"),
                  f(r.get("pnl"), "+.2f"), f(r["weight"], ".3f"), f(r.get("transfers"), "+.2f"), f(r["units"], ".6f"),
                  str(r["fills"]), f(r["fees"], ".2f"), str(r["swaps"]), str(r["kills"]))
    return t
