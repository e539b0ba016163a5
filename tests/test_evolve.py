"""End-to-end evolution on the embedded sample: run directory, determinism, config errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import forge_app, gauntlet_app, crucible_app
from forge.core.errors import ConfigError, DataError
from forge.data.split import holdout_split
from forge.evolution import evolve
from forge.gp import Genome
from forge.core.runconfig import load_run_config, with_overrides

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.toml"


def _cfg(tmp_path: Path, **changes):
    cfg = load_run_config(SMOKE)
    return with_overrides(cfg, "evolve", output_dir=str(tmp_path), **changes)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = _cfg(out, generations=2, population=16)
    events = []
    result = evolve(cfg, run_dir=out / "run-j1", progress=events.append)
    return cfg, result, events


def test_run_directory_contents(smoke_run):
    cfg, result, events = smoke_run
    d = result.run_dir
    for name in ("manifest.json", "generations.jsonl", "hall_of_fame.json", "champion.json"):
        assert (d / name).is_file(), name
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["seed"] == cfg.evolve.seed
    assert manifest["candidates_evaluated"] >= 1
    assert manifest["data"]["coverage"]["n_bars"] == 20160
    split = manifest["split"]
    # out-of-sample strictly after in-sample, never overlapping
    assert split["in_sample"]["last_open_ms"] < split["out_of_sample"]["first_open_ms"]
    assert split["in_sample"]["rows"][1] == split["out_of_sample"]["rows"][0]
    assert "numba" in manifest["packages"] and "deap" in manifest["packages"]
    lines = (d / "generations.jsonl").read_text().splitlines()
    assert [json.loads(x)["gen"] for x in lines] == [0, 1, 2]
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["causal", "start"] and kinds[-1] == "done"
    causal = json.loads((d / "causal.json").read_text())
    assert set(causal["kept"]) <= set(manifest["features"])
    assert manifest["causal_filter"]["kept"] == causal["kept"]
    hall = json.loads((d / "hall_of_fame.json").read_text())["members"]
    assert 1 <= len(hall) <= cfg.evolve.hall_of_fame_size
    fits = [m["fitness"] for m in hall]
    assert fits == sorted(fits, reverse=True)
    for m in hall:
        assert set(m) >= {"genome", "in_sample", "out_of_sample", "out_of_sample_buy_and_hold"}
        assert m["out_of_sample"]["n_bars"] == split["out_of_sample"]["rows"][1] - split["out_of_sample"]["rows"][0]
    champ = Genome.load(d / "champion.json")
    assert champ.sha256 == Genome.from_dict(hall[0]["genome"]).sha256


def test_hall_of_fame_is_best_seen(smoke_run):
    _cfg_, result, _ = smoke_run
    best_logged = max(json.loads(x)["best"] for x in (result.run_dir / "generations.jsonl").read_text().splitlines())
    assert math.isclose(result.hall_of_fame[0]["fitness"], best_logged)


def test_same_seed_same_hall_of_fame_across_jobs(tmp_path):
    texts = []
    for jobs in (1, 2):
        cfg = _cfg(tmp_path, generations=2, population=16, jobs=jobs)
        res = evolve(cfg, run_dir=tmp_path / f"run-j{jobs}")
        texts.append((res.run_dir / "hall_of_fame.json").read_text().replace(res.run_id, "RUN"))
    assert texts[0] == texts[1]


def test_different_seed_differs(tmp_path):
    hofs = []
    for seed in (1, 2):
        res = evolve(_cfg(tmp_path, generations=1, population=16, seed=seed), run_dir=tmp_path / f"s{seed}")
        hofs.append([m["expression"] for m in res.hall_of_fame])
    assert hofs[0] != hofs[1]


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[evolve]\npopulaton = 10\n")
    with pytest.raises(ConfigError, match="populaton"):
        load_run_config(bad)
    bad.write_text("[evolve]\npopulation = 'ten'\n")
    with pytest.raises(ConfigError, match="population"):
        load_run_config(bad)
    bad.write_text("[evolve]\ncxpb = 0.8\nmutpb = 0.5\n")
    with pytest.raises(ConfigError, match="cxpb"):
        load_run_config(bad)
    bad.write_text("[evolve\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="features"):
        evolve(_cfg(tmp_path, features=("no_such_feature",)), run_dir=tmp_path / "x")


def test_split_refuses_tiny_data():
    import numpy as np

    with pytest.raises(DataError, match="in/out-of-sample split"):
        holdout_split(np.arange(150, dtype=np.int64) * 60_000, 0.7)


def test_cli_smoke_evolve_and_show(tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "cli-run"
    r = runner.invoke(forge_app, ["evolve", "--config", str(SMOKE), "--gens", "1", "--pop", "12",
                                  "--run-dir", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert "Hall of fame" in r.output and (run_dir / "champion.json").is_file()
    r = runner.invoke(gauntlet_app, ["show", str(run_dir)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(crucible_app, ["verify", str(run_dir / "champion.json")])
    assert r.exit_code == 0 and "valid" in r.output
    tampered = tmp_path / "tampered.json"
    g = json.loads((run_dir / "champion.json").read_text())
    g["constants"] = [c + 1.0 for c in g["constants"]] or g["constants"]
    g["tokens"] = list(reversed(g["tokens"]))
    tampered.write_text(json.dumps(g))
    r = runner.invoke(crucible_app, ["verify", str(tampered)])
    assert r.exit_code == 4, r.output


def test_cli_bad_config_exit_code(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[evolve]\nseed = -1\n")
    r = CliRunner().invoke(forge_app, ["evolve", "--config", str(bad)])
    assert r.exit_code == 2
    assert "seed" in r.output


def test_kill_and_resume_gives_the_uninterrupted_hall_of_fame(tmp_path):
    """A run stopped after generation 1 (as after kill -9 between checkpoints)
    and resumed equals the uninterrupted run with the same seed."""
    from forge.evolution import resume_run

    cfg = _cfg(tmp_path, generations=3, population=16)
    full = evolve(cfg, run_dir=tmp_path / "full")
    part_dir = tmp_path / "killed"
    evolve(cfg, run_dir=part_dir, stop_after=1)
    assert not (part_dir / "hall_of_fame.json").exists()
    # debris a kill leaves behind: a half-written generation line and evaluations past the checkpoint
    with (part_dir / "generations.jsonl").open("a") as fh:
        fh.write('{"gen": 2, "trunc')
    with (part_dir / "evaluated.jsonl").open("a") as fh:
        fh.write('{"sha256": "dead"}\n')
    resumed = resume_run(part_dir)
    a = (full.run_dir / "hall_of_fame.json").read_text().replace(full.run_id, "RUN")
    b = (resumed.run_dir / "hall_of_fame.json").read_text().replace(resumed.run_id, "RUN")
    assert a == b
    assert full.manifest["candidates_evaluated"] == resumed.manifest["candidates_evaluated"]
    gens = [json.loads(x)["gen"] for x in (part_dir / "generations.jsonl").read_text().splitlines()]
    assert gens == [0, 1, 2, 3]


def test_resume_with_more_generations_extends_a_finished_run(tmp_path):
    """--resume RUN --gens N: a finished 2-generation run extended to 3 equals a 3-generation run."""
    from forge.core.errors import ConfigError
    from forge.evolution import resume_run

    full = evolve(_cfg(tmp_path, generations=3, population=16), run_dir=tmp_path / "full")
    short = evolve(_cfg(tmp_path, generations=2, population=16), run_dir=tmp_path / "short")
    with pytest.raises(ConfigError, match="extend, not shrink"):
        resume_run(short.run_dir, generations=1)
    longer = resume_run(short.run_dir, generations=3)
    a = json.loads((full.run_dir / "hall_of_fame.json").read_text())["members"]
    b = json.loads((longer.run_dir / "hall_of_fame.json").read_text())["members"]
    assert a == b
    assert longer.manifest["generations_run"] == 3


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    from forge.core.errors import RunDirError
    from forge.evolution import resume_run

    with pytest.raises(RunDirError, match="not a run directory"):
        resume_run(tmp_path)


def test_seed_genome_enters_initial_population(tmp_path):
    cfg = _cfg(tmp_path, generations=1, population=16)
    first = evolve(cfg, run_dir=tmp_path / "a")
    seed_file = first.run_dir / "champion.json"
    cfg2 = _cfg(tmp_path, generations=0, population=16, seed=9, seed_genomes=(str(seed_file),))
    second = evolve(cfg2, run_dir=tmp_path / "b")
    gen0 = [json.loads(x) for x in (second.run_dir / "evaluated.jsonl").read_text().splitlines()]
    assert Genome.load(seed_file).sha256 in {e["sha256"] for e in gen0}


def test_same_seed_same_hall_of_fame_across_processes(tmp_path):
    """Two separate processes, one seed: identical hall of fame (DEAP's cxOnePoint picks node types
    from a set of classes hashed by address, which differed between processes)."""
    import subprocess
    import sys

    halls = []
    for i in range(2):
        d = tmp_path / f"p{i}"
        subprocess.run([sys.executable, "-c", "from cli import forge_app; forge_app()", "evolve", "-c", str(SMOKE),
                        "--run-dir", str(d), "--gens", "3", "--causal-filter", "off"],
                       check=True, cwd=REPO, capture_output=True)
        halls.append(json.loads((d / "hall_of_fame.json").read_text())["members"])
    assert [m["genome"] for m in halls[0]] == [m["genome"] for m in halls[1]]


def test_two_runs_in_one_fresh_process_are_identical(tmp_path):
    """The first run in a process imports lightgbm lazily, whose import chain (scikit-learn -> rich) draws
    from Python's global ``random``; the run's DEAP stream must not see it (it did: the second run of a
    process diverged from the first at generation 1)."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from forge.evolution import evolve\n"
        "from forge.core.runconfig import load_run_config, with_overrides\n"
        "t = Path(sys.argv[1])\n"
        "cfg = with_overrides(load_run_config(sys.argv[2]), 'evolve', output_dir=str(t), generations=3, population=16)\n"
        "h = [json.loads((evolve(cfg, run_dir=t / f'r{i}').run_dir / 'hall_of_fame.json').read_text())['members']\n"
        "     for i in range(2)]\n"
        "assert 'lightgbm' in sys.modules\n"
        "print(json.dumps([[m['genome'] for m in x] for x in h]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(SMOKE)], check=True, cwd=REPO,
                         capture_output=True, text=True).stdout
    first, second = json.loads(out.strip().splitlines()[-1])
    assert first == second and len(first) > 0


