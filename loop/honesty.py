"""The gauntlet's own accuracy: false passes on null markets, power on planted after-cost edges, and the
calibration of the stages' p-values (``benchmarks/gauntlet_honesty.py`` runs it at scale; a test runs it
small).

Markets: ``null``, ``drift`` (holding the market is beta, not skill, and must not pass) and ``planted``
(a smoothed sign rule on the taker imbalance trades it with low turnover), built by
:mod:`forge.data.synthetic`.

Planted strength is reported **net of the configured costs**: the per-bar Sharpe, after the run's taker
fee and slippage, of the best oracle rule ``pos_sign(ts_mean(taker_imb, w))`` (w in the GP's windows) on a
long market of that strength (``net_sharpe``); ``strength_for_net_sharpe`` inverts it by bisection.

Gauntlet power is measured apart from search (``oracle_run``: the oracle genome validated with no
evolution, its run directory holding that one trial) and end to end (``run_one``: ``forge evolve`` with a
given search size, then ``gauntlet validate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from forge.backtest import BacktestConfig, run_backtest
from forge.data.gaps import bars_since_gap
from forge.data.synthetic import (DRIFT_TOTAL, LATENT_PHI, LEAK, LEAK_NOISE, MARKETS, NULL_MARKETS,  # noqa: F401
                                  synthetic_bars)
from forge.gp import Genome
from forge.gp.primitives import WINDOWS
from forge.strategy import genome_positions, strategy_features

__all__ = ["synthetic_bars", "oracle_genome", "net_sharpe", "strength_for_net_sharpe", "oracle_run",
           "HonestyRun", "run_one", "summarize", "run_study", "MARKETS"]

def oracle_genome(window: int = 60) -> Genome:
    """The oracle rule on the planted column: ``pos_sign(ts_mean(taker_imb, window))``."""
    return Genome.from_tokens(["pos_sign", "ts_mean", "feature:taker_imb", f"window:{window}"], [])


def _net_sharpes(bars: pl.DataFrame, costs: BacktestConfig, rows: tuple[int, int] | None = None) -> dict[int, float]:
    from gauntlet.stats import sharpe_per_bar

    fm = strategy_features(bars, ("taker_imb",), None)
    bsg = bars_since_gap(bars["open_time"].to_numpy())
    a, b = rows or (0, bars.height)
    o = bars["open"].to_numpy()[a:b].astype(np.float64)
    c = bars["close"].to_numpy()[a:b].astype(np.float64)
    t = bars["open_time"].to_numpy()[a:b].astype(np.int64)
    out = {}
    for w in WINDOWS:
        pos = genome_positions(oracle_genome(w), fm, bsg)[a:b]
        out[w] = sharpe_per_bar(run_backtest(o, c, t, pos, costs).returns)
    return out


def net_sharpe(strength: float, costs: BacktestConfig, *, days: int = 120, seeds: tuple[int, ...] = (7, 8)) -> tuple[float, int]:
    """Per-bar Sharpe after costs of the best oracle rule at ``strength`` (mean over ``seeds`` markets of
    ``days`` days). returns: (net Sharpe, best window)."""
    per_w: dict[int, list[float]] = {}
    for s in seeds:
        bars, _ = synthetic_bars(s, strength, days)
        for w, v in _net_sharpes(bars, costs).items():
            per_w.setdefault(w, []).append(v)
    best = max(per_w, key=lambda w: float(np.mean(per_w[w])))
    return float(np.mean(per_w[best])), best


def bisect_strength(net: Callable[[float], tuple[float, int]], target: float, lo: float, hi: float,
                    iters: int) -> tuple[float, int]:
    """Bisection on [lo, hi] for the smallest strength (to 2**-iters of the range) whose ``net(strength)`` =
    (net per-bar Sharpe, oracle window) reaches ``target``.  returns (strength, window).  raises ValueError
    when ``hi`` is not strong enough."""
    if net(hi)[0] < target:
        raise ValueError(f"strength {hi} nets less than {target}; raise hi")
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if net(mid)[0] < target:
            lo = mid
        else:
            hi = mid
    return hi, net(hi)[1]


def strength_for_net_sharpe(target: float, costs: BacktestConfig, *, lo: float = 0.0, hi: float = 1.0,
                            iters: int = 14, **kw: Any) -> tuple[float, int]:
    """Bisection for the strength whose best oracle rule nets ``target`` per-bar Sharpe after ``costs``.
    returns: (strength, best window). raises ValueError when ``hi`` is not strong enough."""
    return bisect_strength(lambda s: net_sharpe(s, costs, **kw), target, lo, hi, iters)


def _evolve_config(seed: int, work: Path, population: int, generations: int, config: Path | None,
                  coevolution: bool, jobs: int | None = None):
    from forge.core.runconfig import load_run_config, with_overrides

    cfg = load_run_config(config)
    cfg = with_overrides(cfg, "evolve", seed=seed, population=population, generations=generations,
                         output_dir=str(work))
    if jobs is not None:  # fitness workers only: results do not depend on it
        cfg = with_overrides(cfg, "evolve", jobs=jobs)
    if not coevolution:
        cfg = with_overrides(cfg, "coevolution", enabled=False)
    return cfg


def oracle_run(bars: pl.DataFrame, genome: Genome, run_dir: Path, cfg: Any, in_sample_fraction: float,
               costs: dict[str, Any] | None = None) -> Path:
    """Write a run directory (``forge.core.rundir``) whose hall of fame and trials are one hand-written genome
    (no search), so the gauntlet validates it exactly as it validates ``forge evolve`` output.  cfg: the run
    config as the manifest records it (resolve its costs first: the gauntlet reads fees from it); costs: the
    manifest's cost record (``resolve_costs``' second value, with the fill model under "execution").
    returns run_dir."""
    from forge.core import rundir
    from forge.data.split import holdout_split
    from forge.core.runconfig import config_to_dict

    run_dir.mkdir(parents=True, exist_ok=True)
    split = holdout_split(bars["open_time"].to_numpy(), in_sample_fraction)
    empty: dict[str, Any] = {}
    rundir.write_manifest(run_dir, rundir.Manifest(
        run_id=run_dir.name, created_utc=datetime.now(timezone.utc).isoformat(), seed=0,
        config=config_to_dict(cfg), config_source="loop.honesty.oracle_run",
        data={"coverage": None, "n_bars": bars.height, "symbol": None}, symbols=None, symbol_aggregate=None,
        split=split.to_dict(), features=list(genome.features), causal_filter=None, coevolution=None,
        costs=costs, pset_version=genome.pset_version, candidates_evaluated=1, generations_run=0, resumed=False,
        seconds=0.0,
        packages={}, platform={}, files={"hall_of_fame": rundir.FILES.hall_of_fame,
                                         "evaluated": rundir.FILES.evaluated}))
    rundir.write_hall_of_fame(run_dir, rundir.HallOfFame(run_id=run_dir.name, members=(rundir.HallOfFameMember(
        rank=0, fitness=0.0, expression=genome.expression(), size=len(genome.tokens), genome=genome.to_dict(),
        in_sample=empty, out_of_sample=empty, out_of_sample_buy_and_hold=empty),)))
    rundir.append_evaluated(run_dir, [rundir.EvaluatedRecord(genome.sha256, genome, 0.0, empty)])
    return run_dir


@dataclass
class HonestyRun:
    """One validated candidate set on a synthetic market: mode "oracle" (no search) or "evolve"."""

    mode: str
    kind: str
    seed: int
    strength: float
    target_net_sharpe: float | None
    realised_net_sharpe: float | None
    champion_survived: bool
    champion_uses_planted: bool
    any_survived: bool
    stage_p: dict[str, float | None]
    stage_passed: dict[str, bool]
    champion_expression: str
    beta: float | None = None
    champion_edge_kind: str | None = None  # gauntlet.stages.edge_kind label (None in rows written before it)
    population: int | None = None  # the search budget of an "evolve" run (None: oracle, or rows written before it)
    generations: int | None = None
    days: int | None = None  # market length (None: the sample's 14 days, or rows written before it)
    seconds: float | None = None  # wall time of the run (evolve + validate)
    taker_fee_bps: float | None = None  # the fee the run's [costs] preset applied (None: rows written before it)
    cost_preset: str | None = None  # that preset (spot / futures / manual)
    execution_mode: str | None = None  # [execution] mode the run was scored with (None: rows before it = taker)

    @property
    def budget(self) -> str:
        """"pop P x G gens, D d" for an evolve run ("oracle" for no search; "unrecorded" for older rows)."""
        if self.mode == "oracle":
            return "oracle"
        if self.population is None:
            return "unrecorded"
        return f"pop {self.population} x {self.generations} gens, {self.days or 14} d"

    @property
    def champion_published(self) -> bool:
        """What ``gauntlet validate`` publishes by default: a surviving champion labelled directional (rows
        written before the label count their survival)."""
        return self.champion_survived and self.champion_edge_kind in (None, "directional")

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _record(mode: str, kind: str, seed: int, strength: float, target: float | None, rep: Any) -> HonestyRun:
    champ = rep.verdicts[0]
    st = champ["stages"]
    return HonestyRun(
        mode=mode, kind=kind, seed=seed, strength=strength, target_net_sharpe=target,
        realised_net_sharpe=st["psr"].details.get("sharpe"),
        champion_survived=bool(champ["survived"]),
        champion_uses_planted=any(f.startswith("taker_imb") for f in champ["features"]),
        any_survived=any(v["survived"] for v in rep.verdicts),
        stage_p={n: s.p_value for n, s in st.items() if s.p_value is not None}
        | {"psr_raw": st["psr"].details.get("p_raw"), "dsr_1_minus": (1.0 - st["dsr"].statistic)
           if st["dsr"].statistic is not None else None,
           "psr_gross_hedged": st["psr"].details.get("p_gross")},
        stage_passed={n: bool(s.passed) for n, s in st.items()},
        champion_expression=champ["expression"], beta=st["psr"].details.get("beta"),
        champion_edge_kind=champ.get("edge_kind"))


def run_oracle(seed: int, strength: float, work: Path, *, days: int | None = 20, target: float | None = None,
               window: int = 240, kind: str | None = None, gauntlet_overrides: dict[str, Any] | None = None,
               config: Path | None = None) -> HonestyRun:
    """Validate the oracle genome (no evolution) on a fresh market of ``days`` days."""
    import dataclasses

    from forge.core.runconfig import load_run_config
    from gauntlet.config import GauntletConfig
    from gauntlet.validate import validate_run

    from forge.backtest.fills import FillModel
    from forge.core.runconfig import resolve_costs

    kind = kind or ("planted" if strength > 0 else "null")
    bars, _ = synthetic_bars(seed, strength, days, kind=kind)
    cfg, costs = resolve_costs(load_run_config(config), ["unknown"])  # the config's [costs] preset, as evolve does
    costs = {**costs, "execution": FillModel.for_run(cfg.execution, costs, costs["taker_fee_bps"]).describe()}
    run_dir = oracle_run(bars, oracle_genome(window), work / f"oracle-{kind}-{strength:g}-{seed}", cfg,
                         cfg.evolve.in_sample_fraction, costs)
    gcfg = dataclasses.replace(GauntletConfig(seed=seed), **(gauntlet_overrides or {})).validate()
    rep = validate_run(run_dir, gcfg, publish_dir=None, bars=bars)
    r = _record("oracle", kind, seed, strength, target, rep)
    r.taker_fee_bps, r.cost_preset, r.execution_mode = costs["taker_fee_bps"], costs["preset"], cfg.execution.mode
    return r


def run_one(seed: int, strength: float, work: Path, *, population: int = 24, generations: int = 3,
            days: int | None = None, kind: str | None = None, target: float | None = None,
            config: Path | None = None, coevolution: bool = False, jobs: int | None = None,
            gauntlet_overrides: dict[str, Any] | None = None) -> HonestyRun:
    """Evolve (``config``, default the packaged default, at the given search size) on a synthetic market and
    validate the hall of fame."""
    import dataclasses

    from forge.evolution.run import evolve
    from gauntlet.config import GauntletConfig
    from gauntlet.validate import validate_run

    import time

    t0 = time.perf_counter()
    kind = kind or ("planted" if strength > 0 else "null")
    bars, _ = synthetic_bars(seed, strength, days, kind=kind)
    cfg = _evolve_config(seed, work, population, generations, config, coevolution, jobs)
    run_dir = work / f"evolve-{kind}-{strength:g}-{seed}"
    # each study market is its own data: a ledger of its own (in-memory bars share one clock and one key)
    from forge.core.runconfig import with_overrides

    cfg = with_overrides(cfg, "evolve", trial_ledger=str(work / f"{run_dir.name}.ledger.jsonl"))
    evolve(cfg, bars=bars, run_dir=run_dir)
    gcfg = dataclasses.replace(GauntletConfig(seed=seed), **(gauntlet_overrides or {})).validate()
    rep = validate_run(run_dir, gcfg, publish_dir=None, bars=bars)
    return _stamp(_record("evolve", kind, seed, strength, target, rep), run_dir, population, generations, days, t0)


def _stamp(r: HonestyRun, run_dir: Path, population: int, generations: int, days: int | None,
           t0: float) -> HonestyRun:
    """An evolve row's budget, wall time since ``t0`` (``time.perf_counter``) and the run manifest's cost preset."""
    import time

    from forge.core.rundir import read_manifest

    r.population, r.generations, r.days = population, generations, days
    r.seconds = round(time.perf_counter() - t0, 1)
    costs = read_manifest(run_dir).costs or {}
    r.taker_fee_bps, r.cost_preset = costs.get("taker_fee_bps"), costs.get("preset")
    r.execution_mode = (costs.get("execution") or {}).get("mode", "taker")
    return r


def _cp(k: int, n: int) -> list[float]:
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def power_ceiling(net_sharpe_per_bar: float, n_obs: int, alpha: float = 0.05) -> float:
    """Power of an ideal one-sided level-alpha z-test of a per-bar Sharpe on n_obs i.i.d. bars."""
    from scipy import stats

    return float(stats.norm.sf(stats.norm.isf(alpha) - net_sharpe_per_bar * math.sqrt(n_obs)))


def summarize(runs: list[HonestyRun], n_oos: int | None = None) -> dict[str, Any]:
    """False passes with Clopper-Pearson 95 % intervals (all null runs, per null kind of
    ``forge.data.synthetic.NULL_MARKETS``, per search budget and per (cost preset, ``[execution] mode``), each
    with its champions' stage pass rates), power per (mode, target, cost preset, execution mode) beside its ceiling -- power counts champions that are published (survived and
    labelled directional, :attr:`HonestyRun.champion_published`) and use the planted column; a survivor
    labelled risk timing is not published by default, so it is counted in ``passed_using_planted`` only --
    and KS uniformity of the null p-values of every stage."""
    from scipy import stats

    out: dict[str, Any] = {}

    def preset(r: HonestyRun) -> str:
        return r.cost_preset or "spot"  # rows written before the field ran the spot preset

    def fills(r: HonestyRun) -> str:
        return r.execution_mode or "taker"  # rows written before the field scored taker fills
    null = [r for r in runs if r.kind in NULL_MARKETS]
    if null:
        fd: dict[str, Any] = {}
        groups = ([("all", null)] + [(k, [r for r in null if r.kind == k]) for k in NULL_MARKETS]
                  + [(f"budget: {b}", [r for r in null if r.budget == b]) for b in sorted({r.budget for r in null})]
                  + [(f"fills: {pre} {e}", [r for r in null if fills(r) == e and preset(r) == pre])
                     for pre, e in sorted({(preset(r), fills(r)) for r in null})])
        for group, rs in groups:
            if rs:
                k = sum(r.champion_survived for r in rs)
                k_any = sum(r.any_survived for r in rs)
                k_pub = sum(r.champion_published for r in rs)
                fd[group] = {"runs": len(rs), "champions_passed": k, "rate": k / len(rs),
                             "clopper_pearson_95": _cp(k, len(rs)), "runs_with_any_survivor": k_any,
                             "champions_published": k_pub, "published_rate": k_pub / len(rs),
                             "published_clopper_pearson_95": _cp(k_pub, len(rs)),
                             "edge_kinds": {lab: sum(r.champion_edge_kind == lab for r in rs if r.champion_survived)
                                            for lab in ("directional", "risk timing", "no alpha")},
                             "stage_pass_rate": {s: float(np.mean([r.stage_passed.get(s, False) for r in rs]))
                                                 for s in rs[0].stage_passed}}
                secs = [r.seconds for r in rs if r.seconds is not None]
                if secs:
                    fd[group]["seconds_median"] = float(np.median(secs))
        out["false_pass"] = fd
        cal = {}
        for stage in sorted({s for r in null for s in r.stage_p}):
            ps = [r.stage_p[stage] for r in null if r.stage_p.get(stage) is not None]
            if len(ps) >= 5:
                ks = stats.kstest(ps, "uniform")
                cal[stage] = {"n": len(ps), "mean_p": float(np.mean(ps)), "ks_stat": float(ks.statistic),
                              "ks_p": float(ks.pvalue), "rejects_at_5pct": float(np.mean(np.array(ps) <= 0.05))}
        out["calibration"] = cal
    power = {}
    for mode in ("oracle", "evolve"):
        for tgt, pre, ex in sorted({(r.target_net_sharpe, preset(r), fills(r)) for r in runs if r.kind == "planted"
                                    and r.mode == mode and r.target_net_sharpe is not None}):
            rs = [r for r in runs if r.kind == "planted" and r.mode == mode and r.target_net_sharpe == tgt
                  and preset(r) == pre and fills(r) == ex]
            k_pass = sum(r.champion_survived and r.champion_uses_planted for r in rs)
            k = sum(r.champion_published and r.champion_uses_planted for r in rs)  # what validate publishes
            row = {"runs": len(rs), "strength": rs[0].strength, "cost_preset": pre, "execution_mode": ex,
                   "passed_using_planted": k_pass,
                   "published_using_planted": k, "power": k / len(rs), "clopper_pearson_95": _cp(k, len(rs)),
                   "realised_net_sharpe_mean": float(np.mean([r.realised_net_sharpe or 0.0 for r in rs])),
                   "stage_pass_rate": {s: float(np.mean([r.stage_passed[s] for r in rs])) for s in rs[0].stage_passed}}
            if n_oos:
                row["ceiling"] = power_ceiling(tgt, n_oos)
            power[f"{mode}@{tgt:g}" + ("" if pre == "spot" else f" {pre}") + ("" if ex == "taker" else f" {ex}")] = row
    out["power"] = power
    return out


def run_study(null_seeds: int, planted_seeds: int, targets: dict[float, tuple[float, int]], work: Path, *,
              modes: tuple[str, ...] = ("oracle",), days: int | None = 20, kinds: tuple[str, ...] = ("null", "drift"),
              progress: Callable[[str], None] | None = None, sink: Callable[[HonestyRun], None] | None = None,
              seed_offset: int = 0, **evolve_kw: Any) -> list[HonestyRun]:
    """Null runs (``null_seeds`` per kind and mode) and planted runs (``planted_seeds`` per target and mode).

    targets: net per-bar Sharpe -> (strength, oracle window) (from ``strength_for_net_sharpe``); days: market
    length (None = the sample's 14 days). sink: called with each run
    as it finishes (the benchmark appends it to a JSON-lines file). returns every run."""
    say = progress or (lambda _m: None)
    runs: list[HonestyRun] = []

    def one(mode: str, seed: int, strength: float, kind: str, target: float | None, window: int = 240) -> None:
        if mode == "oracle":
            # the study's config (its [costs] preset and [execution] mode) applies to oracle runs too
            r = run_oracle(seed, strength, work, days=days, target=target, kind=kind, window=window,
                           config=evolve_kw.get("config"))
        else:
            r = run_one(seed, strength, work, days=days, target=target, kind=kind, **evolve_kw)
        runs.append(r)
        if sink:
            sink(r)
        say(f"{mode} {kind} target={target} seed {seed}: {'PASSED' if r.champion_survived else 'rejected'} "
            f"[{', '.join(n for n, ok in r.stage_passed.items() if not ok)}] {r.champion_expression}")

    for mode in modes:
        for seed in range(seed_offset, seed_offset + null_seeds):  # kinds inner: a cut-short study covers each
            for kind in kinds:
                one(mode, 1000 + seed, 0.0, kind, None)
        for tgt, (strength, window) in targets.items():
            for seed in range(seed_offset, seed_offset + planted_seeds):
                one(mode, 2000 + seed, strength, "planted", tgt, window)
    return runs
