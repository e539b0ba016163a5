"""Pit Crew: hot-swap of champions published to ``artifacts/champions/``.

The folder is polled (every ``poll_bars`` bars, at a bar boundary).  Only
``*.meta.json`` files written by ``gauntlet.publish`` are considered, and a
champion is accepted only when it is complete, schema-valid and its file
sha256 and genome checksum match — and, when ``FORGE_SIGNING_KEY`` is set (or
``require_signature``), when its HMAC-SHA256 signature verifies
(:func:`gauntlet.publish.verify_champion`).  A bad file is reported and
skipped; it never stops trading.  Each file version (name, size, mtime) is
examined once.

An accepted champion becomes a *challenger*: it trades in shadow on a paper
ledger fed by the live bars (same signals, same fill model as the venue:
next open, taker fee, slippage) for ``shadow_bars`` bars, then is promoted
at a bar boundary into the weakest live slot of its symbol whose champion it
beats by ``margin`` in per-bar Sharpe over the same bars.  The replaced
champion is kept in the slot's ``previous`` list for rollback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crucible.bench import Ledger, risk_adjusted
from crucible.signals import check_features
from forge.core.errors import GenomeError
from forge.gp import Genome
from gauntlet.publish import SIGNING_KEY_ENV, verify_champion

__all__ = ["Challenger", "PitCrew"]


@dataclass
class Challenger:
    """A champion candidate in shadow.

    genome; meta: its publish meta; symbol; started_ms: open time of the first shadow bar; ledger: paper
    ledger (capital = the slot capital); pending: target exposure waiting for the next open (or None);
    equity_curve: paper equity marks (USDT), one per shadow bar.
    """

    genome: Genome
    meta: dict[str, Any]
    symbol: str
    started_ms: int
    ledger: Ledger
    source: str
    pending_qty: float | None = None
    target: float = 0.0
    equity_curve: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return "ch:" + self.genome.sha256[:16]

    def on_bar(self, open_: float, close: float, target: float, taker_fee_bps: float, slippage_bps: float,
               min_notional: float) -> None:
        """Advance one bar: fill the pending order at ``open_``, mark at ``close``, decide ``target``."""
        if self.pending_qty:
            s = slippage_bps / 1e4
            q = self.pending_qty
            price = open_ * (1 + s) if q > 0 else open_ * (1 - s)
            self.ledger.apply(q, price, taker_fee_bps / 1e4 * abs(q) * price)
        self.pending_qty = None
        eq = self.ledger.equity(close)
        self.equity_curve.append(eq)
        if target != self.target and eq > 0:
            qty = target * eq / close - self.ledger.units
            if abs(qty) * close >= min_notional or (target == 0 and self.ledger.units != 0):
                self.pending_qty = qty
            self.target = target

    def score(self) -> float:
        return risk_adjusted(self.equity_curve)


class PitCrew:
    """Scans a champions folder for challengers.

    champions_dir: folder; require_signature: reject unsigned files even without a key; key: HMAC key
    (default: the FORGE_SIGNING_KEY environment variable).
    """

    def __init__(self, champions_dir: str | Path, *, require_signature: bool = False,
                 key: str | bytes | None = None) -> None:
        self.dir = Path(champions_dir)
        self.require_signature = require_signature
        self.key = key
        self._seen: dict[str, tuple[int, ...]] = {}
        self.rejected: list[tuple[str, str]] = []

    def scan(self, known_sha: set[str]) -> tuple[list[tuple[Genome, dict[str, Any], str]], list[tuple[str, str]]]:
        """Examine new or changed ``*.meta.json`` files.

        known_sha: genome checksums already on the bench or in shadow (skipped).
        returns (accepted [(genome, meta, meta path)], rejected [(file, reason)]).  Never raises for a
        bad file.
        """
        accepted: list[tuple[Genome, dict[str, Any], str]] = []
        rejected: list[tuple[str, str]] = []
        if not self.dir.is_dir():
            return accepted, rejected
        for p in sorted(self.dir.glob("*.meta.json")):
            try:
                st = p.stat()
                gp = p.with_name(p.name[: -len(".meta.json")] + ".json")
                gst = gp.stat() if gp.exists() else None
            except OSError:
                continue
            sig = (st.st_size, st.st_mtime_ns, gst.st_size if gst else -1, gst.st_mtime_ns if gst else -1)
            if self._seen.get(p.name) == sig:
                continue
            self._seen[p.name] = sig
            try:
                key = self.key if self.key is not None else os.environ.get(SIGNING_KEY_ENV)
                if self.require_signature and not key:
                    raise GenomeError(f"{p}: signatures are required but {SIGNING_KEY_ENV} is not set")
                genome, meta = verify_champion(p, key=key)
                if genome.root != "P":
                    raise GenomeError(f"{p}: not a strategy genome (root {genome.root!r})")
                check_features(genome)
            except (GenomeError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
                rejected.append((str(p), str(exc)))
                continue
            if genome.sha256 in known_sha:
                continue
            accepted.append((genome, meta, str(p)))
        self.rejected.extend(rejected)
        return accepted, rejected
