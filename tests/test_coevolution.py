"""Predator/prey co-evolution smoke runs (tiny populations): dual fitness recorded, predator hall of
fame in the manifest, Pareto mode, and kill-and-resume equality with predators in the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forge.evolution.coevolution import PredatorPopulation, pareto_order
from forge.core.runconfig import CoevolutionConfig
from forge.core.errors import ConfigError
from forge.evolution import evolve, resume_run
from forge.core.runconfig import load_run_config, with_overrides

REPO = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, mode: str = "weighted", **evolve_changes):
    cfg = load_run_config(REPO / "configs" / "smoke.toml")
    cfg = with_overrides(cfg, "evolve", output_dir=str(tmp_path), population=4, offspring=4, **evolve_changes)
    cfg = with_overrides(cfg, "causal", enabled=False)
    return with_overrides(cfg, "coevolution", enabled=True, mode=mode, predators=3, predators_met=1,
                          predator_hof=1, sim_minutes=300, warmup_minutes=240, max_warmup_minutes=240,
                          calibration=str(tmp_path / "no-calibration.json"))  # warm-up length: its own test


def test_coevolution_smoke_kill_and_resume(tmp_path):
    cfg = _cfg(tmp_path, generations=2)
    full = evolve(cfg, run_dir=tmp_path / "full")
    co = full.manifest["coevolution"]
    assert co["mode"] == "weighted" and len(co["predator_hall_of_fame"]) == 1 and len(co["history"]) == 3
    for m in full.hall_of_fame:
        met = m["in_sample"]
        assert {"backtest_fitness", "adversarial_bp"} <= set(met)
        assert m["fitness"] == pytest.approx(met["backtest_fitness"] + met["adversarial_bp"])
    gens = [json.loads(x) for x in (full.run_dir / "generations.jsonl").read_text().splitlines()]
    assert all("adversarial_mean_bp" in g and "predator_best" in g for g in gens)
    evolve(cfg, run_dir=tmp_path / "killed", stop_after=1)
    resumed = resume_run(tmp_path / "killed")
    a = (full.run_dir / "hall_of_fame.json").read_text().replace(full.run_id, "RUN")
    b = (resumed.run_dir / "hall_of_fame.json").read_text().replace(resumed.run_id, "RUN")
    assert a == b
    assert resumed.manifest["coevolution"]["predator_hall_of_fame"] == co["predator_hall_of_fame"]


@pytest.mark.slow  # ~90 s on 2 cores (two loky workers load the VM and simulator); run with -m slow
def test_encounters_on_two_workers_give_the_same_run_as_in_process(tmp_path):
    """With jobs=2 the encounters run on the fitness workers (Evaluator.map); nothing may change."""
    one = evolve(_cfg(tmp_path, generations=1, jobs=1), run_dir=tmp_path / "one")
    two = evolve(_cfg(tmp_path, generations=1, jobs=2), run_dir=tmp_path / "two")
    a = (one.run_dir / "hall_of_fame.json").read_text().replace(one.run_id, "RUN")
    b = (two.run_dir / "hall_of_fame.json").read_text().replace(two.run_id, "RUN")
    assert a == b
    assert one.manifest["coevolution"] == two.manifest["coevolution"]


def test_each_quiet_market_is_simulated_once_per_generation(tmp_path):
    """score and step of one generation simulate each distinct (scenario, length) quiet market once, in one
    task, and share it: encounters never simulate their own first pass (they used to, once per worker)."""
    from forge.evolution.coevolution import Arena, Coevolution, _encounter_task, _quiet_task
    from forge.gp import Genome

    calls: list = []

    def counting_map(fn, tasks):
        calls.extend((fn, t) for t in tasks)
        return [fn(*t) for t in tasks]

    cc = CoevolutionConfig(predators=3, predators_met=1, predator_hof=1, sim_minutes=300, warmup_minutes=240,
                           max_warmup_minutes=400, calibration=str(tmp_path / "none.json"))
    fast = Genome.from_tokens(["long_short", "gt_c", "feature:ret_1", "const:0", "lt_c", "feature:ret_1", "const:1"],
                              [0.0, 0.0])
    slow = Genome.from_tokens(["long_short", "gt_c", "feature:vol_240", "const:0", "lt_c", "feature:vol_240",
                               "const:1"], [0.001, 0.0005])
    arena = Arena(cc, ("ret_1", "vol_240"))
    coev = Coevolution(cc, arena, np.random.default_rng(0), map_tasks=counting_map)
    lengths = {arena.encounter_minutes(g) for g in (fast, slow)}
    assert len(lengths) == 2  # two encounter lengths
    coev.score([fast, slow])  # 1 current predator (the hall of fame is still empty)
    coev.step([slow, fast])  # all 3 predators
    quiet = [t for fn, t in calls if fn is _quiet_task]
    keys = [(t[1].tobytes(), t[3]) for t in quiet]
    assert len(keys) == len(set(keys))  # never twice
    assert len(keys) == 3 * len(lengths | {cc.sim_minutes})  # every predator at both lengths (+ realism's)
    enc = [t for fn, t in calls if fn is _encounter_task]
    assert len(enc) == coev.encounters == 1 * 2 + 3 * 2
    assert coev.cpu_seconds["encounters"] > 0.0 and coev.cpu_seconds["quiet_markets"] > 0.0
    # an encounter on its shared quiet market equals one that simulates its own
    _arena, g, sc, seed, bars = enc[-1]
    assert arena.encounter(g, sc, seed, bars) == Arena(cc, ("ret_1", "vol_240")).encounter(g, sc, seed)


def test_pareto_mode_runs_and_nsga2_keeps_the_front():
    obj = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [-1.0, -1.0], [0.2, 0.2]])
    keep = pareto_order(obj, 3)
    assert set(keep) == {0, 1, 2}


def test_predator_breeding_stays_in_bounds_and_is_seeded():
    a = PredatorPopulation.initial(5, np.random.default_rng(0))
    b = PredatorPopulation.initial(5, np.random.default_rng(0))
    for p in (a, b):
        p.fitness = np.arange(5.0)
        p.update_hof(2)
        p.breed(np.random.default_rng(1), 0.3)
    assert np.array_equal(a.genomes, b.genomes) and (a.genomes >= 0).all() and (a.genomes <= 1).all()
    assert a.hof[0][0] == 4.0


def test_config_errors():
    with pytest.raises(ConfigError, match="mode"):
        CoevolutionConfig(mode="nope").validate()
    with pytest.raises(ConfigError, match="predators_met"):
        CoevolutionConfig(predators=2, predators_met=3).validate()


def test_pareto_mode_smoke(tmp_path):
    res = evolve(_cfg(tmp_path, mode="pareto", generations=1), run_dir=tmp_path / "pareto")
    assert res.manifest["coevolution"]["mode"] == "pareto"
    for m in res.hall_of_fame:  # Pareto mode keeps the backtest fitness as the hall-of-fame key
        assert m["fitness"] == pytest.approx(m["in_sample"]["backtest_fitness"])


def test_event_budget_caps_encounters_and_marks_the_predator_unrealistic(tmp_path):
    """A market that needs more book events than the budget is cut short, never raises, and its predator
    is penalised below every scenario within budget."""
    from forge.evolution.coevolution import OVER_BUDGET_PENALTY, Arena, Coevolution
    from forge.gp import Genome
    from forge.sim.params import no_scenario

    g = Genome.from_tokens(["pos_sign", "feature:ret_1"], [])
    roomy = Arena(CoevolutionConfig(sim_minutes=360, warmup_minutes=240, calibration=str(tmp_path / "none.json")),
                  ("ret_1",))
    tight = Arena(CoevolutionConfig(sim_minutes=360, warmup_minutes=240, max_events_per_minute=100,
                                     calibration=str(tmp_path / "none.json")), ("ret_1",))
    # seed 0 = the arenas' own seed, whose quiet market is also the reference without a calibration file
    assert np.isfinite(roomy.realism(no_scenario(), 0)) and roomy.truncated == 0
    assert tight.realism(no_scenario(), 0) == float("inf") and tight.truncated == 1
    assert np.isfinite(tight.encounter(g, no_scenario(), 0)) and tight.truncated == 2
    co = Coevolution(CoevolutionConfig(predators=2, max_events_per_minute=100, sim_minutes=360, warmup_minutes=240,
                                        calibration=str(tmp_path / "none.json")), tight, np.random.default_rng(0))
    row = co.step([g], n_prey=1)
    assert row["over_budget"] == 2 and row["predator_best"] <= -OVER_BUDGET_PENALTY + 1e3
    json.dumps(row, allow_nan=False)  # the logbook row stays strict JSON


def test_slow_strategies_warm_up_for_their_whole_lookback_and_meet_the_predators(tmp_path):
    """Issue 17 item 6: with a fixed 240-minute warm-up a strategy reading 240-bar windows never traded in a
    480-minute encounter (0 bp/bar, immune to every predator).  The warm-up now covers the strategy's whole
    look-back (operators + features), capped by max_warmup_minutes; short strategies keep the old warm-up."""
    from forge.evolution.coevolution import Arena
    from forge.gp import Genome
    from forge.sim.params import no_scenario

    cal = str(tmp_path / "none.json")
    fast = Genome.from_tokens(["pos_sign", "feature:ret_1"], [])
    slow = Genome.from_tokens(["pos_sign", "sub", "feature:vol_240", "ts_mean", "feature:vol_240", "window:240"], [])
    arena = Arena(CoevolutionConfig(sim_minutes=360, warmup_minutes=240, calibration=cal), ("ret_1", "vol_240"))
    assert arena.warmup_for(fast) == 240
    assert arena.warmup_for(slow) == 240 + 239 + 1  # vol_240's own warm-up + ts_mean's 239 bars + 1
    assert arena.encounter(slow, no_scenario(), 0) != 0.0  # it trades (and pays) inside the simulator
    capped = Arena(CoevolutionConfig(sim_minutes=360, warmup_minutes=240, max_warmup_minutes=300, calibration=cal),
                   ("ret_1", "vol_240"))
    assert capped.warmup_for(slow) == 300 and capped.encounter(slow, no_scenario(), 0) == 0.0
    with pytest.raises(ConfigError, match="max_warmup_minutes"):
        CoevolutionConfig(warmup_minutes=240, max_warmup_minutes=100).validate()
