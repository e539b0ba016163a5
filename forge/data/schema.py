"""The bar format every part of the project shares.

A *bar frame* is a polars DataFrame with exactly these columns, one row per
1-minute bar, ``open_time`` strictly increasing.  Times are int64
milliseconds since the Unix epoch, UTC (Binance's microsecond files from
2025-01-01 are normalised to milliseconds on load).  Prices are quote
currency per unit of base (USDT per BTC), volumes are base units except
``quote_volume`` / ``taker_buy_quote_volume`` (quote units).  The archive's
12th column ``ignore`` is dropped.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

BAR_MS = 60_000
"""Length of one 1-minute bar in milliseconds."""

KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
"""The 12 columns of a Binance public kline file, in file order."""

BAR_SCHEMA: dict[str, pl.DataType] = {
    "open_time": pl.Int64(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "close_time": pl.Int64(),
    "quote_volume": pl.Float64(),
    "count": pl.Int64(),
    "taker_buy_volume": pl.Float64(),
    "taker_buy_quote_volume": pl.Float64(),
}
"""Column -> polars dtype of a bar frame (the kline columns minus ``ignore``)."""

BAR_COLUMNS = tuple(BAR_SCHEMA)

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
"""Folder of the embedded sample (14 days of Binance BTCUSDT spot 1m bars, one Parquet bar frame)."""
