"""Compatibility module: the run configuration lives in :mod:`forge.evolution.config` now.

The ``*Section`` names are the old names of the ``*Config`` classes.
"""

from __future__ import annotations

from forge.evolution.config import (
    SECTIONS, CausalConfig, CoevolutionConfig, EvolveConfig, FitnessConfig, RunConfig, SurrogateConfig,
    config_from_dict, config_to_dict, load_run_config, with_overrides,
)

EvolveSection = EvolveConfig
FitnessSection = FitnessConfig
CausalSection = CausalConfig
SurrogateSection = SurrogateConfig
CoevolutionSection = CoevolutionConfig

__all__ = ["SECTIONS", "CausalSection", "CoevolutionSection", "EvolveSection", "FitnessSection", "RunConfig",
           "SurrogateSection", "config_from_dict", "config_to_dict", "load_run_config", "with_overrides"]
