"""Regime terminals and regime slots live (issue 30 part 4, the Crucible side): a champion reading regime_p* /
regime_next_p* trades with the frozen model published beside it (sha256 in the signed meta; a missing or edited
model is refused in one line), its replayed targets equal research bar for bar, and slots declaring a regime
draw capital toward the one-step-ahead predicted regime, journalled with the predicted probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from crucible.allocator import regime_tilt
from crucible.config import config_from_dict
from crucible.hotswap import PitCrew
from crucible.journal import Journal
from crucible.runtime import run_live
from forge.core.champion import verify_champion
from forge.core.errors import ConfigError, GenomeError
from forge.data.gaps import bars_since_gap
from forge.data.ranges import DataRange
from forge.data.schema import BAR_SCHEMA
from forge.features.regimes import RegimeModel, write_regime_model
from forge.gp import Genome
from forge.strategy import genome_positions, strategy_features
from gauntlet.publish import publish_champion

T0 = 1_700_000_000_000 // 60_000 * 60_000
GATED = Genome.from_tokens(["long_short", "gt_c", "feature:regime_p1", "const:0", "lt_c", "feature:regime_p1",
                            "const:1"], [0.6, 0.4])
PRED = Genome.from_tokens(["pos_sign", "sub", "ts_mean", "feature:regime_next_p1", "window:5", "feature:regime_p0"], [])


def two_state_model() -> RegimeModel:
    """A calm (0) and a wild (1) regime of the 1-minute return, sticky (P(stay) = 0.995), fixed parameters."""
    A = np.array([[0.995, 0.005], [0.005, 0.995]])
    return RegimeModel(startprob=np.array([0.5, 0.5]), transmat=A, means=np.zeros((2, 1)),
                       covars=np.array([[[1.0]], [[16.0]]]), center=np.zeros(1), scale=np.array([2e-4]),
                       inputs=("ret",), rv_window=30, data_range=DataRange(T0 - 60_000 * 100, T0 - 60_000, 100))


def chain_bars(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Bars drawn from :func:`two_state_model`'s chain (returns N(0, (2e-4)^2) or N(0, (8e-4)^2)); the states."""
    rng = np.random.default_rng(seed)
    s = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for t in range(1, n):
        s[t] = s[t - 1] if u[t] < 0.995 else 1 - s[t - 1]
    r = rng.normal(0.0, np.where(s == 1, 8e-4, 2e-4))
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    vol = np.exp(rng.normal(2.0, 0.3, n))
    t = T0 + 60_000 * np.arange(n, dtype=np.int64)
    df = pl.DataFrame({"open_time": t, "open": open_, "high": np.maximum(open_, close) * 1.0001,
                       "low": np.minimum(open_, close) * 0.9999, "close": close, "volume": vol,
                       "close_time": t + 59_999, "quote_volume": vol * close, "count": np.full(n, 10),
                       "taker_buy_volume": vol / 2, "taker_buy_quote_volume": vol * close / 2})
    return df.cast(BAR_SCHEMA), s


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    bars, states = chain_bars(3000, 5)
    path = root / "XUSDT.parquet"
    bars.write_parquet(path)
    model = write_regime_model(two_state_model(), root / "regime_model.json")
    return bars, states, path, model