def test_workers_get_the_segments_once_as_memory_maps():
    """With joblib workers the segments are written once as .npy files; tasks carry only a handle, the
    workers map the files read-only, results equal in-process evaluation, and the files go at exit."""
    import os

    from forge.backtest import BacktestConfig
    from loop.bench import _market
    from forge.evolution.evaluator import Evaluator, SharedSegments
    from forge.gp import Genome
    from forge.core.runconfig import FitnessConfig

    data, _ = _market(5_000)
    genomes = [Genome.from_tokens(["long_short", "gt_c", f"feature:{f}", "const:0", "lt_c", f"feature:{f}", "const:1"],
                                  [0.1, -0.1]) for f in data.feature_names[:6]]
    with Evaluator(data, BacktestConfig(), FitnessConfig(), 40, 1) as ev1:
        serial = ev1.evaluate(genomes)
    with Evaluator(data, BacktestConfig(), FitnessConfig(), 40, 2) as ev2:
        folder = ev2._shared.folder
        assert isinstance(ev2._shared, SharedSegments) and len(os.listdir(folder)) == 5
        assert len(__import__("pickle").dumps(ev2._shared)) < 2_000  # a handle, not the arrays
        parallel = ev2.evaluate(genomes)
    assert not os.path.exists(folder)
    assert [f for f, _m in serial] == [f for f, _m in parallel]


