"""Recorded L2 order books and trades: the on-disk layout, its writer primitives and the reader.

``crucible record`` (:mod:`crucible.record`) writes these files from live exchange feeds; the Liquidity Lens
(:mod:`forge.features.l2lens`) and, later, ``forge evolve --l2`` read them.  One module holds both sides of
the format (written and read by one paired module).

Layout under a recording directory ``DIR``::

    DIR/<venue>/<SYMBOL>/<stream>/YYYY-MM-DD.parquet            a finished (compacted) UTC day
    DIR/<venue>/<SYMBOL>/<stream>/YYYY-MM-DD/hour-HH.parquet    a finished hour of the day being written
    DIR/<venue>/<SYMBOL>/<stream>/YYYY-MM-DD/part-*.parquet     the parts of the hour being written
    stream = "l2" | "trades" | "gaps"

The day of a row is the UTC day of its **local receive time** (``recv_ms``), which never goes backwards in
the writer, so a day stops receiving rows when the receive clock passes midnight; the reader filters on the
exchange timestamp (``ts_ms``) and therefore also reads the day before the requested start.  Every file is
written to a temporary name in its directory, fsynced and renamed (atomic on POSIX): a killed writer
leaves whole part files and, at worst, a ``.tmp`` file the reader ignores.  A part holds rows of one UTC
hour (its name starts with its first row's receive time).  Compacting an hour (a day) writes the hour (day)
file first and then deletes its sources; a kill between the two leaves both, and the reader then reads
only the compacted file (the sources are copies of its rows).  Hourly compaction keeps a day at tens of
files instead of one part per flush (86,400 a day at the default 1 s).

``DIR/<venue>/<SYMBOL>/meta.json`` describes the market as recorded: ``tick`` (price step, quote per base),
``lot`` (size step, base units), ``depth``, the ccxt symbol and version (:func:`write_meta` / :func:`load_meta`).

Schemas (Parquet, polars dtypes):

* ``l2`` — one row per book state: ``ts_ms`` Int64 (exchange time of the state, ms UTC: Binance's event time
  ``E`` of the diff, or the REST snapshot's ``T``; Bybit's ``ts``), ``recv_ms`` Int64
  (local receive time, ms UTC), ``nonce`` Int64 (the exchange's update id of the state: Binance ``u`` /
  REST ``lastUpdateId``, Bybit ``u``; -1 when the exchange gives none), ``seq`` Int64 (Bybit's cross
  sequence ``seq``; -1 elsewhere), ``bid_px`` / ``bid_sz`` / ``ask_px`` / ``ask_sz`` Array(Float64, depth)
  (best first; price in quote currency per base unit, size in base units; NaN where the book has fewer
  than ``depth`` levels).
* ``trades`` — ``id`` String (the exchange's trade id), ``ts_ms`` Int64, ``recv_ms`` Int64, ``price``
  Float64 (quote per base), ``amount`` Float64 (base units, > 0), ``side`` Int8 (+1 the taker bought, -1
  the taker sold, 0 unknown).
* ``gaps`` — one row per interval in which a stream may have missed data (every connect and reconnect, every
  sequence gap): ``stream`` String ("l2" | "trades"), ``reason`` String ("start": the recorder started;
  "reconnect": the connection dropped or stalled; "sequence": the exchange's update ids jumped and the book
  was re-synchronised), ``start_recv_ms`` / ``start_ts_ms`` / ``start_nonce`` Int64 (the last row recorded
  before the gap; null when none is known), ``end_recv_ms`` / ``end_ts_ms`` / ``end_nonce`` Int64 (the first
  book state recorded after it; for trades the receive time of the subscription's acknowledgement, with
  null ``end_ts_ms`` / ``end_nonce``).  Data between start and end is missing; the book rows on either side are exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import polars as pl

from forge.core.artifacts import atomic_write_with
from forge.core.errors import DataError

__all__ = ["STREAMS", "L2Book", "l2_schema", "TRADE_SCHEMA", "GAP_SCHEMA", "stream_dir", "day_of_ms",
           "hour_of_ms", "write_part", "compact_hour", "compact_day", "day_files", "read_stream", "load_l2", "load_trades", "load_gaps",
           "list_symbols", "write_meta", "load_meta"]

STREAMS = ("l2", "trades", "gaps")
DAY_MS = 86_400_000
_DAY_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
_DAYDIR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR_RE = re.compile(r"^hour-(\d{2})\.parquet$")

TRADE_SCHEMA = {"id": pl.String, "ts_ms": pl.Int64, "recv_ms": pl.Int64, "price": pl.Float64,
                "amount": pl.Float64, "side": pl.Int8}
GAP_SCHEMA = {"stream": pl.String, "reason": pl.String, "start_recv_ms": pl.Int64, "start_ts_ms": pl.Int64,
              "start_nonce": pl.Int64, "end_recv_ms": pl.Int64, "end_ts_ms": pl.Int64, "end_nonce": pl.Int64}


def l2_schema(depth: int) -> dict[str, pl.DataType]:
    """The ``l2`` stream's schema for ``depth`` levels per side (see the module docstring)."""
    arr = pl.Array(pl.Float64, int(depth))
    return {"ts_ms": pl.Int64, "recv_ms": pl.Int64, "nonce": pl.Int64, "seq": pl.Int64,
            "bid_px": arr, "bid_sz": arr, "ask_px": arr, "ask_sz": arr}


