"""Feature synthesis: raw inputs, forward returns, planted-signal recovery, library round trip and tampering."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import polars as pl
import pytest
from deap import gp
from scipy.stats import spearmanr

from forge.core.errors import ConfigError, DataError, GenomeError
from forge.data.schema import BAR_MS, BAR_SCHEMA
from forge.gp import BufferPool, Genome, build_pset, compile_program, genome_from_individual, run_program
from forge.gp.primitives import FSeries
from forge.gp.pset import generate
from forge.synthesize import (
    LIBRARY_SCHEMA,
    RAW_INPUTS,
    RAW_LOOKBACKS,
    FeatureLibrary,
    LibraryFeature,
    SynthesisConfig,
    evaluate_feature,
    forward_returns,
    library_features,
    load_feature_library,
    mutual_information,
    raw_inputs,
    synthesize,
    write_feature_library,
)

T0 = 1_718_582_400_000  # 2024-06-17 00:00 UTC


def _bars(n: int = 6000, seed: int = 0, strength: float = 1.5, gap_at: int | None = 2500) -> pl.DataFrame:
    """Synthetic bar frame with a planted predictor.

    The taker-buy ratio tau is i.i.d. U(0.2, 0.8); the next bar's log return
    is ``sigma * (strength * z[t] + noise)`` where z[t] is the standardised
    5-bar change of the taker ratio, tau[t] - tau[t-5] (in tree form
    ``delta(taker_ratio, 5)``).  The raw taker ratio alone carries half of
    that signal's variance; volume, count, the bar ranges and the reachable
    lags of returns carry none (z is uncorrelated at lags 1..3 and 5+).
    Full MI (Gaussian approximation) = 0.5 * ln(1 + strength**2) nats.  A
    10-bar gap is cut out after row ``gap_at``.
    """
    g = np.random.default_rng(seed)
    sigma = 1e-3
    tau = g.uniform(0.2, 0.8, n)
    z = np.zeros(n)
    z[5:] = (tau[5:] - tau[:-5]) / (0.6 / np.sqrt(12.0) * np.sqrt(2.0))
    r = np.empty(n)
    r[0] = 0.0
    r[1:] = sigma * (strength * z[:-1] + g.standard_normal(n - 1))
    close = 30_000.0 * np.exp(np.cumsum(r))
    prev = np.concatenate(([30_000.0], close[:-1]))
    open_ = prev * np.exp(g.normal(0.0, 1e-4, n))
    high = np.maximum(open_, close) * np.exp(g.exponential(5e-4, n))
    low = np.minimum(open_, close) * np.exp(-g.exponential(5e-4, n))
    volume = g.lognormal(2.0, 0.5, n)
    taker = volume * tau
    count = g.poisson(300, n).astype(np.int64)
    open_time = T0 + BAR_MS * np.arange(n, dtype=np.int64)
    if gap_at is not None:
        open_time[gap_at:] += 10 * BAR_MS
    return pl.DataFrame({
        "open_time": open_time, "open": open_, "high": high, "low": low, "close": close, "volume": volume,
        "close_time": open_time + BAR_MS - 1, "quote_volume": volume * close, "count": count,
        "taker_buy_volume": taker, "taker_buy_quote_volume": taker * close,
    }, schema=BAR_SCHEMA)


FAST = SynthesisConfig(seed=3, population=50, generations=12, n_features=2, max_depth=4, max_size=12,
                       sample_rows=1500, in_sample_fraction=0.6)
TINY = SynthesisConfig(seed=1, population=12, generations=2, n_features=2, max_depth=3, max_size=8,
                       sample_rows=600, in_sample_fraction=0.6)


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return _bars()


@pytest.fixture(scope="module")
def library(bars: pl.DataFrame) -> FeatureLibrary:
    return synthesize(bars, FAST)


# --------------------------------------------------------------------------- raw inputs and target


def test_raw_inputs_values_and_gap() -> None:
    df = _bars(n=50, gap_at=20)
    raw = raw_inputs(df)
    assert raw.names == RAW_INPUTS and raw.values.shape == (7, 50)
    c, o, h, lo = (df[k].to_numpy() for k in ("close", "open", "high", "low"))
    v = dict(zip(raw.names, raw.values))
    np.testing.assert_allclose(v["r_close"][1:20], np.log(c[1:20] / c[:19]))
    np.testing.assert_allclose(v["r_open"][21:], np.log(o[21:] / c[20:-1]))
    np.testing.assert_allclose(v["r_high"], np.log(h / c))
    np.testing.assert_allclose(v["r_low"], np.log(lo / c))
    np.testing.assert_allclose(v["taker_ratio"], df["taker_buy_volume"].to_numpy() / df["volume"].to_numpy())
    np.testing.assert_allclose(v["log_count"], np.log1p(df["count"].to_numpy()))
    # the previous close is unknown at the first bar and right after the gap
    for name in ("r_close", "r_open"):
        assert np.isnan(v[name][[0, 20]]).all() and np.isfinite(v[name][np.r_[1:20, 21:50]]).all()
    assert raw.bars_since_gap[20] == 0 and raw.bars_since_gap[19] == 19


def test_raw_inputs_reject_bad_prices() -> None:
    df = _bars(n=30, gap_at=None).with_columns(pl.when(pl.int_range(pl.len()) == 7).then(0.0)
                                                .otherwise(pl.col("low")).alias("low"))
    with pytest.raises(DataError, match="'low'.*row 7"):
        raw_inputs(df)
    with pytest.raises(DataError, match="taker_buy_volume"):
        raw_inputs(_bars(n=30).drop("taker_buy_volume"))


def test_forward_returns_horizon_and_gap() -> None:
    close = np.array([100.0, 101.0, 102.0, 99.0, 98.0, 97.0])
    t = T0 + BAR_MS * np.array([0, 1, 2, 5, 6, 7])  # gap between rows 2 and 3
    y1 = forward_returns(close, t, 1)
    np.testing.assert_allclose(y1[[0, 1, 3, 4]], np.log(close[[1, 2, 4, 5]] / close[[0, 1, 3, 4]]))
    assert np.isnan(y1[[2, 5]]).all()
    y2 = forward_returns(close, t, 2)
    assert np.isclose(y2[0], np.log(102 / 100)) and np.isclose(y2[3], np.log(97 / 99))
    assert np.isnan(y2[[1, 2, 4, 5]]).all()
    with pytest.raises(ValueError, match="horizon"):
        forward_returns(close, t, 0)


def test_mutual_information_detects_dependence() -> None:
    g = np.random.default_rng(1)
    x = g.standard_normal(3000)
    noise = g.standard_normal(3000)
    dep = mutual_information(x, x + 0.5 * noise, seed=2)
    ind = mutual_information(x, noise, seed=2)
    # Gaussian: MI = 0.5 * ln(1 + 1/0.25) = 0.80 nats
    assert abs(dep - 0.5 * np.log(5.0)) < 0.08 and ind < 0.03
    x[:100] = np.nan  # NaN rows are dropped, not propagated
    assert mutual_information(x, x + 0.5 * noise, seed=2) > 0.6
    assert mutual_information(np.ones(100), noise[:100]) == 0.0


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="synthesis.population"):
        SynthesisConfig(population=1).validate()
    with pytest.raises(ConfigError, match="in_sample_fraction"):
        synthesize(_bars(n=300), SynthesisConfig(in_sample_fraction=1.5))
    with pytest.raises(DataError, match="out-of-sample segment"):
        synthesize(_bars(n=300, gap_at=None), SynthesisConfig(in_sample_fraction=0.9, sample_rows=100))


# --------------------------------------------------------------------------- synthesis


def _random_tree_oos_mi(bars: pl.DataFrame, cfg: SynthesisConfig, n_trees: int = 50) -> np.ndarray:
    """Out-of-sample MI of random feature trees, measured exactly as synthesis reports it."""
    from forge.core import rng as frng

    raw = raw_inputs(bars)
    y = forward_returns(bars["close"].to_numpy(), raw.open_time, cfg.horizon)
    n_is = int(bars.height * cfg.in_sample_fraction)
    idx = n_is + np.flatnonzero(np.isfinite(y[n_is:]))
    if idx.size > cfg.sample_rows:
        gen = frng.generator(cfg.seed, "synthesize", "sample", "out")
        idx = np.sort(gen.choice(idx, size=cfg.sample_rows, replace=False))
    pset = build_pset(RAW_INPUTS)
    state = random.getstate()
    random.seed(12345)
    try:
        out = []
        while len(out) < n_trees:
            tree = gp.PrimitiveTree(generate(pset, 1, cfg.max_depth, type_=FSeries, full=random.random() < 0.5))
            if len(tree) > cfg.max_size:
                continue
            x, _ = evaluate_feature(genome_from_individual(tree, pset), raw)
            out.append(mutual_information(x[idx], y[idx], cfg.n_neighbors,
                                          frng.int_seed(cfg.seed, "synthesize", "mi")))
    finally:
        random.setstate(state)
    return np.array(out)


def test_synthesis_recovers_planted_feature_better_than_chance(bars: pl.DataFrame, library: FeatureLibrary) -> None:
    assert 1 <= len(library.features) <= FAST.n_features
    best = library.features[0]
    assert best.genome.root == "F" and set(best.genome.features) <= set(RAW_INPUTS)
    random_mi = _random_tree_oos_mi(bars, FAST)
    assert best.mi_out_of_sample > np.percentile(random_mi, 95), (best.genome.expression(), random_mi)
    # the planted driver is the taker ratio's 5-bar change: the feature reads it and recovers over half
    # of the planted information (0.5 * ln(1 + 1.5**2) = 0.59 nats); the best random tree stays near 0.2
    assert "taker_ratio" in best.genome.features
    assert best.mi_out_of_sample > 0.5 * 0.5 * np.log(1 + 1.5**2)
    assert best.mi_in_sample > 0.3
    # permutation null on the out-of-sample target: far below, p-value at its floor
    assert best.mi_out_of_sample_null < 0.05
    assert best.p_value_out_of_sample == pytest.approx(1 / (1 + FAST.null_permutations))


def test_no_signal_gives_no_out_of_sample_information() -> None:
    """On bars without a planted signal the reported out-of-sample MI is at the null level."""
    flat = _bars(n=4000, strength=0.0)
    lib = synthesize(flat, dataclasses.replace(TINY, population=20, generations=3, n_features=1))
    f = lib.features[0]
    # in-sample MI of the best of many candidates is inflated by selection; out of sample it is not
    assert f.mi_out_of_sample < 0.05 and f.mi_out_of_sample < f.mi_in_sample
    assert f.p_value_out_of_sample > 1 / (1 + TINY.null_permutations)


def test_synthesis_is_deterministic(bars: pl.DataFrame) -> None:
    events: list[dict] = []
    before = random.getstate()
    one = synthesize(bars, TINY, progress=events.append)
    assert random.getstate() == before  # the caller's random stream is untouched
    two = synthesize(bars, TINY)
    assert len(one.features) == TINY.n_features
    assert [f.genome.sha256 for f in one.features] == [f.genome.sha256 for f in two.features]
    assert [f.mi_out_of_sample for f in one.features] == [f.mi_out_of_sample for f in two.features]
    assert one.meta["evaluations"] == two.meta["evaluations"]
    other = synthesize(bars, dataclasses.replace(TINY, seed=2, n_features=1))
    assert other.features[0].genome.sha256 != one.features[0].genome.sha256 or \
        other.meta["evaluations"] != one.meta["evaluations"]
    gens = [e for e in events if e["event"] == "generation" and e["round"] == 0]
    assert [e["generation"] for e in gens] == list(range(TINY.generations + 1))
    assert all(b["best_fitness"] >= a["best_fitness"] for a, b in zip(gens, gens[1:]))  # mu + lambda is elitist
    accepted = [e for e in events if e["event"] == "accepted"]
    assert [e["name"] for e in accepted] == ["syn_0", "syn_1"]


def test_accepted_features_are_not_redundant(bars: pl.DataFrame, library: FeatureLibrary) -> None:
    assert len(library.features) == 2
    second = library.features[1]
    assert second.redundancy < FAST.max_redundancy and library.features[0].redundancy == 0.0
    # the recorded redundancy is the Spearman correlation on the in-sample subsample; on all bars it stays close
    names, values, _ = library_features(library, bars)
    m = np.isfinite(values[0]) & np.isfinite(values[1])
    assert abs(spearmanr(values[0][m], values[1][m]).statistic) < FAST.max_redundancy + 0.05
    # fitness = MI - redundancy_weight * redundancy - size_penalty * nodes
    expect = (second.mi_in_sample - FAST.redundancy_weight * second.redundancy
              - FAST.size_penalty * len(second.genome.tokens))
    assert second.fitness == pytest.approx(expect)
    assert library.meta["split"]["in_sample"]["rows"] == [0, int(bars.height * FAST.in_sample_fraction)]
    assert library.meta["sample_rows"]["in_sample"] == FAST.sample_rows


# --------------------------------------------------------------------------- library file


def test_library_round_trip(tmp_path, library: FeatureLibrary) -> None:
    path = write_feature_library(library, tmp_path / "lib" / "features.json")
    d = json.loads(path.read_text())
    assert d["schema"] == LIBRARY_SCHEMA and d["raw_inputs"] == list(RAW_INPUTS)
    assert [f["name"] for f in d["features"]] == [f"syn_{i}" for i in range(len(library.features))]
    back = load_feature_library(path)
    assert back.raw_inputs == library.raw_inputs
    assert back.features == library.features  # genomes, MI values, lookbacks
    assert [f.genome.sha256 for f in back.features] == [f.genome.sha256 for f in library.features]


def _write(tmp_path, d: dict):
    p = tmp_path / "lib.json"
    p.write_text(json.dumps(d))
    return p


def test_tampered_library_is_rejected(tmp_path, library: FeatureLibrary) -> None:
    d = library.to_dict()
    g = d["features"][0]["genome"]
    # swap one raw input for another: still well typed, but the checksum no longer matches
    other = next(r for r in RAW_INPUTS if f"feature:{r}" not in g["tokens"])
    i = next(i for i, t in enumerate(g["tokens"]) if t.startswith("feature:"))
    g["tokens"][i] = f"feature:{other}"
    p = _write(tmp_path, d)
    with pytest.raises(GenomeError, match=r"lib\.json.*features\[0\].*checksum"):
        load_feature_library(p)

    d = library.to_dict()
    d["features"][0]["lookback"] += 1
    with pytest.raises(GenomeError, match="lookback"):
        load_feature_library(_write(tmp_path, d))

    d = library.to_dict()
    d["schema"] = "forge-feature-library/0"
    with pytest.raises(ConfigError, match="schema"):
        load_feature_library(_write(tmp_path, d))

    d = library.to_dict()
    d["features"].append(dict(d["features"][0]))  # duplicate name
    with pytest.raises(ConfigError, match="distinct"):
        load_feature_library(_write(tmp_path, d))

    strategy = Genome.from_tokens(["pos_sign", "feature:r_close"])
    d = library.to_dict()
    d["features"][0]["genome"] = strategy.to_dict()
    with pytest.raises(GenomeError, match="root"):
        load_feature_library(_write(tmp_path, d))

    (tmp_path / "bad.json").write_text('{"schema": ')
    with pytest.raises(ConfigError, match=r"bad\.json: invalid JSON at line 1"):
        load_feature_library(tmp_path / "bad.json")


def test_library_features_match_direct_vm(library: FeatureLibrary) -> None:
    other = _bars(n=1200, seed=9, gap_at=700)  # evaluation works on any bar frame
    names, values, lookbacks = library_features(library, other)
    assert names == library.names and values.shape == (len(names), 1200)
    raw = raw_inputs(other)
    bsg = raw.bars_since_gap
    pool = BufferPool()
    for i, f in enumerate(library.features):
        prog = compile_program(f.genome, RAW_INPUTS, RAW_LOOKBACKS)
        direct = run_program(prog, raw.values, pool)
        assert lookbacks[i] == f.lookback == prog.lookback
        ok = bsg >= prog.lookback
        np.testing.assert_array_equal(values[i][ok & np.isfinite(direct)], direct[ok & np.isfinite(direct)])
        assert np.isnan(values[i][~ok]).all()


def test_library_features_hand_built(tmp_path) -> None:
    """A hand-written library: close location value in log space, lagged 5 bars."""
    g = Genome.from_tokens(["lag", "div", "add", "feature:r_high", "feature:r_low",
                            "sub", "feature:r_high", "feature:r_low", "window:5"], root="F")
    lib = FeatureLibrary(RAW_INPUTS, (LibraryFeature("clv_lag5", g, 0.1, 0.1, lookback=5),))
    lib2 = load_feature_library(write_feature_library(lib, tmp_path / "clv.json"))
    df = _bars(n=100, gap_at=40)
    _, values, lookbacks = library_features(lib2, df)
    h, lo, c = (np.log(df[k].to_numpy() / df["close"].to_numpy()) for k in ("high", "low", "close"))
    clv = (h + lo) / (h - lo)
    assert lookbacks == (5,)
    np.testing.assert_allclose(values[0][45:], clv[40:95])
    np.testing.assert_allclose(values[0][5:40], clv[0:35])
    assert np.isnan(values[0][np.r_[0:5, 40:45]]).all()  # warm-up at the start and after the gap


def test_cli_synthesize_then_evolve_with_library(tmp_path) -> None:
    """`forge synthesize` writes a library; `forge evolve --features LIB.json` adds its features as
    terminals, copies the library into the run directory, and positions recompute from it."""
    import json

    from typer.testing import CliRunner

    from cli import forge_app
    from forge.data.loader import load_sample
    from forge.gp import Genome
    from forge.strategy import strategy_features

    runner = CliRunner()
    lib = tmp_path / "lib.json"
    r = runner.invoke(forge_app, ["synthesize", "--n-features", "1", "--gens", "1", "--pop", "8", "-o", str(lib)])
    assert r.exit_code == 0, r.output
    names = [f["name"] for f in json.loads(lib.read_text())["features"]]
    assert names == ["syn_0"]
    run = tmp_path / "run"
    r = runner.invoke(forge_app, ["evolve", "-c", "configs/smoke.toml", "--features", str(lib), "--run-dir", str(run),
                                  "--causal-filter", "off", "--gens", "1", "--pop", "8"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert "syn_0" in manifest["features"] and (run / "feature_library.json").is_file()
    bars, _ = load_sample()
    fm = strategy_features(bars, manifest["features"], run / "feature_library.json")
    assert fm.names == tuple(manifest["features"]) and np.isfinite(fm.row("syn_0")[-100:]).all()
    Genome.load(run / "champion.json").lookback  # loads
    bad = runner.invoke(forge_app, ["evolve", "--features", str(tmp_path / "missing.json")])
    assert bad.exit_code == 2 and "no such feature library" in bad.output
