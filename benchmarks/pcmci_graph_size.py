"""False parents of the Gauntlet's PCMCI market graph on null markets, per CI test (issue 29, "PCMCI's oversized
parent search").

The pcmci stage's graph step (``gauntlet.stages.pcmci.market_parents``: links into the vol-standardised return
from ``vol_60``, ``mtf_ret_1h`` and the return's own lags, tau 1..3, pc_alpha 0.05) on ``--draws`` null markets of
``--days`` days (``forge.data.synthetic``; no link into the return exists); for each CI test, the share of draws
in which each (source, lag) is a parent (p <= 0.05).  Nominal: 5 %; with 500 draws, 2 binomial s.e. = 1.95 points.

    PYTHONPATH=. nice python benchmarks/pcmci_graph_size.py --kinds null,heavy --draws 500 \\
        --out benchmarks/pcmci_graph_size.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="null,heavy")
    ap.add_argument("--tests", default="parcorr,parcorr_hc,robust_parcorr")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--seed0", type=int, default=60_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("pcmci_graph_size.json"))
    a = ap.parse_args()

    from forge.causal import vol_standardized
    from forge.data.gaps import realised_returns
    from forge.data.synthetic import synthetic_bars
    from forge.features import compute_features
    from gauntlet.stages.pcmci import MARKET_STATE, market_parents

    tests = a.tests.split(",")
    out: dict = {"draws": a.draws, "seed0": a.seed0, "days": a.days, "level": 0.05, "rates_pct": {}}
    t0 = time.perf_counter()
    for kind in a.kinds.split(","):
        hits: dict[str, dict[str, int]] = {t: {} for t in tests}
        for seed in range(a.seed0, a.seed0 + a.draws):
            bars, _ = synthetic_bars(seed, 0.0, a.days, kind=kind)
            c = bars["close"].to_numpy().astype(np.float64)
            ret_z = vol_standardized(realised_returns(c, bars["open_time"].to_numpy().astype(np.int64)))
            state = compute_features(bars, MARKET_STATE).values
            for t in tests:
                for link in market_parents(ret_z, state, MARKET_STATE, 3, 0.05, seed, cond_ind_test=t)["links"]:
                    k = f"{link['source']}@{link['lag']}"
                    hits[t][k] = hits[t].get(k, 0) + int(link["p"] <= 0.05)
        out["rates_pct"][kind] = {t: {k: round(100.0 * v / a.draws, 1) for k, v in sorted(h.items())}
                                  for t, h in hits.items()}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    for kind, by_test in out["rates_pct"].items():
        links = list(next(iter(by_test.values())))
        print(f"\n{kind} markets, {a.draws} draws: % of draws with a false parent (p <= 0.05)\n")
        print("| test | " + " | ".join(links) + " |")
        print("|---|" + "---:|" * len(links))
        for t, r in by_test.items():
            print(f"| {t} | " + " | ".join(f"{r[k]:.1f}" for k in links) + " |")
    print(f"\n{out['seconds']} s")


if __name__ == "__main__":
    main()
