"""Finding a symbol's kline files under the configured data paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from forge.core.errors import ConfigError, DataError
from forge.data.loader import Coverage, load_bars, load_klines

__all__ = ["load_symbol_bars", "market_type", "symbol_files", "symbol_of", "symbol_sources", "source_bars"]


def market_type(coverage: Coverage | None) -> str:
    """"spot", "futures" or "unknown": the market of the bars behind ``coverage``.  A kline file is futures
    when a folder of its path names futures (``futures``, ``futures-um``) or, failing a ``spot`` folder, when
    it starts with a header row (Binance's USDⓈ-M files do, spot files do not); the embedded sample is spot;
    synthetic markets and Parquet bar frames are unknown.  Files of both kinds -> "mixed"."""
    if coverage is None:
        return "unknown"
    if coverage.source.startswith("embedded sample"):
        return "spot"
    kinds = set()
    for f in coverage.files:
        parts = [q.lower() for q in Path(f.path).parts[:-1]]
        if not f.path.endswith((".csv", ".zip")):
            kinds.add("unknown")
        elif any(q.startswith("futures") for q in parts):
            kinds.add("futures")
        elif "spot" in parts:
            kinds.add("spot")
        else:
            kinds.add("futures" if f.has_header else "spot")
    kinds.discard("unknown")
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "unknown")


def symbol_of(coverage: Coverage | None) -> str:
    """The symbol every loaded kline file names in Binance's file naming (``<SYMBOL>-1m-YYYY-MM[-DD].csv|zip``),
    "" when the files name none or several (the embedded sample, synthetic or renamed files)."""
    if coverage is None:
        return ""
    names = {Path(f.path).name.split("-1m-")[0] for f in coverage.files if "-1m-" in Path(f.path).name}
    return names.pop() if len(names) == 1 and len(coverage.files) > 0 and all(
        "-1m-" in Path(f.path).name for f in coverage.files) else ""


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


def symbol_sources(items: Sequence[str], where: str) -> dict[str, list[str]]:
    """Parse ``["SYMBOL=path-or-spec", ...]`` (the Crucible's ``[replay] data``, ``[serve] data``) into
    {upper-case symbol: [paths, in order]}.  raises ConfigError naming ``where`` and the bad item."""
    out: dict[str, list[str]] = {}
    for item in items:
        sym, sep, path = str(item).partition("=")
        if not sep or not sym.strip() or not path.strip():
            raise ConfigError(f"{where}: data item {item!r} must look like 'SYMBOL=path'")
        out.setdefault(sym.strip().upper(), []).append(path.strip())
    return out


def source_bars(sources: dict[str, list[str]], symbol: str, where: str) -> pl.DataFrame:
    """Bars of ``symbol`` from :func:`symbol_sources` output; BTCUSDT without a source is the embedded sample.
    raises ConfigError when the symbol has no source (naming ``where``), DataError for bad data."""
    paths = sources.get(symbol.upper())
    if paths is None and symbol.upper() != "BTCUSDT":
        raise ConfigError(f"{where}: no data for {symbol} (add '{symbol}=path' to the data list; only BTCUSDT is "
                          "embedded)")
    return load_bars(paths)[0]
