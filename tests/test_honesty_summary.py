"""loop.honesty.summarize: the item-9 splits (per null kind, per search budget) on hand-made rows (no runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.honesty import HonestyRun, summarize

STAGES = ("oos", "lookahead", "psr", "dsr", "pbo", "permutation", "pcmci", "dowhy", "edge_kind")


def _row(kind: str, seed: int, *, survived: bool = False, edge: str | None = "no alpha", pop: int | None = 24,
         passed: tuple[str, ...] = ("oos", "lookahead")) -> HonestyRun:
    return HonestyRun(mode="evolve", kind=kind, seed=seed, strength=0.0, target_net_sharpe=None,
                      realised_net_sharpe=0.0, champion_survived=survived, champion_uses_planted=False,
                      any_survived=survived, stage_p={"psr": 0.5}, stage_passed={s: s in passed for s in STAGES},
                      champion_expression="x", champion_edge_kind=edge, population=pop,
                      generations=None if pop is None else 3, days=None if pop is None else 14,
                      seconds=None if pop is None else 10.0)


def test_summary_splits_by_null_kind_and_budget():
    runs = ([_row(k, s) for k in ("null", "drift", "heavy", "seasonal") for s in range(3)]
            + [_row("heavy", 9, pop=200, survived=True, edge="directional", passed=STAGES)]
            + [_row("seasonal", 9, pop=200, survived=True, edge="risk timing", passed=STAGES)])
    fp = summarize(runs)["false_pass"]
    assert fp["all"]["runs"] == 14 and fp["all"]["champions_passed"] == 2 and fp["all"]["champions_published"] == 1
    assert {k: fp[k]["runs"] for k in ("null", "drift", "heavy", "seasonal")} == {"null": 3, "drift": 3, "heavy": 4,
                                                                                  "seasonal": 4}
    assert fp["heavy"]["champions_published"] == 1 and fp["seasonal"]["champions_published"] == 0
    assert fp["seasonal"]["edge_kinds"]["risk timing"] == 1
    small, big = fp["budget: pop 24 x 3 gens, 14 d"], fp["budget: pop 200 x 3 gens, 14 d"]
    assert (small["runs"], small["champions_published"], big["runs"], big["champions_published"]) == (12, 0, 2, 1)
    assert small["stage_pass_rate"]["oos"] == 1.0 and small["stage_pass_rate"]["psr"] == 0.0
    assert big["stage_pass_rate"]["psr"] == 1.0 and small["seconds_median"] == 10.0
    lo, hi = big["published_clopper_pearson_95"]
    assert lo == pytest.approx(0.0126, abs=1e-3) and hi == pytest.approx(0.9874, abs=1e-3)  # 1 of 2, exact CP
    assert fp["all"]["published_clopper_pearson_95"][1] == pytest.approx(0.3387, abs=1e-3)  # 1 of 14


def test_rows_written_before_the_budget_fields_load_as_unrecorded():
    old = Path(__file__).resolve().parents[1] / "benchmarks" / "gauntlet_honesty_null_small.jsonl"
    if not old.is_file():
        pytest.skip("the older study's rows are not in this checkout")
    runs = [HonestyRun(**json.loads(line)) for line in old.read_text().splitlines() if line.strip()]
    fp = summarize(runs)["false_pass"]
    assert fp["budget: unrecorded"]["runs"] == fp["all"]["runs"] == len(runs)
    assert sum(fp[k]["runs"] for k in ("null", "drift", "heavy", "seasonal")) == len(runs)


def test_power_counts_published_champions_not_risk_timing_survivors():
    """A planted run whose champion survives but is labelled risk timing is not published by default
    (``gauntlet validate`` publishes directional survivors only), so it is no power."""
    def planted(seed: int, edge: str | None) -> HonestyRun:
        return HonestyRun(mode="evolve", kind="planted", seed=seed, strength=0.13, target_net_sharpe=0.05,
                          realised_net_sharpe=0.05, champion_survived=True, champion_uses_planted=True,
                          any_survived=True, stage_p={"psr": 0.01}, stage_passed={s: True for s in STAGES},
                          champion_expression="x", champion_edge_kind=edge, population=200, generations=10,
                          days=20, seconds=50.0)

    row = summarize([planted(0, "directional"), planted(1, "risk timing"), planted(2, None)])["power"]["evolve@0.05"]
    assert row["passed_using_planted"] == 3 and row["published_using_planted"] == 2  # None: a row from before the label
    assert row["power"] == pytest.approx(2 / 3)


def test_power_is_split_by_cost_preset():
    """Runs at one net target under the spot and the futures preset use different strengths: never pooled."""
    def planted(seed: int, preset: str | None, published: bool) -> HonestyRun:
        return HonestyRun(mode="evolve", kind="planted", seed=seed, strength=0.13 if preset != "futures" else 0.116,
                          target_net_sharpe=0.05, realised_net_sharpe=0.05, champion_survived=published,
                          champion_uses_planted=True, any_survived=published, stage_p={"psr": 0.01},
                          stage_passed={s: True for s in STAGES}, champion_expression="x",
                          champion_edge_kind="directional", population=200, generations=10, days=20,
                          cost_preset=preset, taker_fee_bps=None if preset is None else {"spot": 10.0, "futures": 5.0}[preset])

    runs = [planted(1, None, True), planted(2, "spot", False), planted(3, "futures", True), planted(4, "futures", True),
            planted(5, "futures", False)]
    p = summarize(runs)["power"]
    assert set(p) == {"evolve@0.05", "evolve@0.05 futures"}
    assert (p["evolve@0.05"]["runs"], p["evolve@0.05"]["published_using_planted"]) == (2, 1)
    fut = p["evolve@0.05 futures"]
    assert (fut["runs"], fut["published_using_planted"], fut["strength"], fut["cost_preset"]) == (3, 2, 0.116, "futures")
