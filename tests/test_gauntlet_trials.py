"""PBO and DSR over the trials that matter (issue 29 items 6, 7).

All evaluated trials are clustered (no 300-trial sample), CSCV runs over one representative per cluster of
contending trials, and the DSR's N is the number of those clusters times the surrogate's screening ratio.
Adding 200 fee-burning junk trials to a run's ``evaluated.jsonl`` moved the former PBO to ~0 (junk ranks any
sensible strategy first in every split); here it moves PBO by <= 0.05 and leaves the DSR verdict unchanged.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from forge.data.synthetic import synthetic_bars

FEATS = ("taker_imb", "ret_15", "rsi_14", "vol_20")


def _zgenome(feature: str, window: int, c: float):
    from forge.gp import Genome

    # held for >= 240 bars: a low-turnover contender, as the ones a search keeps
    return Genome.from_tokens(["min_hold", "pos_sign", "add_c", "ts_zscore", f"feature:{feature}",
                               f"window:{window}", "const:0", "window:240"], [c])


def _junk(feature: str, c: float):
    """pos_sign(raw feature + c): flips almost every bar and pays the taker fee each time."""
    from forge.gp import Genome

    return Genome.from_tokens(["pos_sign", "add_c", f"feature:{feature}", "const:0"], [c])


@pytest.fixture(scope="module", params=["planted", "null"])
def runs(request, tmp_path_factory):
    from forge.core import rundir
    from forge.core.runconfig import load_run_config
    from loop.honesty import oracle_genome, oracle_run

    work = tmp_path_factory.mktemp("trials")
    kind = request.param
    bars, _ = synthetic_bars(2002, 0.25 if kind == "planted" else 0.0, 14, kind=kind)
    cfg = load_run_config(None)
    base = oracle_run(bars, oracle_genome(240), work / "base", cfg, cfg.evolve.in_sample_fraction)
    man = json.loads((base / "manifest.json").read_text())
    man["features"] = list(FEATS)
    (base / "manifest.json").write_text(json.dumps(man))
    trials = [_zgenome(f, w, c) for f in FEATS for w in (20, 60, 240) for c in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    rundir.append_evaluated(base, [rundir.EvaluatedRecord(g.sha256, g, 0.0, {}) for g in trials])
    junky = work / "junk"
    shutil.copytree(base, junky)
    junk = [_junk(f, c) for f, scale in (("taker_imb", 0.05), ("ret_15", 3e-4))
            for c in np.linspace(-scale, scale, 100)]
    rundir.append_evaluated(junky, [rundir.EvaluatedRecord(g.sha256, g, 0.0, {}) for g in junk])
    return bars, base, junky


def _validate(run_dir, bars):
    from gauntlet.config import GauntletConfig
    from gauntlet.validate import validate_run

    rep = validate_run(run_dir, GauntletConfig(), publish_dir=None, bars=bars, max_candidates=1)
    return rep.to_dict()


def test_junk_trials_move_pbo_by_at_most_005_and_not_the_dsr_verdict(runs):
    bars, base, junky = runs
    a, b = _validate(base, bars), _validate(junky, bars)
    ta, tb = a["shared"]["trials"], b["shared"]["trials"]
    assert tb["n_distinct"] >= ta["n_distinct"] + 150  # the junk is in the trial set (all trials, no sample)
    assert tb["n_dominated"] >= ta["n_dominated"] + 150  # and recognised as fee-burning
    assert a["shared"]["pbo"] is not None and b["shared"]["pbo"] is not None
    assert abs(a["shared"]["pbo"]["pbo"] - b["shared"]["pbo"]["pbo"]) <= 0.05
    da, db = a["candidates"][0]["stages"]["dsr"], b["candidates"][0]["stages"]["dsr"]
    assert da["passed"] == db["passed"]
    assert da["details"]["n_trials_effective"] == db["details"]["n_trials_effective"]


def test_screened_candidates_enter_n_at_the_screening_ratio(tmp_path):
    from gauntlet.stats import effective_trials, screening_ratio

    gens = [{"candidates": 24, "evals_saved": 0}] + [{"candidates": 96, "evals_saved": 72}] * 3
    ratio = screening_ratio(gens)
    assert ratio == pytest.approx((24 + 288) / (24 + 72))
    assert screening_ratio([{"gen": 0}]) == 1.0
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 400))
    x = np.vstack([b + 0.2 * rng.standard_normal((6, 400)) for b in base])
    sh = np.full(x.shape[0], 0.01)
    et = effective_trials(x, 0.5, sharpe=sh, n_obs=20000, screening=ratio)
    assert et.n_clusters == 5 and et.n_effective == round(5 * ratio)
    # dominated trials (significantly negative) are not clusters; sampling by cluster above max_trials agrees
    junk = rng.standard_normal((50, 400))
    et2 = effective_trials(np.vstack([x, junk]), 0.5, sharpe=np.r_[sh, np.full(50, -0.2)], n_obs=20000)
    assert et2.n_clusters == 5 and et2.n_dominated == 50
    et3 = effective_trials(x, 0.5, sharpe=sh, n_obs=20000, max_trials=12, seed=1)
    assert et3.sampled and et3.n_clusters == 5
