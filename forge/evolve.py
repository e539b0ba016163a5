"""Compatibility module: ``forge evolve`` lives in :mod:`forge.evolution` now (see the README's "Where things
live").  The names other packages and scripts import from here keep working.
"""

from __future__ import annotations

from forge.data.discovery import load_symbol_bars
from forge.data.split import Split, holdout_split
from forge.evolution.evaluator import Evaluator, SharedSegments
from forge.evolution.fitness import backtest_fitness
from forge.evolution.market import Market, MarketArrays
from forge.evolution.run import EvolveResult, evolve, make_run_id, resume_run

walk_forward_split = holdout_split
"""Old name of :func:`forge.data.split.holdout_split` (a single holdout split, not walk-forward folds)."""

__all__ = ["Evaluator", "EvolveResult", "Market", "MarketArrays", "SharedSegments", "Split", "backtest_fitness",
           "evolve", "holdout_split", "load_symbol_bars", "make_run_id", "resume_run", "walk_forward_split"]
