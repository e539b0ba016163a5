"""A research universe: several instruments on one UTC-minute clock (issue 30 part 1).

An *instrument* is a symbol on a market: ``spot`` or ``perp`` (a USDⓈ-M perpetual, Binance's
``futures-um`` files).  Its *tag* is ``<SYMBOL>_<market>`` (``BTCUSDT_spot``, ``FILUSDT_perp``).

Terminal naming (kept in genomes as ``feature:<name>``): a feature of the **traded** instrument keeps its
registry name (``ret_5``), so every single-symbol genome is a panel genome that reads only the traded
instrument; a feature of another instrument is ``<feature>__<TAG>`` (``ret_5__BTCUSDT_spot``), a Python
identifier (the GP compiles trees to Python source).  :func:`panel_name` / :func:`split_panel_name`.

A *panel frame* is the traded instrument's bar frame (``forge.data.schema``, its own rows: the clock is its
UTC minutes, so trading stops on its own gaps and nothing exists before its first bar) with, per other
instrument, the bar columns suffixed ``__<TAG>`` (``close__BTCUSDT_spot``) left-joined on ``open_time``:
null where that instrument has no bar at the minute (its gaps, before its listing, after its delisting).
Nothing is filled or invented.  Features of an instrument are computed on the rows where it has a bar
(``forge.strategy.strategy_features``): its own gaps -- and the traded instrument's, which remove rows --
restart its windows, and the feature is NaN at every row where it has no bar (the VM's root maps NaN to
flat).  A panel frame truncated after bar t is the panel of the data up to t, so the truncation test of
the Gauntlet covers panel terminals unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.core.errors import ConfigError, DataError
from forge.data.loader import Coverage, load_klines
from forge.data.schema import BAR_COLUMNS, BAR_MS

__all__ = ["Instrument", "load_run_panel", "genome_tags", "MARKETS", "PANEL_SEP", "build_panel", "instrument_files", "load_panel",
           "panel_coverage", "panel_name", "panel_tags", "parse_instrument", "split_panel_name",
           "instrument_bars"]

MARKETS = {"spot": "spot", "perp": "perp", "futures": "perp", "futures-um": "perp", "um": "perp"}
"""Accepted market names in an instrument spec -> canonical market ("spot" | "perp")."""

PANEL_SEP = "__"
"""Separator between a registry feature name and an instrument tag in a terminal name."""

_TAG = re.compile(r"^[A-Z0-9]+_(spot|perp)$")


@dataclass(frozen=True, order=True)
class Instrument:
    """symbol: upper-case exchange symbol (``BTCUSDT``); market: "spot" or "perp"."""

    symbol: str
    market: str

    @property
    def tag(self) -> str:
        """``<SYMBOL>_<market>``: the suffix of this instrument's terminals and panel columns."""
        return f"{self.symbol}_{self.market}"

    @property
    def cost_market(self) -> str:
        """The cost model's market type (``forge.data.discovery.market_type``): "spot" or "futures"."""
        return "futures" if self.market == "perp" else "spot"

    @classmethod
    def from_tag(cls, tag: str) -> Instrument:
        if not _TAG.match(tag):
            raise ConfigError(f"{tag!r} is not an instrument tag (SYMBOL_spot or SYMBOL_perp)")
        sym, _, mkt = tag.rpartition("_")
        return cls(sym, mkt)


def parse_instrument(spec: str) -> tuple[str, str | None]:
    """``"BTCUSDT"`` -> ("BTCUSDT", None) (market from the files); ``"FILUSDT:perp"`` / ``"FILUSDT:futures-um"``
    / ``"BTCUSDT:spot"`` -> (symbol, canonical market).  raises ConfigError for an unknown market or symbol."""
    sym, _, mkt = str(spec).strip().partition(":")
    sym = sym.strip().upper()
    if not re.fullmatch(r"[A-Z0-9]+", sym):
        raise ConfigError(f"instrument {spec!r}: symbol must be letters and digits (e.g. BTCUSDT or FILUSDT:perp)")
    if not mkt:
        return sym, None
    if mkt.lower() not in MARKETS:
        raise ConfigError(f"instrument {spec!r}: market must be one of spot, perp (futures-um); got {mkt!r}")
    return sym, MARKETS[mkt.lower()]


