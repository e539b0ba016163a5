"""``forge execution train`` / ``forge execution eval``: the execution policy (IEL) in the LOB simulator,
and its comparison against always-taker and always-maker-then-cross (simulated microstructure), optionally
also on real kline bars under the kline fill model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from commands.edge import console, edge
from forge.core.errors import ConfigError

__all__ = ["execution_eval", "execution_train", "kline_comparison", "parse_seeds"]


def parse_seeds(text: str) -> list[int]:
    """"0-3,7" -> [0, 1, 2, 3, 7]. raises ConfigError on a malformed list."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected integers or ranges like 0-3,7") from None
    if not out or min(out) < 0:
        raise ConfigError(f"--seeds {text!r}: expected at least one seed >= 0")
    return out


@edge
def execution_train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Policy JSON to write.")] = Path("artifacts/execution/policy.json"),
    seeds: Annotated[str, typer.Option("--seeds", help="Simulator seeds to train on, e.g. 0-3.")] = "0-3",
    generations: Annotated[int, typer.Option("--generations", help="CMA-ES generations.")] = 20,
    popsize: Annotated[int, typer.Option("--popsize", help="CMA-ES population.")] = 10,
    minutes: Annotated[int, typer.Option("--minutes", help="Simulated minutes per episode.")] = 60,
    seed: Annotated[int, typer.Option("--seed", help="CMA-ES seed.")] = 0,
) -> None:
    """Train the execution policy by CMA-ES in the LOB simulator (simulated microstructure)."""
    from forge.execution.lob_env import EnvConfig
    from forge.execution_train import train_policy

    env = EnvConfig(minutes=minutes)
    pol, _hist = train_policy(parse_seeds(seeds), env, generations=generations, popsize=popsize, seed=seed,
                             on_generation=lambda r: console.print(
                                 f"gen {r['generation']:3d}  best {r['best_cost_bps']:.3f} bp  mean {r['mean_cost_bps']:.3f} bp",
                                 highlight=False))
    pol.save(out)
    console.print(f"wrote {out} (sha256 {pol.sha256[:16]}, train cost {pol.info['train_cost_bps']:.3f} bp, "
                  "simulated microstructure)", highlight=False)


def kline_comparison(bars_paths: list[str], preset: str, weights: Any) -> dict[str, Any]:
    """Execution cost of always-taker, maker-then-cross and ``weights`` on real bars under the kline fill model,
    for a planted intent stream (a target switching among -1, 0, +1 every ~30 bars, seeded): shortfall + fees
    per unit traded (bp), maker share, markouts; the fee preset ``preset`` ("spot" | "futures")."""
    import numpy as np

    from forge.backtest import BacktestConfig
    from forge.backtest.fills import (
        ExecutionConfig,
        execution_costs,
        infer_tick,
        run_kline_backtest,
    )
    from forge.backtest.spread import corwin_schultz_half_spread
    from forge.core.rng import generator
    from forge.core.runconfig import COST_PRESETS
    from forge.data.loader import load_bars

    bars, _ = load_bars(bars_paths)
    col = {c: bars[c].to_numpy().astype(np.float64) for c in ("open", "high", "low", "close", "volume")}
    t = bars["open_time"].to_numpy().astype(np.int64)
    n = bars.height
    g = generator(0, "exec", "kline-intents")
    change = g.random(n) < 1.0 / 30.0
    pos = (np.cumsum(change * g.integers(1, 3, n)) % 3 - 1).astype(np.float64)
    fees = COST_PRESETS[preset]
    cfg = BacktestConfig(taker_fee_bps=fees["taker_fee_bps"])
    tick = infer_tick(col["close"])
    hs = corwin_schultz_half_spread(col["high"], col["low"], col["close"], window=20, tick=tick)
    out: dict[str, Any] = {"bars": n, "preset": preset, "tick": tick, "median_half_spread_bps": float(1e4 * np.median(hs))}
    for name, mode, w in (("always-taker", "taker", None), ("maker-then-cross", "kline-limit", None),
                          ("policy", "policy", weights)):
        ex = ExecutionConfig(mode=mode, tick_size=tick)
        r = run_kline_backtest(col["open"], col["high"], col["low"], col["close"], col["volume"], t, pos, cfg, ex,
                               maker_fee_bps=fees["maker_fee_bps"], weights=w, half_spread=hs)
        out[name] = {**execution_costs(r.fills, col["close"]), "sharpe": r.metrics.sharpe,
                     "total_return": r.metrics.total_return}
    return out


