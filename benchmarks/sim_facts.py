"""Stylized facts of the calibrated simulator against real BTCUSDT 1m bars, at matched sample sizes.

Simulated: ``--days`` independent 1,440-bar days (seeds ``--first-seed``..., none of them a calibration
seed) pooled into one sample (``forge.sim.calibrate.pooled_facts``: each day its own segment, so no
return or ACF pair joins two runs); the calibrated DSG and the built-in default DSG.
Real: the whole shared sample, and ``--draws`` draws of ``--days`` distinct random real days pooled the
same way (``forge.sim.facts.pooled_window_facts``; the median per fact is reported) — the like-with-like
reference, because sample kurtosis and |r| autocorrelation grow with the sample length.

Usage: .venv/bin/python benchmarks/sim_facts.py [--calibration configs/sim/calibration_btcusdt_1m.json]
Writes --out (JSON) and prints a Markdown table.  Skips cleanly without ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forge.core.errors import ForgeError  # noqa: E402
from forge.data.loader import load_bars  # noqa: E402
from forge.sim.calibrate import pooled_facts, read_calibration  # noqa: E402
from forge.sim.facts import FACT_NAMES, pooled_window_facts  # noqa: E402
from forge.sim.params import default_dsg  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"
SHOWN = ("ret_std_1m", "kurt_1m", "kurt_5m", "kurt_15m", "hill_tail", "acf_r_1", "acf_absr_1", "acf_absr_5",
         "acf_absr_30", "vol_absr_corr", "leverage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calibration", default=str(REPO / "configs" / "sim" / "calibration_btcusdt_1m.json"))
    ap.add_argument("--days", type=int, default=60, help="simulated (and real) days pooled")
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=50, help="random real pooled samples")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "sim_facts.json"))
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found")
    try:
        cal = read_calibration(a.calibration)
        bars, _ = load_bars([str(DATA)])
    except ForgeError as e:  # missing / malformed calibration or data: one line, no traceback
        sys.exit(f"error: {e}")
    start_ms, start_price = int(bars["open_time"][0]), float(bars["open"][0])
    real_matched = pooled_window_facts(bars, 1440, a.days, n_draws=a.draws, seed=0)
    out = {"settings": vars(a), "real_bars": bars.height, "real_whole": cal.facts_real,
           "real_pooled_median": dict(zip(FACT_NAMES, np.nanmedian(real_matched, axis=0).tolist())),
           "calibration_target_1day_x_seeds": cal.facts_target, "calibration_sim": cal.facts_sim}
    seeds = list(range(a.first_seed, a.first_seed + a.days))
    for name, dsg in (("calibrated", cal.dsg), ("default", default_dsg())):
        t0 = time.perf_counter()
        facts, n_trunc = pooled_facts(dsg, 1440, seeds, start_ms=start_ms, start_price=start_price)
        out[name] = {"facts": facts, "days_truncated_and_left_out": n_trunc, "seconds": time.perf_counter() - t0}
        print(f"{name}: {time.perf_counter() - t0:.0f} s, {n_trunc} of {a.days} days stopped by the event budget",
              flush=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=float))
    m = out["real_pooled_median"]
    print(f"\n| fact | real, all {bars.height:,} bars | real, {a.days} pooled days (median of {a.draws}) | "
          f"simulated, {a.days} pooled days | sim / real pooled | sim / real all | default DSG |")
    print("|---|---|---|---|---|---|---|")
    for n in SHOWN:
        s, w, p, d = out["calibrated"]["facts"][n], cal.facts_real[n], m[n], out["default"]["facts"][n]
        print(f"| {n} | {w:.4g} | {p:.4g} | {s:.4g} | {s / p:.2f} | {s / w:.2f} | {d:.4g} |")


if __name__ == "__main__":
    main()
