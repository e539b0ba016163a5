"""``[evolve] synthesize = true`` (issue 30 part 2): the library is fitted on in-sample bars only, frozen in
the run directory with its fitted range, checked by the out-of-sample leak refusal, and never refitted by
the Gauntlet (its truncation test included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_synthesize_inside_evolve_is_frozen_and_in_sample(tmp_path, monkeypatch):
    import forge.synthesize as synth
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import evolve
    from gauntlet.context import RunContext
    from gauntlet.stages.lookahead import lookahead_check

    cfg = with_overrides(load_run_config(REPO / "configs" / "smoke.toml"), "evolve", output_dir=str(tmp_path),
                         generations=1, synthesize=True, synthesize_seconds=0.001)
    cfg = with_overrides(cfg, "causal", enabled=False)
    calls = []
    real = synth.synthesize

    def counted(bars, *a, **k):
        calls.append(bars.height)
        return real(bars, *a, **k)

    monkeypatch.setattr(synth, "synthesize", counted)
    res = evolve(cfg, run_dir=tmp_path / "r")
    m = res.manifest
    assert len(calls) == 1 and calls[0] == m["split"]["in_sample"]["rows"][1]  # in-sample bars only
    lib = json.loads((res.run_dir / m["files"]["feature_library"]).read_text())
    names = [f["name"] for f in lib["features"]]
    assert names and set(names) <= set(m["features"])
    assert lib["meta"]["data_range"]["last_open_ms"] < m["split"]["out_of_sample"]["first_open_ms"]
    assert lib["meta"]["stopped_by_budget"] is True and lib["meta"]["fitted_in_run"] is True

    def never(*_a, **_k):
        raise AssertionError("the Gauntlet refitted the feature library")

    monkeypatch.setattr(synth, "synthesize", never)
    ctx = RunContext.load(res.run_dir, max_candidates=1)
    assert ctx.library is not None
    assert lookahead_check(ctx.candidates[0].position_fn, ctx.bars, [1000, 2000])["violations"] == []


def test_synthesize_and_a_library_flag_are_exclusive():
    from forge.core.runconfig import load_run_config, with_overrides

    with pytest.raises(ConfigError, match="cannot be combined"):
        with_overrides(load_run_config(None), "evolve", synthesize=True, feature_library="lib.json")
