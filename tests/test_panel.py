"""A research universe on one clock (issue 30 part 1): instruments, naming, alignment under gaps and late
bars, listing dates, no look-ahead of panel terminals, evolve/Gauntlet/backtest on a panel, and a planted
lead-lag panel the search finds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from forge.core.errors import ConfigError, DataError
from forge.data.panel import (Instrument, build_panel, genome_tags, instrument_files, load_panel, load_run_panel,
                              panel_coverage, panel_name, parse_instrument, split_panel_name)
from forge.data.gaps import bars_since_gap
from forge.data.panels import drop_minutes, lead_lag_panel, list_from, write_klines
from forge.features import FEATURES, compute_features
from forge.gp import Genome
from forge.strategy import genome_positions, instrument_frame, required_history, strategy_features

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent.parent / "shared" / "data" / "binance"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data/binance")

A, B = Instrument("AUSDT", "perp"), Instrument("BUSDT", "spot")


@pytest.fixture(scope="module")
def raw():
    return lead_lag_panel(3000, seed=1, strength=0.5, symbols=("MUSDT", "BUSDT", "AUSDT"))


def test_naming_is_identifiers_and_round_trips():
    assert panel_name("ret_5", None) == "ret_5"
    n = panel_name("ret_5", Instrument("BTCUSDT", "spot"))
    assert n == "ret_5__BTCUSDT_spot" and n.isidentifier()
    assert split_panel_name(n) == ("ret_5", "BTCUSDT_spot")
    assert split_panel_name("ret_5") == ("ret_5", None)
    assert split_panel_name("mtf_ret_1h__FILUSDT_perp") == ("mtf_ret_1h", "FILUSDT_perp")
    assert genome_tags(["ret_1", "ret_5__X_spot", "vol_20__X_spot", "clv__Y_perp"]) == ("X_spot", "Y_perp")
    assert parse_instrument("filusdt:futures-um") == ("FILUSDT", "perp")
    assert parse_instrument("BTCUSDT") == ("BTCUSDT", None)
    with pytest.raises(ConfigError, match="market"):
        parse_instrument("BTCUSDT:options")
    with pytest.raises(ConfigError):
        Instrument.from_tag("BTCUSDT")


def test_alignment_under_gaps_and_late_listing(raw):
    traded = drop_minutes(raw["AUSDT"], 1000, 1050)       # the traded instrument's own gap: rows removed
    other = drop_minutes(list_from(raw["BUSDT"], 200), 1300, 1320)  # listed at row 200; its own gap 1500..1520
    panel = build_panel(traded, {B: other})
    assert panel.height == traded.height and panel["open_time"].to_list() == traded["open_time"].to_list()
    t = panel["open_time"].to_numpy()
    present = panel["close__BUSDT_spot"].is_not_null().to_numpy()
    t_b = other["open_time"].to_numpy()
    np.testing.assert_array_equal(present, np.isin(t, t_b))
    assert not present[:200].any()                                 # nothing invented before the listing
    assert not present[np.isin(t, raw["BUSDT"]["open_time"].to_numpy()[1500:1520])].any()
    fm = strategy_features(panel, ("ret_5__BUSDT_spot", "vol_20__BUSDT_spot", "ret_5"))
    v = fm.row("vol_20__BUSDT_spot")
    assert np.isnan(v[~present]).all()                              # NaN wherever B has no bar
    # B's feature equals B's own feature on its rows when A's clock has no gap in B's window ...
    own = compute_features(other, ("vol_20",)).values[0]
    sub, idx = instrument_frame(panel, "BUSDT_spot")
    pos_in_b = np.searchsorted(t_b, t[idx])
    same = ~((t[idx] >= raw["AUSDT"]["open_time"][1000]) & (t[idx] < raw["AUSDT"]["open_time"][1050] + 21 * 60_000))
    np.testing.assert_array_equal(v[idx][same], own[pos_in_b][same])
    # ... and A's gap restarts B's windows too (B's bars during A's gap are not on the clock): never bridged
    after = int(np.searchsorted(t, raw["AUSDT"]["open_time"][1050]))
    assert np.isnan(v[after:after + 20]).all() and np.isfinite(v[after + 20])
    cov = panel_coverage(panel, {"AUSDT_perp": None, "BUSDT_spot": None})
    assert cov["BUSDT_spot"]["on_clock"]["first_ms"] == int(t_b[0])
    assert cov["BUSDT_spot"]["on_clock"]["bars"] == int(present.sum())
    assert cov["AUSDT_perp"]["on_clock"]["ratio"] == 1.0


def test_late_traded_instrument_has_no_rows_before_its_listing(raw):
    panel = build_panel(list_from(raw["AUSDT"], 500), {B: raw["BUSDT"]})
    assert panel["open_time"][0] == raw["AUSDT"]["open_time"][500]


def test_off_minute_bars_are_refused(raw):
    bad = raw["BUSDT"].with_columns(pl.col("open_time") + 30_000)
    with pytest.raises(DataError, match="whole UTC minutes"):
        build_panel(raw["AUSDT"], {B: bad})


@pytest.mark.parametrize("name", ["ret_1__BUSDT_spot", "vol_20__BUSDT_spot", "count_z_60__BUSDT_spot",
                                  "mtf_ret_15m__BUSDT_spot", "rsi_14__BUSDT_spot", "taker_imb_20__BUSDT_spot"])
def test_panel_terminals_have_no_look_ahead(raw, name):
    """Truncation test: values at t unchanged when every panel row after t is removed."""
    panel = build_panel(drop_minutes(raw["AUSDT"], 700, 720), {B: drop_minutes(list_from(raw["BUSDT"], 90), 1500, 1530)})
    full = strategy_features(panel, (name,)).values[0]
    for cut in (100, 777, 1499, 1512, 2400):
        part = strategy_features(panel.head(cut), (name,)).values[0]
        np.testing.assert_array_equal(part, full[:cut], err_msg=f"{name} at cut {cut}")


def test_single_symbol_genome_trades_the_same_on_a_panel(raw):
    """Old genomes read bare names = the traded instrument: same positions on its bars alone and on a panel."""
    g = Genome.from_tokens(["long_short", "gt_c", "feature:ret_5", "const:0", "lt_c", "feature:vol_z_60", "const:1"],
                           [0.0, -1.0])
    alone = raw["AUSDT"]
    panel = build_panel(alone, {B: list_from(raw["BUSDT"], 400)})
    bsg = bars_since_gap(alone["open_time"].to_numpy())
    p1 = genome_positions(g, strategy_features(alone, g.features), bsg)
    p2 = genome_positions(g, strategy_features(panel, g.features), bsg)
    np.testing.assert_array_equal(p1, p2)
    assert np.abs(p1).sum() > 0


def test_missing_instrument_is_a_clear_error(raw):
    with pytest.raises(ConfigError, match="hold no instrument ZUSDT_spot"):
        strategy_features(raw["AUSDT"], ("ret_1__ZUSDT_spot",))


def test_required_history_counts_panel_terminals():
    g = Genome.from_tokens(["pos_sign", "ts_mean", "feature:vol_20__BUSDT_spot", "window:10"], [])
    assert required_history(g) == FEATURES["vol_20"].lookback + 9 + 1


def _write_panel(root: Path, frames: dict[str, pl.DataFrame], markets: dict[str, str]) -> None:
    for s, f in frames.items():
        write_klines(f, root, s, markets[s])


def test_instrument_files_markets(tmp_path, raw):
    write_klines(raw["AUSDT"], tmp_path, "AUSDT", "perp")
    write_klines(raw["AUSDT"], tmp_path, "AUSDT", "spot")
    with pytest.raises(ConfigError, match="AUSDT:spot or AUSDT:perp"):
        instrument_files([tmp_path], "AUSDT", None)
    inst, files = instrument_files([tmp_path], "AUSDT", "perp")
    assert inst.tag == "AUSDT_perp" and all("futures-um" in str(f) for f in files)
    with pytest.raises(DataError, match="no .*ZUSDT"):
        instrument_files([tmp_path], "ZUSDT", None)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs /work/shared/data/binance")
def test_real_panel_mixes_spot_and_perp():
    tinst, panel, covs, insts = load_panel([SHARED], ["BTCUSDT", "FILUSDT", "ALGOUSDT"], "FILUSDT")
    assert tinst.tag == "FILUSDT_perp" and list(covs) == ["FILUSDT_perp", "BTCUSDT_spot", "ALGOUSDT_perp"]
    assert insts["BTCUSDT_spot"].market == "spot" and insts["ALGOUSDT_perp"].market == "perp"
    assert panel.height == covs["FILUSDT_perp"].n_bars
    assert panel["close__BTCUSDT_spot"].null_count() < panel.height // 100


def _t_stat(oos: dict, res) -> float:
    """t-statistic of the out-of-sample mean net return: per-bar Sharpe * sqrt(bars) (the annualised Sharpe
    over sqrt(525,600 bars a year))."""
    a, b = res.manifest["split"]["out_of_sample"]["rows"]
    return float(oos["sharpe"]) / np.sqrt(525_600.0) * np.sqrt(b - a)


PLANT_CFG = """
[evolve]
seed = {seed}
population = 60
generations = 4
hall_of_fame_size = 5
init_max_depth = 4
max_depth = 6
max_size = 25
jobs = 1
data = ["{data}"]
output_dir = "{out}"
subtree_cache_mb = 64
[fitness]
min_trades = 5
[surrogate]
enabled = false
[causal]
enabled = true
tau_max = 3
max_samples = 5000
[universe]
symbols = ["MKTUSDT", "LEADUSDT", "FOLLUSDT"]
trade = ["FOLLUSDT"]
"""


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A small evolve on a planted lead-lag panel: the follower's next return carries the leader's
    idiosyncratic move (12 days, strength 3 over 15 bars)."""
    from forge.core.runconfig import load_run_config
    from forge.evolution.run import evolve

    root = tmp_path_factory.mktemp("planted")
    frames = lead_lag_panel(12 * 1440, seed=3, strength=3.0)
    frames["LEADUSDT"] = list_from(frames["LEADUSDT"], 30)
    _write_panel(root / "data", frames, {"MKTUSDT": "spot", "LEADUSDT": "spot", "FOLLUSDT": "perp"})
    cfg_path = root / "plant.toml"
    cfg_path.write_text(PLANT_CFG.format(seed=0, data=root / "data", out=root / "runs"))
    res = evolve(load_run_config(cfg_path), run_dir=root / "runs" / "r")
    return root, res