def panel_name(feature: str, instrument: Instrument | None) -> str:
    """Terminal name of ``feature`` of ``instrument`` (None = the traded instrument: the bare name)."""
    return feature if instrument is None else f"{feature}{PANEL_SEP}{instrument.tag}"


def split_panel_name(name: str) -> tuple[str, str | None]:
    """(registry feature name, instrument tag or None for the traded instrument) of a terminal name."""
    base, sep, tag = name.rpartition(PANEL_SEP)
    if sep and _TAG.match(tag):
        return base, tag
    return name, None


def panel_tags(frame_columns: Sequence[str]) -> tuple[str, ...]:
    """Instrument tags with columns in a panel frame (besides the traded one), in column order."""
    out: list[str] = []
    for c in frame_columns:
        base, tag = split_panel_name(c)
        if tag is not None and base == "close" and tag not in out:
            out.append(tag)
    return tuple(out)


def _file_market(path: Path) -> str:
    parts = [q.lower() for q in path.parts[:-1]]
    if any(q.startswith("futures") for q in parts) or "um" in parts:
        return "perp"
    if "spot" in parts:
        return "spot"
    try:  # Binance's USDⓈ-M kline files start with a header row, spot files do not
        head = path.read_bytes()[:64] if path.suffix == ".csv" else b""
    except OSError:
        head = b""
    return "perp" if head.lstrip()[:9].lower().startswith(b"open_time") else "spot"


def instrument_files(data: Sequence[str | Path], symbol: str, market: str | None) -> tuple[Instrument, list[Path]]:
    """The instrument ``symbol`` (on ``market``, or the one market its files are in) and its
    ``<SYMBOL>-1m-*.csv|zip`` files under ``data`` (a folder named ``futures*`` / ``um`` or a header row =
    perp, a ``spot`` folder or no header = spot).  raises DataError when there is no file (naming the paths),
    ConfigError when the symbol has files in both markets and no market is given."""
    if not data:
        raise DataError(f"no data paths for instrument {symbol}: pass --data DIR (e.g. the folder holding spot/ "
                        "and futures-um/)")
    files: list[Path] = []
    for root in map(Path, data):
        cands = [root] if root.is_file() else sorted(root.rglob(f"{symbol}-1m-*"))
        files += [p for p in cands if p.name.startswith(f"{symbol}-1m-") and p.suffix in (".csv", ".zip")]
    by_market: dict[str, list[Path]] = {}
    for f in files:
        by_market.setdefault(_file_market(f), []).append(f)
    if market is None:
        if len(by_market) > 1:
            raise ConfigError(f"{symbol} has spot and perp files under {', '.join(map(str, data))}; name the market "
                              f"({symbol}:spot or {symbol}:perp)")
        market = next(iter(by_market), None)
    if market is None or not by_market.get(market):
        where = f" {market}" if market else ""
        raise DataError(f"no{where} {symbol}-1m-*.csv/.zip kline files under {', '.join(map(str, data))}")
    return Instrument(symbol, market), by_market[market]


def instrument_bars(data: Sequence[str | Path], spec: str) -> tuple[Instrument, pl.DataFrame, Coverage]:
    """Load one instrument's bars (``load_klines``) from its spec ``SYMBOL[:market]``."""
    sym, mkt = parse_instrument(spec)
    inst, files = instrument_files(data, sym, mkt)
    bars, cov = load_klines(files)
    return inst, bars, cov


