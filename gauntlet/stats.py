"""Selection-bias statistics the gauntlet needs and no maintained package implements.

- Probabilistic Sharpe Ratio (PSR) and Deflated Sharpe Ratio (DSR):
  Bailey & López de Prado (2012) "The Sharpe Ratio Efficient Frontier",
  J. of Risk 15(2); Bailey & López de Prado (2014) "The Deflated Sharpe
  Ratio: Correcting for Selection Bias, Backtest Overfitting and
  Non-Normality", J. of Portfolio Management 40(5).
- Effective number of independent trials: hierarchical clustering of the
  trials' return series on the correlation distance sqrt((1 - rho) / 2)
  (López de Prado 2019, "A Data Science Solution to the Multiple-Testing
  Crisis in Financial Research", J. of Financial Data Science 1(1)).
- Probability of Backtest Overfitting by Combinatorially Symmetric Cross-
  Validation (CSCV): Bailey, Borwein, López de Prado & Zhu (2017), J. of
  Computational Finance 20(4), run over one representative per cluster of
  the contending trials (``effective_trials``), so junk and near-copies do
  not decide it.
- Market hedging (Jensen's alpha, the "skill, not beta" part of every test):
  r_s = alpha + beta r_m + e by least squares; the hedged series is
  r_s - beta r_m (Jensen 1968, J. of Finance 23(2)).
- Regression t-statistics with Newey–West HAC standard errors (Newey & West
  1987, Econometrica 55(3); lag rule floor(4 (T/100)^(2/9)), Newey & West 1994)
  and Holm's step-down adjustment (Holm 1979, Scand. J. Statistics 6(2)), both
  from statsmodels.

All Sharpe ratios here are per bar (mean / std of per-bar simple returns,
ddof=1) so they are consistent with the number of observations T.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from forge.backtest.metrics import sharpe_per_bar  # the one per-bar Sharpe (re-exported here)

EULER_GAMMA = 0.5772156649015329

__all__ = ["sharpe_per_bar", "probabilistic_sharpe_ratio", "expected_max_sharpe", "deflated_sharpe_ratio",
           "effective_trials", "EffectiveTrials", "contenders", "cluster_labels", "screening_ratio", "pbo_cscv", "PBOResult", "market_hedged", "Hedge",
           "holm_adjust", "hac_ols", "with_ledger_trials", "HACResult", "newey_west_lags", "hourly_sums", "psr_pvalue"]


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """PSR = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2) ).

    sr, sr_benchmark: per-observation Sharpe ratios; n_obs: T (> 1);
    skew: g3; kurtosis: g4, Pearson (not excess; 3 for a normal).
    returns: probability in [0, 1] that the true Sharpe exceeds sr_benchmark.
    Bailey & López de Prado 2012, eq. 8 / 2014, eq. 2.
    """
    if n_obs < 2:
        raise ValueError(f"PSR needs n_obs >= 2, got {n_obs}")
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not var > 0:
        var = 1e-12  # extreme skew/kurtosis; the statistic is then essentially a step
    return float(stats.norm.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(var)))


def expected_max_sharpe(n_trials: float, var_sharpe: float) -> float:
    """Expected maximum Sharpe among N independent trials with true Sharpe 0.

    SR0 = sqrt(V[SR]) ((1 - gamma) Z^-1(1 - 1/N) + gamma Z^-1(1 - 1/(N e))), gamma = Euler-Mascheroni.
    n_trials: effective N (>= 1; N = 1 gives 0); var_sharpe: variance of the trials' Sharpe ratios
    (same units as the Sharpe tested). Bailey & López de Prado 2014, eq. 1 / Appendix.
    """
    if n_trials <= 1 or var_sharpe <= 0:
        return 0.0
    z = stats.norm.ppf
    return math.sqrt(var_sharpe) * ((1 - EULER_GAMMA) * z(1 - 1 / n_trials) + EULER_GAMMA * z(1 - 1 / (n_trials * math.e)))


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: float, var_sharpe: float) -> dict[str, float]:
    """DSR: PSR of the selected strategy against SR0 = expected max Sharpe of ``n_trials`` null trials.

    returns: (T,) float64 per-bar simple returns of the selected strategy;
    n_trials: effective number of independent trials; var_sharpe: variance
    of the per-bar Sharpe ratios across trials.
    returns: dict with sharpe, sr0, skew, kurtosis (Pearson), n_obs, psr0 (PSR against 0) and dsr.
    Bailey & López de Prado 2014.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    sr = sharpe_per_bar(r)
    if r.size > 2 and np.std(r) > 0:
        g3, g4 = float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))
    else:
        g3, g4 = 0.0, 3.0
    sr0 = expected_max_sharpe(n_trials, var_sharpe)
    n = int(r.size)
    return {"sharpe": sr, "sr0": sr0, "skew": g3, "kurtosis": g4, "n_obs": n,
            "psr0": probabilistic_sharpe_ratio(sr, 0.0, n, g3, g4) if n > 1 else 0.0,
            "dsr": probabilistic_sharpe_ratio(sr, sr0, n, g3, g4) if n > 1 else 0.0}


