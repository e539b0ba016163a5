"""The run-directory contract (forge.core.rundir): paired writers and readers, versioning, clear errors."""

from __future__ import annotations

import json

import pytest

from forge.core.errors import RunDirError
from forge.core.rundir import (
    FILES, SCHEMA_VERSION, Checkpoint, EvaluatedRecord, HallOfFame, HallOfFameMember, append_evaluated,
    iter_evaluated, read_checkpoint, read_hall_of_fame, read_run_config, start_logs, truncate_logs,
    write_checkpoint, write_hall_of_fame, write_run_config,
)
from forge.gp import Genome

G = Genome.from_tokens(["long_only", "gt_c", "feature:ret_1", "const:0"], [0.001])
METRICS = {"sharpe": 1.5, "n_trades": 12, "ttt_bars": float("inf")}


def _member(rank: int) -> HallOfFameMember:
    return HallOfFameMember(rank=rank, fitness=2.0 - rank, expression=G.expression(), size=len(G.tokens),
                            genome=G.to_dict(), in_sample=METRICS, out_of_sample=METRICS,
                            out_of_sample_buy_and_hold=METRICS)


def test_hall_of_fame_round_trip_and_version(tmp_path):
    write_hall_of_fame(tmp_path, HallOfFame(run_id="r1", members=(_member(0), _member(1))))
    raw = json.loads((tmp_path / FILES.hall_of_fame).read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and "out_of_sample_per_symbol" not in raw["members"][0]
    hof = read_hall_of_fame(tmp_path)
    assert hof.run_id == "r1" and [m.rank for m in hof.members] == [0, 1]
    assert hof.members[0].to_genome() == G
    assert hof.members[0].in_sample["ttt_bars"] == "inf"  # non-finite floats as strings (atomic_write_json)


def test_readers_name_file_and_field(tmp_path):
    with pytest.raises(RunDirError, match="hall_of_fame.json: missing"):
        read_hall_of_fame(tmp_path)
    (tmp_path / FILES.hall_of_fame).write_text(json.dumps({"run_id": "r", "members": [{"rank": 0}]}))
    with pytest.raises(RunDirError, match="missing field 'fitness'"):
        read_hall_of_fame(tmp_path)
    (tmp_path / FILES.hall_of_fame).write_text(json.dumps({"members": [], "schema_version": 99}))
    with pytest.raises(RunDirError, match="schema_version 99"):
        read_hall_of_fame(tmp_path)
    with pytest.raises(RunDirError, match="not a run directory"):
        read_run_config(tmp_path)


def test_evaluated_log_append_iterate_truncate(tmp_path):
    start_logs(tmp_path)
    recs = [EvaluatedRecord(G.sha256, G, 1.25, METRICS), EvaluatedRecord("x" * 64, G, -100.0, {})]
    append_evaluated(tmp_path, recs)
    got = list(iter_evaluated(tmp_path))
    assert [(r.sha256, r.fitness) for r in got] == [(G.sha256, 1.25), ("x" * 64, -100.0)]
    assert got[0].genome == G and got[0].in_sample["ttt_bars"] == float("inf")
    truncate_logs(tmp_path, generations=0, evaluated=1)
    assert len(list(iter_evaluated(tmp_path))) == 1
    with (tmp_path / FILES.evaluated).open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(RunDirError, match=r"evaluated.jsonl:2: corrupt row"):
        list(iter_evaluated(tmp_path))


def test_checkpoint_and_run_config_round_trip(tmp_path):
    ck = Checkpoint(gen=3, population=[{"genome": G.to_dict(), "fitness": 1.0, "metrics": {}}], hall_of_fame=[],
                    random_state=[3, [1, 2, 3], None], numpy_state={"bit_generator": "PCG64"}, n_evaluated=7,
                    evaluated_lines=7, surrogate_rows=0, coevolution=None)
    write_checkpoint(tmp_path, ck)
    assert read_checkpoint(tmp_path) == ck
    write_run_config(tmp_path, {"evolve": {"seed": 4}}, "configs/smoke.toml")
    assert read_run_config(tmp_path) == ({"evolve": {"seed": 4}}, "configs/smoke.toml")
