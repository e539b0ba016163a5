"""``forge calibrate``: CMA-ES over the DSG so simulated bars match real stylized facts.

Search space: every DSG entry except ``lot_quote`` (a pure volume unit that
changes no dynamics; it is fitted in closed form at the end so the mean
simulated volume equals the real one), in normalised [0, 1] coordinates
(``ParamSpec.to_unit``: linear or log scale per entry), box-bounded by CMA-ES
itself.  The start point is ``default_dsg()`` (or ``start``).

Loss of a candidate (``target="windows"``, the default): like with like.
The real bars are cut into consecutive windows of ``n_minutes`` bars (the
length of one simulation) and every fact is computed per window; the
target is the mean over windows and the weight 1 / variance over windows,
both in *distance space* (``forge.sim.facts.to_distance_space``: log-ratios
for the scale-free facts — 1-minute std, kurtoses, Hill index — plain
values for correlations).  The candidate's facts are computed per seed,
averaged over ``seeds`` in distance space and compared with the target by
``realism_distance`` (group-balanced, inverse-variance weighted squared
distance).  The same seeds serve every candidate (common random numbers),
so loss differences between candidates are not seed noise.  Why: sample
kurtosis of heavy-tailed returns and |r| autocorrelations depend strongly
on the sample length, so a 720-minute simulation must not be scored against
facts of ~400k real bars; and weights from a bootstrap of the whole real
sample (``target="bootstrap"``, the original loss) are ~25x tighter than the
noise of one simulation, so the loss was dominated by seed noise in the
Hill index and leverage while kurtosis (raw bootstrap sd ~15) carried almost
no weight.  A simulation stopped by its event budget (``SimConfig.max_events``)
scores ``FAILED_LOSS``.

With target="windows" and >= 2 seeds the loss has one more term, the
*volatility dispersion*: the sd across runs of log(1-minute return std)
(each seed's run is one window) against the sd across real windows, with
weight 2 (S - 1) / sd_real^2 (S = seeds: the sampling variance of an
S-sample sd), counted as a group of its own.  Means of per-window facts
cannot see volatility regimes slower than a window; this moment can, and
the pooled sample of many windows (real: the whole series) inherits its
kurtosis and long-lag |r| autocorrelation largely from them.

``target="pooled"``: the seeds' runs are pooled into one sample
(``pooled_facts``: each run its own segment) and compared with the same
estimator on real data: ``n_boot`` draws of len(seeds) distinct random real
windows of n_minutes bars, pooled the same way (``pooled_window_facts``);
target = mean over draws and weight = 1 / variance over draws, in distance
space.  Pooled kurtosis and |r| ACF contain the between-window volatility
dispersion in both, like the whole-sample facts of the real series (the
real 1-minute kurtosis of 60 random pooled days has median 67 vs 73.5 on
all 285 days, while single days average 7.8).

Determinism: the bootstrap, CMA-ES and every simulation are seeded from
``seed``/``seeds``; the same arguments give the same result (bit for bit on
one machine).  The library never prints; ``progress`` receives one dict per
CMA-ES generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from forge.core import rng
from forge.core.config import resolve_path
from forge.core.errors import ConfigError, DataError
from forge.data.ranges import DataRange
from forge.data.split import holdout_split
from forge.sim import agents_nb as K
from forge.sim.facts import (
    FACT_NAMES,
    block_bootstrap_facts,
    facts_from_vector,
    facts_vector,
    from_distance_space,
    NAN_PENALTY,
    moment_weights,
    pooled_window_facts,
    realism_distance,
    stylized_facts,
    to_distance_space,
    window_facts,
)
from forge.sim.market import SimConfig, simulate
from forge.sim.calibration import (  # noqa: F401  (re-exported: the result, its file and the config)
    DEFAULT_CALIBRATION_PATH,
    SCHEMA_VERSION,
    SEARCH_IDX,
    CalibrateConfig,
    CalibrateFile,
    CalibrationResult,
    load_calibrate_config,
    load_calibrated_facts,
    load_calibration,
    read_calibration,
    write_calibration,
)
from forge.sim.params import DSG_SPECS, default_dsg, to_dict, validate_dsg

FAILED_LOSS = 1e6
"""Loss of a candidate whose simulation raised (e.g. an order-pool overflow)."""

CALIBRATION_EVENTS_PER_MINUTE = 8_000
"""Event budget of each calibration simulation when no ``config`` is given: 8,000 book events
(or wakes) per simulated minute (~8x the default DSG); a candidate that needs more is stopped
and scores ``FAILED_LOSS`` instead of stalling the search."""

ProgressFn = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- coordinates
def dsg_to_unit(dsg: np.ndarray) -> np.ndarray:
    """(N_P,) natural DSG -> (len(SEARCH_IDX),) search coordinates in [0, 1]."""
    x = validate_dsg(dsg)
    return np.array([DSG_SPECS[i].to_unit(x[i]) for i in SEARCH_IDX], dtype=np.float64)


def unit_to_dsg(u: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Search coordinates (clipped to [0, 1]) -> natural DSG; entries not searched
    (lot_quote) are taken from ``base`` ((N_P,) float64)."""
    out = np.array(base, dtype=np.float64, copy=True)
    for j, i in enumerate(SEARCH_IDX):
        out[i] = DSG_SPECS[i].from_unit(float(u[j]))
    return out


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class _Setup:
    n_minutes: int
    seeds: tuple[int, ...]
    start_ms: int
    start_price: float
    config: SimConfig | None
    pooled: bool = False


