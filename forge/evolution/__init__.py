"""``forge evolve``: typed-GP (mu + lambda) evolution of trading strategies.

Modules: ``config`` (the run's TOML tables), ``market`` (bars, features, split -> in-sample segments),
``fitness`` (backtest metrics -> scalar fitness), ``evaluator`` (workers, caches, memo), ``operators``
(selection and variation shared with synthesis and co-evolution), ``surrogate`` (LightGBM screening hook),
``coevolution`` (predator/prey hook), ``checkpoint`` (RunState save/restore), ``loop`` (eaMuPlusLambda),
``run`` (config -> run directory).
"""

from forge.evolution.run import EvolveResult, evolve, resume_run

__all__ = ["EvolveResult", "evolve", "resume_run"]