def _cfg(tmp: Path, data: Path, slots: list[dict], **cwo) -> object:
    return config_from_dict({
        "crucible": {"journal": str(tmp / "j.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "req"), "kill_file": str(tmp / "KILL"), "history_bars": 400},
        "replay": {"data": [f"XUSDT={data}"], "warmup_bars": 200, "prefetch_bars": 256},
        "hotswap": {"enabled": False}, "cwo": cwo, "slots": slots}, "test")


def _genome_file(tmp: Path, name: str, g: Genome) -> str:
    p = tmp / f"{name}.json"
    p.write_text(g.to_json())
    return str(p)


def test_replayed_regime_targets_equal_research(tmp_path, chain, monkeypatch, panel_targets):
    bars, _s, data, model = chain
    slots = [{"id": "gated", "symbol": "XUSDT", "genome": _genome_file(tmp_path, "g", GATED), "costs": "spot",
              "regime_model": str(model)},
             {"id": "pred", "symbol": "XUSDT", "genome": _genome_file(tmp_path, "p", PRED), "costs": "spot",
              "regime_model": str(model)}]
    seen = panel_targets
    run_live(_cfg(tmp_path, data, slots), max_bars=2500)
    t = bars["open_time"].to_numpy()
    research = {}
    for k, g in (("gated", GATED), ("pred", PRED)):
        fm = strategy_features(bars, g.features, None, model)
        research[k] = dict(zip(t.tolist(), genome_positions(g, fm, bars_since_gap(t)).tolist()))
    assert len(seen) == 2 * 2500
    assert all(v == research[k][bt] for k, bt, v in seen)
    assert {v for k, _t, v in seen if k == "gated"} == {-1.0, 0.0, 1.0}  # long, flat and short with the regime


def test_slot_reading_regimes_needs_its_model(tmp_path, chain):
    _bars, _s, data, _model = chain
    slots = [{"id": "gated", "symbol": "XUSDT", "genome": _genome_file(tmp_path, "g", GATED), "costs": "spot"}]
    with pytest.raises(GenomeError, match="no regime model ships with it"):
        run_live(_cfg(tmp_path, data, slots), max_bars=1)
    small = RegimeModel(**{**two_state_model().__dict__})
    bad = Genome.from_tokens(["pos_sign", "feature:regime_p2"], [])
    slots = [{"id": "bad", "symbol": "XUSDT", "genome": _genome_file(tmp_path, "b", bad), "costs": "spot",
              "regime_model": str(write_regime_model(small, tmp_path / "m.json"))}]
    with pytest.raises(GenomeError, match="does not have"):
        run_live(_cfg(tmp_path, data, slots), max_bars=1)


def _publish(folder: Path, genome: Genome, model: Path | None) -> Path:
    return Path(publish_champion(genome, folder, run_id="r", symbol="XUSDT", features=list(genome.features),
                                 verdict={"survived": True}, regime_model=model, key="k"))


def test_publish_ships_the_model_signed_and_intake_refuses_tampering(tmp_path, chain):
    _bars, _s, _data, model = chain
    folder = tmp_path / "champions"
    meta_path = _publish(folder, GATED, model)
    meta = json.loads(meta_path.read_text())
    shipped = folder / meta["regime_model"]
    assert shipped.read_bytes() == Path(model).read_bytes()
    import hashlib
    assert meta["regime_model_sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    g, _m = verify_champion(meta_path, key="k")
    assert g.sha256 == GATED.sha256
    pit = PitCrew(folder, key="k", history_bars=400)
    accepted, rejected = pit.scan(set())
    assert [a[0].sha256 for a in accepted] == [GATED.sha256] and not rejected
    assert pit.models[GATED.sha256] == shipped
    # edited model: refused in one line
    shipped.write_text(shipped.read_text().replace("0.995", "0.9", 1))
    with pytest.raises(GenomeError, match="tampered") as e:
        verify_champion(meta_path, key="k")
    assert "\n" not in str(e.value)
    # a meta without the signature's model entry can't just drop it (the HMAC covers the meta)
    d = dict(meta)
    d.pop("regime_model"), d.pop("regime_model_sha256")
    meta_path.write_text(json.dumps(d))
    with pytest.raises(GenomeError, match="HMAC"):
        verify_champion(meta_path, key="k")
    # missing model
    meta_path.write_text(json.dumps(meta))
    shipped.unlink()
    with pytest.raises(GenomeError, match="missing"):
        verify_champion(meta_path, key="k")
    # a regime champion published without its model is refused by the intake
    other = tmp_path / "c2"
    _publish(other, GATED, None)
    pit = PitCrew(other, key="k", history_bars=400)
    accepted, rejected = pit.scan(set())
    assert not accepted and "ships no regime model" in rejected[0][1]


def test_regime_tilt_rule_and_bounds():
    base = np.full(4, 0.25)
    declared = np.array([0, 1, -1, 1])
    w, q = regime_tilt(base, base.copy(), declared, np.array([0.1, 0.9]), 4.0, 0.05, 0.5, 2.0)
    assert w[1] == w[3] > w[2] > w[0] and np.isclose(w.sum(), 1.0) and w.min() >= 0.05 and w.max() <= 0.5
    assert q.tolist() == [0.1, 0.9, 0.5, 0.9]
    capped, _ = regime_tilt(base, base.copy(), declared, np.array([0.0, 1.0]), 50.0, 0.05, 0.5, 0.1)
    assert np.abs(capped - base).sum() <= 0.1 + 1e-12 and np.isclose(capped.sum(), 1.0)
    same, _ = regime_tilt(base, base.copy(), np.array([-1, -1, -1, -1]), np.array([0.1, 0.9]), 4.0, 0.05, 0.5, 2.0)
    assert np.array_equal(same, base)  # nobody declares a regime: the EG weights unchanged


def test_regime_slots_take_capital_toward_the_predicted_regime(tmp_path, chain):
    bars, states, data, model = chain
    g = _genome_file(tmp_path, "m", Genome.from_tokens(["long_only", "gt_c", "feature:ret_5", "const:0"], [1.0]))
    slots = [{"id": "calm", "symbol": "XUSDT", "genome": g, "costs": "spot", "regime": 0},
             {"id": "wild", "symbol": "XUSDT", "genome": g, "costs": "spot", "regime": 1}]
    cfg = _cfg(tmp_path, data, slots, regime_model=str(model), max_weight=0.8, min_weight=0.1)
    per_bar: dict[int, float] = {}

    def progress(e):
        if e["event"] == "bar":
            w = {s["slot"]: s["weight"] for s in e["slots"]}
            per_bar[e["time_ms"]] = w["wild"] - w["calm"]

    out = run_live(cfg, max_bars=2500, progress=progress)
    j = Journal(cfg.general.journal)
    try:
        ev = j.events("reweight")
    finally:
        j.close()
    assert out["reweights"] >= 2400 and len(ev) > 50
    t = bars["open_time"].to_numpy()
    research = strategy_features(bars, ("regime_next_p1",), None, model).values[0]
    row = {int(x): i for i, x in enumerate(t)}
    for e in ev:  # the journalled reason is research's one-step-ahead predicted probability at the bar just closed
        r = e["data"]["regime"]
        assert r["predicted"][1] == research[row[e["time_ms"] - 60_000]]
        assert r["declared"] == {"calm": 0, "wild": 1}
    times = sorted(per_bar)
    diff = np.array([per_bar[x] for x in times])
    nxt = np.array([states[min(row[x] + 1, len(states) - 1)] for x in times])
    # capital sits with the slot of the regime of the next bar ...
    assert diff[nxt == 1].mean() > diff[nxt == 0].mean() + 0.5, (diff[nxt == 1].mean(), diff[nxt == 0].mean())
    # ... and moves both ways across the planted switches, never past the bounds
    assert diff.max() > 0.5 and diff.min() < -0.5 and np.abs(diff).max() <= 0.7 + 1e-9
    switches = np.flatnonzero(np.diff(states[[row[x] for x in times]]) != 0)
    assert len(switches) >= 4


def test_regime_slot_config_is_validated(tmp_path, chain):
    _bars, _s, data, model = chain
    g = _genome_file(tmp_path, "m", Genome.from_tokens(["long_only", "gt_c", "feature:ret_5", "const:0"], [1.0]))
    slots = [{"id": "a", "symbol": "XUSDT", "genome": g, "costs": "spot", "regime": 2}]
    with pytest.raises(ConfigError, match="outside the model's 2 states"):
        run_live(_cfg(tmp_path, data, slots, regime_model=str(model)), max_bars=1)
    slots[0]["regime"] = 1
    with pytest.raises(ConfigError, match="no regime model is named"):
        run_live(_cfg(tmp_path, data, slots), max_bars=1)


def test_regime_challenger_shadows_with_its_shipped_model_and_a_tampered_one_is_rejected(tmp_path, chain,
                                                                                          monkeypatch, panel_targets):
    bars, _s, data, model = chain
    champions = tmp_path / "champions"
    _publish(champions, GATED, model)
    bad = _publish(champions, PRED, model)
    shipped = champions / json.loads(bad.read_text())["regime_model"]
    shipped.write_text(shipped.read_text().replace("0.995", "0.99", 1))
    seen = panel_targets
    monkeypatch.delenv("FORGE_SIGNING_KEY", raising=False)
    cfg = _cfg(tmp_path, data, [{"id": "base", "symbol": "XUSDT", "genome": "builtin:momentum", "costs": "spot"}])
    cfg = cfg.with_("hotswap", enabled=True, poll_bars=5, shadow_bars=1000)
    run_live(cfg, max_bars=400)
    j = Journal(cfg.general.journal)
    try:
        starts = j.events("shadow_start")
        rejects = j.events("reject")
    finally:
        j.close()
    assert [e["data"]["genome"] for e in starts] == [GATED.sha256]
    assert any("tampered" in e["data"]["reason"] for e in rejects)
    t = bars["open_time"].to_numpy()
    fm = strategy_features(bars, GATED.features, None, model)
    ref = dict(zip(t.tolist(), genome_positions(GATED, fm, bars_since_gap(t)).tolist()))
    mine = [(bt, v) for k, bt, v in seen if k == "ch:" + GATED.sha256[:16]]
    assert len(mine) > 300 and all(v == ref[bt] for bt, v in mine)
