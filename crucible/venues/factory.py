"""Build a venue from the Crucible configuration: the replay venue over the configured bars, or a ccxt
exchange testnet (``crucible live --venue``)."""

from __future__ import annotations

import threading
from typing import Any

from crucible.config import CrucibleConfig
from crucible.venues.base import Venue
from crucible.venues.replay import ReplayVenue
from forge.core.errors import ConfigError
from forge.data.discovery import source_bars, symbol_sources

__all__ = ["make_venue", "VENUES"]

VENUES = ("replay", "bybit-testnet", "binance-demo")


def _panel_feeds(cfg: CrucibleConfig) -> dict[str, str]:
    """{venue symbol: market} of the instruments the slots' genomes read besides the symbols they trade."""
    from crucible.builtin import resolve_genome
    from crucible.panel import panel_feeds

    traded = {s.symbol for s in cfg.slots}
    feeds = panel_feeds({s.id: (s.symbol, resolve_genome(s.genome)) for s in cfg.slots})
    return {sym: m for sym, m in feeds.items() if sym not in traded}


def _replay_bars(cfg: CrucibleConfig) -> dict[str, Any]:
    """Bars of every traded symbol and of every other instrument a panel slot reads (``crucible.panel``: loaded
    by ``forge.data.panel.instrument_files`` from the symbol's ``[replay] data`` paths, which must hold that
    instrument's market)."""
    from forge.data.loader import load_klines
    from forge.data.panel import instrument_files

    where = f"{cfg.source} [replay]"
    sources = symbol_sources(cfg.replay.data, where)
    out = {sym: source_bars(sources, sym, where) for sym in sorted({s.symbol for s in cfg.slots})}
    for sym, market in sorted(_panel_feeds(cfg).items()):
        paths = sources.get(sym)
        if paths is None:
            raise ConfigError(f"{where}: a panel slot reads {sym}_{market} but there is no data for {sym} (add "
                              f"'{sym}=path' to the data list)")
        files = [p for p in paths if not p.endswith(".parquet")]
        if files:
            _inst, found = instrument_files(files, sym, market)
            out[sym] = load_klines(found)[0]
        else:
            out[sym] = source_bars(sources, sym, where)
    return out


def make_venue(cfg: CrucibleConfig, venue: str = "replay", *, speed: float | None = None,
               max_bars: int | None = None, stop_event: threading.Event | None = None) -> Venue:
    """Build the venue named ``venue`` (one of ``VENUES``) from the config.

    replay: the configured bars (default: embedded BTCUSDT sample) from ``replay.warmup_bars``;
    speed overrides ``replay.speed``; max_bars limits the replay.  bybit-testnet / binance-demo:
    :class:`crucible.venues.ccxt_venue.CcxtVenue` with keys from environment variables.
    raises ConfigError for an unknown venue or missing data.
    """
    if venue == "replay":
        bars = _replay_bars(cfg)
        n = min(df.height for df in bars.values())
        start = min(cfg.replay.warmup_bars, n - 1)
        mb = max_bars if max_bars is not None else (cfg.replay.max_bars or None)
        sp = cfg.replay.speed if speed is None else speed
        presets = cfg.presets(exchange=False)
        perp = sorted({s.symbol for s in cfg.slots if presets[s.id] == "futures"})
        return ReplayVenue(bars, start=start, end=None if mb is None else start + mb, balance=cfg.replay.balance,
                           taker_fee_bps=cfg.costs.taker_fee_bps, slippage_bps=cfg.costs.slippage_bps,
                           speed=sp or None, stop_event=stop_event, funding_rate_8h=cfg.costs.funding_rate_8h,
                           funding_interval_h=cfg.costs.funding_interval_h,
                           perpetual=perp, max_volume_share=cfg.execution.max_volume_share,
                           maker_fee_bps=None if cfg.execution.maker_fee_bps < 0 else cfg.execution.maker_fee_bps)
    if venue in ("bybit-testnet", "binance-demo"):
        from crucible.venues.ccxt_venue import CcxtVenue  # optional dependency (ccxt), loaded on use

        exchange = "bybit" if venue == "bybit-testnet" else "binanceusdm"
        aux = _panel_feeds(cfg)
        spot = sorted(sym for sym, m in aux.items() if m == "spot")
        if spot and exchange != "bybit":
            raise ConfigError(f"{cfg.source}: panel slots read {[s + '_spot' for s in spot]}; the {venue} venue feeds "
                              "linear perpetuals only (spot panel feeds: bybit-testnet)")
        return CcxtVenue(exchange, sorted({s.symbol for s in cfg.slots}), sandbox=True, stop_event=stop_event,
                         aux_symbols=sorted(s for s, m in aux.items() if m == "perp"), aux_spot=spot)
    raise ConfigError(f"unknown venue {venue!r}; choose one of {', '.join(VENUES)}")
