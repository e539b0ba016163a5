"""DoWhy refutation: treatment = position held in bar t, outcome = return of bar t standardised by a causal
volatility estimate (``forge.causal.vol_standardized``: on volatility-clustered returns the raw-return
estimate is dominated by a few volatile hours), common causes = market-state variables known at the
decision that are not (nearly) the strategy's own inputs.

Identification (Pearl 2009, backdoor criterion; DoWhy: Sharma & Kiciman 2020, arXiv:2011.04216): the
position is a deterministic function of the genome's inputs, so a control that is (nearly) one of those
inputs — the feature itself, a smoothed copy of it (``taker_imb_20`` for a genome reading ``taker_imb``), or
anything tracking the position — absorbs the effect and can flip its sign. Every candidate common cause
whose |Pearson correlation| with any input the genome reads, or with the position, exceeds
``dowhy_max_control_corr`` on the tested rows is excluded.

Gate: DoWhy's refuters check the estimator, not whether the effect is real (py-why/dowhy#312), and their
row-shuffling placebos destroy time order; so the gate is the backdoor estimate against a circular-shift
placebo distribution of the same estimate (time order and autocorrelation kept; one-sided p =
(1 + #{placebo >= effect}) / (1 + K)). DoWhy's three refuters are reported as diagnostics.
"""

from __future__ import annotations

import warnings

import numpy as np

from forge.features import compute_features
from gauntlet.stages import StageResult

NAME = "dowhy"
STATE_CANDIDATES = ("vol_60", "rsi_14", "ret_15", "taker_imb_20", "vol_z_60", "mtf_ret_1h", "atr_14", "ret_60")


def ols_effect(treatment: np.ndarray, outcome: np.ndarray, controls: np.ndarray) -> float:
    """Coefficient of treatment in outcome ~ 1 + treatment + controls (least squares).
    treatment, outcome: (T,); controls: (T, k)."""
    x = np.column_stack([np.ones_like(treatment), treatment, controls])
    return float(np.linalg.lstsq(x, outcome, rcond=None)[0][1])


def shift_placebo_pvalue(treatment: np.ndarray, outcome: np.ndarray, controls: np.ndarray, shifts: int,
                         seed: int) -> tuple[float, float, np.ndarray]:
    """One-sided p-value of the effect against circularly shifted treatments.

    Shifts are drawn from [T/10, 9T/10] bars, far enough that a persistent position (held for hundreds of
    bars) is decorrelated from itself. The placebo effects are estimated on the full model's residuals
    (ter Braak 1992, "Permutation versus bootstrap significance tests in multiple regression and ANOVA"):
    under the null the effect is 0 and this is the plain placebo; under an alternative whose effect is
    persistent, regressing shifted positions on the raw outcome would find chance correlations with the
    real effect itself and drown it. Coefficients by Frisch–Waugh–Lovell: (M t).(M y) / (M t).(M t), M the
    residual maker of [1, controls], one QR for every shift.
    treatment, outcome: (T,) float64; controls: (T, k). returns: (p, effect, placebo effects (shifts,)).
    """
    n = treatment.shape[0]
    q, _ = np.linalg.qr(np.column_stack([np.ones_like(treatment), controls]))

    def resid(v: np.ndarray) -> np.ndarray:
        return v - q @ (q.T @ v)

    t_res, y_res = resid(treatment), resid(outcome)
    den = float(t_res @ t_res)
    eff = float(t_res @ y_res) / den if den > 0 else 0.0
    e_full = y_res - eff * t_res
    lo = max(1, n // 10)
    ks = np.random.default_rng(seed).integers(lo, max(n - lo, lo + 1), size=shifts)
    null = np.empty(shifts)
    for i, k in enumerate(ks):
        tk = resid(np.roll(treatment, int(k)))
        dk = float(tk @ tk)
        null[i] = float(tk @ e_full) / dk if dk > 0 else 0.0
    return (1.0 + float(np.sum(null >= eff))) / (1.0 + shifts), eff, null


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


def run(ctx, cand, cfg, shared) -> StageResult:
    import pandas as pd

    a, b = ctx.evaluation
    a = max(a + 1, b - cfg.dowhy_max_samples)
    if "dowhy_state" not in shared:
        shared["dowhy_state"] = compute_features(ctx.bars, STATE_CANDIDATES)
    fm = shared["dowhy_state"]
    ret = ctx.return_z  # bar t's return over a causal volatility estimate (homoscedastic noise)
    held = np.zeros_like(ret)
    held[1:] = np.nan_to_num(cand.position[:-1])  # decided at close t-1, in force during bar t
    rows = np.arange(a, b)
    lagged = {n: np.roll(fm.row(n), 1)[rows] for n in STATE_CANDIDATES}  # known at the decision (close t-1)
    inputs = [np.roll(ctx.features.row(f), 1)[rows] for f in dict.fromkeys(cand.genome.features)
              if f in ctx.features.names] + [held[rows]]
    common, corr = select_controls(lagged, inputs, cfg.dowhy_max_control_corr)
    ctrl = np.column_stack([lagged[n] for n in common]) if common else np.empty((rows.size, 0))
    ok = np.isfinite(ret[rows]) & np.isfinite(ctrl).all(axis=1)
    rows, ctrl = rows[ok], ctrl[ok]
    tr, y, x = held[rows], ret[rows], ctrl
    if rows.size < 200 or np.std(tr) == 0:
        return StageResult(NAME, "placebo p-value", None, None, cfg.alpha, False,
                           "position never varies (or too few rows): effect not identifiable", {"rows": int(rows.size)})
    p, eff, null = shift_placebo_pvalue(tr, y, x, cfg.dowhy_placebo_shifts, cfg.seed + cand.rank)
    passed = p <= cfg.alpha and eff > 0
    if passed or cand is ctx.candidates[0]:  # the refuters are diagnostics: run where a reader needs them
        df = pd.DataFrame({"position": tr, "ret": y, **{n: x[:, i] for i, n in enumerate(common)}})
        ref = dowhy_refutations(df, common, cfg.dowhy_simulations, cfg.seed)
        estimator_ok = not any(r["significant"] for r in ref["refuters"].values())
    else:
        ref, estimator_ok = {"skipped": "diagnostic refuters run for the champion and passing candidates"}, True
    reason = (f"effect {eff:+.3f} sigma/bar per unit position given {len(common)} common cause"
              f"{'s' if len(common) != 1 else ''}, circular-shift placebo p {p:.3f} "
              f"{'<=' if p <= cfg.alpha else '>'} {cfg.alpha}"
              + ("" if estimator_ok else " (diagnostic: a DoWhy refuter flags the estimator)"))
    return StageResult(NAME, "placebo p-value", p, p, cfg.alpha, passed, reason, {
        "effect": eff, "placebo_mean": float(null.mean()), "placebo_std": float(null.std()),
        "common_causes": common, "excluded": sorted(n for n in STATE_CANDIDATES if n not in common and
                                                    corr[n] > cfg.dowhy_max_control_corr),
        "max_abs_corr_with_inputs": corr, "rows": int(rows.size), "dowhy": ref, "estimator_ok": estimator_ok})
