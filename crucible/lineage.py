"""Lineage of every slot's champion, and the closed loop's re-arming of killed slots (issue 19).

Lineage (a plain dict per slot, journaled with every ``swap`` and ``rearm`` event and shown by
``crucible status``): ``genome`` (sha256), ``expression``, ``source`` (``builtin`` | ``file`` for the
config's genome, else the publisher's, e.g. ``forge serve``), ``ref`` (the config's genome reference or
the champion file), ``run_id``, ``request`` (the replacement request it served), ``slot_requested``,
``parent_genome_sha256`` (the seed genome), ``verdict`` (``{"survived", "p": {stage: p-value}}`` of the
gauntlet) and ``gauntlet_report_sha256``; ``since_ms`` / ``since_bar`` (when it took the slot) and
``previous_left`` (why the champion before it left: replaced by a better challenger, or killed at the
$200 rule); for a champion published with an execution policy or a sizing multiplier also ``policy_sha256``,
``champion`` (its identity, ``forge.core.champion.champion_key``) and ``size_multiplier`` -- absent for
always-taker, unit-sized champions, whose records are as before.  The ``swap`` / ``rearm`` event carries
the full policy document (``policy``) and ``size_multiplier`` (:func:`champion_extras`), from which a
restart restores the slot's policy (:func:`policy_from_event`).

Re-arming.  A killed slot stays dead until a validated champion published for it (its signed lineage
names the slot) or, failing that, for its symbol has finished its shadow period.  Against a dead slot the
incumbent is cash, so the promotion test is the no-harm test :func:`rearm_test`: the challenger's shadow
record must not be significantly *worse* than flat (the gauntlet has already tested its edge out of
sample; the shadow period checks that the live deployment — signals, fills, costs — does not lose).  The
slot then starts a new life: a fresh ledger with its configured capital (funded from the account's
unallocated balance; the dead life's loss stays in the journal), status ``live``, weight equal to its
share of the bench, and its equity marks reset so the CWO and later promotion tests do not read the
refill as a return.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from crucible.hotswap import Challenger, promotion_test
from crucible.slots import Ledger, Slot
from forge.gp import Genome
from forge.core.requests import FINAL, read_state

__all__ = ["initial_lineage", "challenger_lineage", "champion_extras", "policy_from_event", "rearm_test", "LoopMixin"]


def initial_lineage(ref: str, genome: Genome) -> dict[str, Any]:
    """Lineage of a slot's configured genome (``builtin:NAME`` or a genome file)."""
    return {"genome": genome.sha256, "expression": genome.expression(),
            "source": "builtin" if ref.startswith("builtin:") else "file", "ref": ref, "run_id": None,
            "request": None, "slot_requested": None, "parent_genome_sha256": None, "verdict": None,
            "gauntlet_report_sha256": None, "since_ms": None, "since_bar": 0, "previous_left": None}


def _verdict(meta: dict[str, Any]) -> dict[str, Any]:
    stages = meta.get("verdict") if isinstance(meta.get("verdict"), dict) else {}
    p = {k: v.get("p_value") for k, v in stages.items() if isinstance(v, dict)}
    return {"survived": meta.get("survived") is True, "p": p}


def challenger_lineage(ch: Challenger, since_ms: int, since_bar: int, previous_left: str) -> dict[str, Any]:
    """Lineage of a promoted challenger from its (verified, signed) champion meta."""
    meta = ch.meta if isinstance(ch.meta, dict) else {}
    lin = meta.get("lineage") if isinstance(meta.get("lineage"), dict) else {}
    out = {"genome": ch.genome.sha256, "expression": ch.genome.expression(),
           "source": str(lin.get("source") or "published"), "ref": ch.source,
           "run_id": meta.get("run_id"), "request": lin.get("request"), "slot_requested": lin.get("slot"),
           "parent_genome_sha256": lin.get("parent_genome_sha256") or None, "verdict": _verdict(meta),
           "gauntlet_report_sha256": meta.get("gauntlet_report_sha256"), "since_ms": int(since_ms),
           "since_bar": int(since_bar), "previous_left": previous_left}
    if ch.policy is not None:
        out.update(policy_sha256=ch.policy.sha256, champion=ch.identity)
    if ch.size_multiplier != 1.0:
        out["size_multiplier"] = ch.size_multiplier
    return out


def champion_extras(ch: Challenger) -> dict[str, Any]:
    """The fields a ``swap`` / ``rearm`` event adds for a challenger with a policy or a sizing multiplier: the
    policy document and the multiplier (empty for always-taker, unit-sized champions: their events are as
    before)."""
    out: dict[str, Any] = {}
    if ch.policy is not None:
        out["policy"] = ch.policy.to_dict()
    if ch.size_multiplier != 1.0:
        out["size_multiplier"] = ch.size_multiplier
    return out


def policy_from_event(data: dict[str, Any]) -> tuple[Any, float]:
    """(policy or None = always-taker, size multiplier) recorded by a journaled ``swap`` / ``rearm`` / ``rollback``
    event (:func:`champion_extras`).  raises GenomeError when the recorded policy fails its sha256 check."""
    from forge.core.champion import champion_policy, champion_sizing

    pol = champion_policy({"policy": data.get("policy")}, "journal")
    m = data.get("size_multiplier")
    mult = champion_sizing({"sizing": {"method": "kelly", "multiplier": m}}, "journal") if m is not None else 1.0
    return (None if pol.is_always_taker else pol), mult


