"""Recorded L2 books as GP terminals (``forge evolve --l2 DIR``, forge.features.l2terminals): NaN where nothing
was recorded, no look-ahead, an edge carried by the book alone is found and passed while its null is not, the
Gauntlet and ``forge backtest`` rebuild the same terminals (and refuse a recording that changed), bad input is
one clear line, and the live intake counts the book windows in the history a champion needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import forge_app, gauntlet_app
from forge.core.config import CONFIG_DIR
from forge.core.errors import ConfigError, DataError, GenomeError
from forge.core.runconfig import load_run_config, with_overrides
from forge.data.panels import write_klines
from forge.data.planted_l2 import planted_l2_market, write_recording
from forge.features.l2terminals import (
    L2_FEATURES,
    attach_l2,
    l2_bars_since_gap,
    l2_features,
    reattach_l2,
)
from forge.gp import Genome
from forge.strategy import strategy_features

SMOKE = CONFIG_DIR / "smoke.toml"
SYM, VENUE = "BOOKUSDT", "binanceusdm"
FROM = 1440  # the recording starts a day after the klines


def _market(root: Path, n_bars: int = 4 * 1440, seed: int = 1, strength: float = 0.3, venue: str = VENUE):
    bars, book, gaps, p = planted_l2_market(n_bars, seed=seed, strength=strength, record_from=FROM)
    write_recording(root, venue, SYM, book, gaps)
    return bars, p


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    bars, p = _market(root)
    frame, rec = attach_l2(bars, root, SYM)
    return root, bars, frame, rec, p


def test_bars_since_gap_restarts_after_invalid_bars_and_kline_gaps():
    t = np.array([0, 1, 2, 3, 4, 6, 7, 8], dtype=np.int64) * 60_000  # a kline gap before minute 6
    valid = np.array([True, True, False, True, True, True, True, True])
    assert l2_bars_since_gap(t, valid).tolist() == [0, 1, 0, 0, 1, 0, 1, 2]


def test_terminals_are_nan_outside_the_recording_and_across_its_gap(recorded):
    _root, bars, frame, rec, _p = recorded
    assert frame.height == bars.height and rec["venue"] == VENUE and rec["k"] == 5 and rec["tick"] == 0.01
    valid = frame["l2_valid"].to_numpy()
    assert not valid[:FROM + 1].any()  # before the recording, and the bar its "start" marker overlaps
    gap = np.flatnonzero(~valid[FROM + 1:]) + FROM + 1
    assert 30 <= gap.size <= 33 and gap.max() - gap.min() == gap.size - 1  # the 30 lost minutes, one block
    assert rec["valid_bars"] == int(valid.sum()) and rec["first_ms"] == int(bars["open_time"][FROM + 1])
    vals = l2_features(frame, tuple(L2_FEATURES))
    for name, (v, lb) in vals.items():
        assert np.isnan(v[~valid]).all(), name
        assert np.isfinite(v[valid]).mean() > 0.95, name
    z = vals["l2_ofi_z_60"][0]
    after = gap.max() + 1
    assert np.isnan(z[after:after + 59]).all() and np.isfinite(z[after + 59])  # the window refills after the gap


def test_terminals_have_no_look_ahead(recorded):
    root, bars, frame, _rec, _p = recorded
    full = l2_features(frame, tuple(L2_FEATURES))
    for t in (FROM + 100, 2 * 1440 + 17, 3 * 1440 + 777):
        cut, _ = attach_l2(bars.head(t + 1), root, SYM)
        part = l2_features(cut, tuple(L2_FEATURES))
        for name in L2_FEATURES:
            np.testing.assert_array_equal(part[name][0], full[name][0][:t + 1], err_msg=f"{name} at {t}")


def test_planted_edge_is_carried_by_the_book_alone(recorded, tmp_path):
    _root, _bars, frame, _rec, _p = recorded
    fm = strategy_features(frame, ("l2_pressure", "count_z_60", "vol_z_60", "taker_imb", "clv"), None)
    r = np.diff(np.log(frame["close"].to_numpy()), prepend=np.nan)

    def corr(x):
        ok = np.isfinite(x[:-1]) & np.isfinite(r[1:])
        return float(np.corrcoef(x[:-1][ok], r[1:][ok])[0, 1])

    assert corr(fm.row("l2_pressure")) > 0.12
    for f in ("count_z_60", "vol_z_60", "taker_imb", "clv"):
        assert abs(corr(fm.row(f))) < 0.03, f
    null_bars, _ = _market(tmp_path / "null", strength=0.0)
    null, _ = attach_l2(null_bars, tmp_path / "null", SYM)
    r = np.diff(np.log(null["close"].to_numpy()), prepend=np.nan)
    assert abs(corr(strategy_features(null, ("l2_pressure",), None).row("l2_pressure"))) < 0.03


def _write(tmp: Path, strength: float, seed: int) -> tuple[Path, Path]:
    bars, book, gaps, _p = planted_l2_market(6 * 1440, seed=seed, strength=strength, record_from=FROM)
    write_klines(bars, tmp / "klines", SYM)
    write_recording(tmp / "rec", VENUE, SYM, book, gaps)
    return tmp / "klines", tmp / "rec"


def _evolve(tmp: Path, data: Path, rec: Path, *extra: str):
    return CliRunner().invoke(forge_app, ["evolve", "-c", str(SMOKE), "--data", str(data), "--l2", str(rec),
                                          "--run-dir", str(tmp / "run"), "--coevolution", "off", *extra])


def test_evolve_with_l2_finds_a_book_edge_the_gauntlet_passes_and_rebuilds(tmp_path):
    data, rec = _write(tmp_path, 0.3, 3)
    r = _evolve(tmp_path, data, rec)
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    man = json.loads((run / "manifest.json").read_text())
    l2 = man["universe"]["l2"]["books"][0]
    assert l2["venue"] == VENUE and l2["symbol"] == SYM and len(l2["digest"]) == 64
    assert set(L2_FEATURES) <= set(man["causal_filter"]["candidates"])
    champ = Genome.load(run / "champion.json")
    assert {"l2_pressure", "l2_pressure_close"} & set(champ.features), champ.features  # it reads the book
    assert champ.meta["l2"]["books"][0]["digest"] == l2["digest"]
    g = CliRunner().invoke(gauntlet_app, ["validate", str(run), "--no-publish"])
    assert g.exit_code == 0, g.output
    cands = json.loads((run / "gauntlet_report.json").read_text())["candidates"]
    passed = [c for c in cands if c["survived"] and c["edge_kind"] == "directional"
              and {"l2_pressure", "l2_pressure_close"} & set(c["features"])]
    assert passed, [(c["expression"], {n: s["passed"] for n, s in c["stages"].items()}) for c in cands]
    b = CliRunner().invoke(forge_app, ["backtest", str(run / "champion.json"), "--data", str(data)])
    assert b.exit_code == 0 and "out-of-sample" in b.output, b.output
    # the recording moves: it is found with --l2, and a missing one is one clear line
    moved = tmp_path / "moved"
    rec.rename(moved)
    g = CliRunner().invoke(gauntlet_app, ["validate", str(run), "--no-publish"])
    assert g.exit_code == DataError.exit_code and "is not there" in g.output and "--l2 DIR" in g.output, g.output
    g = CliRunner().invoke(gauntlet_app, ["validate", str(run), "--no-publish", "--l2", str(moved)])
    assert g.exit_code == 0 and str(moved) in json.loads((run / "gauntlet_report.json").read_text())["data_source"]
    b = CliRunner().invoke(forge_app, ["backtest", str(run / "champion.json"), "--data", str(data), "--l2", str(moved)])
    assert b.exit_code == 0, b.output
    moved.rename(rec)
    # the recording changes after the run: the Gauntlet refuses to rebuild other terminals than the run's
    day = sorted((rec / VENUE / SYM / "l2").glob("*.parquet"))[2]
    day.unlink()
    g = CliRunner().invoke(gauntlet_app, ["validate", str(run), "--no-publish"])
    assert g.exit_code == DataError.exit_code and "changed since the run" in g.output, g.output
    assert "Traceback" not in g.output


def test_evolve_with_l2_on_a_null_book_publishes_nothing(tmp_path):
    data, rec = _write(tmp_path, 0.0, 4)
    assert _evolve(tmp_path, data, rec).exit_code == 0
    g = CliRunner().invoke(gauntlet_app, ["validate", str(tmp_path / "run"), "--no-publish"])
    assert g.exit_code == 0, g.output
    cands = json.loads((tmp_path / "run" / "gauntlet_report.json").read_text())["candidates"]
    assert not any(c["survived"] for c in cands), [c["expression"] for c in cands if c["survived"]]


def test_bad_recordings_are_one_clear_line(tmp_path):
    data, rec = _write(tmp_path, 0.3, 5)
    cases = {
        "nowhere": (["--l2", str(tmp_path / "nowhere")], "no such recording directory"),
        "other symbol": (["--l2", str(tmp_path / "other")], "no recording of BOOKUSDT"),
        "two venues": (["--l2", str(tmp_path / "two")], "choose one with --l2-venue"),
        "wrong venue": (["--l2", str(rec), "--l2-venue", "bybit"], "no recording of BOOKUSDT under venue 'bybit'"),
    }
    _b, book, gaps, _ = planted_l2_market(3 * 1440, seed=5, strength=0.3)
    write_recording(tmp_path / "other", VENUE, "ELSEUSDT", book, gaps)
    shutil.copytree(rec, tmp_path / "two")
    shutil.copytree(rec / VENUE, tmp_path / "two" / "bybit")
    for name, (flags, want) in cases.items():
        r = CliRunner().invoke(forge_app, ["evolve", "-c", str(SMOKE), "--data", str(data), "--gens", "0",
                                           "--run-dir", str(tmp_path / name.replace(" ", "_")), *flags])
        assert r.exit_code == DataError.exit_code, (name, r.output)
        assert want in r.output and "Traceback" not in r.output, (name, r.output)
    # a recording of other days than the bars
    late, lbook, lgaps, _ = planted_l2_market(3 * 1440, seed=6, strength=0.3)
    shifted = lbook.with_columns((lbook["ts_ms"] + 30 * 86_400_000).alias("ts_ms"),
                                 (lbook["recv_ms"] + 30 * 86_400_000).alias("recv_ms"))
    write_recording(tmp_path / "late", VENUE, SYM, shifted, lgaps.clear())
    with pytest.raises(DataError, match="no book state without a gap inside the bars' range"):
        attach_l2(late, tmp_path / "late", SYM)


def test_l2_config_is_validated_and_not_combined_with_symbols(tmp_path):
    cfg = load_run_config(SMOKE)
    for kw, want in (({"k": 0}, "l2.k"), ({"dir": "x", "features": ("l2_nope",)}, "unknown L2 terminal"),
                     ({"venue": "bybit"}, "need l2.dir")):
        with pytest.raises(ConfigError, match=want):
            with_overrides(cfg, "l2", **kw)
    data, rec = _write(tmp_path, 0.3, 7)
    bars2, *_ = planted_l2_market(2 * 1440, seed=8, strength=0.0)
    write_klines(bars2, data, "OTHRUSDT")
    r = CliRunner().invoke(forge_app, ["evolve", "-c", str(SMOKE), "--data", str(data), "--l2", str(rec),
                                       "--symbols", f"{SYM},OTHRUSDT", "--gens", "0",
                                       "--run-dir", str(tmp_path / "r")])
    assert r.exit_code == ConfigError.exit_code and "cannot be combined with --symbols" in r.output, r.output
    # --l2-symbols: only with a universe, and only its instruments
    for flags, want in ((["--symbols", SYM, "--l2-symbols", SYM], "this run has no --universe"),
                        (["--universe", f"{SYM},OTHRUSDT", "--trade", "OTHRUSDT", "--l2-symbols", "ZZZUSDT"],
                         "'ZZZUSDT' is not an instrument of the universe")):
        r = CliRunner().invoke(forge_app, ["evolve", "-c", str(SMOKE), "--data", str(data), "--l2", str(rec),
                                           "--gens", "0", "--run-dir", str(tmp_path / "s"), *flags])
        assert r.exit_code == ConfigError.exit_code and want in r.output, (flags, r.output)
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_features_without_the_recording_are_a_config_error(recorded):
    _root, bars, _frame, _rec, _p = recorded
    with pytest.raises(ConfigError, match="forge evolve --l2 DIR"):
        strategy_features(bars, ("ret_1", "l2_pressure"), None)


def test_reattach_refuses_a_changed_recording_only_when_asked(recorded, tmp_path):
    root, bars, frame, rec, _p = recorded
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    moved = {"books": [{**rec, "dir": str(copy)}]}
    assert reattach_l2(bars, moved, check_digest=True)["l2_pressure"].equals(frame["l2_pressure"])
    sorted((copy / VENUE / SYM / "l2").glob("*.parquet"))[1].unlink()
    with pytest.raises(DataError, match="changed since the run"):
        reattach_l2(bars, moved, check_digest=True)
    assert reattach_l2(bars, moved, check_digest=False).height == bars.height  # a holdout on other bars


def test_live_intake_counts_the_book_windows_in_the_history_a_champion_needs():
    """The intake accepts book terminals (the bench's books feed them: tests/test_crucible_books.py) and counts their
    windows of valid book bars in the history a champion needs."""
    from crucible.signals import check_genome
    from forge.strategy import required_history

    g = Genome.from_tokens(["pos_sign", "feature:l2_ofi_z_60"], [])
    assert required_history(g) == 60
    check_genome(g, 60)
    with pytest.raises(GenomeError, match="needs 60 closed bars") as e:
        check_genome(g, 59)
    assert "\n" not in str(e.value)
    check_genome(Genome.from_tokens(["pos_sign", "feature:l2_pressure__BOOKUSDT_perp"], []), 2)


def test_a_universe_reads_another_instruments_book(tmp_path):
    """The leader's recorded book carries the follower's next return: with --universe and --l2-symbols the
    leader's terminals are ``l2_*__BOOKUSDT_spot`` (the same values as when it is traded), the traded follower
    has no recording (its own book is optional then), and the search finds the leader's book."""
    from forge.data.panels import bars_from_returns

    lead, book, gaps, p = planted_l2_market(6 * 1440, seed=9, strength=0.0)
    rng = np.random.default_rng(10)
    r = 1e-3 * rng.normal(size=lead.height)
    r[1:] += 1e-3 * 0.3 * p[:-1]
    foll = bars_from_returns(r, rng)
    write_klines(lead, tmp_path / "klines", SYM)
    write_klines(foll, tmp_path / "klines", "FOLLUSDT")
    write_recording(tmp_path / "rec", VENUE, SYM, book, gaps)
    res = CliRunner().invoke(forge_app, ["evolve", "-c", str(SMOKE), "--data", str(tmp_path / "klines"),
                                         "--universe", f"{SYM},FOLLUSDT", "--trade", "FOLLUSDT",
                                         "--l2", str(tmp_path / "rec"), "--l2-symbols", SYM,
                                         "--run-dir", str(tmp_path / "run"), "--coevolution", "off"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (bk,) = man["universe"]["l2"]["books"]
    assert bk["instrument"] == f"{SYM}_spot" and bk["symbol"] == SYM
    cands = set(man["causal_filter"]["candidates"])
    assert {f"{n}__{SYM}_spot" for n in L2_FEATURES} <= cands and not set(L2_FEATURES) & cands
    champ = Genome.load(tmp_path / "run" / "champion.json")
    assert any(f.startswith("l2_pressure") and f.endswith(f"__{SYM}_spot") for f in champ.features), champ.features
    # the leader's terminal on the panel equals its book's terminal with the leader traded, on the shared rows
    from forge.data.panel import load_run_panel

    panel, _c, _ = load_run_panel([str(tmp_path / "klines")], man["universe"])
    panel = reattach_l2(panel, man["universe"]["l2"], check_digest=True)
    own, _ = attach_l2(lead, tmp_path / "rec", SYM)
    a = strategy_features(panel, (f"l2_pressure__{SYM}_spot",), None).values[0]
    b = strategy_features(own, ("l2_pressure",), None).values[0]
    np.testing.assert_array_equal(a, b)
    g = CliRunner().invoke(gauntlet_app, ["validate", str(tmp_path / "run"), "--no-publish"])
    assert g.exit_code == 0, g.output
