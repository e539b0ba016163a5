"""Issue 31: execution cost of always-taker, always-maker-then-cross and the trained policy (IEL).

1. Train the policy by CMA-ES in the LOB simulator on seeds 0-7 (``forge.execution_train.train_policy``, 30
   generations x 12, sigma0 0.5, seed 0; 60 simulated minutes per episode) and write it to
   ``benchmarks/execution_policy.json``.
2. Evaluate the three on held-out simulator seeds 100-107 (simulated microstructure): implementation
   shortfall + fees per unit traded (bp), maker share, fill rate (intents completed passively), markouts,
   policy inference time per decision.
3. The same comparison on real 1-minute bars under the kline fill model: FILUSDT and ALGOUSDT USDⓈ-M
   perpetuals 2024-02 (futures preset: maker 2 / taker 5 bp) and BTCUSDT spot 2024-02 (10 / 10 bp).
4. Kline-model backtest bars/s against the taker backtest.

Run: ``PYTHONPATH=. nice -n 5 python benchmarks/execution_costs.py [--generations 40] [--policy FILE]``
(``--policy`` skips training).  Output: benchmarks/execution_costs.json.

Robust-lead protocol (issue 31 follow-up): ``--train-seeds 0-15 --held-out 100-131 --popsize 20
--generations 60 --policy-out benchmarks/execution_policy.json --sim-only``: train on 16 seeds, evaluate on
32 held-out seeds, and report per-seed wins and the paired tests of
:func:`forge.execution_train.paired_cost_test` against each baseline ("paired" in the JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
DATA = next((p for p in (_ROOT.parent / "shared/data/binance", _ROOT.parent.parent / "shared/data/binance")
             if p.is_dir()), _ROOT.parent / "shared/data/binance")  # ../shared/data from a checkout or a worktree
KLINES = {
    "FILUSDT-futures-2024-02": ("futures", [DATA / "futures-um/FILUSDT/1m/FILUSDT-1m-2024-02.csv"]),
    "ALGOUSDT-futures-2024-02": ("futures", [DATA / "futures-um/ALGOUSDT/1m/ALGOUSDT-1m-2024-02.csv"]),
    "BTCUSDT-spot-2024-02": ("spot", sorted((DATA / "spot/BTCUSDT/1m").glob("BTCUSDT-1m-2024-02-*.csv"))),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--policy", type=str, default="")
    ap.add_argument("--out", type=str, default=str(Path(__file__).with_name("execution_costs.json")))
    ap.add_argument("--train-seeds", type=str, default="0-7")
    ap.add_argument("--held-out", type=str, default="100-107")
    ap.add_argument("--popsize", type=int, default=12)
    ap.add_argument("--sigma0", type=float, default=0.5)
    ap.add_argument("--policy-out", type=str, default=str(Path(__file__).with_name("execution_policy.json")))
    ap.add_argument("--x0", type=str, default="", help="start CMA-ES at this policy JSON's weights")
    ap.add_argument("--sim-only", action="store_true", help="skip the kline comparison and the throughput")
    args = ap.parse_args()
    from commands.execution import parse_seeds
    from forge.execution_train import paired_cost_test

    from commands.execution import kline_comparison
    from forge.backtest.fills import kline_throughput
    from forge.execution.lob_env import EnvConfig, evaluate_policy
    from forge.execution.policy import ExecutionPolicy
    from forge.execution.policy_nb import A_MARKET, A_TOUCH, always_taker
    from forge.execution_train import train_policy

    env = EnvConfig(minutes=60)
    res: dict = {"label": "simulated microstructure (LOB simulator figures)", "env": dict(env.__dict__)}
    t0 = time.perf_counter()
    if args.policy:
        pol = ExecutionPolicy.load(args.policy)
        res["training"] = {"loaded": args.policy}
    else:
        train = parse_seeds(args.train_seeds)
        pol, hist = train_policy(train, env, generations=args.generations, popsize=args.popsize,
                                 sigma0=args.sigma0, seed=0,
                                 x0=ExecutionPolicy.load(args.x0).weights if args.x0 else None,
                                 on_generation=lambda r: print(json.dumps(r), flush=True))
        pol.save(args.policy_out)
        res["training"] = {"seeds": train, "generations": args.generations, "popsize": args.popsize,
                           "train_cost_bps": pol.info["train_cost_bps"], "seconds": time.perf_counter() - t0,
                           "sigma0": args.sigma0, "history": hist}
    res["policy_sha256"] = pol.sha256
    held = parse_seeds(args.held_out)
    res["held_out_seeds"] = held
    res["sim"] = {"always-taker": evaluate_policy(always_taker(), held, env, fixed_action=A_MARKET),
                  "maker-then-cross": evaluate_policy(always_taker(), held, env, fixed_action=A_TOUCH),
                  "policy": evaluate_policy(pol.weights, held, env)}
    s = res["sim"]
    res["sim"]["policy_vs_taker"] = s["policy"]["cost_bps"] / s["always-taker"]["cost_bps"]
    res["sim"]["maker_vs_taker"] = s["maker-then-cross"]["cost_bps"] / s["always-taker"]["cost_bps"]
    res["paired"] = {f"policy - {b}": paired_cost_test(s["policy"]["per_seed_cost_bps"], s[b]["per_seed_cost_bps"])
                     for b in ("always-taker", "maker-then-cross")}
    # the goal "policy <= 50 % of always-taker" per seed, and its paired interval: policy - 0.5 x taker
    res["paired"]["policy - 0.5 x always-taker"] = paired_cost_test(
        s["policy"]["per_seed_cost_bps"], [0.5 * c for c in s["always-taker"]["per_seed_cost_bps"]])
    # inference latency: the numba policy call alone, warm
    from forge.execution.policy_nb import N_FEATURES, policy_action_nb
    x = np.random.default_rng(0).normal(size=N_FEATURES)
    policy_action_nb(pol.weights, x)
    n = 100_000
    t1 = time.perf_counter()
    for _ in range(n):
        policy_action_nb(pol.weights, x)
    res["policy_inference_s_per_decision"] = (time.perf_counter() - t1) / n
    if args.sim_only:
        Path(args.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
        print(json.dumps({k: v for k, v in res.items() if k not in ("training",)}, indent=1, default=float))
        return
    res["klines"] = {}
    for name, (preset, files) in KLINES.items():
        if files and all(Path(f).is_file() for f in files):
            res["klines"][name] = kline_comparison([str(f) for f in files], preset, pol.weights)
    res["throughput"] = {m: kline_throughput(400_000, repeats=10, mode=m) for m in ("kline-limit", "policy")}
    Path(args.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("training",)}, indent=1, default=float))


if __name__ == "__main__":
    main()