def _pool(runs: list[pl.DataFrame]) -> dict[str, float]:
    """Stylized facts of several simulated bar frames pooled into one sample, each run its own
    segment (no return, aggregated return or ACF pair joins two runs)."""
    return stylized_facts(close=np.concatenate([b["close"].to_numpy() for b in runs]),
                          volume=np.concatenate([b["volume"].to_numpy() for b in runs]),
                          segment=np.repeat(np.arange(len(runs), dtype=np.int64), [b.height for b in runs]))


def _simulate_facts(dsg: np.ndarray, setup: _Setup) -> tuple[np.ndarray, np.ndarray] | None:
    """(n_seeds, n_facts) fact vectors and (n_seeds,) mean bar volumes, or None on failure
    (a simulation raised or was stopped by its event budget)."""
    fv = np.empty((len(setup.seeds), len(FACT_NAMES)))
    vols = np.empty(len(setup.seeds))
    runs = []
    for k, s in enumerate(setup.seeds):
        try:
            res = simulate(dsg, setup.n_minutes, s, setup.start_ms, start_price=setup.start_price,
                           config=setup.config)
            if res.truncated:
                return None
            bars = res.bars
            if setup.pooled:
                runs.append(bars)
            else:
                fv[k] = facts_vector(stylized_facts(bars))
        except (ConfigError, ValueError, FloatingPointError, ZeroDivisionError, OverflowError):
            return None
        vols[k] = float(bars["volume"].mean() or 0.0)
    if setup.pooled:
        try:
            fv = facts_vector(_pool(runs))[None, :]
        except (ValueError, FloatingPointError, ZeroDivisionError, OverflowError):
            return None
    return fv, vols


def _mean_facts(fv: np.ndarray | None) -> dict[str, float]:
    """Mean over rows in distance space (NaNs ignored), back in natural units."""
    if fv is None:
        return {n: math.nan for n in FACT_NAMES}
    t = to_distance_space(np.asarray(fv, dtype=np.float64).reshape(-1, len(FACT_NAMES)))
    ok = np.isfinite(t)
    cnt = ok.sum(axis=0)
    mean = np.where(ok, t, 0.0).sum(axis=0) / np.maximum(cnt, 1)
    return facts_from_vector(from_distance_space(np.where(cnt > 0, mean, np.nan)))


def _log_std_dispersion(fv: np.ndarray | None) -> float:
    """sd (ddof 1) across rows of log(ret_std_1m) (NaN if < 2 finite rows)."""
    if fv is None:
        return math.nan
    x = to_distance_space(np.asarray(fv, dtype=np.float64).reshape(-1, len(FACT_NAMES)))[:, 0]
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if x.size >= 2 else math.nan


