"""Issue 31: net per-bar Sharpe of a planted-edge strategy and of the best evolved strategy under each execution
mode, on real 1-minute bars with the kline fill model.

Data and presets as ``benchmarks/execution_costs.py``: FILUSDT and ALGOUSDT USDⓈ-M perpetuals 2024-02 (futures
preset: maker 2 / taker 5 bp, funding 0.01 % / 8 h) and BTCUSDT spot 2024-02 (spot: 10 / 10 bp).

Strategies:

* ``planted h/acc``: the target is the sign of the next ``h``-bar close-to-close return with accuracy ``acc``
  (``benchmarks.execution_planted.planted_positions``, seed 0): a fixed, known gross edge under every mode.
* ``evolved``: the champion of a small ``forge evolve`` run on FILUSDT 2024-02 (``--evolved RUN_DIR``; the
  command is in benchmarks/RESULTS.md), scored on its run's out-of-sample bars of FILUSDT (the bars after
  its in-sample range, never seen by the search), and on ALGOUSDT / BTCUSDT over the same dates (a transfer:
  the same rule on another instrument).  Its in-sample figure is reported too, marked as such.

Modes (all on the same bars, the same positions): ``taker bt`` = the backtester evolution uses
(``forge.backtest.run_backtest``, taker fee + 1 bp slippage); ``kline taker`` = always-market in the kline
model (crossing the Corwin-Schultz half-spread); ``maker-then-cross`` (``kline-limit``: rest at the estimated
touch, trade-through fills at ≤ 10 % of the bar's volume, cross at the deadline, 5 bars); ``policy`` = the
trained execution policy (``--policy``; on klines it sees spread estimate, volatility, urgency, time to
deadline and fraction filled -- imbalance, OFI, pressure, drift and queue are 0 there).

Per-bar Sharpe = mean / std (ddof 1) of per-bar equity returns (not annualised); cost = implementation
shortfall + fees per unit traded (bp); maker share; 5-bar markout of the fills (bp).

Run: ``PYTHONPATH=. nice -n 5 python benchmarks/execution_modes_real.py --evolved RUN_DIR --policy POLICY.json``
-> ``benchmarks/execution_modes_real.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.execution_costs import KLINES
from benchmarks.execution_planted import planted_positions

PLANTED = ((15, 0.55), (15, 0.60), (5, 0.60))


def _modes(col: dict[str, np.ndarray], t: np.ndarray, pos: np.ndarray, preset: str, weights: np.ndarray,
           rows: tuple[int, int] | None = None) -> dict[str, Any]:
    from forge.backtest import BacktestConfig, run_backtest
    from forge.backtest.fills import ExecutionConfig, execution_costs, infer_tick, run_kline_backtest
    from forge.backtest.metrics import sharpe_per_bar
    from forge.backtest.spread import corwin_schultz_half_spread
    from forge.core.runconfig import COST_PRESETS

    a, b = rows if rows is not None else (0, t.shape[0])
    c = {k: np.ascontiguousarray(v[a:b]) for k, v in col.items()}
    tt, p = np.ascontiguousarray(t[a:b]), np.ascontiguousarray(pos[a:b])
    fees = COST_PRESETS[preset]
    cfg = BacktestConfig(taker_fee_bps=fees["taker_fee_bps"], slippage_bps=1.0,
                         funding_rate_8h=1e-4 if preset == "futures" else 0.0)
    tick = infer_tick(c["close"])
    hs = corwin_schultz_half_spread(c["high"], c["low"], c["close"], window=20, tick=tick)
    out: dict[str, Any] = {"bars": int(b - a), "median_half_spread_bps": float(1e4 * np.median(hs))}
    bt = run_backtest(c["open"], c["close"], tt, p, cfg)
    out["taker bt"] = {"sharpe": sharpe_per_bar(bt.returns), "total_return": bt.metrics.total_return,
                       "fills": int(bt.trades.shape[0])}
    for label, mode, w in (("kline taker", "taker", None), ("maker-then-cross", "kline-limit", None),
                           ("policy", "policy", weights)):
        r = run_kline_backtest(c["open"], c["high"], c["low"], c["close"], c["volume"], tt, p, cfg,
                               ExecutionConfig(mode=mode, tick_size=tick), maker_fee_bps=fees["maker_fee_bps"],
                               weights=w, half_spread=hs)
        eq = np.r_[cfg.initial_capital, r.equity]
        cost = execution_costs(r.fills, c["close"])
        out[label] = {"sharpe": sharpe_per_bar(eq[1:] / eq[:-1] - 1.0), "total_return": r.metrics.total_return,
                      "cost_bps": cost["shortfall_bps"], "maker_share": cost["maker_share"],
                      "markout_5_bps": cost["markout_5_bps"], "fills": cost["n_fills"]}
    return out


def _evolved_positions(run_dir: Path, bars: Any) -> tuple[np.ndarray, dict[str, Any], str]:
    from forge.data.gaps import bars_since_gap
    from forge.gp import Genome
    from forge.strategy import genome_positions, strategy_features

    g = Genome.load(run_dir / "champion.json")
    lib = run_dir / "feature_library.json"
    fm = strategy_features(bars, g.features, lib if lib.is_file() else None)
    pos = genome_positions(g, fm, bars_since_gap(bars["open_time"].to_numpy()))
    split = json.loads((run_dir / "manifest.json").read_text())["split"]
    return np.asarray(pos, dtype=np.float64), split, g.expression()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evolved", type=str, default="", help="run directory of the forge evolve run on FILUSDT")
    ap.add_argument("--policy", type=str, default=str(Path(__file__).with_name("execution_policy.json")))
    ap.add_argument("--out", type=str, default=str(Path(__file__).with_name("execution_modes_real.json")))
    args = ap.parse_args()

    from forge.data.loader import load_bars
    from forge.execution.policy import ExecutionPolicy

    pol = ExecutionPolicy.load(args.policy)
    res: dict[str, Any] = {"policy_sha256": pol.sha256, "rows": []}
    for name, (preset, files) in KLINES.items():
        if not (files and all(Path(f).is_file() for f in files)):
            continue
        bars, _ = load_bars([str(f) for f in files])
        col = {c: bars[c].to_numpy().astype(np.float64) for c in ("open", "high", "low", "close", "volume")}
        t = bars["open_time"].to_numpy().astype(np.int64)
        for hold, acc in PLANTED:
            row = {"data": name, "strategy": f"planted h={hold} acc={acc:.2f}", "bars_used": "all",
                   **_modes(col, t, planted_positions(col["close"], hold, acc, 0), preset, pol.weights)}
            res["rows"].append(row)
            print(json.dumps(row, default=float), flush=True)
        if args.evolved:
            pos, split, expr = _evolved_positions(Path(args.evolved), bars)
            res["evolved_expression"] = expr
            oos = np.flatnonzero((t >= int(split["out_of_sample"]["first_open_ms"]))
                                 & (t <= int(split["out_of_sample"]["last_open_ms"])))
            ins = np.flatnonzero((t >= int(split["in_sample"]["first_open_ms"]))
                                 & (t <= int(split["in_sample"]["last_open_ms"])))
            for label, idx in (("out-of-sample", oos), ("in-sample", ins)):
                if idx.shape[0] < 100 or (label == "in-sample" and not name.startswith("FILUSDT")):
                    continue
                row = {"data": name, "strategy": "evolved" + ("" if name.startswith("FILUSDT") else " (transfer)"),
                       "bars_used": label,
                       **_modes(col, t, pos, preset, pol.weights, (int(idx[0]), int(idx[-1]) + 1))}
                res["rows"].append(row)
                print(json.dumps(row, default=float), flush=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    print("\n| data | strategy | bars | taker bt | kline taker | maker-then-cross | policy | maker-then-cross cost bp / maker share / 5-bar markout bp |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in res["rows"]:
        m = r["maker-then-cross"]
        print(f"| {r['data']} | {r['strategy']} | {r['bars_used']} | {r['taker bt']['sharpe']:+.4f} | "
              f"{r['kline taker']['sharpe']:+.4f} | {m['sharpe']:+.4f} | {r['policy']['sharpe']:+.4f} | "
              f"{m['cost_bps']:.2f} / {m['maker_share']:.2f} / {m['markout_5_bps']:+.2f} |")


if __name__ == "__main__":
    main()