def stream_dir(root: str | Path, venue: str, symbol: str, stream: str) -> Path:
    """``root/<venue>/<SYMBOL>/<stream>`` (stream one of :data:`STREAMS`)."""
    if stream not in STREAMS:
        raise ValueError(f"stream {stream!r}: expected one of {', '.join(STREAMS)}")
    return Path(root) / venue / symbol.upper() / stream


def day_of_ms(ms: int) -> str:
    """UTC day ``YYYY-MM-DD`` of a time in ms since the epoch."""
    return datetime.fromtimestamp(int(ms) // 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _atomic_parquet(df: pl.DataFrame, path: Path) -> Path:
    return atomic_write_with(path, lambda tmp: df.write_parquet(tmp, compression="zstd", statistics=True))


def hour_of_ms(ms: int) -> int:
    """UTC hour (0-23) of a time in ms since the epoch."""
    return int(ms) // 3_600_000 % 24


def write_part(root: str | Path, venue: str, symbol: str, stream: str, day: str, df: pl.DataFrame,
               serial: int) -> Path:
    """Atomically write one part file of ``day`` (rows already in the stream's schema, all in one UTC hour
    of their receive time); returns its path.

    serial: a number increasing within the writer's life (with the first row's receive time it names the
    part, ``part-<recv_ms:013d>-<serial:08d>.parquet``, so parts sort in write order and name their hour)."""
    first = int(df["recv_ms"][0]) if "recv_ms" in df.columns else int(df["end_recv_ms"][0])
    d = stream_dir(root, venue, symbol, stream) / day
    return _atomic_parquet(df, d / f"part-{first:013d}-{int(serial):08d}.parquet")


def _part_hour(p: Path) -> int:
    return hour_of_ms(int(p.name.split("-")[1]))


def _parts(daydir: Path, hour: int | None = None) -> list[Path]:
    ps = sorted(p for p in daydir.glob("part-*.parquet") if p.is_file())
    return ps if hour is None else [p for p in ps if _part_hour(p) == hour]


def _hours(daydir: Path) -> dict[int, Path]:
    out = {}
    for p in daydir.glob("hour-*.parquet"):
        m = _HOUR_RE.match(p.name)
        if m and p.is_file():
            out[int(m.group(1))] = p
    return out


def _day_sources(daydir: Path) -> list[Path]:
    """The files holding a day directory's rows in order: per hour the hour file when it exists (its parts
    are then leftover copies), else the hour's parts."""
    if not daydir.is_dir():
        return []
    hours = _hours(daydir)
    by_hour: dict[int, list[Path]] = {h: [p] for h, p in hours.items()}
    for p in _parts(daydir):
        h = _part_hour(p)
        if h not in hours:
            by_hour.setdefault(h, []).append(p)
    return [p for h in sorted(by_hour) for p in by_hour[h]]


def _remove_dir_files(daydir: Path, files: list[Path], tmps: bool = False) -> None:
    for p in files:
        p.unlink(missing_ok=True)
    if tmps:  # only for a finished day: a writer may be writing a .tmp of the current hour
        for tmp in daydir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def compact_hour(root: str | Path, venue: str, symbol: str, stream: str, day: str, hour: int) -> Path | None:
    """Merge the parts of a finished ``hour`` of ``day`` into ``<day>/hour-HH.parquet`` (atomic), then delete
    them (an hour file already there is kept and its leftover parts deleted).  returns the hour file or None."""
    daydir = stream_dir(root, venue, symbol, stream) / day
    hfile = daydir / f"hour-{int(hour):02d}.parquet"
    parts = _parts(daydir, int(hour)) if daydir.is_dir() else []
    if not hfile.exists():
        if not parts:
            return None
        _atomic_parquet(pl.concat([_read(p) for p in parts], how="vertical"), hfile)
    _remove_dir_files(daydir, parts)
    return hfile


def compact_day(root: str | Path, venue: str, symbol: str, stream: str, day: str) -> Path | None:
    """Merge a finished ``day``'s hour files and parts into ``<day>.parquet`` (atomic), then delete them and
    the day directory.  A day file that already exists (a kill after writing it and before the deletions) is
    kept and the leftovers deleted.  returns the day file, or None when the day has no rows."""
    sd = stream_dir(root, venue, symbol, stream)
    daydir, dayfile = sd / day, sd / f"{day}.parquet"
    if not dayfile.exists():
        src = _day_sources(daydir)
        if not src:
            return None
        _atomic_parquet(pl.concat([_read(p) for p in src], how="vertical"), dayfile)
    if daydir.is_dir():
        _remove_dir_files(daydir, _parts(daydir) + list(_hours(daydir).values()), tmps=True)
        try:
            daydir.rmdir()
        except OSError:
            pass
    return dayfile


class _Vanished(Exception):
    """A listed file was removed before it was read (compacted by a running recorder)."""


def _read(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise _Vanished(str(path))
    try:
        return pl.read_parquet(path)
    except FileNotFoundError:
        raise _Vanished(str(path)) from None
    except Exception as exc:  # polars raises ComputeError / OSError for a damaged file
        raise DataError(f"unreadable Parquet file ({type(exc).__name__}: {str(exc)[:120]})", file=path) from None


def day_files(root: str | Path, venue: str, symbol: str, stream: str) -> dict[str, list[Path]]:
    """Every recorded day of a stream -> the files holding its rows, in order: the day file alone when it
    exists, else per hour the hour file when it exists, else that hour's part files in write order."""
    sd = stream_dir(root, venue, symbol, stream)
    out: dict[str, list[Path]] = {}
    if not sd.is_dir():
        return out
    for p in sd.iterdir():
        m = _DAY_RE.match(p.name)
        if m and p.is_file():
            out[m.group(1)] = [p]
    for p in sd.iterdir():
        if p.is_dir() and _DAYDIR_RE.match(p.name) and p.name not in out:
            src = _day_sources(p)
            if src:
                out[p.name] = src
    return dict(sorted(out.items()))


def _days_between(start_ms: int, end_ms: int) -> set[str]:
    d0 = datetime.fromtimestamp(int(start_ms) // 1000, tz=timezone.utc).date() - timedelta(days=1)
    d1 = datetime.fromtimestamp(max(int(end_ms) - 1, int(start_ms)) // 1000, tz=timezone.utc).date() + timedelta(days=1)
    out, d = set(), d0
    while d <= d1:
        out.add(d.strftime("%Y-%m-%d"))
        d += timedelta(days=1)
    return out


def read_stream(root: str | Path, venue: str, symbol: str, stream: str, start_ms: int | None = None,
                end_ms: int | None = None, *, time_col: str | None = None, _retry: int = 0) -> pl.DataFrame:
    """Rows of one stream in receive order, optionally only those with ``start_ms <= time_col < end_ms``
    (``time_col``: ``ts_ms`` for l2 / trades, ``end_recv_ms`` for gaps by default).  An empty frame when
    nothing is recorded.  A recorder may compact while this reads: files compacted away meanwhile make it
    list the directory again.  raises DataError naming an unreadable file."""
    files = day_files(root, venue, symbol, stream)
    if start_ms is not None and end_ms is not None:
        if end_ms <= start_ms:
            raise DataError(f"empty time range: end {end_ms} <= start {start_ms} (ms)")
        want = _days_between(start_ms, end_ms)
        files = {d: f for d, f in files.items() if d in want}
    try:
        frames = [_read(p) for fs in files.values() for p in fs]
    except _Vanished:
        if _retry >= 3:
            raise DataError(f"the recording under {root} keeps changing while it is read (compaction)") from None
        return read_stream(root, venue, symbol, stream, start_ms, end_ms, time_col=time_col, _retry=_retry + 1)
    if not frames:
        return pl.DataFrame()
    df = pl.concat(frames, how="vertical")
    col = time_col or ("end_recv_ms" if stream == "gaps" else "ts_ms")
    if start_ms is not None:
        df = df.filter(pl.col(col) >= int(start_ms))
    if end_ms is not None:
        df = df.filter(pl.col(col) < int(end_ms))
    order = "end_recv_ms" if stream == "gaps" else "recv_ms"
    return df.sort(order, maintain_order=True)


@dataclass(frozen=True)
class L2Book:
    """Recorded book states of one symbol, oldest first (receive order).

    ts_ms, recv_ms: (n,) int64, exchange time / local receive time, ms UTC.
    nonce, seq: (n,) int64, the exchange's update id and (Bybit) cross sequence; -1 where none.
    bid_px, bid_sz, ask_px, ask_sz: (n, depth) float64, best level first; price in quote currency per base
        unit, size in base units; NaN beyond the book's levels.
    after_gap: (n,) bool, True for the first state recorded after a gap marker (the change from the state
        before it is unknown: flow measures such as OFI must not span it).
    """

    ts_ms: np.ndarray
    recv_ms: np.ndarray
    nonce: np.ndarray
    seq: np.ndarray
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    after_gap: np.ndarray

    @property
    def depth(self) -> int:
        return int(self.bid_px.shape[1])

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])


def _matrix(col: pl.Series, depth: int) -> np.ndarray:
    if col.len() == 0:
        return np.zeros((0, depth), dtype=np.float64)
    return np.ascontiguousarray(col.to_numpy(), dtype=np.float64).reshape(col.len(), depth)


def _after_gap(recv: np.ndarray, nonce: np.ndarray, l2_gaps: pl.DataFrame) -> np.ndarray:
    """(n,) bool: the state each gap marker ends at -- the first row received in the marker's
    ``end_recv_ms`` whose nonce is its ``end_nonce`` (else the first row of that millisecond).  Rows that
    merely share the millisecond (a re-synchronising snapshot and the update received with it) are not
    flagged: the live recorder flags the one state, and research must see the same book."""
    after = np.zeros(recv.shape[0], dtype=bool)
    if l2_gaps.height == 0:
        return after
    ends = l2_gaps["end_recv_ms"].to_numpy().astype(np.int64)
    cand = np.flatnonzero(np.isin(recv, ends))  # the few rows received in a gap's last millisecond
    for r, nz in zip(ends.tolist(), l2_gaps["end_nonce"].to_list()):
        rows = cand[recv[cand] == r]
        if rows.size:
            hit = rows[nonce[rows] == nz] if nz is not None else rows
            after[hit[0] if hit.size else rows[0]] = True
    return after


def load_l2(root: str | Path, venue: str, symbol: str, start_ms: int | None = None,
            end_ms: int | None = None) -> L2Book:
    """The recorded book states of ``venue``/``symbol`` with ``start_ms <= ts_ms < end_ms`` (ms UTC; None =
    unbounded) as typed arrays (:class:`L2Book`).  raises DataError when nothing is recorded for the symbol
    or a file is unreadable; an empty L2Book when the range holds no state."""
    if not stream_dir(root, venue, symbol, "l2").is_dir():
        raise DataError(f"no recorded L2 books for {venue}/{symbol.upper()} under {root}")
    df = read_stream(root, venue, symbol, "l2", start_ms, end_ms)
    gaps = load_gaps(root, venue, symbol)
    if df.height == 0:
        depth = 0
        z = np.zeros(0, dtype=np.int64)
        m = np.zeros((0, 0), dtype=np.float64)
        return L2Book(z, z, z, z, m, m, m, m, np.zeros(0, dtype=bool))
    depth = int(df.schema["bid_px"].size)
    recv = df["recv_ms"].to_numpy().astype(np.int64)
    nonce = df["nonce"].to_numpy().astype(np.int64)
    after = _after_gap(recv, nonce, gaps.filter(pl.col("stream") == "l2").drop_nulls("end_recv_ms"))
    after[0] = True  # nothing is known before the first row of the range
    return L2Book(ts_ms=df["ts_ms"].to_numpy().astype(np.int64), recv_ms=recv,
                  nonce=nonce, seq=df["seq"].to_numpy().astype(np.int64),
                  bid_px=_matrix(df["bid_px"], depth), bid_sz=_matrix(df["bid_sz"], depth),
                  ask_px=_matrix(df["ask_px"], depth), ask_sz=_matrix(df["ask_sz"], depth), after_gap=after)


def load_trades(root: str | Path, venue: str, symbol: str, start_ms: int | None = None,
                end_ms: int | None = None) -> pl.DataFrame:
    """Recorded trades (schema :data:`TRADE_SCHEMA`) with ``start_ms <= ts_ms < end_ms``, receive order."""
    df = read_stream(root, venue, symbol, "trades", start_ms, end_ms)
    return df if df.height else pl.DataFrame(schema=TRADE_SCHEMA)


def load_gaps(root: str | Path, venue: str, symbol: str) -> pl.DataFrame:
    """Every gap marker of ``venue``/``symbol`` (schema :data:`GAP_SCHEMA`), oldest first."""
    df = read_stream(root, venue, symbol, "gaps")
    return df if df.height else pl.DataFrame(schema=GAP_SCHEMA)


def list_symbols(root: str | Path, venue: str) -> list[str]:
    """Symbols with a recording under ``root/<venue>``."""
    d = Path(root) / venue
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []



def write_meta(root: str | Path, venue: str, symbol: str, meta: dict) -> Path:
    """Atomically write ``root/<venue>/<SYMBOL>/meta.json`` (tick, lot, depth, ccxt symbol / version)."""
    from forge.core.artifacts import atomic_write_json

    return atomic_write_json(Path(root) / venue / symbol.upper() / "meta.json", meta)


def load_meta(root: str | Path, venue: str, symbol: str) -> dict:
    """The recording's ``meta.json`` ({} when absent); raises DataError for a malformed file."""
    import json

    p = Path(root) / venue / symbol.upper() / "meta.json"
    if not p.is_file():
        return {}
    try:
        out = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable meta.json ({exc})", file=p) from None
    if not isinstance(out, dict):
        raise DataError("meta.json: expected a JSON object", file=p)
    return out
