"""Configuration of ``forge evolve``: one frozen dataclass per TOML table, validated before anything runs.

``configs/default.toml`` and ``configs/smoke.toml`` hold the shipped values; every key is optional (the
defaults below apply).  Tables: ``[evolve]`` (:class:`EvolveConfig`), ``[fitness]`` (:class:`FitnessConfig`),
``[backtest]`` (``forge.backtest.BacktestConfig``), ``[surrogate]`` (:class:`SurrogateConfig`), ``[causal]``
(:class:`CausalConfig`), ``[coevolution]`` (:class:`CoevolutionConfig`), ``[costs]`` (:class:`CostsConfig`, the
fee preset by market, applied to [backtest] by :func:`resolve_costs` once the data is known), ``[regimes]``
(:class:`RegimeConfig`, the predictive-regime terminals), ``[execution]`` (``forge.backtest.fills.ExecutionConfig``:
taker | kline-limit | policy fill model; evolution stays taker), ``[universe]`` (:class:`UniverseConfig`, a panel of
instruments on one clock), ``[l2]`` (:class:`L2Config`, recorded L2 books as terminals).  :func:`load_run_config` reads a
file through ``forge.core.config.load_config``; :func:`with_overrides` applies command-line flags and
re-validates.  Loading a config imports no simulator, model or causal library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.backtest import BacktestConfig
from forge.backtest.fills import ExecutionConfig
from forge.core.config import build_root, load_config, override, to_dict
from forge.core.errors import ConfigError

OBJECTIVES = ("sharpe", "excess", "timing", "alpha", "ttt_relative")
"""Values of ``[fitness] objective`` (see :class:`FitnessConfig`)."""

COST_PRESETS: dict[str, dict[str, float]] = {
    "spot": {"taker_fee_bps": 10.0, "maker_fee_bps": 10.0, "funding_interval_h": 0.0},
    "futures": {"taker_fee_bps": 5.0, "maker_fee_bps": 2.0, "funding_interval_h": 8.0},
}
"""Binance regular-tier (VIP 0) fees by market: spot 0.10 % maker and taker; USDⓈ-M perpetual futures 0.02 %
maker, 0.05 % taker, funding every 8 h (https://www.binance.com/en/fee/schedule,
https://www.binance.com/en/fee/futureFee).  The backtester fills market orders, so the taker fee is the one
charged; the maker fee is recorded for reference."""

__all__ = [
    "COST_PRESETS", "CausalConfig", "L2Config", "CoevolutionConfig", "CostsConfig", "EvolveConfig", "FitnessConfig", "OBJECTIVES",
    "PANEL_FEATURES", "RegimeConfig",
    "RunConfig", "SECTIONS", "SurrogateConfig", "UniverseConfig", "config_from_dict", "config_to_dict", "load_run_config",
    "resolve_costs", "with_overrides",
]


@dataclass(frozen=True)
class EvolveConfig:
    """``[evolve]``: the (mu + lambda) loop, data split and run directory.

    population: mu, individuals kept per generation.  offspring: lambda,
    children bred per generation (0 = same as population).  cxpb / mutpb:
    probability that a child comes from subtree crossover / mutation (the
    rest are reproductions); cxpb + mutpb <= 1.  in_sample_fraction: leading
    share of the bars evolution may see; the rest is the out-of-sample range,
    never touched by evolution.  checkpoint: write ``checkpoint.json`` every
    generation (``forge evolve --resume``).  seed_genomes: genome files
    seeding ``seed_fraction`` of the initial population (the seeds and
    mutated copies of them; DNA recycling).  subtree_cache_mb: memory bound of
    each worker's subtree cache (0 = off; results are identical either way).
    backend: "loky" (joblib processes on this machine, ``jobs`` workers) or
    "dask" (a Dask distributed cluster at ``scheduler``; the data segment is
    scattered to every worker once).  symbols: evolve across these symbols
    (files ``<SYMBOL>-1m-*`` under ``data``); each strategy's fitness is the
    mean or the worst (``symbol_aggregate``) over symbols.  synthesize: run ``forge synthesize`` inside the
    run on the first market's in-sample bars only (``configs/synthesize.toml`` settings, the run's seed), its
    library frozen in the run directory with its fitted range; synthesize_seconds: time budget (no new
    feature round starts after it; the rounds done are the library).  Off by default: its power on planted
    panels was not measured (README).
    trial_ledger: the append-only ledger of every
    run's trials per symbol and in-sample range (``forge.core.ledger``; "" = ``<run dir>/../../trial_ledger.jsonl``).
    allow_unknown_provenance: accept a seed genome with no record of its selection bars (``forge.core.provenance``:
    it counts as selected on every bar before its file's time) although that range overlaps the out-of-sample
    range; a seed *known* to be selected on out-of-sample bars is refused regardless.
    """

    seed: int = 0
    population: int = 200
    offspring: int = 0
    generations: int = 10
    cxpb: float = 0.5
    mutpb: float = 0.4
    tournament_size: int = 3
    hall_of_fame_size: int = 10
    init_min_depth: int = 2
    init_max_depth: int = 5
    max_depth: int = 8
    max_size: int = 40
    jobs: int = 1
    in_sample_fraction: float = 0.7
    data: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    feature_library: str = ""
    output_dir: str = "artifacts/runs"
    checkpoint: bool = True
    seed_genomes: tuple[str, ...] = ()
    seed_fraction: float = 0.25
    subtree_cache_mb: int = 512
    backend: str = "loky"
    scheduler: str = ""
    symbols: tuple[str, ...] = ()
    symbol_aggregate: str = "mean"
    synthesize: bool = False
    synthesize_seconds: float = 300.0
    trial_ledger: str = ""
    allow_unknown_provenance: bool = False

    def validate(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.population < 2:
            raise ConfigError(f"population must be >= 2, got {self.population}")
        if self.offspring < 0:
            raise ConfigError(f"offspring must be >= 0, got {self.offspring}")
        if self.generations < 0:
            raise ConfigError(f"generations must be >= 0, got {self.generations}")
        for name in ("cxpb", "mutpb"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        if self.cxpb + self.mutpb > 1.0 + 1e-12:
            raise ConfigError(f"cxpb + mutpb must be <= 1, got {self.cxpb + self.mutpb}")
        if self.tournament_size < 1:
            raise ConfigError(f"tournament_size must be >= 1, got {self.tournament_size}")
        if self.hall_of_fame_size < 1:
            raise ConfigError(f"hall_of_fame_size must be >= 1, got {self.hall_of_fame_size}")
        if not 1 <= self.init_min_depth <= self.init_max_depth <= self.max_depth:
            raise ConfigError(
                "need 1 <= init_min_depth <= init_max_depth <= max_depth, got "
                f"{self.init_min_depth}, {self.init_max_depth}, {self.max_depth}"
            )
        if self.max_size < 3:
            raise ConfigError(f"max_size must be >= 3, got {self.max_size}")
        if self.jobs < 1:
            raise ConfigError(f"jobs must be >= 1, got {self.jobs}")
        if self.symbol_aggregate not in ("mean", "worst"):
            raise ConfigError(f"symbol_aggregate must be 'mean' or 'worst', got {self.symbol_aggregate!r}")
        if self.backend not in ("loky", "dask"):
            raise ConfigError(f"backend must be 'loky' or 'dask', got {self.backend!r}")
        if self.backend == "dask" and not self.scheduler:
            raise ConfigError("backend 'dask' needs scheduler = 'tcp://HOST:PORT' (--scheduler)")
        if self.subtree_cache_mb < 0:
            raise ConfigError(f"subtree_cache_mb must be >= 0 (0 = off), got {self.subtree_cache_mb}")
        if not 0.0 <= self.seed_fraction <= 1.0:
            raise ConfigError(f"seed_fraction must be in [0, 1], got {self.seed_fraction}")
        if not 0.1 <= self.in_sample_fraction < 1.0:
            raise ConfigError(f"in_sample_fraction must be in [0.1, 1), got {self.in_sample_fraction}")
        if self.synthesize_seconds <= 0:
            raise ConfigError(f"synthesize_seconds must be > 0, got {self.synthesize_seconds}")
        if self.synthesize and self.feature_library:
            raise ConfigError("synthesize = true fits a feature library in the run; it cannot be combined with "
                              f"--features {self.feature_library} (a library fitted elsewhere)")

    @property
    def n_offspring(self) -> int:
        """lambda: children per generation."""
        return self.offspring or self.population


@dataclass(frozen=True)
class FitnessConfig:
    """``[fitness]``: the scalar in-sample fitness (higher is better), see ``forge.evolution.fitness``.

    fitness = w_sharpe * clip(S, +-sharpe_cap) + w_ttt * T - w_drawdown * max_drawdown - w_size * size / max_size

    S, the objective's score, from per-bar returns r of the strategy (after fees, slippage, funding) and m of
    the market (holding one unit of the same bars, gross), annualised with ``periods_per_year``:

    - ``sharpe``: Sharpe ratio of r (Sharpe 1994) -- absolute; holding the market in a rising market wins it;
    - ``excess``: information ratio of r - m, active return over buy-and-hold of the same bars (Grinold &
      Kahn, *Active Portfolio Management*, 2000); flat scores -Sharpe(m), so holding wins in a rising market;
    - ``timing``: Sharpe ratio of r - beta * m with beta = cov(r, m) / var(m) on the same bars, the return
      net of the position's market exposure (Treynor & Black 1973 appraisal ratio): a constant position
      scores 0 before costs and below flat after them.  Its denominator is the tracking error, so a near-copy
      of the market (long except on a few bars) has a tiny denominator and an extreme score either way,
      while every active rule paying fees sits at -sharpe_cap: measured on BTCUSDT (benchmarks/RESULTS.md,
      issue 17) that is why its champions were buy-and-hold clones;
    - ``alpha`` (the default): the two-factor appraisal ratio alpha / max(sd(e), resid_sd_floor * sd(m)) *
      sqrt(periods_per_year) of r ~ alpha + b_m m + b_v v + e (OLS on the same bars), v the
      volatility-managed market (Moreira & Muir 2017, J. of Finance 72(4): exposure proportional to 1 / an
      EWMA of past squared market returns, half-life ``forge.core.factors.HALF_LIFE_BARS``; Jensen 1968 alpha,
      Treynor & Black 1973 appraisal ratio).  Holding more when volatility is low is a known premium, not a
      prediction: it loads on v and earns no alpha.  The floor on the residual sd (a fraction of the market's
      sd) is what the ``timing`` objective lacked: a near-copy of the market (a 0.99-beta clone) has a residual
      sd near 0 and scores only its little alpha over ``resid_sd_floor`` market volatilities, never an
      extreme score; a constant position scores exactly its costs (below flat);
    - ``ttt_relative``: (TTT_bh - TTT) / n_bars, time-to-target of buy-and-hold minus the strategy's (never
      reached = n_bars), in [-1, 1]; the T term is then 0 (the objective already is the TTT).

    T: ``sharpe``: 1 - TTT / n_bars if the target multiple was reached, else 0 (absolute "velocity");
    ``excess``: (TTT_bh - TTT) / n_bars, relative to buy-and-hold's own TTT on the same bars; ``timing`` and
    ``alpha``: max(0, (TTT_c - TTT) / n_bars) with TTT_c the sooner of holding long and holding short, so only
    reaching the target before the best constant position counts (a constant position in either direction --
    a constant short in a falling market too -- or flat gets 0: the term rewards no market exposure).
    resid_sd_floor: the ``alpha`` objective's floor on the residual sd, as a fraction of the market's sd
    (in (0, 10]).
    periods: S is computed on this many contiguous in-sample sub-periods of equal length and combined by
    ``aggregate``: "mean_std" = mean - robust_lambda * std (population std over periods) or "min" = the
    worst period, so a rule that only worked in one regime loses; with ``periods = 1`` and ``sharpe`` the
    score is the whole segment's Sharpe (the original fitness).  A period with zero variance scores 0.
    A strategy with fewer than ``min_trades`` fills, ruined, or (objective ``sharpe``) with a non-finite
    whole-segment Sharpe gets ``floor``.
    """

    objective: str = "alpha"
    periods: int = 4
    aggregate: str = "mean_std"
    robust_lambda: float = 1.0
    w_sharpe: float = 1.0
    w_ttt: float = 1.0
    w_drawdown: float = 2.0
    w_size: float = 0.2
    sharpe_cap: float = 20.0
    min_trades: int = 10
    floor: float = -100.0
    resid_sd_floor: float = 0.5

    def validate(self) -> None:
        if not 0.0 < self.resid_sd_floor <= 10.0:
            raise ConfigError(f"resid_sd_floor must be in (0, 10], got {self.resid_sd_floor}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not 1 <= self.periods <= 64:
            raise ConfigError(f"periods must be in [1, 64], got {self.periods}")
        if self.aggregate not in ("mean_std", "min"):
            raise ConfigError(f"aggregate must be 'mean_std' or 'min', got {self.aggregate!r}")
        if self.robust_lambda < 0:
            raise ConfigError(f"robust_lambda must be >= 0, got {self.robust_lambda}")
        for name in ("w_sharpe", "w_ttt", "w_drawdown", "w_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sharpe_cap <= 0:
            raise ConfigError(f"sharpe_cap must be > 0, got {self.sharpe_cap}")
        if self.min_trades < 0:
            raise ConfigError(f"min_trades must be >= 0, got {self.min_trades}")


@dataclass(frozen=True)
class CausalConfig:
    """``[causal]``: PCMCI feature filter before evolution (``forge.causal``).

    enabled: only features with a significant lagged link to the next-bar
    return become GP terminals; tau_max: largest lag (bars) tested; pc_alpha:
    PC-stage significance; alpha_level: significance of the final links
    after Benjamini-Hochberg over the return's candidate parents;
    max_samples: most recent in-sample rows used (runtime bound);
    aggregate_minutes: bars aggregated before the test (1 = none);
    cond_ind_test: "parcorr" (the measured default) or "parcorr_hc" (its heteroskedasticity-robust p,
    ``forge.causal.hc_partial_corr_pvalue``, as the Gauntlet's graph uses); keep_at_least: features kept (smallest p)
    when fewer pass.  smooth_windows: windows w (bars, each one of the GP's
    window lengths) at which every per-bar feature (lookback <=
    smooth_max_lookback: raw kline columns such as taker_imb, clv, ret_1) is
    also tested in smoothed form, its w-bar mean sampled every w bars against
    the next w bars' return (issue 17 item 7: a slow component of a raw column
    the registry does not name); () = off.  smooth_min_blocks: fewest w-bar
    blocks a window needs to be tested.  gated: when the run has regime terminals (``[regimes]``), every
    feature is also tested gated by each regime's filtered probability (``forge.causal.gated_columns``), so a
    rule whose sign flips with the regime keeps its input; no effect without regime terminals.
    """

    enabled: bool = True
    tau_max: int = 5
    pc_alpha: float = 0.05
    alpha_level: float = 0.01
    max_samples: int = 20000
    aggregate_minutes: int = 1
    cond_ind_test: str = "parcorr"
    keep_at_least: int = 3
    smooth_windows: tuple[int, ...] = (20, 60)
    smooth_max_lookback: int = 1
    smooth_min_blocks: int = 100
    gated: bool = True

    def validate(self) -> None:
        if not 1 <= self.tau_max <= 60:
            raise ConfigError(f"tau_max must be in [1, 60], got {self.tau_max}")
        for name in ("pc_alpha", "alpha_level"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.max_samples < 500:
            raise ConfigError(f"max_samples must be >= 500, got {self.max_samples}")
        if self.aggregate_minutes < 1:
            raise ConfigError(f"aggregate_minutes must be >= 1, got {self.aggregate_minutes}")
        if self.cond_ind_test not in ("parcorr", "parcorr_hc"):
            raise ConfigError(f"cond_ind_test must be 'parcorr' or 'parcorr_hc', got {self.cond_ind_test!r}")
        if self.keep_at_least < 1:
            raise ConfigError(f"keep_at_least must be >= 1, got {self.keep_at_least}")
        if any(int(w) < 2 for w in self.smooth_windows):
            raise ConfigError(f"smooth_windows must hold window lengths >= 2 bars, got {list(self.smooth_windows)}")
        if self.smooth_max_lookback < 0:
            raise ConfigError(f"smooth_max_lookback must be >= 0, got {self.smooth_max_lookback}")
        if self.smooth_min_blocks < 60:
            raise ConfigError(f"smooth_min_blocks must be >= 60, got {self.smooth_min_blocks}")


@dataclass(frozen=True)
class SurrogateConfig:
    """``[surrogate]`` config.

    enabled: screen offspring with the model; candidates_factor: candidate
    offspring generated per generation = factor x offspring; top_fraction:
    share of candidates fully evaluated by predicted rank (default 2%);
    explore_fraction: extra share picked uniformly at random (exploration);
    min_train: evaluated samples before the model is trusted (until then
    candidates are picked at random); proxy_bars: bars of each proxy window;
    proxy_windows: windows spread evenly over the in-sample segment (the
    last one ends with it), joined into the one proxy segment on which the
    proxy statistics are computed (a join is a gap: no look-back crosses it);
    n_estimators / num_leaves / learning_rate: LightGBM parameters.
    """

    enabled: bool = True
    candidates_factor: int = 50
    top_fraction: float = 0.02
    explore_fraction: float = 0.005
    min_train: int = 64
    proxy_bars: int = 2000
    proxy_windows: int = 4
    n_estimators: int = 150
    num_leaves: int = 15
    learning_rate: float = 0.08


@dataclass(frozen=True)
class CoevolutionConfig:
    """``[coevolution]``: enabled; mode "weighted" (fitness = causal + weight * adversarial score,
    adversarial score = mean per-bar return * 10,000, i.e. bp per bar) or "pareto" (NSGA-II over
    causal fitness and adversarial score); predators: predator population size; predators_met:
    current predators each strategy meets (plus the whole predator hall of fame); predator_hof:
    size of the predator hall of fame; adversarial_top: only the best this-many strategies of each
    generation's pool (by causal fitness) meet predators, the rest get the worst adversarial score
    measured in that generation (a conservative stand-in that keeps a generation's cost bounded);
    sim_minutes: simulated bars per encounter (the first
    ``warmup_minutes`` only fill feature look-backs); realism_bound / realism_penalty: the
    realism constraint; mutation_sigma: Gaussian mutation in unit coordinates; calibration: path
    of a ``forge calibrate`` output (relative paths are tried in the working directory, then in the
    project checkout; the built-in default DSG if missing); fee_bps: taker fee inside the book;
    max_events_per_minute: event budget of one encounter's simulation (book messages and agent wakes
    per simulated minute, burn-in included, ~3x a calibrated quiet market): a predator whose market
    exceeds it is cut short and counts as unrealistic (realism distance = infinity, so it is
    penalised like any scenario beyond the bound), which keeps every encounter's cost bounded;
    max_warmup_minutes: cap of an encounter's warm-up, which is the strategy's whole look-back + 1 when
    longer than warmup_minutes (the simulation is lengthened by the difference)."""

    enabled: bool = False
    mode: str = "weighted"
    weight: float = 1.0
    predators: int = 6
    predators_met: int = 1
    predator_hof: int = 1
    adversarial_top: int = 8
    sim_minutes: int = 480
    warmup_minutes: int = 240
    realism_bound: float = 50.0
    realism_penalty: float = 0.01
    mutation_sigma: float = 0.15
    calibration: str = "configs/sim/calibration_btcusdt_1m.json"
    fee_bps: float = 10.0
    max_events_per_minute: int = 3_000
    max_warmup_minutes: int = 1_440

    def validate(self) -> None:
        if self.max_warmup_minutes < self.warmup_minutes:
            raise ConfigError(f"coevolution.max_warmup_minutes must be >= warmup_minutes ({self.warmup_minutes}), "
                              f"got {self.max_warmup_minutes}")
        if self.max_events_per_minute < 100:
            raise ConfigError(f"coevolution.max_events_per_minute must be >= 100, got {self.max_events_per_minute}")
        if self.mode not in ("weighted", "pareto"):
            raise ConfigError(f"coevolution.mode must be 'weighted' or 'pareto', got {self.mode!r}")
        if self.predators < 2 or self.predators_met < 1 or self.predators_met > self.predators:
            raise ConfigError("coevolution: need predators >= 2 and 1 <= predators_met <= predators")
        if self.adversarial_top < 1:
            raise ConfigError(f"coevolution.adversarial_top must be >= 1, got {self.adversarial_top}")
        if self.predator_hof < 0:
            raise ConfigError(f"coevolution.predator_hof must be >= 0, got {self.predator_hof}")
        if self.sim_minutes < self.warmup_minutes + 60:
            raise ConfigError("coevolution.sim_minutes must exceed warmup_minutes by at least 60")
        if not 0 < self.mutation_sigma <= 1:
            raise ConfigError(f"coevolution.mutation_sigma must be in (0, 1], got {self.mutation_sigma}")

@dataclass(frozen=True)
class RegimeConfig:
    """``[regimes]``: the predictive-regime terminals (``forge.features.regimes``, issue 30 part 4).

    enabled: fit a Gaussian HMM on the first market's IN-SAMPLE bars before evolution and add its filtered
    (``regime_p<i>``) and one-step-ahead predicted (``regime_next_p<i>``) state probabilities as terminals
    (kept through the causal filter: a regime gates a rule, its own linear link to the return is ~0); the
    frozen model is the run's ``regime_model.json``.  model: path of a model fitted elsewhere to use instead
    of fitting (refused when its fitted range overlaps the out-of-sample bars).  inputs: observations
    ("ret", "rv", "volume"); rv_window: bars of the realised volatility; min_states / max_states: the BIC
    search range (2..4); covariance_type: "full" or "diag"; n_iter: EM iterations; n_init: EM restarts per
    number of states (the best likelihood kept); max_bars: most recent
    in-sample bars fitted on (runtime bound).
    """

    enabled: bool = False
    model: str = ""
    inputs: tuple[str, ...] = ("ret", "volume")
    rv_window: int = 30
    min_states: int = 2
    max_states: int = 4
    covariance_type: str = "full"
    n_iter: int = 100
    n_init: int = 3
    max_bars: int = 200_000

    def validate(self) -> None:
        if not self.inputs or not set(self.inputs) <= {"ret", "rv", "volume"} or len(set(self.inputs)) != len(self.inputs):
            raise ConfigError(f"regimes.inputs must be distinct names from ['ret', 'rv', 'volume'], got {list(self.inputs)}")
        if not 2 <= self.min_states <= self.max_states <= 4:
            raise ConfigError(f"regimes: need 2 <= min_states <= max_states <= 4, got {self.min_states}..{self.max_states}")
        if self.rv_window < 2:
            raise ConfigError(f"regimes.rv_window must be >= 2, got {self.rv_window}")
        if self.covariance_type not in ("full", "diag"):
            raise ConfigError(f"regimes.covariance_type must be 'full' or 'diag', got {self.covariance_type!r}")
        if self.n_iter < 1 or self.n_init < 1 or self.max_bars < 1000:
            raise ConfigError(f"regimes: need n_iter >= 1 and max_bars >= 1000, got {self.n_iter}, {self.max_bars}")


@dataclass(frozen=True)
class CostsConfig:
    """``[costs]``: which fee schedule the backtest charges (:data:`COST_PRESETS`, applied by :func:`resolve_costs`).

    preset: "auto" (from the data's market type: files under a ``futures`` folder or with a header row are
    USDⓈ-M futures, otherwise spot; synthetic or Parquet data of unknown market -> spot, the dearer one),
    "spot", "futures", or "manual" ([backtest] ``taker_fee_bps`` and ``funding_rate_8h`` as written).
    A preset sets [backtest] ``taker_fee_bps`` and ``funding_rate_8h``; ``slippage_bps`` stays [backtest]'s.
    funding_rate_8h: the perpetual funding rate per 8 h the futures preset charges (a fraction; longs pay when
    positive).  Kline files carry no funding history, so a constant is assumed: 0.0001 (0.01 %) is Binance's
    rate when the premium index is zero (the interest-rate component, 0.03 % a day).
    """

    preset: str = "auto"
    funding_rate_8h: float = 0.0001

    def validate(self) -> None:
        if self.preset not in ("auto", "manual", *COST_PRESETS):
            raise ConfigError(f"costs.preset must be 'auto', 'spot', 'futures' or 'manual', got {self.preset!r}")
        if not -0.01 < self.funding_rate_8h < 0.01:
            raise ConfigError(f"costs.funding_rate_8h must be in (-0.01, 0.01) (a fraction per 8 h), "
                              f"got {self.funding_rate_8h!r}")


PANEL_FEATURES: tuple[str, ...] = ("ret_1", "ret_5", "ret_15", "ret_60", "vol_20", "taker_imb", "vol_z_60",
                                   "count_z_60", "qvol_z_60")
"""Default features of every non-traded instrument of a universe (``[universe] features``): returns at four
horizons, volatility, order flow and the activity columns -- what a leader carries.  The clock is the
traded instrument's (identical on every instrument)."""


