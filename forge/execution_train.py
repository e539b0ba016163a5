"""Training the execution policy (IEL) in the limit-order-book simulator: CMA-ES policy search (a Forge app).

The policy is the linear argmax scorer of :mod:`forge.execution.policy_nb` ((N_ACTIONS, N_FEATURES)
weights, 48 numbers: four actions' scores are linear in the state, so the decision regions are convex
polytopes -- a piecewise-linear policy).  Objective: the mean over the training seeds of the episode cost
(implementation shortfall against the decision mid plus fees, bp per unit traded;
:func:`forge.execution.lob_env.run_episode`).  Every candidate of every generation is scored on the same
training seeds -- the same simulated markets and intent streams: common random numbers, so candidates are
compared on paired episodes and the ranking is not seed noise.  Search: CMA-ES (Hansen & Ostermeier 2001;
the ``cma`` package), started at the always-maker-then-cross weights (so the search starts at the better
baseline), step size ``sigma0``, seeded by ``seed`` (one seed => one policy).  Every figure it produces is
simulated microstructure.

:func:`paired_cost_test` compares two executions on the same held-out seeds (per-seed wins, a paired
t-interval and the Wilcoxon signed-rank test).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from forge.core.errors import ConfigError
from forge.execution.lob_env import EnvConfig, evaluate_policy
from forge.execution.policy import ExecutionPolicy
from forge.execution.policy_nb import N_ACTIONS, N_FEATURES, maker_then_cross

__all__ = ["paired_cost_test", "train_policy"]


def train_policy(train_seeds: list[int], env: EnvConfig = EnvConfig(), *, generations: int = 20,
                 popsize: int = 10, sigma0: float = 0.5, seed: int = 0,
                 on_generation: Callable[[dict[str, Any]], None] | None = None,
                 x0: np.ndarray | None = None) -> tuple[ExecutionPolicy, list[dict[str, Any]]]:
    """CMA-ES search of the policy weights on ``train_seeds`` (simulator seeds), started at ``x0``
    ((N_ACTIONS, N_FEATURES) weights; default always-maker-then-cross).

    returns (the best policy seen -- its ``info`` records seeds, env, cost, generations --, one history row
    per generation {"generation", "best_cost_bps", "mean_cost_bps", "evaluations"}).
    raises ConfigError on no seeds, generations < 1 or popsize < 4.
    """
    import cma

    if not train_seeds or generations < 1 or popsize < 4 or not sigma0 > 0:
        raise ConfigError("train_policy needs >= 1 seed, generations >= 1, popsize >= 4, sigma0 > 0")
    x0 = (maker_then_cross() if x0 is None else np.asarray(x0, dtype=np.float64).reshape(N_ACTIONS, N_FEATURES)).ravel()
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


def paired_cost_test(cost_a: list[float] | np.ndarray, cost_b: list[float] | np.ndarray,
                     level: float = 0.95) -> dict[str, Any]:
    """Paired comparison of execution A against B on the same seeds: is A cheaper?

    cost_a, cost_b: (n,) float64 per-seed costs (bp per unit traded) of the two executions on the same n >= 2
    simulator seeds (common random numbers: the same market and intents per seed).  d = a - b.
    returns {"n", "wins" (#seeds with d < 0), "ties", "losses", "mean_diff_bps", "ci_low", "ci_high" (two-sided
    ``level`` Student-t interval of the mean paired difference; Student 1908 / any text on the paired t-test),
    "t_p_less" (one-sided p of H0: E[d] >= 0 against E[d] < 0), "wilcoxon_p_less" (one-sided Wilcoxon
    signed-rank p, Wilcoxon 1945, zero differences dropped (``zero_method="wilcox"``), exact distribution for
    n <= 50 without ties; ``scipy.stats.wilcoxon``), "sign_p_less" (one-sided exact binomial sign test on wins
    vs losses)}.  raises ValueError on mismatched lengths, n < 2 or non-finite costs.
    """
    from scipy import stats

    a, b = np.asarray(cost_a, dtype=np.float64), np.asarray(cost_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two (n,) cost arrays with n >= 2, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("costs must be finite")
    d = a - b
    n = d.size
    m = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(n))
    q = float(stats.t.ppf(0.5 + level / 2, n - 1))
    wins, losses = int(np.sum(d < 0)), int(np.sum(d > 0))
    if se > 0:
        t_p = float(stats.t.cdf(m / se, n - 1))
    else:
        t_p = 0.0 if m < 0 else 1.0
    nz = d[d != 0]
    w_p = float(stats.wilcoxon(nz, alternative="less").pvalue) if nz.size >= 1 else 1.0
    s_p = float(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue) if wins + losses else 1.0
    return {"n": n, "wins": wins, "ties": n - wins - losses, "losses": losses, "mean_diff_bps": m,
            "ci_low": m - q * se, "ci_high": m + q * se, "level": level, "t_p_less": t_p,
            "wilcoxon_p_less": w_p, "sign_p_less": s_p}
