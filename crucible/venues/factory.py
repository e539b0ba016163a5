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


def _replay_bars(cfg: CrucibleConfig) -> dict[str, Any]:
    sources = symbol_sources(cfg.replay.data, f"{cfg.source} [replay]")
    return {sym: source_bars(sources, sym, f"{cfg.source} [replay]") for sym in sorted({s.symbol for s in cfg.slots})}


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
                           perpetual=perp, max_volume_share=cfg.execution.max_volume_share,
                           maker_fee_bps=None if cfg.execution.maker_fee_bps < 0 else cfg.execution.maker_fee_bps)
    if venue in ("bybit-testnet", "binance-demo"):
        from crucible.venues.ccxt_venue import CcxtVenue  # optional dependency (ccxt), loaded on use

        exchange = "bybit" if venue == "bybit-testnet" else "binanceusdm"
        return CcxtVenue(exchange, sorted({s.symbol for s in cfg.slots}), sandbox=True, stop_event=stop_event)
    raise ConfigError(f"unknown venue {venue!r}; choose one of {', '.join(VENUES)}")
