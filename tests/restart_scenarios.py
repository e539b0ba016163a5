"""Crash-and-restart scenarios shared by the exchange fakes' tests (tests/test_ccxt_binance.py,
tests/test_ccxt_bybit_fills.py): the same bench story told against each venue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crucible.journal import Journal
from crucible.runtime import Runtime

__all__ = ["crash_after_send_then_restart"]

DAY = 86_400_000


class _Crash(Exception):
    pass


def crash_after_send_then_restart(cfg: Any, venue: Any, *, started_days_ago: float, venue_trades: Callable[[], list],
                                  requests: Callable[[], int]) -> dict[str, Any]:
    """A bench started ``started_days_ago`` days ago is killed after a market order (slot "a", 0.01 units) reached
    the venue but before its ack was journaled; a new runtime restores the journal and reconciles.
    venue_trades: the venue's trade ids now (one after the send is asserted); requests: the fake's count of fill
    requests so far (read before and after the reconcile).
    returns {"report": the reconcile report, "journal_fills": the journal's trade ids, "venue_trades",
    "units": slot a's units after it, "halted": the runtime's halt reason or None, "requests": made by it}."""

    def crash(point: str, ctx: dict) -> None:
        if point == "sent_not_acked":
            raise _Crash(point)

    j = Journal(cfg.general.journal)
    try:
        rt = Runtime(cfg, venue, j, fault=crash)
        rt.restore()
        j.set_meta("started_ms", int(venue.now_ms() - started_days_ago * DAY))
        with pytest.raises(_Crash):
            rt.place(rt.slots["a"], 0.01, 1.0, "test", 1_718_000_000_000)
    finally:
        j.close()
    assert len(venue_trades()) == 1
    j = Journal(cfg.general.journal)
    try:
        rt2 = Runtime(cfg, venue, j)
        rt2.restore()
        n0 = requests()
        rep = rt2.reconcile()
        return {"report": rep, "journal_fills": [f["trade_id"] for f in j.fills()], "venue_trades": list(venue_trades()),
                "units": rt2.slots["a"].ledger.units, "halted": rt2.halted, "requests": requests() - n0}
    finally:
        j.close()