# ----------------------------------------------------------------------------- per-phase clock (issue 21)


def test_generation_rows_carry_a_per_phase_clock(smoke_run):
    """Every row of generations.jsonl has each phase's seconds (>= 0, summing to <= the generation's
    seconds), and evals_per_s is full evaluations per second of fitness time."""
    from forge.evolution.clock import PHASES

    _cfg_, result, events = smoke_run
    rows = [json.loads(x) for x in (result.run_dir / "generations.jsonl").read_text().splitlines()]
    for r in rows:
        ph = r["phase_seconds"]
        assert list(ph) == list(PHASES)
        assert all(isinstance(v, float) and v >= 0.0 for v in ph.values()), ph
        assert sum(ph.values()) <= r["seconds"] + 1e-9, (sum(ph.values()), r["seconds"])
        assert r["nevals"] == 0 or ph["fitness"] > 0.0
        assert r["evals_per_s"] == pytest.approx(r["nevals"] / ph["fitness"] if ph["fitness"] > 0 else 0.0)
        assert ph["breed"] > 0.0 and ph["checkpoint"] > 0.0  # both ran every generation
        assert isinstance(r["encounters"], int) and r["encounters"] >= 0
    for r in rows[1:]:  # the surrogate screens every later generation (enabled in smoke.toml)
        assert r["phase_seconds"]["surrogate_proxy"] > 0.0 and r["phase_seconds"]["surrogate_ranking"] > 0.0
    gen_events = [e for e in events if e["event"] == "generation"]
    assert [e["phase_seconds"] for e in gen_events] == [r["phase_seconds"] for r in rows]
    from forge.evolution.clock import WORK

    for r in rows:  # necessary work: CPU seconds per kind, their bound on the workers, the overhead ratio
        work = r["work_cpu_seconds"]
        assert list(work) == list(WORK) and all(v >= 0.0 for v in work.values())
        assert r["nevals"] == 0 or work["fitness"] > 0.0
        assert r["work_bound_seconds"] == pytest.approx(sum(work.values()) / _cfg_.evolve.jobs)
        assert r["overhead_ratio"] == pytest.approx(r["seconds"] / r["work_bound_seconds"])


