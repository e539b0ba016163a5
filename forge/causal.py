"""PCMCI causal feature filter (tigramite) and the shared link test.

Before evolution, every candidate feature is tested for a lagged causal link
into the next-bar log return on the in-sample segment only; features without
a significant link do not become GP terminals.

Method (Runge et al. 2019, "Detecting and quantifying causal associations in
large nonlinear time series datasets", Sci. Adv. 5, eaau4996), with the
settings measured in ``ARCHITECTURE.md`` ("Measured pitfalls"):

- variables are stationary transforms only (returns, z-scores, oscillators);
  the return column is the realised return of bar t, so a link
  ``feature(t-tau) -> return(t)`` with ``tau >= 1`` (``tau_min=1``) is a claim
  about the *future* return as seen from the feature's bar;
- link assumptions restrict the graph to links into the return column from
  the features' lags (plus each feature's own lags so its autocorrelation is
  conditioned on); the return's own lags are not separate candidates because
  ``ret_1`` already is that series (a duplicate column would make ParCorr's
  regressions singular);
- tigramite runs with ``fdr_method='none'``; Benjamini-Hochberg is applied
  here to the p-values of the links into the return column only (tigramite's
  own BH also counts the features' highly significant own-lag links and is
  too loose: a pure-noise feature survived in 3/20 seeds);
- missing values (warm-up, data gaps) are passed as tigramite's
  ``missing_flag``; a sample is used only when every variable at every lag of
  the test is present, so no test bridges a gap;
- the return is standardised by a causal EWMA volatility (``vol_standardized``):
  ParCorr's analytic p-values assume homoscedastic noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from numba import njit

from forge.core.errors import ConfigError, DataError

__all__ = ["LinkTest", "CausalReport", "pcmci_links_into", "causal_filter", "benjamini_hochberg",
           "rolling_mean_complete", "vol_standardized"]

_MISSING = -9.87654321e20  # tigramite missing_flag; never a real value of a stationary feature


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values).

    p: (m,) float64 p-values in [0, 1] (NaN allowed, kept NaN).
    returns: (m,) float64 q-values; reject at level a where q <= a.
    Source: Benjamini & Hochberg (1995), JRSS B 57(1); the step-up form of
    statsmodels' ``multipletests(method='fdr_bh')``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def vol_standardized(r: np.ndarray, halflife: float = 60.0) -> np.ndarray:
    """Returns divided by a causal EWMA volatility estimate (z-scores).

    r: (n,) float64 per-bar returns, NaN across gaps (the estimate restarts after a gap).
    returns: (n,) float64 r[t] / sigma[t-1], sigma^2 an EWMA of r^2 with the given half-life (bars)
    over bars up to t-1 only; NaN until 20 bars of a segment have been seen.
    ParCorr's analytic p-values assume homoscedastic noise; on volatility-clustered returns a
    position or feature that tracks the volatility regime gets anti-conservative p-values (measured
    on null markets in benchmarks/gauntlet_honesty.py). Standardising removes most of it.
    """
    r = np.ascontiguousarray(r, dtype=np.float64)
    out = np.full(r.shape, np.nan)
    _vol_standardized_nb(r, 0.5 ** (1.0 / halflife), out)
    return out


@njit(cache=True)
def _vol_standardized_nb(r, lam, out):  # pragma: no cover - compiled
    var = 0.0
    seen = 0
    for t in range(r.shape[0]):
        x = r[t]
        if not np.isfinite(x):
            var = 0.0
            seen = 0
            continue
        if seen >= 20 and var > 0:
            out[t] = x / np.sqrt(var)
        if seen == 0:
            var = x * x
        else:
            var = lam * var + (1 - lam) * x * x
        seen += 1


@dataclass(frozen=True)
class LinkTest:
    """One tested link ``source(t - lag) -> target(t)``.

    value: partial correlation (ParCorr's MCI statistic), p: MCI p-value,
    q: Benjamini-Hochberg q-value over all links into the target.
    """

    source: str
    lag: int
    value: float
    p: float
    q: float


COND_IND_TESTS = ("parcorr", "robust_parcorr", "parcorr_hc")
"""Conditional-independence tests :func:`pcmci_links_into` accepts (see :func:`_cond_test`)."""


def hc_partial_corr_pvalue(rx: np.ndarray, ry: np.ndarray, dof: int) -> float:
    """Two-sided p of zero partial correlation, studentised robustly to (conditional) heteroskedasticity.

    rx, ry: (T,) OLS residuals of X and Y on the conditions Z (Frisch–Waugh: their correlation is the partial
    correlation); dof: T - dim (as ParCorr's analytic test).  Statistic: Dalla, Giraitis & Phillips (2022),
    "Robust tests for white noise and cross-correlation", *Econometric Theory* 38(5), 913-941, eq. (2.4):
    ``t = sum(e_t) / sqrt(sum(e_t^2))`` with ``e_t = rx_t ry_t`` -- the White (1980) HC0 score statistic of the
    coefficient of X in ``Y ~ X + Z`` under the null.  Unlike ParCorr's t, whose variance assumes
    Var(rx ry) = Var(rx) Var(ry), it stays N(0, 1) when the variance of one series moves with the other's level
    (volatility clustering, heavy tails: Romano & Thombs 1996).  p from Student's t with ``dof`` degrees of
    freedom (-> the normal of the source as T grows); NaN when dof < 1 or the products are all zero."""
    e = np.asarray(rx, dtype=np.float64) * np.asarray(ry, dtype=np.float64)
    ss = float(np.dot(e, e))
    if dof < 1 or not ss > 0:
        return float("nan")
    from scipy import stats

    t = float(e.sum()) / np.sqrt(ss)
    return float(2.0 * stats.t.sf(abs(t), dof))


def _parcorr_hc():
    """tigramite's ParCorr with the heteroskedasticity-robust significance of :func:`hc_partial_corr_pvalue`
    (the dependence measure, PCMCI's ``val_matrix``, stays the partial correlation)."""
    from tigramite.independence_tests.parcorr import ParCorr

    class ParCorrHC(ParCorr):
        @property
        def measure(self):
            return "par_corr_hc"

        def _get_p_value(self, val, array, xyz, T, dim, data_type=None, sig_override=None):
            if (sig_override or self.significance) != "analytic":
                return super()._get_p_value(val, array, xyz, T, dim, data_type, sig_override)
            rx = self._get_single_residuals(np.array(array, dtype=np.float64), target_var=0)
            ry = self._get_single_residuals(np.array(array, dtype=np.float64), target_var=1)
            return hc_partial_corr_pvalue(rx, ry, T - dim)

    return ParCorrHC(significance="analytic")


def _cond_test(name: str, seed: int):
    """The tigramite CondIndTest called ``name``: "parcorr" (analytic Student t of the partial correlation),
    "robust_parcorr" (rank-to-Gaussian marginals first; Runge 2018) or "parcorr_hc" (the partial correlation
    with a heteroskedasticity-robust t, :func:`hc_partial_corr_pvalue`)."""
    from tigramite.independence_tests.parcorr import ParCorr

    if name == "parcorr":
        return ParCorr(significance="analytic")
    if name == "robust_parcorr":
        from tigramite.independence_tests.robust_parcorr import RobustParCorr

        return RobustParCorr(significance="analytic")
    if name == "parcorr_hc":
        return _parcorr_hc()
    raise ConfigError(f"cond_ind_test must be one of {', '.join(COND_IND_TESTS)}, got {name!r}")


def pcmci_links_into(
    data: np.ndarray,
    names: Sequence[str],
    target: int,
    *,
    sources: Sequence[int] | None = None,
    tau_min: int = 1,
    tau_max: int = 5,
    pc_alpha: float = 0.05,
    cond_ind_test: str = "parcorr",
    autoregressive_sources: bool = True,
    target_autoregressive: bool = False,
    exogenous: Sequence[int] = (),
    seed: int = 0,
) -> list[LinkTest]:
    """PCMCI over ``data`` with links restricted to those into ``target``.

    data: (T, N) float64, stationary variables in columns, rows in time order
    (one row per bar); NaN marks missing values (never bridged).
    names: N column names. target: column index of the effect (e.g. the
    realised return of bar t). sources: columns allowed to cause the target
    (default: every other column). tau_min >= 1 (lag-0 links are undirected
    and leak same-bar information).
    autoregressive_sources: also allow each source's own lags into itself, so
    the MCI test conditions on the source's past (the measured setting).
    target_autoregressive: also test the target's own lags (the market's own
    lags when the target is the return); they are reported and BH-counted.
    exogenous: sources that are deterministic functions of time (the UTC
    clock terminals): they get no autoregressive links, so the MCI test does
    not condition them on their own past.  Such a series has no innovation
    (its value at t-1 is a function of its values at t-2..t-6), so that
    conditioning would leave it no variance and no link could ever be found;
    nothing in the data causes the clock, so it has no parents to condition
    on (Runge et al. 2019, Sci. Adv. 5:eaau4996: MCI conditions a source on
    its parents).
    returns: one LinkTest per (source, lag) with BH q-values over all of them,
    sorted by p-value. raises DataError if fewer than 50 complete rows remain.
    """
    from tigramite import data_processing as pp
    from tigramite.pcmci import PCMCI

    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise DataError(f"data must be (T, {len(names)}), got {x.shape}")
    if not 1 <= tau_min <= tau_max:
        raise ConfigError(f"need 1 <= tau_min <= tau_max, got {tau_min}, {tau_max}")
    n_vars = x.shape[1]
    src = [i for i in (range(n_vars) if sources is None else sources) if i != target]
    complete = np.isfinite(x).all(axis=1)
    if int(complete.sum()) < 50 + tau_max:
        raise DataError(f"PCMCI needs at least {50 + tau_max} complete rows, got {int(complete.sum())}")
    x = np.where(np.isfinite(x), x, _MISSING)
    df = pp.DataFrame(x, var_names=list(names), missing_flag=_MISSING)
    links: dict[int, dict[tuple[int, int], str]] = {j: {} for j in range(n_vars)}
    parents = src + ([target] if target_autoregressive else [])
    links[target] = {(i, -tau): "-?>" for i in parents for tau in range(tau_min, tau_max + 1)}
    if autoregressive_sources:
        exo = set(exogenous)
        for i in src:
            if i not in exo:
                links[i] = {(i, -tau): "-?>" for tau in range(tau_min, tau_max + 1)}
    pcmci = PCMCI(dataframe=df, cond_ind_test=_cond_test(cond_ind_test, seed), verbosity=0)
    res = pcmci.run_pcmci(link_assumptions=links, tau_min=tau_min, tau_max=tau_max,
                          pc_alpha=pc_alpha, fdr_method="none")
    pm, vm = res["p_matrix"], res["val_matrix"]
    rows = [(i, tau, float(vm[i, target, tau]), float(pm[i, target, tau]))
            for i in parents for tau in range(tau_min, tau_max + 1)]
    q = benjamini_hochberg(np.array([r[3] for r in rows]))
    out = [LinkTest(names[i], tau, v, p, float(qq)) for (i, tau, v, p), qq in zip(rows, q)]
    return sorted(out, key=lambda t: (t.p, t.source, t.lag))


@dataclass
class CausalReport:
    """Result of the feature filter; saved as ``causal.json`` in the run directory.

    kept: feature names that become GP terminals, in candidate order.
    links: every tested (feature, lag) link into the return.
    reasons: per candidate feature, why it was kept or dropped.
    """

    candidates: tuple[str, ...]
    kept: tuple[str, ...]
    links: list[LinkTest]
    reasons: dict[str, str]
    settings: dict[str, Any]
    n_samples: int
    seconds: float = 0.0
    dropped_constant: tuple[str, ...] = field(default_factory=tuple)
    smoothed: dict[str, Any] = field(default_factory=dict)

    def best_link(self, name: str) -> LinkTest | None:
        ls = [t for t in self.links if t.source == name]
        return min(ls, key=lambda t: t.p) if ls else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "PCMCI (tigramite), links into the next-bar log return only, tau_min=1, "
                      "fdr_method='none' + Benjamini-Hochberg over links into the return",
            "settings": self.settings,
            "n_samples": self.n_samples,
            "seconds": round(self.seconds, 3),
            "candidates": list(self.candidates),
            "kept": list(self.kept),
            "reasons": self.reasons,
            "parents_of_return": [
                {"feature": t.source, "lag": t.lag, "partial_corr": t.value, "p": t.p, "q": t.q}
                for t in self.links if t.q <= self.settings["alpha_level"]
            ],
            "links": [{"feature": t.source, "lag": t.lag, "partial_corr": t.value, "p": t.p, "q": t.q}
                      for t in self.links],
            "smoothed": {
                "method": "per-bar features' w-bar means sampled every w bars -> sum of the next w bars' "
                          "vol-standardised returns (PCMCI, lags 1..2 blocks, BH over all smoothed links)",
                **{k: v for k, v in self.smoothed.items() if k != "links"},
                "links": [{"feature": t.source, "lag_blocks": t.lag, "partial_corr": t.value, "p": t.p, "q": t.q}
                          for t in self.smoothed.get("links", [])],
            },
        }

    def render_rows(self) -> list[list[str]]:
        """Header row then one row per candidate: feature, best lag, MCI value, p, q, decision."""
        rows = [["feature", "lag", "partial corr", "p", "q (BH)", "decision"]]
        for name in self.candidates:
            t = self.best_link(name)
            if self.reasons.get(name, "").startswith("kept: smoothed form"):  # its row is the smoothed link
                s = min((x for x in self.smoothed.get("links", []) if _smoothed_source(x.source)[0] == name),
                        key=lambda x: x.p)
                w = _smoothed_source(s.source)[1]
                rows.append([name, f"{s.lag}x{w}", f"{s.value:+.4f}", f"{s.p:.2e}", f"{s.q:.2e}",
                             f"kept (smoothed: {s.source})"])
            elif t is None:
                rows.append([name, "-", "-", "-", "-", self.reasons.get(name, "dropped")])
            else:
                rows.append([name, str(t.lag), f"{t.value:+.4f}", f"{t.p:.2e}", f"{t.q:.2e}",
                             "kept" if name in self.kept else "dropped"])
        return rows


def _aggregate(values: np.ndarray, ret: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample features at the last bar of each k-bar block and sum the returns over the block."""
    n = (ret.shape[0] // k) * k
    if n == 0:
        return values[:, :0], ret[:0]
    v = values[:, k - 1:n:k]
    r = ret[:n].reshape(-1, k).sum(axis=1)  # NaN anywhere in the block -> NaN
    return v, r


def rolling_mean_complete(x: np.ndarray, w: int) -> np.ndarray:
    """Causal w-bar mean of a per-bar series.

    x: (n,) float64, NaN where missing.  returns: (n,) float64, out[t] = mean(x[t-w+1..t]), NaN when t < w-1
    or any value in the window is NaN (a window never bridges a gap or a warm-up).  Matches the GP's
    ``ts_mean(x, w)`` up to summation rounding.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if x.shape[0] < w:
        return out
    bad = ~np.isfinite(x)
    c = np.concatenate(([0.0], np.cumsum(np.where(bad, 0.0, x))))
    nb = np.concatenate(([0], np.cumsum(bad)))
    s = (c[w:] - c[:-w]) / w
    out[w - 1:] = np.where(nb[w:] - nb[:-w] == 0, s, np.nan)
    return out


def _smoothed_links(vals: np.ndarray, names: tuple[str, ...], lookbacks: tuple[int, ...], r: np.ndarray,
                    cfg: Any, seed: int) -> tuple[list[LinkTest], dict[str, Any]]:
    """PCMCI of the per-bar features' w-bar means into the next w bars' return, one test per window.

    vals: (k, n) in-sample features; r: (n,) vol-standardised realised return of bar t.  For each w in
    ``cfg.smooth_windows``: the w-bar mean of every feature whose lookback <= ``cfg.smooth_max_lookback``,
    sampled at the last bar of each w-bar block, against the sum of r over each block (``_aggregate``), the
    most recent ``cfg.max_samples`` blocks, tau 1..2 blocks (a feature block ends before the return block
    starts: no look-ahead).  Windows with fewer than ``cfg.smooth_min_blocks`` blocks are skipped and listed.
    returns: (links with source ``"ts_mean(<feature>, <w>)"`` and q-values over all smoothed links
    (Benjamini-Hochberg, one family apart from the per-bar links), a summary for the report).
    """
    from forge.gp.primitives import WINDOWS

    windows = tuple(int(w) for w in getattr(cfg, "smooth_windows", ()) or ())
    bad = [w for w in windows if w not in WINDOWS]
    if bad:
        raise ConfigError(f"[causal] smooth_windows: {bad} not among the GP's window lengths {list(WINDOWS)}; "
                          "the GP could not build the smoothed form it keeps")
    fast = [i for i, lb in enumerate(lookbacks) if lb <= cfg.smooth_max_lookback]
    info: dict[str, Any] = {"windows": list(windows), "features": [names[i] for i in fast], "tested": {},
                            "skipped": {}}
    rows: list[tuple[str, int, float, float]] = []
    if not fast:
        return [], info
    for w in windows:
        sm = np.vstack([rolling_mean_complete(vals[i], w) for i in fast])
        v, rb = _aggregate(sm, r, w)
        if rb.shape[0] > cfg.max_samples:
            v, rb = v[:, -cfg.max_samples:], rb[-cfg.max_samples:]
        col = [f"ts_mean({names[i]}, {w})" for i in fast]
        use = [j for j in range(len(fast)) if np.isfinite(v[j]).sum() >= 50 and float(np.nanstd(v[j])) > 0]
        data = np.column_stack([v[j] for j in use] + [rb]) if use else None
        complete = int(np.isfinite(data).all(axis=1).sum()) if data is not None else 0
        if data is None or complete < cfg.smooth_min_blocks:
            info["skipped"][str(w)] = f"{complete} complete {w}-bar blocks < smooth_min_blocks={cfg.smooth_min_blocks}"
            continue
        info["tested"][str(w)] = complete
        links = pcmci_links_into(data, [col[j] for j in use] + ["__return__"], len(use), tau_min=1, tau_max=2,
                                 pc_alpha=cfg.pc_alpha, cond_ind_test=cfg.cond_ind_test,
                                 exogenous=_clock_columns([names[fast[j]] for j in use]), seed=seed)
        rows += [(t.source, t.lag, t.value, t.p) for t in links]
    q = benjamini_hochberg(np.array([x[3] for x in rows])) if rows else np.array([])
    out = [LinkTest(src, lag, v, p, float(qq)) for (src, lag, v, p), qq in zip(rows, q)]
    return sorted(out, key=lambda t: (t.p, t.source, t.lag)), info


def gated_columns(vals: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...],
                                                                      dict[str, tuple[str, str]]]:
    """Regime-gated copies of the features, so that a linear test can see a link whose **sign flips with the
    regime** (ungated its partial correlation is ~0): for every filtered regime probability ``regime_p<i>`` among
    ``names`` (the frozen model's, ``forge.features.regimes``; the last state is left out, its probability being
    one minus the others') and every feature x that is neither a regime nor a clock terminal, the column
    z(x)_t * (p_i,t - mean p_i), z the in-sample standardisation.  A gated column with a significant link into
    the return keeps its source x (the GP builds the gate with ``mul``/``if_then_else`` on the kept regime
    terminal, which the run keeps anyway).  This is the interaction term of a varying-coefficient regression
    (Hastie & Tibshirani 1993, J. R. Statist. Soc. B 55(4), 757-796) tested inside PCMCI, so it is conditioned on
    the ungated features like any other candidate parent.

    vals: (k, n) float64 feature values (NaN missing); names: (k,) names.  returns ((m, n) float64 gated columns,
    their names ``gate(<x>, <regime_p<i>>)``, {gated name: (x, regime terminal)}); m = 0 without regime terminals.
    """
    from forge.features.regimes import is_regime_feature

    gates = sorted((i for i, n in enumerate(names) if n.startswith("regime_p") and is_regime_feature(n)),
                   key=lambda i: names[i])[:-1]
    clock = set(_clock_columns(names))
    sources = [i for i, n in enumerate(names) if not is_regime_feature(n) and i not in clock]
    rows, out_names, src = [], [], {}
    if not gates:
        return np.empty((0, vals.shape[1])), (), {}
    z = {}
    for i in sources:  # each source standardised once
        sd = float(np.nanstd(vals[i])) if np.isfinite(vals[i]).sum() > 1 else 0.0
        if sd > 0.0:
            z[i] = (vals[i] - np.nanmean(vals[i])) / sd
    for g in gates:
        gv = vals[g] - np.nanmean(vals[g])
        for i in (i for i in sources if i in z):
            rows.append(z[i] * gv)
            name = f"gate({names[i]}, {names[g]})"
            out_names.append(name)
            src[name] = (names[i], names[g])
    values = np.vstack(rows) if rows else np.empty((0, vals.shape[1]))
    return values, tuple(out_names), src


def _clock_columns(names: Sequence[str]) -> list[int]:
    """Indices of the columns that are clock terminals (``forge.features.registry.CLOCK_FEATURES``, of the
    traded instrument or, in a panel, of another: the same function of open_time)."""
    from forge.data.panel import split_panel_name
    from forge.features.registry import CLOCK_FEATURES

    return [i for i, n in enumerate(names) if split_panel_name(n)[0] in CLOCK_FEATURES]


def _smoothed_source(name: str) -> tuple[str, int]:
    """``"ts_mean(taker_imb, 60)"`` -> ("taker_imb", 60)."""
    inner = name[len("ts_mean("):-1]
    feat, _, w = inner.rpartition(", ")
    return feat, int(w)


def causal_filter(features: Any, fwd_return: np.ndarray, cfg: Any, *, seed: int = 0) -> CausalReport:
    """Keep the features with a significant PCMCI link into the next-bar return.

    features: forge.features.FeatureMatrix restricted to the in-sample bars
    (values (k, n) float64). fwd_return: (n,) float64 log return from the close
    of bar t to the close of bar t+1 (NaN across gaps and at the end).
    cfg: forge.settings.CausalSection (tau_max, pc_alpha, alpha_level,
    max_samples, aggregate_minutes, cond_ind_test, keep_at_least).
    returns: CausalReport. A feature is kept when any of its lags 1..tau_max
    has BH q-value <= alpha_level, or (a per-bar feature, lookback <=
    ``smooth_max_lookback``) when its w-bar mean for some w in
    ``smooth_windows`` has a block-lag link with BH q-value <= alpha_level
    (:func:`_smoothed_links`; the GP's ``ts_mean(feature, w)`` rebuilds that
    slow component); if fewer than ``keep_at_least`` pass, the
    smallest-p features fill up to that number and are marked as such (the
    GP needs terminals; the report says which were not significant).
    raises DataError when too few complete rows remain.
    """
    t0 = time.perf_counter()
    names = tuple(features.names)
    vals = np.asarray(features.values, dtype=np.float64)
    fwd = np.asarray(fwd_return, dtype=np.float64)
    if vals.shape[1] != fwd.shape[0]:
        raise DataError(f"features have {vals.shape[1]} bars but fwd_return has {fwd.shape[0]}")
    # realised return of bar t (close t-1 -> close t); a link feature(t-1) -> r(t) predicts fwd(t-1)
    r = np.full_like(fwd, np.nan)
    r[1:] = fwd[:-1]
    r = vol_standardized(r)  # z-scores: ParCorr's p-values assume homoscedastic noise
    smooth_links, smooth_info = _smoothed_links(vals, names, tuple(features.lookbacks), r, cfg, seed)
    gated_names, gated_src = (), {}
    if cfg.gated:
        gvals, gated_names, gated_src = gated_columns(vals, names)
        if gated_names:
            vals = np.vstack([vals, gvals])
    all_names = names + gated_names
    if cfg.aggregate_minutes > 1:
        vals, r = _aggregate(vals, r, cfg.aggregate_minutes)
    if r.shape[0] > cfg.max_samples:
        vals, r = vals[:, -cfg.max_samples:], r[-cfg.max_samples:]
    reasons: dict[str, str] = {}
    usable = []
    for i, n in enumerate(all_names):
        v = vals[i][np.isfinite(vals[i])]
        if v.size < 50 or float(np.std(v)) == 0.0:
            if n in gated_src:
                continue
            reasons[n] = "dropped: constant or almost all missing"
        else:
            usable.append(i)
    cols = [vals[i] for i in usable] + [r]
    data = np.column_stack(cols) if usable else r[:, None]
    col_names = [all_names[i] for i in usable] + ["__return__"]
    target = len(col_names) - 1
    links = pcmci_links_into(data, col_names, target, tau_min=1, tau_max=cfg.tau_max, pc_alpha=cfg.pc_alpha,
                             cond_ind_test=cfg.cond_ind_test, exogenous=_clock_columns(col_names),
                             seed=seed) if usable else []
    gated_sig: dict[str, LinkTest] = {}
    for t in links:  # sorted by p: a gated column's first significant link keeps its source feature
        if t.source in gated_src and t.q <= cfg.alpha_level and gated_src[t.source][0] not in gated_sig:
            gated_sig[gated_src[t.source][0]] = t
    significant = {t.source for t in links if t.q <= cfg.alpha_level and t.source not in gated_src}
    smooth_sig: dict[str, LinkTest] = {}
    for t in smooth_links:  # sorted by p: the first significant link per feature is its best
        feat = _smoothed_source(t.source)[0]
        if t.q <= cfg.alpha_level and feat not in smooth_sig:
            smooth_sig[feat] = t
    kept = [n for n in names if n in significant or n in smooth_sig or n in gated_sig]
    for n in kept:
        if n in significant:
            t = min((t for t in links if t.source == n), key=lambda t: t.p)
            reasons[n] = f"kept: lag {t.lag}, partial corr {t.value:+.4f}, q {t.q:.2e}"
        elif n in gated_sig:
            t = gated_sig[n]
            reasons[n] = (f"kept: gated by {gated_src[t.source][1]} ({t.source}), lag {t.lag}, partial corr "
                          f"{t.value:+.4f}, q {t.q:.2e}")
        else:
            t, w = smooth_sig[n], _smoothed_source(smooth_sig[n].source)[1]
            reasons[n] = (f"kept: smoothed form {t.source} (sampled every {w} bars), lag {t.lag} block(s), "
                          f"partial corr {t.value:+.4f}, q {t.q:.2e}")
    significant |= set(smooth_sig) | set(gated_sig)
    if len(kept) < cfg.keep_at_least:
        best: dict[str, float] = {}
        for t in links:
            if t.source not in gated_src:
                best[t.source] = min(best.get(t.source, 1.0), t.p)
        for n in sorted((n for n in best if n not in significant), key=lambda n: (best[n], n)):
            if len(kept) >= cfg.keep_at_least:
                break
            kept.append(n)
            reasons[n] = f"kept to reach keep_at_least={cfg.keep_at_least}: not significant (min p {best[n]:.2e})"
        kept = [n for n in names if n in set(kept)]
    for n in names:
        reasons.setdefault(n, "dropped: no link with q <= alpha_level")
    settings = {k: getattr(cfg, k) for k in ("tau_max", "pc_alpha", "alpha_level", "max_samples", "gated",
                                             "aggregate_minutes", "cond_ind_test", "keep_at_least")}
    settings["smooth_windows"] = list(smooth_info["windows"])
    settings["smooth_max_lookback"] = int(getattr(cfg, "smooth_max_lookback", 1))
    smooth_info["links"] = smooth_links
    return CausalReport(candidates=names, kept=tuple(kept), links=links, reasons=reasons, settings=settings,
                        n_samples=int(r.shape[0]), seconds=time.perf_counter() - t0,
                        dropped_constant=tuple(n for n in names if reasons[n].startswith("dropped: constant")),
                        smoothed=smooth_info)