def upper_semivariance(x: np.ndarray) -> float:
    """Mean squared deviation above the median: mean((x - med)^2 | x >= med).

    The deflation benchmark SR0 is the expected maximum, so the spread that
    matters is the upper tail's. GP trials include degenerate strategies (e.g.
    flipping every bar and paying the taker fee each time: per-bar Sharpe near
    -1) whose Sharpe ratios sit far below the rest; a plain variance would
    inflate SR0 with them and reject everything.
    """
    x = np.asarray(x, dtype=np.float64)
    med = float(np.median(x))
    up = x[x >= med]
    return float(np.mean((up - med) ** 2)) if up.size else 0.0


@dataclass(frozen=True)
class EffectiveTrials:
    """n_raw: trials given (distinct in-sample positions); n_dominated: of them, trials whose in-sample net
    loss is significant (``contenders``: fee burners, never a selection's choice), left out of the clusters;
    n_clusters: clusters of the contenders (constant series count as one); n_effective: the DSR's N,
    ``round(n_clusters * screening_ratio)`` (``effective_trials``); screening_ratio: bred candidates per full
    evaluation (1 without a surrogate); var_sharpe: variance of the cluster representatives' per-bar Sharpe
    ratios (upper semivariance about the median, see ``upper_semivariance``); labels: (n_raw,) int cluster
    ids (-1 = constant, -2 = dominated); representatives: (n_clusters',) row index of each live cluster's
    representative (the member closest to the cluster's mean series: the CSCV strategies); sampled: True
    when more than ``max_trials`` contenders were clustered by sample-and-assign."""

    n_raw: int
    n_effective: int
    var_sharpe: float
    labels: np.ndarray
    n_clusters: int = 0
    n_dominated: int = 0
    screening_ratio: float = 1.0
    representatives: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sampled: bool = False


def contenders(sharpe: np.ndarray, n_obs: int, level: float = 0.01) -> np.ndarray:
    """(N,) bool: trials whose in-sample per-bar Sharpe is not significantly negative at ``level``.

    sharpe: (N,) per-bar Sharpe ratios on ``n_obs`` bars. A trial is *dominated* when SR < z_level /
    sqrt(n_obs - 1) (the PSR test of SR < 0 under normality, Bailey & López de Prado 2012, eq. 8 with
    g3 = 0, g4 = 3): its loss is not luck but costs — a fee-burning program no selection picks. Under the
    null of no skill a low-turnover trial's Sharpe is ~N(-c, 1/T) and is kept with probability ~1 - level.
    Leaving dominated trials out of CSCV can only raise PBO (they sit at the bottom of every test half and
    push whatever the training half chose up the ranks), and out of DSR's N changes SR0 by the chance that
    one of them is the maximum of the null trials, which is below ``level`` each.
    """
    sh = np.asarray(sharpe, dtype=np.float64)
    return sh >= stats.norm.ppf(level) / math.sqrt(max(n_obs - 1, 1))


