"""[synthesize] and [calibrate] config tables (issue 16 item 3): shipped defaults, --config files, flags on top."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import forge_app
from forge.core.config import CONFIG_DIR
from forge.core.errors import ConfigError
from forge.data.loader import load_sample
from forge.data.split import holdout_split
from forge.sim.calibrate import CalibrateConfig, load_calibrate_config
from forge.synthesize import SynthesisConfig, load_synthesis_config


def test_shipped_files_hold_the_package_defaults():
    assert (CONFIG_DIR / "synthesize.toml").is_file() and (CONFIG_DIR / "calibrate.toml").is_file()
    assert load_synthesis_config(CONFIG_DIR / "synthesize.toml") == SynthesisConfig()
    assert load_calibrate_config(CONFIG_DIR / "calibrate.toml") == CalibrateConfig()
    assert load_synthesis_config(None) == SynthesisConfig() and load_calibrate_config(None) == CalibrateConfig()


@pytest.mark.parametrize("text, match", [
    ("[synthesize]\npopulaton = 8\n", r"\[synthesize\]: unknown key\(s\) populaton"),
    ("[synthesize]\npopulation = 2\n", r"\[synthesize\]: synthesis.population must be >= 4, got 2"),
    ("[synthesize]\nhorizon = \"one\"\n", r"\[synthesize\].horizon: expected an integer"),
    ("[evolve]\nseed = 1\n", r"unknown section\(s\) evolve; valid: synthesize"),
])
def test_bad_synthesize_tables_name_file_table_and_key(tmp_path, text, match):
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_synthesis_config(p)
    assert str(p) in str(exc.value)


def test_bad_calibrate_table_is_a_one_line_cli_error(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[calibrate]\ntarget = \"everything\"\n")
    r = CliRunner().invoke(forge_app, ["calibrate", "--config", str(p)])
    assert r.exit_code == 2
    assert "target must be 'windows', 'pooled' or 'bootstrap'" in r.output and str(p) in r.output
    p.write_text("[calibrate]\ntarget = \"pooled\"\n")
    r = CliRunner().invoke(forge_app, ["calibrate", "--config", str(p), "--in-sample-fraction", "0"])
    assert r.exit_code == 2 and "command-line flags: in_sample_fraction must be in (0, 1], got 0.0" in r.output


def test_synthesize_honours_its_config_and_flags_override_it(tmp_path):
    out_cfg, out_flag = tmp_path / "from-config.json", tmp_path / "from-flag.json"
    p = tmp_path / "s.toml"
    p.write_text(f'[synthesize]\npopulation = 8\ngenerations = 1\nn_features = 2\nsample_rows = 300\n'
                 f'null_permutations = 2\nout = "{out_cfg}"\n')
    r = CliRunner().invoke(forge_app, ["synthesize", "--config", str(p), "--n-features", "1"])
    assert r.exit_code == 0, r.output
    lib = json.loads(out_cfg.read_text())
    cfg = lib["meta"]["config"]
    assert (cfg["population"], cfg["generations"], cfg["n_features"], cfg["sample_rows"]) == (8, 1, 1, 300)
    assert len(lib["features"]) <= 1
    # the library records the bars it was fitted on: the in-sample head of the embedded sample
    bars, _ = load_sample()
    split = holdout_split(bars["open_time"].to_numpy(), cfg["in_sample_fraction"], min_bars=1)
    rng = lib["meta"]["data_range"]
    assert (rng["first_open_ms"], rng["last_open_ms"], rng["n_bars"]) == (*split.in_sample_ms, split.in_sample[1])
    r = CliRunner().invoke(forge_app, ["synthesize", "--config", str(p), "--n-features", "1", "--out", str(out_flag)])
    assert r.exit_code == 0 and out_flag.is_file()


def test_calibrate_honours_its_config_fits_the_in_sample_head_and_records_it(tmp_path):
    out = tmp_path / "cal.json"
    p = tmp_path / "c.toml"
    p.write_text(f'[calibrate]\nbudget = 5\nminutes = 60\nseeds = 1\nn_boot = 10\nout = "{out}"\n')
    r = CliRunner().invoke(forge_app, ["calibrate", "--config", str(p), "--in-sample-fraction", "0.5"])
    assert r.exit_code == 0, r.output
    cal = json.loads(out.read_text())
    s = cal["settings"]
    assert (s["budget_evals"], s["n_minutes"], s["seeds"]) == (5, 60, [0])
    bars, _ = load_sample()
    split = holdout_split(bars["open_time"].to_numpy(), 0.5)
    rng = s["data_range"]
    assert (rng["first_open_ms"], rng["last_open_ms"], rng["n_bars"]) == (*split.in_sample_ms, split.in_sample[1])
    assert s["real_bars"] == split.in_sample[1]
