"""The regime model inside forge evolve: fitted on in-sample bars only, a frozen run-directory artifact with
its fitted range, refused when it overlaps the out-of-sample range, and never refitted afterwards (resume,
the Gauntlet and its truncation test only filter with it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import forge.features.regimes as regimes_mod
from forge.core.errors import ConfigError
from forge.core.rundir import FILES, read_manifest
from forge.core.runconfig import load_run_config, with_overrides
from forge.data.ranges import DataRange
from forge.data.synthetic import bars_from_spec
from forge.evolution.market import Market
from forge.evolution.run import evolve, refuse_out_of_sample_leaks
from forge.features.regimes import load_regime_model, write_regime_model

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.toml"


def _cfg(out: Path, **regimes):
    cfg = load_run_config(SMOKE)
    cfg = with_overrides(cfg, "evolve", output_dir=str(out), generations=1, population=8, seed=3, jobs=1)
    cfg = with_overrides(cfg, "causal", enabled=True)
    cfg = with_overrides(cfg, "surrogate", enabled=False)
    cfg = with_overrides(cfg, "coevolution", enabled=False)
    return with_overrides(cfg, "regimes", **({"enabled": True, "max_states": 2, "n_init": 1} | regimes))


@pytest.fixture(scope="module")
def bars():
    return bars_from_spec("synthetic:null?seed=5&days=2")


@pytest.fixture(scope="module")
def run(tmp_path_factory, bars):
    out = tmp_path_factory.mktemp("runs")
    return evolve(_cfg(out), bars=bars, run_dir=out / "r")


def test_the_model_is_fitted_on_the_in_sample_bars_and_frozen_in_the_run_dir(run, bars):
    man = read_manifest(run.run_dir)
    model = load_regime_model(run.run_dir / FILES.regime_model)
    split = man.split["in_sample"]
    assert model.data_range.first_open_ms == split["first_open_ms"]
    assert model.data_range.last_open_ms == split["last_open_ms"]  # not one out-of-sample bar
    assert model.data_range.n_bars == split["rows"][1] - split["rows"][0]
    assert man.files["regime_model"] == FILES.regime_model
    # the terminals survive the causal filter (they gate rules) and are in the run's feature list
    assert set(model.feature_names) <= set(man.features)


def test_gauntlet_and_its_truncation_recompute_never_refit(run, bars, monkeypatch):
    from gauntlet.context import RunContext

    def refuse(*a, **k):
        raise AssertionError("the regime model was refitted")

    monkeypatch.setattr(regimes_mod, "fit_regime_model", refuse)
    ctx = RunContext.load(run.run_dir, bars=bars)
    i = ctx.features.names.index("regime_p0")
    cut = bars.height - 300
    trunc = ctx.features.names  # truncation: features from bars <= cut equal the full-history ones
    from forge.strategy import strategy_features

    part = strategy_features(bars.head(cut), trunc, None, run.run_dir / FILES.regime_model)
    assert np.array_equal(part.values, ctx.features.values[:, :cut], equal_nan=True)
    for cand in ctx.candidates:
        assert np.array_equal(cand.position_fn(bars.head(cut)), cand.position[:cut], equal_nan=True)
    # the gauntlet reads the artifact: another model in the file gives other terminal values
    m = load_regime_model(run.run_dir / FILES.regime_model)
    write_regime_model(dataclasses.replace(m, transmat=np.full_like(m.transmat, 1.0 / m.n_states)),
                       run.run_dir / "other.json")
    other = strategy_features(bars, ("regime_p0",), None, run.run_dir / "other.json")
    assert not np.array_equal(other.values[0], ctx.features.values[i])


def test_resume_reads_the_frozen_model(tmp_path, bars, monkeypatch):
    cfg = with_overrides(_cfg(tmp_path), "evolve", generations=2)
    evolve(cfg, bars=bars, run_dir=tmp_path / "r", stop_after=1)
    before = (tmp_path / "r" / FILES.regime_model).read_text()
    monkeypatch.setattr(regimes_mod, "fit_regime_model", lambda *a, **k: pytest.fail("refitted on resume"))
    import forge.evolution.run as run_mod

    monkeypatch.setattr(run_mod, "fit_regime_model", lambda *a, **k: pytest.fail("refitted on resume"))
    res = evolve(cfg, bars=bars, run_dir=tmp_path / "r", resume=True)
    assert res.champion is not None
    assert (tmp_path / "r" / FILES.regime_model).read_text() == before


def test_a_model_fitted_on_out_of_sample_bars_is_refused(tmp_path, bars, run):
    m = load_regime_model(run.run_dir / FILES.regime_model)
    t = bars["open_time"].to_numpy()
    late = dataclasses.replace(m, data_range=DataRange(int(t[-500]), int(t[-1]), 500))
    p = write_regime_model(late, tmp_path / "late.json")
    cfg = _cfg(tmp_path, model=str(p))
    market = Market.build("", bars, None, ("ret_1",), cfg.evolve.in_sample_fraction)
    with pytest.raises(ConfigError, match="regime model was fitted on"):
        refuse_out_of_sample_leaks(cfg, [market], None, late)
    with pytest.raises(ConfigError, match="regime model"):
        evolve(cfg, bars=bars, run_dir=tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
    # fitted before the out-of-sample range: accepted
    refuse_out_of_sample_leaks(cfg, [market], None, m)


def test_regimes_off_writes_no_artifact(tmp_path, bars):
    res = evolve(_cfg(tmp_path, enabled=False), bars=bars, run_dir=tmp_path / "r")
    assert not (res.run_dir / FILES.regime_model).exists()
    assert not any(n.startswith("regime_") for n in read_manifest(res.run_dir).features)


def test_the_gauntlet_publishes_the_frozen_model_beside_its_champions(run, bars, tmp_path):
    """The Gauntlet's context carries the run's regime_model.json, which publish_champion ships (signed sha256)."""
    import json

    from gauntlet.context import RunContext
    from gauntlet.publish import publish_champion

    ctx = RunContext.load(run.run_dir, bars=bars)
    assert ctx.regimes == run.run_dir / FILES.regime_model
    cand = ctx.candidates[0]
    meta = json.loads(Path(publish_champion(cand.genome, tmp_path, run_id="r", symbol=None,
                                            features=list(cand.genome.features), verdict={},
                                            regime_model=ctx.regimes)).read_text())
    assert (tmp_path / meta["regime_model"]).read_bytes() == ctx.regimes.read_bytes()
