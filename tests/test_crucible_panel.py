"""Live panel slots (issue 30 part 1, the Crucible side): a champion reading other instruments is fed every
instrument it reads, its live targets equal research's genome_positions on the research panel bar for bar
(gaps of the non-traded instrument included), and a late instrument makes the slot skip the bar, journalled."""

from __future__ import annotations

from pathlib import Path

import pytest

import crucible.panel as cpanel
from crucible.config import config_from_dict
from crucible.journal import Journal
from crucible.runtime import run_live
from crucible.venues.factory import make_venue
from forge.core.errors import ConfigError
from forge.data.gaps import bars_since_gap
from forge.data.panel import load_panel
from forge.data.panels import drop_minutes, lead_lag_panel, list_from, write_klines
from forge.gp import Genome
from forge.strategy import genome_positions, strategy_features

LEAD = Genome.from_tokens(["long_short", "gt_c", "feature:ret_5__BUSDT_spot", "const:0", "lt_c",
                           "feature:ret_5__BUSDT_spot", "const:1"], [0.0004, -0.0004])
MIXED = Genome.from_tokens(["pos_sign", "sub", "ts_mean", "feature:ret_1__BUSDT_spot", "window:20", "ts_mean",
                            "feature:ret_1", "window:60"], [])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("panel")
    raw = lead_lag_panel(3000, seed=3, strength=0.5, symbols=("MUSDT", "BUSDT", "AUSDT"))
    traded = drop_minutes(raw["AUSDT"], 1500, 1530)  # the traded perp's own gap
    other = drop_minutes(drop_minutes(list_from(raw["BUSDT"], 100), 900, 960), 2000, 2003)  # late listing + gaps
    a = write_klines(traded, root, "AUSDT", "perp")
    b = write_klines(other, root, "BUSDT", "spot")
    return root, a, b


def _cfg(tmp: Path, data, genomes: dict[str, Genome], **general) -> object:
    _root, a, b = data
    slots = []
    for sid, g in genomes.items():
        p = tmp / f"{sid}.json"
        p.write_text(g.to_json())
        slots.append({"id": sid, "symbol": "AUSDT", "genome": str(p), "costs": "futures"})
    return config_from_dict({
        "crucible": {"journal": str(tmp / "j.sqlite"), "champions_dir": str(tmp / "champions"),
                     "requests_dir": str(tmp / "req"), "kill_file": str(tmp / "KILL"), "history_bars": 400, **general},
        "replay": {"data": [f"AUSDT={a}", f"BUSDT={b}"], "warmup_bars": 200,
                   "prefetch_bars": 256},
        "hotswap": {"enabled": False}, "slots": slots}, "test")


def _research(data, genomes):
    root, _a, _b = data
    _t, panel, _c, _i = load_panel([root], ["BUSDT:spot"], "AUSDT:perp")
    t = panel["open_time"].to_numpy()
    out = {}
    for k, g in genomes.items():
        fm = strategy_features(panel, g.features)
        out[k] = dict(zip(t.tolist(), genome_positions(g, fm, bars_since_gap(t)).tolist()))
    return out, panel




@pytest.mark.parametrize("prefetch", [256, 0])
def test_replayed_panel_targets_equal_research_bar_for_bar(tmp_path, data, monkeypatch, prefetch, panel_targets):
    genomes = {"lead": LEAD, "mixed": MIXED}
    cfg = _cfg(tmp_path, data, genomes)
    cfg = cfg.with_("replay", prefetch_bars=prefetch)
    seen = panel_targets
    out = run_live(cfg, max_bars=2600 if prefetch else 900)
    assert out["panel_skips"] == 0
    research, panel = _research(data, genomes)
    assert seen, "the panel slots computed no target"
    got = {(k, t): v for k, t, v in seen}
    for (k, t), v in got.items():
        assert v == research[k][t], (k, t)
    # the decisions cover the non-traded instrument's gaps (NaN features -> flat, as research) and its late listing
    t_other = set(panel.filter(panel["close__BUSDT_spot"].is_not_null())["open_time"].to_list())
    traded_t = [t for (k, t) in got if k == "lead"]
    assert any(t not in t_other for t in traded_t), "no bar inside a gap of BUSDT was replayed"
    assert all(research["lead"][t] == 0.0 for t in traded_t if t not in t_other)
    assert any(v != 0.0 for (k, t), v in got.items() if k == "lead")  # and it trades: not a flat genome


