"""Causal link position -> next return, with PCMCI supplying the market's confounders.

Step 1 (once per run): tigramite PCMCI (Runge et al. 2019, "Detecting and quantifying causal associations
in large nonlinear time series datasets", Science Advances 5(11)) with the partial correlation studentised
robustly to heteroskedasticity (``pcmci_cond_ind_test = "parcorr_hc"``, ``forge.causal.hc_partial_corr_pvalue``:
Dalla, Giraitis & Phillips 2022; ParCorr's analytic p over-rejects on volatility-clustered returns), ``tau_min = 1``, links
restricted to those into the vol-standardised return from the market's own state (volatility, 1-hour trend,
the return's own lags): the links with MCI p <= ``pcmci_pc_alpha`` are the market's parents of the return.

Step 2 (per candidate): the return realised in bar t regressed on the position held during bar t (decided
at close t-1) and those parents at their lags, with Newey–West HAC standard errors (Newey & West 1987);
one-sided p of a positive coefficient. The position's own lags are deliberately not conditioned on: a
persistent position (the only kind that survives fees) is mostly explained by its own past, so MCI's
conditioning would leave only its rare switches to carry information; the position is a function of past
data, not a confounder of the return, and HAC errors take care of its persistence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forge.causal import pcmci_links_into
from forge.features import compute_features
from gauntlet.stages import StageResult
from gauntlet.stats import hac_ols

NAME = "pcmci"
MARKET_STATE = ("vol_60", "mtf_ret_1h")


def market_parents(ret: np.ndarray, market: np.ndarray, names: tuple[str, ...], tau_max: int, pc_alpha: float,
                   seed: int = 0, cond_ind_test: str = "parcorr_hc") -> dict[str, Any]:
    """PCMCI links into the return from the market state and the return's own lags.

    ret: (T,) float64 vol-standardised return realised in bar t (NaN across gaps); market: (k, T) state
    variables known at each bar's close; cond_ind_test: the CI test (``forge.causal.COND_IND_TESTS``; default the
    heteroskedasticity-robust partial correlation, ``forge.causal.hc_partial_corr_pvalue``: ParCorr's analytic p
    found false parents on null markets in 11-19 % of draws per lag at 5 %, benchmarks/RESULTS.md).
    returns: {"parents": [(name, lag)], "links": [...every tested link]}.
    """
    data = np.column_stack([*market, ret])
    cols = [*names, "return"]
    links = pcmci_links_into(data, cols, len(cols) - 1, tau_max=tau_max, pc_alpha=pc_alpha,
                             target_autoregressive=True, seed=seed, cond_ind_test=cond_ind_test)
    parents = [(t.source, t.lag) for t in links if t.p <= pc_alpha]
    return {"parents": parents, "links": [{"source": t.source, "lag": t.lag, "partial_corr": t.value, "p": t.p}
                                          for t in links]}


def position_link(position: np.ndarray, ret: np.ndarray, series: dict[str, np.ndarray],
                  parents: list[tuple[str, int]]) -> dict[str, Any]:
    """HAC t-test of ret[t] ~ 1 + position[t-1] + parents.

    position: (T,) target decided at each bar's close; ret: (T,) return realised in bar t; series: name ->
    (T,) values of each parent variable ("return" included); parents: (name, lag >= 1) pairs.
    returns: {"coef", "se", "t", "p", "lags", "n_obs", "controls"}. raises ValueError (constant position,
    too few rows).
    """
    n = ret.shape[0]
    y = ret[1:]
    x = position[:-1]
    ctrl = np.empty((n - 1, len(parents)))
    for j, (name, lag) in enumerate(parents):
        col = np.full(n - 1, np.nan)
        src = series[name]
        # row i of y is bar i + 1; the parent at lag L is bar i + 1 - L
        col[lag - 1:] = src[: n - lag]
        ctrl[:, j] = col
    r = hac_ols(y, x, ctrl if parents else None)
    return {"coef": r.coef, "se": r.se, "t": r.t, "p": r.p_one_sided, "lags": r.lags, "n_obs": r.n_obs,
            "controls": r.controls}


def market_graph(ctx, cfg, shared) -> dict[str, Any]:
    """The run's PCMCI market graph, computed once per run on the last ``pcmci_max_samples`` evaluation rows
    and kept in ``shared["pcmci_market"]`` (the dowhy stage reads the same graph): {"ret": (T,) return_z on
    those rows, "series": name -> (T,) parent variables there, "parents": [(name, lag)], "links": [...],
    "rows": (start, stop)}."""
    if "pcmci_market" not in shared:
        a, b = ctx.evaluation
        a = max(a, b - cfg.pcmci_max_samples)
        ret = ctx.return_z[a:b]
        state = compute_features(ctx.bars, MARKET_STATE).values[:, a:b]
        graph = market_parents(ret, state, MARKET_STATE, cfg.pcmci_tau_max, cfg.pcmci_pc_alpha, cfg.seed,
                               cond_ind_test=cfg.pcmci_cond_ind_test)
        shared["pcmci_market"] = {"ret": ret, "series": {**dict(zip(MARKET_STATE, state)), "return": ret},
                                  "rows": (a, b), **graph}
    return shared["pcmci_market"]


def run(ctx, cand, cfg, shared) -> StageResult:
    a, b = ctx.evaluation
    a = max(a, b - cfg.pcmci_max_samples)
    pos = np.asarray(cand.position[a:b], dtype=np.float64)
    if not np.nanstd(pos) > 0:
        return StageResult(NAME, "HAC p-value", None, None, cfg.alpha, False,
                           "position never varies: no link to test", {})
    mk = market_graph(ctx, cfg, shared)
    try:
        res = position_link(pos, mk["ret"], mk["series"], mk["parents"])
    except ValueError as exc:
        return StageResult(NAME, "HAC p-value", None, None, cfg.alpha, False, f"not testable: {exc}", {})
    passed = res["p"] <= cfg.alpha and res["coef"] > 0
    reason = (f"return(t) ~ position(t-1): coef {res['coef']:+.3e}, HAC t {res['t']:+.2f}, p {res['p']:.2e} "
              f"{'<=' if res['p'] <= cfg.alpha else '>'} {cfg.alpha}, given {len(mk['parents'])} PCMCI "
              f"market parent{'s' if len(mk['parents']) != 1 else ''}")
    return StageResult(NAME, "HAC p-value", res["p"], res["p"], cfg.alpha, passed, reason, {
        **res, "market_parents": [list(x) for x in mk["parents"]], "market_links": mk["links"],
        "n_samples": b - a, "market_state": list(MARKET_STATE), "graph_test": cfg.pcmci_cond_ind_test})
