"""Throughput benchmark of the Crucible runtime's replay (``forge bench --full`` row and
``benchmarks/crucible_replay.py``) -- a speed measurement, not the bench of slots (that is :mod:`crucible.slots`).

Both paths run the same runtime, bench and bars; they differ only in what the
replay venue allows:

* **fast path** (the replay default): chunked signal pipeline
  (``[replay] prefetch_bars``), journal ``synchronous=NORMAL`` with group
  commit (commit points still before every send, kill and swap);
* **baseline** (the exchange code path): per-bar rolling-window signals
  (``prefetch_bars = 0``) and ``synchronous=FULL``, every bar committed.

Throughput is bars of the merged timeline per wall second of ``Runtime.run``
(restore and reconcile included), best of ``repeats`` runs after a warm-up
run that loads the numba caches.  One process, one core.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from crucible.config import CrucibleConfig, load_crucible_config
from crucible.runtime import run_live

__all__ = ["replay_throughput"]


def _variant(cfg: CrucibleConfig, *, prefetch: int, sync: str, data: tuple[str, ...] | None) -> CrucibleConfig:
    replay = dataclasses.replace(cfg.replay, prefetch_bars=prefetch, speed=0.0,
                                 data=cfg.replay.data if data is None else data)
    return dataclasses.replace(cfg, replay=replay, general=dataclasses.replace(cfg.general, journal_sync=sync))


def _best(cfg: CrucibleConfig, bars: int, repeats: int, work: Path) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    for k in range(repeats):
        s = run_live(cfg, venue="replay", max_bars=bars, journal_path=work / f"j{k}.sqlite", fresh=True)
        if best is None or s["bars_per_s"] > best["bars_per_s"]:
            best = s
    assert best is not None
    return best


def replay_throughput(config: str | Path | None = None, *, data: list[str] | None = None, bars: int = 10_000,
                      baseline_bars: int = 1_000, repeats: int = 3) -> dict[str, Any]:
    """Replay bars/s of the configured bench, fast path vs the exchange code path, same bars, one run.

    config: crucible TOML (default ``configs/crucible.toml``: six BTCUSDT slots of built-in genomes);
    data: ``["SYMBOL=path", ...]`` replay data (default: the config's, i.e. the embedded sample);
    bars: bars replayed by the fast path; baseline_bars: by the baseline (it is ~50x slower; the rate is
    per bar); repeats: runs per path, the best is kept.
    returns {"slots", "fast": {bars, bars_per_s, orders, fills, orders_per_bar, seconds, reweights, kills,
    swaps, total_equity}, "baseline": {...}, "ratio", "month_seconds" (43,200 bars at the fast rate)}.
    raises ConfigError for a bad config or data.
    """
    cfg = load_crucible_config(config)
    fast_cfg = _variant(cfg, prefetch=cfg.replay.prefetch_bars or 4096, sync="NORMAL",
                        data=None if data is None else tuple(data))
    base_cfg = _variant(cfg, prefetch=0, sync="FULL", data=None if data is None else tuple(data))
    with tempfile.TemporaryDirectory(prefix="crucible-bench-") as tmp:
        work = Path(tmp)
        run_live(fast_cfg, venue="replay", max_bars=50, journal_path=work / "warm.sqlite", fresh=True)
        run_live(base_cfg, venue="replay", max_bars=50, journal_path=work / "warm.sqlite", fresh=True)
        fast = _best(fast_cfg, bars, repeats, work)
        base = _best(base_cfg, baseline_bars, repeats, work)

    def pick(s: dict[str, Any]) -> dict[str, Any]:
        return {"bars": s["bars"], "bars_per_s": s["bars_per_s"], "seconds": s["seconds"], "orders": s["orders"],
                "fills": s["fills"], "orders_per_bar": s["orders"] / max(s["bars"], 1), "reweights": s["reweights"],
                "kills": s["kills"], "swaps": s["swaps"], "total_equity": s["total_equity"],
                "final_equity": {x["slot"]: round(x["equity"], 2) for x in s["slots"]}}

    return {"slots": [f"{sc.id}={sc.genome}" for sc in cfg.slots], "data": list(fast_cfg.replay.data) or ["embedded sample"],
            "fast": pick(fast), "baseline": pick(base), "ratio": fast["bars_per_s"] / base["bars_per_s"],
            "month_seconds": 43_200 / fast["bars_per_s"]}
