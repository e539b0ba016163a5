"""CPU cost of one surrogate proxy candidate, and its parts (issue 27 part 4; RESULTS.md, "The proxy screen in one
kernel").

Runs one generation of the default config on the last ``--bars`` shared BTCUSDT bars, captures the first batch of
proxy candidates the screen scores (the distinct unknown genomes of generation 1's candidates) with the proxy
segment, then, in this process: ``evaluate_chunk`` per candidate with the proxy path (the one-pass alpha kernel)
and with the full path (``lstsq``), and the parts -- positions, ``run_backtest``, ``skill_fitness`` -- one by one;
the largest difference between the two paths' period scores; and the first-touch cost of a fresh 1 GB array (the
page faults that bound the subtree cache's benchmark rows).

    PYTHONPATH=. python benchmarks/proxy_cost.py [--bars 410320] [--passes 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"


def capture(bars_n: int) -> tuple:
    import forge.evolution.surrogate as sg
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.data.loader import load_klines
    from forge.evolution import evolve

    bars, _ = load_klines([SHARED])
    got: list[tuple] = []
    orig = sg.Screen.descriptors

    def hook(self, genomes, clock=None):  # noqa: ANN001
        if len(genomes) > 1000 and not got:
            p = self.proxy
            got.append((list(genomes), p.data, p.bt, p.fit, p.max_size, p.fill))
        return orig(self, genomes, clock)

    sg.Screen.descriptors = hook
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = with_overrides(load_run_config(REPO / "configs" / "default.toml"), "evolve", generations=1,
                                 output_dir=tmp)
            evolve(cfg, bars=bars.tail(bars_n), run_dir=Path(tmp) / "run")
    finally:
        sg.Screen.descriptors = orig
    return got[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=410_320)
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()
    from forge.backtest import run_backtest
    from forge.evolution.evaluator import _market, evaluate_chunk
    from forge.evolution.fitness import objective_scores, period_bounds, skill_fitness
    from forge.evolution.fitness_nb import alpha_period_scores_nb
    from forge.gp import BufferPool
    from forge.strategy import genome_positions

    genomes, segs, bt, fit, max_size, fill = capture(a.bars)
    n = len(genomes)
    print(f"{n} proxy candidates on {segs[0].open_.shape[0]} proxy bars")
    evaluate_chunk(genomes[:50], segs, bt, fit, max_size, 0, "mean", fill, True)
    evaluate_chunk(genomes[:50], segs, bt, fit, max_size, 0, "mean", fill, False)
    for proxy in (True, False):
        for _ in range(a.passes):
            t0 = time.process_time()
            evaluate_chunk(genomes, segs, bt, fit, max_size, 0, "mean", fill, proxy)
            print(f"evaluate_chunk, proxy={proxy}: {1e6 * (time.process_time() - t0) / n:.1f} us CPU per candidate")
    data, pool = segs[0], BufferPool()
    ref = _market(data, bt)
    edges = np.array([x for x, _ in period_bounds(data.open_.shape[0], fit.periods)] + [data.open_.shape[0]])
    out = np.empty(fit.periods)
    tp = tb = ts = tk = worst = 0.0
    for g in genomes:
        t0 = time.perf_counter()
        pos = genome_positions(g, data.features, data.bars_since_gap, pool, None)
        t1 = time.perf_counter()
        res = run_backtest(data.open_, data.close, data.open_time, pos, bt)
        t2 = time.perf_counter()
        skill_fitness(res.metrics, res.returns, ref, len(g.tokens), max_size, fit, bt.periods_per_year)
        t3 = time.perf_counter()
        alpha_period_scores_nb(res.returns, ref.returns, ref.managed, edges, bt.periods_per_year,
                               fit.resid_sd_floor, out)
        t4 = time.perf_counter()
        full = np.asarray(objective_scores("alpha", res.returns, ref.returns, fit.periods, bt.periods_per_year,
                                           ref.managed, fit.resid_sd_floor))
        worst = max(worst, float(np.max(np.abs(out - full) / np.maximum(1.0, np.abs(full)))))
        tp, tb, ts, tk = tp + t1 - t0, tb + t2 - t1, ts + t3 - t2, tk + t4 - t3
    print(f"per candidate, us: positions {1e6 * tp / n:.1f}, run_backtest {1e6 * tb / n:.1f}, skill_fitness (lstsq) "
          f"{1e6 * ts / n:.1f}, alpha kernel {1e6 * tk / n:.1f}; kernel vs lstsq: max |diff| / max(1, |score|) "
          f"{worst:.2e}")
    big = np.empty(1 << 27)  # 1 GB
    t0 = time.perf_counter()
    big[::512] = 1.0  # one write per 4 KiB page
    t1 = time.perf_counter()
    big[:] = 2.0
    t2 = time.perf_counter()
    print(f"1 GB fresh array: first touch {t1 - t0:.2f} s, a second full write {t2 - t1:.2f} s")


if __name__ == "__main__":
    main()
