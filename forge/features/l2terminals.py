"""Recorded L2 history as GP terminals (``forge evolve --l2 DIR``; issue 31 part 4, issue 30's clock).

A recording of ``crucible record`` (layout :mod:`forge.data.l2`) is turned into the Liquidity Lens' 1-minute
bars (:func:`forge.features.l2lens.load_lens_bars`) and **left-joined on open_time** onto the traded
instrument's bar frame (a single-symbol frame or a panel frame, :mod:`forge.data.panel`) as the columns
:data:`L2_COLUMNS` (``l2_ofi``, ``l2_pressure``, ...).  Nothing is filled: a minute the recording does not
cover, or one a gap marker overlaps, has ``l2_valid`` False and every L2 terminal is NaN there (the VM's
root maps NaN to flat), so a strategy reading the book trades only where a book was recorded.

The joined frame is an ordinary bar frame with extra columns: a frame truncated after bar t holds only the
lens bars up to t, and a lens bar uses only the book states inside it (module docstring of
:mod:`forge.features.l2lens`), so the Gauntlet's truncation test covers these terminals unchanged.

Terminals (:data:`L2_FEATURES`; the book is the recorded venue's, ``k`` levels / ticks as recorded in the
run's ``[l2]`` config):

* ``l2_ofi_z_60`` — z-score (ddof=1) of the bar's order-flow imbalance (Cont, Kukanov & Stoikov 2014, summed
  over the bar's book states) against the last 60 **valid** bars (dimensionless);
* ``l2_pressure`` — time-weighted depth imbalance (D^b - D^a)/(D^b + D^a) over the top k levels, in [-1, 1];
* ``l2_pressure_close`` — the same imbalance of the book at the bar's close, in [-1, 1];
* ``l2_spread_bps`` — time-weighted spread / close mid, basis points;
* ``l2_density_z_60`` — z-score of log(1 + liquidity density) (resting size per tick within k ticks of the
  bests) against the last 60 valid bars; NaN when the recording has no tick size.

Windows restart after every invalid bar and every kline gap (the "bars since gap" of
:func:`l2_bars_since_gap`), as the registry's features restart after kline gaps.

In a universe (``--universe``) the books of other instruments can be joined too (``[l2] symbols``): their
columns and terminals carry the instrument's tag as every panel terminal does (``l2_pressure__BTCUSDT_perp``,
:func:`forge.data.panel.panel_name`), on the traded instrument's minutes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.core.errors import ConfigError, DataError
from forge.data.gaps import bars_since_gap
from forge.data.l2 import list_symbols
from forge.data.panel import Instrument, panel_name, split_panel_name
from forge.data.schema import BAR_MS
from forge.features import features_nb as K

__all__ = [
    "L2_COLUMNS",
    "L2_FEATURES",
    "L2Feature",
    "attach_l2",
    "has_recording",
    "is_l2_feature",
    "join_lens",
    "l2_bars_since_gap",
    "l2_digest",
    "l2_features",
    "reattach_l2",
    "recorded_venue",
]

L2_COLUMNS: tuple[str, ...] = ("l2_ofi", "l2_pressure", "l2_pressure_close", "l2_density", "l2_spread",
                               "l2_mid_close", "l2_n_states", "l2_valid")
"""Columns :func:`attach_l2` joins onto a bar frame (Float64; ``l2_n_states`` Int64; ``l2_valid`` Boolean: the
bar has book states and no gap marker overlaps it)."""

_LENS = {"l2_ofi": "ofi", "l2_pressure": "pressure", "l2_pressure_close": "pressure_close",
         "l2_density": "density", "l2_spread": "spread", "l2_mid_close": "mid_close", "l2_n_states": "n_states"}


@dataclass(frozen=True)
class L2Feature:
    """name; lookback: valid bars before the current one a value needs; description with units; compute:
    (columns {l2 column: (n,) array}, (n,) int64 bars since an L2 or kline gap) -> (n,) float64."""

    name: str
    lookback: int
    description: str
    compute: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


def _z(x: np.ndarray, bsg: np.ndarray, w: int) -> np.ndarray:
    out = np.empty(x.shape[0])
    K.zscore_nb(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(bsg, dtype=np.int64), w, out)
    return out


def _spread_bps(c: dict[str, np.ndarray], _bsg: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c["l2_mid_close"] > 0, c["l2_spread"] / c["l2_mid_close"] * 1e4, np.nan)


def _density_z(c: dict[str, np.ndarray], bsg: np.ndarray) -> np.ndarray:
    d = c["l2_density"]
    if not np.isfinite(d[c["l2_valid"]]).any():
        return np.full(d.shape[0], np.nan)  # no tick size recorded: no density at all
    return _z(np.log1p(np.where(np.isfinite(d), d, 0.0)), bsg, 60)


L2_FEATURES: dict[str, L2Feature] = {f.name: f for f in (
    L2Feature("l2_ofi_z_60", 59, "z-score (ddof=1) of the bar's order-flow imbalance (CKS 2014) against the last 60 "
              "valid bars (dimensionless)", lambda c, bsg: _z(np.where(np.isfinite(c["l2_ofi"]), c["l2_ofi"], 0.0),
                                                               bsg, 60)),
    L2Feature("l2_pressure", 0, "time-weighted top-k depth imbalance (D^b - D^a)/(D^b + D^a) over the bar (-1..1)",
              lambda c, _b: c["l2_pressure"].copy()),
    L2Feature("l2_pressure_close", 0, "top-k depth imbalance of the book at the bar's close (-1..1)",
              lambda c, _b: c["l2_pressure_close"].copy()),
    L2Feature("l2_spread_bps", 0, "time-weighted spread / close mid over the bar (basis points)", _spread_bps),
    L2Feature("l2_density_z_60", 59, "z-score of log(1 + resting size per tick within k ticks of the bests) against "
              "the last 60 valid bars (NaN without a recorded tick size)", _density_z),
)}
"""The L2 terminals (module docstring), by name."""


def is_l2_feature(name: str) -> bool:
    """True for an L2 terminal name: one of :data:`L2_FEATURES`, bare (the traded instrument's book) or with an
    instrument tag (``l2_pressure__BTCUSDT_perp``)."""
    return split_panel_name(name)[0] in L2_FEATURES


def l2_bars_since_gap(open_time: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(n,) int64: valid bars in a row before each bar (0 at the first valid bar after an invalid bar or a kline
    gap; 0 at an invalid bar) -- ``forge.data.gaps.bars_since_gap`` for the L2 stream.
    open_time: (n,) int64 ms; valid: (n,) bool."""
    kline = bars_since_gap(np.ascontiguousarray(open_time, dtype=np.int64))
    v = np.asarray(valid, dtype=bool)
    i = np.arange(v.shape[0], dtype=np.int64)
    starts = v & (np.concatenate(([True], ~v[:-1])) | (kline == 0))  # a run of valid bars begins
    first = np.maximum.accumulate(np.where(starts, i, 0))  # the start of the run each bar is in
    return np.where(v, i - first, 0)


def l2_features(bars: pl.DataFrame, names: Sequence[str]) -> dict[str, tuple[np.ndarray, int]]:
    """The L2 terminals ``names`` on a frame holding :data:`L2_COLUMNS` (:func:`attach_l2`).

    returns {name: ((n,) float64 values, NaN where the bar is not valid or the window not refilled; lookback)}.
    raises ConfigError for an unknown name or a frame without L2 columns."""
    names = tuple(names)
    unknown = [n for n in names if not is_l2_feature(n)]
    if unknown:
        raise ConfigError(f"unknown L2 terminal(s) {unknown}; known: {', '.join(L2_FEATURES)}")
    by_tag: dict[str | None, list[str]] = {}
    for n in names:
        by_tag.setdefault(split_panel_name(n)[1], []).append(n)
    out = {}
    t = bars["open_time"].to_numpy()
    for tag, full in by_tag.items():
        inst = Instrument.from_tag(tag) if tag is not None else None
        missing = [panel_name(c, inst) for c in L2_COLUMNS if panel_name(c, inst) not in bars.columns]
        if missing:
            raise ConfigError(f"features {full} read recorded L2 books, but the bars carry no such L2 columns "
                              f"({missing[0]}, ...): pass the recording (forge evolve --l2 DIR"
                              + (f" --l2-symbols {inst.symbol}" if inst is not None else "")
                              + "; a run's genome rebuilds it from its manifest's l2 record)")
        cols = {c: bars[panel_name(c, inst)].cast(pl.Float64).fill_null(np.nan).to_numpy()
                for c in L2_COLUMNS if c != "l2_valid"}
        valid = bars[panel_name("l2_valid", inst)].fill_null(False).to_numpy().astype(bool)
        cols["l2_valid"] = valid
        bsg = l2_bars_since_gap(t, valid)
        for n in full:
            spec = L2_FEATURES[split_panel_name(n)[0]]
            v = np.asarray(spec.compute(cols, bsg), dtype=np.float64)
            out[n] = (np.where(valid, v, np.nan), spec.lookback)
    return out


def recorded_venue(root: str | Path, symbol: str, venue: str = "") -> str:
    """The venue of ``root`` holding a recording of ``symbol``: ``venue`` when given (checked), else the only
    one.  raises DataError naming the recordings found."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--l2 {root}: no such recording directory")
    venues = _venues(root)
    holding = [v for v in venues if symbol.upper() in list_symbols(root, v)]
    if venue:
        if venue not in holding:
            raise DataError(f"--l2 {root}: no recording of {symbol.upper()} under venue {venue!r} "
                            f"(recordings: {_listing(root, venues)})")
        return venue
    if len(holding) != 1:
        what = "no recording" if not holding else f"recordings on {', '.join(holding)}"
        raise DataError(f"--l2 {root}: {what} of {symbol.upper()} (recordings: {_listing(root, venues)})"
                        + ("; choose one with --l2-venue" if holding else ""))
    return holding[0]


def has_recording(root: str | Path, symbol: str, venue: str = "") -> bool:
    """Does ``root`` hold a recording of ``symbol`` (under ``venue`` when given)?"""
    venues = [venue] if venue else _venues(Path(root))
    return any(symbol.upper() in list_symbols(root, v) for v in venues)


def _venues(root: Path) -> list[str]:
    """The venue folders of a recording directory, sorted ([] when it is not a directory)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _listing(root: Path, venues: list[str]) -> str:
    items = [f"{v}/{s}" for v in venues for s in list_symbols(root, v)]
    return ", ".join(items) if items else "none"


def l2_digest(bars: pl.DataFrame, instrument: Instrument | None = None) -> str:
    """sha256 of a frame's L2 columns of one book (the bytes the terminals are computed from), hex: recorded in
    the manifest so a rebuild on a recording that changed since the run is refused."""
    h = hashlib.sha256()
    for c in (panel_name(x, instrument) for x in L2_COLUMNS):
        a = bars[c].to_numpy()
        h.update(c.encode())
        h.update(np.ascontiguousarray(np.nan_to_num(a.astype(np.float64), nan=-1e300)).tobytes())
    return h.hexdigest()


def join_lens(bars: pl.DataFrame, lens: pl.DataFrame, instrument: Instrument | None = None) -> pl.DataFrame:
    """Left-join Liquidity Lens bars (:func:`forge.features.l2lens.lens_bars` columns: ``open_time`` Int64 ms,
    ``ofi``, ``pressure``, ``pressure_close``, ``density``, ``spread``, ``mid_close`` Float64, ``n_states``,
    ``gap`` Boolean; any order, at most one row per minute) onto ``bars`` as :data:`L2_COLUMNS` (names suffixed
    ``__<TAG>`` for ``instrument``), replacing earlier ones.  ``l2_valid`` = the minute has a lens bar with
    states and no gap marker; every other minute is null / False (nothing is filled).  The one join of research
    (:func:`attach_l2`) and the live runtime (``crucible.books``)."""
    name = lambda c: panel_name(c, instrument)  # noqa: E731
    valid = (pl.col("n_states") > 0) & ~pl.col("gap")
    add = lens.select(["open_time", *(pl.col(v).cast(pl.Float64 if c != "l2_n_states" else pl.Int64).alias(name(c))
                                      for c, v in _LENS.items()), valid.alias(name("l2_valid"))])
    out = bars.drop([name(c) for c in L2_COLUMNS if name(c) in bars.columns]).join(
        add.with_columns(pl.col("open_time").cast(bars.schema["open_time"])), on="open_time", how="left",
        coalesce=True)
    return out.with_columns(pl.col(name("l2_valid")).fill_null(False))


def attach_l2(bars: pl.DataFrame, root: str | Path, symbol: str, *, venue: str = "", k: int = 5,
              instrument: Instrument | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Join the Liquidity Lens bars of ``symbol``'s recording under ``root`` onto ``bars`` (module docstring).

    bars: a bar frame (BAR_SCHEMA or a panel frame), strictly increasing open_time on whole UTC minutes;
    symbol: the exchange symbol of the book; venue: the recording's venue folder ("" = the only one holding the
    symbol); k: levels / ticks of the depth measures; instrument: the universe instrument whose book it is
    (None = the traded one: bare column names; else suffixed ``__<TAG>``).
    returns (the frame with :data:`L2_COLUMNS` added, the manifest's record {"dir", "venue", "symbol", "k",
    "instrument" (tag or None), "tick", "bars", "valid_bars", "valid_ratio", "first_ms", "last_ms",
    "gap_bars", "digest"}).
    raises DataError when the recording is missing, unreadable or holds no valid bar in the bars' range.
    """
    from forge.data.l2 import load_meta
    from forge.features.l2lens import load_lens_bars

    if bars.height == 0:
        raise DataError("--l2: no bars to join the recording onto")
    venue = recorded_venue(root, symbol, venue)
    t = bars["open_time"].to_numpy()
    start, end = int(t[0]), int(t[-1]) + BAR_MS
    lens = load_lens_bars(root, venue, symbol.upper(), start, end, k=int(k))
    out = join_lens(bars, lens, instrument)
    v = out[panel_name("l2_valid", instrument)].to_numpy()
    if not v.any():
        iso = lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
        raise DataError(f"--l2 {root}: the recording of {venue}/{symbol.upper()} has no book state without a gap "
                        f"inside the bars' range {iso(start)} → {iso(end - BAR_MS)} UTC; record that range or "
                        "pass bars it covers")
    idx = np.flatnonzero(v)
    meta = load_meta(root, venue, symbol)
    rec = {"dir": str(Path(root).resolve()), "venue": venue, "symbol": symbol.upper(), "k": int(k),
           "instrument": instrument.tag if instrument is not None else None,
           "tick": meta.get("tick"), "bars": int(out.height), "valid_bars": int(v.sum()),
           "valid_ratio": float(v.mean()), "first_ms": int(t[idx[0]]), "last_ms": int(t[idx[-1]]),
           "gap_bars": int(lens["gap"].sum()), "digest": l2_digest(out, instrument)}
    return out, rec


def reattach_l2(bars: pl.DataFrame, record: dict[str, Any], *, check_digest: bool,
                root: str | Path | None = None) -> pl.DataFrame:
    """Rebuild a run's L2 columns from its manifest record ({"books": [:func:`attach_l2`'s records]}) on ``bars``.

    check_digest: the bars are the run's own (the Gauntlet and ``forge backtest`` on the run's data): refuse
    when a recording changed since the run (its digest differs); root: the recording at another path than the
    record's (moved, or another machine; the digest still applies).  raises DataError naming the recording."""
    for book in record["books"]:
        where = Path(root) if root is not None else Path(book["dir"])
        if not where.is_dir():
            raise DataError(f"the run's L2 recording {where} ({book['venue']}/{book['symbol']}) is not there; pass "
                            "its location (gauntlet validate --l2 DIR, forge backtest --l2 DIR)")
        inst = Instrument.from_tag(book["instrument"]) if book.get("instrument") else None
        bars, rec = attach_l2(bars, where, book["symbol"], venue=book.get("venue", ""),
                              k=int(book.get("k", 5)), instrument=inst)
        if check_digest and book.get("digest") and rec["digest"] != book["digest"]:
            raise DataError(f"the L2 recording {book['dir']} ({book['venue']}/{book['symbol']}) changed since the "
                            f"run: its lens bars over the run's range differ (digest {rec['digest'][:12]} vs the "
                            f"manifest's {book['digest'][:12]}); the run's L2 terminals cannot be rebuilt")
    return bars
