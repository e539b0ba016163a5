"""The policy's richer state (book pressure, drift, queue ahead, OFI EWMA), documents of both layouts, the
paired cost test, and inference time (issue 31 part 3)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from forge.core.errors import ConfigError
from forge.execution.policy import ALWAYS_TAKER_SHA256, ExecutionPolicy
from forge.execution.policy_nb import (
    A_MARKET,
    A_TOUCH,
    A_WAIT,
    F_BIAS,
    F_QUEUE,
    FEATURE_NAMES,
    FEATURE_NAMES_V1,
    N_ACTIONS,
    N_FEATURES,
    always_taker,
    maker_then_cross,
    policy_action_nb,
)
from forge.execution_train import paired_cost_test

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_v1_documents_keep_their_sha256_and_load_with_zero_new_weights(tmp_path):
    # the default's sha256 is the one every earlier release computed (a champion without a policy field)
    assert ALWAYS_TAKER_SHA256 == "e76760d8b48499eb" + ALWAYS_TAKER_SHA256[16:]
    d = ExecutionPolicy.always_taker().to_dict()
    assert d["features"] == list(FEATURE_NAMES_V1) and len(d["weights"][0]) == 8
    old = BENCH / "execution_policy.json"  # written by the first trainer: eight inputs
    if old.is_file():
        pol = ExecutionPolicy.load(old)
        assert pol.sha256.startswith("47df05377a788f65") and pol.weights.shape == (N_ACTIONS, N_FEATURES)
        assert np.all(pol.weights[:, len(FEATURE_NAMES_V1):] == 0.0)
    # a v1 document with a weight on an undeclared slot cannot be built
    w = maker_then_cross()
    w[A_WAIT, F_QUEUE] = 1.0
    with pytest.raises(ConfigError, match="outside its declared features"):
        ExecutionPolicy(w, {}, FEATURE_NAMES_V1)
    full = ExecutionPolicy(w)
    q = ExecutionPolicy.load(full.save(tmp_path / "p.json"))
    assert q.sha256 == full.sha256 and q.features == FEATURE_NAMES and np.array_equal(q.weights, w)
    bad = json.loads((tmp_path / "p.json").read_text())
    bad["features"] = bad["features"][:10]
    with pytest.raises(ConfigError, match="layout"):
        ExecutionPolicy.from_dict(bad)
    assert ExecutionPolicy(always_taker()).is_always_taker and not full.is_always_taker


def test_policy_reads_a_shorter_state_as_zeros():
    w = maker_then_cross()
    w[A_MARKET, F_QUEUE] = 10.0  # would cross on any queue; an eight-slot state has none
    x8 = np.zeros(8)
    x8[F_BIAS] = 1.0
    assert policy_action_nb(w, x8) == A_TOUCH
    x = np.zeros(N_FEATURES)
    x[F_BIAS], x[F_QUEUE] = 1.0, 0.5
    assert policy_action_nb(w, x) == A_MARKET


def test_paired_cost_test_detects_a_real_lead_and_not_noise():
    g = np.random.default_rng(5)
    base = 2.0 + g.normal(0, 0.5, 32)  # seed-level cost differences shared by both (common random numbers)
    better = base - 0.1 + g.normal(0, 0.05, 32)
    r = paired_cost_test(better, base)
    assert r["wins"] >= 28 and r["ci_high"] < 0 and r["t_p_less"] < 1e-6 and r["wilcoxon_p_less"] < 1e-4
    e = g.normal(0, 0.05, 16)
    same = base + np.r_[e, -e]  # differences with mean exactly 0: no lead
    r0 = paired_cost_test(same, base)
    assert r0["ci_low"] < 0 < r0["ci_high"] and r0["t_p_less"] > 0.05 and r0["wilcoxon_p_less"] > 0.05
    # size under the null: over many noise draws the one-sided 5 % tests reject about 5 %
    rej = [paired_cost_test(base + g.normal(0, 0.05, 32), base)["t_p_less"] < 0.05 for _ in range(400)]
    assert 0.02 < np.mean(rej) < 0.09
    tie = paired_cost_test(base, base)
    assert tie["ties"] == 32 and tie["wilcoxon_p_less"] == 1.0 and tie["mean_diff_bps"] == 0.0
    with pytest.raises(ValueError):
        paired_cost_test([1.0], [1.0])


def test_episode_state_and_inference_time():
    """The simulator fills the new slots within their stated ranges; one decision costs well under 1 ms."""
    from forge.execution import lob_env

    seen: list[np.ndarray] = []
    orig = lob_env.policy_action_nb

    def spy(w, x):
        seen.append(x.copy())
        return orig(w, x)

    lob_env.policy_action_nb = spy
    try:
        r = lob_env.run_episode(maker_then_cross(), 100, lob_env.EnvConfig(minutes=12))
    finally:
        lob_env.policy_action_nb = orig
    xs = np.array(seen)
    assert r["label"] == "simulated microstructure" and xs.shape[1] == N_FEATURES and len(xs) > 0
    names = {n: i for i, n in enumerate(FEATURE_NAMES)}
    assert np.all(np.abs(xs[:, names["pressure"]]) <= 1.0) and np.all(np.abs(xs[:, names["ofi_ema"]]) <= 1.0)
    assert np.all((xs[:, names["queue"]] >= 0.0) & (xs[:, names["queue"]] <= 10.0))
    assert np.any(xs[:, names["queue"]] > 0.0)
    w = maker_then_cross()
    x = xs[-1]
    policy_action_nb(w, x)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        policy_action_nb(w, x)
    assert (time.perf_counter() - t0) / n < 1e-3
