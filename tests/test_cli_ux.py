"""What researchers and operators see (issue 20): dashboards, progress lines, strict JSON, CLI errors."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli
from commands import ui


def _render(renderable, width: int) -> str:
    con = Console(width=width, file=io.StringIO(), force_terminal=False, color_system=None)
    con.print(renderable)
    return con.file.getvalue()


# ----------------------------------------------------------------------------- 1. crucible live dashboard

SLOTS = [{"slot": f"s{i}", "symbol": sym, "status": st, "genome": "ab" * 20, "equity": 200.0 + i,
          "weight": 1 / 3, "target": t, "fills": 17 * i}
         for i, (sym, st, t) in enumerate([("BTCUSDT", "live", 1.0), ("ETHUSDT", "killed", 0.0),
                                           ("SOLUSDT", "live", -0.5)])]


@pytest.mark.parametrize("width", [80, 200])
def test_dashboard_shows_bars_time_and_every_slot(width):
    state = {"venue": "replay", "time": 1718582400000, "bars": 1234, "slots": SLOTS}
    text = _render(ui.crucible_dashboard(state, ["kill slot=s1"]), width)
    assert "1,234 bars" in text and "2024-06-17 00:00" in text
    assert "kill slot=s1" in text
    for sl in SLOTS:
        assert sl["slot"] in text
    assert "+1.00" in text and "-0.50" in text and "603.00" in text.replace(",", "")  # total equity
    assert max(len(line) for line in text.splitlines()) <= width


def test_throttle_limits_redraws_and_flush_forces_one():
    now = [0.0]
    calls = []
    th = ui.Throttle(lambda: calls.append(now[0]), interval=0.25, clock=lambda: now[0])
    for i in range(100):  # 100 bars within 0.99 s
        now[0] = i * 0.01
        th()
    assert calls == [0.0, 0.25, 0.5, 0.75]
    th.flush()
    assert len(calls) == 5


def test_crucible_live_dashboard_moves_on_a_terminal(tmp_path, monkeypatch):
    """On a terminal the dashboard is redrawn while bars arrive (it used to stay at 0 bars)."""
    out = io.StringIO()
    con = Console(file=out, force_terminal=True, width=120, color_system=None)
    import commands.crucible

    monkeypatch.setattr(commands.crucible, "console", con)  # the command prints to its module's console
    r = CliRunner().invoke(cli.crucible_app, ["live", "--max-bars", "60", "--journal", str(tmp_path / "j.sqlite")])
    assert r.exit_code == 0, r.output
    frames = [int(m.replace(",", "")) for m in re.findall(r"UTC\s+([\d,]+) bars", out.getvalue())]
    assert frames and max(frames) > 0, out.getvalue()[-2000:]


# ----------------------------------------------------------------------------- 2. strict JSON

from forge.core.jsonsafe import dumps, loads_strict, revive_nonfinite, sanitize  # noqa: E402

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.toml"
TINY = ["-c", str(SMOKE), "--gens", "1", "--pop", "8", "--causal-filter", "off", "--coevolution", "off",
        "--surrogate", "off"]


def test_strict_dumps_replaces_nonfinite_with_null_and_a_reason():
    import numpy as np

    obj = {"a": float("inf"), "b": [1.0, float("nan"), np.float64(-np.inf)], "c/d": {"e": np.int64(3)},
           "ok": 1.5}
    text = dumps(obj)
    back = loads_strict(text)
    assert back["a"] is None and back["b"] == [1.0, None, None] and back["c/d"] == {"e": 3} and back["ok"] == 1.5
    assert back["nonfinite"] == {"/a": "+inf", "/b/1": "nan", "/b/2": "-inf"}
    assert dumps({"x": 1.0}) == '{\n  "x": 1.0\n}'  # clean objects are unchanged
    with pytest.raises(ValueError):
        loads_strict('{"a": Infinity}')
    assert revive_nonfinite({"t": "inf", "s": "info"})["s"] == "info"
    assert sanitize(revive_nonfinite({"t": "-inf"})) == {"t": None, "nonfinite": {"/t": "-inf"}}
    with pytest.raises(TypeError, match="/k"):
        dumps({"k": object()})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny forge evolve run made through the CLI with --json; returns (run_dir, summary)."""
    run_dir = tmp_path_factory.mktemp("ux") / "run"
    r = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(run_dir), "--json"])
    assert r.exit_code == 0, r.output
    return run_dir, loads_strict(r.stdout)


