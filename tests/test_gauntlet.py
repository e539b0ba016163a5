"""Gauntlet: statistics against published numbers, each stage on synthetic cases with a known answer,
the report schema, the HTML report, publishing, and the CLI exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from gauntlet.stats import (deflated_sharpe_ratio, effective_trials, expected_max_sharpe, pbo_cscv,
                            probabilistic_sharpe_ratio)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- statistics

def test_dsr_matches_bailey_lopez_de_prado_2014_example():
    # N=100 trials, V[SR]=0.5 annualised, SR=2.5 annualised, T=1250 daily obs, skew -3, kurtosis 10
    sr, v = 2.5 / math.sqrt(250), 0.5 / 250
    sr0 = expected_max_sharpe(100, v)
    assert sr0 == pytest.approx(0.1132, abs=5e-4)
    assert probabilistic_sharpe_ratio(sr, sr0, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-4)


def test_psr_normal_case_and_one_trial():
    assert probabilistic_sharpe_ratio(0.0, 0.0, 100, 0.0, 3.0) == pytest.approx(0.5)
    assert expected_max_sharpe(1, 0.1) == 0.0
    # closed form for a normal: z = SR sqrt(T-1) / sqrt(1 + SR^2/2)
    z = 0.1 * math.sqrt(99) / math.sqrt(1 + 0.01 / 2)
    from scipy.stats import norm
    assert probabilistic_sharpe_ratio(0.1, 0.0, 100, 0.0, 3.0) == pytest.approx(norm.cdf(z))


def test_pbo_of_pure_noise_strategies_is_about_half():
    rng = np.random.default_rng(0)
    pbos = [pbo_cscv(rng.standard_normal((1000, 40)), n_blocks=10).pbo for _ in range(5)]
    assert 0.35 < float(np.mean(pbos)) < 0.65


def test_pbo_of_a_truly_better_strategy_is_low():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((2000, 20))
    m[:, 3] += 0.25  # one strategy with real edge
    assert pbo_cscv(m, n_blocks=10).pbo < 0.05


def test_effective_trials_counts_clusters():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((3, 500))
    x = np.vstack([b + 0.2 * rng.standard_normal((10, 500)) for b in base])
    et = effective_trials(x, 0.5)
    assert et.n_raw == 30 and et.n_effective == 3
    assert effective_trials(np.vstack([x, np.zeros((5, 500))]), 0.5).n_effective == 4  # flat trials: one more


# ---------------------------------------------------------------- stages on synthetic cases

def _planted_returns(n=20000, edge=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return 0.001 * (rng.standard_normal(n) + edge)


def test_dsr_passes_planted_and_rejects_random():
    good = deflated_sharpe_ratio(_planted_returns(edge=0.06), 20, 1 / 20000)
    bad = deflated_sharpe_ratio(_planted_returns(edge=0.0, seed=3), 20, 1 / 20000)
    assert good["dsr"] > 0.95 and bad["dsr"] < 0.5


def test_permutation_bootstrap_planted_vs_random():
    from gauntlet.stages.permutation import bootstrap_pvalue, spa_pvalue

    p_good, _ = bootstrap_pvalue(_planted_returns(edge=0.06), 60, 299, 0)
    null_p = [bootstrap_pvalue(_planted_returns(n=5000, edge=0.0, seed=s), 60, 199, s)[0] for s in range(20)]
    assert p_good < 0.02
    assert sum(p < 0.05 for p in null_p) <= 3 and 0.3 < float(np.mean(null_p)) < 0.7  # ~uniform under the null
    rng = np.random.default_rng(0)
    pnl = 0.01 * rng.standard_normal((500, 4))
    assert spa_pvalue(pnl, 12, 200, 0) > 0.05
    pnl[:, 2] += 0.004
    assert spa_pvalue(pnl, 12, 200, 0) < 0.05


def _leaky_and_causal(bars):
    close = bars["close"].to_numpy()

    def leaky(b: pl.DataFrame) -> np.ndarray:  # trades on the next bar's close: look-ahead
        c = b["close"].to_numpy()
        out = np.zeros(len(c))
        out[:-1] = np.sign(c[1:] - c[:-1])
        return out

    def causal(b: pl.DataFrame) -> np.ndarray:
        c = b["close"].to_numpy()
        out = np.zeros(len(c))
        out[20:] = np.sign(c[20:] - c[:-20])
        return out

    return leaky, causal, close


def test_lookahead_flags_a_leaky_strategy_and_passes_a_causal_one():
    from forge.data.loader import load_sample
    from gauntlet.stages.lookahead import lookahead_check, truncation_points

    bars, _ = load_sample()
    leaky, causal, _ = _leaky_and_causal(bars)
    cuts = truncation_points(1000, bars.height, 8, 0)
    assert lookahead_check(leaky, bars, cuts)["violations"]
    assert not lookahead_check(causal, bars, cuts)["violations"]


def test_dowhy_shift_placebo_planted_vs_random():
    import pandas as pd

    from gauntlet.stages.dowhy_refute import dowhy_refutations, shift_placebo_pvalue

    rng = np.random.default_rng(1)
    n = 4000
    ctrl = rng.standard_normal((n, 2))
    pos = np.sign(np.convolve(rng.standard_normal(n), np.ones(30), "same"))  # persistent positions
    y = 0.05 * pos + 0.3 * ctrl[:, 0] + rng.standard_normal(n)
    p, eff, _ = shift_placebo_pvalue(pos, y, ctrl, 199, 0)
    assert eff > 0 and p < 0.05
    p0, _, _ = shift_placebo_pvalue(pos, 0.3 * ctrl[:, 0] + rng.standard_normal(n), ctrl, 199, 0)
    assert p0 > 0.05
    df = pd.DataFrame({"position": pos, "ret": y, "a": ctrl[:, 0], "b": ctrl[:, 1]})
    ref = dowhy_refutations(df, ["a", "b"], 5, 0)
    assert ref["estimate"] == pytest.approx(eff, rel=1e-6)
    assert set(ref["refuters"]) == {"placebo_treatment_refuter", "random_common_cause", "data_subset_refuter"}


# ---------------------------------------------------------------- end to end on a smoke run

@pytest.fixture(scope="module")
def smoke_run_dir(tmp_path_factory):
    from forge.evolution.run import evolve
    from forge.core.runconfig import load_run_config, with_overrides

    out = tmp_path_factory.mktemp("gauntlet")
    cfg = with_overrides(load_run_config(REPO / "configs" / "smoke.toml"), "evolve", output_dir=str(out),
                         generations=1, population=12)
    return evolve(cfg, run_dir=out / "run").run_dir


def test_cli_validate_report_schema_html_and_exit_codes(smoke_run_dir, tmp_path):
    from cli import gauntlet_app

    runner = CliRunner()
    html = tmp_path / "report.html"
    champs = tmp_path / "champions"
    args = ["validate", str(smoke_run_dir), "--report", str(html), "--publish-dir", str(champs),
            "-c", str(REPO / "configs" / "gauntlet.toml"), "--max-candidates", "3"]
    r = runner.invoke(gauntlet_app, args)
    assert r.exit_code == 0, r.output
    rep = json.loads((smoke_run_dir / "gauntlet_report.json").read_text())
    assert rep["schema"] == "gauntlet-report/2"
    assert set(rep) >= {"run_id", "evaluation", "config", "policy", "shared", "candidates", "survivors", "published"}
    assert rep["policy"]["gating"] == rep["config"]["gating"] and "false_pass_per_run" in rep["policy"]
    assert rep["shared"]["trials"]["n_effective"] >= 1
    for c in rep["candidates"]:
        assert list(c["stages"]) == ["oos", "lookahead", "psr", "dsr", "pbo", "permutation", "pcmci", "dowhy",
                                     "edge_kind"]
        assert c["edge_kind"] in ("directional", "risk timing", "no alpha")
        for s in c["stages"].values():
            assert set(s) >= {"statistic", "p_value", "threshold", "passed", "reason"} and s["reason"]
        assert c["survived"] == all(c["stages"][n]["passed"] for n in rep["config"]["gating"])
        assert c["stages"]["lookahead"]["passed"]  # evolved strategies never look ahead
        if c["stages"]["pcmci"]["details"]:  # the graph names its CI test (the packaged default)
            assert c["stages"]["pcmci"]["details"]["graph_test"] == "parcorr_hc"
    text = html.read_text()
    if any(c["stages"]["dowhy"]["details"].get("graph") for c in rep["candidates"]):
        assert "PCMCI's CI test: parcorr_hc" in text
    assert text.startswith("<!doctype html>") and "data:image/png;base64," in text and "http" not in text.split("<body>")[1][:2000]
    # only directional survivors are published by default (--allow-risk-timing publishes risk timing too)
    assert len(rep["published"]) == sum(c["survived"] and c["edge_kind"] == "directional" for c in rep["candidates"])
    if not rep["survivors"]:
        assert runner.invoke(gauntlet_app, args + ["--fail-on-reject", "--no-publish"]).exit_code == 6
    # bad input: a one-line message and the error's own exit code (cli.py's table): a run directory error is 5
    bad = runner.invoke(gauntlet_app, ["validate", str(tmp_path / "nope")])
    assert bad.exit_code == 5 and "manifest.json" in bad.output and "Traceback" not in bad.output
    # the embedded sample overlaps the in-sample range: refused unless --allow-overlap
    from forge.data.loader import load_sample

    bars, _ = load_sample()
    pq = tmp_path / "bars.parquet"
    bars.write_parquet(pq)
    ov = runner.invoke(gauntlet_app, ["validate", str(smoke_run_dir), "--data", str(pq), "--no-publish"])
    assert ov.exit_code in (2, 3) and "overlaps" in ov.output and "Traceback" not in ov.output


def test_publish_verify_tamper_and_hmac(tmp_path, monkeypatch):
    from forge.core.errors import GenomeError
    from forge.gp import Genome
    from forge.core.champion import verify_champion
    from gauntlet.publish import publish_champion

    g = Genome.from_tokens(["long_short", "gt_c", "feature:ret_1", "const:0", "lt_c", "feature:ret_1", "const:1"],
                           [0.0, 0.0])
    monkeypatch.setenv("FORGE_SIGNING_KEY", "s3cret")
    meta = publish_champion(g, tmp_path, run_id="r", symbol=None, features=["ret_1"], verdict={})
    g2, m = verify_champion(meta)
    assert g2.sha256 == g.sha256 and m["hmac_sha256"]
    with pytest.raises(GenomeError, match="HMAC"):
        verify_champion(meta, key="wrong")
    gfile = tmp_path / m["file"]
    gfile.write_text(gfile.read_text().replace("ret_1", "ret_5", 1))
    with pytest.raises(GenomeError, match="sha256"):
        verify_champion(meta)


def _small_study(tmp_path, modes):
    from loop.honesty import run_study, summarize, synthetic_bars

    bars, info0 = synthetic_bars(5, 0.0)
    _, info1 = synthetic_bars(5, 0.5)
    drift, info2 = synthetic_bars(5, 0.0, kind="drift")
    assert bars.height == 20160 and abs(info0["gross_sharpe"]) < 0.03 and info1["gross_sharpe"] > 0.1
    assert info2["buy_and_hold"] > 0.5  # the drift market trends
    runs = run_study(1, 1, {0.05: (0.5, 240)}, tmp_path, modes=modes, days=None, population=8, generations=1)
    assert [(r.mode, r.kind) for r in runs] == [(m, k) for m in modes for k in ("null", "drift", "planted")]
    summary = summarize(runs, n_oos=6048)
    fp = summary["false_pass"]["all"]
    assert fp["runs"] == 2 * len(modes)
    assert 0 <= fp["clopper_pearson_95"][0] <= fp["rate"] <= fp["clopper_pearson_95"][1] <= 1
    assert summary["power"]["oracle@0.05"]["runs"] == 1 and 0 < summary["power"]["oracle@0.05"]["ceiling"] < 1
    assert summary["power"]["oracle@0.05"]["power"] == 1.0  # strength 0.5: a strong planted edge passes
    for r in runs:
        assert all(p is None or 0 <= p <= 1 for p in r.stage_p.values())


def test_honesty_study_small_version(tmp_path):
    """Tiny false-pass/power/calibration study with the oracle: the machinery the benchmark runs at scale."""
    _small_study(tmp_path, ("oracle",))


@pytest.mark.slow
def test_honesty_study_small_version_with_evolution(tmp_path):
    """The same with the end-to-end (evolve) mode."""
    _small_study(tmp_path, ("oracle", "evolve"))
