"""Funding-rate history of USDⓈ-M perpetuals: the files, and the funding interval they imply.

File format (what ``forge data download`` writes, as Binance's public archive ships it:
``data/futures/um/monthly/fundingRate/<SYM>/<SYM>-fundingRate-YYYY-MM.zip``, one CSV inside):

    <data dir>/futures-um/<SYMBOL>/fundingRate/<SYMBOL>-fundingRate-YYYY-MM.csv   (or .zip holding it)

    calc_time,funding_interval_hours,last_funding_rate
    1706745600000,8,0.00010000

``calc_time``: settlement time, int ms UTC; ``funding_interval_hours``: int; ``last_funding_rate``: fraction
per interval (0.0001 = 0.01 %).  A header row is required (the archive has one).  A file may be plain CSV or
a zip of one CSV.  Source: https://github.com/binance/binance-public-data ("fundingRate").

The interval of a symbol (:func:`funding_interval_hours`) is what the minutes-to-funding terminal
(``forge.features.registry.funding_feature``) and the run manifest use: from the history's latest
``funding_interval_hours`` column when present, else from the spacing of ``calc_time``
(``forge.backtest.costs.funding_interval_ms``), else 8 h (recorded as ``"source": "default"``).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from forge.backtest.costs import FUNDING_PERIOD_MS, funding_interval_ms
from forge.core.errors import DataError

__all__ = ["FUNDING_COLUMNS", "funding_files", "read_funding_file", "load_funding_history",
           "funding_interval_hours"]

FUNDING_COLUMNS = ("calc_time", "funding_interval_hours", "last_funding_rate")
"""Columns of a funding-rate file, in file order."""


def funding_files(data: Sequence[str | Path], symbol: str) -> list[Path]:
    """Every ``<SYMBOL>-fundingRate-*.csv|zip`` under the ``data`` paths (recursive), sorted; [] when none."""
    out: list[Path] = []
    for root in map(Path, data):
        if root.is_file():
            cands = [root]
        elif root.is_dir():
            cands = sorted(root.rglob(f"{symbol}-fundingRate-*"))
        else:
            cands = []
        out += [p for p in cands if p.name.startswith(f"{symbol}-fundingRate-") and p.suffix in (".csv", ".zip")]
    return sorted(set(out))


def read_funding_file(path: str | Path) -> pl.DataFrame:
    """One funding-rate file -> frame (calc_time Int64 ms, funding_interval_hours Int64, last_funding_rate
    Float64), sorted by calc_time.  raises DataError naming the file for a missing column, a bad value or an
    unreadable zip."""
    path = Path(path)
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".csv")]
                if not names:
                    raise DataError("zip archive holds no .csv file", file=path)
                raw = zf.read(names[0])
        else:
            raw = path.read_bytes()
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read funding-rate file ({exc})", file=path) from None
    try:
        df = pl.read_csv(io.BytesIO(raw))
    except Exception as exc:  # noqa: BLE001 - polars raises several types
        raise DataError(f"not a CSV ({exc})", file=path) from None
    missing = [c for c in FUNDING_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; expected header {','.join(FUNDING_COLUMNS)}", file=path)
    try:
        df = df.select(pl.col("calc_time").cast(pl.Int64), pl.col("funding_interval_hours").cast(pl.Int64),
                       pl.col("last_funding_rate").cast(pl.Float64))
    except Exception:  # noqa: BLE001
        raise DataError("non-numeric calc_time / funding_interval_hours / last_funding_rate", file=path) from None
    if df.null_count().sum_horizontal().item():
        raise DataError("empty field in calc_time / funding_interval_hours / last_funding_rate", file=path)
    t = df["calc_time"].to_numpy()
    if t.size and int(t[0]) >= 10**14:  # microsecond files, as the 2025 spot klines
        df = df.with_columns(pl.col("calc_time") // 1000)
    return df.sort("calc_time")


def load_funding_history(data: Sequence[str | Path], symbol: str) -> pl.DataFrame | None:
    """Every funding-rate file of ``symbol`` under ``data``, concatenated, duplicates dropped; None when the
    symbol has none.  raises DataError for a bad file."""
    files = funding_files(data, symbol)
    if not files:
        return None
    return pl.concat([read_funding_file(f) for f in files]).unique(subset=["calc_time"], keep="first").sort("calc_time")


def funding_interval_hours(history: pl.DataFrame | None, until_ms: int | None = None) -> tuple[int, str]:
    """(interval hours, source) of a funding history restricted to settlements at or before ``until_ms``
    (the in-sample end: the terminal is fixed from what was known then).

    source: "funding_interval_hours" (the latest row's column), "calc_time" (the spacing of the settlements,
    ``forge.backtest.costs.funding_interval_ms``, when the column is 0) or "default" (8 h; no history).
    """
    if history is not None and until_ms is not None:
        history = history.filter(pl.col("calc_time") <= until_ms)
    if history is None or history.height == 0:
        return FUNDING_PERIOD_MS // 3_600_000, "default"
    last = int(history["funding_interval_hours"][-1])
    if 1 <= last <= 24:
        return last, "funding_interval_hours"
    ms = funding_interval_ms(np.asarray(history["calc_time"].to_numpy()))
    return ms // 3_600_000, "calc_time"