def test_evolve_json_is_one_strict_summary_object(tiny_run):
    run_dir, summary = tiny_run
    assert summary["schema"] == "forge-evolve-summary/1" and summary["run_dir"] == str(run_dir)
    assert summary["generations_run"] == 1 and [g["gen"] for g in summary["generations"]] == [0, 1]
    champ = summary["champion"]
    assert champ["rank"] == 0 and champ["sha256"] and set(champ["out_of_sample"]) >= {"total_return", "sharpe"}
    # a best-so-far curve never falls
    bsf = [g["best_so_far"] for g in summary["generations"]]
    assert bsf == sorted(bsf)


def test_champion_json_is_strict(tiny_run):
    run_dir, _ = tiny_run
    from forge.gp import Genome

    text = (run_dir / "champion.json").read_text()
    d = loads_strict(text)
    assert "Infinity" not in text and "NaN" not in text
    assert Genome.from_json(text).sha256 == d["sha256"]


def test_gauntlet_show_json_is_strict(tiny_run):
    run_dir, summary = tiny_run
    r = CliRunner().invoke(cli.gauntlet_app, ["show", str(run_dir), "--json"])
    assert r.exit_code == 0, r.output
    d = loads_strict(r.stdout)
    assert [m["genome"]["sha256"] for m in d["members"]] == [m["sha256"] for m in summary["hall_of_fame"]]


