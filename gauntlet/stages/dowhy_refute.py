"""DoWhy refutation: treatment = position held in bar t, outcome = return of bar t, common causes =
market-state variables the strategy does not read (its own inputs determine the position and would
break identification). DoWhy's refuters check the estimator, not whether the effect is real
(py-why/dowhy#312), so the gate is our own statistic: the effect against a circular-shift placebo
distribution (time order and autocorrelation kept), plus the refuters not flagging the estimator."""

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
                         seed: int, min_shift: int = 60) -> tuple[float, float, np.ndarray]:
    """One-sided p-value of the effect against circularly shifted treatments (shift >= min_shift bars).
    returns: (p, effect, placebo effects (shifts,))."""
    eff = ols_effect(treatment, outcome, controls)
    n = treatment.shape[0]
    ks = np.random.default_rng(seed).integers(min_shift, max(n - min_shift, min_shift + 1), size=shifts)
    null = np.array([ols_effect(np.roll(treatment, int(k)), outcome, controls) for k in ks])
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


def run(ctx, cand, cfg, shared) -> StageResult:
    import pandas as pd

    a, b = ctx.evaluation
    a = max(a + 1, b - cfg.dowhy_max_samples)
    common = [n for n in STATE_CANDIDATES if n not in cand.genome.features][:4]
    if "dowhy_state" not in shared:
        shared["dowhy_state"] = compute_features(ctx.bars, STATE_CANDIDATES)
    fm = shared["dowhy_state"]
    ret = np.expm1(ctx.log_returns)  # simple return of bar t, NaN after gaps
    held = np.zeros_like(ret)
    held[1:] = np.nan_to_num(cand.position[:-1])  # decided at close t-1, in force during bar t
    ctrl = np.vstack([np.roll(fm.row(n), 1) for n in common]).T  # state known at the decision (close t-1)
    rows = np.arange(a, b)
    ok = np.isfinite(ret[rows]) & np.isfinite(ctrl[rows]).all(axis=1)
    rows = rows[ok]
    tr, y, x = held[rows], ret[rows], ctrl[rows]
    if rows.size < 200 or np.std(tr) == 0:
        return StageResult(NAME, "placebo p-value", None, None, cfg.alpha, False,
                           "position never varies (or too few rows): effect not identifiable", {"rows": int(rows.size)})
    p, eff, null = shift_placebo_pvalue(tr, y, x, cfg.dowhy_placebo_shifts, cfg.seed + cand.rank)
    df = pd.DataFrame({"position": tr, "ret": y, **{n: x[:, i] for i, n in enumerate(common)}})
    ref = dowhy_refutations(df, common, cfg.dowhy_simulations, cfg.seed)
    estimator_ok = not any(r["significant"] for r in ref["refuters"].values())
    passed = p < cfg.alpha and eff > 0 and estimator_ok
    reason = (f"effect {eff:+.2e}/bar per unit position, circular-shift placebo p {p:.3f}"
              + ("" if estimator_ok else "; a DoWhy refuter flags the estimator"))
    return StageResult(NAME, "placebo p-value", p, p, cfg.alpha, passed, reason, {
        "effect": eff, "placebo_mean": float(null.mean()), "placebo_std": float(null.std()),
        "common_causes": common, "rows": int(rows.size), "dowhy": ref, "estimator_ok": estimator_ok})