def _loss(fv: np.ndarray | None, target: dict[str, float], weights: dict[str, float],
          disp: tuple[float, float] | None = None) -> float:
    """realism_distance of the seed-mean facts; plus (d_sim - d_real)^2 * w for disp = (d_real, w)."""
    if fv is None:
        return FAILED_LOSS
    d = float(realism_distance(_mean_facts(fv), target, weights))
    if disp is not None:
        ds = _log_std_dispersion(fv)
        d += disp[1] * (ds - disp[0]) ** 2 if math.isfinite(ds) else NAN_PENALTY
    return d


def pooled_facts(
    dsg: np.ndarray,
    n_minutes: int,
    seeds: Sequence[int],
    *,
    start_ms: int,
    start_price: float,
    config: SimConfig | None = None,
) -> tuple[dict[str, float], int]:
    """Facts of several independent simulations pooled into one sample (each run its own
    segment, so no return, aggregated return or ACF pair joins two runs) — the simulated
    analogue of the facts of one long real sample.  Runs stopped by the event budget are
    left out (their flat tails are no market).  returns (facts, runs truncated and left out).
    raises ValueError if every run was truncated."""
    results = [simulate(dsg, n_minutes, int(s), start_ms, start_price=start_price, config=config) for s in seeds]
    runs = [r.bars for r in results if not r.truncated]
    n_trunc = len(results) - len(runs)
    if not runs:
        raise ValueError(f"all {n_trunc} runs were stopped by the event budget")
    return _pool(runs), n_trunc


def _fit_lot_quote(dsg: np.ndarray, real_mean_vol: float, sim_mean_vol: float) -> np.ndarray:
    out = dsg.copy()
    spec = DSG_SPECS[K.P_LOT_QUOTE]
    if math.isfinite(real_mean_vol) and real_mean_vol > 0 and math.isfinite(sim_mean_vol) and sim_mean_vol > 0:
        out[K.P_LOT_QUOTE] = min(max(dsg[K.P_LOT_QUOTE] * real_mean_vol / sim_mean_vol, spec.lo), spec.hi)
    return out


def _check_args(real_bars: Any, budget_evals: Any, n_minutes: Any, seeds: Sequence[int], seed: Any, sigma0: float,
                n_boot: int, block_minutes: int, target: str) -> tuple[int, ...]:
    """Validate :func:`calibrate`'s arguments; returns the seeds as a tuple of ints.
    raises ConfigError naming the bad argument, DataError if ``real_bars`` is too short."""
    if not isinstance(budget_evals, (int, np.integer)) or budget_evals < 5:
        raise ConfigError(f"budget_evals must be an int >= 5, got {budget_evals!r}")
    if not isinstance(n_minutes, (int, np.integer)) or n_minutes < 30:
        raise ConfigError(f"n_minutes must be an int >= 30, got {n_minutes!r}")
    seeds_t = tuple(int(s) for s in seeds)
    if not seeds_t or any(s < 0 for s in seeds_t):
        raise ConfigError(f"seeds must be a non-empty list of ints >= 0, got {list(seeds)!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0, got {seed!r}")
    if not (0.0 < sigma0 <= 1.0):
        raise ConfigError(f"sigma0 must be in (0, 1], got {sigma0!r}")
    if n_boot < 10:
        raise ConfigError(f"n_boot must be >= 10, got {n_boot!r}")
    if not isinstance(real_bars, pl.DataFrame) or real_bars.height < 2 * block_minutes:
        h = getattr(real_bars, "height", None)
        raise DataError(f"calibration needs a bar frame of >= {2 * block_minutes} bars, got {h}")
    if target not in ("windows", "pooled", "bootstrap"):
        raise ConfigError(f"target must be 'windows', 'pooled' or 'bootstrap', got {target!r}")
    if target == "windows" and real_bars.height < 2 * int(n_minutes):
        raise DataError(f"target='windows' needs >= 2 windows of {n_minutes} real bars, got {real_bars.height}")
    if target == "pooled" and real_bars.height < (len(seeds_t) + 1) * int(n_minutes):
        raise DataError(f"target='pooled' needs > {len(seeds_t)} windows of {n_minutes} real bars, "
                        f"got {real_bars.height}")
    return seeds_t


