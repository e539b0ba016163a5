"""Cost of a research universe (issue 30 part 1): candidate cost, run time and memory of a panel.

Three measurements, printed as JSON (one object):

* ``candidate``: seconds per candidate (genome -> positions through the VM -> backtest on the in-sample
  segment) of 200 random strategies drawn from each primitive set: single-symbol FILUSDT (its default
  terminals) vs the 3-instrument panel BTCUSDT spot + FILUSDT + ALGOUSDT perpetuals trading FILUSDT (the
  same terminals plus 9 per other instrument).  Same bars, same seeds, interleaved passes, best of N.
* ``run``: wall seconds of ``forge evolve`` with ``configs/default.toml`` (generations overridden, jobs=1,
  co-evolution off: the shipped calibration overlaps 2024-02 and is refused as a leak)
  on FILUSDT alone vs the same run on the 3-instrument universe (loading, PCMCI filter, evolution, report).
* ``memory``: peak RSS (MiB) of one process that builds a 3-instrument × 1-year (525,600 one-minute bars)
  planted panel from kline CSVs and runs a 1-generation evolve on it.

Usage (from the repo root, PYTHONPATH=.):
    python benchmarks/universe_panel.py candidate [--data /work/shared/data/binance]
    python benchmarks/universe_panel.py run --gens 2
    python benchmarks/universe_panel.py memory
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = "/work/shared/data/binance"


def _markets(data: str):
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import _load_markets

    cfg = with_overrides(load_run_config(None), "evolve", data=(data,), symbols=("FILUSDT",))
    single = _load_markets(cfg, None, None)[0][0]
    pcfg = with_overrides(with_overrides(load_run_config(None), "evolve", data=(data,)), "universe",
                          symbols=("BTCUSDT", "FILUSDT", "ALGOUSDT"), trade=("FILUSDT",))
    panel = _load_markets(pcfg, None, None)[0][0]
    return single, panel


def candidate(data: str, n: int = 200, passes: int = 3) -> dict:
    from forge.backtest import BacktestConfig, run_backtest
    from forge.gp import BufferPool, build_pset
    from forge.gp import pset as gp_ops
    from forge.gp.pset import genome_from_individual
    from forge.strategy import genome_positions

    single, panel = _markets(data)
    out = {"n_candidates": n, "terminals": {}}
    setups = {}
    for name, m in (("single", single), ("panel", panel)):
        seg = m.in_sample_arrays()
        pset = build_pset(seg.feature_names)
        random.seed(0)
        ops = gp_ops.Operators(pset, max_depth=8, max_size=40)
        genomes = [genome_from_individual(t) for t in ops.init_population(n, 2, 5)]
        setups[name] = (seg, genomes)
        out["terminals"][name] = len(seg.feature_names)
    cfg = BacktestConfig(taker_fee_bps=5.0)
    best = {k: float("inf") for k in setups}
    for _ in range(passes):
        for name, (seg, genomes) in setups.items():
            pool = BufferPool()
            t0 = time.perf_counter()
            for g in genomes:
                pos = genome_positions(g, seg.features, seg.bars_since_gap, pool)
                run_backtest(seg.open_, seg.close, seg.open_time, pos, cfg)
            best[name] = min(best[name], (time.perf_counter() - t0) / n)
    out["seconds_per_candidate"] = best
    out["bars"] = int(setups["single"][0].X.shape[1])
    out["ratio_panel_over_single"] = best["panel"] / best["single"]
    return out


def run(data: str, gens: int) -> dict:
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import evolve

    res = {}
    with tempfile.TemporaryDirectory() as d:
        for name in ("single", "panel"):
            cfg = with_overrides(load_run_config(None), "evolve", data=(data,), generations=gens, jobs=1,
                                 output_dir=d, **({"symbols": ("FILUSDT",)} if name == "single" else {}))
            # the shipped simulator calibration is fitted on BTCUSDT bars overlapping 2024-02 (refused as a leak)
            cfg = with_overrides(cfg, "coevolution", enabled=False)
            if name == "panel":
                cfg = with_overrides(cfg, "universe", symbols=("BTCUSDT", "FILUSDT", "ALGOUSDT"), trade=("FILUSDT",))
            t0 = time.perf_counter()
            r = evolve(cfg, run_dir=Path(d) / name)
            res[name] = {"seconds": time.perf_counter() - t0, "features_kept": r.manifest["features"],
                         "candidates": r.manifest["candidates_evaluated"],
                         "causal_seconds": (r.manifest.get("causal_filter") or {}).get("seconds")}
    res["ratio_panel_over_single"] = res["panel"]["seconds"] / res["single"]["seconds"]
    res["generations"] = gens
    return res


def memory() -> dict:
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.data.panels import lead_lag_panel, write_klines
    from forge.evolution.run import evolve

    n = 525_600
    with tempfile.TemporaryDirectory() as d:
        frames = lead_lag_panel(n, seed=0)
        for s, f in frames.items():
            write_klines(f, Path(d) / "data", s, "perp" if s == "FOLLUSDT" else "spot", name="2024")
        del frames
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cfg = with_overrides(load_run_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.toml"),
                             "evolve", data=(str(Path(d) / "data"),), generations=1, output_dir=d)
        cfg = with_overrides(cfg, "universe", symbols=("MKTUSDT", "LEADUSDT", "FOLLUSDT"), trade=("FOLLUSDT",))
        t0 = time.perf_counter()
        r = evolve(cfg, run_dir=Path(d) / "mem")
        secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"bars": n, "instruments": 3, "terminals": len(r.manifest["causal_filter"]["candidates"])
            if r.manifest.get("causal_filter") and "candidates" in r.manifest["causal_filter"] else None,
            "peak_rss_mib": peak, "rss_before_evolve_mib": rss0, "evolve_seconds": secs,
            "features_kept": r.manifest["features"]}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("candidate", "run", "memory"))
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--gens", type=int, default=2)
    ap.add_argument("-n", type=int, default=200)
    a = ap.parse_args(argv)
    if a.what == "candidate":
        out = candidate(a.data, a.n)
    elif a.what == "run":
        out = run(a.data, a.gens)
    else:
        out = memory()
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
