"""PCMCI link: does the strategy's position at t causally link to the next-bar return, given the
market's own lags and volatility/trend features? tigramite ParCorr, tau_min=1, links into the
return only, Benjamini-Hochberg over the return column's p-values (ARCHITECTURE.md pitfalls)."""

from __future__ import annotations

import numpy as np

from forge.causal import pcmci_links_into, vol_standardized
from forge.features import compute_features
from gauntlet.stages import StageResult

NAME = "pcmci"
MARKET_STATE = ("vol_60", "mtf_ret_1h")


def position_link(position: np.ndarray, ret: np.ndarray, market: np.ndarray, market_names: tuple[str, ...],
                  tau_max: int, pc_alpha: float, seed: int = 0) -> dict:
    """position: (T,) target decided at each bar's close; ret: (T,) log return realised in bar t
    (NaN across gaps); market: (k, T) state variables. returns: dict with the position's best
    link (lag, partial corr, p, q) and every link into the return."""
    data = np.column_stack([position, *market, ret])
    names = ["position", *market_names, "return"]
    links = pcmci_links_into(data, names, len(names) - 1, tau_max=tau_max, pc_alpha=pc_alpha,
                             target_autoregressive=True, seed=seed)
    pos = [t for t in links if t.source == "position"]
    best = min(pos, key=lambda t: t.q)
    return {"lag": best.lag, "partial_corr": best.value, "p": best.p, "q": best.q,
            "links": [{"source": t.source, "lag": t.lag, "partial_corr": t.value, "p": t.p, "q": t.q} for t in links]}


def run(ctx, cand, cfg, shared) -> StageResult:
    a, b = ctx.evaluation
    a = max(a, b - cfg.pcmci_max_samples)
    if "return_z" not in shared:  # z-scores: homoscedastic noise for ParCorr's analytic p-values
        shared["return_z"] = vol_standardized(ctx.log_returns)
    ret = shared["return_z"]
    pos = cand.position[a:b]
    if np.nanstd(pos) == 0:
        return StageResult(NAME, "q-value", None, None, cfg.alpha, False,
                           "position never varies: no link to test", {})
    if "market_state" not in shared:
        shared["market_state"] = compute_features(ctx.bars, MARKET_STATE).values
    res = position_link(pos, ret[a:b], shared["market_state"][:, a:b], MARKET_STATE, cfg.pcmci_tau_max,
                        cfg.pcmci_pc_alpha, cfg.seed)
    passed = res["q"] <= cfg.alpha and res["partial_corr"] > 0
    reason = (f"position(t-{res['lag']}) -> return(t): partial corr {res['partial_corr']:+.4f}, "
              f"q {res['q']:.2e} {'<=' if res['q'] <= cfg.alpha else '>'} {cfg.alpha}")
    if res["q"] <= cfg.alpha and res["partial_corr"] <= 0:
        reason += " (negative: the strategy is on the wrong side)"
    return StageResult(NAME, "q-value", res["q"], res["p"], cfg.alpha, passed, reason,
                       {**res, "n_samples": b - a, "market_state": list(MARKET_STATE)})
