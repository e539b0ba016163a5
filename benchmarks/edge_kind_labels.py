"""How the edge-kind label (gauntlet.stages.edge_kind) treats volatility timers and directional rules.

On drifting GARCH(1,1) markets with no predictability (per-bar drift 0.03 sd, a = 0.10, b = 0.88, 20,000
bars), rules that hold min(1, k / s2_t) or k / s2_t of the market (s2_t an EWMA of past squared returns,
half-lives 10, 30, 120 bars) and, on markets whose next return is shifted by 0.03 sd x a random sign known
one bar ahead, the rule holding that sign.  Counted: the labels with the full rule (two-factor intercept and
the timing slope) and what the two-factor intercept alone would have said.

    .venv/bin/python benchmarks/edge_kind_labels.py --seeds 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gauntlet.stages.edge_kind import classify_edge  # noqa: E402


def garch(n: int, seed: int, drift_sd: float = 0.03, signal_sd: float = 0.0, a: float = 0.1, b: float = 0.88,
          sd: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(per-bar returns, the +-1 sign that shifts the next return by signal_sd x sigma_t)."""
    rng = np.random.default_rng(seed)
    z, s = rng.standard_normal(n), np.sign(rng.standard_normal(n))
    h, prev, r = sd ** 2, 0.0, np.empty(n)
    for t in range(n):
        h = sd ** 2 * (1 - a - b) + a * prev ** 2 + b * h
        prev = np.sqrt(h) * z[t]
        r[t] = drift_sd * sd + prev + (signal_sd * np.sqrt(h) * s[t - 1] if t else 0.0)
    return r, s


def past_ewma_var(r: np.ndarray, half_life: float) -> np.ndarray:
    lam = 0.5 ** (1.0 / half_life)
    num = lfilter([1.0], [1.0, -lam], r * r)
    den = lfilter([1.0], [1.0, -lam], np.ones_like(r))
    out = np.full(r.shape, np.nan)
    out[1:] = num[:-1] / den[:-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    rows: dict[str, dict[str, int]] = {}
    for clip in (True, False):
        for hl in (10, 30, 120):
            full: dict[str, int] = {}
            two_factor_only = 0
            for seed in range(args.seeds):
                m, _ = garch(20_000, seed)
                x = np.nan_to_num(1e-6 / past_ewma_var(m, hl))
                x = np.clip(x, 0.0, 1.0) if clip else x
                ek = classify_edge(x * m, m, x)
                full[ek.label] = full.get(ek.label, 0) + 1
                two_factor_only += ek.p_market <= 0.05 and ek.p_both <= 0.05
            rows[f"vol-timer {'capped' if clip else 'uncapped'} half-life {hl}"] = {
                **full, "directional by the two-factor intercept alone": two_factor_only}
    planted: dict[str, int] = {}
    for seed in range(args.seeds):
        m, s = garch(20_000, seed, drift_sd=0.0, signal_sd=0.03)
        x = np.r_[0.0, s[:-1]]
        lab = classify_edge(x * m, m, x).label
        planted[lab] = planted.get(lab, 0) + 1
    rows["planted sign rule"] = planted
    print(json.dumps({"seeds": args.seeds, "labels": rows, "command": "python " + " ".join(sys.argv)}, indent=1))


if __name__ == "__main__":
    main()
