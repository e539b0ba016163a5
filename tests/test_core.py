"""Core utilities: seeded streams, atomic writes, gap bookkeeping, config parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forge.core import rng
from forge.core.artifacts import atomic_write_json
from forge.core.config import build_section
from forge.core.errors import ConfigError, DataError
from forge.data.gaps import bars_since_gap, segment_ids
from forge.core.runconfig import EvolveConfig


def test_streams_are_reproducible_and_independent():
    a = rng.generator(7, "evolve", "init").random(5)
    b = rng.generator(7, "evolve", "init").random(5)
    c = rng.generator(7, "evolve", "mutate").random(5)
    d = rng.generator(8, "evolve", "init").random(5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert rng.python_random(3, "x").random() == rng.python_random(3, "x").random()
    s = rng.int_seed(3, "deap")
    assert 0 <= s < 2**63 and s == rng.int_seed(3, "deap")
    with pytest.raises(ValueError):
        rng.generator(-1)


def test_bars_since_gap_and_segments():
    t = np.array([0, 1, 2, 5, 6, 10], dtype=np.int64) * 60_000
    assert bars_since_gap(t).tolist() == [0, 1, 2, 0, 1, 0]
    assert segment_ids(t).tolist() == [0, 0, 0, 1, 1, 2]
    assert bars_since_gap(np.zeros(0, dtype=np.int64)).size == 0


def test_atomic_write_json_is_strict_json(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "x.json", {"a": float("inf"), "b": float("nan"), "c": [1.5]})
    assert json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "a": "inf", "b": None, "c": [1.5]}
    assert not [f for f in p.parent.iterdir() if f.name.endswith(".tmp")]


def test_build_section_names_key_and_type():
    with pytest.raises(ConfigError, match=r"where\.population: expected an integer"):
        build_section(EvolveConfig, {"population": 1.5}, "where")
    with pytest.raises(ConfigError, match="unknown key"):
        build_section(EvolveConfig, {"pop": 3}, "where")
    sec = build_section(EvolveConfig, {"data": ["a", "b"], "cxpb": 0}, "where")
    assert sec.data == ("a", "b") and sec.cxpb == 0.0


def test_data_error_names_file_and_line():
    e = DataError("high < low", file="x.csv", line=12)
    assert str(e) == "x.csv:12: high < low" and e.line == 12 and e.exit_code == 3