@dataclass(frozen=True)
class UniverseConfig:
    """``[universe]``: a panel of instruments on one clock (``forge.data.panel``).

    symbols: instrument specs ``SYMBOL[:spot|perp]`` (market from the files when omitted), the candidate
    leaders; trade: the instruments strategies trade (one strategy per traded instrument; each must be in
    ``symbols`` or is added to it); features: registry features of every non-traded instrument, named
    ``<feature>__<SYMBOL>_<market>`` (empty = :data:`PANEL_FEATURES`).  Empty symbols = no panel (the
    ``[evolve] symbols`` mode: the same strategy on each symbol, fitness aggregated).
    """

    symbols: tuple[str, ...] = ()
    trade: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.trade and not self.symbols:
            raise ConfigError("universe.trade needs universe.symbols (the instruments on the clock)")
        if self.symbols and not self.trade:
            raise ConfigError("universe.symbols needs universe.trade (which instrument the strategy trades)")
        from forge.data.panel import parse_instrument  # noqa: PLC0415 - light; keeps config import-free

        for s in (*self.symbols, *self.trade):
            parse_instrument(s)
        from forge.features.registry import FEATURES  # noqa: PLC0415

        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ConfigError(f"universe.features: unknown feature(s) {unknown}")


@dataclass(frozen=True)
class L2Config:
    """``[l2]``: recorded L2 books as terminals of the traded instrument (``forge evolve --l2 DIR``;
    :mod:`forge.features.l2terminals`).

    dir: a ``crucible record`` directory ("" = no L2 terminals); venue: its venue folder ("" = the only one
    holding the traded symbol); k: levels / ticks of the depth measures; features: the L2 terminals added
    (empty = every one of ``forge.features.l2terminals.L2_FEATURES``); symbols: with ``[universe]``, other
    instruments of the universe whose recorded books are joined too (terminals ``<name>__<SYMBOL>_<market>``;
    empty = the traded instrument's book only).  The recording is joined on the bars' UTC minutes; bars it
    does not cover have NaN L2 terminals (flat).
    """

    dir: str = ""
    venue: str = ""
    k: int = 5
    features: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()

    def validate(self) -> None:
        if not 1 <= self.k <= 100:
            raise ConfigError(f"l2.k must be an integer in [1, 100] (levels / ticks), got {self.k!r}")
        from forge.features.l2terminals import L2_FEATURES  # noqa: PLC0415

        unknown = [f for f in self.features if f not in L2_FEATURES]
        if unknown:
            raise ConfigError(f"l2.features: unknown L2 terminal(s) {unknown}; known: {', '.join(L2_FEATURES)}")
        if (self.venue or self.features or self.symbols) and not self.dir:
            raise ConfigError("l2.venue / l2.features / l2.symbols need l2.dir (the recording, --l2 DIR)")
        from forge.data.panel import parse_instrument  # noqa: PLC0415

        for x in self.symbols:
            parse_instrument(x)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``forge evolve`` needs, validated (one field per TOML table; ``source``: where it came from)."""

    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    causal: CausalConfig = field(default_factory=CausalConfig)
    coevolution: CoevolutionConfig = field(default_factory=CoevolutionConfig)
    costs: CostsConfig = field(default_factory=CostsConfig)
    regimes: RegimeConfig = field(default_factory=RegimeConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    universe: UniverseConfig = field(default_factory=UniverseConfig)
    l2: L2Config = field(default_factory=L2Config)
    source: str = "<defaults>"


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(RunConfig)  # type: ignore[misc]
                             if f.name != "source"}
"""TOML table name -> config class, in file order."""


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """JSON-ready {section: {key: value}} of a run config."""
    return {name: to_dict(getattr(cfg, name)) for name in SECTIONS}


def config_from_dict(d: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Inverse of ``config_to_dict`` (validated; raises ConfigError naming source, section and key)."""
    return build_root(RunConfig, d, source)