def cluster_labels(x: np.ndarray, max_correlation: float, max_trials: int = 5000, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Average-linkage clusters of the rows of (N, T) x on the correlation distance d = sqrt((1 - rho) / 2),
    cut at d = sqrt((1 - max_correlation) / 2) (López de Prado 2019; scipy.cluster.hierarchy).

    Rows must have sd > 0. Up to ``max_trials`` rows every pair is clustered (O(N^2) memory). Above it,
    by cluster: a seeded sample of ``max_trials`` rows is clustered, every other row joins the cluster whose
    mean series it is most correlated with when that correlation is >= max_correlation, and the rows left
    are clustered the same way (recursively), their clusters numbered after the first ones.
    returns: ((N,) int64 labels 0..K-1, sampled).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = x.shape[0]
    cut = math.sqrt((1.0 - max_correlation) / 2.0)
    if n == 1:
        return np.zeros(1, dtype=np.int64), False

    def full(rows: np.ndarray) -> np.ndarray:
        rho = np.clip(np.corrcoef(x[rows]), -1.0, 1.0)
        d = np.sqrt(np.clip((1.0 - rho) / 2.0, 0.0, 1.0))
        np.fill_diagonal(d, 0.0)
        return fcluster(linkage(squareform(d, checks=False), method="average"), t=cut, criterion="distance") - 1

    if n <= max_trials:
        return full(np.arange(n)).astype(np.int64), False
    rng = np.random.default_rng(seed)
    labels = np.full(n, -1, dtype=np.int64)
    pick = np.sort(rng.choice(n, size=max_trials, replace=False))
    lab = full(pick)
    labels[pick] = lab
    k = int(lab.max()) + 1
    z = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    cent = np.vstack([z[pick[lab == j]].mean(axis=0) for j in range(k)])
    cent /= np.maximum(cent.std(axis=1, keepdims=True), 1e-300)
    rest = np.flatnonzero(labels < 0)
    for lo in range(0, rest.size, 2048):
        r = rest[lo:lo + 2048]
        rho = (z[r] @ (cent - cent.mean(axis=1, keepdims=True)).T) / x.shape[1]
        best = rho.argmax(axis=1)
        ok = rho[np.arange(r.size), best] >= max_correlation
        labels[r[ok]] = best[ok]
    left = np.flatnonzero(labels < 0)
    if left.size:
        sub, _ = cluster_labels(x[left], max_correlation, max_trials, seed + 1)
        labels[left] = k + sub
    return labels, True


def screening_ratio(generations: list[dict]) -> float:
    """Bred candidates per full evaluation over a run's ``generations.jsonl`` rows: sum(candidates) /
    sum(candidates - evals_saved) (1.0 when no row says, i.e. no surrogate screening)."""
    bred = sum(float(g.get("candidates") or 0) for g in generations)
    saved = sum(float(g.get("evals_saved") or 0) for g in generations)
    return bred / (bred - saved) if bred > saved > 0 else 1.0


def effective_trials(returns: np.ndarray, max_correlation: float = 0.5,
                     sharpe: np.ndarray | None = None, *, n_obs: int | None = None,
                     screening: float = 1.0, max_trials: int = 5000, seed: int = 0,
                     dominated_level: float = 0.01) -> EffectiveTrials:
    """Cluster all trials' return series; the clusters of contenders are the effectively independent trials.

    returns: (N, T) float64, one row of per-period returns per trial (NaN -> 0), all trials of the search.
    max_correlation: series correlated above this end up in one cluster (``cluster_labels``; sampled by
    cluster above ``max_trials`` rows). sharpe: optional (N,) per-trial Sharpe ratios at the resolution of
    the tested Sharpe (e.g. per 1-minute bar while clustering on hourly sums) and n_obs its observations;
    with both, dominated trials (``contenders``) are left out first, so fee-burning junk changes neither
    the clusters nor N; var_sharpe is then the variance of the clusters' mean Sharpe.
    screening: bred candidates per full evaluation (``screening_ratio``).

    N for the DSR: n_effective = round(K * screening), K the contender clusters. The candidates a
    surrogate screened out were bred from the same population by the same operators and went through a
    selection (the surrogate's ranking) whose survivors are the evaluated trials, so the selection of the
    champion ran over all of them; unevaluated, they cannot be clustered, so they are counted at the rate
    the evaluated ones formed clusters: each evaluated trial stands for ``screening`` candidates. The
    extrapolation is linear while the number of clusters grows sublinearly with the trials drawn (near-
    copies fall into existing clusters), so the N it gives is an upper bound, i.e. a conservative DSR
    (SR0 grows like sqrt(2 ln N), so an overstated N costs little power).
    returns: EffectiveTrials. Source: López de Prado 2019 (clustered trials); Bailey & López de Prado 2014.
    """
    x = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    n = x.shape[0]
    sd = x.std(axis=1) if n else np.zeros(0)
    labels = np.full(n, -1, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    if sharpe is not None and n_obs is not None:
        keep = contenders(sharpe, n_obs, dominated_level)
        labels[~keep] = -2
    live = np.flatnonzero((sd > 0) & keep)
    reps_idx: list[int] = []
    sampled = False
    k = 0
    if live.size:
        lab, sampled = cluster_labels(x[live], max_correlation, max_trials, seed)
        labels[live] = lab
        k = int(lab.max()) + 1
        for j in range(k):
            members = live[lab == j]
            if members.size == 1:
                reps_idx.append(int(members[0]))
                continue
            m = x[members].mean(axis=0)
            zc = (x[members] - x[members].mean(axis=1, keepdims=True)) / x[members].std(axis=1, keepdims=True)
            zm = (m - m.mean()) / max(float(m.std()), 1e-300)
            reps_idx.append(int(members[int(np.argmax(zc @ zm))]))
    has_const = bool(((labels == -1)).any())
    n_clusters = k + (1 if has_const else 0)
    if sharpe is not None:
        sh = np.asarray(sharpe, dtype=np.float64)
        srs = [float(sh[labels == j].mean()) for j in range(k)]
    else:
        srs = [sharpe_per_bar(x[labels == j].mean(axis=0)) for j in range(k)]
    srs += [0.0] if has_const else []
    var = upper_semivariance(np.array(srs)) if len(srs) > 1 else 0.0
    n_eff = max(int(round(max(n_clusters, 1) * max(screening, 1.0))), 1)
    return EffectiveTrials(n_raw=n, n_effective=n_eff, var_sharpe=var, labels=labels, n_clusters=n_clusters,
                           n_dominated=int((labels == -2).sum()), screening_ratio=float(max(screening, 1.0)),
                           representatives=np.array(reps_idx, dtype=np.int64), sampled=sampled)


@dataclass(frozen=True)
class PBOResult:
    """pbo: share of CSCV splits whose in-sample best is below the out-of-sample
    median (logit <= 0); logits: (C(S, S/2),) float64 lambda per split;
    n_splits, n_blocks, n_strategies; is_sharpe / oos_sharpe: (C,) float64 Sharpe of the in-sample best on
    the training and on the test half of each split (per period of the rows given); prob_loss: share of
    splits whose in-sample best has test-half Sharpe <= 0 (the "probability of loss"); degradation: (slope,
    intercept) of the least-squares line oos_sharpe ~ is_sharpe (the "performance degradation"). The last
    three are Bailey, Borwein, López de Prado & Zhu's (2017, section 2.3) companion statistics of PBO."""

    pbo: float
    logits: np.ndarray
    n_splits: int
    n_blocks: int
    n_strategies: int
    is_sharpe: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    oos_sharpe: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    prob_loss: float = float("nan")
    degradation: tuple[float, float] = (float("nan"), float("nan"))


def pbo_cscv(returns: np.ndarray, n_blocks: int = 16) -> PBOResult:
    """Probability of Backtest Overfitting by CSCV.

    returns: (T, N) float64 per-period returns of N strategies (N >= 2,
    T >= n_blocks); n_blocks: S, even. Each of the C(S, S/2) splits ranks the
    strategies by Sharpe on the training half, takes the best, and records
    lambda = logit(relative rank of that strategy on the test half).
    Per-block sums and sums of squares are precomputed, so each split costs O(S N).
    Also returned, per split, the in-sample best's Sharpe on both halves, from which the paper's companion
    statistics follow: the probability of loss (share of splits where that strategy's test-half Sharpe is
    <= 0) and the performance degradation (slope and intercept of test-half on training-half Sharpe).
    raises ValueError for an odd S or too few rows/strategies.
    Bailey, Borwein, López de Prado & Zhu 2017 (section 2.3).
    """
    m = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    t, n = m.shape
    if n_blocks % 2 or n_blocks < 2:
        raise ValueError(f"n_blocks must be even and >= 2, got {n_blocks}")
    if n < 2 or t < n_blocks:
        raise ValueError(f"PBO needs >= 2 strategies and >= n_blocks rows, got T={t}, N={n}")
    edges = np.linspace(0, t, n_blocks + 1).astype(np.int64)
    s1 = np.add.reduceat(m, edges[:-1], axis=0)  # (S, N) per-block sums
    s2 = np.add.reduceat(m * m, edges[:-1], axis=0)
    cnt = np.diff(edges).astype(np.float64)
    train = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)), dtype=np.int64)
    ind = np.zeros((train.shape[0], n_blocks))
    ind[np.arange(train.shape[0])[:, None], train] = 1.0

    def sharpe(w: np.ndarray) -> np.ndarray:  # w: (C, S) block indicators -> (C, N) Sharpe of those blocks
        k = (w @ cnt)[:, None]
        mu = (w @ s1) / k
        var = np.maximum((w @ s2) / k - mu * mu, 0.0) * k / np.maximum(k - 1, 1)
        sd = np.sqrt(var)
        return np.where(sd > 0, mu / np.where(sd > 0, sd, 1.0), 0.0)

    logits = np.empty(train.shape[0])
    is_best, oos_best = np.empty(train.shape[0]), np.empty(train.shape[0])
    for lo in range(0, train.shape[0], 2048):  # chunks keep the (C, N) matrices small
        w = ind[lo:lo + 2048]
        sr_tr, sr_te = sharpe(w), sharpe(1.0 - w)
        best = np.argmax(sr_tr, axis=1)
        b = sr_te[np.arange(w.shape[0]), best][:, None]
        is_best[lo:lo + 2048] = sr_tr[np.arange(w.shape[0]), best]
        oos_best[lo:lo + 2048] = b[:, 0]
        # relative rank in (0, 1) of the in-sample best on the test half (average ranks for ties)
        rank = (sr_te < b).sum(axis=1) + ((sr_te == b).sum(axis=1) + 1) / 2.0
        wr = rank / (n + 1.0)
        logits[lo:lo + 2048] = np.log(wr / (1.0 - wr))
    lg = logits
    dx = is_best - is_best.mean()
    slope = float(dx @ (oos_best - oos_best.mean()) / (dx @ dx)) if float(dx @ dx) > 0 else 0.0
    return PBOResult(pbo=float(np.mean(lg <= 0.0)), logits=lg, n_splits=lg.size, n_blocks=n_blocks, n_strategies=n,
                     is_sharpe=is_best, oos_sharpe=oos_best, prob_loss=float(np.mean(oos_best <= 0.0)),
                     degradation=(slope, float(oos_best.mean() - slope * is_best.mean())))


