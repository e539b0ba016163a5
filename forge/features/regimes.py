"""Predictive regimes: a Gaussian hidden Markov model fitted on in-sample bars, frozen, and its filtered
state probabilities as GP terminals.

Model (Hamilton 1989, "A new approach to the economic analysis of nonstationary time series and the business
cycle", Econometrica 57(2); Rabiner 1989): a hidden state s_t in {0..k-1} following a Markov chain with
transition matrix A; given s_t = i the observation x_t (d,) is Gaussian N(mu_i, Sigma_i).  Observations
(:data:`REGIME_INPUTS`, chosen by ``inputs``, default :data:`DEFAULT_INPUTS`): the 1-minute log return, the log
realised volatility over the last ``rv_window`` returns, and log(1 + volume); each standardised by its in-sample mean and standard
deviation (frozen with the model).

Fitting (:func:`fit_regime_model`): hmmlearn's ``GaussianHMM`` (Baum-Welch EM; the first start from
volatility-quantile groups with a sticky transition matrix, P(stay) = ``STICKY_START``, the others k-means with
hmmlearn's uniform one, ``random_state`` from the run seed) on the IN-SAMPLE bars only (contiguous runs of complete observations
are separate sequences), for every k in [min_states, max_states] (2..4 by default, the cap); the k of the
smallest BIC = -2 log L + p log n (Schwarz 1978; p = free parameters, hmmlearn's ``bic``) is kept.  States are
ordered by their mean log realised volatility (state 0 = calmest; by the return variance when realised
volatility is not an input), so ``regime_p0`` always names the calm regime.

The fitted model is a frozen run-directory artifact (``regime_model.json``, schema
:data:`REGIME_SCHEMA`) recording the bars it was fitted on (``data_range``); ``forge evolve`` refuses one that
overlaps its out-of-sample range (``forge.evolution.run.refuse_out_of_sample_leaks``), and nothing refits it:
the Gauntlet (also its truncation test) and the Crucible only filter with the frozen parameters.

Terminals (:func:`regime_features`, names :func:`regime_feature_names`):

- ``regime_p{i}``: the FILTERED probability P(s_t = i | bars <= t), the forward recursion run bar by bar
  (``forge.features.regimes_nb``) -- never the smoothed posterior P(s_t = i | all bars), which reads the
  future;
- ``regime_next_p{i}``: the one-step-ahead predicted probability P(s_{t+1} = i | bars <= t).

Both lie in [0, 1] and sum to 1 over i.  Regime-gated rules are the existing typed primitives applied to
them (``if_then_else(gt_c(regime_p1, c), a, b)``, ``mul(regime_p1, x)``): no new primitive is needed.
The recursion has infinite memory (like a Wilder average); it forgets its start at the chain's mixing rate,
and the live Crucible carries it bar by bar from its own start (:class:`RegimeFilter`, same kernel step).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.core.artifacts import atomic_write_json
from forge.core.errors import ConfigError, DataError
from forge.data.gaps import bars_since_gap
from forge.data.ranges import DataRange
from forge.features import FeatureMatrix
from forge.features.regimes_nb import forward_filter_nb, forward_step_nb, gaussian_loglik_nb, regime_inputs_nb

__all__ = ["REGIME_SCHEMA", "REGIME_INPUTS", "DEFAULT_INPUTS", "RegimeModel", "RegimeFilter", "fit_regime_model",
           "load_regime_model", "regime_feature_names", "regime_features", "regime_inputs", "is_regime_feature",
           "write_regime_model"]

REGIME_SCHEMA = "forge-regime-model/1"
REGIME_INPUTS: tuple[str, ...] = ("ret", "rv", "volume")
"""Observation columns the model may use: ``ret`` 1-bar log return, ``rv`` log realised volatility over
``rv_window`` returns, ``volume`` log(1 + base volume)."""
DEFAULT_INPUTS: tuple[str, ...] = ("ret", "volume")
"""The default observations.  ``rv`` is left out by default (measured, tests/test_regimes.py and
benchmarks/RESULTS.md): its overlapping window makes consecutive observations dependent within a regime,
which the HMM's conditional independence does not model, and BIC then fills the state cap with ramp states
(a planted 3-regime series: 4 states chosen with ``rv``, 3 without).  A state's return variance already is
its volatility."""
_ROW = {"ret": 0, "rv": 1, "volume": 2}
_PREFIXES = ("regime_p", "regime_next_p")

log = logging.getLogger(__name__)


def regime_feature_names(n_states: int) -> tuple[str, ...]:
    """``("regime_p0", ..., "regime_next_p0", ...)`` for ``n_states`` states (filtered, then predicted)."""
    return tuple(f"regime_p{i}" for i in range(n_states)) + tuple(f"regime_next_p{i}" for i in range(n_states))


def is_regime_feature(name: str) -> bool:
    """True for a terminal name of the regime model (``regime_p<i>`` / ``regime_next_p<i>``)."""
    return any(name.startswith(p) and name[len(p):].isdigit() for p in _PREFIXES)


# --------------------------------------------------------------------------- observations


def regime_inputs(bars: pl.DataFrame | dict[str, np.ndarray], inputs: tuple[str, ...], rv_window: int) -> np.ndarray:
    """Raw (unstandardised) observations (n, d) float64, columns in ``inputs`` order, NaN where undefined
    (first bars, after gaps, before ``rv_window`` returns).  bars: a bar frame or columns ``open_time`` (int64
    ms), ``close``, ``volume``.  Causal: row t reads bars <= t only."""
    t = np.ascontiguousarray(np.asarray(bars["open_time"]), dtype=np.int64)
    close = np.ascontiguousarray(np.asarray(bars["close"]), dtype=np.float64)
    vol = np.ascontiguousarray(np.asarray(bars["volume"]), dtype=np.float64)
    raw = regime_inputs_nb(close, vol, bars_since_gap(t), int(rv_window))
    return np.ascontiguousarray(raw[[_ROW[x] for x in inputs]].T)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class RegimeModel:
    """A fitted, frozen Gaussian HMM and how its observations are made.

    startprob: (k,); transmat: (k, k) row-stochastic; means: (k, d) and covars: (k, d, d) in standardised
    units; center / scale: (d,) in-sample mean and standard deviation of the raw inputs; inputs: names
    (:data:`REGIME_INPUTS`); rv_window: bars; data_range: the bars it was fitted on; selection: one
    ``{"n_states", "log_likelihood", "bic", "n_params"}`` per candidate k; meta: free-form (seed, symbol).
    """

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    covars: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    inputs: tuple[str, ...]
    rv_window: int
    data_range: DataRange
    selection: tuple[dict[str, Any], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return int(self.startprob.shape[0])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return regime_feature_names(self.n_states)

    @property
    def lookback(self) -> int:
        """Bars before the current one the observations read (the realised-volatility window)."""
        return int(self.rv_window if "rv" in self.inputs else (1 if "ret" in self.inputs else 0))

    def _chol(self) -> tuple[np.ndarray, np.ndarray]:
        L = np.linalg.cholesky(self.covars)
        inv = np.ascontiguousarray(np.linalg.inv(L))
        logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        return inv, np.ascontiguousarray(logdet)

    def observations(self, bars: pl.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
        """Standardised observations (n, d) float64 of ``bars`` (NaN rows where undefined)."""
        return np.ascontiguousarray((regime_inputs(bars, self.inputs, self.rv_window) - self.center) / self.scale)

    def loglik(self, obs: np.ndarray) -> np.ndarray:
        """(n, k) log emission densities of standardised ``obs`` (NaN rows stay NaN)."""
        inv, logdet = self._chol()
        return gaussian_loglik_nb(np.ascontiguousarray(obs, dtype=np.float64), np.ascontiguousarray(self.means),
                                  inv, logdet)

    def filter(self, bars: pl.DataFrame | dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(filtered (n, k), predicted (n, k)) on ``bars`` from the start distribution at their first bar."""
        ll = self.loglik(self.observations(bars))
        return forward_filter_nb(ll, np.ascontiguousarray(self.startprob), np.ascontiguousarray(self.transmat))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": REGIME_SCHEMA, "n_states": self.n_states, "inputs": list(self.inputs),
                "rv_window": self.rv_window, "startprob": self.startprob.tolist(), "transmat": self.transmat.tolist(),
                "means": self.means.tolist(), "covars": self.covars.tolist(), "center": self.center.tolist(),
                "scale": self.scale.tolist(), "data_range": self.data_range.to_dict(),
                "selection": list(self.selection), "feature_names": list(self.feature_names), "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "regime model") -> RegimeModel:
        """Inverse of :meth:`to_dict`.  raises DataError naming ``where`` for a wrong schema or inconsistent
        shapes/values (non-stochastic matrices, non-positive-definite covariances)."""
        if not isinstance(d, dict) or d.get("schema") != REGIME_SCHEMA:
            raise DataError(f"schema {d.get('schema') if isinstance(d, dict) else None!r}; expected {REGIME_SCHEMA!r}",
                            file=where)
        try:
            inputs = tuple(str(x) for x in d["inputs"])
            arr = {k: np.asarray(d[k], dtype=np.float64) for k in
                   ("startprob", "transmat", "means", "covars", "center", "scale")}
            m = cls(inputs=inputs, rv_window=int(d["rv_window"]),
                    data_range=DataRange.from_dict(d["data_range"], where),
                    selection=tuple(d.get("selection") or ()), meta=dict(d.get("meta") or {}), **arr)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise DataError(f"malformed regime model ({exc})", file=where) from None
        k, dim = m.startprob.shape[0], len(inputs)
        ok = (set(inputs) <= set(REGIME_INPUTS) and 2 <= k <= 8 and m.transmat.shape == (k, k)
              and m.means.shape == (k, dim) and m.covars.shape == (k, dim, dim) and m.center.shape == (dim,)
              and m.scale.shape == (dim,) and np.all(m.scale > 0) and abs(m.startprob.sum() - 1) < 1e-6
              and np.allclose(m.transmat.sum(axis=1), 1, atol=1e-6) and np.all(m.transmat >= 0)
              and np.all(np.isfinite(m.means)))
        if not ok:
            raise DataError("inconsistent regime model (shapes, stochastic matrices or inputs)", file=where)
        try:
            np.linalg.cholesky(m.covars)
        except np.linalg.LinAlgError:
            raise DataError("a regime covariance is not positive definite", file=where) from None
        return m


