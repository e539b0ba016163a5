"""``forge backtest`` under ``[execution] mode``, ``forge execution train`` / ``eval`` (issue 31)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import cli
from forge.gp import Genome


def _genome(tmp_path):
    g = Genome.from_tokens(["pos_sign", "feature:ret_1"], [])
    p = tmp_path / "g.json"
    p.write_text(g.to_json())
    return p


def test_forge_backtest_kline_limit_mode(tmp_path):
    g = _genome(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[execution]\nmode = "kline-limit"\ndeadline_bars = 3\n')
    trades = tmp_path / "t.csv"
    r = CliRunner().invoke(cli.forge_app, ["backtest", str(g), "--config", str(cfg), "--json", "--trades", str(trades)])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    ex = s["execution"]
    assert ex["mode"] == "kline-limit" and ex["preset"] == "spot" and ex["maker_fee_bps"] == 10.0
    assert 0 < ex["costs"]["maker_share"] <= 1 and s["trades"] > 0
    assert "maker" in trades.read_text().splitlines()[0]
    sz = s["sizing"]
    assert sz["kelly_cap"] == 0.5 and sz["max_leverage"] == 1.0 and 0.0 <= sz["kelly_multiplier"] <= 1.0
    # taker mode: unchanged output shape, execution block says taker
    r2 = CliRunner().invoke(cli.forge_app, ["backtest", str(g), "--json"])
    assert r2.exit_code == 0 and json.loads(r2.stdout)["execution"] == {"mode": "taker"}
    bad = tmp_path / "b.toml"
    bad.write_text('[execution]\nmode = "maker"\n')
    r3 = CliRunner().invoke(cli.forge_app, ["backtest", str(g), "--config", str(bad)])
    assert r3.exit_code == 2 and "execution.mode" in r3.output


def test_forge_execution_train_and_eval(tmp_path):
    out = tmp_path / "p.json"
    r = CliRunner().invoke(cli.forge_app, ["execution", "train", "--out", str(out), "--seeds", "1", "--generations", "1",
                                           "--popsize", "4", "--minutes", "8"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and "simulated microstructure" in r.output
    r = CliRunner().invoke(cli.forge_app, ["execution", "eval", "--policy", str(out), "--seeds", "2", "--minutes", "8",
                                           "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["label"] == "simulated microstructure"
    assert d["maker-then-cross"]["cost_bps"] < d["always-taker"]["cost_bps"]
    r = CliRunner().invoke(cli.forge_app, ["execution", "eval", "--policy", str(out), "--seeds", "2-3", "--minutes", "8"])
    assert r.exit_code == 0, r.output
    assert "policy vs maker-then-cross:" in r.output and "wins" in r.output  # the paired per-seed comparison
    r = CliRunner().invoke(cli.forge_app, ["execution", "eval", "--seeds", "x-y"])
    assert r.exit_code == 2 and "--seeds" in r.output


def test_forge_evolve_says_its_fitness_uses_the_kline_model_when_a_fill_model_is_configured(tmp_path, monkeypatch):
    """``[execution] mode`` other than taker: the run banner says that fitness, the out-of-sample report and the
    Gauntlet score with the kline fill model; nothing for taker."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from commands.evolve import _progress_handler
    from forge.core.runconfig import load_run_config, with_overrides

    monkeypatch.setattr("forge.core.runs.record_run", lambda *a, **k: None)
    event = {"event": "start", "run_id": "r", "run_dir": "", "n_bars": 10, "jobs": 1, "population": 4, "offspring": 4,
             "generations": 0, "features": ["ret_1"],
             "split": {"in_sample": {"first": "2024-01-01T00:00", "last": "2024-01-02T00:00"},
                       "out_of_sample": {"first": "2024-01-02T00:01", "last": "2024-01-03T00:00"}}}
    view = SimpleNamespace(start=lambda n: None)
    for mode, want in (("kline-limit", True), ("taker", False)):
        buf = io.StringIO()
        cfg = with_overrides(load_run_config(None), "execution", mode=mode)
        _progress_handler(Console(file=buf, width=200), cfg, view, {"run_dir": None}, "")(event)
        assert ("the Gauntlet score positions with the kline fill model" in buf.getvalue()) is want, buf.getvalue()
