"""Where a causal gate's null rejections come from: the pcmci link statistic and the dowhy placebo, piece by piece.

    PYTHONPATH=. nice -n 5 python benchmarks/gauntlet_size_components.py --markets null --positions vol --draws 500
    PYTHONPATH=. nice -n 5 python benchmarks/gauntlet_size_components.py --markets null --positions vol --draws 500 --seed0 50000

For each draw of a null market (seed SEED0 + i, as ``benchmarks/gauntlet_size.py``) and position, the set-up of
``gauntlet.size.stage_pvalues`` (PCMCI parents, DoWhy's adjustment set), then on the same rows:

- pcmci: the gate's p (``position_link``: Newey–West HAC t, normal), the HC0 t with a normal p, and the wild
  bootstrap (Rademacher weights on the restricted residuals, 199 draws; Davidson & Flachaire 2008, J.
  Econometrics 146(1)) of the HC0 t and of the HAC t;
- dowhy: the gate's p (``shift_placebo_pvalue``), its two parts (the Freedman–Lane circular-shift placebo of
  the HC0 t alone, the aligned stationary bootstrap alone), and the wild bootstrap of the residualised pairs.

Prints P(p <= alpha) at 1 / 5 / 10 % per (market, position, method) with the alpha + 2 s.e. bounds; writes the
rows to ``--out`` (JSON lines).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (0.01, 0.05, 0.10)


def _design(kind: str, seed: int, positions: tuple[str, ...]) -> list[dict]:
    import pandas as pd

    from forge.causal import vol_standardized
    from forge.data.gaps import realised_returns
    from forge.data.synthetic import null_positions, synthetic_bars
    from forge.features import compute_features
    from gauntlet.stages.dowhy_refute import (
        causal_graph,
        duplicate_inputs,
        identify_adjustment,
    )
    from gauntlet.stages.pcmci import MARKET_STATE, market_parents

    bars, _ = synthetic_bars(seed, 0.0, 3, kind=kind)
    c = bars["close"].to_numpy().astype(np.float64)
    ret_z = vol_standardized(realised_returns(c, bars["open_time"].to_numpy().astype(np.int64)))
    state = compute_features(bars, MARKET_STATE).values
    parents = market_parents(ret_z, state, MARKET_STATE, 3, 0.05, seed)["parents"]
    series = {**dict(zip(MARKET_STATE, state)), "return": ret_z}
    graph, _, _ = causal_graph([(str(n), int(lag)) for n, lag in parents], ["driver"])
    pser = {f"{n}_lag{lag}": np.roll(series[n], lag) for n, lag in parents}
    adj = identify_adjustment(graph, pd.DataFrame({"position": np.zeros(len(ret_z)), "ret": np.nan_to_num(ret_z),
                                                   **{k: np.nan_to_num(v) for k, v in pser.items()}}))
    n = ret_z.shape[0]
    out = []
    for name in positions:
        pos, driver = null_positions(bars)[name]
        ctrl = np.full((n - 1, len(parents)), np.nan)
        for j, (nm, lag) in enumerate(parents):  # as gauntlet.stages.pcmci.position_link
            ctrl[lag - 1:, j] = series[nm][: n - lag]
        held = np.zeros_like(ret_z)
        held[1:] = pos[:-1]
        rows = np.arange(1, n)
        dup = duplicate_inputs(parents, series, {"driver": driver}, 0)
        use = [k for k in adj if k not in dup]
        dctrl = np.column_stack([pser[k][rows] for k in use]) if use else np.empty((rows.size, 0))
        ok = np.isfinite(ret_z[rows]) & np.isfinite(dctrl).all(axis=1)
        out.append({"market": kind, "seed": seed, "position": name, "parents": [f"{a}_lag{b}" for a, b in parents],
                    "pcmci": (ret_z[1:], pos[:-1], ctrl), "dowhy": (held[rows][ok], ret_z[rows][ok], dctrl[ok])})
    return out


def _slope_t(xt: np.ndarray, e: np.ndarray, hac_lags: int = 0) -> np.ndarray:
    """t of the slope of each row of e (B, T) on the residualised regressor xt (T,): HC0, or Newey–West (Bartlett)
    with hac_lags > 0 (statsmodels' HAC without small-sample correction)."""
    e = np.atleast_2d(e)
    sxx = float(xt @ xt)
    b = e @ xt / sxx
    u = xt[None, :] * (e - b[:, None] * xt[None, :])
    v = (u * u).sum(1)
    for j in range(1, hac_lags + 1):
        v = v + 2.0 * (1.0 - j / (hac_lags + 1.0)) * (u[:, j:] * u[:, :-j]).sum(1)
    return b / (np.sqrt(np.maximum(v, 1e-300)) / sxx)


def _wild(xt: np.ndarray, e: np.ndarray, q: np.ndarray, reps: int, seed: int, lags: int) -> float:
    """One-sided wild-bootstrap p of the slope t: y* = e v (v Rademacher), residualised on the controls again."""
    v = np.random.default_rng(seed).choice([-1.0, 1.0], size=(reps, e.size))
    es = e[None, :] * v
    es = es - (es @ q) @ q.T
    t0 = float(_slope_t(xt, e, lags)[0])
    return float((1 + np.sum(_slope_t(xt, es, lags) >= t0)) / (1 + reps))


def components(d: dict, reps: int = 199) -> dict:
    from gauntlet.stages.dowhy_refute import shift_placebo_pvalue
    from gauntlet.stages.pcmci import position_link
    from gauntlet.stages.permutation import aligned_bootstrap_pvalue, robust_slope_t
    from gauntlet.stats import newey_west_lags

    seed = d["seed"]
    y, x, ctrl = d["pcmci"]
    pos = np.append(x, 0.0)  # position_link lags the position itself
    ret = np.concatenate([[np.nan], y])
    parents = [(p.rsplit("_lag", 1)[0], int(p.rsplit("_lag", 1)[1])) for p in d["parents"]]
    series = {}
    out = {"market": d["market"], "seed": seed, "position": d["position"], "n_parents": len(parents)}
    ok = np.isfinite(y) & np.isfinite(ctrl).all(axis=1)
    yy, xx, cc = y[ok], x[ok], ctrl[ok]
    q, _ = np.linalg.qr(np.column_stack([np.ones_like(xx), cc]))
    xt, et = xx - q @ (q.T @ xx), yy - q @ (q.T @ yy)
    lags = newey_west_lags(yy.size)
    out["pcmci_gate"] = float(stats.norm.sf(_slope_t(xt, et, lags)[0]))  # = position_link's p (checked below)
    out["pcmci_hc0"] = float(stats.norm.sf(_slope_t(xt, et)[0]))
    out["pcmci_wild_hc0"] = _wild(xt, et, q, reps, seed, 0)
    out["pcmci_wild_hac"] = _wild(xt, et, q, reps, seed, lags)
    if not parents:  # the stage's own function, where no parent series are needed
        assert abs(position_link(pos, ret, series, [])["p"] - out["pcmci_gate"]) < 1e-9
    tr, yo, dc = d["dowhy"]
    out["dowhy_gate"] = shift_placebo_pvalue(tr, yo, dc, reps, seed)[0]
    q, _ = np.linalg.qr(np.column_stack([np.ones_like(tr), dc]))
    t_res, y_res = tr - q @ (q.T @ tr), yo - q @ (q.T @ yo)
    n = tr.shape[0]
    t_obs = float(robust_slope_t(t_res, y_res))
    lo = max(1, n // 10)
    ks = np.random.default_rng(seed).integers(lo, max(n - lo, lo + 1), size=reps)  # the gate's shifts
    null = np.array([float(robust_slope_t(np.roll(tr, int(k)) - q @ (q.T @ np.roll(tr, int(k))), y_res)) for k in ks])
    out["dowhy_shift_only"] = float((1 + np.sum(null >= t_obs - 1e-12 * max(abs(t_obs), 1e-300))) / (1 + reps))
    out["dowhy_bootstrap_only"] = aligned_bootstrap_pvalue(t_res, y_res, reps, seed + 1)["p"]
    out["dowhy_wild"] = _wild(t_res, y_res, q, reps, seed + 2, 0)
    out["t_hc0"] = float(_slope_t(xt, et)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markets", default="null")
    ap.add_argument("--positions", default="vol")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--seed0", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/gauntlet_size_components.jsonl"))
    a = ap.parse_args()
    rows = []
    with a.out.open("w") as fh:
        for i in range(a.draws):
            for k in a.markets.split(","):
                for d in _design(k, a.seed0 + i, tuple(a.positions.split(","))):
                    rows.append(components(d))
                    fh.write(json.dumps(rows[-1]) + "\n")
    methods = [k for k in rows[0] if k.startswith(("pcmci_", "dowhy_"))]
    for m, p in sorted({(r["market"], r["position"]) for r in rows}):
        rs = [r for r in rows if r["market"] == m and r["position"] == p]
        bounds = " / ".join(f"{100 * (x + 2 * np.sqrt(x * (1 - x) / len(rs))):.1f}" for x in LEVELS)
        t = np.array([r["t_hc0"] for r in rs])
        print(f"{m} x {p}: {len(rs)} draws (seeds {a.seed0}-{a.seed0 + a.draws - 1}), bounds {bounds} %; "
              f"HC0 t mean {t.mean():+.3f} sd {t.std():.3f}")
        for k in methods:
            v = np.array([r[k] for r in rs])
            print(f"  {k:22s}" + " / ".join(f"{100 * np.mean(v <= x):5.1f}" for x in LEVELS))


if __name__ == "__main__":
    main()
