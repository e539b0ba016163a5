"""The gauntlet's own accuracy: false discovery rate on null markets, power on planted signals,
and calibration of the stages' p-values (used by ``benchmarks/gauntlet_honesty.py`` and a test).

Null market: a fat-tailed random walk with volatility clustering (GARCH(1,1)
with Student-t(4) innovations, unconditional 1-minute volatility of the real
sample) on the embedded sample's timestamps and real volume profile; the
taker-buy share is drawn independently of prices.

Planted market: the same, plus a weak lagged predictive feature: the bar's
taker-buy imbalance s_t = 2 * taker_buy / volume - 1 (registry feature
``taker_imb``) shifts the next bar's return by ``strength * sigma_t * s_t``.
The taker imbalance is a persistent AR(1), so the planted edge can be traded with low turnover;
the per-bar Sharpe of trading sign(s_t) before costs is reported as the planted strength.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from forge.data.loader import load_sample

__all__ = ["synthetic_bars", "HonestyRun", "run_one", "summarize"]


def synthetic_bars(seed: int, strength: float = 0.0, days: int | None = None) -> tuple[pl.DataFrame, float]:
    """Bars on the embedded sample's clock and volumes with simulated prices.

    days: length of the market; None = the sample's 14 days, more tiles the sample's volume profile
    on a contiguous clock from its first bar (a longer out-of-sample tail gives the tests more power).

    strength: coefficient of the planted taker-imbalance effect on the next bar's return, in units of
    that bar's volatility (0 = null market). returns: (bar frame, per-bar Sharpe of sign(s_t) trading
    before costs, measured on the generated path).
    """
    sample, _ = load_sample()
    if days is not None and days * 1440 != sample.height:
        n_new = days * 1440
        reps = -(-n_new // sample.height)
        t0 = int(sample["open_time"][0])
        idx = np.arange(n_new)
        sample = pl.concat([sample] * reps).head(n_new).with_columns(
            pl.Series("open_time", t0 + idx * 60_000, dtype=sample.schema["open_time"]),
            pl.Series("close_time", t0 + idx * 60_000 + 59_999, dtype=sample.schema["close_time"]))
    rng = np.random.default_rng(seed)
    n = sample.height
    vol = sample["volume"].to_numpy().astype(np.float64)
    # taker-buy imbalance: a persistent AR(1) (phi 0.98, sd 0.35) independent of prices, so a planted
    # effect can be traded with low turnover (a per-bar-flipping signal could never pay the taker fee)
    e = rng.normal(0.0, 0.35 * math.sqrt(1 - 0.98 ** 2), n)
    s = np.empty(n)
    s[0] = rng.normal(0.0, 0.35)
    for t in range(1, n):
        s[t] = 0.98 * s[t - 1] + e[t]
    s = np.clip(s, -0.98, 0.98)
    r0 = np.diff(np.log(sample["close"].to_numpy()))
    sig_bar = float(np.std(r0))
    omega, alpha, beta = sig_bar ** 2 * 0.05, 0.10, 0.85
    z = rng.standard_t(4, n) / math.sqrt(2.0)  # unit variance
    h = np.empty(n)
    r = np.empty(n)
    h[0] = sig_bar ** 2
    r[0] = 0.0
    for t in range(1, n):
        h[t] = omega + alpha * r[t - 1] ** 2 + beta * h[t - 1]
        sd = math.sqrt(h[t])
        r[t] = sd * z[t] + strength * sd * s[t - 1]
    close = 60000.0 * np.exp(np.cumsum(r))
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    wig = np.abs(rng.normal(0, 0.3, (2, n))) * np.sqrt(h)
    high = np.maximum(open_, close) * np.exp(wig[0])
    low = np.minimum(open_, close) * np.exp(-wig[1])
    taker_buy = vol * (1.0 + s) / 2.0
    bars = sample.with_columns(
        pl.Series("open", open_), pl.Series("high", high), pl.Series("low", low), pl.Series("close", close),
        pl.Series("taker_buy_volume", taker_buy),
        pl.Series("quote_volume", vol * close), pl.Series("taker_buy_quote_volume", taker_buy * close),
    ).select(sample.columns)
    ideal = np.sign(s[:-1]) * r[1:]
    return bars, float(ideal.mean() / ideal.std())


@dataclass
class HonestyRun:
    """One evolve -> validate round trip on a synthetic market."""

    kind: str
    seed: int
    strength: float
    planted_sharpe: float
    champion_survived: bool
    champion_uses_planted: bool
    any_survived: bool
    stage_p: dict[str, float | None]
    champion_expression: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def run_one(seed: int, strength: float, work: Path, *, population: int = 24, generations: int = 3,
            days: int | None = None, gauntlet_overrides: dict[str, Any] | None = None) -> HonestyRun:
    """Evolve (smoke config, given size) on a synthetic market and validate the hall of fame."""
    import dataclasses

    from forge.evolve import evolve
    from forge.settings import load_run_config, with_overrides
    from gauntlet.config import GauntletConfig
    from gauntlet.validate import validate_run

    repo = Path(__file__).resolve().parents[1]
    bars, planted_sharpe = synthetic_bars(seed, strength, days)
    cfg = with_overrides(load_run_config(repo / "configs" / "smoke.toml"), "evolve", seed=seed,
                         population=population, generations=generations, output_dir=str(work))
    run_dir = work / f"{'null' if strength == 0 else 'planted'}-{strength:g}-{seed}"
    evolve(cfg, bars=bars, run_dir=run_dir)
    gcfg = dataclasses.replace(GauntletConfig(seed=seed), **(gauntlet_overrides or {})).validate()
    rep = validate_run(run_dir, gcfg, publish_dir=None, bars=bars)
    champ = rep.verdicts[0]
    st = champ["stages"]
    return HonestyRun(
        kind="null" if strength == 0 else "planted", seed=seed, strength=strength, planted_sharpe=planted_sharpe,
        champion_survived=bool(champ["survived"]),
        champion_uses_planted="taker_imb" in champ["features"] or "taker_imb_20" in champ["features"],
        any_survived=any(v["survived"] for v in rep.verdicts),
        stage_p={"permutation": st["permutation"].p_value, "pcmci": st["pcmci"].p_value,
                 "dowhy": st["dowhy"].p_value, "dsr_1_minus_psr0": 1.0 - st["dsr"].details.get("psr0", 0.0)
                 if st["dsr"].details else None},
        champion_expression=champ["expression"])


def summarize(runs: list[HonestyRun]) -> dict[str, Any]:
    """FDR with a Clopper-Pearson 95% interval, power per strength, KS uniformity of null p-values."""
    from scipy import stats

    out: dict[str, Any] = {}
    null = [r for r in runs if r.kind == "null"]
    if null:
        k = sum(r.champion_survived for r in null)
        ci = stats.binomtest(k, len(null)).proportion_ci(0.95, method="exact")
        out["false_discovery"] = {"runs": len(null), "champions_passed": k, "rate": k / len(null),
                                  "clopper_pearson_95": [ci.low, ci.high], "goal": "<= 0.05"}
        cal = {}
        for stage in null[0].stage_p:
            ps = [r.stage_p[stage] for r in null if r.stage_p[stage] is not None]
            if len(ps) >= 3:
                ks = stats.kstest(ps, "uniform")
                cal[stage] = {"n": len(ps), "mean_p": float(np.mean(ps)), "ks_stat": float(ks.statistic),
                              "ks_p": float(ks.pvalue)}
        out["calibration"] = cal
    power = {}
    for s in sorted({r.strength for r in runs if r.kind == "planted"}):
        rs = [r for r in runs if r.kind == "planted" and r.strength == s]
        k = sum(r.champion_survived and r.champion_uses_planted for r in rs)
        ci = stats.binomtest(k, len(rs)).proportion_ci(0.95, method="exact")
        power[f"{s:g}"] = {"runs": len(rs), "planted_sharpe_per_bar": float(np.mean([r.planted_sharpe for r in rs])),
                           "passed_using_planted": k, "power": k / len(rs), "clopper_pearson_95": [ci.low, ci.high]}
    out["power"] = power
    return out


def run_study(null_seeds: int, planted_seeds: int, strengths: tuple[float, ...], work: Path,
              progress: Callable[[str], None] | None = None, **kw: Any) -> tuple[list[HonestyRun], dict[str, Any]]:
    """Run the whole study; returns (runs, summary)."""
    say = progress or (lambda _m: None)
    runs = []
    for seed in range(null_seeds):
        runs.append(run_one(1000 + seed, 0.0, work, **kw))
        say(f"null seed {seed}: champion {'PASSED' if runs[-1].champion_survived else 'rejected'}")
    for s in strengths:
        for seed in range(planted_seeds):
            runs.append(run_one(2000 + seed, s, work, **kw))
            say(f"planted {s:g} seed {seed}: champion {'PASSED' if runs[-1].champion_survived else 'rejected'}"
                f" uses planted={runs[-1].champion_uses_planted}")
    return runs, summarize(runs)