@pytest.mark.slow
def test_planted_lead_lag_is_found_and_evaluated_on_the_same_panel(planted_run):
    root, res = planted_run
    m = res.manifest
    assert m["universe"]["trade"] == "FOLLUSDT_perp"
    assert set(m["universe"]["instruments"]) == {"FOLLUSDT_perp", "MKTUSDT_spot", "LEADUSDT_spot"}
    assert m["universe"]["instruments"]["LEADUSDT_spot"]["on_clock"]["bars"] == 12 * 1440 - 30
    assert m["universe"]["funding"]["interval_h"] == 8 and m["universe"]["funding"]["source"] == "default"
    assert m["universe"]["funding"]["feature"] == "funding_min_8h"
    assert m["costs"]["preset"] == "futures"  # costs follow the traded instrument (a perp)
    champ = res.champion
    assert any(f.endswith("__LEADUSDT_spot") for f in champ.features), champ.expression()
    assert champ.meta["universe"]["trade"] == "FOLLUSDT_perp"
    oos = res.hall_of_fame[0]["out_of_sample"]
    assert oos["total_return"] > 0.0 and _t_stat(oos, res) > 3, (oos, _t_stat(oos, res))
    # the Gauntlet's context and forge backtest rebuild the same panel and the same positions
    from commands.backtest import backtest_genome
    from gauntlet.context import RunContext

    ctx = RunContext.load(res.run_dir, max_candidates=1)
    assert "close__LEADUSDT_spot" in ctx.bars.columns
    bt = backtest_genome(res.run_dir / "champion.json", [root / "data"], bars_range="all")
    assert bt.bars.height == ctx.bars.height
    np.testing.assert_array_equal(genome_positions(champ, ctx.features, bars_since_gap(ctx.open_time)),
                                  ctx.candidates[0].position)
    np.testing.assert_array_equal(ctx.candidates[0].position_fn(ctx.bars), ctx.candidates[0].position)
    panel, cov, _ = load_run_panel([root / "data"], m["universe"])
    assert panel.equals(ctx.bars)
    saved = json.loads((res.run_dir / "champion.json").read_text())
    assert Genome.from_dict(saved).sha256 == champ.sha256


