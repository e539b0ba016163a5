"""Holdout mode of ``gauntlet validate``: bars after the run's last bar are validated as fresh data.

On the pre-holdout code this crashed (in_sample (0, 0) reached the backtester: "open_: no bars"). Here: a
planted-edge run's champion passes on fresh planted bars, a noise run's champion is rejected, the report
says "holdout", DSR/PBO are reported from the run's own validation and never gate, and bad, too few or
overlapping bars exit 3 with one line naming the ranges.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.data.synthetic import synthetic_bars

DAY = 1440
RUN_DAYS, TOTAL_DAYS = 14, 22


def _oracle(work: Path, kind: str, strength: float, seed: int):
    from forge.core.runconfig import load_run_config
    from loop.honesty import oracle_genome, oracle_run

    bars, _ = synthetic_bars(seed, strength, TOTAL_DAYS, kind=kind)
    run_bars = bars.head(RUN_DAYS * DAY)
    cfg = load_run_config(None)
    rd = oracle_run(run_bars, oracle_genome(240), work / kind, cfg, cfg.evolve.in_sample_fraction)
    fresh = work / f"{kind}_fresh.parquet"  # one day of warm-up before the run's end, then 8 fresh days
    bars.slice((RUN_DAYS - 1) * DAY).write_parquet(fresh)
    full = work / f"{kind}_full.parquet"  # everything: the run's own bars (in-sample included) + fresh ones
    bars.write_parquet(full)
    return rd, run_bars, fresh, full


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("holdout")
    return {"planted": _oracle(work, "planted", 0.25, 2001), "null": _oracle(work, "null", 0.0, 1001), "work": work}


def test_holdout_planted_champion_passes_on_fresh_bars(runs):
    from cli import gauntlet_app
    from gauntlet.config import GauntletConfig
    from gauntlet.validate import validate_run

    rd, run_bars, fresh, _ = runs["planted"]
    own = validate_run(rd, GauntletConfig(), publish_dir=None, bars=run_bars)  # the run's own validation
    own_text = (rd / "gauntlet_report.json").read_text()
    r = CliRunner().invoke(gauntlet_app, ["validate", str(rd), "--data", str(fresh), "--no-publish",
                                          "--fail-on-reject"])
    assert r.exit_code == 0, r.output
    assert "holdout" in r.output and "Traceback" not in r.output
    rep = json.loads((rd / "gauntlet_holdout.json").read_text())
    assert (rd / "gauntlet_report.json").read_text() == own_text  # the run's own report is kept
    ev = rep["evaluation"]
    assert ev["holdout"] and ev["mode"] == "holdout"
    last = json.loads((rd / "manifest.json").read_text())["split"]["out_of_sample"]["last"]
    assert ev["first"] > last  # only bars after the run's last bar are evaluated
    assert ev["rows"][1] - ev["rows"][0] == (TOTAL_DAYS - RUN_DAYS) * DAY
    assert len(rep["candidates"]) == 1 and rep["survivors"] == [rep["candidates"][0]["sha256"]]
    st = rep["candidates"][0]["stages"]
    for n in ("dsr", "pbo"):  # reported from the run's own validation, not applied
        assert st[n]["passed"] and st[n]["details"]["applied"] is False
        assert "run's own validation" in st[n]["reason"]
        assert st[n]["details"]["run_passed"] == own.verdicts[0]["stages"][n].passed
    for n in ("psr", "permutation", "pcmci", "dowhy"):
        assert st[n]["passed"], (n, st[n]["reason"])


def test_holdout_noise_champion_is_rejected_and_selection_recomputed(runs):
    from cli import gauntlet_app

    rd, _, _, full = runs["null"]  # no own report: DSR/PBO recomputed from the in-sample bars given
    r = CliRunner().invoke(gauntlet_app, ["validate", str(rd), "--data", str(full), "--no-publish",
                                          "--json", "--candidates", "all"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["evaluation"]["holdout"] and not rep["survivors"]
    assert rep["shared"]["trials"]["n_total"] >= 1
    st = rep["candidates"][0]["stages"]
    assert "recomputed from the run's in-sample trials" in st["dsr"]["reason"]
    r6 = CliRunner().invoke(gauntlet_app, ["validate", str(rd), "--data", str(full), "--no-publish",
                                           "--fail-on-reject"])
    assert r6.exit_code == 6, r6.output


def test_holdout_bad_too_few_or_overlapping_bars_exit_3_with_one_line(runs, tmp_path):
    from cli import gauntlet_app

    rd, run_bars, fresh, _ = runs["planted"]
    bars, _ = synthetic_bars(2001, 0.25, TOTAL_DAYS, kind="planted")
    few = tmp_path / "few.parquet"
    bars.slice(RUN_DAYS * DAY - 10, 60).write_parquet(few)  # 50 bars after the run's last bar
    r = CliRunner().invoke(gauntlet_app, ["validate", str(rd), "--data", str(few), "--no-publish"])
    assert r.exit_code == 3 and "Traceback" not in r.output
    assert "50 bars after the run's last bar" in r.output and "→" in r.output
    ov = tmp_path / "ov.parquet"
    run_bars.write_parquet(ov)  # the run's own bars: no bar after it, overlaps its in-sample range
    r = CliRunner().invoke(gauntlet_app, ["validate", str(rd), "--data", str(ov), "--no-publish"])
    assert r.exit_code == 3 and "overlaps the run's in-sample range" in r.output and "→" in r.output
    r = CliRunner().invoke(gauntlet_app, ["validate", str(rd), "--data", str(fresh), "--candidates", "best",
                                          "--no-publish"])
    assert r.exit_code == 2 and "--candidates" in r.output
