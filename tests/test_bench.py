"""forge bench baselines: the bottleneck/scipy kernels behind DEAP compute the reference functions."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("bottleneck")

from loop.bench import kernel_agreement, library_primitives, library_pset, memory_bandwidth  # noqa: E402
from forge.gp import build_pset, compile_program, deap_compile_function, genome_from_individual, run_program  # noqa: E402
from forge.gp.primitives import BY_NAME, WINDOWS  # noqa: E402
from forge.gp.pset import Operators  # noqa: E402


def _series(n: int, seed: int, nan_at: tuple[int, ...] = ()) -> np.ndarray:
    g = np.random.default_rng(seed)
    x = 100.0 + np.cumsum(g.normal(0.0, 1.0, n))  # continuous: no ties, no flat windows
    x[list(nan_at)] = np.nan
    return x


@pytest.mark.parametrize("name", sorted(library_primitives()))
def test_library_kernel_equals_reference(name):
    fn, ref = library_primitives()[name], BY_NAME[name].numpy_fn
    x, y = _series(3000, 1, nan_at=(0, 1, 700, 1500)), _series(3000, 2, nan_at=(900,))
    for w in WINDOWS:
        args = (x, y, w) if name == "ts_corr" else (x, w)
        a, b = fn(*args), ref(*args)
        assert np.array_equal(np.isnan(a), np.isnan(b)), (name, w)
        ok = ~np.isnan(b)
        assert ok.sum() > 1000
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-7, atol=1e-7 * max(1.0, float(np.max(np.abs(b[ok])))),
                                   err_msg=f"{name} w={w}")


@pytest.mark.parametrize("name", sorted(library_primitives()))
def test_library_kernel_on_a_series_shorter_than_the_window(name):
    x = _series(30, 6)
    args = (x, x[::-1].copy(), 60) if name == "ts_corr" else (x, 60)
    assert np.all(np.isnan(library_primitives()[name](*args)))
    assert np.all(np.isnan(BY_NAME[name].numpy_fn(*args)))


def test_library_flat_window_rule_and_rank_ties():
    lib = library_primitives()
    x = np.r_[np.linspace(0.0, 5.0, 50), np.full(30, 2.5)]  # a constant stretch after moving values
    for w in (5, 10, 20):
        assert np.all(lib["ts_zscore"](x, w)[-(30 - w + 1):] == 0.0)
        assert np.all(lib["ts_corr"](x, x[::-1].copy(), w)[-(30 - w + 1):] == 0.0)
    # a NaN in one window wins over the other window being flat
    y = np.r_[np.full(20, 1.0), np.linspace(0.0, 1.0, 20)]
    z = np.linspace(0.0, 3.0, 40)
    z[10] = np.nan  # inside the flat stretch of y
    assert np.array_equal(np.isnan(lib["ts_corr"](y, z, 5)), np.isnan(BY_NAME["ts_corr"].numpy_fn(y, z, 5)))
    # move_rank averages ties; the reference counts strictly smaller values (documented difference)
    assert lib["ts_rank"](np.full(10, 1.0), 5)[-1] == 0.5
    assert BY_NAME["ts_rank"].numpy_fn(np.full(10, 1.0), 5)[-1] == 0.0


def test_library_pset_trees_match_vm_on_continuous_data():
    names = ("a", "b", "c")
    g = np.random.default_rng(3)
    X = np.ascontiguousarray(np.vstack([np.cumsum(g.normal(0, 1, 4000)) for _ in names]))
    # primitive set 1: set 2 holds a state for up to 3w bars, so one threshold flip spreads over many bars
    pset, fast = build_pset(names, max_version=1), library_pset(names)
    random.seed(7)
    trees = Operators(pset, 8, 40).init_population(60, 2, 6)
    rows = [X[i] for i in range(3)]
    differ, checked = 0, 0
    for t in trees:
        if "ts_rank" in str(t):  # intermediate series have ties (e.g. ts_rank(ts_std(div(a, a)))): see above
            continue
        vm = run_program(compile_program(genome_from_individual(t, pset), names), X)
        lib = np.asarray(deap_compile_function(t, fast)(*rows), dtype=np.float64)
        differ += int(np.count_nonzero(vm != lib))
        checked += 1
    assert checked >= 40
    # only comparisons right at a threshold may flip with the libraries' running-sum rounding
    assert differ <= 1e-4 * checked * X.shape[1]


def test_kernel_agreement_reports_every_kernel():
    x = np.ascontiguousarray(np.vstack([_series(600, 4), _series(600, 5)]))
    ka = kernel_agreement(x)
    assert set(ka) == {k for n in library_primitives() for k in (n, f"{n}_nan_mismatch")}
    assert ka["ts_mean"] < 1e-9 and ka["ts_min"] == 0.0 and ka["ema"] < 1e-9


def test_memory_bandwidth_fields():
    bw = memory_bandwidth(n=10_000, big=200_000, repeats=4)
    for k in ("copy_small", "add_small", "copy_big", "add_big"):
        assert bw[f"{k}_elems_per_s"] > 0
        assert bw[f"{k}_gb_per_s"] == pytest.approx(bw[f"{k}_elems_per_s"] * (16 if "copy" in k else 24) / 1e9)


def test_per_phase_table_of_a_default_generation():
    """forge bench --full's per-phase rows come from generations.jsonl's phase clock (issue 21)."""
    from loop.bench import generation_phases, phase_rows
    from forge.evolution.clock import PHASES

    def row(gen, fitness, coev, n):
        ph = dict.fromkeys(PHASES, 0.0)
        ph.update(fitness=fitness, coevolution=coev, surrogate_proxy=2.0)
        return {"gen": gen, "nevals": n, "encounters": 34, "seconds": fitness + coev + 2.5, "phase_seconds": ph}

    got = generation_phases([row(1, 1.0, 10.0, 100), row(2, 3.0, 12.0, 140)])
    assert got["phase_seconds"]["fitness"] == 2.0 and got["phase_seconds"]["coevolution"] == 11.0
    assert got["fitness_evals_per_s"] == 240 / 4.0 and got["encounters"] == 34.0
    rows = phase_rows({**got, "seconds_per_generation": 15.5})
    assert [r["measured"] for r in rows][:2] == ["0.00 s", "2.00 s"]  # breed, surrogate_proxy
    fit = next(r for r in rows if "`fitness`" in r["name"])
    assert "60 evals/s of fitness time" in fit["name"] and fit["ratio"] == "13%"
    # the necessary-work row: wall time over (fitness + encounters + quiet markets CPU) / workers
    work = {"fitness": 2.0, "encounters": 10.0, "quiet_markets": 4.0}
    worked = [{**row(g, 1.0, 10.0, 100), "work_cpu_seconds": work, "work_bound_seconds": 8.0,
               "overhead_ratio": 13.5 / 8.0} for g in (1, 2)]
    got = generation_phases(worked)
    assert got["jobs"] == 2.0 and got["overhead_ratios"] == [13.5 / 8.0] * 2
    assert got["overhead_ratios_without_quiet_markets"] == [pytest.approx(13.5 / 6.0)] * 2
    first = phase_rows({**got, "seconds_per_generation": 13.5})[0]
    assert first["baseline_measured"] == "8.00 s" and first["ratio"].startswith("1.69x") and "2.25x" in first["ratio"]
    assert generation_phases([{"gen": 1, "nevals": 3}])["phase_seconds"] == {}


def test_offspring_are_new_children_and_the_allocator_is_tuned():
    """The warm-cache row's offspring are distinct children that copy no parent (the memo would skip
    those); tune_allocator reports what it set."""
    import random

    from loop.bench import offspring_genomes, tune_allocator
    from loop.bench.vm import _tiled_features
    from forge.gp import Operators, build_pset, genome_from_individual

    names = _tiled_features(1)[0]
    pset = build_pset(names)
    random.seed(5)
    parents = [genome_from_individual(t, pset) for t in Operators(pset, 8, 40).init_population(30, 2, 5)]
    entries = [{"genome": g.to_dict(), "fitness": float(i), "metrics": {}} for i, g in enumerate(parents)]
    state = random.getstate()
    kids = offspring_genomes(entries, n=40, seed=1)
    assert random.getstate() == state  # the caller's stream is left alone
    shas = [g.sha256 for g in kids]
    assert len(kids) == 40 and len(set(shas)) == 40 and not set(shas) & {g.sha256 for g in parents}
    assert [g.sha256 for g in offspring_genomes(entries, n=40, seed=1)] == shas  # seeded
    assert "mallopt" in tune_allocator() or "default allocator" in tune_allocator()