def test_gauntlet_validate_json_equals_the_written_report(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    r = CliRunner().invoke(cli.gauntlet_app, ["validate", str(run_dir), "--json", "--no-publish",
                                              "--max-candidates", "2", "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    written = (run_dir / "gauntlet_report.json").read_text()
    assert r.stdout == written
    rep = loads_strict(written)
    assert rep["candidates"] and all("stages" in c for c in rep["candidates"])
    for ptr, why in rep.get("nonfinite", {}).items():
        assert why in ("+inf", "-inf", "nan") and ptr.startswith("/")


def test_data_inspect_and_status_json_are_strict(tmp_path):
    r = CliRunner().invoke(cli.forge_app, ["data", "inspect", "--json"])
    assert r.exit_code == 0, r.output
    assert loads_strict(r.stdout)["n_bars"] > 0
    j = tmp_path / "j.sqlite"
    assert CliRunner().invoke(cli.crucible_app, ["live", "--max-bars", "30", "--journal", str(j)]).exit_code == 0
    s = CliRunner().invoke(cli.crucible_app, ["status", "--journal", str(j), "--json"])
    assert s.exit_code == 0, s.output
    assert len(loads_strict(s.stdout)["slots"]) > 0


# ----------------------------------------------------------------------------- 3. forge evolve progress

GEN = {"event": "generation", "gen": 3, "generations": 10, "best": 5.392, "hof_best": 6.447, "median": 4.1,
       "evals_per_s": 56.0, "evaluated_total": 12345, "surrogate_spearman": 0.61,
       "surrogate_spearman_holdout": 0.5, "evals_saved": 800, "seconds": 2.0}


def test_generation_line_fits_80_columns_and_keeps_the_essentials():
    line = ui.generation_line(GEN, width=80, elapsed=65.0, eta=140.0)
    assert len(line) <= 80
    assert line.startswith("gen 3/10") and "best so far +6.447" in line and "gen best +5.392" in line
    assert "0:01:05" in line and "ETA 0:02:20" in line


def test_generation_line_at_200_columns_has_every_field_and_a_bar():
    line = ui.generation_line(GEN, width=200, elapsed=65.0, eta=140.0)
    assert len(line) <= 200
    for part in ("gen 3/10", "best so far +6.447", "gen best +5.392", "median +4.100", "56 evals/s",
                 "evaluated 12,345", "hold-out +0.50", "saved 800", "ETA 0:02:20"):
        assert part in line, part
    assert "█" in line and "░" in line


def test_generation_line_very_narrow_is_cut_not_wrapped():
    assert len(ui.generation_line(GEN, width=20)) <= 20


def _plain_console(width=200):
    return Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)


def test_piped_progress_is_one_plain_line_per_generation_with_the_right_counter():
    con = _plain_console()
    p = ui.EvolveProgress(con, live=False, cached_kernels=False)
    p.start(2)
    for g in range(3):
        p.generation({**GEN, "gen": g, "generations": 2, "hof_best": 1.0 + g, "best": 0.5})
    p.stop()
    lines = con.file.getvalue().splitlines()
    assert "compiling numba kernels (first run only)" in lines[0]
    assert [ln.split()[1] for ln in lines[1:]] == ["0/2", "1/2", "2/2"]
    assert all("best so far" in ln and "gen best" in ln and "\x1b" not in ln for ln in lines[1:])
    assert "compiling" not in ui.warmup_message(True)


@pytest.mark.parametrize("width", [80, 200])
def test_live_progress_redraws_within_the_terminal_width(width):
    con = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    now = [100.0]
    p = ui.EvolveProgress(con, live=True, clock=lambda: now[0], cached_kernels=True)
    p.start(10)
    now[0] += 30
    p.generation({**GEN, "gen": 0, "seconds": 30.0})
    now[0] += 2
    p.generation({**GEN, "gen": 1, "seconds": 2.0})
    p.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", con.file.getvalue())
    shown = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    assert any(ln.startswith("gen 1/10") for ln in shown), shown
    assert max(len(ln) for ln in shown) <= width
    assert p.eta() == pytest.approx(9 * 2.0)  # generation 0 (compilation) is left out of the ETA


def test_causal_decision_names_the_keep_at_least_floor():
    kept = {"a", "b", "c"}
    assert ui.causal_decision(["a", "1", "+0.1", "1e-5", "1e-4", "kept"], kept, 0.05) == "kept"
    assert ui.causal_decision(["b", "1", "+0.02", "0.1", "0.22", "kept"], kept, 0.05) == "kept (floor)"
    assert ui.causal_decision(["c", "-", "-", "-", "-", "kept to reach keep_at_least=4: x"], kept, 0.05) == "kept (floor)"
    assert ui.causal_decision(["d", "1", "+0.0", "0.5", "0.8", "dropped"], kept, 0.05) == "dropped"


def test_drawdown_and_number_formats():
    assert ui.fmt_drawdown(0.0151) == "-1.51%" and ui.fmt_drawdown(0.0) == "0.00%"
    assert ui.fmt_pct(0.0324) == "+3.24%" and ui.fmt_num(float("inf")) == "never"
    assert ui.fmt_p(0.011904761904761904) == "0.012" and ui.fmt_p(1e-6) == "<0.001"


def test_cli_evolve_piped_shows_named_bests_and_correct_counter(tmp_path):
    r = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    gens = [ln for ln in r.output.splitlines() if ln.startswith("gen ")]
    assert [ln.split()[1] for ln in gens if re.match(r"gen \d+/\d+", ln)] == ["0/1", "1/1"]
    assert "best so far" in gens[-1] and "gen best" in gens[-1]
    assert "OOS max DD" in r.output and re.search(r"│\s+(-\d+\.\d\d%|0\.00%)\s+│", r.output)


@pytest.mark.parametrize("width", [80, 200])
def test_hall_table_numbers_are_not_cut_at_80_or_200_columns(tiny_run, width):
    _run_dir, summary = tiny_run
    members = json.loads((tiny_run[0] / "hall_of_fame.json").read_text())["members"]
    text = _render(cli.hall_table(members, width), width)
    assert max(len(ln) for ln in text.splitlines()) <= width
    dd = ui.fmt_drawdown(members[0]["out_of_sample"]["max_drawdown"])
    assert dd in text.replace("\n", "")
    assert ("long_" in text) == (width >= 150)


# ----------------------------------------------------------------------------- 4. version, config show, errors


@pytest.mark.parametrize("app,name", [(cli.forge_app, "forge"), (cli.gauntlet_app, "gauntlet"),
                                      (cli.crucible_app, "crucible")])
def test_version_on_every_app(app, name):
    from importlib.metadata import version

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"{name} {version('forge-gauntlet-crucible')}"


def test_config_show_names_the_source_of_every_value():
    r = CliRunner().invoke(cli.forge_app, ["config", "show", "-c", str(SMOKE), "--gens", "7", "--coevolution", "off",
                                           "--json"])
    assert r.exit_code == 0, r.output
    d = loads_strict(r.stdout)
    ev = d["sections"]["evolve"]
    assert ev["generations"] == {"value": 7, "source": "flag"}
    assert ev["population"] == {"value": 24, "source": "file"}      # smoke.toml sets it
    assert ev["cxpb"]["source"] == "default"
    assert d["sections"]["coevolution"]["enabled"] == {"value": False, "source": "flag"}
    assert d["source"] == str(SMOKE)
    t = CliRunner().invoke(cli.forge_app, ["config", "show", "-c", str(SMOKE)])
    assert t.exit_code == 0 and "population" in t.stdout and "default" in t.stdout


def test_default_configs_are_the_packaged_ones_whatever_the_cwd(tmp_path, monkeypatch):
    from forge.core.config import CONFIG_DIR

    for name in ("gauntlet.toml", "crucible.toml", "default.toml"):
        assert cli.default_config(name) == CONFIG_DIR / name
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "crucible.toml").write_text("[nonsense]\nx = 1\n")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.crucible_app, ["live", "--max-bars", "5", "--journal", str(tmp_path / "j.sqlite")])
    assert r.exit_code == 0, r.output  # ./configs/crucible.toml is not read unless passed
    bad = CliRunner().invoke(cli.crucible_app, ["live", "-c", "configs/crucible.toml", "--max-bars", "5"])
    assert bad.exit_code == 2 and "nonsense" in bad.output