@dataclass(frozen=True)
class Hedge:
    """alpha: per-bar intercept; beta: market exposure; hedged: (T,) float64 r_s - beta r_m (alpha + residual)."""

    alpha: float
    beta: float
    hedged: np.ndarray


def market_hedged(strategy: np.ndarray, market: np.ndarray) -> Hedge:
    """Strategy returns net of their market exposure (Jensen 1968).

    strategy, market: (T,) float64 per-bar simple returns on the same bars (NaN -> 0; the market
    series is buy-and-hold's gross return). beta = cov(r_s, r_m) / var(r_m) (0 when the market is
    flat); hedged = r_s - beta r_m, whose mean is Jensen's alpha. A constant position c has
    hedged returns of zero (minus its costs): holding the market is beta, not skill.
    raises ValueError when the shapes differ.
    """
    rs = np.nan_to_num(np.asarray(strategy, dtype=np.float64))
    rm = np.nan_to_num(np.asarray(market, dtype=np.float64))
    if rs.shape != rm.shape:
        raise ValueError(f"strategy {rs.shape} and market {rm.shape} returns differ in shape")
    dm = rm - rm.mean()
    vm = float(dm @ dm)
    beta = float((rs - rs.mean()) @ dm / vm) if vm > 0 else 0.0
    hedged = rs - beta * rm
    return Hedge(alpha=float(hedged.mean()), beta=beta, hedged=hedged)


