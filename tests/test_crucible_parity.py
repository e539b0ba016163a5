"""Live/backtest parity (issue 18 item 8): the live engine's rolling window of ``required_history`` bars gives
the backtester's full-history values for EVERY registry feature, the multi-timeframe ones included.

Stated tolerance: finite-memory features are bit-identical; the Wilder recursions (rsi_14, atr_14,
mtf_rsi_1h) are within PARITY_RTOL of the full-history value, |live - full| <= PARITY_RTOL * max(1, |full|)
(their burn-in leaves a seed residual below forge.strategy.BURN_IN_TOL = 1e-8 of the averages; RSI maps that to
at most ~50x in points, hence 1e-6).  Positions of genomes on each feature are equal exactly at every checked bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crucible.builtin import BUILTIN, builtin_genome
from crucible.config import GeneralConfig, config_from_dict
from crucible.journal import Journal
from crucible.runtime import Runtime, run_live
from crucible.signals import SignalEngine, check_features, check_genome
from crucible.venues.replay import ReplayVenue
from forge.core.errors import GenomeError
from forge.data.gaps import bars_since_gap
from forge.data.loader import load_sample
from forge.features import FEATURES, BarArrays
from forge.gp import Genome
from forge.strategy import (BURN_IN_TOL, FEATURE_BURN_IN, bar_features, genome_positions, required_history,
                            wilder_burn_in)
from gauntlet.publish import publish_champion

PARITY_RTOL = 1e-6
N_POINTS = 25  # checked bars per feature (seeded)
COLS = ("open_time", "open", "high", "low", "close", "volume", "taker_buy_volume")
OPT = ("quote_volume", "count", "taker_buy_quote_volume")  # BarArrays' optional columns, in order


@pytest.fixture(scope="module")
def full():
    bars = load_sample()[0]
    ba = BarArrays.from_bars(bars)
    cols = {c: np.ascontiguousarray(bars[c].to_numpy()) for c in COLS + OPT}
    return ba, cols, bar_features(ba, tuple(FEATURES))


def _window(cols, lo, hi):
    return {c: v[lo:hi] for c, v in cols.items()}


def _arrays(cols) -> BarArrays:
    t = cols["open_time"]
    return BarArrays(t, *(np.ascontiguousarray(cols[c], dtype=np.float64) for c in COLS[1:]), bars_since_gap(t),
                     *(np.ascontiguousarray(cols[c], dtype=np.float64) for c in OPT))


def _genomes(name: str, values: np.ndarray) -> dict[str, Genome]:
    """Two strategies reading ``name``: thresholds at its 30/70 % quantiles, and its sign against its own
    60-bar mean (the burn-in must count on the windowed path too)."""
    lo, hi = np.nanquantile(values, [0.3, 0.7])
    f = f"feature:{name}"
    return {
        "band": Genome.from_tokens(["long_short", "gt_c", f, "const:0", "lt_c", f, "const:1"], [float(hi), float(lo)]),
        "vs_mean": Genome.from_tokens(["pos_sign", "sub", f, "ts_mean", f, "window:60"], []),
    }


def test_burn_in_arithmetic():
    assert wilder_burn_in(14) == 249  # (13/14)^249 <= 1e-8 < (13/14)^248
    assert (13 / 14) ** 249 <= BURN_IN_TOL < (13 / 14) ** 248
    assert FEATURE_BURN_IN["mtf_rsi_1h"] == 60 * 249
    g = Genome.from_tokens(["pos_sign", "feature:mtf_rsi_1h"], [])
    assert required_history(g) == FEATURES["mtf_rsi_1h"].lookback + 60 * 249 + 1
    g = Genome.from_tokens(["pos_sign", "ts_mean", "feature:rsi_14", "window:60"], [])
    assert required_history(g) == 59 + 14 + 249 + 1
    with pytest.raises(ValueError, match="period >= 2"):
        wilder_burn_in(1)


@pytest.mark.parametrize("name", list(FEATURES))
def test_live_window_equals_full_history(full, name):
    """At N_POINTS seeded bars t, the engine on exactly the last required_history bars (t included) gives the
    full-history feature value (within the stated tolerance) and the same positions as genome_positions."""
    ba, cols, fm = full
    n = ba.close.shape[0]
    values = fm.row(name)
    genomes = _genomes(name, values)
    full_pos = {k: genome_positions(g, fm, ba.bsg) for k, g in genomes.items()}
    engine = SignalEngine()
    rng = np.random.default_rng(sum(map(ord, name)))
    recursive = name in FEATURE_BURN_IN
    checked = 0
    for key, g in genomes.items():
        h = required_history(g)
        assert h < n - N_POINTS, (name, h)
        for t in sorted(rng.choice(np.arange(h, n), N_POINTS, replace=False)):  # t >= h: the window is truncated
            win = _window(cols, t + 1 - h, t + 1)
            live = bar_features(_arrays(win), (name,)).values[0, -1]
            ref = values[t]
            if recursive:
                assert abs(live - ref) <= PARITY_RTOL * max(1.0, abs(ref)), (name, t, live, ref)
            else:
                assert live == ref or (np.isnan(live) and np.isnan(ref)), (name, t, live, ref)
            pos = engine.latest({key: g}, win)[key]
            assert pos == full_pos[key][t], (name, key, t, pos, full_pos[key][t])
            checked += 1
    assert checked == 2 * N_POINTS


def test_mtf_rsi_1h_needs_its_burn_in(full):
    """Why the refusal exists: with history_bars = 2000 (the default) the 1h Wilder RSI of the window is
    several RSI points away from the full-history value; check_genome refuses such a genome and names the bars."""
    ba, cols, fm = full
    values = fm.row("mtf_rsi_1h")
    diffs = []
    for t in range(16000, ba.close.shape[0], 97):
        live = bar_features(_arrays(_window(cols, t + 1 - 2000, t + 1)), ("mtf_rsi_1h",)).values[0, -1]
        if not (np.isnan(live) or np.isnan(values[t])):
            diffs.append(abs(live - values[t]))
    assert max(diffs) > 1.0  # RSI points
    g = Genome.from_tokens(["long_short", "gt_c", "feature:mtf_rsi_1h", "const:0", "lt_c", "feature:mtf_rsi_1h",
                            "const:1"], [70.0, 30.0])
    need = required_history(g)
    with pytest.raises(GenomeError, match=rf"needs {need} closed bars.*history_bars = 2000.*>= {need}"):
        check_genome(g, 2000)
    check_genome(g, need)
    check_features(g)  # without a history budget only the registry is checked


def test_lookback_beyond_history_refused():
    """A genome whose plain lookback (no recursive feature) exceeds the window is refused, not masked flat."""
    g = Genome.from_tokens(["pos_sign", "ts_mean", "feature:ret_60", "window:240"], [])
    assert required_history(g) == 60 + 239 + 1
    with pytest.raises(GenomeError, match="needs 300 closed bars"):
        check_genome(g, 299)
    check_genome(g, 300)
    # what the refusal prevents: a window shorter than the lookback is flat at every bar
    bars = load_sample()[0].head(2000)
    cols = {c: np.ascontiguousarray(bars[c].to_numpy()) for c in COLS + OPT}
    eng = SignalEngine()
    assert all(eng.latest({"g": g}, _window(cols, t - 299, t))["g"] == 0.0 for t in range(400, 2000, 50))


def test_builtins_fit_the_default_history():
    default = GeneralConfig().history_bars
    for name in BUILTIN:
        check_genome(builtin_genome(name), default)


def _slot_file(tmp: Path) -> Path:
    g = Genome.from_tokens(["long_short", "gt_c", "feature:mtf_rsi_1h", "const:0", "lt_c", "feature:mtf_rsi_1h",
                            "const:1"], [70.0, 30.0])
    p = tmp / "mtf.json"
    p.write_text(g.to_json())
    return p


def test_runtime_refuses_slot_genome_needing_more_history(tmp_path):
    cfg = config_from_dict({"crucible": {"journal": str(tmp_path / "j.sqlite"), "history_bars": 2000,
                                         "champions_dir": str(tmp_path / "ch"), "requests_dir": str(tmp_path / "rq"),
                                         "kill_file": str(tmp_path / "KILL")},
                            "slots": [{"id": "a", "symbol": "BTCUSDT", "genome": str(_slot_file(tmp_path))}]},
                           "test")
    bars = load_sample()[0].head(600)
    j = Journal(cfg.general.journal)
    try:
        with pytest.raises(GenomeError, match="history_bars"):
            Runtime(cfg, ReplayVenue({"BTCUSDT": bars}, start=300), j)
    finally:
        j.close()


def test_intake_rejects_challenger_needing_more_history(tmp_path, monkeypatch):
    monkeypatch.delenv("FORGE_SIGNING_KEY", raising=False)
    cfg = config_from_dict({"crucible": {"journal": str(tmp_path / "j.sqlite"), "history_bars": 400,
                                         "champions_dir": str(tmp_path / "ch"), "requests_dir": str(tmp_path / "rq"),
                                         "kill_file": str(tmp_path / "KILL")},
                            "hotswap": {"enabled": True, "poll_bars": 1, "shadow_bars": 30},
                            "slots": [{"id": "a", "symbol": "BTCUSDT", "genome": "builtin:momentum"}]}, "test")
    g = Genome.from_tokens(["long_short", "gt_c", "feature:rsi_14", "const:0", "lt_c", "feature:rsi_14", "const:1"],
                           [70.0, 30.0])
    ok = Genome.from_tokens(["pos_sign", "ts_mean", "feature:ret_60", "window:240"], [])  # needs 300 <= 400
    for genome in (g, ok):
        publish_champion(genome, Path(cfg.general.champions_dir), run_id="t", symbol="BTCUSDT",
                         features=list(genome.features), verdict={"survived": True})
    g_need = Genome.from_tokens(["pos_sign", "ts_mean", "feature:rsi_14", "window:240"], [])
    publish_champion(g_need, Path(cfg.general.champions_dir), run_id="t", symbol="BTCUSDT",
                     features=list(g_need.features), verdict={"survived": True})
    assert required_history(g) <= 400 < required_history(g_need)
    run_live(cfg, venue=ReplayVenue({"BTCUSDT": load_sample()[0].head(400)}, start=300))
    j = Journal(cfg.general.journal, readonly=True)
    try:
        reasons = [str(e["data"]) for e in j.events("reject")]
    finally:
        j.close()
    assert len(reasons) == 1 and g_need.sha256[:12] in reasons[0] and "history_bars = 400" in reasons[0], reasons
