"""Finding a symbol's kline files under the configured data paths."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from forge.core.errors import DataError
from forge.data.loader import Coverage, load_bars, load_klines

__all__ = ["load_symbol_bars", "symbol_files"]


def symbol_files(data: tuple[str, ...], symbol: str) -> list[Path]:
    """Every ``<SYMBOL>-1m-*.csv|zip`` file under the ``data`` paths (a path may also name one file), sorted
    per path.  raises DataError if there is none."""
    files: list[Path] = []
    for root in map(Path, data):
        cands = [root] if root.is_file() else sorted(root.rglob(f"{symbol}-1m-*"))
        files += [p for p in cands if p.name.startswith(f"{symbol}-1m-") and p.suffix in (".csv", ".zip")]
    if not files:
        raise DataError(f"no {symbol}-1m-*.csv/.zip kline files under {', '.join(data)}")
    return files


def load_symbol_bars(data: tuple[str, ...], symbol: str) -> tuple[pl.DataFrame, Coverage]:
    """Bars of one symbol: every ``<SYMBOL>-1m-*.csv|zip`` under the ``data`` paths.

    With no data paths, only the embedded sample's symbol (BTCUSDT) exists.
    raises DataError if no file of the symbol is found.
    """
    if not data:
        if symbol.upper() == "BTCUSDT":
            return load_bars(None)
        raise DataError(f"no data for symbol {symbol}: the embedded sample is BTCUSDT only; pass --data PATH")
    return load_klines(symbol_files(data, symbol))