@pytest.mark.parametrize("content", [b"this is not a database, just text\n" * 40, b"SQLite format 3\x00" + b"\x07" * 400])
def test_crucible_status_on_a_corrupt_journal_is_one_line_exit_2(tmp_path, content):
    j = tmp_path / "journal.sqlite"
    j.write_bytes(content)
    r = CliRunner().invoke(cli.crucible_app, ["status", "--journal", str(j)])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1 and "error" in r.output


def test_crucible_live_bad_until_and_negative_max_bars_exit_2():
    r = CliRunner().invoke(cli.crucible_app, ["live", "--until", "yesterday"])
    assert r.exit_code == 2 and "ISO 8601" in r.output
    r = CliRunner().invoke(cli.crucible_app, ["live", "--max-bars", "-5"])
    assert r.exit_code == 2 and "max-bars" in r.output


def _kline_folder(tmp_path, names):
    d = tmp_path / "data"
    d.mkdir()
    for n in names:
        (d / n).write_text("1718582400000,1,1,1,1,1,1718582459999,1,1,1,1,0\n")
    return d


def test_a_folder_of_two_symbols_asks_for_symbols(tmp_path):
    d = _kline_folder(tmp_path, ["BTCUSDT-1m-2024-06-17.csv", "ETHUSDT-1m-2024-06-17.csv"])
    for app, args in ((cli.forge_app, ["data", "inspect", str(d)]), (cli.forge_app, ["evolve", "--data", str(d)])):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, r.output
        assert "2 symbols found" in r.output and "--symbols" in r.output and "Traceback" not in r.output


def test_a_stray_csv_is_named(tmp_path):
    d = _kline_folder(tmp_path, ["BTCUSDT-1m-2024-06-17.csv", "notes.csv"])
    r = CliRunner().invoke(cli.forge_app, ["data", "inspect", str(d)])
    assert r.exit_code == 3, r.output
    assert "notes.csv" in r.output and "not a Binance kline file name" in r.output


def test_dask_preflight_reports_workers_or_a_clear_error():
    from forge.core.errors import ConfigError
    from commands.preflight import check_dask

    with pytest.raises(ConfigError, match="--scheduler"):
        check_dask("")
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        assert check_dask(lc.scheduler_address) == 2


def test_exit_codes_come_from_one_table():
    import sqlite3

    from forge.core.errors import DataError, GenomeError, RunDirError
    from forge.core.errors import ConfigError

    assert [cli.exit_code_of(e) for e in (ConfigError("x"), DataError("x"), GenomeError("x"), RunDirError("x"),
                                          sqlite3.DatabaseError("x"), KeyboardInterrupt())] == [2, 3, 4, 5, 2, 130]


