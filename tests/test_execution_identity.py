"""The execution policy in the champion's identity, and fractional-Kelly sizing (issue 31 parts 1 and 3).

A champion is (genome sha256, policy sha256): one genome published with two policies gives two files, two
challengers, two journal identities and two lineages; champions without a policy field (every earlier
release) load, verify and keep their file names and keys; a tampered policy is refused in one line.  Kelly
sizing is measured on in-sample bars only and applied to the backtest's, the shadow ledger's and the slot's
targets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from crucible.config import config_from_dict
from crucible.hotswap import Challenger, PitCrew
from crucible.journal import Journal
from crucible.runtime import Runtime, run_live
from crucible.slots import Ledger
from crucible.venues.replay import ReplayVenue
from forge.core.champion import (
    SCHEMA,
    champion_identity,
    champion_key,
    champion_signature,
    champion_sizing,
    champion_stem,
    meta_key,
    verify_champion,
)
from forge.core.errors import ConfigError, GenomeError
from forge.data.loader import load_sample
from forge.execution.policy import ALWAYS_TAKER_SHA256, ExecutionPolicy
from forge.execution.policy_nb import maker_then_cross
from forge.gp import Genome
from gauntlet.publish import publish_champion

SYM = "BTCUSDT"
KEY = "k3y"


@pytest.fixture(scope="module")
def sample():
    return load_sample()[0]


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("FORGE_SIGNING_KEY", raising=False)


def _genome(c: float = 0.0) -> Genome:
    return Genome.from_tokens(["long_short", "gt_c", "feature:ret_1", "const:0", "lt_c", "feature:ret_1", "const:1"],
                              [c, -c])


def _pub(folder: Path, g: Genome, key: str | None = None, **kw) -> Path:
    return publish_champion(g, folder, run_id="t", symbol=SYM, features=list(g.features),
                            verdict={"survived": True}, key=key, **kw)


POLICY = ExecutionPolicy(maker_then_cross(), {"name": "maker-then-cross"})


def test_one_genome_two_policies_two_champions(tmp_path):
    g = _genome()
    m0 = _pub(tmp_path, g, KEY)
    m1 = _pub(tmp_path, g, KEY, policy=POLICY)
    assert m0.name == f"{g.sha256[:16]}.meta.json"  # the always-taker name every earlier release wrote
    assert m1.name == f"{g.sha256[:16]}-{POLICY.sha256[:16]}.meta.json" == f"{champion_stem(g.sha256, POLICY.sha256)}.meta.json"
    _g0, meta0 = verify_champion(m0, key=KEY)
    _g1, meta1 = verify_champion(m1, key=KEY)
    assert "policy" not in meta0 and meta1["policy"]["sha256"] == POLICY.sha256
    assert champion_identity(meta0) == (g.sha256, ALWAYS_TAKER_SHA256)
    assert champion_identity(meta1) == (g.sha256, POLICY.sha256)
    assert meta_key(meta0) == g.sha256 and meta_key(meta1) == f"{g.sha256}+{POLICY.sha256}"
    # publishing the always-taker policy explicitly is the default champion: same file, no policy field
    assert _pub(tmp_path, g, KEY, policy=ExecutionPolicy.always_taker()) == m0
    assert champion_key(g.sha256, ALWAYS_TAKER_SHA256) == champion_key(g.sha256) == g.sha256


def test_old_format_champion_file_loads_and_keeps_its_identity(tmp_path):
    """A meta written before policies and sizing existed (no such fields), signed with the schema-2 HMAC."""
    g = _genome()
    data = g.to_json().encode()
    stem = g.sha256[:16]
    (tmp_path / f"{stem}.json").write_bytes(data)
    meta = {"schema": SCHEMA, "file": f"{stem}.json", "sha256": hashlib.sha256(data).hexdigest(),
            "genome_sha256": g.sha256, "run_id": "old", "symbol": SYM, "features": list(g.features),
            "feature_library": None, "survived": True, "verdict": {"survived": True},
            "gauntlet_report_sha256": None, "published_utc": "2026-01-01T00:00:00+00:00", "lineage": None,
            "edge_kind": "directional", "selected_on": None}
    meta["hmac_sha256"] = champion_signature(meta, data, KEY.encode())
    p = tmp_path / f"{stem}.meta.json"
    p.write_text(json.dumps(meta, indent=2))
    g2, m = verify_champion(p, key=KEY)
    assert g2.sha256 == g.sha256
    assert champion_identity(m) == (g.sha256, ALWAYS_TAKER_SHA256) and meta_key(m) == g.sha256
    assert champion_sizing(m) == 1.0
    ch = Challenger(g2, m, SYM, 0, Ledger(100.0), str(p))
    assert ch.policy is None and ch.size_multiplier == 1.0 and ch.key == "ch:" + g.sha256[:16]
    assert ch.identity == g.sha256


def test_tampered_policy_refused_in_one_line(tmp_path):
    g = _genome()
    p = _pub(tmp_path, g, KEY, policy=POLICY)
    meta = json.loads(p.read_text())
    meta["policy"]["weights"][0][0] = 5.0  # weights edited, sha256 left: the policy's own check
    p.write_text(json.dumps(meta))
    for key in (KEY, None):
        with pytest.raises(GenomeError) as e:
            verify_champion(p, key=key)
        assert "sha256" in str(e.value) and "\n" not in str(e.value) and p.name in str(e.value)
    # a consistent new policy (sha256 recomputed) under the old signature: the HMAC refuses it
    other = ExecutionPolicy(np.where(maker_then_cross() > 0, 2.0, 0.0))
    meta["policy"] = other.to_dict()
    p.write_text(json.dumps(meta))
    with pytest.raises(GenomeError, match="HMAC signature does not match"):
        verify_champion(p, key=KEY)
    crew = PitCrew(tmp_path, key=KEY)
    accepted, rejected = crew.scan(set())
    assert not accepted and len(rejected) == 1 and "\n" not in rejected[0][1]


def test_policy_file_tampering_refused_by_cli(tmp_path):
    from typer.testing import CliRunner

    from cli import gauntlet_app

    f = POLICY.save(tmp_path / "pol.json")
    d = json.loads(f.read_text())
    d["weights"][1][0] = 0.25
    f.write_text(json.dumps(d))
    r = CliRunner().invoke(gauntlet_app, ["validate", str(tmp_path / "no-run"), "--policy", str(f)])
    assert r.exit_code == 2
    assert "does not match the weights" in r.output and "Traceback" not in r.output


def test_scan_known_genome_with_new_policy_is_a_new_challenger(tmp_path):
    g = _genome()
    _pub(tmp_path, g)
    _pub(tmp_path, g, policy=POLICY)
    accepted, rejected = PitCrew(tmp_path).scan({g.sha256})  # the genome trades on the bench as always-taker
    assert not rejected and len(accepted) == 1
    assert accepted[0][1]["policy"]["sha256"] == POLICY.sha256
    accepted, _ = PitCrew(tmp_path).scan({g.sha256, f"{g.sha256}+{POLICY.sha256}"})
    assert accepted == []


def _cfg(tmp: Path, champ_file: Path, **hotswap):
    return config_from_dict({
        "crucible": {"journal": str(tmp / "journal.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "requests"), "kill_file": str(tmp / "KILL"), "history_bars": 400,
                     "snapshot_every": 1},
        "hotswap": {"enabled": True, "poll_bars": 1, "shadow_bars": 60, **hotswap},
        "cwo": {"min_weight": 1.0, "max_weight": 1.0},
        "slots": [{"id": "a", "symbol": SYM, "genome": str(champ_file)}]}, "test")


def test_replay_same_genome_with_policy_shadows_and_swaps_with_its_identity(tmp_path, sample):
    """The bench trades genome F (always-taker).  Published: F with a policy (same genome, other identity: it
    is shadowed, not skipped as "known") and a flat genome with that policy and a 0.5 Kelly multiplier, which
    beats the fee-paying flipper and is promoted: the slot, its lineage, the journal and ``crucible status``
    carry the policy, and a restart restores it."""
    from crucible.status import status, lineage_origin

    flipper = _genome(0.0)
    flat = Genome.from_tokens(["long_only", "gt_c", "feature:ret_1", "const:0"], [1.0])
    champ_file = tmp_path / "champ.json"
    champ_file.write_text(flipper.to_json())
    cfg = _cfg(tmp_path, champ_file)
    folder = Path(cfg.general.champions_dir)
    _pub(folder, flipper, policy=POLICY)
    sizing = {"method": "kelly", "multiplier": 0.5, "kelly_cap": 0.5, "max_leverage": 1.0, "sized_on": "test"}
    _pub(folder, flat, policy=POLICY, sizing=sizing)
    s = run_live(cfg, venue=ReplayVenue({SYM: sample.head(420)}, start=300))
    j = Journal(cfg.general.journal, readonly=True)
    try:
        starts = j.events("shadow_start")
        swaps = j.events("swap")
    finally:
        j.close()
    ids = sorted(e["data"].get("champion", e["data"]["genome"]) for e in starts)
    assert ids == sorted([f"{flipper.sha256}+{POLICY.sha256}", f"{flat.sha256}+{POLICY.sha256}"])
    assert s["swaps"] == 1 and len(swaps) == 1
    sw = swaps[0]["data"]
    assert sw["new"] == flat.sha256 and sw["policy"]["sha256"] == POLICY.sha256 and sw["size_multiplier"] == 0.5
    assert sw["lineage"]["policy_sha256"] == POLICY.sha256 and sw["lineage"]["champion"] == f"{flat.sha256}+{POLICY.sha256}"
    slot = s["slots"][0]
    assert slot["genome"] == flat.sha256[:16] and slot["policy"] == POLICY.sha256[:16] and slot["size_multiplier"] == 0.5
    rep = status(cfg.general.journal)
    row = rep["slots"][0]
    assert row["policy"] == POLICY.sha256[:16] and row["champion"] == f"{flat.sha256[:16]}-{POLICY.sha256[:16]}"
    assert f"policy {POLICY.sha256[:12]}" in lineage_origin(row["lineage"]) and "size x0.5" in lineage_origin(row["lineage"])
    # restart: the journal restores genome, policy and multiplier
    j = Journal(cfg.general.journal)
    try:
        rt = Runtime(cfg, ReplayVenue({SYM: sample.head(430)}, start=420), j)
        rt.restore()
        a = rt.slots["a"]
        assert a.genome.sha256 == flat.sha256 and a.policy.sha256 == POLICY.sha256 and a.size_multiplier == 0.5
        assert a.identity == f"{flat.sha256}+{POLICY.sha256}"
        # the runtime's sizing applies the multiplier to the target notional (well inside the leverage cap)
        a.size_multiplier = 1.0
        full = rt._size(a, 0.5, 100.0, 10.0)
        a.size_multiplier = 0.5
        half = rt._size(a, 0.5, 100.0, 10.0)
        units = a.ledger.units
        assert half + units == pytest.approx(0.5 * (full + units), rel=1e-12)
    finally:
        j.close()


def test_challenger_shadow_ledger_applies_the_multiplier():
    g = _genome()
    meta = {"sizing": {"method": "kelly", "multiplier": 0.25}}
    ch = Challenger(g, meta, SYM, 0, Ledger(100.0), "x")
    ch.on_bar(10.0, 10.0, 1.0, 0.0, 0.0, 0.0)
    assert ch.pending_qty == pytest.approx(0.25 * 100.0 / 10.0)
    with pytest.raises(GenomeError, match="sizing"):
        Challenger(g, {"sizing": {"method": "kelly", "multiplier": -1}}, SYM, 0, Ledger(100.0), "x")
    with pytest.raises(GenomeError, match="sizing"):
        champion_sizing({"sizing": {"method": "optimal-f", "multiplier": 0.3}})


# ------------------------------------------------------------------ Kelly sizing


def _bars(n: int, seed: int, edge: float):
    """Bars whose next return is predicted by ``pos`` with a planted per-bar edge (fraction)."""
    g = np.random.default_rng(seed)
    pos = np.where(g.random(n) < 0.5, 1.0, -1.0)
    r = np.r_[0.0, edge * pos[:-1] + g.normal(0, 1e-3, n - 1)]  # r[t] realised in bar t, decided at close t-1
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.r_[100.0, close[:-1]]
    t = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    return open_, close, t, pos


def test_kelly_sizing_measured_on_in_sample_rows_only():
    from forge.backtest import BacktestConfig
    from forge.execution.sizing import kelly_sizing

    o, c, t, pos = _bars(4000, 1, 2e-4)
    cfg = BacktestConfig(taker_fee_bps=0.0, slippage_bps=0.0)
    a = kelly_sizing(o, c, t, pos, (0, 2000), cfg, cap=0.5, max_leverage=10.0)
    # about half of mu / var: mu ~ 2e-4, sd ~ 1e-3 -> f* ~ 200, capped by max_leverage
    assert a["multiplier"] == 10.0 and a["n_bars"] == 2000 and a["mean_bar_return"] > 0
    b = kelly_sizing(o, c, t, pos, (0, 2000), cfg, cap=0.5, max_leverage=1e3)
    assert 0.5 * 100 < b["multiplier"] < 0.5 * 400
    # the out-of-sample bars never enter: wreck every bar after the in-sample range, same multiplier
    c2 = c.copy()
    o2 = o.copy()
    c2[2000:] *= np.exp(np.cumsum(np.random.default_rng(9).normal(0, 0.05, 2000)))
    o2[2001:] = c2[2000:-1]
    assert kelly_sizing(o2, c2, t, pos, (0, 2000), cfg, cap=0.5, max_leverage=1e3)["multiplier"] == b["multiplier"]
    # no edge (the signal is flipped against the market): zero size, not a short of the strategy
    assert kelly_sizing(o, c, t, -pos, (0, 2000), cfg, cap=0.5, max_leverage=1e3)["multiplier"] == 0.0
    # pure noise: the in-sample mean is tiny either way and the multiplier is 0 or small
    on, cn, tn, posn = _bars(4000, 2, 0.0)
    assert kelly_sizing(on, cn, tn, posn, (0, 2000), cfg)["multiplier"] < 0.5 * 0.1 / 1e-3
    with pytest.raises(ValueError, match="in-sample rows"):
        kelly_sizing(o, c, t, pos, (10, 11), cfg)


def test_backtest_kelly_option_sizes_from_the_runs_in_sample_range(tmp_path):
    """``[execution] sizing = "kelly"`` in ``forge backtest``: the positions are scaled by the multiplier of
    the run's in-sample range (from the manifest's split), the result records where it was measured."""
    from commands.backtest import _kelly_sized
    from forge.core.runconfig import config_from_dict as run_config

    o, c, t, pos = _bars(3000, 3, 3e-3)  # an edge above the default costs of flipping every other bar
    split = {"in_sample": {"first_open_ms": int(t[0]), "last_open_ms": int(t[1499])},
             "out_of_sample": {"first_open_ms": int(t[1500]), "last_open_ms": int(t[-1])}}
    cfg = run_config({"execution": {"sizing": "kelly", "kelly_cap": 0.5, "max_leverage": 0.8}})
    sized, info = _kelly_sized(o, c, t, pos, split, cfg)
    assert info["sized_on"].startswith("in-sample") and info["n_bars"] == 1500
    assert 0.0 < info["multiplier"] <= 0.8
    assert np.allclose(sized, pos * info["multiplier"])
    _, info_all = _kelly_sized(o, c, t, pos, None, cfg)
    assert info_all["n_bars"] == 3000 and "in-sample backtest" in info_all["sized_on"]
    late = {"in_sample": {"first_open_ms": int(t[-1]) + 60_000, "last_open_ms": int(t[-1]) + 120_000},
            "out_of_sample": split["out_of_sample"]}
    with pytest.raises(ConfigError, match="in-sample"):
        _kelly_sized(o, c, t, pos, late, cfg)
    with pytest.raises(ConfigError, match="sizing"):
        run_config({"execution": {"sizing": "optimal"}})
    # the default is unit sizing (off), in the dataclass and in the shipped config
    from forge.core.runconfig import load_run_config

    assert run_config({}).execution.sizing == "unit" == load_run_config(None).execution.sizing


@pytest.mark.slow
def test_validate_publishes_policy_and_in_sample_kelly_from_the_run_config(tmp_path):
    """``gauntlet validate`` on a planted-edge run whose config says ``[execution] mode = "policy"``, a policy
    file and ``sizing = "kelly"``: the survivor's signed meta carries that policy and the Kelly multiplier of
    its in-sample rows; validating again with another policy (``--policy``) publishes a second champion of
    the same genome under another name."""
    import dataclasses

    from forge.backtest.fills import ExecutionConfig
    from forge.core.runconfig import load_run_config
    from forge.data.loader import load_bars
    from forge.execution.sizing import kelly_sizing
    from gauntlet.config import GauntletConfig
    from gauntlet.context import RunContext
    from gauntlet.validate import validate_run
    from loop.honesty import oracle_genome, oracle_run

    pol_file = POLICY.save(tmp_path / "policy.json")
    bars, _ = load_bars(["synthetic:planted?seed=3&days=20&strength=0.2"])
    cfg = load_run_config(None)
    cfg = dataclasses.replace(cfg, execution=ExecutionConfig(mode="policy", policy=str(pol_file), sizing="kelly"))
    run_dir = oracle_run(bars, oracle_genome(240), tmp_path / "run", cfg, cfg.evolve.in_sample_fraction)
    out = tmp_path / "champions"
    rep = validate_run(run_dir, GauntletConfig(seed=0).validate(), publish_dir=out, bars=bars)
    assert rep.verdicts[0]["survived"] and len(rep.published) == 1
    g, meta = verify_champion(rep.published[0])
    assert Path(rep.published[0]).name == f"{champion_stem(g.sha256, POLICY.sha256)}.meta.json"
    assert meta["policy"]["sha256"] == POLICY.sha256
    ctx = RunContext.load(run_dir, bars=bars)
    o, c, t = ctx.arrays((0, ctx.bars.height))
    want = kelly_sizing(o, c, t, ctx.candidates[0].position, ctx.in_sample, ctx.backtest)
    assert meta["sizing"]["multiplier"] == pytest.approx(want["multiplier"]) and meta["sizing"]["n_bars"] == \
        ctx.in_sample[1] - ctx.in_sample[0] < ctx.bars.height
    assert champion_sizing(meta) == meta["sizing"]["multiplier"] > 0
    other = ExecutionPolicy(np.where(maker_then_cross() > 0, 3.0, 0.0))
    rep2 = validate_run(run_dir, GauntletConfig(seed=0).validate(), publish_dir=out, bars=bars, policy=other)
    assert len(rep2.published) == 1 and rep2.published[0] != rep.published[0]
    _g2, meta2 = verify_champion(rep2.published[0])
    assert meta_key(meta2) != meta_key(meta) and _g2.sha256 == g.sha256
    assert sorted(p.name for p in out.glob("*.meta.json")) == sorted(
        [f"{champion_stem(g.sha256, POLICY.sha256)}.meta.json", f"{champion_stem(g.sha256, other.sha256)}.meta.json"])