def rearm_test(challenger_equity: np.ndarray, *, alpha: float) -> dict[str, Any]:
    """No-harm test of a challenger for a dead slot: one-sided Diebold–Mariano test (see
    :func:`crucible.hotswap.promotion_test`) of flat cash against the challenger's shadow record, H0: flat
    is no better.  challenger_equity: (n,) float64 paper equity marks, n >= 3.
    returns the test dict with ``"rearm"``: True unless flat beats the challenger at level ``alpha``."""
    ch = np.asarray(challenger_equity, dtype=np.float64)
    res = promotion_test(np.full(ch.size, ch[0]), ch, margin=0.0, alpha=alpha)
    return {**res, "rearm": not res["promote"], "test": "no-harm vs flat (Diebold-Mariano, Newey-West)"}


class LoopMixin:
    """Re-arming of dead slots and the replay's wait for the Forge (a mixin of the Runtime)."""

    def _dead_slot_for(self, ch: Challenger) -> Slot | None:
        """The killed slot this challenger may re-arm: the one its lineage names, else the first killed
        slot of its symbol (config order); None when no slot of its symbol is dead."""
        lin = ch.meta.get("lineage") if isinstance(ch.meta.get("lineage"), dict) else {}
        dead = [s for s in self.slots.values() if s.status == "killed" and s.symbol == ch.symbol]
        named = [s for s in dead if s.id == lin.get("slot")]
        return (named or dead or [None])[0]

    def _rearm(self, s: Slot, ch: Challenger, now: int) -> bool:
        """Re-arm dead slot ``s`` with ``ch`` when it passes :func:`rearm_test` (journaled as ``rearm_test``);
        journals ``rearm``.  returns True when re-armed (False: the challenger may still replace a live
        champion it beats)."""
        test = rearm_test(np.asarray(ch.equity_curve), alpha=self.cfg.hotswap.alpha)
        with self.journal:
            self.journal.event("rearm_test", now, s.id, genome=ch.genome.sha256, **test)
        if not test["rearm"]:
            self._emit("challenger", result="not re-armed", slot=s.id, genome=ch.genome.sha256[:16])
            return False
        kill = self.kill_info.get(s.id, {})
        left = f"killed at equity {kill.get('equity', float('nan')):.2f} USDT (kill floor)"
        lineage = challenger_lineage(ch, now, self.bar_no, left)
        old = s.genome
        self._new_life(s)
        self._apply_rearm(s, ch.genome, lineage, policy=ch.policy, size_multiplier=ch.size_multiplier)
        with self.journal:
            self.journal.event("rearm", now, s.id, genome=ch.genome.to_dict(), old=old.sha256,
                               new=ch.genome.sha256, capital=s.capital, weight=s.weight, lineage=lineage,
                               source=ch.source, **champion_extras(ch))
            self.journal.commit()
        self._emit("swap", slot=s.id, old=old.sha256[:16], new=ch.genome.sha256[:16], rearm=True,
                   run_id=lineage["run_id"], request=lineage["request"])
        return True

    def _apply_rearm(self, s: Slot, genome: Genome, lineage: dict[str, Any], weight: float | None = None, *,
                     policy: Any = None, size_multiplier: float = 1.0) -> None:
        """The slot's champion (genome, policy, size multiplier) and status from a re-arm (also replayed from
        the journal on restart, in event order, with the journaled ``weight``); its new ledger and marks:
        :meth:`_new_life`."""
        s.previous.append(s.genome)
        s.genome = genome
        s.policy, s.size_multiplier = policy, float(size_multiplier)
        s.genome_since = self.bar_no
        s.lineage = lineage
        s.status = "live"
        s.target = 0.0
        if weight is None:
            bench = sum(x.equity() for x in self.slots.values() if x.status == "live" and x is not s)
            weight = s.capital / (bench + s.capital + self.reserve)
        s.weight = float(weight)
        self.counters["swaps"] += 1
        self.counters["rearms"] += 1
        self.genome_book.setdefault(s.identity, (genome, s.symbol, None))

    def _new_life(self, s: Slot) -> None:
        """A re-armed slot's fresh ledger (its configured capital) and equity marks reset to it.  The dead
        life's money (cash spent, realised P&L) is kept in ``_past_lives`` for the balance reconcile
        (:func:`crucible.reconcile.expected_balance`)."""
        past = self.__dict__.setdefault("_past_lives", {})
        spent, realised = past.get(s.id, (0.0, 0.0))
        old = s.ledger
        past[s.id] = (spent + old.capital + old.transfers - old.cash, realised + old.realised)
        s.ledger = Ledger(s.capital)
        self.marks.reset(s.id, s.capital)

    def _await_forge(self, paths: list[str]) -> None:
        """Replay with a supervised Forge worker: wait (``[serve] replay_wait_s`` wall seconds at most per
        request) until the requests just written reach a final state; journals ``forge_wait``."""
        limit = self.cfg.serve.replay_wait_s
        sup = self.supervisor
        for path in paths:
            t0 = time.monotonic()
            st = None
            while time.monotonic() - t0 < limit:
                sup.check()
                st = read_state(Path(path))
                if st is not None and st.get("status") in FINAL:
                    break
                if self.stop_event.wait(0.2):
                    break
            waited = time.monotonic() - t0
            status = st.get("status") if st else None
            with self.journal:
                self.journal.event("forge_wait", self.venue.now_ms(), None, request=path, seconds=waited,
                                   status=status if status in FINAL else "timeout",
                                   reason=(st or {}).get("reason"))
            self._emit("forge", request=Path(path).name, status=status if status in FINAL else "timeout",
                       seconds=round(waited, 1))
