"""DoWhy on the graph PCMCI found: treatment = position held in bar t, outcome = return of bar t standardised
by a causal volatility estimate (``forge.causal.vol_standardized``: on volatility-clustered returns the
raw-return estimate is dominated by a few volatile hours).

Graph (``causal_graph``), over variables known at the decision (close t-1) and the outcome:
- the PCMCI stage's market parents of the return (``pcmci.market_graph``: tigramite PCMCI over the market
  state and the return's own lags; Runge et al. 2019) — edges parent -> ret;
- the genome's input features (lag 1) — edges input -> position (the position is a deterministic function
  of them) and position -> ret (the effect tested);
- parent -> input for every parent and input: the market state and the features are computed from the same
  bars, so each parent may cause each input (assumed, never ruled out: more adjustment, not less).
- A parent that duplicates an input (``duplicate_inputs``: the same series as an input terminal — the same
  name, |corr| >= ``DUPLICATE_CORR`` with it, or with it over the same causal volatility estimate, as PCMCI's
  "return" is the terminal ``ret_1`` standardised — at a lag the genome can read, 1..lookback + 1) *is* that
  input: the rule's own input under another name. It is merged into the input node, which lies on the path
  parent -> input -> position -> ret: what it says about the return is what the position was built from, not a
  confounder to adjust on. Adjusting on it conditions on the position's own driver (positivity fails; a
  planted edge found through ``ret_1`` lost its placebo significance, p 0.15, with ``return_lag1`` in the set).
The inputs are declared unobserved for adjustment: the position is a deterministic function of them, so
conditioning on them violates positivity (the old stage's symptom: a smoothed copy of the input absorbed the
effect and flipped its sign). DoWhy's ``CausalModel(graph=...)``/``identify_effect`` (Pearl 2009, backdoor
criterion; Sharma & Kiciman 2020, arXiv:2011.04216) then identifies the backdoor adjustment set — the
parents on a backdoor path position <- input <- parent -> ret — and the estimate is the regression of the
outcome on the position and that set (DoWhy's ``backdoor.linear_regression``, reported).

Gate: DoWhy's refuters check the estimator, not whether the effect is real (py-why/dowhy#312), and their
row-shuffling placebos destroy time order; so the gate is the backdoor estimate against a circular-shift
placebo distribution of the same estimate (time order and autocorrelation kept; one-sided p =
(1 + #{placebo t >= t}) / (1 + K), on the HC-studentised t of the Freedman–Lane scheme, see
``shift_placebo_pvalue``). DoWhy's three refuters are reported as diagnostics. The report
states the graph (edges) and the adjustment set.
"""

from __future__ import annotations

import warnings

import numpy as np

from forge.features import compute_features
from gauntlet.stages import StageResult

NAME = "dowhy"
DUPLICATE_CORR = 0.99
"""|Pearson rho| at or above which a PCMCI parent and an input terminal are one series (``duplicate_inputs``)."""
STATE_CANDIDATES = ("vol_60", "rsi_14", "ret_15", "taker_imb_20", "vol_z_60", "mtf_ret_1h", "atr_14", "ret_60")


def ols_effect(treatment: np.ndarray, outcome: np.ndarray, controls: np.ndarray) -> float:
    """Coefficient of treatment in outcome ~ 1 + treatment + controls (least squares).
    treatment, outcome: (T,); controls: (T, k)."""
    x = np.column_stack([np.ones_like(treatment), treatment, controls])
    return float(np.linalg.lstsq(x, outcome, rcond=None)[0][1])