def _real_target(real_bars: pl.DataFrame, target: str, n_minutes: int, n_seeds: int, n_boot: int,
                 block_minutes: int, seed: int) -> tuple[dict[str, float], np.ndarray, dict[str, float],
                                                         dict[str, float], tuple[float, float] | None,
                                                         dict[str, float]]:
    """The real side of the loss for ``target`` (:func:`calibrate`): returns (whole-sample facts,
    (n_replicates, n_facts) replicate facts, target facts, moment weights, (real log-std dispersion,
    its weight) or None, replicate SD of each fact in distance space).
    raises DataError if the real facts are undefined (constant prices)."""
    facts_real = stylized_facts(real_bars)
    bad = [n for n in ("ret_std_1m", "kurt_1m", "acf_absr_1") if not math.isfinite(facts_real[n])]
    if bad:
        raise DataError(f"real bars give undefined facts {bad} (constant prices?)")
    if target == "windows":
        boot = window_facts(real_bars, int(n_minutes))
        facts_target = _mean_facts(boot)
    elif target == "pooled":
        boot = pooled_window_facts(real_bars, int(n_minutes), n_seeds, n_draws=n_boot, seed=seed)
        facts_target = _mean_facts(boot)
    else:
        boot = block_bootstrap_facts(real_bars, n_boot=n_boot, block_minutes=block_minutes, seed=seed)
        facts_target = dict(facts_real)
    weights = moment_weights(boot)
    disp: tuple[float, float] | None = None
    if target == "windows" and n_seeds >= 2:
        d_real = _log_std_dispersion(boot)
        if math.isfinite(d_real) and d_real > 0:
            disp = (d_real, 2.0 * (n_seeds - 1) / d_real ** 2)
    boot_t = to_distance_space(boot)
    boot_sd = {}
    for j, n in enumerate(FACT_NAMES):
        col = boot_t[:, j][np.isfinite(boot_t[:, j])]
        boot_sd[n] = float(np.std(col, ddof=1)) if col.size >= 2 else math.nan
    return facts_real, boot, facts_target, weights, disp, boot_sd


class _Tracker:
    """Evaluates candidate DSGs and keeps every loss, the best-so-far curve and the best candidate
    (``best``: loss, dsg, fv (n_seeds, n_facts) or None, vol: mean simulated bar volume or None)."""

    def __init__(self, setup: _Setup, facts_target: dict[str, float], weights: dict[str, float],
                 disp: tuple[float, float] | None) -> None:
        self.setup, self.facts_target, self.weights, self.disp = setup, facts_target, weights, disp
        self.eval_losses: list[float] = []
        self.history: list[float] = []
        self.best: dict[str, Any] = {}

    def evaluate(self, dsg: np.ndarray) -> float:
        res = _simulate_facts(dsg, self.setup)
        fv = None if res is None else res[0]
        loss = _loss(fv, self.facts_target, self.weights, self.disp)
        self.eval_losses.append(loss)
        if not self.best or loss < self.best["loss"]:
            self.best.update(loss=loss, dsg=dsg.copy(), fv=fv, vol=None if res is None else float(np.mean(res[1])))
        self.history.append(float(self.best["loss"]))
        return loss


def _cma_search(track: _Tracker, x0_dsg: np.ndarray, *, budget_evals: int, sigma0: float, popsize: int | None,
                seed: int, progress: ProgressFn | None, loss_default: float, t0: float) -> tuple[int, str, int]:
    """CMA-ES in [0, 1] search coordinates from ``x0_dsg`` until the budget (evaluation 0, the start, already
    spent) or a CMA stop rule; returns (generations, stop reason, population size)."""
    import cma

    dim = len(SEARCH_IDX)
    pop = int(popsize) if popsize is not None else 4 + int(3 * math.log(dim))
    pop = max(2, min(pop, budget_evals - 1))
    opts = cma.CMAOptions()
    opts.set({
        "bounds": [0.0, 1.0],
        "popsize": pop,
        "seed": int(rng.int_seed(seed, "sim", "calibrate", "cma") % (2**31 - 2)) + 1,
        "maxfevals": budget_evals - 1,
        "verbose": -9,
        "verb_disp": 0,
        "verb_log": 0,
        "verb_filenameprefix": "",
        "tolfun": 1e-12,
        "tolx": 1e-9,
    })
    es = cma.CMAEvolutionStrategy(dsg_to_unit(x0_dsg).tolist(), float(sigma0), opts)
    gen = 0
    stop_reason = "budget"
    while len(track.eval_losses) + pop <= budget_evals:
        stop = es.stop()
        if stop:
            stop_reason = ",".join(sorted(str(k) for k in stop))
            break
        xs = es.ask()
        fs = [track.evaluate(unit_to_dsg(np.clip(np.asarray(x), 0.0, 1.0), x0_dsg)) for x in xs]
        es.tell(xs, fs)
        gen += 1
        if progress is not None:
            progress({"generation": gen, "evals": len(track.eval_losses), "budget": int(budget_evals),
                      "best_loss": float(track.best["loss"]), "gen_best_loss": float(min(fs)),
                      "loss_default": float(loss_default), "seconds": time.perf_counter() - t0})
    return gen, stop_reason, pop


