"""Binance public data archive (https://data.binance.vision) -> kline and funding-rate files on disk.

The archive (layout documented by https://github.com/binance/binance-public-data, README and
``python/utility.py``)::

    {base}/data/spot/monthly/klines/SYM/1m/SYM-1m-YYYY-MM.zip            one month, spot
    {base}/data/spot/daily/klines/SYM/1m/SYM-1m-YYYY-MM-DD.zip           one day, spot
    {base}/data/futures/um/monthly/klines/SYM/1m/SYM-1m-YYYY-MM.zip      USDⓈ-M perpetuals
    {base}/data/futures/um/daily/klines/SYM/1m/SYM-1m-YYYY-MM-DD.zip
    {base}/data/futures/um/monthly/fundingRate/SYM/SYM-fundingRate-YYYY-MM.zip

Every zip has a sibling ``<zip>.CHECKSUM`` holding ``"<64 hex sha256>  <zip file name>"`` (``sha256sum``
output).  Monthly files appear a few days after the month closes, daily files the day after; so a
download asks for monthly files of past months and daily files (up to yesterday, UTC) for the current
month, and falls back to daily files for last month while its monthly file is not published yet.

On disk (``dest``; the layout :mod:`forge.data.loader` and :mod:`forge.data.discovery` read)::

    dest/spot/SYM/1m/SYM-1m-YYYY-MM.zip (+ .zip.CHECKSUM)          spot klines, monthly or daily files
    dest/futures-um/SYM/1m/SYM-1m-YYYY-MM.zip (+ .zip.CHECKSUM)    USDⓈ-M perpetual klines
    dest/futures-um/SYM/fundingRate/SYM-fundingRate-YYYY-MM.zip    funding-rate history of the perpetual:
                                                                   one CSV, header
                                                                   ``calc_time,funding_interval_hours,
                                                                   last_funding_rate`` (ms, hours, fraction)

A zip is kept only when its sha256 equals its ``.CHECKSUM`` (which is kept beside it, so a later run verifies
the file without the network and skips it).  Bytes stream to ``<name>.part`` and are renamed atomically
once verified; an interrupted ``.part`` is resumed with an HTTP ``Range`` request.  A verified monthly kline
file removes the daily files of its month it supersedes (the loader would otherwise see every bar twice).
429, 418 (Binance's ban after ignored 429s) and 5xx responses and connection errors are retried with
exponential backoff, honouring ``Retry-After``.  A 404 means the archive has no such file (a month before
the symbol was listed, a typo): reported once, not an error by itself.

Library only (no printing): :func:`plan_downloads` lists the files, :func:`download_files` fetches them and
reports through a callback.  raises ConfigError for a bad request (symbol, market, dates).
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

from forge.core.errors import ConfigError

__all__ = ["ARCHIVE_URL", "MARKETS", "ArchiveFile", "FileResult", "DownloadReport", "plan_downloads",
           "download_files", "parse_checksum", "parse_month"]

ARCHIVE_URL = "https://data.binance.vision"
MARKETS = {"spot": "spot", "futures-um": "futures/um"}
"""CLI market name (also the folder under ``dest``) -> the archive's path segment."""
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
RETRY_STATUS = frozenset({418, 429, 500, 502, 503, 504})
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive: its URL, where it goes, and what it is.

    kind: "klines" or "fundingRate"; period: "YYYY-MM" (monthly) or "YYYY-MM-DD" (daily)."""

    url: str
    dest: Path
    symbol: str
    market: str
    kind: str
    period: str

    @property
    def label(self) -> str:
        """Short name for messages: ``"BTCUSDT spot klines 2024-01"``."""
        return f"{self.symbol} {self.market} {self.kind} {self.period}"

    @property
    def checksum_path(self) -> Path:
        return self.dest.with_name(self.dest.name + ".CHECKSUM")

    @property
    def part_path(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")


@dataclass(frozen=True)
class FileResult:
    """Outcome of one file. status: "downloaded", "kept" (already verified on disk), "missing" (HTTP 404),
    "bad_checksum" (nothing kept) or "failed" (retries exhausted / unexpected HTTP status; nothing kept).
    nbytes: bytes received over the network for it; message: one line for the user."""

    file: ArchiveFile
    status: str
    message: str
    nbytes: int = 0
    fallback: tuple[ArchiveFile, ...] = ()


@dataclass
class DownloadReport:
    """Every file's result, in plan order (daily fall-backs follow the monthly file they replace)."""

    results: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when no file failed or had a bad checksum (missing months are not failures)."""
        return not any(r.status in ("bad_checksum", "failed") for r in self.results)

    def symbols_without_data(self) -> list[str]:
        """(symbol, market) labels for which no kline file is on disk after the run (all missing)."""
        have: dict[tuple[str, str], bool] = {}
        for r in self.results:
            if r.file.kind != "klines":
                continue
            key = (r.file.symbol, r.file.market)
            have[key] = have.get(key, False) or r.status in ("downloaded", "kept")
        return [f"{s} {m}" for (s, m), ok in have.items() if not ok]


# --------------------------------------------------------------------------- the plan


def parse_month(text: str, what: str) -> tuple[int, int]:
    """``"YYYY-MM"`` -> (year, month).  raises ConfigError naming ``what`` (e.g. "--from")."""
    m = _MONTH.match(str(text).strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2017:
        raise ConfigError(f"{what} {text!r}: expected a month YYYY-MM from 2017-01 on (e.g. 2024-01)")
    return int(m.group(1)), int(m.group(2))


def _months(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    out, (y, m) = [], a
    while (y, m) <= b:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _kline_file(base: str, dest: Path, sym: str, market: str, interval: str, freq: str, period: str) -> ArchiveFile:
    name = f"{sym}-{interval}-{period}.zip"
    url = f"{base}/data/{MARKETS[market]}/{freq}/klines/{sym}/{interval}/{name}"
    return ArchiveFile(url, dest / market / sym / interval / name, sym, market, "klines", period)


def _daily_files(base: str, dest: Path, sym: str, market: str, interval: str, y: int, m: int,
                 until: date) -> list[ArchiveFile]:
    d, out = date(y, m, 1), []
    while d.month == m and d <= until:
        out.append(_kline_file(base, dest, sym, market, interval, "daily", d.isoformat()))
        d += timedelta(days=1)
    return out


def plan_downloads(symbols: Sequence[str], market: str, start: str, end: str, dest: str | Path, *,
                   interval: str = "1m", funding: bool | None = None, today: date | None = None,
                   base_url: str = ARCHIVE_URL) -> list[ArchiveFile]:
    """The archive files of ``symbols`` from month ``start`` to month ``end`` (``"YYYY-MM"``, inclusive).

    Past months -> monthly files; the current month (UTC ``today``) -> daily files up to yesterday.
    funding: also the monthly funding-rate files (default: True for ``futures-um``; refused for spot);
    the current month's funding file does not exist until the month closes and is not asked for.
    raises ConfigError for an unknown market or interval, a malformed symbol, ``start`` after ``end``
    or ``end`` after the current month.
    """
    if market not in MARKETS:
        raise ConfigError(f"--market {market!r}: expected one of {', '.join(MARKETS)}")
    if interval not in INTERVALS:
        raise ConfigError(f"--interval {interval!r}: expected one of {', '.join(INTERVALS)}")
    if not symbols:
        raise ConfigError("no symbol given; e.g. forge data download BTCUSDT --from 2024-01 --to 2024-06")
    syms = []
    for s in symbols:
        u = str(s).strip().upper()
        if not _SYMBOL.match(u):
            raise ConfigError(f"symbol {s!r}: expected letters and digits only, e.g. BTCUSDT")
        if u not in syms:
            syms.append(u)
    if funding is None:
        funding = market == "futures-um"
    if funding and market != "futures-um":
        raise ConfigError("--funding: funding-rate history exists only for --market futures-um")
    a, b = parse_month(start, "--from"), parse_month(end, "--to")
    if a > b:
        raise ConfigError(f"--from {start} is after --to {end}")
    today = today or datetime.now(timezone.utc).date()
    if b > (today.year, today.month):
        raise ConfigError(f"--to {end} is after the current month ({today:%Y-%m}, UTC); the archive has no "
                          "future data")
    base, dest = base_url.rstrip("/"), Path(dest)
    plan: list[ArchiveFile] = []
    for sym in syms:
        for y, m in _months(a, b):
            if (y, m) == (today.year, today.month):
                plan += _daily_files(base, dest, sym, market, interval, y, m, today - timedelta(days=1))
                continue
            plan.append(_kline_file(base, dest, sym, market, interval, "monthly", f"{y:04d}-{m:02d}"))
        if funding:
            for y, m in _months(a, b):
                if (y, m) == (today.year, today.month):
                    continue
                name = f"{sym}-fundingRate-{y:04d}-{m:02d}.zip"
                url = f"{base}/data/futures/um/monthly/fundingRate/{sym}/{name}"
                plan.append(ArchiveFile(url, dest / market / sym / "fundingRate" / name, sym, market,
                                        "fundingRate", f"{y:04d}-{m:02d}"))
    return plan


def _last_month(today: date) -> tuple[int, int]:
    return (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)


# --------------------------------------------------------------------------- checksums


def parse_checksum(text: str, name: str) -> str:
    """The sha256 (64 lower-case hex) of ``name`` in a ``.CHECKSUM`` file's text (``sha256sum`` format:
    ``"<hex>  <name>"``, the name optionally ``*``-prefixed).  raises ValueError when malformed or when
    the file names another file."""
    parts = text.strip().split()
    if not parts or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
        raise ValueError(f"malformed .CHECKSUM ({text.strip()[:80]!r}); expected '<64 hex>  {name}'")
    if len(parts) > 1 and parts[1].lstrip("*") != name:
        raise ValueError(f".CHECKSUM names {parts[1]!r}, not {name!r}")
    return parts[0].lower()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified_on_disk(f: ArchiveFile) -> bool:
    """True when ``f.dest`` and its ``.CHECKSUM`` exist and agree (no network)."""
    if not (f.dest.is_file() and f.checksum_path.is_file()):
        return False
    try:
        return parse_checksum(f.checksum_path.read_text(), f.dest.name) == _sha256_file(f.dest)
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- HTTP with retries


class _Missing(Exception):
    pass


class _Failed(Exception):
    pass


class _BadRange(Exception):
    pass


@dataclass(frozen=True)
class _Http:
    retries: int
    backoff: float
    max_backoff: float
    timeout: float
    sleep: Callable[[float], None]
    local: threading.local = field(default_factory=threading.local)

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = requests.Session()
            s.headers["User-Agent"] = "forge-gauntlet-crucible data download"
        return s

    def wait(self, attempt: int, resp: requests.Response | None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based): Retry-After when the server gives one
        (seconds or an HTTP date), else backoff * 2**attempt; capped at max_backoff."""
        delay = self.backoff * (2 ** attempt)
        ra = resp.headers.get("Retry-After") if resp is not None else None
        if ra:
            try:
                delay = float(ra)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(ra)
                    delay = (when - datetime.now(timezone.utc)).total_seconds()
                except (TypeError, ValueError):
                    pass
        return max(0.0, min(delay, self.max_backoff))

    def get(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        """GET ``url`` streaming; returns a 200/206 response (caller closes it).  raises _Missing on 404,
        _Failed on other statuses or when retries are exhausted."""
        last = ""
        for attempt in range(self.retries + 1):
            resp = None
            try:
                resp = self.session().get(url, headers=headers, stream=True, timeout=self.timeout)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code in (200, 206):
                    return resp
                if resp.status_code == 404:
                    resp.close()
                    raise _Missing(url)
                if resp.status_code == 416:  # a .part already as long as (or longer than) the file
                    resp.close()
                    raise _BadRange(url)
                last = f"HTTP {resp.status_code}"
                if resp.status_code not in RETRY_STATUS:
                    resp.close()
                    raise _Failed(f"{last} for {url}")
                resp.close()
            if attempt < self.retries:
                self.sleep(self.wait(attempt, resp))
        raise _Failed(f"{last} for {url} after {self.retries + 1} attempts")


# --------------------------------------------------------------------------- one file


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _fetch(f: ArchiveFile, http: _Http, on_bytes: Callable[[ArchiveFile, int], None]) -> FileResult:
    if _verified_on_disk(f):
        return FileResult(f, "kept", f"{f.label}: already verified on disk")
    try:
        with http.get(f.url + ".CHECKSUM") as r:
            expected = parse_checksum(r.text, f.dest.name)
    except _Missing:
        return FileResult(f, "missing", f"{f.label}: not in the archive (HTTP 404 for {f.url})")
    except _Failed as exc:
        return FileResult(f, "failed", f"{f.label}: {exc}; nothing kept")
    except ValueError as exc:
        return FileResult(f, "failed", f"{f.label}: {exc}; nothing kept")
    f.dest.parent.mkdir(parents=True, exist_ok=True)
    part, h, received = f.part_path, hashlib.sha256(), 0
    have = part.stat().st_size if part.is_file() else 0
    try:
        try:
            resp = http.get(f.url, headers={"Range": f"bytes={have}-"} if have else None)
        except _BadRange:  # the .part cannot be resumed: start over
            _remove(part)
            have = 0
            resp = http.get(f.url)
        with resp:
            if have and resp.status_code == 206:
                with open(part, "rb") as old:  # resume: hash what is there, append the rest
                    for chunk in iter(lambda: old.read(1 << 20), b""):
                        h.update(chunk)
                mode = "ab"
            else:
                mode = "wb"
            with open(part, mode) as out:
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    on_bytes(f, len(chunk))
    except _Missing:
        _remove(part)
        return FileResult(f, "missing", f"{f.label}: not in the archive (HTTP 404 for {f.url})", received)
    except _Failed as exc:
        return FileResult(f, "failed", f"{f.label}: {exc}; partial download kept as {part.name} to resume",
                          received)
    except (requests.RequestException, OSError) as exc:
        return FileResult(f, "failed", f"{f.label}: {type(exc).__name__}: {exc}; partial download kept as "
                                       f"{part.name} to resume", received)
    got = h.hexdigest()
    if got != expected:
        _remove(part)
        return FileResult(f, "bad_checksum", f"{f.label}: sha256 {got[:12]}… does not match the published "
                                             f".CHECKSUM {expected[:12]}…; nothing kept", received)
    if not zipfile.is_zipfile(part):
        _remove(part)
        return FileResult(f, "failed", f"{f.label}: checksum matches but the file is not a zip archive; "
                                       "nothing kept", received)
    tmp = f.checksum_path.with_name(f.checksum_path.name + ".part")
    tmp.write_text(f"{expected}  {f.dest.name}\n")
    os.replace(part, f.dest)
    os.replace(tmp, f.checksum_path)
    if f.kind == "klines" and len(f.period) == 7:  # a verified month supersedes its daily files
        for daily in f.dest.parent.glob(f"{f.symbol}-{f.dest.name.split('-')[1]}-{f.period}-??.zip"):
            _remove(daily, daily.with_name(daily.name + ".CHECKSUM"))
    return FileResult(f, "downloaded", f"{f.label}: downloaded and verified ({received:,} bytes)", received)


# --------------------------------------------------------------------------- many files


def download_files(plan: Sequence[ArchiveFile], *, concurrency: int = 4, retries: int = 5, backoff: float = 1.0,
                   max_backoff: float = 60.0, timeout: float = 60.0, today: date | None = None,
                   on_event: Callable[[str, ArchiveFile, Any], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> DownloadReport:
    """Fetch ``plan`` (from :func:`plan_downloads`), at most ``concurrency`` files at once.

    Each file: kept without network when already verified on disk; else its ``.CHECKSUM`` then the zip
    (to ``.part``, resumed by Range), kept only when the sha256 matches.  A missing monthly kline file of
    last month (``today``'s, UTC) is replaced by its daily files (the monthly file is published a few days
    after the month closes).  Retries: ``retries`` more attempts on 418/429/5xx/connection errors, waiting
    Retry-After or ``backoff * 2**k`` seconds (at most ``max_backoff``).

    on_event(kind, file, value): "start" (value None), "bytes" (value: bytes just received), "done"
    (value: the FileResult); called from worker threads.  returns DownloadReport; raises ConfigError for
    ``concurrency`` < 1 or ``retries`` < 0.  Never raises for a network or archive problem: each one is a
    FileResult.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency {concurrency}: expected at least 1")
    if retries < 0:
        raise ConfigError(f"--retries {retries}: expected 0 or more")
    emit = on_event or (lambda kind, f, v: None)
    http = _Http(retries, backoff, max_backoff, timeout, sleep)
    lm = _last_month(today or datetime.now(timezone.utc).date())
    yesterday = (today or datetime.now(timezone.utc).date()) - timedelta(days=1)

    def one(f: ArchiveFile) -> FileResult:
        emit("start", f, None)
        res = _fetch(f, http, lambda ff, n: emit("bytes", ff, n))
        if res.status == "missing" and f.kind == "klines" and f.period == f"{lm[0]:04d}-{lm[1]:02d}":
            interval = f.dest.parent.name
            base = f.url.split("/data/")[0]
            dailies = _daily_files(base, f.dest.parent.parent.parent.parent, f.symbol, f.market, interval,
                                   lm[0], lm[1], yesterday)
            res = FileResult(f, "missing", res.message + "; not published yet, using its daily files",
                             fallback=tuple(dailies))
        emit("done", f, res)
        return res

    report = DownloadReport()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="forge-download") as pool:
        first = list(pool.map(one, plan))
        extra = [d for r in first for d in r.fallback]
        second = iter(pool.map(one, extra)) if extra else iter(())
        for r in first:
            report.results.append(r)
            for _ in r.fallback:
                report.results.append(next(second))
    return report
