"""Live regime terminals (crucible.signals.LiveRegimes): the filter run bar by bar on the Crucible's rolling
window with the frozen parameters equals the research terminals (forge.strategy.strategy_features)."""

from __future__ import annotations

import numpy as np

from crucible.signals import LiveRegimes
from forge.features.regimes import write_regime_model
from forge.strategy import strategy_features
from test_regimes import known_model, planted


def test_live_filter_matches_research_bar_for_bar(tmp_path):
    bars, _ = planted(1500, [3.5e-4, 5e-4, 7.07e-4], [1.8, 2.0, 2.2], 0.99, 11, gaps=(700,))
    path = write_regime_model(known_model(), tmp_path / "regime_model.json")
    research = strategy_features(bars, known_model().feature_names, None, path)
    live = LiveRegimes(path)
    cols = {c: bars[c].to_numpy() for c in bars.columns}
    history = 60  # the Crucible's rolling window of closed bars
    got = np.empty_like(research.values)
    for t in range(bars.height):
        v = live.update("BTCUSDT", {c: x[max(0, t - history + 1):t + 1] for c, x in cols.items()})
        got[:, t] = [v[n] for n in research.names]
        if t == 900:  # a duplicated close is not applied twice
            again = live.update("BTCUSDT", {c: x[max(0, t - history + 1):t + 1] for c, x in cols.items()})
            assert again == v
    assert np.array_equal(got, research.values)
    # another symbol has its own filter
    first = live.update("ETHUSDT", {c: x[:1] for c, x in cols.items()})
    assert first["regime_p0"] == known_model().startprob[0]
