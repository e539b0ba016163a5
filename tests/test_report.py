"""The gauntlet HTML report (issue 20): numbers first, rounded, thresholds drawn, generic over stages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gauntlet import report as rp


def _stage(name, stat_name, stat, p, thr, passed, reason, details=None):
    return {"stage": name, "statistic_name": stat_name, "statistic": stat, "p_value": p, "threshold": thr,
            "passed": passed, "reason": reason, "details": details or {}, "seconds": 0.01}


def _metrics(ret, sharpe, dd, trades, turnover, exposure):
    return {"total_return": ret, "sharpe": sharpe, "max_drawdown": dd, "n_trades": trades, "turnover": turnover,
            "exposure": exposure, "ttt_bars": float("inf")}


def fake_report(run_dir: Path, n: int = 600, with_curve: bool = True):
    """A GauntletReport look-alike: 3 candidates (two with identical DSR inputs), a stage the report has
    never heard of ("regime"), a positive-Sharpe candidate failed for too few trades, PBO 1/84."""
    rng = np.random.default_rng(0)
    t0 = 1718582400000
    open_time = t0 + 60_000 * np.arange(n, dtype=np.int64)
    bh_eq = 200 * np.cumprod(1 + rng.normal(0, 1e-3, n))
    dsr_det = {"sharpe": 0.05, "n_obs": 5000, "skew": 0.1, "kurtosis": 4.0, "var_sharpe_used": 1e-4,
               "n_trials_effective": 13}
    cands, ctx_c = [], []
    specs = [(0, True, _metrics(0.0324, 4.2, 0.0151, 40, 12.5, 0.45)),
             (1, False, _metrics(0.0602, 6.02, 0.02, 3, 1.1, 0.2)),
             (2, False, _metrics(-0.05, -1.0, 0.08, 50, 20.0, 0.7))]
    for rank, survived, m in specs:
        oos_reason = "3 trades < 10 required (return +6.02%)" if rank == 1 else "return fine"
        stages = {
            "oos": _stage("oos", "annualised Sharpe", m["sharpe"], None, None, rank != 1, oos_reason,
                          {"metrics": m, "buy_and_hold": _metrics(0.01, 1.0, 0.03, 1, 1.0, 1.0)}),
            "psr": _stage("psr", "Holm-adjusted p of PSR(0)", None, 0.011904761904761904, 0.05, survived,
                          "Holm p 0.012 <= 0.05"),
            "dsr": _stage("dsr", "DSR", 1.5e-119 if rank == 2 else 0.97, None, 0.95, rank != 2, "DSR reason",
                          {**dsr_det, "sharpe": 0.01 if rank == 2 else 0.05}),
            "pbo": _stage("pbo", "PBO", 0.011904761904761904, None, 0.5, True, "PBO 0.012 < 0.5"),
            "regime": _stage("regime", "q-value", None, 0.2, 0.05, rank == 0, "q 0.200 > 0.05"),
        }
        failed = [k for k, s in stages.items() if not s["passed"]]
        cands.append({"rank": rank, "sha256": f"{rank:064x}", "expression": f"long_only(gt_c(rsi_14, {rank}))",
                      "features": ["rsi_14"], "survived": survived and not failed, "failed": failed, "stages": stages})
        eq = 200 * np.cumprod(1 + rng.normal(0, 1e-3, n))
        ctx_c.append(SimpleNamespace(rank=rank, oos_result=SimpleNamespace(
            equity=eq, metrics=SimpleNamespace(to_dict=lambda m=m: m))))
    ctx = SimpleNamespace(evaluation=(0, n), open_time=open_time, candidates=ctx_c,
                          buy_and_hold=SimpleNamespace(equity=bh_eq, metrics=SimpleNamespace(
                              to_dict=lambda: _metrics(0.01, 1.0, 0.03, 1, 1.0, 1.0))))
    d = {"schema": "gauntlet-report/1", "run_id": "RUN", "data_source": "synthetic",
         "evaluation": {"rows": [0, n], "first": "2024-06-17T00:00:00+00:00", "last": "2024-06-17T09:59:00+00:00",
                        "overlaps_in_sample": False},
         "config": {"gating": ["oos", "psr", "dsr", "pbo", "regime"], "dsr_threshold": 0.95, "pbo_threshold": 0.5},
         "policy": {"gating": ["oos", "psr", "dsr", "pbo", "regime"], "diagnostics": [], "alpha": 0.05,
                    "rule": "a candidate survives only when every gating stage passes"},
         "shared": {"trials": {"n_total": 500, "n_distinct": 120, "n_effective": 13, "var_sharpe_per_bar": 1e-4},
                    "pbo": {"pbo": 0.011904761904761904, "n_splits": 12870, "n_blocks": 16, "n_strategies": 120,
                            "logits": list(rng.normal(1.5, 1.0, 300))},
                    "spa": {"p": 0.0421}},
         "candidates": cands, "survivors": [c["sha256"] for c in cands if c["survived"]], "published": [],
         "seconds": 12.3456}
    run_dir.mkdir(parents=True, exist_ok=True)
    if with_curve:
        best = np.maximum.accumulate(rng.normal(0, 1, 11))
        (run_dir / "generations.jsonl").write_text("".join(
            json.dumps({"gen": g, "best": float(best[g] - 0.1 * (g % 2)), "hof_best": float(best[g]),
                        "median": float(best[g] - 1)}) + "\n" for g in range(11)))
    return SimpleNamespace(to_dict=lambda: d, context=ctx, run_dir=run_dir)


def _text(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "IMG", page)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The fake report rendered once (matplotlib is the slow part): (raw page, page without images)."""
    page = rp.render_html(fake_report(tmp_path_factory.mktemp("rep") / "run"))
    return page, _text(page)


