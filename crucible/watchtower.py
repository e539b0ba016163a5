"""Watchtower: the $200 rule, the global kill switch and DNA-recycling requests.

* A slot whose own equity (capital + its realised and unrealised P&L after
  fees and funding; USDT — CWO capital transfers excluded) is at or
  below the kill floor (default 0), or whose equity is below ``min_order_notional`` (an
  unlevered slot never reaches exactly $0: it decays towards it and can no
  longer place the smallest order), is flattened with a market order at that
  bar's close — it fills at the next bar's open, so within one bar — and
  terminated for good.
* A replacement request is written atomically to ``requests_dir``:
  ``<slot>-<minute>.json`` (schema ``crucible-request/1``) and next to it
  ``<slot>-<minute>.genome.json``, the best historical genome, a plain genome
  file usable as ``forge evolve --seed-genome <that file>``.
* The global kill switch is a file (``kill_file``), or SIGINT / SIGTERM with ``[crucible] on_exit = "flatten"``
  (the default): every slot is flattened (reduce-only orders on perpetuals where they reduce the bench's net
  position), the runtime waits up to ``exit_wait_seconds`` for the fills and stops, reporting what is still
  open; with ``on_exit = "leave"`` a signal stops after the current bar and leaves positions open; a second
  signal exits at once (see :func:`crucible.runtime.run_live`).
"""

from __future__ import annotations

from datetime import datetime, timezone
import os
from pathlib import Path
from typing import Any

from forge.core.artifacts import atomic_write_json, atomic_write_text
from forge.gp import Genome

__all__ = ["breaches_floor", "kill_switch_engaged", "write_replacement_request"]


def breaches_floor(equity: float, kill_floor: float, min_notional: float = 0.0, transfers: float = 0.0) -> bool:
    """True when a slot's own equity (``equity - transfers``: starting capital plus its own P&L, USDT) has
    reached the kill floor (USDT), or its equity fell below the smallest order it may place
    (``min_notional``, USDT).  transfers: net capital the CWO moved into the slot (USDT, negative = out);
    a transfer is never a loss."""
    return equity - transfers <= kill_floor or equity < min_notional


def kill_switch_engaged(kill_file: str | Path | None) -> bool:
    """True when the kill file exists (checked every bar: one stat call)."""
    return kill_file is not None and os.path.exists(kill_file)


def write_replacement_request(requests_dir: str | Path, *, slot: str, symbol: str, time_ms: int, equity: float,
                              killed: Genome, seed: Genome, seed_score: float | None,
                              reason: str = "kill floor") -> Path:
    """Write a replacement request (JSON) and its seed genome file; returns the request path."""
    d = Path(requests_dir)
    stem = f"{slot}-{time_ms // 60_000}"
    gfile = d / f"{stem}.genome.json"
    atomic_write_text(gfile, seed.to_json())
    req: dict[str, Any] = {
        "schema": "crucible-request/1", "kind": "replacement", "slot": slot, "symbol": symbol, "reason": reason,
        "time_ms": int(time_ms), "time_utc": datetime.fromtimestamp(time_ms / 1000, tz=timezone.utc).isoformat(),
        "equity_at_kill": float(equity), "killed_genome_sha256": killed.sha256,
        "seed_genome_sha256": seed.sha256, "seed_genome_score": seed_score, "seed_genome_file": gfile.name,
        "seed_genome": seed.to_dict(), "command": f"forge evolve --seed-genome {gfile}",
    }
    return atomic_write_json(d / f"{stem}.json", req)
