"""Permutation test of timing skill, with the block bootstrap and Hansen's SPA as diagnostics.

Gate — a Monte Carlo permutation test in the circular-shift form (the "random timing" test of a trading
rule; the shift keeps the autocorrelation of both the position and the returns, which a row shuffle would
destroy): the candidate's out-of-sample timing statistic — the heteroskedasticity-robust t of the bar's
return on the position held, i.e. its P&L about its mean exposure, studentised — is compared with the same
statistic of its own position circularly shifted by K random offsets between 10 % and 90 % of the sample.
A shifted position has the same mean exposure and turnover, so the test measures timing, not beta: a
constant position ties with every shift and gets p = 1. The studentisation is what keeps the test at its
size when the position depends on volatility (Chung & Romano 2013; DiCiccio & Romano 2017; see
``circular_shift_pvalue``; measured size: ``benchmarks/gauntlet_size.py``).
p = (1 + #{shifted t >= observed t}) / (1 + K) (Phipson & Smyth 2010; circular-shift tests: Ebisuzaki
1997, J. of Climate 10(9)).

Diagnostics — the circular block bootstrap p-value of the hedged mean return (arch
``CircularBlockBootstrap``, block length by Politis & White 2004 / Patton, Politis & White 2009 via
``arch.bootstrap.optimal_block_length``), and Hansen's (2005, J. Bus. Econ. Stat. 23(4)) SPA over the hall
of fame's distinct candidates on hourly hedged P&L against a zero benchmark (arch ``SPA``), with its block
length sized to the sample and flagged uninformative below ``spa_min_points`` hourly points.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from gauntlet.stages import StageResult
from gauntlet.stats import hourly_sums

NAME = "permutation"


def robust_slope_t(held: np.ndarray, market: np.ndarray) -> np.ndarray:
    """Heteroskedasticity-robust (White HC0) t-statistics of the slope b in m_t = a + b h_t + e_t, one per row.

    held: (K, T) or (T,) float64 positions held during each bar; market: (T,) float64 per-bar return of
    holding one unit. t = sum (h - hbar)(m - mbar) / sqrt(sum (h - hbar)^2 e^2), e the OLS residual; a
    constant row gives t = 0. returns: (K,) float64 (or a 0-d array for one row).
    """
    h = np.atleast_2d(np.asarray(held, dtype=np.float64))
    m = np.asarray(market, dtype=np.float64)
    hc = h - h.mean(axis=1, keepdims=True)
    mc = m - m.mean()
    sxx = np.einsum("kt,kt->k", hc, hc)
    sxy = hc @ mc
    b = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    e = mc[None, :] - b[:, None] * hc
    se = np.sqrt(np.einsum("kt,kt->k", hc * hc, e * e))
    t = np.where((sxx > 0) & (se > 0), sxy / np.where(se > 0, se, 1.0), 0.0)
    return t if np.ndim(held) == 2 else t[0]


def circular_shift_pvalue(position: np.ndarray, market: np.ndarray, shifts: int, seed: int) -> dict[str, Any]:
    """Timing test of a position against its own circular shifts, on a studentised statistic.

    position: (T,) float64 target positions decided at each bar's close (NaN -> 0, clipped to [-1, 1]);
    market: (T,) float64 per-bar return of holding one unit during bar t (the backtester's timing: the
    position decided at close t-1 is held during bar t); shifts: K offsets drawn without replacement from
    [T/10, 9T/10].

    Statistic: the heteroskedasticity-robust t of the slope of the bar's return on the position held
    (``robust_slope_t``), for the position and for each circularly shifted copy. Its numerator is the
    P&L sum (p - pbar) . r, which orders the shifts exactly as their mean gross P&L does (a shift keeps the
    mean exposure pbar), so it tests timing, not beta; costs are the same for every shift (same turnover,
    up to the one wrap-around jump) and cancel from the comparison. The mean P&L alone is not at its size
    when the position depends on volatility (a position scaled to trailing volatility on GARCH noise passed
    ~16-29 % at nominal 5 %: its P&L variance differs from its shifts'); studentising each statistic by its
    own robust standard error restores the size asymptotically (Chung & Romano 2013, "Exact and
    asymptotically robust permutation tests", Ann. Statist. 41(2); for regression slopes with the HC
    studentisation, DiCiccio & Romano 2017, "Robust permutation tests for correlation and regression
    coefficients", JASA 112(519)). Under the null of no predictability the products (h_t - hbar) e_t of a
    predictable position and a martingale-difference return are uncorrelated, so White's HC0 suffices
    (no HAC lag). Circular shifts keep both series' autocorrelation (Ebisuzaki 1997, J. of Climate 10(9)).
    p_shift = (1 + #{shifted t >= observed t}) / (1 + K) (Phipson & Smyth 2010); ties count against the
    candidate, so a constant position (t = 0 for every shift) gets p = 1.

    The shifts break the position's alignment with the return's volatility, which the studentisation
    corrects only to first order: on 3-day GARCH/t(4) markets a position scaled to trailing volatility was
    rejected 8-10 % at 5 % (observed t sd 1.04 against shifted t sd 0.96). So the reported p is
    max(p_shift, p_bootstrap), p_bootstrap the studentised stationary bootstrap of the aligned P&L
    (``aligned_bootstrap_pvalue``, K resamples, seed + 1): both must reject, which keeps the level at the
    smaller of the two sizes (Berger 1982) and costs power only where one of them lacks it.

    returns: {"p", "p_shift", "p_bootstrap", "bootstrap_t", "bootstrap_block", "observed_t", "slope",
    "null_t_mean", "null_t_std", "shifts"}.
    raises ValueError for T < 20 or shapes that differ.
    """
    pos = np.clip(np.nan_to_num(np.asarray(position, dtype=np.float64)), -1.0, 1.0)
    m = np.nan_to_num(np.asarray(market, dtype=np.float64))
    n = pos.shape[0]
    if m.shape != pos.shape:
        raise ValueError(f"position {pos.shape} and market {m.shape} differ in shape")
    if n < 20:
        raise ValueError(f"circular-shift test needs >= 20 bars, got {n}")
    held, m = pos[:-1], m[1:]  # bar t's return against the position decided at close t-1
    n -= 1
    lo, hi = max(1, n // 10), max(n // 10 + 1, n - n // 10)
    k = min(shifts, hi - lo)
    offs = np.random.default_rng(seed).choice(np.arange(lo, hi), size=k, replace=False)
    obs = float(robust_slope_t(held, m))
    null = np.empty(k)
    for i in range(0, k, 64):  # (64, T) blocks keep memory small
        idx = (np.arange(n)[None, :] - offs[i:i + 64, None]) % n
        null[i:i + 64] = robust_slope_t(held[idx], m)
    hc = held - held.mean()
    sxx = float(hc @ hc)
    slope = float(hc @ (m - m.mean()) / sxx) if sxx > 0 else 0.0
    ge = int(np.sum(null >= obs - 1e-12 * max(abs(obs), 1e-300)))
    if not sxx > 0:
        ge = k
    p_shift = (1.0 + ge) / (1.0 + k)
    boot = aligned_bootstrap_pvalue(held, m, k, seed + 1)
    return {"p": max(p_shift, boot["p"]), "p_shift": p_shift, "p_bootstrap": boot["p"], "bootstrap_t": boot["t"],
            "bootstrap_block": boot["block"], "observed_t": obs, "slope": slope, "null_t_mean": float(null.mean()),
            "null_t_std": float(null.std()), "shifts": int(k)}


def aligned_bootstrap_pvalue(held: np.ndarray, market: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    """Studentised stationary-bootstrap p-value of the timing P&L, resampling (position, return) pairs together.

    held: (T,) float64 position held during each bar; market: (T,) float64 return of that bar (aligned: the
    caller has already lagged the position); reps: bootstrap resamples B; seed: their RNG.
    u_t = (h_t - hbar)(m_t - mbar) is the bar's P&L about the mean exposure (the numerator of the slope, as in
    ``robust_slope_t``); H0: E[u_t] = 0 (no timing). t = sqrt(T) ubar / sd(u); each resample u* (Politis &
    Romano 1994 stationary bootstrap, arch ``StationaryBootstrap``, mean block length by Politis & White 2004
    on u, capped at T/10) gives t* = sqrt(T) (ubar* - ubar) / sd(u*), the studentised root centred at the
    sample (Götze & Künsch 1996, Ann. Statist. 24(5): the studentised block bootstrap of a mean of dependent
    data is second-order accurate). p = (1 + #{t* >= t}) / (1 + B).

    Why beside the circular shifts: a shift keeps the position's own autocorrelation and exposure but
    breaks its *alignment* with the return's volatility. A position that scales with trailing volatility
    holds most when |m_t| is largest, so its P&L terms are sigma_t^2 z_t — heavier-tailed, fewer effective
    observations — while a shifted copy's are sigma_{t-k} sigma_t z_t; studentising equalises the variances but
    not the shapes, and on 3-day GARCH/t(4) markets the shift test rejected 8-10 % at 5 %. The bootstrap
    resamples the aligned pairs, so the observed statistic and its reference distribution share that shape;
    it in turn keeps only short-range dependence. The gate requires both (``run``: p = max of the two; an
    intersection of two tests has level <= the smaller of their sizes, Berger 1982).
    returns: {"p", "t", "block", "reps"}; p = 1 for a constant position.
    """
    from arch.bootstrap import StationaryBootstrap

    h = np.nan_to_num(np.asarray(held, dtype=np.float64))
    m = np.nan_to_num(np.asarray(market, dtype=np.float64))
    n = h.size
    u = (h - h.mean()) * (m - m.mean())
    sd = float(u.std(ddof=1)) if n > 1 else 0.0
    if n < 20 or not sd > 0 or not np.std(h) > 0:
        return {"p": 1.0, "t": 0.0, "block": 0, "reps": int(reps)}
    t_obs = math.sqrt(n) * float(u.mean()) / sd
    block = politis_white_block(u, max(n // 10, 1))
    ubar = float(u.mean())
    bs = StationaryBootstrap(block, u, seed=np.random.default_rng(seed))
    roots = bs.apply(lambda x: np.array([math.sqrt(x.size) * (x.mean() - ubar) / max(float(x.std(ddof=1)), 1e-300)]),
                     reps)[:, 0]
    ge = int(np.sum(roots >= t_obs - 1e-12 * max(abs(t_obs), 1e-300)))
    return {"p": (1.0 + ge) / (1.0 + reps), "t": t_obs, "block": int(block), "reps": int(reps)}


def circular_shift_mean_pvalue(position: np.ndarray, backtest: Any, shifts: int, seed: int) -> float:
    """The former statistic, kept for the size study (``benchmarks/gauntlet_size.py``): the circular-shift
    p-value of the *mean* net P&L. position: (T,); backtest: (T,) position -> (T,) net returns. Not at its
    size when the position depends on volatility; not used by the gate."""
    pos = np.nan_to_num(np.asarray(position, dtype=np.float64))
    n = pos.shape[0]
    lo, hi = max(1, n // 10), max(n // 10 + 1, n - n // 10)
    k = min(shifts, hi - lo)
    offs = np.random.default_rng(seed).choice(np.arange(lo, hi), size=k, replace=False)
    obs = float(np.nanmean(backtest(pos)))
    null = np.array([float(np.nanmean(backtest(np.roll(pos, int(o))))) for o in offs])
    return (1.0 + int(np.sum(null >= obs - 1e-15 * max(abs(obs), 1e-300)))) / (1.0 + k)


def politis_white_block(x: np.ndarray, cap: int) -> int:
    """Stationary-bootstrap block length of (T,) x by Politis & White (2004) (arch), in [1, cap]."""
    from arch.bootstrap import optimal_block_length

    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    if x.size < 10 or not np.std(x) > 0:
        return 1
    b = float(optimal_block_length(x)["stationary"].iloc[0])
    return int(min(max(round(b), 1), max(cap, 1)))


def bootstrap_pvalue(returns: np.ndarray, block: int, reps: int, seed: int) -> tuple[float, float]:
    """One-sided p-value of mean(returns) > 0: (1 + #{bootstrap mean of demeaned series >= mean}) / (1 + reps).

    returns: (T,) float64 per-bar returns (NaN -> 0); block: circular block length, bars.
    returns: (p_value, observed mean).
    """
    from arch.bootstrap import CircularBlockBootstrap

    r = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    obs = float(r.mean())
    bs = CircularBlockBootstrap(block, r - obs, seed=np.random.default_rng(seed))
    means = bs.apply(lambda x: np.array([x.mean()]), reps)[:, 0]
    return (1.0 + float(np.sum(means >= obs))) / (1.0 + reps), obs


def spa_pvalue(hourly_pnl: np.ndarray, block: int, reps: int, seed: int) -> float:
    """Hansen's SPA consistent p-value that no model beats the zero benchmark.

    hourly_pnl: (H, M) float64 P&L (returns) of M models per hour. returns: p-value.
    """
    from arch.bootstrap import SPA

    losses = -np.asarray(hourly_pnl, dtype=np.float64)
    spa = SPA(np.zeros(losses.shape[0]), losses, block_size=block, reps=reps, bootstrap="stationary",
              seed=np.random.default_rng(seed))
    spa.compute()
    return float(spa.pvalues["consistent"])


def spa_over(hedged: Sequence[np.ndarray], open_time: np.ndarray, cfg: Any) -> dict[str, Any]:
    """SPA over distinct candidates' (T,) hedged per-bar returns summed per hour; block length by
    Politis–White on the mean hourly P&L, capped at H/4. returns a JSON-ready dict with p (None when
    H < 20), block_hours, points and informative (H >= cfg.spa_min_points)."""
    pnl = np.column_stack([hourly_sums(h, open_time) for h in hedged])
    h = pnl.shape[0]
    out: dict[str, Any] = {"points": int(h), "models": int(pnl.shape[1]), "informative": h >= cfg.spa_min_points}
    if h < 20:
        return {**out, "p": None, "block_hours": None, "note": f"{h} hourly points: too few for SPA"}
    block = politis_white_block(pnl.mean(axis=1), h // 4)
    p = spa_pvalue(pnl, block, cfg.spa_reps, cfg.seed)
    note = "" if out["informative"] else f"only {h} hourly points (< {cfg.spa_min_points}): reported, uninformative"
    return {**out, "p": p, "block_hours": block, "note": note}


def run(ctx, cand, cfg, shared) -> StageResult:
    a, b = ctx.evaluation
    res = circular_shift_pvalue(cand.position[a:b], ctx.market_returns((a, b)), cfg.permutation_shifts,
                                cfg.seed + cand.rank)
    hedged = shared["oos_hedge"][cand.rank].hedged
    block = politis_white_block(hedged, max(len(hedged) // 20, 1))
    boot_p, mean = bootstrap_pvalue(hedged, block, cfg.bootstrap_reps, cfg.seed + cand.rank)
    spa = shared["spa"]
    net_mean = float(np.nanmean(cand.oos_result.returns))
    passed = res["p"] <= cfg.alpha and res["observed_t"] > res["null_t_mean"]
    reason = (f"timing: robust t {res['observed_t']:+.2f} of return on position vs {res['shifts']} circular "
              f"shifts {res['null_t_mean']:+.2f} ± {res['null_t_std']:.2f} (p {res['p_shift']:.3f}), aligned "
              f"bootstrap p {res['p_bootstrap']:.3f}: p {res['p']:.3f} "
              f"{'<=' if res['p'] <= cfg.alpha else '>'} {cfg.alpha} (net mean {net_mean:+.2e}/bar)")
    return StageResult(NAME, "circular-shift p-value", res["p"], res["p"], cfg.alpha, passed, reason, {
        **res, "statistic": "HC0-studentised slope t vs circular shifts (Chung & Romano 2013; DiCiccio & Romano 2017) "
                            "and studentised stationary bootstrap of the aligned P&L (Politis & Romano 1994); p = max",
        "observed_net_mean": net_mean, "bootstrap_p_hedged_mean": boot_p, "hedged_mean_per_bar": mean,
        "bootstrap_block_bars": block, "bootstrap_reps": cfg.bootstrap_reps, "spa": spa})
