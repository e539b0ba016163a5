"""Trial ledger (forge.core.ledger): every run's trials on overlapping bars enter DSR's N (issue 29 item 2)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from forge.core.ledger import (LedgerEntry, append_entry, entry_for_manifest, ledger_path, read_ledger,
                               tally_overlapping)
from gauntlet.stats import with_ledger_trials

REPO = Path(__file__).resolve().parents[1]


def _e(run, first, last, trials, key="BTCUSDT"):
    return LedgerEntry(run_id=run, key=key, first_open_ms=first, last_open_ms=last, trials=trials)


def test_tally_counts_overlapping_runs_once_and_skips_torn_lines(tmp_path):
    p = tmp_path / "trial_ledger.jsonl"
    append_entry(p, _e("a", 0, 100, 50))
    append_entry(p, _e("b", 50, 150, 70))
    append_entry(p, _e("b", 50, 150, 90))   # resumed: counted once, with its largest count
    append_entry(p, _e("c", 101, 200, 1000))  # disjoint bars
    append_entry(p, _e("d", 0, 100, 1000, key="ETHUSDT"))  # another symbol
    with open(p, "a") as fh:
        fh.write('{"schema": "forge-trial-ledger/1", "run_id": "torn"')  # a torn last line
    t = tally_overlapping(p, _e("a", 0, 100, 50))
    assert (t.runs, t.trials, t.other_runs, t.other_trials) == (2, 140, 1, 90)
    assert t.line() == "2 runs / 140 trials on these bars"
    assert len(list(read_ledger(p))) == 5
    assert tally_overlapping(tmp_path / "missing.jsonl", _e("a", 0, 1, 1)).runs == 0


def _append_many(args):
    path, k = args
    for i in range(50):
        append_entry(path, _e(f"w{k}-{i}", 0, 10, 1))


def test_concurrent_appends_never_interleave(tmp_path):
    p = tmp_path / "l.jsonl"
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_append_many, [(str(p), 0), (str(p), 1)])
    lines = p.read_text().splitlines()
    assert len(lines) == 100 and all(json.loads(x)["trials"] == 1 for x in lines)


def test_ledger_scales_dsr_n_by_all_trials():
    assert with_ledger_trials(12.0, 300, 0) == 12.0
    assert with_ledger_trials(12.0, 300, 300) == 24.0
    assert with_ledger_trials(5.0, 0, 10) == 55.0  # a run with no recorded trials counts as one


def test_default_ledger_path_is_beside_the_runs_folder(tmp_path):
    assert ledger_path(tmp_path / "runs" / "r1") == tmp_path.resolve() / "trial_ledger.jsonl"
    assert ledger_path(tmp_path / "runs" / "r1", str(tmp_path / "x.jsonl")) == tmp_path / "x.jsonl"
    m = {"run_id": "r", "candidates_evaluated": 42, "data": {"symbol": None, "coverage": {"source": "s.csv"}},
         "split": {"in_sample": {"first_open_ms": 5, "last_open_ms": 9}}}
    assert entry_for_manifest(m) == _e("r", 5, 9, 42, key="s.csv")
    assert entry_for_manifest({"run_id": "r"}) is None


@pytest.mark.slow
def test_second_run_on_the_same_bars_is_deflated_for_both_runs_trials(tmp_path):
    """Two smoke runs (seeds 0, 1) on the embedded sample: each is recorded; validating either counts the
    other's trials in DSR's N (N = n_effective (own + other) / own), so its SR0 rises."""
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import evolve
    from gauntlet.config import GauntletConfig
    from gauntlet.stats import deflated_sharpe_ratio
    from gauntlet.validate import validate_run

    runs = []
    for seed in (0, 1):
        cfg = with_overrides(load_run_config(REPO / "configs" / "smoke.toml"), "evolve",
                             output_dir=str(tmp_path / "runs"), seed=seed, jobs=1, generations=1)
        runs.append(evolve(cfg, run_dir=tmp_path / "runs" / f"seed{seed}"))
    ledger = tmp_path / "trial_ledger.jsonl"
    entries = list(read_ledger(ledger))
    assert [e.run_id for e in entries] == ["seed0", "seed1"]
    n0, n1 = (e.trials for e in entries)
    from forge.core.runs import run_row  # what `forge runs list` shows

    assert run_row(runs[0].run_dir)["ledger"]["line"] == f"2 runs / {n0 + n1:,} trials on these bars"
    gcfg = GauntletConfig(seed=0, permutation_shifts=19, bootstrap_reps=49, spa_reps=49, dowhy_placebo_shifts=19,
                          dowhy_simulations=1).validate()
    for run, own, other in ((runs[1], n1, n0), (runs[0], n0, n1)):
        rep = validate_run(run.run_dir, gcfg, publish_dir=None, max_candidates=1)
        sh = rep.to_dict()["shared"]
        assert sh["ledger"]["runs"] == 2 and sh["ledger"]["trials"] == n0 + n1
        assert sh["ledger"]["line"] == f"2 runs / {n0 + n1:,} trials on these bars"
        n_eff = sh["trials"]["n_effective"]
        assert sh["n_trials_dsr"] == pytest.approx(n_eff * (own + other) / own)
        d = rep.verdicts[0]["stages"]["dsr"].details
        assert d["n_trials_dsr"] == pytest.approx(sh["n_trials_dsr"])
        ctx = rep.context
        hedged = ctx.hedged(ctx.candidates[0].is_result, ctx.in_sample).hedged
        alone = deflated_sharpe_ratio(hedged, n_eff, d["var_sharpe_null"])
        assert d["sr0"] > alone["sr0"] and d["dsr"] <= alone["dsr"]


def _manifest(run, symbol, universe=None, files=()):
    return {"run_id": run, "candidates_evaluated": 100,
            "split": {"in_sample": {"first_open_ms": 0, "last_open_ms": 1000}},
            "data": {"symbol": symbol, "coverage": {"source": "/some/folder", "files": [{"path": f} for f in files]}},
            "universe": universe}


def test_panel_runs_that_read_the_same_leader_deflate_each_other(tmp_path):
    """Two panel runs trading different perpetuals but both reading BTCUSDT's bars count in each other's N;
    a single-symbol BTCUSDT run meets both; an unrelated symbol meets neither.  (Before, the ledger was keyed
    by the traded symbol only, so the panel runs never met.)"""
    p = tmp_path / "trial_ledger.jsonl"
    fil = _manifest("fil", "FILUSDT_perp", {"instruments": {
        "FILUSDT_perp": {"symbol": "FILUSDT", "market": "perp"}, "BTCUSDT_spot": {"symbol": "BTCUSDT", "market": "spot"}}})
    algo = _manifest("algo", "ALGOUSDT_perp", {"instruments": {
        "ALGOUSDT_perp": {"symbol": "ALGOUSDT", "market": "perp"}, "BTCUSDT_spot": {"symbol": "BTCUSDT", "market": "spot"}}})
    btc = _manifest("btc", "", files=("/a/spot/BTCUSDT/1m/BTCUSDT-1m-2024-02.zip",))
    eth = _manifest("eth", "ETHUSDT")
    entries = {m["run_id"]: entry_for_manifest(m) for m in (fil, algo, btc, eth)}
    assert entries["fil"].key == "FILUSDT" and entries["fil"].read == {"FILUSDT", "BTCUSDT"}
    assert entries["btc"].key == "BTCUSDT"  # from the kline file names, not the folder path
    for e in entries.values():
        append_entry(p, e)
    assert tally_overlapping(p, entries["fil"]).other_runs == 2       # algo (via BTCUSDT) and btc
    assert tally_overlapping(p, entries["algo"]).other_runs == 2
    assert tally_overlapping(p, entries["btc"]).other_runs == 2
    assert tally_overlapping(p, entries["eth"]).other_runs == 0
    assert [sorted(e.read) for e in read_ledger(p)][0] == ["BTCUSDT", "FILUSDT"]  # keys survive the file


def test_old_ledger_lines_without_keys_still_read(tmp_path):
    p = tmp_path / "trial_ledger.jsonl"
    p.write_text(json.dumps({"schema": "forge-trial-ledger/1", "run_id": "old", "key": "BTCUSDT",
                             "first_open_ms": 0, "last_open_ms": 10, "trials": 7}) + "\n")
    (e,) = list(read_ledger(p))
    assert e.read == {"BTCUSDT"} and tally_overlapping(p, _e("new", 5, 20, 1)).other_trials == 7