def build_panel(traded: pl.DataFrame, others: dict[Instrument, pl.DataFrame]) -> pl.DataFrame:
    """The panel frame (module docstring): ``traded``'s rows and columns, plus every other instrument's bar
    columns suffixed ``__<TAG>``, joined on open_time (null where it has no bar).

    traded / others: bar frames (BAR_SCHEMA, strictly increasing open_time on whole UTC minutes).
    returns: a frame of traded.height rows.  raises DataError for an open_time off the minute grid.
    """
    out = traded.select(BAR_COLUMNS)
    for frame, what in ((traded, "traded instrument"), *((f, i.tag) for i, f in others.items())):
        t = frame["open_time"].to_numpy()
        if t.size and np.any(t % BAR_MS):
            raise DataError(f"{what}: open_time not on whole UTC minutes (first at row "
                            f"{int(np.flatnonzero(t % BAR_MS)[0])}); cannot align bars on one clock")
    for inst, frame in others.items():
        cols = [c for c in BAR_COLUMNS if c != "open_time"]
        right = frame.select(["open_time", *cols]).rename({c: panel_name(c, inst) for c in cols})
        out = out.join(right, on="open_time", how="left", coalesce=True)
    return out.sort("open_time")


def panel_coverage(panel: pl.DataFrame, coverages: dict[str, Coverage]) -> dict[str, Any]:
    """Per instrument tag: its own files' coverage (``Coverage.to_dict``) and its share of the traded
    instrument's minutes with a bar (``on_clock``: bars, ratio, first/last aligned open ms: the listing
    date as seen by the panel)."""
    out: dict[str, Any] = {}
    n = panel.height
    t = panel["open_time"].to_numpy()
    for tag, cov in coverages.items():
        col = "close" if tag == next(iter(coverages)) else panel_name("close", Instrument.from_tag(tag))
        present = panel[col].is_not_null().to_numpy() if col in panel.columns else np.zeros(n, bool)
        idx = np.flatnonzero(present)
        out[tag] = {"coverage": cov.to_dict() if cov is not None else None,
                    "on_clock": {"bars": int(present.sum()), "ratio": float(present.mean()) if n else 0.0,
                                 "first_ms": int(t[idx[0]]) if idx.size else None,
                                 "last_ms": int(t[idx[-1]]) if idx.size else None}}
    return out


def load_panel(data: Sequence[str | Path], universe: Sequence[str], trade: str
               ) -> tuple[Instrument, pl.DataFrame, dict[str, Coverage], dict[str, Instrument]]:
    """Load a universe and align it on ``trade``'s clock.

    universe: instrument specs (``SYMBOL[:market]``); trade: one of them (or an extra spec, added).
    returns (traded Instrument, panel frame, {tag: Coverage} traded first, {tag: Instrument}).
    raises ConfigError / DataError.
    """
    loaded, seen = [], set()
    for spec in dict.fromkeys([trade, *universe]):  # the traded instrument first; one entry per tag
        item = instrument_bars(data, spec)
        if item[0].tag not in seen:
            seen.add(item[0].tag)
            loaded.append(item)
    (tinst, tbars, tcov), rest = loaded[0], loaded[1:]
    panel = build_panel(tbars, {inst: b for inst, b, _ in rest})
    covs = {tinst.tag: tcov, **{inst.tag: cov for inst, _, cov in rest}}
    return tinst, panel, covs, {inst.tag: inst for inst, _, _ in loaded}


def genome_tags(feature_names: Sequence[str]) -> tuple[str, ...]:
    """Instrument tags a genome's terminals read (besides the traded instrument), sorted."""
    return tuple(sorted({t for t in (split_panel_name(n)[1] for n in feature_names) if t is not None}))


def load_run_panel(data: Sequence[str | Path], record: dict[str, Any]
                   ) -> tuple[pl.DataFrame, Coverage, dict[str, Any]]:
    """Rebuild a panel run's panel from its record (a manifest's ``universe``, or a genome's
    ``meta.universe``: {"trade": tag, "instruments": tags or {tag: ...}}) on the kline files under ``data``.

    returns (panel frame, traded instrument's Coverage, per-instrument coverage as in the manifest).
    raises ConfigError for a record without a traded instrument, DataError for missing files.
    """
    trade = record.get("trade")
    if not trade:
        raise ConfigError("the run's universe record names no traded instrument")
    tinst = Instrument.from_tag(trade)
    tags = [t for t in (record.get("instruments") or ()) if t != trade]
    specs = [f"{i.symbol}:{i.market}" for i in map(Instrument.from_tag, tags)]
    _t, panel, covs, _insts = load_panel(data, specs, f"{tinst.symbol}:{tinst.market}")
    return panel, covs[trade], panel_coverage(panel, covs)