def write_regime_model(model: RegimeModel, path: str | Path) -> Path:
    """Write ``model`` as strict JSON, atomically."""
    return atomic_write_json(path, model.to_dict())


def load_regime_model(path: str | Path) -> RegimeModel:
    """Read a ``regime_model.json``.  raises DataError naming the file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read regime model ({exc})", file=p) from None
    return RegimeModel.from_dict(d, str(p))


# --------------------------------------------------------------------------- fitting


def _runs(ok: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[a, b) runs of True in ``ok`` at least ``min_len`` long."""
    out, i, n = [], 0, ok.shape[0]
    while i < n:
        if ok[i]:
            j = i
            while j < n and ok[j]:
                j += 1
            if j - i >= min_len:
                out.append((i, j))
            i = j
        else:
            i += 1
    return out


STICKY_START = 0.99
"""P(stay) on the diagonal of the first EM start's transition matrix (off-diagonal mass split evenly).  Regimes
persist (Hamilton 1989: a Markov-switching state lasts many periods); from hmmlearn's uniform start (P(stay) =
1/k) EM on a few thousand bars settles in fast-switching optima that waste a state, so BIC over-counts states:
on 5,000 bars of a planted 3-regime chain (P(stay) 0.995) the uniform start reached a 3-state log-likelihood of
-9,783 (the 2-state one's, so BIC chose 4 states), the sticky start -7,900 (the planted parameters' level), and
BIC chose 3 (``benchmarks/regimes_bic.py --bars 5000``)."""


