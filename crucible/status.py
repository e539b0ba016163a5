"""``crucible status``: the bench as recorded in a journal (read-only).

:func:`status` returns plain data; ``commands.crucible.status_view`` renders it (fitted to the terminal).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crucible.journal import OPEN_STATUSES, Journal, JournalError
from crucible.journal_exec import slot_exec_metrics
from forge.core.errors import ConfigError
from forge.core.requests import read_state

__all__ = ["status", "lineage_origin", "lineage_lines", "request_lines", "request_states"]


def status(journal_path: str | Path) -> dict[str, Any]:
    """Read a journal.

    returns {"journal", "venue", "started_ms", "last_bar_ms", "slots": [{"slot", "symbol", "status",
    "genome", "policy" (the champion's execution policy sha256[:16], None = always-taker), "champion" (its
    identity as a file stem: genome[:16], or genome[:16]-policy[:16]), "capital", "equity", "cash", "units", "mark", "weight", "time_ms", "transfers", "pnl", "lineage",
    "swaps" (swaps and re-arms), "rearms", "kills", "fills", "fees"}], "counts": {"orders", "fills", "swaps",
    "rearms", "kills", "requests", "reweights", "transfers", "rejects", "open_orders"}, "recent": [last 10
    events {"time_ms", "kind", "slot", "data"}], "requests": [each replacement request the bench wrote:
    {"path", "slot", "time_ms", "status" (the Forge worker's ``.serve.json`` status: claimed | served |
    unserved, or "pending" when it has none yet), "reason", "quarantined", "crashes", "attempts"}],
    "halts": [the ``halt`` events' reasons], "chain_seq": the last chained money event, "execution": per-slot
    execution metrics (:func:`crucible.journal_exec.slot_exec_metrics`: fees, slippage against the decision price,
    fill rate, post-only reject rate, markouts; {} for a journal from before issue 31)}.  ``lineage`` is where the slot's current champion came from
    (:mod:`crucible.lineage`: source, run id, request, parent genome, gauntlet verdict, since when, why the
    previous one left).
    Money in USDT, from the latest equity snapshot: ``weight`` is the CWO capital weight; ``transfers`` the
    net capital moved into the slot by the CWO (sum over ``transfer`` events, see :func:`_amount`; negative:
    moved out); ``pnl`` the slot's own P&L = equity - capital - transfers (None before the first snapshot);
    for a re-armed slot both count from its last ``rearm`` (its current life, a new ledger; ``fills`` and
    ``fees`` count every life).
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
        lineage: dict[str, dict[str, Any]] = {}
        for e in events:
            if e["kind"] in ("swap", "rollback", "rearm") and e["slot"]:
                genome_now[e["slot"]] = e["data"]["new"][:16]
                if isinstance(e["data"].get("lineage"), dict):
                    lineage[e["slot"]] = e["data"]["lineage"]
        rows = []
        for sid in sorted(set(meta_slots) | set(eq)):
            m, r = meta_slots.get(sid, {}), eq.get(sid, {})
            sf = [f for f in fills if f["slot"] == sid]
            cap = m.get("capital")
            # a re-armed slot's P&L is its current life's: transfers after its last re-arm (events are in order)
            life = max((i for i, e in enumerate(events) if e["kind"] == "rearm" and e["slot"] == sid), default=-1)
            moved = sum(_amount(e, sid) for e in events[life + 1:] if e["kind"] == "transfer"
                        and (r.get("time_ms") is None or e["time_ms"] <= r["time_ms"]))
            eqv = r.get("equity")
            pol16 = str((lineage.get(sid) or {}).get("policy_sha256") or "")[:16] or None
            rows.append({
                "slot": sid, "symbol": m.get("symbol"), "status": r.get("status", "?"),
                "genome": genome_now.get(sid, m.get("genome")),
                "policy": pol16,
                "champion": f"{str(genome_now.get(sid, m.get('genome')))[:16]}-{pol16}" if pol16 else
                genome_now.get(sid, m.get("genome")),
                "capital": cap, "equity": eqv, "cash": r.get("cash"),
                "units": r.get("units"), "mark": r.get("mark"), "weight": r.get("weight"),
                "time_ms": r.get("time_ms"), "transfers": moved,
                "pnl": None if eqv is None or cap is None else float(eqv) - float(cap) - moved,
                "lineage": lineage.get(sid) or {"source": _source(m.get("genome")), "ref": m.get("genome"),
                                                "since_ms": None, "previous_left": None},
                "swaps": sum(1 for e in events if e["kind"] in ("swap", "rearm") and e["slot"] == sid),
                "rearms": sum(1 for e in events if e["kind"] == "rearm" and e["slot"] == sid),
                "kills": sum(1 for e in events if e["kind"] == "kill" and e["slot"] == sid),
                "fills": len(sf), "fees": sum(f["fee"] for f in sf)})
        counts = {"orders": len(j.orders()), "fills": len(fills),
                  "swaps": sum(e["kind"] in ("swap", "rearm") for e in events),
                  "rearms": sum(e["kind"] == "rearm" for e in events), "kills": sum(e["kind"] == "kill" for e in events),
                  "requests": sum(e["kind"] == "request" for e in events),
                  "reweights": sum(e["kind"] == "reweight" for e in events),
                  "transfers": sum(e["kind"] == "transfer" for e in events),
                  "rejects": sum(e["kind"] == "reject" for e in events), "open_orders": len(j.orders(OPEN_STATUSES))}
        recent = [e for e in events if e["kind"] != "reweight"][-10:]
        reqs = request_states([e for e in events if e["kind"] == "request"])
        halts = [str(e["data"].get("reason")) for e in events if e["kind"] == "halt"]
        seq = j.db.execute("SELECT MAX(seq) FROM chain").fetchone()[0] if j.db.execute(
            "SELECT 1 FROM sqlite_master WHERE name='chain'").fetchone() else None
        return {"journal": str(p), "venue": j.get_meta("venue"), "started_ms": j.get_meta("started_ms"),
                "last_bar_ms": j.get_meta("last_bar_ms"), "slots": rows, "counts": counts, "recent": recent,
                "requests": reqs, "halts": halts, "chain_seq": seq, "execution": slot_exec_metrics(j.db)}
    finally:
        j.close()


def request_states(request_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each journaled replacement request with the Forge worker's state of it (its ``.serve.json``, read
    with the hardened reader; "pending" when there is none)."""
    out = []
    for e in request_events:
        path = str(e["data"].get("path") or "")
        st = read_state(Path(path)) if path.endswith(".json") else None
        out.append({"path": path, "slot": e["slot"], "time_ms": e["time_ms"],
                    "status": (st or {}).get("status") or "pending", "reason": (st or {}).get("reason"),
                    "quarantined": bool((st or {}).get("quarantined")), "crashes": len((st or {}).get("crashes") or []),
                    "attempts": len((st or {}).get("attempts") or [])})
    return out


def request_lines(report: dict[str, Any]) -> list[str]:
    """One line per replacement request: slot, file, the worker's status and why it was not served."""
    out = []
    for r in report.get("requests", []):
        tag = " (quarantined)" if r["quarantined"] else ""
        why = f": {r['reason']}" if r.get("reason") and r["status"] != "served" else ""
        crash = f", worker died {r['crashes']}x" if r["crashes"] else ""
        out.append(f"request {Path(r['path']).name} for slot {r['slot']}: {r['status']}{tag}"
                   f" ({r['attempts']} attempt(s){crash}){why}")
    for h in report.get("halts", [])[-3:]:
        out.append(f"halt: {h}")
    return out


def _source(ref: Any) -> str | None:
    return None if not isinstance(ref, str) else ("builtin" if ref.startswith("builtin:") else "file")


def _amount(event: dict[str, Any], slot: str) -> float:
    """USDT moved into ``slot`` by a ``transfer`` event: data ``{"amounts": {slot: USDT, ...}}`` (one event
    per reweight, as the runtime writes it) or, on an event of that slot, data ``{"amount": USDT}``; 0 when
    absent or not a number."""
    d = event["data"] if isinstance(event["data"], dict) else {}
    a = d["amounts"].get(slot) if isinstance(d.get("amounts"), dict) else (
        d.get("amount") if event["slot"] == slot else None)
    return float(a) if isinstance(a, (int, float)) and not isinstance(a, bool) else 0.0


def lineage_origin(lin: dict[str, Any] | None) -> str:
    """One cell: where the champion came from (builtin / file / run id and request) and its verdict."""
    if not lin:
        return "—"
    extra = ""
    if lin.get("policy_sha256"):
        extra += f", policy {str(lin['policy_sha256'])[:12]}"
    if lin.get("size_multiplier") is not None:
        extra += f", size x{float(lin['size_multiplier']):.3g}"
    if lin.get("run_id"):
        v = lin.get("verdict") or {}
        tag = "validated" if v.get("survived") else "unvalidated"
        req = f" for {lin['request']}" if lin.get("request") else ""
        return f"{lin.get('source')}: {lin['run_id']}{req} ({tag}{extra})"
    return str(lin.get("ref") or lin.get("source") or "—") + (f" ({extra[2:]})" if extra else "")


def lineage_lines(report: dict[str, Any]) -> list[str]:
    """One line per slot whose champion was swapped in: what it is, where it came from, since when and why
    the previous champion left."""
    out = []
    for r in report["slots"]:
        lin = r.get("lineage") or {}
        if not lin.get("since_ms"):
            continue
        when = datetime.fromtimestamp(lin["since_ms"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        v = lin.get("verdict") or {}
        out.append(f"{r['slot']}: {lin.get('expression', r['genome'])} — {lineage_origin(lin)}, parent "
                   f"{str(lin.get('parent_genome_sha256') or '—')[:16]}, gauntlet report "
                   f"{str(lin.get('gauntlet_report_sha256') or '—')[:16]}, survived={v.get('survived')}; in since "
                   f"{when} UTC; previous champion {lin.get('previous_left') or '—'}")
    return out