def _make_setup(real_bars: pl.DataFrame, n_minutes: int, seeds_t: tuple[int, ...], config: SimConfig | None,
                target: str) -> _Setup:
    """The simulation setup every candidate shares: the real bars' first open time and price, and ``config``
    (default: ``SimConfig`` with ``CALIBRATION_EVENTS_PER_MINUTE`` events per simulated minute incl. burn-in)."""
    if config is None:
        burn = SimConfig().burn_in_minutes
        config = SimConfig(max_events=CALIBRATION_EVENTS_PER_MINUTE * (burn + int(n_minutes)))
    return _Setup(
        n_minutes=int(n_minutes), seeds=seeds_t, start_ms=int(real_bars["open_time"][0]),
        start_price=float(real_bars["open"][0]), config=config, pooled=target == "pooled",
    )


def _fit_record(setup: _Setup, target: str, boot: np.ndarray, real_bars: pl.DataFrame, real_mean_vol: float,
                x0_dsg: np.ndarray) -> dict[str, Any]:
    """What a calibration records about its fit beside the arguments (``CalibrationResult.settings``): start
    price and time, target, real replicates, real bars and mean volume, the start DSG and the data range."""
    return {"start_price": setup.start_price, "start_ms": setup.start_ms,
            "target": target, "n_replicates": int(boot.shape[0]),
            "real_bars": int(real_bars.height), "real_mean_volume": real_mean_vol,
            "start_dsg": to_dict(x0_dsg), "data_range": DataRange.of(real_bars).to_dict()}