@edge
def execution_eval(
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help="Policy JSON (default: always-taker).")] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Held-out simulator seeds, e.g. 100-107.")] = "100-103",
    minutes: Annotated[int, typer.Option("--minutes", help="Simulated minutes per episode.")] = 60,
    bars: Annotated[list[Path] | None, typer.Option("--bars", help="Also compare on these kline files (repeatable).")] = None,
    preset: Annotated[str, typer.Option("--preset", help="Fee preset for --bars: spot or futures.")] = "futures",
    as_json: Annotated[bool, typer.Option("--json", help="Print strict JSON.")] = False,
) -> None:
    """Compare the policy with always-taker and always-maker-then-cross on held-out simulator seeds."""
    import json

    from forge.execution.lob_env import EnvConfig, evaluate_policy
    from forge.execution.policy import ExecutionPolicy
    from forge.execution.policy_nb import A_MARKET, A_TOUCH, always_taker

    if preset not in ("spot", "futures"):
        raise ConfigError(f"--preset {preset!r}: expected spot or futures")
    pol = ExecutionPolicy.load(policy) if policy is not None else ExecutionPolicy.always_taker()
    env = EnvConfig(minutes=minutes)
    s = parse_seeds(seeds)
    res: dict[str, Any] = {"label": "simulated microstructure", "policy_sha256": pol.sha256, "seeds": s,
                           "always-taker": evaluate_policy(always_taker(), s, env, fixed_action=A_MARKET),
                           "maker-then-cross": evaluate_policy(always_taker(), s, env, fixed_action=A_TOUCH),
                           "policy": evaluate_policy(pol.weights, s, env)}
    if len(s) >= 2:
        from forge.execution_train import paired_cost_test

        res["paired"] = {b: paired_cost_test(res["policy"]["per_seed_cost_bps"], res[b]["per_seed_cost_bps"])
                         for b in ("always-taker", "maker-then-cross")}
    if bars:
        res["klines"] = kline_comparison([str(b) for b in bars], preset, pol.weights)
    if as_json:
        print(json.dumps(res, default=float))
        return
    console.print(f"simulated microstructure, seeds {seeds}: cost = shortfall + fees per unit traded", highlight=False)
    for k in ("always-taker", "maker-then-cross", "policy"):
        r = res[k]
        console.print(f"  {k:17s} cost {r['cost_bps']:7.3f} bp  fees {r['fee_bps']:6.3f}  maker {r['maker_share']:.2f}"
                      f"  fill-rate {r['fill_rate']:.2f}  markout {r['markout_bps']:+.2f} bp", highlight=False)
    for b, p in res.get("paired", {}).items():
        console.print(f"  policy vs {b}: {p['wins']} wins / {p['ties']} ties / {p['losses']} losses, mean "
                      f"{p['mean_diff_bps']:+.3f} bp [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] (95 %), Wilcoxon p "
                      f"{p['wilcoxon_p_less']:.3g}", highlight=False)
    if bars:
        kl = res["klines"]
        console.print(f"kline fill model, {kl['bars']:,} bars, preset {preset}:", highlight=False)
        for k in ("always-taker", "maker-then-cross", "policy"):
            r = kl[k]
            console.print(f"  {k:17s} cost {r['shortfall_bps']:7.3f} bp  maker {r['maker_share']:.2f}  "
                          f"markout@5 {r['markout_5_bps']:+.2f} bp", highlight=False)
