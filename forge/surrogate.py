"""Compatibility module: the surrogate lives in :mod:`forge.evolution.surrogate` now."""

from __future__ import annotations

from forge.evolution.config import SurrogateConfig
from forge.evolution.surrogate import PROXY_STATS, Screen, Surrogate, describe, proxy_stats, rank_correlation

SurrogateSection = SurrogateConfig

__all__ = ["PROXY_STATS", "Screen", "Surrogate", "SurrogateSection", "describe", "proxy_stats", "rank_correlation"]
