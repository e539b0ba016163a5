"""A market whose next return is carried by the order book only: klines plus an L2 recording in the
``crucible record`` layout (:mod:`forge.data.l2`), for the power and null tests of ``forge evolve --l2``.

The latent is a persistent book-pressure state p_t = tanh(z_t), z an AR(1) with half-life ``halflife`` bars.
Every ``1/states_per_bar`` of a minute the recorder "sees" a book whose top ``depth`` levels hold, per level,
bid size ``base * (1 + p_t) * u`` and ask size ``base * (1 - p_t) * u`` (u log-normal noise), around a mid
that walks from the bar's open to its close, one tick wide.  The next bar's log return is
``sigma * (strength * p_t + e_{t+1})`` with e standard normal: ``strength`` is the per-bar Sharpe of
holding sign(p) before costs (about ``strength * E|p|``); 0 gives the null market, whose book is just as
alive but says nothing.  No kline column carries p: volume, trade count and taker shares are drawn
independently of it (``forge.data.panels.bars_from_returns``), so only an L2 terminal can find the edge.

The recording covers bars ``[record_from, n_bars)`` and loses ``gap_minutes`` in the middle (a "reconnect"
gap marker, no states inside); the first state carries the recorder's "start" marker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from forge.data.l2 import GAP_SCHEMA, day_of_ms, l2_schema, stream_dir, write_meta
from forge.data.panels import T0_MS, bars_from_returns
from forge.data.schema import BAR_MS

__all__ = ["planted_l2_market", "write_recording"]


def planted_l2_market(n_bars: int = 6 * 1440, *, seed: int = 0, strength: float = 0.3, sigma: float = 1e-3,
                      halflife: float = 20.0, states_per_bar: int = 6, depth: int = 5, record_from: int = 0,
                      gap_minutes: int = 30, price0: float = 100.0, tick: float = 0.01
                      ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, np.ndarray]:
    """(bars (BAR_SCHEMA, ``n_bars`` 1-minute bars from 2024-01-01), book states (:func:`forge.data.l2.l2_schema`
    rows, exchange-time order), gap markers (GAP_SCHEMA), (n_bars,) float64 latent pressure p).

    raises ValueError for n_bars < 2, states_per_bar < 1, depth < 1 or record_from outside the bars."""
    if n_bars < 2 or states_per_bar < 1 or depth < 1 or not 0 <= record_from < n_bars - 1:
        raise ValueError("need n_bars >= 2, states_per_bar >= 1, depth >= 1 and 0 <= record_from < n_bars - 1")
    rng = np.random.default_rng(seed)
    phi = 0.5 ** (1.0 / halflife)
    z = np.empty(n_bars)
    z[0] = rng.normal()
    e = rng.normal(0.0, np.sqrt(1 - phi * phi), n_bars)
    for t in range(1, n_bars):
        z[t] = phi * z[t - 1] + e[t]
    p = np.tanh(z)
    r = sigma * rng.normal(size=n_bars)
    r[1:] += sigma * strength * p[:-1]
    bars = bars_from_returns(r, rng, price0=price0)
    opens, closes = bars["open"].to_numpy(), bars["close"].to_numpy()
    gap_at = record_from + (n_bars - record_from) // 2
    keep_bar = np.ones(n_bars, dtype=bool)
    keep_bar[:record_from] = False
    keep_bar[gap_at:gap_at + gap_minutes] = False
    rows_t = np.flatnonzero(keep_bar)
    s = states_per_bar
    step = BAR_MS // s
    ts = (T0_MS + rows_t[:, None] * BAR_MS + np.arange(s)[None, :] * step + step // 2).ravel()
    bar_of = np.repeat(rows_t, s)
    frac = np.tile((np.arange(s) + 0.5) / s, rows_t.shape[0])
    mid = opens[bar_of] + (closes[bar_of] - opens[bar_of]) * frac
    bid0 = np.floor(mid / tick) * tick
    lv = np.arange(depth)[None, :]
    bid_px = bid0[:, None] - lv * tick
    ask_px = bid0[:, None] + tick + lv * tick
    base = 10.0
    u = rng.lognormal(0.0, 0.3, (2, ts.shape[0], depth))
    bid_sz = base * (1.0 + p[bar_of])[:, None] * u[0] + 0.05
    ask_sz = base * (1.0 - p[bar_of])[:, None] * u[1] + 0.05
    n = ts.shape[0]
    book = pl.DataFrame({"ts_ms": ts.astype(np.int64), "recv_ms": (ts + 7).astype(np.int64),
                         "nonce": np.arange(1, n + 1, dtype=np.int64), "seq": np.full(n, -1, dtype=np.int64),
                         "bid_px": bid_px, "bid_sz": bid_sz, "ask_px": ask_px, "ask_sz": ask_sz},
                        schema=l2_schema(depth))
    first = 0
    resume = int(np.searchsorted(ts, T0_MS + (gap_at + gap_minutes) * BAR_MS))
    gaps = pl.DataFrame([
        {"stream": "l2", "reason": "start", "start_recv_ms": None, "start_ts_ms": None, "start_nonce": None,
         "end_recv_ms": int(ts[first]) + 7, "end_ts_ms": int(ts[first]), "end_nonce": 1},
        {"stream": "l2", "reason": "reconnect", "start_recv_ms": int(ts[resume - 1]) + 7,
         "start_ts_ms": int(ts[resume - 1]), "start_nonce": resume, "end_recv_ms": int(ts[resume]) + 7,
         "end_ts_ms": int(ts[resume]), "end_nonce": resume + 1},
    ], schema=GAP_SCHEMA)
    return bars, book, gaps, p


def write_recording(root: str | Path, venue: str, symbol: str, book: pl.DataFrame, gaps: pl.DataFrame, *,
                    tick: float | None = 0.01, lot: float = 0.001) -> Path:
    """Write book states and gap markers as finished UTC days of a ``crucible record`` directory
    (``root/<venue>/<SYMBOL>/{l2,gaps}/YYYY-MM-DD.parquet`` by receive day, ``meta.json``); returns the symbol's
    folder."""
    for stream, df, key in (("l2", book, "recv_ms"), ("gaps", gaps, "end_recv_ms")):
        days = np.array([day_of_ms(int(x)) for x in df[key].to_numpy()]) if df.height else np.array([])
        folder = stream_dir(root, venue, symbol, stream)
        folder.mkdir(parents=True, exist_ok=True)
        for day in sorted(set(days.tolist())):
            df.filter(pl.Series(days == day)).write_parquet(folder / f"{day}.parquet")
    depth = int(book.schema["bid_px"].size)
    write_meta(root, venue, symbol, {"tick": tick, "lot": lot, "depth": depth, "ccxt_symbol": symbol,
                                     "source": "forge.data.planted_l2 (synthetic)"})
    return Path(root) / venue / symbol.upper()
