"""Binance public kline files -> one validated bar frame, with a coverage report.

Files: ``<SYMBOL>-1m-YYYY-MM-DD.csv`` (daily) or ``<SYMBOL>-1m-YYYY-MM.csv``
(monthly), plain or inside a ``.zip`` holding one CSV.  Spot files have no
header; USDⓈ-M futures files start with a header row (``open_time,open,...``).
Twelve columns (``forge.data.schema.KLINE_COLUMNS``).  Timestamps are
milliseconds, except spot files from 2025-01-01 which are microseconds: the
unit is detected per file (open_time >= 1e14 -> µs) and normalised to ms.
Source: https://github.com/binance/binance-public-data

Bad input raises ``DataError`` naming the file and the 1-based line and what
was expected; nothing is silently dropped except exact duplicate rows, which
are counted in the coverage report.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.core.errors import DataError
from forge.data import synthetic
from forge.data.schema import BAR_COLUMNS, BAR_MS, BAR_SCHEMA, KLINE_COLUMNS, SAMPLE_DIR

US_THRESHOLD = 10**14
"""open_time values at or above this are microseconds (1e14 ms would be year 5138)."""


@dataclass(frozen=True)
class FileInfo:
    """One loaded file: rows read, detected time unit ("ms"/"us"), header, first/last open (ms)."""

    path: str
    rows: int
    time_unit: str
    has_header: bool
    first_ms: int
    last_ms: int
    non_monotonic: int = 0


@dataclass(frozen=True)
class Gap:
    """A hole in the bars: last bar before (ms), first bar after (ms), bars missing."""

    start_ms: int
    end_ms: int
    missing_bars: int


@dataclass(frozen=True)
class Coverage:
    """What a load covered: files, span, expected vs present bars, gaps, duplicates."""

    source: str
    files: tuple[FileInfo, ...]
    n_bars: int
    first_ms: int
    last_ms: int
    expected_bars: int
    missing_bars: int
    coverage_ratio: float
    gaps: tuple[Gap, ...]
    duplicates: int
    non_monotonic: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times also as ISO-8601 UTC)."""
        d = asdict(self)
        d["first"] = _iso(self.first_ms)
        d["last"] = _iso(self.last_ms)
        d["files"] = [asdict(f) for f in self.files]
        d["gaps"] = [asdict(g) | {"start": _iso(g.start_ms), "end": _iso(g.end_ms)} for g in self.gaps]
        return d


def _iso(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat() if ms is not None else None


# --------------------------------------------------------------------------- one file


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError("no such file", file=path)
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".csv")]
                if not names:
                    raise DataError("zip archive holds no .csv file", file=path)
                return zf.read(names[0])
        except zipfile.BadZipFile:
            raise DataError("not a valid zip archive", file=path) from None
    return path.read_bytes()


def _locate_fault(text: str, path: Path, has_header: bool) -> DataError:
    """Scan a CSV that failed fast parsing and name the first bad line."""
    lines = text.splitlines()
    for i, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if i == 1 and has_header:
            continue
        if not row or all(not c.strip() for c in row):
            if i == len(lines):
                continue
            return DataError("empty line; expected 12 comma-separated kline fields", file=path, line=i)
        if len(row) != len(KLINE_COLUMNS):
            return DataError(f"{len(row)} fields; expected 12 ({', '.join(KLINE_COLUMNS)}) — truncated line?",
                             file=path, line=i)
        for col, val in zip(KLINE_COLUMNS, row):
            try:
                float(val) if col not in ("open_time", "close_time", "count") else int(val)
            except ValueError:
                kind = "an integer" if col in ("open_time", "close_time", "count") else "a number"
                return DataError(f"field {col!r} is {val!r}; expected {kind}", file=path, line=i)
    return DataError("could not parse as a Binance kline CSV", file=path)


