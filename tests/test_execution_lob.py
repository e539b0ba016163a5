"""Exact queue position, the Liquidity Lens, the execution policy document, champion identity and the LOB
execution environment (issue 31 parts 3-4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forge.core.errors import ConfigError, GenomeError
from forge.execution.policy import ALWAYS_TAKER_SHA256, ExecutionPolicy
from forge.execution.policy_nb import (
    A_INSIDE,
    A_MARKET,
    A_TOUCH,
    A_WAIT,
    F_BIAS,
    F_SPREAD,
    N_ACTIONS,
    N_FEATURES,
    always_taker,
    maker_then_cross,
    policy_action_nb,
)
from forge.sim.book_nb import (
    BUY,
    NO_PRICE,
    SELL,
    book_cancel_nb,
    book_limit_nb,
    book_match_nb,
    book_queue_ahead_nb,
    book_reset_nb,
    book_top_nb,
    new_book,
)
from forge.sim.lens_nb import book_pressure_nb, liquidity_density_nb, ofi_nb


def _book():
    o, lv, bk, free, tracked, fb = new_book(64, 256)
    book_reset_nb(o, lv, bk, free, tracked, 0)
    return o, lv, bk, free, tracked, fb


def test_queue_position_hand_worked():
    o, lv, bk, free, tracked, fb = _book()
    a, _ = book_limit_nb(o, lv, bk, free, tracked, BUY, 100, 5, 1, 1, False, fb, 0)
    b, _ = book_limit_nb(o, lv, bk, free, tracked, BUY, 100, 3, 2, 2, False, fb, 0)
    me, _ = book_limit_nb(o, lv, bk, free, tracked, BUY, 100, 4, 9, 3, False, fb, 0)  # joins the back
    late, _ = book_limit_nb(o, lv, bk, free, tracked, BUY, 100, 2, 3, 4, False, fb, 0)
    assert book_queue_ahead_nb(o, lv, me) == 8 and book_queue_ahead_nb(o, lv, late) == 12
    # a market sell of 6: A (5) filled, B 1 of 3 -> 2 ahead of me, I am untouched
    rem, nf = book_match_nb(o, lv, bk, free, tracked, SELL, 6, NO_PRICE, fb, 0)
    assert rem == 0 and nf == 2 and book_queue_ahead_nb(o, lv, me) == 2 and o[me, 1] == 4
    # B cancels: nothing ahead; the next sell of 3 fills me first (3 of my 4), not the later order
    assert book_cancel_nb(o, lv, bk, free, tracked, b) == 2
    assert book_queue_ahead_nb(o, lv, me) == 0
    rem, nf = book_match_nb(o, lv, bk, free, tracked, SELL, 3, NO_PRICE, fb, 0)
    assert nf == 1 and fb[0, 1] == 9 and o[me, 1] == 1 and o[late, 1] == 2
    assert book_queue_ahead_nb(o, lv, late) == 1
    assert book_queue_ahead_nb(o, lv, a) == -1  # gone
    top = np.zeros(4, dtype=np.int64)
    book_top_nb(lv, bk, top)
    assert list(top) == [100, NO_PRICE, 3, 0]


def test_ofi_hand_worked():
    # CKS 2014: bid unchanged 100 (10 -> 12), ask unchanged 101 (8 -> 5): e = (12 - 10) - (5 - 8) = 5
    assert ofi_nb(100, 10, 101, 8, 100, 12, 101, 5) == 5.0
    # bid up to 101 with 4 lots, ask up 101 -> 102 with 7: e = 4 - (-8)... = +4 + 8 = 12
    assert ofi_nb(100, 10, 101, 8, 101, 4, 102, 7) == 12.0
    # bid down to 99 (old 10 lots gone), ask down to 100 with 6 lots: e = -10 - 6 = -16
    assert ofi_nb(100, 10, 101, 8, 99, 3, 100, 6) == -16.0


def test_book_pressure_and_density_hand_worked():
    o, lv, bk, free, tracked, fb = _book()
    for px, q in ((100, 5), (99, 3), (97, 10)):
        book_limit_nb(o, lv, bk, free, tracked, BUY, px, q, 1, px, False, fb, 0)
    for px, q in ((101, 2), (102, 4)):
        book_limit_nb(o, lv, bk, free, tracked, SELL, px, q, 1, px + 1000, False, fb, 0)
    # top 2 ticks: bids 5 + 3 = 8, asks 2 + 4 = 6 -> (8 - 6) / 14; density 14 / 4
    assert book_pressure_nb(lv, bk, 2) == pytest.approx(2 / 14)
    assert liquidity_density_nb(lv, bk, 2) == pytest.approx(3.5)
    # top 4 ticks include the bid at 97: 18 vs 6
    assert book_pressure_nb(lv, bk, 4) == pytest.approx(12 / 24)
    _o2, lv2, bk2, *_ = _book()
    assert book_pressure_nb(lv2, bk2, 3) == 0.0


def test_policy_argmax_and_document_roundtrip(tmp_path):
    x = np.zeros(N_FEATURES)
    x[F_BIAS] = 1.0
    assert policy_action_nb(always_taker(), x) == A_MARKET
    assert policy_action_nb(maker_then_cross(), x) == A_TOUCH
    w = np.zeros((N_ACTIONS, N_FEATURES))
    w[A_INSIDE, F_SPREAD] = 1.0  # inside the spread when it is wide, else wait
    w[A_WAIT, F_BIAS] = 0.15
    x[F_SPREAD] = 0.1
    assert policy_action_nb(w, x) == A_WAIT
    x[F_SPREAD] = 0.3
    assert policy_action_nb(w, x) == A_INSIDE
    p = ExecutionPolicy(w, {"note": "t"})
    f = p.save(tmp_path / "p.json")
    q = ExecutionPolicy.load(f)
    assert q.sha256 == p.sha256 and np.array_equal(q.weights, w)
    assert ExecutionPolicy(w, {"other": 1}).sha256 == p.sha256  # info is not identity
    d = json.loads(f.read_text())
    d["weights"][0][0] = 9.0
    with pytest.raises(ConfigError, match="sha256"):
        ExecutionPolicy.from_dict(d)
    with pytest.raises(ConfigError):
        ExecutionPolicy(np.zeros((2, 2)))
    assert ExecutionPolicy.always_taker().sha256 == ALWAYS_TAKER_SHA256


def test_champion_policy_field_and_identity():
    from forge.core.champion import _check_meta, champion_identity, champion_policy

    meta = {"schema": "forge-champion/2", "file": "g.json", "sha256": "a" * 64, "genome_sha256": "b" * 64}
    assert champion_identity(meta) == ("b" * 64, ALWAYS_TAKER_SHA256)  # old champions: always-taker
    pol = ExecutionPolicy(maker_then_cross())
    with_pol = {**meta, "policy": pol.to_dict()}
    _check_meta(with_pol, "m")
    assert champion_identity(with_pol) == ("b" * 64, pol.sha256) != champion_identity(meta)
    assert np.array_equal(champion_policy(with_pol).weights, maker_then_cross())
    bad = {**meta, "policy": {**pol.to_dict(), "sha256": "0" * 64}}
    with pytest.raises(GenomeError):
        _check_meta(bad, "m")


def test_lob_env_maker_beats_taker_and_policy_is_fast():
    """Simulated microstructure: on one seed, resting at the touch costs less than crossing (futures fees)."""
    from forge.execution.lob_env import EnvConfig, run_episode

    env = EnvConfig(minutes=20, intent_every_min=3, deadline_steps=6)
    tk = run_episode(always_taker(), 7, env, fixed_action=A_MARKET)
    mk = run_episode(always_taker(), 7, env, fixed_action=A_TOUCH, record=True)
    assert tk["label"] == "simulated microstructure"
    assert tk["maker_share"] == 0.0 and tk["fee_bps"] == pytest.approx(5.0, rel=1e-3)  # fee on fill notional, per decision notional
    assert tk["shortfall_bps"] > 0  # crossing pays half the spread and more
    assert 0 < mk["maker_share"] <= 1 and mk["cost_bps"] < tk["cost_bps"]
    assert len(mk["intents"]) == mk["n_intents"] == 6
    again = run_episode(always_taker(), 7, env, fixed_action=A_TOUCH)
    assert again["cost_bps"] == mk["cost_bps"]  # one seed, one result
    pol = run_episode(maker_then_cross(), 7, env)
    assert pol["cost_bps"] == mk["cost_bps"]  # the policy path with maker weights = the fixed action
    assert pol["decision_s"] < 1e-3