def shift_placebo_pvalue(treatment: np.ndarray, outcome: np.ndarray, controls: np.ndarray, shifts: int,
                         seed: int) -> tuple[float, float, np.ndarray]:
    """One-sided p-value of the backdoor effect against circularly shifted treatments, on a studentised
    statistic.

    Shifts are drawn from [T/10, 9T/10] bars. Effects by Frisch–Waugh–Lovell: the treatment and the outcome
    are residualised on [1, controls] (M, one QR for every shift), the effect is (M t).(M y) / (M t).(M t).
    The statistic compared is its heteroskedasticity-robust (HC0) t, for the treatment and for each shifted
    treatment against the same residualised outcome M y — the Freedman & Lane (1983) scheme (the reduced
    model's residuals: under the null, the outcome with the controls' part removed), studentised so the
    placebo distribution is asymptotically the null distribution even when the treatment's variance
    structure differs from its shifts' (DiCiccio & Romano 2017, JASA 112(519)). The former ter Braak
    scheme (full-model residuals, raw coefficient) had a placebo distribution pinched towards 0 whenever a
    shifted treatment resembles the original (a clock position shifted by a day is itself; a persistent
    volatility-driven one nearly so): measured 9-17 % false rejections at 5 % on those null positions.
    The shifts break the treatment's alignment with the outcome's residual volatility, which studentising
    corrects only to first order (volatility-driven positions were rejected 7-10 % at 5 % on 3-day GARCH
    markets), so p is the larger of the placebo p and the studentised stationary-bootstrap p of the aligned
    residual pairs (M t, M y) (``gauntlet.stages.permutation.aligned_bootstrap_pvalue``, as the permutation gate;
    Politis & Romano 1994; Berger 1982 for the intersection).
    treatment, outcome: (T,) float64; controls: (T, k). returns: (p, effect, placebo t statistics (shifts,)).
    """
    from gauntlet.stages.permutation import aligned_bootstrap_pvalue, robust_slope_t

    n = treatment.shape[0]
    q, _ = np.linalg.qr(np.column_stack([np.ones_like(treatment), controls]))

    def resid(v: np.ndarray) -> np.ndarray:
        return v - q @ (q.T @ v)

    t_res, y_res = resid(treatment), resid(outcome)
    den = float(t_res @ t_res)
    eff = float(t_res @ y_res) / den if den > 0 else 0.0
    t_obs = float(robust_slope_t(t_res, y_res)) if den > 0 else 0.0
    lo = max(1, n // 10)
    ks = np.random.default_rng(seed).integers(lo, max(n - lo, lo + 1), size=shifts)
    null = np.empty(shifts)
    for i, k in enumerate(ks):
        null[i] = float(robust_slope_t(resid(np.roll(treatment, int(k))), y_res))
    ge = int(np.sum(null >= t_obs - 1e-12 * max(abs(t_obs), 1e-300))) if den > 0 else shifts
    p = (1.0 + ge) / (1.0 + shifts)
    if den > 0:  # and the aligned bootstrap of the residualised pairs: both must reject (see the docstring)
        p = max(p, aligned_bootstrap_pvalue(t_res, y_res, shifts, seed + 1)["p"])
    return p, eff, null


def dowhy_refutations(df, common: list[str], simulations: int, seed: int) -> dict:
    """Estimate with backdoor linear regression and run three DoWhy refuters.
    df: pandas DataFrame with columns position, ret and ``common``. returns: dict of numbers."""
    import logging

    from dowhy import CausalModel

    logging.getLogger("dowhy").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CausalModel(data=df, treatment="position", outcome="ret", common_causes=common)
        ident = model.identify_effect(proceed_when_unidentifiable=True)
        est = model.estimate_effect(ident, method_name="backdoor.linear_regression")
        out = {"estimate": float(est.value), "refuters": {}}
        for method, kw in (("placebo_treatment_refuter", {"placebo_type": "permute"}),
                           ("random_common_cause", {}),
                           ("data_subset_refuter", {"subset_fraction": 0.8})):
            ref = model.refute_estimate(ident, est, method_name=method, num_simulations=simulations,
                                        random_seed=seed, **kw)
            rr = getattr(ref, "refutation_result", None) or {}
            out["refuters"][method] = {"new_effect": float(np.ravel(ref.new_effect)[0]),
                                       "p_value": float(rr["p_value"]) if "p_value" in rr else None,
                                       "significant": bool(rr.get("is_statistically_significant", False))}
    return out


def select_controls(candidates: dict[str, np.ndarray], inputs: list[np.ndarray], max_corr: float,
                    limit: int = 4) -> tuple[list[str], dict[str, float]]:
    """Common causes not (nearly) the strategy's inputs.

    candidates: name -> (T,) state series; inputs: (T,) series the position is computed from (the genome's
    features and the position itself); max_corr: exclusion threshold on |Pearson rho| (pairwise finite rows).
    returns: (kept names, at most ``limit``, in the given order; name -> max |rho| with any input).
    """
    kept, worst = [], {}
    for name, x in candidates.items():
        rho = 0.0
        for z in inputs:
            ok = np.isfinite(x) & np.isfinite(z)
            if ok.sum() > 2 and np.std(x[ok]) > 0 and np.std(z[ok]) > 0:
                rho = max(rho, abs(float(np.corrcoef(x[ok], z[ok])[0, 1])))
        worst[name] = rho
        if rho <= max_corr and len(kept) < limit:
            kept.append(name)
    return kept, worst


def duplicate_inputs(parents: list[tuple[str, int]], parent_series: dict[str, np.ndarray],
                     input_series: dict[str, np.ndarray], lookback: int,
                     threshold: float = DUPLICATE_CORR) -> dict[str, str]:
    """PCMCI parents that are one of the genome's inputs under another name (or the same name).

    parents: (name, lag >= 1) market parents of the return; parent_series: name -> (T,) float64 the parent
    variable on the tested rows (unlagged); input_series: input terminal -> (T,) float64 on the same rows
    (unlagged); lookback: bars of history the genome's operators read (``Genome.lookback``): an input enters
    the position at lags 1..lookback + 1. A parent duplicates input f when its lag is in that range and it is
    the same name, or |corr| >= ``threshold`` with f or with f over its causal EWMA volatility
    (``forge.causal.vol_standardized``, half-life 60 bars: the standardisation of PCMCI's "return"), on the
    rows where both are finite. returns: parent node name "<name>_lag<L>" -> input node "<f>_lag1".
    """
    from forge.causal import vol_standardized

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 30 or not (np.std(a[ok]) > 0 and np.std(b[ok]) > 0):
            return 0.0
        return abs(float(np.corrcoef(a[ok], b[ok])[0, 1]))

    out: dict[str, str] = {}
    std = {f: vol_standardized(np.asarray(v, dtype=np.float64)) for f, v in input_series.items()}
    for name, lag in parents:
        if not 1 <= lag <= int(lookback) + 1:
            continue
        for f, v in input_series.items():
            x = parent_series.get(name)
            if name == f or (x is not None and max(rho(x, v), rho(x, std[f])) >= threshold):
                out[f"{name}_lag{lag}"] = f"{f}_lag1"
                break
    return out


def causal_graph(parents: list[tuple[str, int]], inputs: list[str], duplicates: dict[str, str] | None = None):
    """The DAG DoWhy identifies on (see the module docstring).

    parents: PCMCI market parents of the return as (name, lag >= 1); inputs: the genome's input features
    (taken at lag 1); duplicates: parent node -> input node for parents that are an input
    (``duplicate_inputs``): merged into the input. Nodes are named "<name>_lag<L>"; "position" and "ret" are
    treatment and outcome. returns: (networkx.DiGraph with the input nodes marked observed="no", the parent
    node names that remain nodes of their own (the candidates for adjustment), input node names).
    """
    import networkx as nx

    dup = dict(duplicates or {})
    g = nx.DiGraph()
    pnodes = [n for n in (f"{n}_lag{lag}" for n, lag in parents) if n not in dup]
    inodes = [f"{f}_lag1" for f in inputs]
    g.add_node("position")
    g.add_node("ret")
    g.add_edge("position", "ret")
    for i in inodes:
        g.add_node(i, observed="no")
        g.add_edge(i, "position")
    for pn in pnodes:
        g.add_edge(pn, "ret")
        for i in inodes:
            g.add_edge(pn, i)
        if not inodes:
            g.add_edge(pn, "position")  # the position's inputs unknown: every parent may drive it
    return g, pnodes, inodes


def identify_adjustment(graph, data) -> list[str]:
    """DoWhy's backdoor adjustment set for position -> ret on ``graph`` (networkx DiGraph), ``data`` a
    pandas frame with at least the observed nodes. returns: the variables, in DoWhy's order."""
    import logging

    from dowhy import CausalModel

    logging.getLogger("dowhy").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CausalModel(data=data, treatment="position", outcome="ret", graph=graph)
        est = model.identify_effect(proceed_when_unidentifiable=True)
    return list(est.get_backdoor_variables() or [])


def run(ctx, cand, cfg, shared) -> StageResult:
    import pandas as pd

    from gauntlet.stages.pcmci import MARKET_STATE, market_graph

    a, b = ctx.evaluation
    a = max(a + 1, b - cfg.dowhy_max_samples)
    ret = ctx.return_z  # bar t's return over a causal volatility estimate (homoscedastic noise)
    held = np.zeros_like(ret)
    held[1:] = np.nan_to_num(cand.position[:-1])  # decided at close t-1, in force during bar t
    rows = np.arange(a, b)
    parents = [(str(n), int(lag)) for n, lag in market_graph(ctx, cfg, shared)["parents"]]
    if "dowhy_parent_series" not in shared:  # the parents' variables on every bar
        st = compute_features(ctx.bars, MARKET_STATE)
        shared["dowhy_parent_series"] = {**{n: st.row(n) for n in MARKET_STATE}, "return": ctx.return_z}
    full = shared["dowhy_parent_series"]
    inputs = [f for f in dict.fromkeys(cand.genome.features) if f in ctx.features.names]
    dup = duplicate_inputs(parents, {n: full[n][rows] for n, _ in parents},
                           {f: ctx.features.row(f)[rows] for f in inputs}, cand.genome.lookback)
    graph, pnodes, inodes = causal_graph(parents, inputs, dup)
    series = {f"{n}_lag{lag}": np.roll(full[n], lag)[rows] for n, lag in parents}
    series.update({f"{f}_lag1": np.roll(ctx.features.row(f), 1)[rows] for f in inputs})
    frame = pd.DataFrame({"position": held[rows], "ret": ret[rows],
                          **{n: np.nan_to_num(v) for n, v in series.items() if n in pnodes}})
    common = identify_adjustment(graph, frame)
    # diagnostic only: how close each control is to the genome's inputs (the former exclusion rule)
    _, corr = select_controls({n: series[n] for n in common},
                              [series[i] for i in inodes] + [held[rows]], 1.0, limit=len(common))
    ctrl = np.column_stack([series[n] for n in common]) if common else np.empty((rows.size, 0))
    ok = np.isfinite(ret[rows]) & np.isfinite(ctrl).all(axis=1)
    rows, ctrl = rows[ok], ctrl[ok]
    tr, y, x = held[rows], ret[rows], ctrl
    edges = sorted(f"{u} -> {v}" for u, v in graph.edges)
    if rows.size < 200 or np.std(tr) == 0:
        return StageResult(NAME, "placebo p-value", None, None, cfg.alpha, False,
                           "position never varies (or too few rows): effect not identifiable",
                           {"rows": int(rows.size), "graph": edges, "adjustment_set": common,
                            "parents_that_are_inputs": dup})
    p, eff, null = shift_placebo_pvalue(tr, y, x, cfg.dowhy_placebo_shifts, cfg.seed + cand.rank)
    passed = p <= cfg.alpha and eff > 0
    if passed or cand is ctx.candidates[0]:  # the refuters are diagnostics: run where a reader needs them
        df = pd.DataFrame({"position": tr, "ret": y, **{n: x[:, i] for i, n in enumerate(common)}})
        ref = dowhy_refutations(df, common, cfg.dowhy_simulations, cfg.seed)
        estimator_ok = not any(r["significant"] for r in ref["refuters"].values())
    else:
        ref, estimator_ok = {"skipped": "diagnostic refuters run for the champion and passing candidates"}, True
    merged = "".join(f", {k} is the input {v}" for k, v in dup.items())
    reason = (f"effect {eff:+.3f} sigma/bar per unit position, backdoor set on the PCMCI graph "
              f"{{{', '.join(common) or 'empty'}}}{merged}, circular-shift placebo p {p:.3f} "
              f"{'<=' if p <= cfg.alpha else '>'} {cfg.alpha}"
              + ("" if estimator_ok else " (diagnostic: a DoWhy refuter flags the estimator)"))
    return StageResult(NAME, "placebo p-value", p, p, cfg.alpha, passed, reason, {
        "effect": eff, "placebo_t_mean": float(null.mean()), "placebo_t_std": float(null.std()),
        "placebo": "Freedman-Lane circular shifts, HC0-studentised t; and the aligned stationary bootstrap",
        "graph": edges, "adjustment_set": common, "common_causes": common, "treatment_inputs": inodes,
        "parents_that_are_inputs": dup,
        "identification": "DoWhy identify_effect (backdoor) on the PCMCI graph", "max_abs_corr_with_inputs": corr, "rows": int(rows.size), "dowhy": ref, "estimator_ok": estimator_ok})
