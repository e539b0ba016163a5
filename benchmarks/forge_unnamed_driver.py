"""Issue 17 item 7: a driver the feature registry does not name.

A held-out planted market whose next-bar mean return is driven by a *slow component of a raw kline column*:
the ``window``-bar mean of the taker-buy share (default 180 bars; the registry has the share itself,
``taker_imb``, and its 20-bar mean, ``taker_imb_20``, nothing slower).  The share is i.i.d. noise, so no
registry feature carries the driver at the horizon it acts on.  A ``null`` twin has the same prices, share and
clock without the planted mean.  The script runs the default ``forge evolve`` pipeline (default config, a
bounded budget) on both and reports the causal filter's decisions (raw and smoothed forms), the champion and
its out-of-sample alpha score next to buy-and-hold; ``--no-smooth`` runs the pipeline as it was before the
smoothed-form test (``[causal] smooth_windows = []``).

Usage: ``nice -n 10 .venv/bin/python benchmarks/forge_unnamed_driver.py [--seeds 0 1 2] [--pop 60] [--gens 4]
[--no-smooth] [--out benchmarks/forge_unnamed_driver.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARE_NOISE = 0.25  # sd of the per-bar taker-buy imbalance (2*share - 1), clipped to +-0.98


def slow_driver_bars(seed: int, strength: float = 0.2, days: int = 20, window: int = 180,
                     kind: str = "planted") -> tuple[pl.DataFrame, dict[str, float]]:
    """A 1-minute market whose next-bar mean is driven by the ``window``-bar mean of the taker-buy imbalance.

    Built on ``forge.data.synthetic.synthetic_bars(kind="null")`` (GARCH(1,1) Student-t(4) returns on the
    embedded sample's clock and volumes): the taker-buy imbalance i_t = 2*taker_buy/volume - 1 is replaced by
    i.i.d. N(0, 0.25^2) noise (clipped to +-0.98), d_t = mean(i_{t-window+1..t}) / (0.25/sqrt(window)) is its
    standardised slow component, and (kind "planted") the log return of bar t gains strength * sigma * d_{t-1}
    (sigma: the null returns' standard deviation).  kind "null": the same bars without the planted mean.
    returns: (bars in the Binance kline schema, {"gross_sharpe": per-bar Sharpe of sign(d_{t-1}) trading
    before costs, "buy_and_hold": log return of the market}).  raises ValueError for an unknown kind.
    """
    from forge.data.synthetic import synthetic_bars

    if kind not in ("planted", "null"):
        raise ValueError(f"kind must be 'planted' or 'null', got {kind!r}")
    base, _ = synthetic_bars(seed, 0.0, days, kind="null")
    rng = np.random.default_rng([seed, 17_7])
    n = base.height
    imb = np.clip(SHARE_NOISE * rng.normal(size=n), -0.98, 0.98)
    c = np.cumsum(np.concatenate(([0.0], imb)))
    d = np.full(n, 0.0)
    d[window - 1:] = (c[window:] - c[:-window]) / window / (SHARE_NOISE / math.sqrt(window))
    close0 = base["close"].to_numpy().astype(np.float64)
    r = np.diff(np.log(close0), prepend=np.log(close0[0]))
    sigma = float(np.std(r[1:]))
    if kind == "planted":
        r[1:] = r[1:] + strength * sigma * d[:-1]
    close = close0[0] * np.exp(np.cumsum(r))
    open_ = np.concatenate(([close[0]], close[:-1]))
    o0, h0, l0 = (base[c_].to_numpy().astype(np.float64) for c_ in ("open", "high", "low"))
    up = np.log(h0 / np.maximum(o0, close0))
    dn = np.log(np.minimum(o0, close0) / l0)
    high = np.maximum(open_, close) * np.exp(up)
    low = np.minimum(open_, close) * np.exp(-dn)
    vol = base["volume"].to_numpy().astype(np.float64)
    taker_buy = vol * (1.0 + imb) / 2.0
    bars = base.with_columns(
        pl.Series("open", open_), pl.Series("high", high), pl.Series("low", low), pl.Series("close", close),
        pl.Series("taker_buy_volume", taker_buy), pl.Series("quote_volume", vol * close),
        pl.Series("taker_buy_quote_volume", taker_buy * close)).select(base.columns)
    ideal = np.sign(d[window - 1:-1]) * r[window:]
    return bars, {"gross_sharpe": float(ideal.mean() / ideal.std()), "buy_and_hold": float(r[1:].sum())}


def reads_slow_taker(expression: str) -> bool:
    """True when an expression reads the taker-buy imbalance through a window of >= 60 bars (``ts_mean``,
    ``ema``, ``ts_zscore``, ``ts_rank`` or ``ts_min``/``ts_max`` of taker_imb or taker_imb_20 over 60 or 240)."""
    import re

    return re.search(r"(ts_mean|ema|ts_zscore|ts_rank|ts_min|ts_max|ts_std)\(taker_imb(_20)?, (60|240)\)",
                     expression) is not None


def run_one(kind: str, seed: int, pop: int, gens: int, smooth: bool, out_dir: Path, strength: float,
            days: int, window: int) -> dict:
    from forge.evolution.run import evolve
    from forge.core.runconfig import load_run_config, with_overrides

    bars, truth = slow_driver_bars(seed, strength, days, window, kind)
    cfg = load_run_config(REPO / "configs" / "default.toml")
    cfg = with_overrides(cfg, "evolve", population=pop, generations=gens, seed=seed, jobs=1,
                         output_dir=str(out_dir), checkpoint=False)
    cfg = with_overrides(cfg, "coevolution", enabled=False)
    if not smooth:
        cfg = with_overrides(cfg, "causal", smooth_windows=())
    t0 = time.perf_counter()
    res = evolve(cfg, bars=bars, run_dir=out_dir / f"{kind}-{seed}-{'smooth' if smooth else 'raw'}")
    secs = time.perf_counter() - t0
    causal = json.loads((res.run_dir / "causal.json").read_text())
    top = res.hall_of_fame[0]
    oos, bh = top["out_of_sample"], top["out_of_sample_buy_and_hold"]
    return {"kind": kind, "seed": seed, "smooth": smooth, "seconds": round(secs, 1), "truth": truth,
            "kept": causal["kept"], "reasons": {k: v for k, v in causal["reasons"].items()
                                                 if k.startswith("taker") or not v.startswith("dropped")},
            "smoothed": causal.get("smoothed"),
            "causal_seconds": causal["seconds"],
            "champion": top["expression"], "fitness": top["fitness"],
            "reads_slow_taker": reads_slow_taker(top["expression"]),
            "oos": {k: oos.get(k) for k in ("total_return", "sharpe", "n_trades", "exposure", "turnover")},
            "oos_buy_and_hold": {k: bh.get(k) for k in ("total_return", "sharpe")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pop", type=int, default=60)
    ap.add_argument("--gens", type=int, default=4)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--window", type=int, default=180)
    ap.add_argument("--strength", type=float, default=0.2)
    ap.add_argument("--no-smooth", action="store_true")
    ap.add_argument("--kinds", nargs="+", default=["planted", "null"])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "forge_unnamed_driver.json")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for kind in a.kinds:
            for s in a.seeds:
                row = run_one(kind, s, a.pop, a.gens, not a.no_smooth, Path(d), a.strength, a.days, a.window)
                print(json.dumps(row), flush=True)
                rows.append(row)
    a.out.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                                 "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
