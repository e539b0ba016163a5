"""``crucible record``: L2 order books and trades from **mainnet public** WebSocket feeds to daily Parquet files.

Public market data needs no API keys; testnet books are not evidence (their liquidity is synthetic), so
the recorder only connects to the mainnet endpoints ccxt knows (``--ws-url`` / ``--rest-url`` exist to
point it at a loopback fake in tests).  File layout, schemas and the reader: :mod:`forge.data.l2`.

Feeds (ccxt.pro 4.5, read from its source):

* **binanceusdm** — ``watch_order_book`` subscribes to ``<symbol>@depth@100ms`` diffs on
  ``/public/ws/<n>`` and, on the subscription's acknowledgement, fetches a REST snapshot
  (``GET /fapi/v1/depth?limit=1000``); it applies the diffs with Binance's futures rule (drop ``u <
  lastUpdateId``; the first diff has ``U <= lastUpdateId <= u``; then every diff's ``pu`` equals the previous
  ``u``) and raises ``ChecksumError`` when ``pu`` breaks the chain.  The recorder asks for 1,000 levels
  (``watchOrderBookLimit``, Binance's maximum) although it stores ``depth``: ccxt truncates the book it
  maintains to the requested limit, and a level outside a shallow snapshot that never changes would
  otherwise be missing when the price moves to it.  Trades: the raw ``<symbol>@trade`` stream (id ``t``).
* **bybit** — ``orderbook.<N>.<SYMBOL>`` (N the smallest of 1 / 50 / 200 / 1000 that is >= ``depth``) and
  ``publicTrade.<SYMBOL>`` on ``/v5/public/linear``; Bybit pushes a snapshot on subscribe and then deltas
  whose update id ``u`` increases by one per message (a snapshot with ``u = 1`` after a restart of
  Bybit's service; on the 1-level stream an unchanged book is re-sent as a snapshot with the same ``u``).  ccxt 4.5 does not check ``u``; the recorder does: a delta whose ``u`` is not the
  previous ``u + 1`` is a sequence gap.

Every book state ccxt applies is recorded (a hook on ccxt's per-message handler, so no state is coalesced
away while the writer is busy), and every trade ccxt parses.  Rules:

* **Gap markers.** Each stream's first connection, every reconnection (the socket dropped, an error, or
  no book update for ``idle_seconds``) and every sequence gap writes a gap row from the last row recorded
  before it to the first book state after it, or for trades to the exchange's acknowledgement of the new
  subscription (no trade is missed after it; the first trade may come much later)
  (:data:`forge.data.l2.GAP_SCHEMA`); a restart after a kill starts its first gap at the last row the
  killed recorder wrote.  A sequence gap re-synchronises at once (a new
  connection: a fresh REST snapshot on Binance, a fresh snapshot message on Bybit); network errors back
  off exponentially (``backoff`` = (first, max) seconds, doubled per consecutive failure).
* **No duplicates.** Trades are de-duplicated by exchange trade id across reconnects and restarts (the
  ids of the latest recorded day are loaded at start); book states by (exchange timestamp, nonce).
* **One writer.** Each symbol's folder has a single-writer lock (``.recorder.lock``, an ``flock`` the OS drops
  when the recorder exits, ``kill -9`` included): a second recorder of the same book is refused at start with
  the first one's pid (:meth:`Recorder.lock`), whether it is ``crucible record`` or a bench's live book feed.
* **Durability.** Rows are flushed every ``flush_seconds`` to an atomically renamed part file (a kill
  loses at most the rows of the last interval); after each UTC hour on the receive clock a worker thread
  compacts the finished hour's parts into ``hour-HH.parquet``, and after UTC midnight the finished day into
  ``YYYY-MM-DD.parquet`` (rotation); whatever a killed recorder left uncompacted is compacted at the next
  start.

The clock is injected (``clock``: ms since the epoch), so rotation is testable; receive times never go
backwards.  All times are ms UTC; prices quote currency per base unit; sizes base units.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import numpy as np
import polars as pl

from forge.core.errors import ConfigError, DataError
from forge.data.l2 import (GAP_SCHEMA, STREAMS, TRADE_SCHEMA, compact_day, compact_hour, day_files, day_of_ms,
                           l2_schema, stream_dir, write_meta, write_part)

__all__ = ["VENUES", "Recorder", "record", "parse_symbols", "check_args", "book_subscription_depth"]

log = logging.getLogger("crucible.record")

VENUES = ("binanceusdm", "bybit")
BYBIT_DEPTHS = (1, 50, 200, 1000)
BINANCE_SYNC_LIMIT = 1000
MAX_DEPTH = 1000
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
RECENT_TRADE_IDS = 200_000
RECENT_BOOK_KEYS = 10_000


def parse_symbols(text: str) -> list[str]:
    """``"BTCUSDT,ETHUSDT"`` -> ["BTCUSDT", "ETHUSDT"] (exchange ids, upper case, no duplicates);
    raises ConfigError naming the bad entry."""
    out: list[str] = []
    for raw in str(text).split(","):
        s = raw.strip().upper()
        if not s:
            continue
        if not _SYMBOL_RE.match(s):
            raise ConfigError(f"--symbols: {raw.strip()!r} is not an exchange symbol such as BTCUSDT")
        if s not in out:
            out.append(s)
    if not out:
        raise ConfigError("--symbols: give at least one symbol, e.g. BTCUSDT,ETHUSDT")
    return out


def check_args(venue: str, depth: Any) -> None:
    """Raise ConfigError (one line) unless ``venue`` is recordable and ``depth`` is an integer in 1..1000."""
    if venue not in VENUES:
        raise ConfigError(f"--venue {venue!r}: expected one of {', '.join(VENUES)} (mainnet public feeds)")
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise ConfigError(f"--depth {depth!r}: expected an integer in 1..{MAX_DEPTH}")
    book_subscription_depth(venue, depth)


def book_subscription_depth(venue: str, depth: int) -> int:
    """The order-book limit passed to ccxt's ``watch_order_book`` to keep the top ``depth`` levels exact
    (see the module docstring)."""
    if venue == "binanceusdm":
        return BINANCE_SYNC_LIMIT
    for n in BYBIT_DEPTHS:
        if n >= depth:
            return n
    raise ConfigError(f"--depth {depth}: Bybit publishes at most {BYBIT_DEPTHS[-1]} levels")


class _Recent:
    """A bounded set remembering the last ``maxlen`` keys."""

    def __init__(self, maxlen: int) -> None:
        self._q: deque = deque()
        self._s: set = set()
        self._max = int(maxlen)

    def __contains__(self, k: Any) -> bool:
        return k in self._s

    def add(self, k: Any) -> None:
        if k in self._s:
            return
        self._q.append(k)
        self._s.add(k)
        if len(self._q) > self._max:
            self._s.discard(self._q.popleft())


@dataclass
class _Sym:
    """One symbol's buffers, last rows and pending gap per stream."""

    symbol: str          # exchange id, e.g. BTCUSDT
    unified: str = ""    # ccxt symbol, e.g. BTC/USDT:USDT
    l2: list = field(default_factory=list)
    trades: list = field(default_factory=list)
    gaps: list = field(default_factory=list)
    last: dict = field(default_factory=lambda: {"l2": None, "trades": None})     # (recv, ts, nonce)
    pending: dict = field(default_factory=lambda: {"l2": None, "trades": None})  # (reason, last)
    book_keys: _Recent = field(default_factory=lambda: _Recent(RECENT_BOOK_KEYS))
    trade_ids: _Recent = field(default_factory=lambda: _Recent(RECENT_TRADE_IDS))
    bybit_u: Optional[int] = None
    lens: Any = None     # forge.features.l2lens.LiveLens once the market (tick) is known