def test_loky_workers_keep_their_caches():
    """A worker that grows by more than loky's 300 MB memory-leak bound (here a 400 MB cache kept in the
    worker, as the subtree cache and the arena's quiet markets are) is not restarted between tasks: before
    this, the fitness workers were replaced every few generations on a year of bars and paid imports,
    kernel loading and every cache again."""
    from forge.backtest import BacktestConfig
    from loop.bench import _market
    from forge.core.runconfig import FitnessConfig
    from forge.evolution.evaluator import Evaluator

    data, _ = _market(1_000)
    with Evaluator(data, BacktestConfig(), FitnessConfig(), 40, 2) as ev:
        pids = set()
        for _ in range(4):
            got = ev.map(_grow_and_report, [(400,), (400,)])
            pids |= {pid for pid, _n in got}
            __import__("time").sleep(1.1)  # loky checks a worker's memory at most once per second
        assert len(pids) == 2, pids
        assert all(n >= 1 for _pid, n in ev.map(_grow_and_report, [(0,), (0,)]))  # the caches survived


_GROWN: list = []


def _grow_and_report(mb: int) -> tuple[int, int]:
    """Worker task: keep ``mb`` MB more in this process (touched, so it is resident); (pid, blocks kept)."""
    import os

    import numpy as np

    if mb:
        _GROWN.append(np.ones(mb * 2**20 // 8))
    return os.getpid(), len(_GROWN)


def test_phase_clock_accumulates_and_refuses_nesting():
    from forge.evolution.clock import PhaseClock

    ticks = iter([0.0, 1.5, 2.0, 2.25, 10.0, 10.0])
    clock = PhaseClock(timer=lambda: next(ticks))
    with clock.phase("fitness"):
        pass
    with clock.phase("fitness"):
        pass
    assert clock.seconds()["fitness"] == pytest.approx(1.75)
    with pytest.raises(KeyError, match="unknown phase 'nap'"):
        with clock.phase("nap"):
            pass
    with pytest.raises(RuntimeError, match="must not nest"):
        with clock.phase("breed"):
            with clock.phase("fitness"):
                pass
    clock.start()
    assert set(clock.seconds().values()) == {0.0}


def test_resume_rebuilds_the_row_of_a_checkpoint_written_just_before_a_kill(tmp_path):
    """The checkpoint is written before its generation's row: a kill between the two leaves the log one
    row short; resume rebuilds that row (counters and statistics exact, timings None) and finishes the
    run with the uninterrupted hall of fame."""
    from forge.evolution import resume_run

    cfg = _cfg(tmp_path, generations=2, population=12)
    full = evolve(cfg, run_dir=tmp_path / "full")
    part = tmp_path / "killed"
    evolve(cfg, run_dir=part, stop_after=1)
    lines = (part / "generations.jsonl").read_text().splitlines(keepends=True)
    (part / "generations.jsonl").write_text("".join(lines[:-1]))  # the row of generation 1 never written
    resumed = resume_run(part)
    a = json.loads((full.run_dir / "hall_of_fame.json").read_text())["members"]
    b = json.loads((resumed.run_dir / "hall_of_fame.json").read_text())["members"]
    assert a == b
    rows = [json.loads(x) for x in (part / "generations.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (full.run_dir / "generations.jsonl").read_text().splitlines()]
    assert [r["gen"] for r in rows] == [0, 1, 2]
    assert rows[1]["rebuilt"] is True and rows[1]["seconds"] is None
    for key in ("nevals", "evaluated_total", "best", "median", "mean", "size_mean", "hof_best"):
        assert rows[1][key] == pytest.approx(ref[1][key]), key


def test_progress_line_shows_the_phase_clock_and_drops_it_first():
    from commands import ui

    e = {"gen": 2, "generations": 5, "best": 1.0, "hof_best": 1.5, "evals_per_s": 40.0,
         "phase_seconds": {"breed": 0.12, "surrogate_proxy": 3.0, "surrogate_descriptors": 0.5,
                           "surrogate_ranking": 0.7, "fitness": 1.26, "coevolution": 2.0, "selection": 0.0,
                           "checkpoint": 0.04, "bookkeeping": 0.01}}
    full = ui.generation_line(e)
    assert "breed 0.1 · surrogate 4.2 · fitness 1.3 · coev 2.0 · ckpt 0.0 s" in full
    narrow = ui.generation_line(e, width=60)
    assert "surrogate 4.2" not in narrow and "gen 2/5" in narrow and "40 evals/s" in narrow