def load_run_config(path: str | Path | None = None) -> RunConfig:
    """Read and validate a run config.

    path: TOML file; None -> ``configs/default.toml`` when present, else the built-in defaults.
    raises ConfigError naming file, section and key.
    """
    return load_config(path, RunConfig, default_name="default.toml")


def resolve_costs(cfg: RunConfig, markets: list[str],
                  funding_interval_h: int | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """Apply the ``[costs]`` preset to ``cfg.backtest``.

    markets: the market type of each evolved symbol's data ("spot", "futures" or "unknown",
    ``forge.data.discovery.market_type``).  funding_interval_h: the traded perpetual's funding interval in
    hours as its funding history gives it (``forge.data.funding.funding_interval_hours``); None keeps
    [backtest] ``funding_interval_h`` (8 h unless a resolved run config set it).  returns (the config with [backtest] ``taker_fee_bps``, ``funding_rate_8h`` and
    ``funding_interval_h`` set by the preset, the record the run manifest keeps: {"preset", "requested",
    "market", "reason", "taker_fee_bps", "maker_fee_bps", "slippage_bps", "funding_rate_8h",
    "funding_interval_h"}).  Idempotent: resolving a resolved config gives the same values.
    raises ConfigError when the data mixes spot and futures files under "auto", or when [backtest] sets a
    fee or funding rate that the preset would silently replace (set ``[costs] preset = "manual"`` to use it).
    """
    c, bt = cfg.costs, cfg.backtest
    known = sorted({m for m in markets if m != "unknown"})
    market = known[0] if len(known) == 1 else ("mixed" if known else "unknown")
    if c.preset == "manual":
        rec = {"preset": "manual", "reason": "[costs] preset = 'manual': [backtest] fees as configured",
               "maker_fee_bps": None,
               "funding_interval_h": float(bt.funding_interval_h) if bt.funding_rate_8h else 0.0}
        return cfg, {"requested": "manual", "market": market, **rec, "taker_fee_bps": bt.taker_fee_bps,
                     "slippage_bps": bt.slippage_bps, "funding_rate_8h": bt.funding_rate_8h}
    if c.preset == "auto":
        if market == "mixed":
            raise ConfigError(f"{cfg.source}: [costs] preset = 'auto' but the data mixes spot and futures "
                              "files; set preset = 'spot' or 'futures'")
        preset = "futures" if market == "futures" else "spot"
        reason = (f"auto: the data is {market}" if market != "unknown"
                  else "auto: market type unknown (synthetic or Parquet data), spot fees assumed (the dearer)")
    else:
        preset, reason = c.preset, f"[costs] preset = {c.preset!r}"
    values = COST_PRESETS[preset]
    funding = c.funding_rate_8h if preset == "futures" else 0.0
    default = type(bt)()
    for name, want in (("taker_fee_bps", values["taker_fee_bps"]), ("funding_rate_8h", funding)):
        got = getattr(bt, name)
        if got != getattr(default, name) and got != want:
            raise ConfigError(f"{cfg.source}: [backtest] {name} = {got!r} conflicts with [costs] preset "
                              f"{c.preset!r} ({preset}: {want!r}); set [costs] preset = 'manual' to use it")
    hours = int(funding_interval_h) if funding_interval_h else int(bt.funding_interval_h)  # idempotent
    resolved = dataclasses.replace(cfg, backtest=dataclasses.replace(bt, taker_fee_bps=values["taker_fee_bps"],
                                                                      funding_rate_8h=funding,
                                                                      funding_interval_h=hours))
    return resolved, {"preset": preset, "requested": c.preset, "market": market, "reason": reason,
                      "taker_fee_bps": values["taker_fee_bps"], "maker_fee_bps": values["maker_fee_bps"],
                      "slippage_bps": bt.slippage_bps, "funding_rate_8h": funding,
                      "funding_interval_h": float(hours) if preset == "futures" else 0.0}


def with_overrides(cfg: RunConfig, section: str, **changes: Any) -> RunConfig:
    """Copy of ``cfg`` with non-None ``changes`` applied to one section (re-validated).
    raises ConfigError for an unknown section or key, or a value out of range."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; valid: {', '.join(SECTIONS)}")
    new = override(getattr(cfg, section), f"{cfg.source} [{section}] (command line)", **changes)
    return dataclasses.replace(cfg, **{section: new})
