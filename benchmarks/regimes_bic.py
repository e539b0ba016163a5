"""BIC state selection of the regime model (forge.features.regimes) on planted Markov-regime series.

For a 3-regime and a 2-regime chain (1-minute log-return sd and log-volume mean per regime, P(stay) 0.995)
and two input sets (the default ("ret", "volume") and ("ret", "rv", "volume")), fit 2..4 states and print
each candidate's BIC, the chosen number of states and the share of bars whose filtered argmax is the planted
state (when the count matches).  Usage: ``python benchmarks/regimes_bic.py [--bars 8000]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_regimes import planted

from forge.features.regimes import fit_regime_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=8000)
    n = ap.parse_args().bars
    chains = {"3-regime": ([1e-4, 5e-4, 2e-3], [1.0, 2.0, 3.0], 1), "2-regime": ([2e-4, 1e-3], [1.0, 2.0], 2)}
    print("| chain | inputs | BIC k=2 | k=3 | k=4 | chosen | filtered argmax = planted | fit s (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (vols, vm, seed) in chains.items():
        bars, states = planted(n, vols, vm, 0.995, seed)
        for inputs in (("ret", "volume"), ("ret", "rv", "volume")):
            t0 = time.perf_counter()
            m = fit_regime_model(bars, inputs=inputs, seed=0)
            dt = time.perf_counter() - t0
            bic = {r["n_states"]: r["bic"] for r in m.selection}
            acc = "—"
            if m.n_states == len(vols):
                filt, _ = m.filter(bars)
                acc = f"{100 * (filt.argmax(axis=1)[50:] == states[50:]).mean():.1f} %"
            print(f"| {name} | {', '.join(inputs)} | {bic.get(2, float('nan')):,.0f} | {bic.get(3, float('nan')):,.0f} "
                  f"| {bic.get(4, float('nan')):,.0f} | {m.n_states} | {acc} | {dt:.0f} |", flush=True)


if __name__ == "__main__":
    main()