def calibrate(
    real_bars: pl.DataFrame,
    *,
    budget_evals: int = 200,
    n_minutes: int = 1440,
    seeds: Sequence[int] = (0, 1, 2),
    seed: int = 0,
    sigma0: float = 0.2,
    popsize: int | None = None,
    n_boot: int = 100,
    block_minutes: int = 240,
    start: np.ndarray | None = None,
    config: SimConfig | None = None,
    progress: ProgressFn | None = None,
    target: str = "windows",
) -> CalibrationResult:
    """Fit the DSG by CMA-ES so simulated stylized facts match ``real_bars``.

    real_bars: bar frame (BAR_SCHEMA; gaps allowed), >= 2 * block_minutes
    rows; budget_evals: candidate DSGs to evaluate incl. the start point
    (>= 5; each costs len(seeds) simulations of n_minutes bars, ~0.5 s per
    simulated day on one core); n_minutes: bars per simulation (>= 30);
    seeds: simulation seeds shared by every candidate (common random
    numbers); seed: seeds the bootstrap and CMA-ES; sigma0: initial CMA-ES
    step in [0, 1] coordinates; popsize: CMA-ES population (default
    4 + 3 ln(dim), capped so at least one generation fits the budget);
    n_boot / block_minutes: moving-block bootstrap of the real moments
    (only for target="bootstrap"); target: "windows" (default: mean and
    variance of each fact over real windows of n_minutes bars, module
    docstring), "pooled" (the seeds' runs pooled vs pooled random real
    windows, module docstring; n_boot = number of real draws) or
    "bootstrap" (the whole-sample real facts with block-bootstrap
    weights; the original loss, kept for comparison); start: initial DSG
    (default ``default_dsg()``); config: SimConfig of the simulated market
    (default: ``SimConfig()`` with an event budget of
    ``CALIBRATION_EVENTS_PER_MINUTE`` per simulated minute); progress: called after each generation with
    {generation, evals, budget, best_loss, gen_best_loss, loss_default,
    seconds}.
    returns CalibrationResult (best DSG never worse than the start DSG: the
    start is evaluation 0).
    raises ConfigError on invalid arguments, DataError if real_bars is too
    short (fewer than 2 windows of n_minutes for target="windows") or its
    facts are undefined.
    """
    t0 = time.perf_counter()
    seeds_t = _check_args(real_bars, budget_evals, n_minutes, seeds, seed, sigma0, n_boot, block_minutes, target)
    x0_dsg = default_dsg() if start is None else validate_dsg(start)

    facts_real, boot, facts_target, weights, disp, boot_sd = _real_target(
        real_bars, target, int(n_minutes), len(seeds_t), n_boot, block_minutes, seed)
    real_mean_vol = float(real_bars["volume"].mean() or 0.0)
    setup = _make_setup(real_bars, int(n_minutes), seeds_t, config, target)
    track = _Tracker(setup, facts_target, weights, disp)
    loss_default = track.evaluate(x0_dsg)
    facts_default = _mean_facts(track.best["fv"])
    disp_default = _log_std_dispersion(track.best["fv"])
    gen, stop_reason, pop = _cma_search(track, x0_dsg, budget_evals=int(budget_evals), sigma0=float(sigma0),
                                        popsize=popsize, seed=seed, progress=progress, loss_default=loss_default,
                                        t0=t0)
    best, eval_losses, history = track.best, track.eval_losses, track.history

    best_dsg = _fit_lot_quote(best["dsg"], real_mean_vol, best["vol"] if best["vol"] is not None else math.nan)
    return CalibrationResult(
        dsg=validate_dsg(best_dsg),
        loss=float(best["loss"]),
        loss_default=float(loss_default),
        loss_history=history,
        eval_losses=eval_losses,
        facts_real=facts_real,
        facts_sim=_mean_facts(best["fv"]),
        facts_default=facts_default,
        weights=weights,
        boot_sd=boot_sd,
        settings={
            "budget_evals": int(budget_evals), "n_minutes": int(n_minutes), "seeds": list(seeds_t),
            "seed": int(seed), "sigma0": float(sigma0), "popsize": pop, "n_boot": int(n_boot),
            "block_minutes": int(block_minutes), **_fit_record(setup, target, boot, real_bars, real_mean_vol, x0_dsg),
        },
        seconds=time.perf_counter() - t0,
        generations=gen,
        stop_reason=stop_reason,
        facts_target=facts_target,
        extra={} if disp is None else {"log_std_dispersion": {
            "real": disp[0], "weight": disp[1], "default": disp_default, "sim": _log_std_dispersion(best["fv"])}},
    )


# --------------------------------------------------------------------------- config and CLI entry


def in_sample_head(bars: pl.DataFrame, fraction: float) -> pl.DataFrame:
    """The leading ``fraction`` of ``bars`` by ``forge.data.split.holdout_split`` (all bars when 1.0).
    raises DataError when the frame is too short to split."""
    if fraction >= 1.0:
        return bars
    a, b = holdout_split(bars["open_time"].to_numpy(), fraction).in_sample
    return bars.slice(a, b - a)


def run_calibration(cfg: CalibrateConfig, bars: pl.DataFrame, progress: ProgressFn | None = None
                    ) -> CalibrationResult:
    """``forge calibrate``: :func:`calibrate` on the in-sample head of ``bars`` (``cfg.in_sample_fraction``)
    with the settings of ``cfg``; the result records the bars it was fitted on (``data_range``)."""
    start = read_calibration(resolve_path(cfg.start)).dsg if cfg.start else None
    return calibrate(in_sample_head(bars, cfg.in_sample_fraction), budget_evals=cfg.budget, n_minutes=cfg.minutes,
                     seeds=tuple(range(cfg.seeds)), seed=cfg.seed, sigma0=cfg.sigma0, n_boot=cfg.n_boot,
                     block_minutes=cfg.block_minutes, start=start, progress=progress, target=cfg.target)
