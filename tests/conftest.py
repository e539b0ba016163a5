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


@pytest.fixture(autouse=True, scope="session")
def _run_index_in_tmp(tmp_path_factory):
    """forge evolve records every run in a run index (artifacts/run_index.jsonl by default): the tests'
    runs go to a temporary one, not the checkout's."""
    import os

    old = os.environ.get("FORGE_RUN_INDEX")
    os.environ["FORGE_RUN_INDEX"] = str(tmp_path_factory.mktemp("run-index") / "run_index.jsonl")
    yield
    if old is None:
        os.environ.pop("FORGE_RUN_INDEX", None)
    else:
        os.environ["FORGE_RUN_INDEX"] = old


@pytest.fixture()
def panel_targets(monkeypatch):
    """Every target ``crucible.panel.PanelSignals.targets`` returns during the test, as [(key, bar_time, value)]."""
    import crucible.panel as cpanel

    seen: list[tuple[str, int, float]] = []
    orig = cpanel.PanelSignals.targets

    def targets(self, venue, symbol, genomes, bar_time, **kw):
        out = orig(self, venue, symbol, genomes, bar_time, **kw)
        seen.extend((k, bar_time, v) for k, v in out.items())
        return out

    monkeypatch.setattr(cpanel.PanelSignals, "targets", targets)
    return seen