# ----------------------------------------------------------------------------- 5. run hygiene


def test_existing_run_dir_is_refused_unless_force_which_removes_stale_files(tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    (run / "surrogate.npz").write_bytes(b"stale file of an older run")
    again = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(run)])
    assert again.exit_code == 5 and "--force" in again.output and "finished run" in again.output
    assert (run / "surrogate.npz").is_file()
    forced = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(run), "--force"])
    assert forced.exit_code == 0, forced.output
    assert not (run / "surrogate.npz").exists() and (run / "manifest.json").is_file()


def test_a_non_run_folder_is_never_deleted(tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "thesis.tex").write_text("precious")
    r = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(keep), "--force"])
    assert r.exit_code == 5 and "not a run directory" in r.output
    assert (keep / "thesis.tex").read_text() == "precious"


def test_bad_seed_genome_and_missing_dask_fail_before_any_work(tmp_path, monkeypatch):
    bad = tmp_path / "seed.json"
    bad.write_text('{"schema_version": 1}')
    run = tmp_path / "run"
    r = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(run), "--seed-genome", str(bad)])
    assert r.exit_code == 4 and "seed.json" in r.output and not run.exists()
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # as if dask were not installed
    r = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(run), "--backend", "dask",
                                           "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "cluster" in r.output and not run.exists()


def test_ctrl_c_prints_the_resume_command(tmp_path, monkeypatch):
    import forge.evolution.run

    run = tmp_path / "run"

    def interrupted(cfg, *, run_dir=None, progress=None, **_kw):
        run_dir.mkdir(parents=True)
        (run_dir / "checkpoint.json").write_text("{}")
        progress({"event": "start", "run_id": "run", "run_dir": str(run_dir), "n_bars": 10, "jobs": 1,
                  "split": {"in_sample": {"first": "a", "last": "b"}, "out_of_sample": {"first": "c", "last": "d"}},
                  "features": ["x"], "generations": 5, "population": 4, "offspring": 4})
        progress({"event": "generation", **GEN, "gen": 2, "generations": 5})
        raise KeyboardInterrupt

    monkeypatch.setattr(forge.evolution.run, "evolve", interrupted)
    r = CliRunner().invoke(cli.forge_app, ["evolve", *TINY, "--run-dir", str(run)])
    assert r.exit_code == 130
    assert f"resume with: forge evolve --resume {run}" in r.output and "after generation 2" in r.output
    assert "nothing to resume" in cli.interrupted_message(tmp_path / "empty", None)


def test_resume_refuses_flags_it_would_ignore(tmp_path):
    r = CliRunner().invoke(cli.forge_app, ["evolve", "--resume", str(tmp_path), "--pop", "12"])
    assert r.exit_code == 2 and "--pop" in r.output and "saved config" in r.output and "--gens N" in r.output
    # --gens is the one flag --resume takes (extending a run); on a folder with no run it is a clear error
    r = CliRunner().invoke(cli.forge_app, ["evolve", "--resume", str(tmp_path), "--gens", "12"])
    assert r.exit_code == 5 and "not a run directory" in r.output and "Traceback" not in r.output  # RunDirError


# ----------------------------------------------------------------------------- 6. runs list / compare, backtest


