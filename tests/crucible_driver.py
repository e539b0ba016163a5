"""Run the Crucible in its own process, for kill -9 tests: on a real ``CcxtVenue`` against a (fake) Bybit, or
on a ``ReplayVenue`` served by the test process (so the simulated exchange outlives the killed trader).

usage: python tests/crucible_driver.py --dir DIR (--rest URL --ws URL | --exchange binanceusdm --rest URL
       | --replay HOST:PORT) [--max-bars N] [--until-ms MS] [--bench-id ID] [--cwo-interval S] [--ready] [--exchange-clock]
       [--kill-at intent_saved|sent_not_acked|fills_fetched|bar_done --kill-nth K] [--settle] [--policy NAME]

Builds the test config (three slots on BTCUSDT: builtin momentum, meanrev, trend; journal, champions,
requests and kill file under DIR; history_bars 400; no hot-swap; kill floor 0), connects a venue and calls
``crucible.runtime.run_live(cfg, venue=..., fault=hook, max_bars=N, until_ms=MS)``:

* ``--rest/--ws``: ``CcxtVenue("bybit", feed="ws")`` (keys from ``CRUCIBLE_API_KEY`` / ``CRUCIBLE_API_SECRET``);
* ``--exchange binanceusdm --rest URL``: ``CcxtVenue("binanceusdm", feed="poll")`` against tests/fake_binance.py (REST
  only: the bars are polled every 20 ms; the same keys);
* ``--replay HOST:PORT``: the ``ReplayVenue`` the test serves with :func:`serve_replay` (a
  ``multiprocessing.managers`` server, authkey from ``CRUCIBLE_SOAK_AUTHKEY``), wrapped in
  :class:`RemoteReplayVenue`; the journal is resumed, never archived.

The hook sends SIGKILL to this process at the K-th occurrence of the --kill-at point ("fills_fetched" counts
only calls that fetched a fill not seen before, i.e. filled but not booked).  --ready writes
``DIR/ready-<pid>`` once the runtime has restored, reconciled and started (the soak test kills at random
moments after it).  --settle then restores the journal and runs the runtime's reconcile once more (books
fills of orders sent on the last bar, resolves their status) without trading.  Prints one JSON line:
{"summary": run_live's summary, "reconcile": the settle reconcile report or null}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

AUTHKEY_ENV = "CRUCIBLE_SOAK_AUTHKEY"


def make_cfg(d: Path, *, bench_id: str = "", cwo_interval: float | None = None, stale_seconds: float = 20.0,
             policy: str = "") -> Any:
    from crucible.config import config_from_dict

    raw: dict[str, Any] = {
        "crucible": {"journal": str(d / "journal.sqlite"), "champions_dir": str(d / "champions"),
                     "requests_dir": str(d / "requests"), "kill_file": str(d / "KILL"), "history_bars": 400,
                     "snapshot_every": 1, "bench_id": bench_id},
        "hotswap": {"enabled": False},
        "watchtower": {"kill_floor": 0.0, "stale_feed_seconds": stale_seconds},
        "slots": [{"id": "a", "symbol": "BTCUSDT", "genome": "builtin:momentum"},
                  {"id": "b", "symbol": "BTCUSDT", "genome": "builtin:meanrev"},
                  {"id": "c", "symbol": "BTCUSDT", "genome": "builtin:trend"}],
    }
    if cwo_interval is not None:
        raw["cwo"] = {"interval_seconds": cwo_interval}
    if policy:  # issue 31: passive execution (resting post-only limits, cross at the deadline)
        raw["execution"] = {"policy": policy, "deadline_bars": 4}
    return config_from_dict(raw, "crucible_driver")


# ----------------------------------------------------------------------------- replay venue across processes


class SharedReplay:
    """Server side: a ReplayVenue whose calls are serialised (a killed client's call may still be finishing
    in its connection thread when the restarted client connects)."""

    def __init__(self, venue: Any) -> None:
        self._v = venue
        self._lock = threading.Lock()

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        with self._lock:
            return getattr(self._v, method)(*args, **kwargs)


class _Manager(BaseManager):
    pass


def serve_replay(venue: Any, authkey: bytes) -> tuple[tuple[str, int], Any]:
    """Serve ``venue`` (a ReplayVenue) on 127.0.0.1 in a daemon thread; returns (address, server)."""
    shared = SharedReplay(venue)

    class M(BaseManager):
        pass

    M.register("replay", callable=lambda: shared, exposed=("call",))
    server = M(address=("127.0.0.1", 0), authkey=authkey).get_server()
    threading.Thread(target=server.serve_forever, name="replay-server", daemon=True).start()
    return server.address, server


def _remote_venue_cls() -> type:
    from crucible.venues.base import Venue

    class RemoteReplayVenue(Venue):
        """Client side: the served ReplayVenue behind the Venue interface (every call one round trip)."""

        name = "replay"

        def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
            _Manager.register("replay")
            m = _Manager(address=address, authkey=authkey)
            m.connect()
            self._p = m.replay()  # type: ignore[attr-defined]

        def _c(self, method: str, *args: Any, **kwargs: Any) -> Any:
            return self._p.call(method, args, kwargs)

        def now_ms(self) -> int:
            return self._c("now_ms")

        def history(self, symbol, n):
            return self._c("history", symbol, n)

        def prefetch(self, symbol, n):
            return self._c("prefetch", symbol, n)

        def history_at(self, symbol, n, t):
            return self._c("history_at", symbol, n, t)

        def prefetch_at(self, symbol, n, t):
            return self._c("prefetch_at", symbol, n, t)

        def next_bars(self, timeout_s=None):
            return self._c("next_bars", timeout_s)

        def create_market_order(self, symbol, qty, client_order_id, *, reduce_only=False):
            if reduce_only:
                return self._c("create_market_order", symbol, qty, client_order_id, reduce_only=True)
            return self._c("create_market_order", symbol, qty, client_order_id)

        def create_limit_order(self, symbol, qty, price, client_order_id, *, post_only=True, reduce_only=False):
            return self._c("create_limit_order", symbol, qty, price, client_order_id, post_only=post_only,
                           reduce_only=reduce_only)

        def market_rules(self, symbol):
            return self._c("market_rules", symbol)

        def fetch_order(self, symbol, client_order_id):
            return self._c("fetch_order", symbol, client_order_id)

        def fetch_open_orders(self, symbol=None):
            return self._c("fetch_open_orders", symbol)

        def cancel_order(self, symbol, client_order_id):
            return self._c("cancel_order", symbol, client_order_id)

        def fetch_fills(self, symbol, since_ms=None, *args):
            return self._c("fetch_fills", symbol, since_ms, *args)

        def fetch_positions(self):
            return self._c("fetch_positions")

        def fetch_balance(self):
            return self._c("fetch_balance")

    return RemoteReplayVenue


# ----------------------------------------------------------------------------- hooks


def kill_hook(point: str | None, nth: int):
    seen: dict[str, Any] = {"n": 0, "trades": set()}

    def hook(p: str, ctx: dict[str, Any]) -> None:
        if p != point:
            return
        if p == "fills_fetched":
            new = {f.trade_id for f in ctx["fills"]} - seen["trades"]
            seen["trades"] |= new
            if not new:
                return
        seen["n"] += 1
        if seen["n"] == nth:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def use_exchange_clock(v: Any) -> None:
    """Make ``v.now_ms`` the exchange's clock (ccxt ``fetch_time``: one REST call each time), for a fake
    exchange whose bars run on their own clock (``FakeBybit.bar_clock``)."""
    v.now_ms = lambda: int(v.ex.fetch_time())


def ready_progress(d: Path):
    """Progress callback writing DIR/ready-<pid> at the runtime's "start" event."""
    def progress(e: dict[str, Any]) -> None:
        if e.get("event") == "start":
            (d / f"ready-{os.getpid()}").write_text("")

    return progress


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--exchange", choices=["bybit", "binanceusdm"], default="bybit",
                    help="the CcxtVenue exchange of --rest (binanceusdm: REST only, no --ws)")
    ap.add_argument("--rest")
    ap.add_argument("--ws")
    ap.add_argument("--replay", help="HOST:PORT of a served ReplayVenue")
    ap.add_argument("--max-bars", type=int)
    ap.add_argument("--until-ms", type=int)
    ap.add_argument("--bench-id", default="")
    ap.add_argument("--cwo-interval", type=float)
    ap.add_argument("--ready", action="store_true")
    ap.add_argument("--exchange-clock", action="store_true",
                    help="the venue clock is the exchange's (/v5/market/time, /fapi/v1/time), not this machine's")
    ap.add_argument("--kill-at", choices=["intent_saved", "sent_not_acked", "fills_fetched", "bar_done"])
    ap.add_argument("--kill-nth", type=int, default=1)
    ap.add_argument("--settle", action="store_true")
    ap.add_argument("--policy", default="", help="[execution] policy (issue 31), e.g. maker-then-cross")
    a = ap.parse_args(argv)
    exchange = a.rest is not None and (a.ws is not None or a.exchange == "binanceusdm")
    if (a.replay is None) == (not exchange) or (a.exchange == "binanceusdm" and (a.ws or a.replay)):
        ap.error("give either --rest and --ws, --exchange binanceusdm and --rest, or --replay")

    from crucible.journal import Journal
    from crucible.runtime import Runtime, run_live

    cfg = make_cfg(a.dir, bench_id=a.bench_id, cwo_interval=a.cwo_interval, policy=a.policy)
    if a.replay is not None:
        host, port = a.replay.rsplit(":", 1)
        v = _remote_venue_cls()((host, int(port)), os.environ[AUTHKEY_ENV].encode())
    else:
        from crucible.venues.ccxt_venue import CcxtVenue

        if a.exchange == "binanceusdm":
            v = CcxtVenue("binanceusdm", ["BTCUSDT"], api_url=a.rest, feed="poll", poll_seconds=0.02, timeout_ms=3000)
        else:
            v = CcxtVenue("bybit", ["BTCUSDT"], api_url=a.rest, ws_url=a.ws, feed="ws", timeout_ms=3000)
        if a.exchange_clock:
            use_exchange_clock(v)
    try:
        summary = run_live(cfg, venue=v, fault=kill_hook(a.kill_at, a.kill_nth), max_bars=a.max_bars,
                           until_ms=a.until_ms, progress=ready_progress(a.dir) if a.ready else None, fresh=False)
        rep = None
        if a.settle:
            j = Journal(cfg.general.journal)
            try:
                rt = Runtime(cfg, v, j)
                rt.restore()
                rep = rt.reconcile()
            finally:
                j.close()
    finally:
        v.close()
    print(json.dumps({"summary": summary, "reconcile": rep}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