class Recorder:
    """Record ``symbols`` of ``venue`` at ``depth`` levels into ``dest`` (see the module docstring).

    venue: "binanceusdm" | "bybit".  symbols: exchange ids (BTCUSDT).  depth: levels per side stored, 1..1000.
    clock: () -> int ms UTC (default the wall clock).  flush_seconds: part-file interval.  backoff: (first,
    max) reconnect delay, seconds.  idle_seconds: a book stream silent this long is reconnected.
    ws_url / rest_url: replace the mainnet WebSocket base URL / REST origin (loopback fakes).
    lens_k: levels / ticks of the live Liquidity Lens (:class:`forge.features.l2lens.LiveLens`, one per
    symbol, fed every recorded state; each closed 1-minute bar is a "lens" progress event); None = off.
    progress: callback receiving event dicts ({"event": "gap" | "reconnect" | "flush" | "rotate" | "error" |
    "lens", ...}).
    """

    def __init__(self, venue: str, symbols: list[str], depth: int = 20, dest: str = "artifacts/l2", *,
                 clock: Optional[Callable[[], int]] = None, flush_seconds: float = 1.0,
                 backoff: tuple[float, float] = (0.5, 30.0), idle_seconds: float = 30.0,
                 ws_url: Optional[str] = None, rest_url: Optional[str] = None, lens_k: Optional[int] = 5,
                 progress: Optional[Callable[[dict], None]] = None) -> None:
        check_args(venue, depth)
        if not flush_seconds > 0:
            raise ConfigError(f"flush_seconds {flush_seconds!r}: expected > 0")
        if not (0 < backoff[0] <= backoff[1]):
            raise ConfigError(f"backoff {backoff!r}: expected 0 < first <= max seconds")
        self.venue, self.depth, self.dest = venue, int(depth), dest
        self.sub_depth = book_subscription_depth(venue, self.depth)
        self.syms = {s: _Sym(s) for s in symbols}
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._last_now = 0
        self.flush_seconds, self.backoff, self.idle_seconds = float(flush_seconds), backoff, float(idle_seconds)
        self.ws_url, self.rest_url = ws_url, rest_url
        if lens_k is not None and (not isinstance(lens_k, int) or not 1 <= lens_k <= self.depth):
            raise ConfigError(f"--lens-k {lens_k!r}: expected an integer in 1..{self.depth} (the recorded depth)")
        self.lens_k = lens_k
        self._progress = progress or (lambda e: None)
        self._stop: Optional[asyncio.Event] = None
        self._day: Optional[str] = None
        self._serial = 0
        self._markets: Any = None
        self._locks: dict[str, Any] = {}  # symbol -> the open lock file of its folder (lock())
        self.stats = {"l2_rows": 0, "trade_rows": 0, "gaps": 0, "reconnects": 0, "sequence_gaps": 0,
                      "dup_trades": 0, "dup_books": 0, "parts": 0, "bytes": 0, "compacted_hours": 0,
                      "compacted_days": 0}

    # ------------------------------------------------------------------ clock, gaps, rows

    def now(self) -> int:
        """The receive clock (ms UTC), never going backwards."""
        t = int(self._clock())
        if t < self._last_now:
            t = self._last_now
        self._last_now = t
        return t

    def _open_gap(self, st: _Sym, stream: str, reason: str) -> None:
        if stream == "l2" and st.lens is not None:
            st.lens.mark_gap()
        if st.pending[stream] is None:
            st.pending[stream] = (reason, st.last[stream])

    def _close_gap(self, st: _Sym, stream: str, recv: int, ts: int, nonce: Optional[int]) -> None:
        p = st.pending[stream]
        if p is None:
            return
        reason, last = p
        s = last if last is not None else (None, None, None)
        st.gaps.append((stream, reason, s[0], s[1], s[2], recv, ts, nonce))
        st.pending[stream] = None
        self.stats["gaps"] += 1
        self._progress({"event": "gap", "symbol": st.symbol, "stream": stream, "reason": reason,
                        "start_recv_ms": s[0], "end_recv_ms": recv})

    def _book_row(self, st: _Sym, ob: Any, ts: Any, nonce: Any, seq: Any) -> None:
        if ts is None:
            return
        ts, nonce = int(ts), (-1 if nonce is None else int(nonce))
        key = (ts, nonce)
        if key in st.book_keys:
            self.stats["dup_books"] += 1
            return
        d = self.depth
        arrs = []
        for side in ("bids", "asks"):
            lv = ob[side]
            n = min(d, len(lv))
            px = np.full(d, np.nan)
            sz = np.full(d, np.nan)
            for i in range(n):
                px[i] = lv[i][0]
                sz[i] = lv[i][1]
            arrs += [px, sz]
        recv = self.now()
        st.book_keys.add(key)
        st.l2.append((ts, recv, nonce, -1 if seq is None else int(seq), *arrs))
        st.last["l2"] = (recv, ts, nonce)
        self.stats["l2_rows"] += 1
        after_gap = st.pending["l2"] is not None
        self._close_gap(st, "l2", recv, ts, nonce)
        if st.lens is not None:
            for bar in st.lens.push(ts, *arrs, after_gap=after_gap):
                self._progress({"event": "lens", "symbol": st.symbol, **bar})

    def _trade_row(self, st: _Sym, t: dict) -> None:
        tid = t.get("id")
        if tid is None or t.get("timestamp") is None or t.get("price") is None or t.get("amount") is None:
            return
        tid = str(tid)
        if tid in st.trade_ids:
            self.stats["dup_trades"] += 1
            return
        side = {"buy": 1, "sell": -1}.get(t.get("side"), 0)
        recv = self.now()
        ts = int(t["timestamp"])
        st.trade_ids.add(tid)
        st.trades.append((tid, ts, recv, float(t["price"]), float(t["amount"]), side))
        st.last["trades"] = (recv, ts, None)
        self.stats["trade_rows"] += 1
        self._close_gap(st, "trades", recv, ts, None)

    # ------------------------------------------------------------------ files

    def _frames(self, st: _Sym) -> list[tuple[str, pl.DataFrame, str]]:
        out = []
        if st.l2:
            cols = list(zip(*st.l2))
            sch = l2_schema(self.depth)
            data = {k: list(cols[i]) for i, k in enumerate(("ts_ms", "recv_ms", "nonce", "seq"))}
            for i, k in enumerate(("bid_px", "bid_sz", "ask_px", "ask_sz")):
                data[k] = pl.Series(k, np.vstack(cols[4 + i]), dtype=sch[k])
            out.append(("l2", pl.DataFrame(data, schema=sch), "recv_ms"))
        if st.trades:
            out.append(("trades", pl.DataFrame(st.trades, schema=TRADE_SCHEMA, orient="row"), "recv_ms"))
        if st.gaps:
            out.append(("gaps", pl.DataFrame(st.gaps, schema=GAP_SCHEMA, orient="row"), "end_recv_ms"))
        st.l2, st.trades, st.gaps = [], [], []
        return out

    def flush(self) -> int:
        """Write every buffered row to part files (one per symbol, stream and receive hour).  returns the rows
        written.  Finished hours and days are compacted by :meth:`compact` (in a worker thread when running)."""
        now = self.now()
        rows = 0
        for st in self.syms.values():
            for stream, df, tcol in self._frames(st):
                hours = (df[tcol] // 3_600_000).to_numpy()
                for h in dict.fromkeys(hours.tolist()):
                    part = df.filter(pl.Series(hours == h))
                    self._serial += 1
                    p = write_part(self.dest, self.venue, st.symbol, stream, day_of_ms(h * 3_600_000), part,
                                   self._serial)
                    self.stats["parts"] += 1
                    self.stats["bytes"] += p.stat().st_size
                    rows += part.height
        today = day_of_ms(now)
        if self._day is not None and today != self._day:
            self._progress({"event": "rotate", "from": self._day, "to": today})
        self._day = today
        self._hour_now = now // 3_600_000
        return rows

    def compact(self, before_ms: int | None = None) -> None:
        """Compact every finished hour and day (receive clock before ``before_ms``, default the last flush):
        hours of the current day into ``hour-HH.parquet``, earlier days into ``YYYY-MM-DD.parquet``.  Safe
        beside :meth:`flush` (which writes only the current hour's parts)."""
        hour_now = (before_ms // 3_600_000) if before_ms is not None else getattr(self, "_hour_now", None)
        if hour_now is None:
            return
        today = day_of_ms(hour_now * 3_600_000)
        h_now = hour_now % 24
        for st in self.syms.values():
            for stream in STREAMS:
                sd = stream_dir(self.dest, self.venue, st.symbol, stream)
                if not sd.is_dir():
                    continue
                for d in sorted(sd.iterdir()):
                    if not d.is_dir():
                        continue
                    if d.name < today:
                        if compact_day(self.dest, self.venue, st.symbol, stream, d.name) is not None:
                            self.stats["compacted_days"] += 1
                    elif d.name == today:
                        for h in sorted({int(p.name.split("-")[1]) // 3_600_000 % 24 for p in d.glob("part-*.parquet")}):
                            if h < h_now and compact_hour(self.dest, self.venue, st.symbol, stream, today, h) is not None:
                                self.stats["compacted_hours"] += 1

    def _compact_logged(self, before_ms: int) -> None:
        try:
            self.compact(before_ms)
        except Exception as exc:  # a damaged part must not stop the recording; the next hour retries
            log.exception("compaction failed")
            self._progress({"event": "error", "what": "compact", "error": f"{type(exc).__name__}: {str(exc)[:160]}"})

    def _resume(self) -> None:
        """Compact days a killed recorder left open; load the last rows and recent ids (de-duplication and
        the first gap's start).  A recording of another depth under the same directory is refused (one
        schema per symbol)."""
        from forge.data.l2 import load_meta

        for s in self.syms:
            old = load_meta(self.dest, self.venue, s).get("depth")
            if old is not None and int(old) != self.depth:
                raise ConfigError(f"--depth {self.depth}: {self.dest}/{self.venue}/{s} holds a depth-{old} recording; "
                                  f"use --depth {old} or another --dest")
        now = self.now()
        self._day, self._hour_now = day_of_ms(now), now // 3_600_000
        self.compact(now)
        for st in self.syms.values():
            for stream in ("l2", "trades"):
                files = day_files(self.dest, self.venue, st.symbol, stream)
                if not files:
                    continue
                cols = ["ts_ms", "recv_ms"] + (["nonce"] if stream == "l2" else ["id"])
                recent = list(files.values())[-2:]
                try:
                    df = pl.concat([pl.read_parquet(p, columns=cols) for fs in recent for p in fs], how="vertical")
                except Exception as exc:  # a damaged file left in the recording
                    raise DataError(f"cannot resume the recording of {st.symbol} under {self.dest}: "
                                    f"{type(exc).__name__}: {str(exc)[:160]}") from None
                if df.height == 0:
                    continue
                df = df.sort("recv_ms", maintain_order=True)
                last = df.row(df.height - 1, named=True)
                st.last[stream] = (last["recv_ms"], last["ts_ms"], last.get("nonce"))
                self._last_now = max(self._last_now, int(last["recv_ms"]))
                if stream == "trades":
                    for tid in df["id"].tail(RECENT_TRADE_IDS).to_list():
                        st.trade_ids.add(tid)
                else:
                    for ts, nn in zip(df["ts_ms"].tail(RECENT_BOOK_KEYS).to_list(),
                                      df["nonce"].tail(RECENT_BOOK_KEYS).to_list()):
                        st.book_keys.add((int(ts), int(nn)))

    # ------------------------------------------------------------------ ccxt.pro

    def _pro_class(self) -> Any:
        import ccxt.pro

        rec = self
        base = getattr(ccxt.pro, self.venue)
        if self.venue == "binanceusdm":
            class _Binance(base):  # type: ignore[misc, valid-type]
                def handle_order_book_message(self, client: Any, message: dict, orderbook: Any) -> Any:
                    ob = super().handle_order_book_message(client, message, orderbook)
                    st = rec._by_unified(orderbook.get("symbol"))
                    if st is not None:
                        rec._book_row(st, orderbook, orderbook.get("timestamp"), orderbook.get("nonce"), None)
                    return ob

                def handle_subscription_status(self, client: Any, message: dict) -> Any:
                    out = super().handle_subscription_status(client, message)
                    if message.get("error") is None:
                        rec._subscribed(getattr(self, "_rec_target", None))
                    return out

                def handle_trade(self, client: Any, message: dict) -> None:
                    super().handle_trade(client, message)
                    st = rec._by_id(message.get("s"))
                    if st is not None and st.unified in self.trades and len(self.trades[st.unified]):
                        rec._trade_row(st, self.trades[st.unified][-1])

            return _Binance

        class _Bybit(base):  # type: ignore[misc, valid-type]
            def handle_subscription_status(self, client: Any, message: dict) -> Any:
                out = super().handle_subscription_status(client, message)
                if message.get("success") is not False:
                    rec._subscribed(getattr(self, "_rec_target", None))
                return out

            def handle_order_book(self, client: Any, message: dict) -> None:
                data = message.get("data") or {}
                st = rec._by_id(data.get("s")) if isinstance(data, dict) else None
                if st is None:
                    return super().handle_order_book(client, message)
                u = data.get("u")
                kind = message.get("type")
                u = None if u is None else int(u)
                if kind == "delta" and (st.bybit_u is None or u is None or u != st.bybit_u + 1):
                    from ccxt.base.errors import ChecksumError

                    err = ChecksumError(f"bybit {st.symbol}: update id {u} after {st.bybit_u}")
                    st.bybit_u = None  # broken chain: drop the book, make the watcher resubscribe
                    self.orderbooks.pop(st.unified, None)
                    client.reject(err, "orderbook:" + st.unified)
                    return None
                if kind == "snapshot" and st.bybit_u is not None and u not in (st.bybit_u, st.bybit_u + 1):
                    # (the 1-level stream re-sends an unchanged book as a snapshot with the same u every 3 s)
                    rec._open_gap(st, "l2", "sequence")  # a mid-stream snapshot (e.g. u = 1 after a restart)
                    rec.stats["sequence_gaps"] += 1
                super().handle_order_book(client, message)
                st.bybit_u = u
                ob = self.orderbooks.get(st.unified)
                if ob is not None:
                    rec._book_row(st, ob, message.get("ts"), u, data.get("seq"))
                return None

            def handle_trades(self, client: Any, message: dict) -> None:
                super().handle_trades(client, message)
                data = message.get("data") or []
                topic = str(message.get("topic", ""))
                st = rec._by_id(topic.split(".")[-1]) if topic else None
                if st is None or st.unified not in self.trades or not data:
                    return
                stored = self.trades[st.unified]
                k = min(len(data), len(stored))
                for t in list(stored)[len(stored) - k:]:
                    rec._trade_row(st, t)

        return _Bybit

    def _subscribed(self, target: Any) -> None:
        """The exchange acknowledged a subscription: a trade stream misses nothing from now on, so its gap
        ends here (a book's gap ends at its first state, the snapshot)."""
        if not target or target[1] != "trades":
            return
        st = target[0]
        if st.pending["trades"] is not None:
            self._close_gap(st, "trades", self.now(), None, None)

    def _by_unified(self, unified: Any) -> Optional[_Sym]:
        for st in self.syms.values():
            if st.unified == unified:
                return st
        return None

    def _by_id(self, mid: Any) -> Optional[_Sym]:
        return self.syms.get(str(mid).upper()) if mid is not None else None

    def _make_pro(self, st: Optional[_Sym] = None, stream: Optional[str] = None) -> Any:
        opts: dict[str, Any] = {"enableRateLimit": True, "newUpdates": True}
        if self.venue == "bybit":
            opts["options"] = {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}}
        pro = self._pro_class()(opts)
        api = pro.urls["api"]
        if self.rest_url is not None:
            o = urlsplit(self.rest_url)
            for k, v in list(api.items()):
                if k != "ws" and isinstance(v, str):
                    u = urlsplit(v)
                    api[k] = u._replace(scheme=o.scheme, netloc=o.netloc).geturl()
        if self.ws_url is not None:
            if self.venue == "binanceusdm":
                api["ws"] = {**api["ws"], "linear": self.ws_url}
            else:
                api["ws"] = {**api["ws"], "public": {**api["ws"]["public"], "linear": self.ws_url}}
        if self._markets is not None:
            pro.set_markets(self._markets)
        pro._rec_target = (st, stream)
        return pro

    async def _load_markets(self) -> None:
        import ccxt

        delay = self.backoff[0]
        while not self._stop.is_set():
            pro = self._make_pro()
            try:
                await pro.load_markets()
                self._markets = pro.markets
                break
            except ccxt.BaseError as exc:
                self._progress({"event": "error", "what": "load_markets", "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff[1])
            finally:
                await pro.close()
        if self._markets is None:
            return
        by_id = {m["id"]: m for m in self._markets.values()
                 if m.get("linear") and m.get("swap") and m.get("settle") == "USDT"}
        for s, st in self.syms.items():
            m = by_id.get(s)
            if m is None:
                raise ConfigError(f"--symbols: {s} is not a {self.venue} USDT-margined linear perpetual")
            st.unified = m["symbol"]
            prec = m.get("precision") or {}
            if self.lens_k is not None:
                from forge.features.l2lens import LiveLens

                tick = prec.get("price")
                st.lens = LiveLens(self.depth, self.lens_k, float(tick) if tick else None)
            write_meta(self.dest, self.venue, s, {"venue": self.venue, "symbol": s, "ccxt_symbol": m["symbol"],
                                                  "tick": prec.get("price"), "lot": prec.get("amount"),
                                                  "depth": self.depth, "book_subscription": self.sub_depth,
                                                  "ccxt_version": ccxt.__version__})

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _stream(self, st: _Sym, stream: str) -> None:
        """Keep one symbol's stream subscribed for the recorder's life: (re)connect, watch, back off."""
        import ccxt

        delay = self.backoff[0]
        self._open_gap(st, stream, "start")
        while not self._stop.is_set():
            pro = self._make_pro(st, stream)
            st.bybit_u = None if stream == "l2" else st.bybit_u
            reason = None
            try:
                while not self._stop.is_set():
                    if stream == "l2":
                        ob = await asyncio.wait_for(pro.watch_order_book(st.unified, self.sub_depth),
                                                    timeout=self.idle_seconds)
                        # the REST snapshot state itself when no buffered diff was applied on top of it
                        last = st.last["l2"]
                        if self.venue == "binanceusdm" and (last is None or last[2] != ob.get("nonce")):
                            self._book_row(st, ob, ob.get("timestamp"), ob.get("nonce"), None)
                    else:
                        await pro.watch_trades(st.unified)
                    delay = self.backoff[0]
            except asyncio.CancelledError:
                raise
            except ccxt.ChecksumError as exc:
                reason = "sequence"
                self.stats["sequence_gaps"] += 1
                self._progress({"event": "reconnect", "symbol": st.symbol, "stream": stream, "reason": reason,
                                "error": str(exc)[:160]})
            except (asyncio.TimeoutError, ccxt.BaseError, OSError) as exc:
                reason = "reconnect"
                self._progress({"event": "reconnect", "symbol": st.symbol, "stream": stream, "reason": reason,
                                "error": f"{type(exc).__name__}: {str(exc)[:160]}", "delay": delay})
            except Exception as exc:  # a bug in a handler must not stop the recording
                reason = "reconnect"
                log.exception("%s %s %s: unexpected error", self.venue, st.symbol, stream)
                self._progress({"event": "error", "symbol": st.symbol, "stream": stream,
                                "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
            finally:
                try:
                    await pro.close()
                except Exception:  # pragma: no cover - closing a broken client
                    pass
            if reason is None or self._stop.is_set():
                break
            self.stats["reconnects"] += 1
            self._open_gap(st, stream, reason)
            if reason == "sequence":
                continue  # re-synchronise at once
            await self._sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    async def _flusher(self) -> None:
        try:
            await self._flush_loop()
        except asyncio.CancelledError:
            raise
        except BaseException:  # cannot write: stop everything (run() re-raises it)
            self._stop.set()
            raise

    async def _flush_loop(self) -> None:
        compacting: Optional[asyncio.Future] = None
        last_hour = getattr(self, "_hour_now", None)
        try:
            while not self._stop.is_set():
                await self._sleep(self.flush_seconds)
                n = self.flush()
                if n:
                    self._progress({"event": "flush", "rows": n, **self.stats})
                if self._hour_now != last_hour and (compacting is None or compacting.done()):
                    last_hour = self._hour_now  # an hour (maybe a day) finished: compact it off the event loop
                    compacting = asyncio.ensure_future(asyncio.to_thread(self._compact_logged, self._hour_now * 3_600_000))
        finally:
            if compacting is not None:
                await asyncio.shield(compacting)

    # ------------------------------------------------------------------ run

    def stop(self) -> None:
        """Ask a running :meth:`run` to stop (from its event loop's thread; see :meth:`stop_threadsafe`)."""
        if self._stop is not None:
            self._stop.set()

    def lock(self) -> None:
        """Take the single-writer lock of every recorded symbol's folder (``DEST/<venue>/<SYMBOL>/.recorder.lock``:
        an exclusive, non-blocking ``fcntl.flock`` the OS drops when the holder exits, ``kill -9`` included; the
        holder's pid is written in it).  Two recorders of one book would write every row twice and compact the
        same files.  Idempotent; :meth:`run` takes it, :meth:`unlock` (or the end of ``run``) drops it.  raises
        ConfigError naming the other recorder's pid."""
        import fcntl

        for sym in self.syms:
            if sym in self._locks:
                continue
            path = stream_dir(self.dest, self.venue, sym, "l2").parent / ".recorder.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")  # noqa: SIM115 - held open while recording: the descriptor is the lock
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                pid = fh.read().strip() or "unknown"
                fh.close()
                self.unlock()
                raise ConfigError(f"{path.parent}: another recorder (pid {pid}) is recording {self.venue}/{sym} "
                                  "there; stop it, or record into another directory") from None
            fh.truncate(0)
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            self._locks[sym] = fh

    def unlock(self) -> None:
        """Drop the folders' locks (idempotent)."""
        for fh in self._locks.values():
            try:
                fh.truncate(0)
            finally:
                fh.close()
        self._locks.clear()

    async def run(self, max_seconds: Optional[float] = None) -> dict:
        """Record until :meth:`stop` or ``max_seconds`` (wall clock); flush and return a summary dict
        (rows, gaps, reconnects, duplicates dropped, parts and bytes written, seconds).  Holds the folders'
        single-writer lock (:meth:`lock`) while it runs."""
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        held = bool(self._locks)
        self.lock()
        try:
            return await self._run(t0, max_seconds)
        finally:
            if not held:
                self.unlock()

    async def _run(self, t0: float, max_seconds: Optional[float]) -> dict:
        self._resume()
        tasks: list[asyncio.Task] = []
        try:
            await self._load_markets()
            if not self._stop.is_set():
                tasks = [asyncio.create_task(self._stream(st, s)) for st in self.syms.values() for s in ("l2", "trades")]
                tasks.append(asyncio.create_task(self._flusher()))
                if max_seconds is not None:
                    await self._sleep(max(0.0, max_seconds - (time.monotonic() - t0)))
                    self._stop.set()
                else:
                    await self._stop.wait()
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
            try:
                self.flush()
            except OSError as exc:
                failed.append(exc)
            if failed:
                exc = failed[0]
                if isinstance(exc, OSError):
                    raise DataError(f"cannot write the recording under {self.dest}: {exc}") from None
                raise exc
        return {"venue": self.venue, "symbols": list(self.syms), "depth": self.depth, "dest": str(self.dest),
                "seconds": round(time.monotonic() - t0, 3), **self.stats}

    def stop_threadsafe(self) -> None:
        """:meth:`stop` from another thread (signal handlers, tests)."""
        loop = getattr(self, "_loop", None)
        if loop is not None and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)


def record(venue: str, symbols: list[str], depth: int = 20, dest: str = "artifacts/l2",
           max_seconds: Optional[float] = None, **kw: Any) -> dict:
    """Run a :class:`Recorder` to completion in a fresh event loop (SIGINT / SIGTERM stop it cleanly:
    the buffered rows are flushed); returns its summary."""
    import signal

    rec = Recorder(venue, symbols, depth, dest, **kw)

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(rec.run(max_seconds))
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, rec.stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
                pass
        return await task

    return asyncio.run(main())
