"""Performance metrics of one backtest (the ``Metrics`` record and its definitions).

All ratios are computed from per-bar simple returns of equity marked at
each close, ``r[t] = equity[t] / equity[t-1] - 1`` with
``equity[-1] = initial_capital`` (``r = 0`` once equity is 0 after ruin):

* sharpe = mean(r) / std(r, ddof=1) * sqrt(periods_per_year)
  (Sharpe 1994; NaN with fewer than 2 bars or zero variance);
* sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods_per_year)
  (Sortino & Price 1994, target 0, downside deviation over all bars;
  +inf when there is no losing bar and mean > 0, NaN when mean is 0 too);
* cagr = (final / initial)^(1 / years) - 1 with years = n_bars / periods_per_year
  (-1 on ruin; +inf when a large gain over a short span overflows float64);
  calmar = cagr / max_drawdown (NaN without a drawdown);
* max_drawdown = max over bars of 1 - equity / running peak (the peak
  starts at initial_capital), a positive fraction, 1.0 on ruin;
* turnover = sum of |traded notional| / mean equity over the bars;
* exposure = fraction of bars during which a nonzero position is held;
* win_rate = fraction of closed round trips (back to flat, a sign flip, or
  ruin) whose equity change, fees, slippage and funding included, is > 0;
  a flip's costs are split between the closing and the opening leg by size;
  NaN when no round trip closed;
* ttt_bars, time-to-target = number of bars until equity first reaches
  target_multiple * initial_capital (bar index + 1); +inf if never reached
  or if the run is ruined at any point.

Per-bar (not annualised) statistics shared by the gauntlet and the Crucible -- one home, one definition,
mean / std (ddof=1) of per-bar simple returns:

* :func:`sharpe_per_bar` of a return series (the gauntlet's PSR/DSR/trials; non-finite returns dropped);
* :func:`sharpe_per_bar_of_equity` of an equity curve (Crucible slot and challenger scores, the CWO), and
  :func:`drawdown_from_peak` (the *current* drawdown, 1 - last / peak); kernels in
  :mod:`forge.backtest.metrics_nb` so numba code (the CWO) calls them directly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.backtest import backtest_nb as _k
from forge.backtest.metrics_nb import drawdown_from_peak_nb, sharpe_per_bar_of_equity_nb

__all__ = ["Metrics", "sharpe_per_bar", "sharpe_per_bar_of_equity", "drawdown_from_peak"]

_FLOAT_FIELDS = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "turnover",
    "exposure",
    "win_rate",
    "ttt_bars",
    "final_equity",
)
_INT_FIELDS = ("n_trades", "n_bars")


@dataclass(frozen=True)
class Metrics:
    """Summary of one backtest; definitions in the module docstring.

    total_return, cagr, max_drawdown, exposure, win_rate: fractions;
    sharpe, sortino, calmar: annualised ratios; turnover: multiples of mean
    equity; n_trades: number of fills; ttt_bars: bars (float, +inf = never);
    n_bars: bars simulated; final_equity: quote currency (USDT).
    """

    total_return: float
    cagr: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    turnover: float
    exposure: float
    n_trades: int
    win_rate: float
    ttt_bars: float
    n_bars: int
    final_equity: float

    @classmethod
    def from_vector(cls, v: np.ndarray) -> Metrics:
        """Metrics from the kernel's (N_METRICS,) float64 vector (slots ``backtest_nb.M_*``)."""
        return cls(
            total_return=float(v[_k.M_TOTAL_RETURN]),
            cagr=float(v[_k.M_CAGR]),
            sharpe=float(v[_k.M_SHARPE]),
            sortino=float(v[_k.M_SORTINO]),
            calmar=float(v[_k.M_CALMAR]),
            max_drawdown=float(v[_k.M_MAX_DRAWDOWN]),
            turnover=float(v[_k.M_TURNOVER]),
            exposure=float(v[_k.M_EXPOSURE]),
            n_trades=int(v[_k.M_N_TRADES]),
            win_rate=float(v[_k.M_WIN_RATE]),
            ttt_bars=float(v[_k.M_TTT_BARS]),
            n_bars=int(v[_k.M_N_BARS]),
            final_equity=float(v[_k.M_FINAL_EQUITY]),
        )

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict: Python floats (inf and NaN kept as floats), counts as int."""
        out: dict[str, float | int] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = int(v) if f.name in _INT_FIELDS else float(v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Metrics:
        """Inverse of :meth:`to_dict`; raises ValueError naming missing or unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(d))
        unknown = sorted(set(d) - names)
        if missing or unknown:
            raise ValueError(f"Metrics.from_dict: missing keys {missing}, unknown keys {unknown}")
        kwargs: dict[str, Any] = {}
        for name in names:
            v = d[name]
            kwargs[name] = int(v) if name in _INT_FIELDS else (math.nan if v is None else float(v))
        return cls(**kwargs)


def sharpe_per_bar(returns: np.ndarray) -> float:
    """Per-bar Sharpe ratio: mean / std (ddof=1) of (T,) float64 returns, non-finite values dropped; 0.0 if
    std is 0 or fewer than 2 finite values."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd if sd > 0 else 0.0


def sharpe_per_bar_of_equity(equity: np.ndarray) -> float:
    """Per-bar Sharpe of an equity curve: mean / std (ddof=1) of simple per-bar returns; 0 if flat, short
    (< 3 marks) or if any mark but the last is <= 0.  equity: (n,) USDT marks, oldest first."""
    return float(sharpe_per_bar_of_equity_nb(np.asarray(equity, dtype=np.float64)))


def drawdown_from_peak(equity: np.ndarray) -> float:
    """Current drawdown from the running peak, fraction in [0, 1] (0 for an empty curve); equity: (n,) USDT."""
    return float(drawdown_from_peak_nb(np.asarray(equity, dtype=np.float64)))