def test_metrics_table_comes_first_with_rounded_numbers(rendered):
    page = rendered[1]
    i_metrics, i_stages, i_plots = page.index("Out-of-sample metrics"), page.index("<h2>Stages"), page.index("<h2>Plots")
    assert i_metrics < i_stages < i_plots
    table = page[i_metrics:i_stages]
    for cell in ("+3.24%", "+1.00%", "+2.24%", "−1.51%", "45.0%", "12.5", "4.2"):
        assert cell in table, cell
    assert not re.search(r"\d\.\d{6,}", page), re.search(r".{40}\d\.\d{6,}.{10}", page)
    assert "0.011904761904761904" not in page and "0.012" in page


def test_failures_are_explained_and_p_q_labels_follow_the_stage(rendered):
    page = rendered[1]
    table = page[page.index("Out-of-sample metrics"):page.index("<h2>Stages")]
    assert "3 trades &lt; 10 required" in table  # the positive-Sharpe rejection says why
    stages = page[page.index("<h2>Stages"):page.index("<h2>Plots")]
    assert "p (Holm) 0.012" in stages and "q 0.200" in stages
    assert ">regime<" in stages  # a stage the report module does not know is rendered too
    assert "✗ &lt;0.001" in stages  # DSR 1.5e-119 shown on the probability scale
    assert "threshold 0.95" in stages


def test_plots_full_width_thresholds_and_evolution(rendered, tmp_path):
    page = rendered[0]
    imgs = re.findall(r"<img src='data:image/png;base64,", page)
    assert len(imgs) == 3 + 3  # equity per candidate, evolution progress, DSR, PBO
    assert "figure img{width:100%" in page and "Evolution progress" in page
    no_curve = rp.render_html(fake_report(tmp_path / "bare", with_curve=False))
    assert "Evolution progress" not in no_curve


def test_dsr_candidates_with_identical_curves_share_a_line(tmp_path):
    d = fake_report(tmp_path / "run").to_dict()
    groups = rp.dsr_groups(d)
    assert [g for g, _det in groups] == [[0, 1], [2]]


def test_page_is_self_contained(rendered):
    assert rendered[0].startswith("<!doctype html>") and "http" not in rendered[1].split("<body>")[1]
