"""Which terminals the PCMCI feature filter keeps on one study panel's in-sample bars (the diagnosis of the
planted-panel misses, RESULTS.md "Planted and null panels").

Usage (repo root): PYTHONPATH=. python benchmarks/panel_filter_kept.py KIND SEED STRENGTH
    e.g. regime 4400 2.6171875 | clock 4300 1.14453125 | clock 4300 0 (the null panel of that seed)
The candidates are those of the study's runs: the default terminals of the traded instrument and
[universe] features of the other two; in-sample = the default config's in_sample_fraction.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from forge.causal import causal_filter
from forge.core.runconfig import PANEL_FEATURES, load_run_config
from forge.features.registry import DEFAULT_FEATURES
from forge.strategy import strategy_features
from loop.panel_power import panel_frame


def main() -> None:
    kind, seed, strength = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    cfg = load_run_config(None)
    panel, _, _ = panel_frame(20 * 1440, seed, strength, kind)
    names = DEFAULT_FEATURES + tuple(f"{f}__{t}" for t in ("MKTUSDT_spot", "LEADUSDT_spot") for f in PANEL_FEATURES)
    fm = strategy_features(panel, names, None)
    n = int(panel.height * cfg.evolve.in_sample_fraction)
    c = panel["close"].to_numpy()
    fwd = np.append(np.log(c[1:] / c[:-1]), np.nan)
    sub = dataclasses.replace(fm, values=np.ascontiguousarray(fm.values[:, :n]))
    print(kind, seed, strength, "kept", causal_filter(sub, fwd[:n], cfg.causal, seed=0).kept)


if __name__ == "__main__":
    main()
