"""Shared fixtures: a fake Bybit exchange on 127.0.0.1 (see tests/fake_bybit.py)."""

from __future__ import annotations

import pytest

from fake_bybit import FakeBybit, sample_bars


@pytest.fixture()
def bybit_keys(monkeypatch):
    """Test API keys in the environment ("test-key" / "test-secret") and a bench key (``CRUCIBLE_BENCH_KEY``, which
    tags client order ids; exchange venues refuse to trade without one); returns the API key pair."""
    monkeypatch.setenv("CRUCIBLE_BENCH_KEY", "test-bench-key-0123456789")
    monkeypatch.setenv("CRUCIBLE_API_KEY", "test-key")
    monkeypatch.setenv("CRUCIBLE_API_SECRET", "test-secret")
    return "test-key", "test-secret"


@pytest.fixture()
def fake_exchange():
    """A started FakeBybit: 600 sample bars, the first 400 closed; stopped after the test."""
    fk = FakeBybit(sample_bars(600), history=400)
    fk.start()
    yield fk
    fk.stop()
