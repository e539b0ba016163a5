"""Training the execution policy (IEL) in the limit-order-book simulator: CMA-ES policy search (a Forge app).

The policy is the linear argmax scorer of :mod:`forge.execution.policy_nb` ((N_ACTIONS, N_FEATURES)
weights, 32 numbers).  Objective: the mean over the training seeds of the episode cost
(implementation shortfall against the decision mid plus fees, bp per unit traded;
:func:`forge.execution.lob_env.run_episode`).  Search: CMA-ES (Hansen & Ostermeier 2001; the ``cma``
package), started at the always-maker-then-cross weights (so the search starts at the better baseline),
step size ``sigma0``, seeded by ``seed`` (one seed => one policy).  Every figure it produces is simulated
microstructure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from forge.core.errors import ConfigError
from forge.execution.lob_env import EnvConfig, evaluate_policy
from forge.execution.policy import ExecutionPolicy
from forge.execution.policy_nb import N_ACTIONS, N_FEATURES, maker_then_cross

__all__ = ["train_policy"]


def train_policy(train_seeds: list[int], env: EnvConfig = EnvConfig(), *, generations: int = 20,
                 popsize: int = 10, sigma0: float = 0.5, seed: int = 0,
                 on_generation: Callable[[dict[str, Any]], None] | None = None) -> tuple[ExecutionPolicy, list[dict[str, Any]]]:
    """CMA-ES search of the policy weights on ``train_seeds`` (simulator seeds).

    returns (the best policy seen -- its ``info`` records seeds, env, cost, generations --, one history row
    per generation {"generation", "best_cost_bps", "mean_cost_bps", "evaluations"}).
    raises ConfigError on no seeds, generations < 1 or popsize < 4.
    """
    import cma

    if not train_seeds or generations < 1 or popsize < 4 or not sigma0 > 0:
        raise ConfigError("train_policy needs >= 1 seed, generations >= 1, popsize >= 4, sigma0 > 0")
    x0 = maker_then_cross().ravel()
    es = cma.CMAEvolutionStrategy(x0, sigma0, {"seed": seed + 1, "popsize": popsize, "maxiter": generations,
                                              "verbose": -9})

    def cost(x: np.ndarray) -> float:
        return float(evaluate_policy(np.asarray(x).reshape(N_ACTIONS, N_FEATURES), train_seeds, env)["cost_bps"])

    best_x, best_f = x0.copy(), cost(x0)
    hist: list[dict[str, Any]] = []
    n_eval = 1
    for g in range(generations):
        xs = es.ask()
        fs = [cost(x) for x in xs]
        n_eval += len(xs)
        es.tell(xs, fs)
        i = int(np.argmin(fs))
        if fs[i] < best_f:
            best_f, best_x = fs[i], np.array(xs[i])
        row = {"generation": g + 1, "best_cost_bps": best_f, "mean_cost_bps": float(np.mean(fs)), "evaluations": n_eval}
        hist.append(row)
        if on_generation is not None:
            on_generation(row)
    info = {"trainer": "cma-es", "train_seeds": list(train_seeds), "generations": generations, "popsize": popsize,
            "sigma0": sigma0, "seed": seed, "train_cost_bps": best_f, "env": dict(env.__dict__),
            "label": "simulated microstructure"}
    return ExecutionPolicy(best_x.reshape(N_ACTIONS, N_FEATURES), info), hist