def test_runs_list_and_compare(tiny_run, tmp_path):
    run_dir, summary = tiny_run
    r = CliRunner().invoke(cli.forge_app, ["runs", "list", str(run_dir.parent), "--json"])
    assert r.exit_code == 0, r.output
    rows = loads_strict(r.stdout)["runs"]
    assert [x["run_id"] for x in rows] == [summary["run_id"]]
    row = rows[0]
    assert row["status"] == "finished" and row["generations_run"] == 1 and isinstance(row["oos"]["n_trades"], int)
    assert row["champion"]["sha256"] == summary["champion"]["sha256"]
    # an interrupted run (no manifest) is listed as unfinished; a stray folder is skipped
    part = run_dir.parent / "part"
    part.mkdir(exist_ok=True)
    (part / "run_config.json").write_text(json.dumps({"config": {"evolve": {"generations": 9}}}))
    (part / "generations.jsonl").write_text('{"gen": 0, "best": 1.0, "hof_best": 1.0}\n{"gen": 1, "be')
    (run_dir.parent / "notes").mkdir(exist_ok=True)
    t = CliRunner().invoke(cli.forge_app, ["runs", "list", str(run_dir.parent)])
    assert t.exit_code == 0 and "unfinished" in t.stdout and "0/9" in t.stdout and "notes" not in t.stdout
    html = tmp_path / "cmp.html"
    c = CliRunner().invoke(cli.forge_app, ["runs", "compare", str(run_dir), str(part), "--html", str(html), "--json"])
    assert c.exit_code == 0, c.output
    comp = loads_strict(c.stdout)
    assert [len(x["curve"]) for x in comp["runs"]] == [2, 1]
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 2 and summary["run_id"] in text and "B&amp;H return" in text
    bad = CliRunner().invoke(cli.forge_app, ["runs", "compare", str(tmp_path)])
    assert bad.exit_code == 5 and "not a forge evolve run directory" in bad.output


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_backtest_a_genome_trades_plot_and_json(tiny_run, tmp_path, fmt):
    import polars as pl

    run_dir, _ = tiny_run
    trades, png = tmp_path / f"trades.{fmt}", tmp_path / "eq.png"
    plot = ["--plot", str(png)] if fmt == "csv" else []
    r = CliRunner().invoke(cli.forge_app, ["backtest", str(run_dir / "champion.json"), "--bars", "all",
                                           "--trades", str(trades), *plot, "--json"])
    assert r.exit_code == 0, r.output
    d = loads_strict(r.stdout)
    df = pl.read_csv(trades) if fmt == "csv" else pl.read_parquet(trades)
    assert df.height == d["trades"] == d["metrics"]["n_trades"]
    assert d["buy_and_hold"]["n_trades"] == 1 and d["data"]["bars"] == 20160
    assert d["excess_return"] == pytest.approx(d["metrics"]["total_return"] - d["buy_and_hold"]["total_return"])
    if fmt != "csv":
        return
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    # the same genome through the gauntlet's path on the same bars gives the same metrics
    from forge.backtest import run_backtest
    from forge.data.gaps import bars_since_gap
    from forge.data.loader import load_bars
    from forge.gp import Genome
    from forge.core.runconfig import load_run_config
    from forge.strategy import genome_positions, strategy_features

    g = Genome.load(run_dir / "champion.json")
    bars, _ = load_bars(None)
    t = bars["open_time"].to_numpy()
    pos = genome_positions(g, strategy_features(bars, g.features), bars_since_gap(t))
    ref = run_backtest(bars["open"].to_numpy(), bars["close"].to_numpy(), t, pos, load_run_config(None).backtest)
    assert d["metrics"]["total_return"] == pytest.approx(ref.metrics.total_return)
    human = CliRunner().invoke(cli.forge_app, ["backtest", str(run_dir / "champion.json")])
    assert human.exit_code == 0 and "buy-and-hold" in human.stdout and "max drawdown" in human.stdout


def test_backtest_bad_inputs(tmp_path, tiny_run):
    r = CliRunner().invoke(cli.forge_app, ["backtest", str(tmp_path / "none.json")])
    assert r.exit_code == 4 and "none.json" in r.output
    r = CliRunner().invoke(cli.forge_app, ["backtest", str(tiny_run[0] / "champion.json"), "--trades", "x.xlsx"])
    assert r.exit_code == 2 and ".csv or .parquet" in r.output


# ----------------------------------------------------------------------------- 5. a newcomer's first hour (issue 27)


def test_fit_table_switches_to_a_vertical_layout_and_cuts_nothing():
    cols = [("run", "left"), ("status", "left"), *[(f"metric {i}", "right") for i in range(8)]]
    rows = [["20261206T195135Z-s0-abc123", "finished", *[f"{1234.5678 * (i + 1):,.3f}" for i in range(8)]]]
    for width in (80, 60):
        text = _render(ui.fit_table("Runs", cols, rows, width), width)
        assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= width
        for cell in rows[0]:
            assert cell in text  # every number whole, on one line
    wide = _render(ui.fit_table("Runs", cols, rows, 200), 200)
    assert "┃" in wide or "│" in wide  # a real table when it fits
    assert "…" not in wide and all(c in wide for c in rows[0])