def psr_pvalue(returns: np.ndarray) -> tuple[float, dict[str, float]]:
    """One-sided p-value 1 - PSR(SR* = 0) of (T,) float64 per-bar returns (Bailey & López de Prado 2012).

    returns: (p, {"sharpe", "skew", "kurtosis", "n_obs", "psr0"}); p = 1.0 for fewer than 3 observations
    or a constant series.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 3 or not np.std(r) > 0:
        return 1.0, {"sharpe": 0.0, "skew": 0.0, "kurtosis": 3.0, "n_obs": int(r.size), "psr0": 0.0}
    sr = sharpe_per_bar(r)
    g3, g4 = float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))
    psr = probabilistic_sharpe_ratio(sr, 0.0, int(r.size), g3, g4)
    return 1.0 - psr, {"sharpe": sr, "skew": g3, "kurtosis": g4, "n_obs": int(r.size), "psr0": psr}


def holm_adjust(pvalues: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values (statsmodels ``multipletests(method="holm")``).

    pvalues: (m,) float64 in [0, 1]. returns: (m,) float64 adjusted p-values; rejecting where
    adjusted <= alpha controls the family-wise error rate at alpha under any dependence.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    return np.asarray(multipletests(p, method="holm")[1], dtype=np.float64)


def newey_west_lags(n_obs: int) -> int:
    """Newey–West (1994) automatic lag: floor(4 (T/100)^(2/9)), at least 1."""
    return max(1, int(4.0 * (max(n_obs, 1) / 100.0) ** (2.0 / 9.0)))


@dataclass(frozen=True)
class HACResult:
    """coef, se, t: of the tested regressor; p_one_sided: P(T >= t) under H0 coef = 0 (normal
    approximation); lags: Newey–West lags used; n_obs: rows; controls: number of other regressors."""

    coef: float
    se: float
    t: float
    p_one_sided: float
    lags: int
    n_obs: int
    controls: int


def hac_ols(y: np.ndarray, x: np.ndarray, controls: np.ndarray | None = None, lags: int | None = None) -> HACResult:
    """OLS y ~ 1 + x + controls; t-test of x's coefficient with Newey–West HAC standard errors.

    y, x: (T,) float64; controls: (T, k) float64 or None. Rows with any non-finite value are dropped.
    lags: Newey–West lags (default ``newey_west_lags(T)``). The HAC errors stay valid for a persistent
    regressor (a position held for many bars) and heteroskedastic, autocorrelated errors.
    raises ValueError with fewer than 30 usable rows or a constant x. Source: Newey & West 1987
    (statsmodels ``OLS.fit(cov_type="HAC")``).
    """
    import statsmodels.api as sm

    cols = [np.asarray(x, dtype=np.float64)]
    if controls is not None and np.size(controls):
        c = np.asarray(controls, dtype=np.float64)
        cols += [c[:, j] for j in range(c.shape[1])] if c.ndim == 2 else [c]
    xm = np.column_stack(cols)
    yv = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(yv) & np.isfinite(xm).all(axis=1)
    yv, xm = yv[ok], xm[ok]
    if yv.size < 30:
        raise ValueError(f"HAC regression needs >= 30 finite rows, got {yv.size}")
    if not np.std(xm[:, 0]) > 0:
        raise ValueError("the tested regressor is constant")
    lag = newey_west_lags(yv.size) if lags is None else int(lags)
    fit = sm.OLS(yv, sm.add_constant(xm, has_constant="add")).fit(cov_type="HAC", cov_kwds={"maxlags": lag})
    coef, se = float(fit.params[1]), float(fit.bse[1])
    t = coef / se if se > 0 else 0.0
    return HACResult(coef=coef, se=se, t=t, p_one_sided=float(stats.norm.sf(t)), lags=lag, n_obs=int(yv.size),
                     controls=xm.shape[1] - 1)


def hourly_sums(returns: np.ndarray, open_time: np.ndarray) -> np.ndarray:
    """Sum (T,) per-bar returns (NaN -> 0) into clock hours. open_time: (T,) int64 ms.
    returns: (H,) float64, H = hours spanned (an hour with no bars sums to 0)."""
    t = np.asarray(open_time, dtype=np.int64)
    hours = (t - t[0]) // 3_600_000
    return np.bincount(hours, weights=np.nan_to_num(np.asarray(returns, dtype=np.float64)),
                       minlength=int(hours[-1]) + 1)


def with_ledger_trials(n_effective: float, n_own: int, n_other: int) -> float:
    """DSR's N once other runs' trials on overlapping bars are counted (the trial ledger, ``forge.core.ledger``).

    n_effective: this run's effective number of independent trials (its clusters); n_own: trials this run
    evaluated (>= 1); n_other: trials other runs evaluated on bars overlapping this run's in-sample range.
    returns n_effective * (n_own + n_other) / n_own: every other run is assumed to cluster like this one (the
    same search on the same bars has as many effective trials per evaluated genome), so N grows in proportion
    to all trials of the selection -- Bailey & López de Prado 2014 count every trial behind a reported
    maximum, including those of discarded runs.  Never below n_effective.
    """
    own = max(int(n_own), 1)
    return float(n_effective) * (own + max(int(n_other), 0)) / own