@pytest.mark.slow
def test_null_panel_gives_no_leader_edge(tmp_path):
    """The same search on a null panel (shared market factor, strength 0) finds no out-of-sample edge
    through the leader: the planted test above cannot pass by construction of the search alone."""
    from forge.core.runconfig import load_run_config
    from forge.evolution.run import evolve

    frames = lead_lag_panel(12 * 1440, seed=3, strength=0.0)
    _write_panel(tmp_path / "data", frames, {"MKTUSDT": "spot", "LEADUSDT": "spot", "FOLLUSDT": "perp"})
    cfg_path = tmp_path / "null.toml"
    cfg_path.write_text(PLANT_CFG.format(seed=0, data=tmp_path / "data", out=tmp_path / "runs"))
    res = evolve(load_run_config(cfg_path), run_dir=tmp_path / "runs" / "r")
    oos = res.hall_of_fame[0]["out_of_sample"]
    assert not _t_stat(oos, res) >= 3, (res.champion.expression(), oos)  # nan: no trade out of sample


def test_universe_config_is_validated():
    from forge.core.runconfig import load_run_config, with_overrides

    cfg = load_run_config(None)
    with pytest.raises(ConfigError, match="needs universe.symbols"):
        with_overrides(cfg, "universe", trade=("FILUSDT",))
    with pytest.raises(ConfigError, match="needs universe.trade"):
        with_overrides(cfg, "universe", symbols=("FILUSDT",))
    with pytest.raises(ConfigError, match="market"):
        with_overrides(cfg, "universe", symbols=("FILUSDT:weird",), trade=("FILUSDT",))
    with pytest.raises(ConfigError, match="unknown feature"):
        with_overrides(cfg, "universe", symbols=("A",), trade=("A",), features=("nope",))