def test_piped_console_width_follows_COLUMNS(monkeypatch):
    from commands import edge

    monkeypatch.setenv("COLUMNS", "80")
    assert edge._width(io.StringIO()) == 80
    monkeypatch.delenv("COLUMNS")
    assert edge._width(io.StringIO()) == 200


def test_progress_line_keeps_evals_per_second_at_80_columns():
    line = ui.generation_line(GEN, width=80, elapsed=65.0, eta=140.0)
    assert len(line) <= 80 and "56 evals/s" in line and "best so far +6.447" in line


def test_strategy_names_and_reconcile_sentence():
    assert ui.strategy_name({"genome": "ab12", "lineage": {"ref": "builtin:momentum", "expression": "x"}}) == \
        "builtin:momentum"
    assert ui.strategy_name({"genome": "ab12", "lineage": {"ref": "a.json", "expression": "ts_mean(close, 5)"}}) == \
        "ts_mean(close, 5)"
    assert ui.strategy_name({"genome": "ab12"}) == "ab12"
    s = ui.reconcile_sentence({"resolved": ["a", "b"], "resent": [], "abandoned": ["c"], "new_fills": 3,
                               "position_diff": {}, "balance_diff": 0.0})
    assert s == ("reconcile: 2 open orders found at the venue, 0 resent, 1 abandoned; 3 fills booked; "
                 "positions match the journal; balance differs by +0.00 USDT")
    bad = ui.reconcile_sentence({"resolved": [], "resent": [], "abandoned": [], "new_fills": 0,
                                 "position_diff": {"BTCUSDT": 0.001}, "balance_diff": None})
    assert "positions differ from the journal: BTCUSDT +0.001" in bad and "{" not in bad
    assert ui.event_line({"event": "reconcile", "resolved": [], "new_fills": 1}).startswith("reconcile: 0 open")


def _no_cut(text: str, width: int = 80) -> None:
    assert "…" not in text, text
    assert max(len(ln) for ln in text.splitlines()) <= width, text


def test_every_table_fits_80_columns_without_cutting_a_cell(tiny_run, tmp_path, monkeypatch):
    """forge runs list, crucible live's summary, crucible status, gauntlet validate and gauntlet show at
    COLUMNS=80 (the piped console's width): no cell cut (no "…"), no line wider than 80."""
    from commands.edge import console

    monkeypatch.setattr(console, "width", 80)
    run_dir, summary = tiny_run
    r = CliRunner().invoke(cli.forge_app, ["runs", "list", str(run_dir.parent)])
    assert r.exit_code == 0, r.output
    _no_cut(r.stdout)
    assert summary["run_id"] in r.stdout and "finished" in r.stdout
    j = tmp_path / "j.sqlite"
    live = CliRunner().invoke(cli.crucible_app, ["live", "--max-bars", "30", "--journal", str(j)])
    assert live.exit_code == 0, live.output
    _no_cut(live.stdout)
    assert "builtin:" in live.stdout and "equity" in live.stdout
    again = CliRunner().invoke(cli.crucible_app, ["live", "--max-bars", "5", "--journal", str(j)])
    assert again.exit_code == 0 and "archiving it" in again.stdout and "restarting the replay" in again.stdout
    st = CliRunner().invoke(cli.crucible_app, ["status", "--journal", str(j)])
    assert st.exit_code == 0, st.output
    _no_cut(st.stdout)
    assert "builtin:" in st.stdout
    show = CliRunner().invoke(cli.gauntlet_app, ["show", str(run_dir)])
    assert show.exit_code == 0, show.output
    _no_cut("\n".join(ln for ln in show.stdout.splitlines() if not ln.startswith("#")))  # expressions wrap
    report = tmp_path / "r.html"
    report.write_text("old")
    v = CliRunner().invoke(cli.gauntlet_app, ["validate", str(run_dir), "--no-publish", "--report", str(report)])
    assert v.exit_code == 0, v.output
    table = re.split(r"\n#\d", v.stdout)[0]  # the verdict table ("#1 expression" and reasons follow, wrapped)
    assert "SURVIVED" in table or "rejected" in table
    _no_cut(table)
    assert "overwrote the existing file" in " ".join(v.stdout.split())
    assert report.stat().st_mode & 0o777 == 0o644 and "Sharpe nan" not in report.read_text()


