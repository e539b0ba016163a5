"""Issue 31: net per-bar Sharpe of a planted-edge strategy under each execution mode on real 1-minute bars.

The planted strategy knows the sign of the next ``hold``-bar close-to-close return with accuracy ``acc``:
for each block [t, t + hold) the target is sign(close[t + hold] / close[t] - 1) with probability acc (a seeded
coin per block) and the opposite otherwise, decided at close t (filled from bar t + 1 on).  Its gross edge
is therefore known and the same under every mode (acc 0.5 = no edge).  Modes: the taker backtester as evolution runs it
(``forge.backtest.run_backtest``, slippage_bps 1), the kline model's always-taker (crossing the
Corwin-Schultz half-spread), maker-then-cross (``kline-limit``) and the trained policy
(``benchmarks/execution_policy.json``).  Data and presets as ``benchmarks/execution_costs.py``.

Run: ``PYTHONPATH=. nice -n 5 python benchmarks/execution_planted.py``; output
``benchmarks/execution_planted.json``.  Per-bar Sharpe = mean / std (ddof 1) of per-bar equity returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.execution_costs import KLINES


def planted_positions(close: np.ndarray, hold: int, acc: float, seed: int) -> np.ndarray:
    from forge.core.rng import generator

    g = generator(seed, "exec", "planted")
    n = close.shape[0]
    pos = np.zeros(n)
    for t in range(0, n - hold, hold):
        s = 1.0 if close[t + hold] > close[t] else -1.0
        if g.random() >= acc:
            s = -s
        pos[t:t + hold] = s
    return pos


def main() -> None:
    from forge.backtest import BacktestConfig, run_backtest
    from forge.backtest.fills import ExecutionConfig, infer_tick, run_kline_backtest
    from forge.backtest.metrics import sharpe_per_bar
    from forge.backtest.spread import corwin_schultz_half_spread
    from forge.core.runconfig import COST_PRESETS
    from forge.data.loader import load_bars
    from forge.execution.policy import ExecutionPolicy

    pol = ExecutionPolicy.load(Path(__file__).with_name("execution_policy.json"))
    out: dict = {"policy_sha256": pol.sha256, "rows": []}
    for name, (preset, files) in KLINES.items():
        if not (files and all(Path(f).is_file() for f in files)):
            continue
        bars, _ = load_bars([str(f) for f in files])
        col = {c: bars[c].to_numpy().astype(np.float64) for c in ("open", "high", "low", "close", "volume")}
        t = bars["open_time"].to_numpy().astype(np.int64)
        fees = COST_PRESETS[preset]
        cfg = BacktestConfig(taker_fee_bps=fees["taker_fee_bps"], slippage_bps=1.0)
        tick = infer_tick(col["close"])
        hs = corwin_schultz_half_spread(col["high"], col["low"], col["close"], window=20, tick=tick)
        for hold in (5, 15):
            for acc in (0.5, 0.55, 0.6):
                pos = planted_positions(col["close"], hold, acc, 0)
                row = {"data": name, "preset": preset, "hold_bars": hold, "accuracy": acc}
                bt = run_backtest(col["open"], col["close"], t, pos, cfg)
                row["taker_backtest"] = sharpe_per_bar(bt.returns)
                for label, mode, w in (("kline_taker", "taker", None), ("maker_then_cross", "kline-limit", None),
                                       ("policy", "policy", pol.weights)):
                    r = run_kline_backtest(col["open"], col["high"], col["low"], col["close"], col["volume"], t, pos,
                                           cfg, ExecutionConfig(mode=mode, tick_size=tick),
                                           maker_fee_bps=fees["maker_fee_bps"], weights=w, half_spread=hs)
                    eq = np.r_[cfg.initial_capital, r.equity]
                    row[label] = sharpe_per_bar(eq[1:] / eq[:-1] - 1.0)
                out["rows"].append(row)
                print(json.dumps(row))
    Path(__file__).with_name("execution_planted.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
