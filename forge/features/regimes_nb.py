"""numba kernels of the regime filter (``forge.features.regimes``): Gaussian emission log-densities and the
HMM forward recursion, one bar at a time.

The forward (filtering) recursion of a hidden Markov model (Rabiner 1989, "A tutorial on hidden Markov
models", Proc. IEEE 77(2), eq. 19-20; Hamilton 1989 for regime switching in returns): with prior
``pi_t = P(s_t | x_1..x_{t-1})`` (``pi_1`` = the start distribution) and emission density ``b_i(x_t)``,

    filtered_t(i) = pi_t(i) b_i(x_t) / sum_j pi_t(j) b_j(x_t)        P(s_t = i | x_1..x_t)
    predicted_t   = filtered_t @ A                                   P(s_{t+1} = i | x_1..x_t)
    pi_{t+1}      = predicted_t

It reads bars <= t only; the smoothed posterior P(s_t | x_1..x_T) (forward-backward) reads the future and is
never computed here.  A bar without an observation (NaN: the first bars, a gap) is a pure prediction step:
filtered_t = pi_t.  Densities are handled in log space, shifted by their maximum before exponentiation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LOG_2PI = float(np.log(2.0 * np.pi))


@njit(cache=True)
def gaussian_loglik_nb(obs: np.ndarray, means: np.ndarray, chol_inv: np.ndarray, logdet: np.ndarray) -> np.ndarray:
    """Log-density of each row of ``obs`` under each state's Gaussian.

    obs: (n, d) float64 (rows with a NaN -> NaN row out); means: (k, d); chol_inv: (k, d, d) inverse of the
    lower Cholesky factor L of each covariance (Sigma = L L^T); logdet: (k,) log det Sigma.
    returns (n, k) float64: -0.5 (d log 2pi + log det Sigma_i + |L_i^{-1} (x - mu_i)|^2).
    """
    n, d = obs.shape
    k = means.shape[0]
    out = np.empty((n, k))
    z = np.empty(d)
    for t in range(n):
        bad = False
        for a in range(d):
            if not np.isfinite(obs[t, a]):
                bad = True
        if bad:
            for i in range(k):
                out[t, i] = np.nan
            continue
        for i in range(k):
            q = 0.0
            for a in range(d):
                s = 0.0
                for b in range(a + 1):
                    s += chol_inv[i, a, b] * (obs[t, b] - means[i, b])
                z[a] = s
                q += s * s
            out[t, i] = -0.5 * (d * LOG_2PI + logdet[i] + q)
    return out


@njit(cache=True)
def forward_step_nb(prior: np.ndarray, loglik: np.ndarray, transmat: np.ndarray, filtered: np.ndarray,
                    predicted: np.ndarray) -> None:
    """One bar of the forward recursion, in place.

    prior: (k,) P(s_t | bars < t); loglik: (k,) log b_i(x_t), NaN for "no observation"; transmat: (k, k)
    row-stochastic A[i, j] = P(s_{t+1} = j | s_t = i).  Writes filtered (k,) = P(s_t | bars <= t) and
    predicted (k,) = P(s_{t+1} | bars <= t).  A bar whose densities all underflow keeps the prior.
    """
    k = prior.shape[0]
    if np.isnan(loglik[0]):
        for i in range(k):
            filtered[i] = prior[i]
    else:
        m = loglik[0]
        for i in range(1, k):
            if loglik[i] > m:
                m = loglik[i]
        s = 0.0
        for i in range(k):
            filtered[i] = prior[i] * np.exp(loglik[i] - m)
            s += filtered[i]
        if s > 0.0 and np.isfinite(s):
            for i in range(k):
                filtered[i] /= s
        else:
            for i in range(k):
                filtered[i] = prior[i]
    for j in range(k):
        acc = 0.0
        for i in range(k):
            acc += filtered[i] * transmat[i, j]
        predicted[j] = acc


@njit(cache=True)
def forward_filter_nb(loglik: np.ndarray, prior0: np.ndarray, transmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The forward recursion over ``n`` bars from ``prior0`` (k,): returns (filtered (n, k), predicted (n, k))
    float64; row t reads rows <= t of ``loglik`` (n, k) only (:func:`forward_step_nb` bar by bar)."""
    n, k = loglik.shape
    filtered = np.empty((n, k))
    predicted = np.empty((n, k))
    prior = prior0.copy()
    for t in range(n):
        forward_step_nb(prior, loglik[t], transmat, filtered[t], predicted[t])
        for i in range(k):
            prior[i] = predicted[t, i]
    return filtered, predicted


@njit(cache=True)
def regime_inputs_nb(close: np.ndarray, volume: np.ndarray, bsg: np.ndarray, rv_window: int) -> np.ndarray:
    """Raw per-bar inputs of the regime model, causal: (3, n) float64 rows

    0: log return log(c_t / c_{t-1}) (NaN on the first bar and the first bar after a gap, bsg == 0);
    1: log realised volatility log(sqrt(mean of the last ``rv_window`` squared log returns) + 1e-12)
       (NaN until ``rv_window`` returns since the last gap exist);
    2: log(1 + volume_t) (base units).

    close, volume: (n,) float64; bsg: (n,) int64 bars since the last gap (``forge.data.gaps``).
    """
    n = close.shape[0]
    out = np.full((3, n), np.nan)
    r = np.full(n, np.nan)
    for t in range(n):
        if t > 0 and bsg[t] > 0 and close[t] > 0 and close[t - 1] > 0:
            r[t] = np.log(close[t] / close[t - 1])
        out[0, t] = r[t]
        out[2, t] = np.log1p(volume[t]) if volume[t] >= 0 else np.nan
        if bsg[t] >= rv_window:
            s = 0.0
            ok = True
            for j in range(t - rv_window + 1, t + 1):
                if not np.isfinite(r[j]):
                    ok = False
                    break
                s += r[j] * r[j]
            if ok:
                out[1, t] = np.log(np.sqrt(s / rv_window) + 1e-12)
    return out