def test_universe_and_symbols_are_two_modes(tmp_path, raw):
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import _load_markets

    write_klines(raw["AUSDT"], tmp_path, "AUSDT", "perp")
    cfg = with_overrides(load_run_config(None), "evolve", data=(str(tmp_path),), symbols=("AUSDT",))
    cfg = with_overrides(cfg, "universe", symbols=("AUSDT",), trade=("AUSDT",))
    with pytest.raises(ConfigError, match="two modes"):
        _load_markets(cfg, None, None)


@pytest.mark.slow
def test_cli_trade_two_instruments_writes_one_run_each(tmp_path):
    import subprocess
    import sys

    frames = lead_lag_panel(3 * 1440, seed=0)
    _write_panel(tmp_path / "d", frames, {"MKTUSDT": "spot", "LEADUSDT": "spot", "FOLLUSDT": "perp"})
    cmd = [str(Path(sys.executable).with_name("forge"))]
    out = subprocess.run([*cmd, "evolve", "-c", str(REPO / "configs" / "smoke.toml"), "--data", str(tmp_path / "d"),
                          "--universe", "MKTUSDT,LEADUSDT,FOLLUSDT", "--trade", "FOLLUSDT,LEADUSDT", "--gens", "0",
                          "--coevolution", "off", "--run-dir", str(tmp_path / "runs"), "--json"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for tag, trade in (("FOLLUSDT", "FOLLUSDT_perp"), ("LEADUSDT", "LEADUSDT_spot")):
        man = json.loads((tmp_path / "runs" / tag / "manifest.json").read_text())
        assert man["universe"]["trade"] == trade
    bad = subprocess.run([*cmd, "evolve", "--data", str(tmp_path / "d"), "--universe", "MKTUSDT,NOPEUSDT",
                          "--trade", "MKTUSDT", "--gens", "0"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert bad.returncode == 2 and "--universe NOPEUSDT: no files" in bad.stderr and "Traceback" not in bad.stderr


def test_live_intake_accepts_panel_genomes_and_refuses_unknown_bases_in_one_line():
    """Live panel feeds exist (crucible.panel, tests/test_crucible_panel.py): the intake check accepts registry
    features of other instruments, refuses an unknown base feature in one line, and the one-symbol engine
    refuses to compute a panel genome (its signals come from crucible.panel)."""
    from crucible.signals import SignalEngine, check_features
    from forge.core.errors import GenomeError

    check_features(Genome.from_tokens(["pos_sign", "feature:ret_1__BTCUSDT_spot"], []))
    g = Genome.from_tokens(["pos_sign", "feature:nope_1__BTCUSDT_spot"], [])
    with pytest.raises(GenomeError, match="other instruments") as e:
        check_features(g)
    assert "\n" not in str(e.value)
    g = Genome.from_tokens(["pos_sign", "feature:ret_1__BTCUSDT_spot"], [])
    cols = {c: np.zeros(3) for c in ("open", "high", "low", "close", "volume", "taker_buy_volume")}
    cols["open_time"] = np.arange(3, dtype=np.int64) * 60_000
    with pytest.raises(GenomeError, match="crucible.panel"):
        SignalEngine().positions({"g": g}, cols)
