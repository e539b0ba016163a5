"""forge bench --full: the rows measured on an evolved population (subtree cache, worker scaling),
the simulator, the surrogate, end-to-end evolve on one year, the Crucible replay and peak memory."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np

from forge.core import rng

from loop.bench.cache import (_cache_rows, _warm_cache_row, evolved_population, offspring_genomes, vm_cache_vs_deap,
                                vm_warm_cache_vs_deap)
from loop.bench.short import run_bench
from loop.bench.vm import _tiled_features


# --------------------------------------------------------------------------- forge bench --full


def _market(n_bars: int):
    from forge.data.gaps import bars_since_gap
    from forge.evolution.market import MarketArrays
    from forge.features import FeatureMatrix

    names, X = _tiled_features(n_bars)
    from forge.data.loader import load_sample

    bars, _ = load_sample()
    reps = -(-n_bars // bars.height)
    o = np.tile(bars["open"].to_numpy(), reps)[:n_bars]
    c = np.tile(bars["close"].to_numpy(), reps)[:n_bars]
    t = (np.arange(n_bars, dtype=np.int64) * 60_000) + int(bars["open_time"][0])
    fm = FeatureMatrix(names=names, values=X, lookbacks=(0,) * len(names))
    import polars as pl

    frame = pl.DataFrame({"open_time": t, "open": o, "close": c})
    return MarketArrays(feature_names=names, feature_lookbacks=fm.lookbacks, X=X, open_=o, close=c, open_time=t,
                        bars_since_gap=bars_since_gap(t), token=f"bench-{n_bars}"), frame


def worker_scaling(genomes: list[Any], n_bars: int = 400_000, repeats: int = 7) -> dict[str, Any]:
    """Fitness evaluations/s of the same genomes with 1 and 2 joblib workers (cache off).

    Both evaluators stay open and their passes alternate (1, 2, 1, 2, ...), so a slow spell of the
    machine hits both; returns the best pass of each and the median of the per-pair ratios
    (``speedup``), which is robust to one noisy pass (a pass is ~1 s)."""
    from forge.backtest import BacktestConfig
    from forge.evolution.evaluator import Evaluator
    from forge.core.runconfig import FitnessConfig

    data, _ = _market(n_bars)
    with Evaluator(data, BacktestConfig(), FitnessConfig(), 40, 1) as ev1, \
            Evaluator(data, BacktestConfig(), FitnessConfig(), 40, 2) as ev2:
        for ev in (ev1, ev2):
            ev.evaluate(genomes[:4])  # warm-up (workers start, JIT load)
        secs: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeats):
            for jobs, ev in ((1, ev1), (2, ev2)):
                ev.memo.clear()
                t0 = time.perf_counter()
                ev.evaluate(genomes)
                secs[jobs].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(secs[1], secs[2])]
    return {"n_genomes": len(genomes), "n_bars": n_bars, "seconds_1": min(secs[1]), "seconds_2": min(secs[2]),
            "speedup": float(np.median(ratios)), "speedup_per_pair": ratios}


def surrogate_screens(n_candidates: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Candidates screened per second: descriptors incl. the proxy backtest on 2,000 bars, plus the LightGBM ranking."""
    from forge.backtest import BacktestConfig
    from forge.evolution.evaluator import Evaluator
    from forge.gp import Operators, build_pset, genome_from_individual
    from forge.core.runconfig import FitnessConfig
    from forge.evolution.surrogate import Surrogate, describe
    from forge.core.runconfig import SurrogateConfig

    data, _ = _market(2000)
    pset = build_pset(data.feature_names)
    random.seed(rng.int_seed(seed, "bench", "surrogate"))
    trees = Operators(pset, 8, 40).init_population(n_candidates + 300, 2, 6)
    genomes = [genome_from_individual(t, pset) for t in trees]
    sur = Surrogate(SurrogateConfig(), seed=seed)
    with Evaluator(data, BacktestConfig(), FitnessConfig(), 40, 1) as ev:
        warm = genomes[:300]
        fits = [f for f, _ in ev.evaluate(warm)]
        sur.observe(np.vstack([describe(g, data.feature_names, f) for g, f in zip(warm, fits)]), fits)
        t0 = time.perf_counter()
        cand = genomes[300:]
        proxies = [f for f, _ in ev.evaluate(cand)]
        X = np.vstack([describe(g, data.feature_names, p) for g, p in zip(cand, proxies)])
        sur.select(X, rng.generator(seed, "bench", "select"))
        s = time.perf_counter() - t0
    return {"n_candidates": n_candidates, "seconds": s, "screens_per_s": n_candidates / s}