def test_late_instrument_skips_the_bar_and_is_journalled(tmp_path, data, monkeypatch, panel_targets):
    cfg = _cfg(tmp_path, data, {"lead": LEAD}, panel_wait_seconds=0.02)
    v = make_venue(cfg)
    late = set()

    def bar_closed(symbol, t):  # BUSDT's bars of every 50th minute arrive after the wait
        if symbol == "BUSDT" and (t // 60_000) % 50 == 0:
            late.add(t)
            return False
        return True

    v.bar_closed = bar_closed
    seen = panel_targets
    try:
        out = run_live(cfg, venue=v, max_bars=400, fresh=True)
    finally:
        v.close()
    assert out["panel_skips"] == len(late) > 0
    j = Journal(cfg.general.journal)
    try:
        ev = j.events("panel_skip")
    finally:
        j.close()
    assert len(ev) == len(late)
    assert all(e["slot"] == "lead" and e["data"]["late"] == ["BUSDT_spot"] for e in ev)
    assert {e["data"]["bar_time"] for e in ev} == late
    assert not {t for _k, t, _v in seen} & late  # no decision on a skipped bar


def test_refusals_in_one_line(tmp_path, data):
    _root, a, b = data
    p = tmp_path / "g.json"
    p.write_text(LEAD.to_json())
    base = {"crucible": {"journal": str(tmp_path / "j.sqlite"), "history_bars": 400},
            "hotswap": {"enabled": False}, "slots": [{"id": "lead", "symbol": "AUSDT", "genome": str(p),
                                                       "costs": "futures"}]}
    with pytest.raises(ConfigError, match="no data for BUSDT"):
        make_venue(config_from_dict({**base, "replay": {"data": [f"AUSDT={a}"]}}, "t"))
    wrong = Genome.from_tokens(["pos_sign", "feature:ret_5__BUSDT_perp"], [])
    p.write_text(wrong.to_json())
    with pytest.raises(Exception, match="no perp BUSDT"):
        make_venue(config_from_dict({**base, "replay": {"data": [f"AUSDT={a}", f"BUSDT={b}"]}}, "t"))
    p.write_text(Genome.from_tokens(["pos_sign", "feature:ret_5__AUSDT_spot"], []).to_json())
    with pytest.raises(ConfigError, match="one venue symbol is one instrument"):
        run_live(config_from_dict({**base, "replay": {"data": [f"AUSDT={a}"]}}, "t"), max_bars=1)


def test_ccxt_feed_aux_instrument_never_holds_back_delivery_and_reports_closed():
    """The exchange feed's delivery rule with a panel instrument (aux symbol): the traded symbol's bar is delivered
    when it closes even if the aux instrument's bar is late; ``bar_closed`` says when the aux bar (or a known
    exchange gap) is there -- what crucible.panel waits on."""
    import threading

    from crucible.venues.base import Bar
    from crucible.venues.ccxt_venue import CcxtVenue

    v = object.__new__(CcxtVenue)  # the bar store only: no exchange behind it
    v._cv = threading.Condition()
    v.symbols, v.aux_symbols = ("AUSDT", "BUSDT"), ("BUSDT",)
    v._bars = {"AUSDT": {}, "BUSDT": {}}
    v._gaps = {"AUSDT": set(), "BUSDT": set()}
    m = 60_000
    for s in v.symbols:
        v._bars[s][0] = Bar(s, 0, 1, 1, 1, 1, 1)
    v._cursor = 0
    v._bars["AUSDT"][m] = Bar("AUSDT", m, 1, 1, 1, 1, 1)
    with v._cv:
        assert v._pop_next() == {"AUSDT": v._bars["AUSDT"][m]}  # the late BUSDT bar does not hold it back
    assert not v.bar_closed("BUSDT", m) and v.bar_closed("AUSDT", m)
    v._bars["BUSDT"][m] = Bar("BUSDT", m, 1, 1, 1, 1, 1)
    assert v.bar_closed("BUSDT", m)
    v._gaps["BUSDT"].add(2 * m)  # a known exchange gap is closed too (its features are NaN, as research)
    assert v.bar_closed("BUSDT", 2 * m)


def test_panel_challenger_shadows_on_the_fed_instruments_and_an_unfed_one_is_rejected(tmp_path, data, monkeypatch, panel_targets):
    from gauntlet.publish import publish_champion

    cfg = _cfg(tmp_path, data, {"lead": LEAD})
    cfg = cfg.with_("hotswap", enabled=True, poll_bars=5, shadow_bars=5000)
    champions = Path(cfg.general.champions_dir)
    unfed = Genome.from_tokens(["pos_sign", "feature:ret_5__ZUSDT_spot"], [])
    for g in (MIXED, unfed):
        publish_champion(g, champions, run_id="r", symbol="AUSDT", features=list(g.features), verdict={})
    monkeypatch.delenv("FORGE_SIGNING_KEY", raising=False)
    seen = panel_targets
    run_live(cfg, max_bars=600)
    j = Journal(cfg.general.journal)
    try:
        starts, rejects = j.events("shadow_start"), j.events("reject")
    finally:
        j.close()
    assert [e["data"]["genome"] for e in starts] == [MIXED.sha256]
    assert len(rejects) == 1 and "ZUSDT_spot, which the venue does not feed" in rejects[0]["data"]["reason"]
    research, _panel = _research(data, {"mixed": MIXED})
    mine = [(t, v) for k, t, v in seen if k == "ch:" + MIXED.sha256[:16]]
    assert len(mine) > 500 and all(v == research["mixed"][t] for t, v in mine)


def test_panel_and_regime_terminals_in_one_genome_equal_research(tmp_path, data, monkeypatch, panel_targets):
    """A genome gating another instrument's return by the traded instrument's regime: live == research."""
    from forge.features.regimes import write_regime_model
    from test_crucible_regimes import two_state_model

    g = Genome.from_tokens(["pos_sign", "if_then_else", "gt_c", "feature:regime_p1", "const:0",
                            "feature:ret_5__BUSDT_spot", "feature:ret_1"], [0.5])
    model = write_regime_model(two_state_model(), tmp_path / "regime_model.json")
    cfg = _cfg(tmp_path, data, {"both": g})
    cfg = type(cfg)(**{**cfg.__dict__, "slots": tuple(
        type(s)(**{**s.__dict__, "regime_model": str(model)}) for s in cfg.slots)})
    seen = panel_targets
    run_live(cfg, max_bars=2000)
    root, _a, _b = data
    _t, panel, _c, _i = load_panel([root], ["BUSDT:spot"], "AUSDT:perp")
    t = panel["open_time"].to_numpy()
    ref = dict(zip(t.tolist(), genome_positions(g, strategy_features(panel, g.features, None, model),
                                                bars_since_gap(t)).tolist()))
    assert len(seen) == 2000 - 30 and all(v == ref[bt] for _k, bt, v in seen)  # AUSDT's 30-minute gap: no decision
    assert len({v for _k, _bt, v in seen}) == 3


def test_panel_slot_crash_and_restart_gives_the_uninterrupted_ledger(tmp_path, data, monkeypatch):
    """A crash after a bar: the restart re-processes the uncommitted bars as they were (history_at /
    prefetch_at views of every instrument) and ends with the uninterrupted run's fills and ledger."""

    class Crash(Exception):
        pass

    def crash(point, ctx):
        if point == "bar_done" and ctx["bar_no"] == 250:
            raise Crash(point)

    def ledger(out):
        return [(s["slot"], s["fills"], round(s["cash"], 9), s["units"]) for s in out["slots"]]

    (tmp_path / "ref").mkdir()
    (tmp_path / "crash").mkdir()
    ref_cfg = _cfg(tmp_path / "ref", data, {"lead": LEAD, "mixed": MIXED}).with_("replay", max_bars=500)
    rv = make_venue(ref_cfg)
    ref = run_live(ref_cfg, venue=rv, fresh=True)
    cfg = _cfg(tmp_path / "crash", data, {"lead": LEAD, "mixed": MIXED}).with_("replay", max_bars=500)
    v = make_venue(cfg)
    with pytest.raises(Crash):
        run_live(cfg, venue=v, fault=crash, fresh=True)
    replayed = []
    orig = cpanel.PanelSignals.latest

    def latest(self, venue, symbol, genomes, bar_time, *, at=None):
        if at is not None:
            replayed.append(at)
        return orig(self, venue, symbol, genomes, bar_time, at=at)

    monkeypatch.setattr(cpanel.PanelSignals, "latest", latest)
    again = run_live(cfg, venue=v)
    assert replayed  # the restart re-processed bars through the venue's as-of views
    assert ref["fills"] > 10 and ledger(again) == ledger(ref)
    assert v.state()["cash"] == pytest.approx(rv.state()["cash"], abs=1e-9)


def test_ccxt_spot_feed_is_polled_over_rest_with_the_spot_category():
    """A spot instrument read by a panel slot on Bybit: klines over REST with category=spot (never the linear
    WebSocket), polled while the slot waits for the minute (``bar_closed``), at most once per poll_seconds."""
    import threading

    from crucible.venues.base import Bar
    from crucible.venues.ccxt_venue import CcxtVenue

    calls = []
    m = 60_000
    rows = {"BTCUSDT": [[str(2 * m), "1", "1", "1", "1", "5", "5"], [str(m), "1", "1", "1", "1", "5", "5"]]}

    class Ex:
        def publicGetV5MarketKline(self, p):  # noqa: N802 - ccxt's name
            calls.append(dict(p))
            return {"result": {"list": rows[p["symbol"]]}, "time": 3 * m + 1}

    v = object.__new__(CcxtVenue)
    v.ex, v.exchange_id, v.feed, v.poll_seconds = Ex(), "bybit", "ws", 0.0
    v._read = v._call = lambda fn, *a, **k: fn(*a, **k)
    v._cv = threading.Condition()
    v.symbols, v.aux_spot, v.aux_symbols = ("AUSDT", "BTCUSDT"), ("BTCUSDT",), ("BTCUSDT",)
    v._usym = {"AUSDT": "A/USDT:USDT"}
    v._bars = {s: {} for s in v.symbols}
    v._gaps = {s: set() for s in v.symbols}
    v._newest_start = {s: -1 for s in v.symbols}
    v._hist_limit = {s: 0 for s in v.symbols}
    v._need_backfill = set()
    v._bars["BTCUSDT"][0] = Bar("BTCUSDT", 0, 1, 1, 1, 1, 1)
    v._bars["AUSDT"][0] = Bar("AUSDT", 0, 1, 1, 1, 1, 1)
    v._cursor = 0
    assert v.bar_closed("BTCUSDT", m) and v.bar_closed("BTCUSDT", 2 * m)  # fetched and stored on demand
    assert calls and all(c["category"] == "spot" and c["symbol"] == "BTCUSDT" for c in calls)
    assert v._kline_params("AUSDT", None, 3)["category"] == "linear"
    assert sorted(v._bars["BTCUSDT"]) == [0, m, 2 * m]


def test_exchange_factory_feeds_panel_instruments(tmp_path, monkeypatch):
    """make_venue passes the perpetuals a panel slot reads as aux feeds and its spot instruments as spot feeds
    (bybit); binance-demo refuses a spot feed in one line."""
    import crucible.venues.ccxt_venue as cv

    got = {}

    class Fake:
        def __init__(self, exchange, symbols, **kw):
            got.update(exchange=exchange, symbols=symbols, **kw)

    monkeypatch.setattr(cv, "CcxtVenue", Fake)
    p = tmp_path / "g.json"
    p.write_text(Genome.from_tokens(["pos_sign", "add", "feature:ret_5__BTCUSDT_spot", "feature:ret_5__ALGOUSDT_perp"],
                                    []).to_json())
    cfg = config_from_dict({"crucible": {"journal": str(tmp_path / "j.sqlite")},
                            "slots": [{"id": "f", "symbol": "FILUSDT", "genome": str(p)}]}, "t")
    make_venue(cfg, "bybit-testnet")
    assert got["symbols"] == ["FILUSDT"] and got["aux_symbols"] == ["ALGOUSDT"] and got["aux_spot"] == ["BTCUSDT"]
    with pytest.raises(ConfigError, match="spot panel feeds: bybit-testnet"):
        make_venue(cfg, "binance-demo")
