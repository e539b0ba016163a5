"""Fractional Kelly sizing of a strategy's targets, measured on the bars that selected it (in-sample only).

``[execution] sizing`` (``forge.backtest.fills.ExecutionConfig``): ``"unit"`` (the default: targets as the
genome outputs them, in [-1, 1]) or ``"kelly"``: every target is multiplied by

    f = min(kelly_cap * mu / sigma^2, max_leverage)      (0 when mu <= 0)

where mu and sigma^2 are the mean and variance (ddof 1) of the strategy's **net per-bar returns at unit
sizing on its in-sample bars** -- the taker backtest (``forge.backtest.run_backtest``) with the run's
costs (fees, slippage, funding) on the run's in-sample range, positions computed on every bar before it so
look-backs are warm.  The out-of-sample / validation bars never enter f: the only bars that chose anything
(the genome and now its size) are the in-sample ones.  f* = mu / sigma^2 is the growth-optimal fraction of
a continuous-time (small-return) bet (Kelly 1956; Thorp 2006, "The Kelly criterion in blackjack, sports
betting and the stock market", eq. 7.1); ``kelly_cap`` = 0.5 is half Kelly, the seeds' default cap, which
keeps about 3/4 of the growth rate at half the volatility and guards against an over-estimated edge (an
in-sample edge of a selected strategy is biased upward by the selection).  The backtesters clip targets to
[-1, 1], so there the exposure is min(f, max_leverage, 1) times the genome's output.

Why the default is ``unit``: sizing changes the trade list and every figure of a backtest, evolution's
fitness is defined at unit exposure, and an in-sample Kelly fraction of a searched strategy inherits the
search's optimism -- a user opts in, and the published champion then carries the multiplier in its signed
meta (``forge.core.champion``, field ``sizing``) so the Crucible trades it at the size the backtest showed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forge.execution.intents import kelly_fraction

__all__ = ["SIZINGS", "kelly_sizing"]

SIZINGS = ("unit", "kelly")


def kelly_sizing(open_: np.ndarray, close: np.ndarray, open_time: np.ndarray, position: np.ndarray,
                 in_sample: tuple[int, int], backtest: Any, *, cap: float = 0.5, max_leverage: float = 1.0,
                 sized_on: str = "in-sample") -> dict[str, Any]:
    """The Kelly multiplier of ``position`` measured on the rows ``in_sample`` = (a, b) only.

    open_, close: (n,) float64 prices (quote per unit > 0); open_time: (n,) int64 ms; position: (n,) float64
    targets at unit sizing decided at each close (computed on all n bars); in_sample: row range [a, b) with
    b - a >= 2; backtest: ``forge.backtest.BacktestConfig`` (the run's costs); cap in (0, 1]; max_leverage > 0;
    sized_on: label of the rows recorded in the result.
    returns {"method": "kelly", "multiplier": f, "kelly_cap", "max_leverage", "sized_on", "n_bars",
    "mean_bar_return", "var_bar_return", "returns": "net per-bar returns at unit sizing (taker backtest)"}.
    raises ValueError when the range is outside the arrays or shorter than 2 bars.
    """
    from forge.backtest import run_backtest

    a, b = int(in_sample[0]), int(in_sample[1])
    n = np.asarray(close).shape[0]
    if not (0 <= a and b <= n and b - a >= 2):
        raise ValueError(f"kelly sizing: in-sample rows [{a}, {b}) must be inside [0, {n}) and hold >= 2 bars")
    o = np.ascontiguousarray(open_[a:b], dtype=np.float64)
    c = np.ascontiguousarray(close[a:b], dtype=np.float64)
    t = np.ascontiguousarray(open_time[a:b], dtype=np.int64)
    p = np.ascontiguousarray(position[a:b], dtype=np.float64)
    r = np.asarray(run_backtest(o, c, t, p, backtest).returns, dtype=np.float64)
    f = kelly_fraction(r, cap, max_leverage)
    rf = r[np.isfinite(r)]
    return {"method": "kelly", "multiplier": float(f), "kelly_cap": float(cap), "max_leverage": float(max_leverage),
            "sized_on": sized_on, "n_bars": b - a,
            "mean_bar_return": float(rf.mean()) if rf.size else float("nan"),
            "var_bar_return": float(rf.var(ddof=1)) if rf.size > 1 else float("nan"),
            "returns": "net per-bar returns at unit sizing (taker backtest, the run's costs)"}