def end_to_end(n_bars: int = 525_600, generations: int = 3) -> dict[str, Any]:
    """Generations per minute of the default config (causal filter on) on
    one year of BTCUSDT 1m bars (the shared data's last year when present,
    else the sample tiled in time)."""
    import json
    import tempfile
    from pathlib import Path

    import polars as pl

    from forge.data.loader import load_klines, load_sample
    from forge.evolution.run import evolve
    from forge.core.runconfig import load_run_config, with_overrides

    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance" / "spot" / "BTCUSDT" / "1m"
    if shared.is_dir():
        bars, _ = load_klines([shared])
        bars = bars.tail(n_bars)
        source = f"shared BTCUSDT, last {bars.height:,} bars"
    else:
        sample, _ = load_sample()
        reps = -(-n_bars // sample.height)
        span = sample.height * 60_000
        bars = pl.concat([sample.with_columns(pl.col("open_time") + k * span, pl.col("close_time") + k * span)
                          for k in range(reps)]).head(n_bars)
        source = f"embedded sample tiled to {bars.height:,} bars"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(load_run_config(None), "evolve", generations=generations, output_dir=tmp)
        t0 = time.perf_counter()
        res = evolve(cfg, bars=bars, run_dir=Path(tmp) / "run")
        total = time.perf_counter() - t0
        rows = [json.loads(x) for x in (res.run_dir / "generations.jsonl").read_text().splitlines()]
    later = [r for r in rows if r["gen"] >= 1]
    per_gen = float(np.mean([r["seconds"] for r in later]))
    return {"source": source, "n_bars": bars.height, "generations": generations, "total_seconds": total,
            "seconds_per_generation": per_gen, "generations_per_minute": 60.0 / per_gen,
            "population": cfg.evolve.population, "candidates_per_generation": rows[-1].get("candidates"),
            **generation_phases(later)}


def generation_phases(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean per-phase clock of ``generations.jsonl`` rows (``forge.evolution.clock``): {"phase_seconds":
    {phase: mean s}, "nevals": mean full evaluations, "encounters": mean co-evolution encounters,
    "fitness_evals_per_s": full evaluations per second of fitness time (pooled over the rows)}."""
    from forge.evolution.clock import PHASES

    rows = [r for r in rows if isinstance(r.get("phase_seconds"), dict)]
    if not rows:
        return {"phase_seconds": {}, "nevals": 0.0, "encounters": 0.0, "fitness_evals_per_s": 0.0}
    fit_s = sum(r["phase_seconds"]["fitness"] for r in rows)
    out = {"phase_seconds": {p: float(np.mean([r["phase_seconds"][p] for r in rows])) for p in PHASES},
           "nevals": float(np.mean([r["nevals"] for r in rows])),
           "encounters": float(np.mean([r.get("encounters") or 0 for r in rows])),
           "fitness_evals_per_s": sum(r["nevals"] for r in rows) / fit_s if fit_s > 0 else 0.0}
    worked = [r for r in rows if r.get("overhead_ratio")]
    if worked:  # necessary work (forge.evolution.clock): CPU seconds per kind, and wall time over its bound
        jobs = [sum(r["work_cpu_seconds"].values()) / r["work_bound_seconds"] for r in worked]
        # the stricter reading: quiet markets counted as overhead, only fitness and encounters as work
        strict = [r["seconds"] * j / (r["work_cpu_seconds"]["fitness"] + r["work_cpu_seconds"]["encounters"])
                  for r, j in zip(worked, jobs) if r["work_cpu_seconds"]["fitness"] + r["work_cpu_seconds"]["encounters"] > 0]
        out.update({"work_cpu_seconds": {k: float(np.mean([r["work_cpu_seconds"][k] for r in worked]))
                                         for k in worked[0]["work_cpu_seconds"]},
                    "work_bound_seconds": float(np.mean([r["work_bound_seconds"] for r in worked])),
                    "overhead_ratios": [float(r["overhead_ratio"]) for r in worked],
                    "overhead_ratios_without_quiet_markets": strict, "jobs": float(np.mean(jobs))})
    return out


def phase_rows(e2e: dict[str, Any]) -> list[dict[str, str]]:
    """``forge bench --full`` rows of the per-phase table of a default generation (from :func:`end_to_end`)."""
    per_gen = e2e["seconds_per_generation"]
    out = []
    if e2e.get("overhead_ratios"):
        w = e2e["work_cpu_seconds"]
        ratios, strict = e2e["overhead_ratios"], e2e["overhead_ratios_without_quiet_markets"]
        out.append({"name": "default generation vs its necessary work (generations >= 1; CPU seconds measured in the "
                            f"processes that did it: full fitness {w['fitness']:.1f}, encounters {w['encounters']:.1f}, "
                            f"distinct quiet markets {w['quiet_markets']:.1f}; spread over {e2e['jobs']:.0f} workers)",
                    "measured": f"{per_gen:.2f} s", "baseline": "the necessary work's bound (its CPU seconds / workers)",
                    "baseline_measured": f"{e2e['work_bound_seconds']:.2f} s",
                    "ratio": (f"{float(np.median(ratios)):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}; counting "
                              f"only fitness and encounters {float(np.median(strict)):.2f}x)" if strict else
                              f"{float(np.median(ratios)):.2f}x"),
                    "goal": "<= 2x (issue 21)"})
    for phase, secs in e2e["phase_seconds"].items():
        extra = ""
        if phase == "fitness":
            extra = f"; {e2e['nevals']:.0f} full evaluations, {e2e['fitness_evals_per_s']:.0f} evals/s of fitness time"
        elif phase == "coevolution":
            extra = f"; {e2e['encounters']:.0f} encounters"
        out.append({"name": f"default generation phase `{phase}` (mean of generations >= 1{extra})",
                    "measured": f"{secs:.2f} s", "baseline": "the generation's wall time",
                    "baseline_measured": f"{per_gen:.2f} s", "ratio": f"{secs / per_gen:.0%}" if per_gen else "—",
                    "goal": "—"})
    return out


def peak_memory_symbols(n_symbols: int = 5, n_bars: int = 525_600) -> dict[str, Any]:
    """Peak RSS of ``forge evolve`` over ``n_symbols`` symbols x one year of 1m bars (1 generation),
    in a child process; symbols are copies of BTCUSDT at other price levels."""
    import resource
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import polars as pl

    from forge.data.loader import load_sample

    sample, _ = load_sample()
    reps = -(-n_bars // sample.height)
    span = sample.height * 60_000
    year = pl.concat([sample.with_columns(pl.col("open_time") + k * span, pl.col("close_time") + k * span)
                      for k in range(reps)]).head(n_bars).with_columns(pl.lit(0).alias("ignore"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        syms = [f"SYM{i}USDT" for i in range(n_symbols)]
        for i, s in enumerate(syms):
            scaled = year.with_columns([pl.col(c) * (1.0 + 0.5 * i) for c in ("open", "high", "low", "close")])
            scaled.write_csv(root / f"{s}-1m-2024-01.csv", include_header=False)
        cmd = [str(Path(sys.executable).parent / "forge"), "evolve", "--data", str(root), "--symbols", ",".join(syms),
               "--gens", "1", "--pop", "50", "--causal-filter", "off", "--out", str(root / "runs")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
                              env={**os.environ, "FORGE_CACHE_DIR": str(root / "cache")})
        secs = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark run failed: {proc.stderr[-2000:]}")
    return {"n_symbols": n_symbols, "n_bars_per_symbol": n_bars, "peak_rss_gib": max(peak_kib, before) / 2**20,
            "seconds": secs}


def _simulator_row(st: dict[str, Any]) -> dict[str, str]:
    """The simulator events/s row of ``forge.sim.market.sim_throughput``."""
    return {"name": f"simulator book events/s incl. agents (1 day = {st['day_minutes']} bars in "
                    f"{st['seconds_per_day']:.2f} s)",
            "measured": f"{st['events_per_s'] / 1e6:,.2f} M/s",
            "baseline": "ABIDES (quoted); pure-Python reference book replaying the same messages, "
                        "same run (numba book alone on them: "
                        f"{st['numba_book_msgs_per_s'] / 1e6:,.1f} M/s)",
            "baseline_measured": f"0.014 M/s; {st['python_book_msgs_per_s'] / 1e6:,.3f} M/s",
            "ratio": f"{st['sim_vs_abides_ratio']:.0f}x; book vs book {st['book_ratio']:.1f}x",
            "goal": ">= 3 M/s (issue 21), day <= 1 s"}


def _surrogate_row(ss: dict[str, Any]) -> dict[str, str]:
    """The surrogate screens/s row of :func:`surrogate_screens`."""
    return {"name": f"surrogate screens/s ({ss['n_candidates']:,} candidates: descriptors + 2,000-bar proxy "
                    "backtest + LightGBM rank)",
            "measured": f"{ss['screens_per_s']:,.0f} /s", "baseline": "full fitness evaluations/s (below)",
            "baseline_measured": "see scaling row", "ratio": "—", "goal": "—"}


def _scaling_row(ws: dict[str, Any], n_bars: int) -> dict[str, str]:
    """The 1 -> 2 workers row of :func:`worker_scaling`."""
    pairs = ws["speedup_per_pair"]
    return {"name": f"fitness evaluation, 1 -> 2 joblib workers ({ws['n_genomes']} genomes x {n_bars:,} bars; "
                    f"{len(pairs)} alternating passes each, evals/s of the fastest pass, ratio = median of the "
                    f"pass-pair ratios, range {min(pairs):.2f}-{max(pairs):.2f}x)",
            "measured": f"{ws['n_genomes'] / ws['seconds_2']:,.1f} evals/s on 2",
            "baseline": "1 worker (same run)", "baseline_measured": f"{ws['n_genomes'] / ws['seconds_1']:,.1f} evals/s",
            "ratio": f"{ws['speedup']:.2f}x", "goal": ">= 1.8x"}


def _end_to_end_row(e2e: dict[str, Any]) -> dict[str, str]:
    """The generations/minute row of :func:`end_to_end`."""
    return {"name": f"end-to-end `forge evolve` default config ({e2e['source']}; pop {e2e['population']}, "
                    f"{e2e['candidates_per_generation']:,} candidates/gen)",
            "measured": f"{e2e['generations_per_minute']:.2f} gen/min",
            "baseline": "PySR (anchor named; no comparable figure run here)", "baseline_measured": "—",
            "ratio": "—", "goal": "—"}


def _crucible_row(cr: dict[str, Any]) -> dict[str, str]:
    """The ``crucible live`` replay bars/s row of ``crucible.benchmark.replay_throughput``."""
    return {"name": f"`crucible live` replay bars/s, 6 built-in slots, embedded sample "
                    f"({cr['fast']['orders_per_bar']:.2f} orders/bar; chunked signals, group commit)",
            "measured": f"{cr['fast']['bars_per_s']:,.0f} bars/s",
            "baseline": "same bench on the exchange code path (per-bar rolling window, FULL journal)",
            "baseline_measured": f"{cr['baseline']['bars_per_s']:,.0f} bars/s",
            "ratio": f"{cr['ratio']:.1f}x", "goal": ">= 10,000 bars/s"}


def _memory_row(mem: dict[str, Any]) -> dict[str, str]:
    """The peak-memory row of :func:`peak_memory_symbols`."""
    return {"name": "peak memory, `forge evolve` 5 symbols x 1 year of 1m bars (1 gen, pop 50)",
            "measured": f"{mem['peak_rss_gib']:.2f} GiB", "baseline": "goal", "baseline_measured": "4 GiB",
            "ratio": f"{mem['peak_rss_gib'] / 4:.2f}", "goal": "<= 4 GiB"}


def run_bench_full(n_bars: int = 400_000, seed: int = 0, progress=None) -> dict[str, Any]:
    """Every ``forge bench --full`` row, measured in one run on this machine.

    returns {"machine": str, "rows": [{name, measured, baseline, baseline_measured, ratio, goal}],
    "raw": {benchmark: its measurement dict}}; ``progress(message)`` is told before each step."""
    say = progress or (lambda _m: None)
    say("short rows (VM vs DEAP on random trees, memory bandwidth, backtest vs vectorbt)")
    base = run_bench(n_bars=n_bars, seed=seed, progress=say)
    rows, raw = list(base["rows"]), dict(base["raw"])
    say("evolving a population for 10 generations (embedded sample)")
    from forge.gp import Genome

    entries = evolved_population(seed=seed)
    genomes = [Genome.from_dict(e["genome"]) for e in entries]
    say("VM with subtree cache vs DEAP on the evolved population")
    raw["vm_cache_vs_deap"] = vm_cache_vs_deap(genomes, n_bars=n_bars)
    rows.extend(_cache_rows(raw["vm_cache_vs_deap"]))
    try:
        say("VM with a warm subtree cache vs DEAP on the next generation's offspring")
        raw["vm_warm_cache_vs_deap"] = vm_warm_cache_vs_deap(genomes, offspring_genomes(entries, seed=seed),
                                                             n_bars=n_bars)
        rows.append(_warm_cache_row(raw["vm_warm_cache_vs_deap"]))
    except ImportError as exc:
        rows.append({"name": "VM + warm subtree cache on offspring", "measured": "—",
                     "baseline": "DEAP gp.compile + bottleneck/scipy.signal.lfilter kernels",
                     "baseline_measured": f"not installed (the [bench] extra): {exc}", "ratio": "—", "goal": ">= 5x"})
    try:
        from forge.sim.market import sim_throughput

        say("simulator events/s")
        raw["simulator"] = sim_throughput(seed)
        rows.append(_simulator_row(raw["simulator"]))
    except ImportError:
        pass
    say("surrogate screens/s")
    raw["surrogate"] = surrogate_screens(seed=seed)
    rows.append(_surrogate_row(raw["surrogate"]))
    say("worker scaling 1 -> 2")
    raw["scaling"] = worker_scaling(genomes, n_bars=n_bars)
    rows.append(_scaling_row(raw["scaling"], n_bars))
    say("end-to-end default config on one year")
    raw["end_to_end"] = end_to_end()
    rows.append(_end_to_end_row(raw["end_to_end"]))
    rows.extend(phase_rows(raw["end_to_end"]))
    try:
        from crucible.benchmark import replay_throughput

        say("crucible replay throughput (6 slots)")
        raw["crucible_replay"] = replay_throughput(bars=15_000, baseline_bars=1_000)
        rows.append(_crucible_row(raw["crucible_replay"]))
    except ImportError:
        pass
    say("peak memory 5 symbols x 1 year")
    raw["memory"] = peak_memory_symbols()
    rows.append(_memory_row(raw["memory"]))
    return {"machine": base["machine"], "rows": rows, "raw": raw}