def read_kline_file(path: str | Path) -> tuple[pl.DataFrame, FileInfo]:
    """Read one kline CSV or zip into a bar frame (BAR_SCHEMA, ms, sorted).

    returns (bars, FileInfo).  raises DataError (file, line) for an empty
    file, a truncated line or wrong column count, a non-numeric field, a bar
    with high < low / OHLC outside [low, high] / negative volume.
    """
    path = Path(path)
    raw = _read_bytes(path)
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise DataError("empty file; expected Binance kline rows", file=path)
    first = text.lstrip()[:9].lower()
    has_header = first.startswith("open_time") or first.startswith("open time")
    schema = {c: (pl.Int64 if c in ("open_time", "close_time", "count") else pl.Float64) for c in KLINE_COLUMNS}
    try:
        df = pl.read_csv(io.BytesIO(raw), has_header=False, skip_rows=1 if has_header else 0,
                         new_columns=list(KLINE_COLUMNS), schema_overrides=schema)
        if df.width != len(KLINE_COLUMNS) or df.null_count().sum_horizontal().item() > 0:
            raise ValueError("shape")
    except Exception:  # noqa: BLE001 - polars raises several types; find the exact line
        raise _locate_fault(text, path, has_header) from None
    if df.height == 0:
        raise DataError("no kline rows after the header", file=path)
    df = df.drop("ignore").cast(BAR_SCHEMA)
    unit = "us" if int(df["open_time"][0]) >= US_THRESHOLD else "ms"
    if unit == "us":
        df = df.with_columns(pl.col("open_time") // 1000, pl.col("close_time") // 1000)
    line0 = 2 if has_header else 1
    validate_bars(df, file=path, line_offset=line0)
    t = df["open_time"].to_numpy()
    non_mono = int(np.sum(np.diff(t) <= 0)) if t.size > 1 else 0
    if non_mono:
        df = df.sort("open_time", maintain_order=True)
    info = FileInfo(path=str(path), rows=df.height, time_unit=unit, has_header=has_header,
                    first_ms=int(df["open_time"].min()), last_ms=int(df["open_time"].max()),
                    non_monotonic=non_mono)
    return df, info


def validate_bars(df: pl.DataFrame, *, file: str | Path | None = None, line_offset: int = 0,
                  require_increasing: bool = False) -> None:
    """Check a bar frame: BAR_SCHEMA columns, finite values, high >= max(open, close),
    low <= min(open, close), non-negative volumes (and strictly increasing
    open_time when ``require_increasing``).

    line_offset: file line of row 0 (rows are reported as lines when > 0).
    raises DataError naming the file and line (or row).
    """
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; expected {list(BAR_COLUMNS)}", file=file)

    def fail(mask: np.ndarray, what: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            i = int(idx[0])
            where = i + line_offset if line_offset else None
            row = df.row(i, named=True)
            detail = ", ".join(f"{k}={row[k]}" for k in ("open_time", "open", "high", "low", "close", "volume"))
            suffix = "" if line_offset else f" (row {i})"
            raise DataError(f"{what}{suffix}: {detail}", file=file, line=where)

    o, h, lo, c = (df[k].to_numpy() for k in ("open", "high", "low", "close"))
    vols = [df[k].to_numpy() for k in ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")]
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
    for v in vols:
        finite &= np.isfinite(v)
    fail(~finite, "non-finite price or volume")
    fail(h < lo, "high < low; expected low <= open, close <= high")
    fail((h < np.maximum(o, c)) | (lo > np.minimum(o, c)), "open/close outside [low, high]")
    fail((o <= 0) | (lo <= 0), "non-positive price")
    neg = np.zeros(df.height, dtype=bool)
    for v in vols:
        neg |= v < 0
    fail(neg, "negative volume")
    if require_increasing and df.height > 1:
        fail(np.concatenate([[False], np.diff(df["open_time"].to_numpy()) <= 0]),
             "open_time not strictly increasing")


# --------------------------------------------------------------------------- many files


def _is_funding_file(p: Path) -> bool:
    """A perpetual's funding-rate history (``<SYM>/fundingRate/<SYM>-fundingRate-YYYY-MM.csv|zip``, what
    ``forge data download`` writes beside the klines; read by ``forge.data.funding``), not a kline file."""
    return p.parent.name == "fundingRate" or "-fundingRate-" in p.name


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(x for x in p.rglob("*")
                           if x.suffix in (".csv", ".zip") and x.is_file() and not _is_funding_file(x))
            if not found:
                raise DataError("folder holds no .csv or .zip kline files", file=p)
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise DataError("no such file or folder", file=p)
    return out


def _gaps(t: np.ndarray) -> tuple[Gap, ...]:
    if t.size < 2:
        return ()
    d = np.diff(t)
    idx = np.flatnonzero(d != BAR_MS)
    return tuple(Gap(int(t[i]), int(t[i + 1]), int(d[i] // BAR_MS - 1)) for i in idx)


def coverage_of(bars: pl.DataFrame, *, source: str = "in-memory", files: Sequence[FileInfo] = (),
                duplicates: int = 0) -> Coverage:
    """Coverage report of a bar frame (span, expected bars, gaps)."""
    t = bars["open_time"].to_numpy()
    if t.size == 0:
        raise DataError("no bars", file=source)
    first, last = int(t[0]), int(t[-1])
    expected = (last - first) // BAR_MS + 1
    return Coverage(
        source=source, files=tuple(files), n_bars=int(t.size), first_ms=first, last_ms=last,
        expected_bars=int(expected), missing_bars=int(expected - t.size),
        coverage_ratio=float(t.size / expected), gaps=_gaps(t), duplicates=duplicates,
        non_monotonic=sum(f.non_monotonic for f in files),
    )


def _cache_key(files: list[Path]) -> str:
    h = hashlib.sha256(b"forge-klines-v1")
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$FORGE_CACHE_DIR`` or ``~/.cache/forge``."""
    return Path(os.environ.get("FORGE_CACHE_DIR", Path.home() / ".cache" / "forge"))


def load_klines(paths: Sequence[str | Path], *, cache_dir: Path | None = None,
                use_cache: bool = True) -> tuple[pl.DataFrame, Coverage]:
    """Load kline files and folders (recursive) into one strictly increasing bar frame.

    Exact duplicate rows are dropped and counted; the same open_time with
    different values raises DataError naming both files.  The concatenated
    frame is cached as Parquet under ``cache_dir`` (default
    ``default_cache_dir()``) keyed by every file's path, size and mtime.
    returns (bars, Coverage).  raises DataError.
    """
    files = _expand(paths)
    source = ", ".join(str(p) for p in paths)
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    key = _cache_key(files)
    cached = cache_dir / f"klines-{key[:32]}.parquet"
    meta = cache_dir / f"klines-{key[:32]}.json"
    if use_cache and cached.is_file() and meta.is_file():
        try:
            bars = pl.read_parquet(cached)
            m = json.loads(meta.read_text())
            infos = tuple(FileInfo(**f) for f in m["files"])
            return bars, coverage_of(bars, source=source, files=infos, duplicates=m["duplicates"])
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, never trusted
            pass
    frames, infos = [], []
    for f in files:
        df, info = read_kline_file(f)
        frames.append(df.with_columns(pl.lit(len(infos), dtype=pl.Int32).alias("_file")))
        infos.append(info)
    allb = pl.concat(frames).sort(["open_time", "_file"], maintain_order=True)
    n0 = allb.height
    dedup = allb.unique(subset=list(BAR_COLUMNS), keep="first", maintain_order=True)
    duplicates = n0 - dedup.height
    t = dedup["open_time"].to_numpy()
    clash = np.flatnonzero(np.diff(t) == 0)
    if clash.size:
        i = int(clash[0])
        fa, fb = infos[dedup["_file"][i]].path, infos[dedup["_file"][i + 1]].path
        raise DataError(f"open_time {int(t[i])} ({_iso(int(t[i]))}) appears twice with different values "
                        f"(also in {fa})", file=fb)
    bars = dedup.drop("_file")
    if use_cache:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            bars.write_parquet(tmp, compression="zstd")
            os.replace(tmp, cached)
            meta.write_text(json.dumps({"files": [asdict(i) for i in infos], "duplicates": duplicates}))
        except OSError:
            pass  # a read-only cache location only costs speed
    return bars, coverage_of(bars, source=source, files=infos, duplicates=duplicates)


def read_bar_parquet(path: str | Path) -> pl.DataFrame:
    """Read a Parquet bar frame and validate it (schema, prices, strictly increasing time)."""
    path = Path(path)
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read Parquet ({exc})", file=path) from None
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; expected a bar frame {list(BAR_COLUMNS)}", file=path)
    df = df.select(BAR_COLUMNS).cast(BAR_SCHEMA)
    validate_bars(df, file=path, require_increasing=True)
    return df


def load_sample() -> tuple[pl.DataFrame, Coverage]:
    """The embedded sample: 14 days of real Binance BTCUSDT spot 1m bars (2024-06-17..30)."""
    files = sorted(SAMPLE_DIR.glob("*.parquet"))
    if not files:
        raise DataError("embedded sample missing from the installed package", file=SAMPLE_DIR)
    bars = read_bar_parquet(files[0])
    info = FileInfo(path=str(files[0]), rows=bars.height, time_unit="ms", has_header=True,
                    first_ms=int(bars["open_time"][0]), last_ms=int(bars["open_time"][-1]))
    return bars, coverage_of(bars, source=f"embedded sample {files[0].name}", files=(info,))


def load_bars(paths: Sequence[str | Path] | None) -> tuple[pl.DataFrame, Coverage]:
    """Bars for a run: None/empty -> the embedded sample; one ``synthetic:...`` spec -> that synthetic
    market (:mod:`forge.data.synthetic`); ``.parquet`` paths are bar frames; anything else goes through
    ``load_klines``.  raises DataError."""
    if not paths:
        return load_sample()
    paths = list(paths)
    if any(synthetic.is_spec(p) for p in paths):
        if len(paths) != 1:
            raise DataError("a synthetic market spec cannot be combined with other data paths",
                            file=", ".join(map(str, paths)))
        spec = str(paths[0])
        return (bars := synthetic.bars_from_spec(spec)), coverage_of(bars, source=spec)
    if all(str(p).endswith(".parquet") for p in paths):
        frames = [read_bar_parquet(p) for p in paths]
        bars = pl.concat(frames).sort("open_time")
        validate_bars(bars, file=", ".join(map(str, paths)), require_increasing=True)
        return bars, coverage_of(bars, source=", ".join(map(str, paths)))
    return load_klines(paths)
