"""No out-of-sample leak through fitted inputs (issue 17 item 5): forge evolve refuses a feature library or a
simulator calibration fitted on bars that overlap the run's out-of-sample range, and accepts one fitted before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import forge_app
from forge.core.config import CONFIG_DIR
from forge.core.errors import ConfigError
from forge.data.loader import load_sample
from forge.data.ranges import DataRange
from forge.core.runconfig import load_run_config, with_overrides
from forge.evolution.market import Market
from forge.evolution.run import refuse_out_of_sample_leaks
from forge.features.library import write_feature_library
from forge.synthesize import SynthesisConfig, synthesize

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.toml"
SHIPPED = CONFIG_DIR / "sim" / "calibration_btcusdt_1m.json"
TINY = SynthesisConfig(population=8, generations=1, n_features=1, sample_rows=300, null_permutations=2)


@pytest.fixture(scope="module")
def sample():
    bars, cov = load_sample()
    market = Market.build("", bars, cov, ("ret_1",), 0.7)
    a, b = market.split.out_of_sample
    return bars, market, DataRange(*market.split.out_of_sample_ms, b - a)


def _library(tmp_path: Path, bars, name: str) -> Path:
    return write_feature_library(synthesize(bars, TINY), tmp_path / name)


def _calibration(tmp_path: Path, data_range: dict | None) -> Path:
    d = json.loads(SHIPPED.read_text())
    d["settings"].pop("data_range", None)
    if data_range is not None:
        d["settings"]["data_range"] = data_range
    p = tmp_path / "cal.json"
    p.write_text(json.dumps(d))
    return p


def _cfg(tmp_path: Path, **evolve):
    cfg = with_overrides(load_run_config(SMOKE), "evolve", output_dir=str(tmp_path), **evolve)
    return cfg


def test_library_fitted_on_out_of_sample_bars_is_refused_in_one_line(tmp_path, sample):
    bars, market, oos = sample
    lib = _library(tmp_path, bars.tail(bars.height // 2), "late.json")  # its in-sample head reaches into our OOS
    fitted = DataRange.from_dict(json.loads(lib.read_text())["meta"]["data_range"], "lib")
    assert fitted.overlaps(oos)
    r = CliRunner().invoke(forge_app, ["evolve", "-c", str(SMOKE), "--gens", "0", "--pop", "8", "--causal-filter", "off",
                                       "--features", str(lib), "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and str(lib) in line and "feature library was fitted on" in line
    assert str(fitted) in line and str(oos) in line and "out-of-sample range" in line
    assert not (tmp_path / "runs").exists()  # refused before a run directory is made


def test_library_fitted_before_the_out_of_sample_range_is_accepted(tmp_path, sample):
    bars, market, oos = sample
    lib = _library(tmp_path, bars.head(bars.height // 2), "early.json")
    cfg = _cfg(tmp_path, feature_library=str(lib))
    from forge.features.library import load_feature_library

    refuse_out_of_sample_leaks(cfg, [market], load_feature_library(lib))  # no error
    # a library from before data_range was recorded: its in-sample split is the fitted range
    d = json.loads(lib.read_text())
    del d["meta"]["data_range"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(d))
    refuse_out_of_sample_leaks(_cfg(tmp_path, feature_library=str(old)), [market], load_feature_library(old))
    del d["meta"]["split"]
    old.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="records no data range"):
        refuse_out_of_sample_leaks(_cfg(tmp_path, feature_library=str(old)), [market], load_feature_library(old))


def test_calibration_overlapping_the_out_of_sample_range_is_refused(tmp_path, sample):
    bars, market, oos = sample
    whole = DataRange.of(bars).to_dict()
    cfg = with_overrides(_cfg(tmp_path), "coevolution", enabled=True, calibration=str(_calibration(tmp_path, whole)))
    with pytest.raises(ConfigError) as exc:
        refuse_out_of_sample_leaks(cfg, [market], None)
    msg = str(exc.value)
    assert "cal.json: simulator calibration was fitted on" in msg and str(oos) in msg and "--coevolution off" in msg
    # no recorded range: nothing shows the fit excluded the out-of-sample bars
    cfg = with_overrides(cfg, "coevolution", calibration=str(_calibration(tmp_path, None)))
    with pytest.raises(ConfigError, match="records no data_range"):
        refuse_out_of_sample_leaks(cfg, [market], None)
    # co-evolution off: the simulator is not used, nothing to refuse
    refuse_out_of_sample_leaks(with_overrides(cfg, "coevolution", enabled=False), [market], None)


def test_calibration_fitted_before_the_out_of_sample_range_is_accepted(tmp_path, sample):
    bars, market, oos = sample
    head = DataRange.of(bars.head(market.split.in_sample[1])).to_dict()
    cfg = with_overrides(_cfg(tmp_path), "coevolution", enabled=True, calibration=str(_calibration(tmp_path, head)))
    refuse_out_of_sample_leaks(cfg, [market], None)
    # a missing file is no leak (the built-in DSG is used)
    refuse_out_of_sample_leaks(with_overrides(cfg, "coevolution", calibration=str(tmp_path / "none.json")), [market], None)


def test_shipped_calibration_records_an_in_sample_range_that_excludes_the_default_runs_out_of_sample(sample):
    """The shipped fit covers the head 70% of the shared BTCUSDT bars (the in-sample range of a default run on
    all of them); it ends before the embedded sample, so a default run on the sample may use it."""
    bars, market, oos = sample
    rng = DataRange.from_dict(json.loads(SHIPPED.read_text())["settings"]["data_range"], str(SHIPPED))
    assert rng.n_bars == 287_224 and not rng.overlaps(oos) and rng.last_open_ms < oos.first_open_ms
    cfg = with_overrides(load_run_config(CONFIG_DIR / "default.toml"), "coevolution", enabled=True)  # --coevolution on
    refuse_out_of_sample_leaks(cfg, [market], None)