def test_runs_list_finds_runs_by_the_index_and_compare_takes_run_ids(tiny_run, tmp_path):
    run_dir, summary = tiny_run
    r = CliRunner().invoke(cli.forge_app, ["runs", "list", "--json"])  # no folder: the run index too
    assert r.exit_code == 0, r.output
    ids = [x["run_id"] for x in loads_strict(r.stdout)["runs"]]
    assert summary["run_id"] in ids  # its --run-dir is a temporary folder, found through the index
    html = tmp_path / "cmp.html"
    c = CliRunner().invoke(cli.forge_app, ["runs", "compare", summary["run_id"], "--html", str(html), "--json"])
    assert c.exit_code == 0, c.output
    assert loads_strict(c.stdout)["runs"][0]["run_id"] == summary["run_id"]
    assert html.stat().st_mode & 0o777 == 0o644
    bad = CliRunner().invoke(cli.forge_app, ["runs", "compare", "no-such-run"])
    assert bad.exit_code == 5 and "neither a run directory nor a run id" in bad.output


def test_backtest_of_a_runs_genome_defaults_to_its_out_of_sample_bars(tiny_run):
    run_dir, _summary = tiny_run
    champ = str(run_dir / "champion.json")
    oos = loads_strict(CliRunner().invoke(cli.forge_app, ["backtest", champ, "--json"]).stdout)
    split = json.loads((run_dir / "manifest.json").read_text())["split"]
    a, b = split["out_of_sample"]["rows"]
    assert oos["data"]["range"] == "out-of-sample" and oos["data"]["bars"] == b - a
    everything = loads_strict(CliRunner().invoke(cli.forge_app, ["backtest", champ, "--bars", "all", "--json"]).stdout)
    assert everything["data"]["range"] == "all" and everything["data"]["bars"] > oos["data"]["bars"]
    t = CliRunner().invoke(cli.forge_app, ["backtest", champ])
    assert "(out-of-sample)" in t.stdout


def test_report_reasons_never_read_nan():
    from gauntlet.report import _no_nan

    assert _no_nan("Sharpe nan (B&H 1.20), beta +nan") == "Sharpe undefined (B&H 1.20), beta undefined"
    assert _no_nan("nanosecond financial") == "nanosecond financial"


def test_hall_of_fame_members_behave_differently(tiny_run):
    """No two hall-of-fame members trade alike in-sample (positions equal or correlated >= HOF_MAX_CORR)."""
    import numpy as np

    from forge.data.gaps import bars_since_gap
    from forge.data.loader import load_bars
    from forge.evolution.run import HOF_MAX_CORR, _same_behaviour
    from forge.gp import Genome
    from forge.strategy import genome_positions, strategy_features

    run_dir, _ = tiny_run
    members = json.loads((run_dir / "hall_of_fame.json").read_text())["members"]
    a, b = json.loads((run_dir / "manifest.json").read_text())["split"]["in_sample"]["rows"]
    bars, _ = load_bars(None)
    t = bars["open_time"].to_numpy()
    pos = []
    for m in members:
        g = Genome.from_dict(m["genome"])
        pos.append(np.asarray(genome_positions(g, strategy_features(bars, g.features), bars_since_gap(t)))[a:b])
    assert len(members) >= 2
    for i in range(len(pos)):
        for j in range(i):
            assert not _same_behaviour(pos[i], pos[j]), (i, j)
    assert [m["rank"] for m in members] == list(range(len(members)))
    # the rule itself, both ways
    x = np.sin(np.arange(500) / 7.0)
    assert _same_behaviour(x, x.copy()) and _same_behaviour(x, 2 * x + 0.1)
    assert not _same_behaviour(x, np.cos(np.arange(500) / 3.0)) and not _same_behaviour(x, np.zeros(500))
    assert HOF_MAX_CORR < 1.0