def _quantile_init(Xs: np.ndarray, lengths: list[int], k: int, inputs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Initial means (k, d) and covariances (k, d, d): the observations split into k equal groups by a
    volatility proxy (|standardised return| plus the standardised volume / realised volatility when they are
    inputs, averaged over 61 bars centred on each bar within its run), each group's median and robust (MAD)
    variances as the start.  k-means (hmmlearn's default start) splits a wild regime into
    "up" and "down" return clusters, and EM stays in that optimum (measured: a planted 3-regime chain got the
    BIC of a 2-regime one); grouping by volatility starts EM at regimes of different variance."""
    proxy = np.zeros(Xs.shape[0])
    a = 0
    for n in lengths:
        seg = Xs[a:a + n]
        p = np.zeros(n)
        if "ret" in inputs:
            p += np.abs(seg[:, inputs.index("ret")])
        for name in ("rv", "volume"):
            if name in inputs:
                p += seg[:, inputs.index(name)]
        w = min(61, n)  # centred 61-bar mean: an initialisation, fitted on in-sample bars, never a terminal
        c = np.concatenate([[0.0], np.cumsum(p)])
        lo = np.clip(np.arange(n) - w // 2, 0, n)
        hi = np.clip(np.arange(n) + w // 2 + 1, 0, n)
        proxy[a:a + n] = (c[hi] - c[lo]) / (hi - lo)
        a += n
    groups = np.array_split(np.argsort(proxy, kind="stable"), k)
    means = np.stack([np.median(Xs[g], axis=0) for g in groups])
    # robust (MAD) variances: a group mixes neighbouring regimes, the median follows its larger part
    mad = np.stack([np.median(np.abs(Xs[g] - means[i]), axis=0) / 0.6745 for i, g in enumerate(groups)])
    covs = np.stack([np.diag(m ** 2 + 1e-4) for m in mad])
    return means, covs


def fit_regime_model(bars: pl.DataFrame, *, inputs: tuple[str, ...] = DEFAULT_INPUTS, rv_window: int = 30,
                     min_states: int = 2, max_states: int = 4, covariance_type: str = "full", n_iter: int = 100,
                     n_init: int = 3, max_bars: int = 200_000, seed: int = 0, meta: dict[str, Any] | None = None) -> RegimeModel:
    """Fit the regime model on ``bars`` (pass the IN-SAMPLE bars only: this is what the artifact's
    ``data_range`` records, and what the leak refusal checks).

    inputs: subset of :data:`REGIME_INPUTS`; rv_window: >= 2 bars; states: 2 <= min_states <= max_states <= 4
    (the cap of issue 30); covariance_type: hmmlearn's ("full", "diag"); n_init: EM restarts per k (seeds
    ``seed + 1009 r``), the highest log-likelihood kept; max_bars: only the last ``max_bars``
    bars are used (runtime bound); seed: hmmlearn ``random_state`` (deterministic).  BIC over k as in the
    module docstring.  returns RegimeModel.  raises ConfigError for bad settings, DataError when fewer than
    50 * d complete observations exist per candidate parameter budget or every fit fails.
    """
    from hmmlearn.hmm import GaussianHMM

    inputs = tuple(inputs)
    if not inputs or len(set(inputs)) != len(inputs) or not set(inputs) <= set(REGIME_INPUTS):
        raise ConfigError(f"regimes.inputs must be distinct names from {list(REGIME_INPUTS)}, got {list(inputs)}")
    if not 2 <= min_states <= max_states <= 4:
        raise ConfigError(f"regimes: need 2 <= min_states <= max_states <= 4, got {min_states}..{max_states}")
    if rv_window < 2:
        raise ConfigError(f"regimes.rv_window must be >= 2 bars, got {rv_window}")
    if n_init < 1:
        raise ConfigError(f"regimes.n_init must be >= 1, got {n_init}")
    if covariance_type not in ("full", "diag"):
        raise ConfigError(f"regimes.covariance_type must be 'full' or 'diag', got {covariance_type!r}")
    bars = bars.tail(max_bars) if bars.height > max_bars else bars
    raw = regime_inputs(bars, inputs, rv_window)
    ok = np.all(np.isfinite(raw), axis=1)
    runs = _runs(ok, 10)
    n_obs = sum(b - a for a, b in runs)
    d = len(inputs)
    need = 50 * (max_states * (max_states - 1) + max_states * (d + d * (d + 1) // 2))
    if n_obs < need:
        raise DataError(f"regime model: {n_obs} complete in-sample observations, need >= {need} for up to "
                        f"{max_states} states (use more in-sample bars or fewer states)")
    X = np.concatenate([raw[a:b] for a, b in runs])
    center, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    Xs = (X - center) / scale
    lengths = [b - a for a, b in runs]
    best, table = None, []
    for k in range(min_states, max_states + 1):
        fit = None  # best of n_init EM runs (Baum-Welch finds local optima)
        for r in range(n_init):
            hmm = GaussianHMM(n_components=k, covariance_type=covariance_type, n_iter=n_iter, tol=1e-3,
                              random_state=(seed + 1009 * r) % (2**32 - 1), min_covar=1e-5,
                              covars_prior=1e-6, init_params="stmc" if r else "s")
            if r == 0:  # first run: states initialised as quantile groups of a volatility proxy (see _quantile_init)
                hmm.means_, cov = _quantile_init(Xs, lengths, k, inputs)  # and a sticky start (STICKY_START)
                hmm.covars_ = cov if covariance_type == "full" else np.stack([np.diag(c) for c in cov])
                hmm.transmat_ = np.full((k, k), (1.0 - STICKY_START) / (k - 1))
                np.fill_diagonal(hmm.transmat_, STICKY_START)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.getLogger("hmmlearn").setLevel(logging.ERROR)
                try:
                    hmm.fit(Xs, lengths)
                    ll = float(hmm.score(Xs, lengths))
                except (ValueError, np.linalg.LinAlgError) as exc:
                    log.warning("regime model with %d states (restart %d) failed to fit: %s", k, r, exc)
                    continue
            if math.isfinite(ll) and (fit is None or ll > fit[0]):
                fit = (ll, hmm, r)
        if fit is None:
            continue
        ll, hmm, r = fit
        bic = float(hmm.bic(Xs, lengths))
        n_params = int(round((bic + 2 * ll) / math.log(Xs.shape[0])))
        table.append({"n_states": k, "log_likelihood": ll, "bic": bic, "n_params": n_params, "restart": r,
                      "converged": bool(hmm.monitor_.converged), "iterations": int(hmm.monitor_.iter)})
        if math.isfinite(bic) and (best is None or bic < best[0]):
            best = (bic, hmm)
    if best is None:
        raise DataError("regime model: every candidate number of states failed to fit")
    hmm = best[1]
    means, covars = np.asarray(hmm.means_), np.asarray(hmm.covars_)
    if "rv" in inputs:
        key = means[:, inputs.index("rv")]
    elif "ret" in inputs:
        key = covars[:, inputs.index("ret"), inputs.index("ret")]
    else:
        key = means[:, 0]
    order = np.argsort(key, kind="stable")
    t = bars["open_time"].to_numpy()
    return RegimeModel(
        startprob=np.ascontiguousarray(hmm.startprob_[order]),
        transmat=np.ascontiguousarray(hmm.transmat_[np.ix_(order, order)]),
        means=np.ascontiguousarray(means[order]), covars=np.ascontiguousarray(covars[order]),
        center=center, scale=scale, inputs=inputs, rv_window=int(rv_window),
        data_range=DataRange(int(t[0]), int(t[-1]), int(bars.height)), selection=tuple(table),
        meta={"seed": int(seed), "covariance_type": covariance_type, "n_observations": int(Xs.shape[0]),
              "state_order": "ascending mean log realised volatility" if "rv" in inputs
              else "ascending return variance" if "ret" in inputs else f"ascending mean {inputs[0]}", **(meta or {})})


# --------------------------------------------------------------------------- terminals


def regime_features(model: RegimeModel, bars: pl.DataFrame | dict[str, np.ndarray],
                    names: tuple[str, ...] | None = None) -> FeatureMatrix:
    """The model's terminals on ``bars`` (filtered and predicted probabilities, module docstring).

    names: the wanted subset, in that order (default: all of ``model.feature_names``).  Lookback of each:
    ``model.lookback`` (the observations' window; the recursion itself has infinite memory).
    returns FeatureMatrix (len(names), n) float64.  raises ConfigError for a name the model does not have.
    """
    names = tuple(model.feature_names if names is None else names)
    bad = [n for n in names if n not in model.feature_names]
    if bad:
        raise ConfigError(f"features {bad} are not terminals of the regime model ({model.n_states} states: "
                          f"{', '.join(model.feature_names)})")
    filt, pred = model.filter(bars)
    k = model.n_states
    rows = {**{f"regime_p{i}": filt[:, i] for i in range(k)}, **{f"regime_next_p{i}": pred[:, i] for i in range(k)}}
    values = np.ascontiguousarray(np.vstack([rows[n] for n in names])) if names else np.empty((0, filt.shape[0]))
    return FeatureMatrix(names=names, values=values, lookbacks=tuple(model.lookback for _ in names))


class RegimeFilter:
    """The forward filter run bar by bar with frozen parameters (the live Crucible's path).

    ``update(bars)`` takes the closed bars so far (a rolling window whose last row is the new bar; at least
    ``model.lookback + 1`` rows once warm) and advances the recursion by that one bar, with the same kernel
    step as :meth:`RegimeModel.filter`: fed every bar from the same first bar, the values equal the batch
    filter's bit for bit.  A bar whose open time is not after the last one seen is ignored (a replayed bar).
    """

    def __init__(self, model: RegimeModel) -> None:
        self.model = model
        self._inv, self._logdet = model._chol()
        self.prior = np.ascontiguousarray(model.startprob.copy())
        self.filtered = np.full(model.n_states, np.nan)
        self.predicted = np.full(model.n_states, np.nan)
        self.last_open_ms: int | None = None
        self.bars_seen = 0

    def update(self, bars: dict[str, np.ndarray] | pl.DataFrame) -> dict[str, float]:
        """Advance by the last bar of ``bars``; returns {terminal name: value} at that bar."""
        t = int(np.asarray(bars["open_time"])[-1])
        if self.last_open_ms is None or t > self.last_open_ms:
            obs = self.model.observations(bars)[-1:]
            ll = gaussian_loglik_nb(obs, np.ascontiguousarray(self.model.means), self._inv, self._logdet)[0]
            forward_step_nb(self.prior, ll, np.ascontiguousarray(self.model.transmat), self.filtered, self.predicted)
            self.prior = self.predicted.copy()
            self.last_open_ms = t
            self.bars_seen += 1
        k = self.model.n_states
        return {**{f"regime_p{i}": float(self.filtered[i]) for i in range(k)},
                **{f"regime_next_p{i}": float(self.predicted[i]) for i in range(k)}}
