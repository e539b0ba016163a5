"""The execution policy's inference kernel: a linear scorer over the state, argmax over the actions.

State (``N_FEATURES`` float64, the slots ``F_*``), with the context that observes each input:

==============  =======================================================  =========  =========
slot            definition (units)                                      simulator  klines
==============  =======================================================  =========  =========
F_BIAS          1                                                       yes        yes
F_SPREAD        quoted spread (sim) / 2 x Corwin-Schultz half-spread    yes        estimate
                (klines), in units of 10 bp of the mid
F_VOL           EWMA per-step volatility of log mid (sim) / close       yes        yes
                (klines) returns, units of 10 bp
F_URGENCY       intent urgency in [0, 1] (:mod:`forge.execution.intents`) yes      yes
F_TAU           steps left to the deadline / deadline, in [0, 1]        yes        yes
F_FILLED        fraction of the intent already filled, in [0, 1]        yes        yes
F_IMBALANCE     top-of-book imbalance (bid - ask) / (bid + ask), signed yes        0 (absent)
                by the order side (+ = the book leans our way)
F_OFI           order-flow imbalance of the last step (Cont, Kukanov &  yes        0 (absent)
                Stoikov 2014) / top depth, signed by the side, clipped
                to [-1, 1]
F_PRESSURE      book pressure: (bid - ask lots) / (bid + ask lots)      yes        0 (absent)
                within 5 ticks of each best
                (``forge.sim.lens_nb.book_pressure_nb``), signed by side
F_DRIFT         side x (mid - decision mid) / decision mid, units of    yes        0 (absent)
                10 bp (+ = the price ran away from the order)
F_QUEUE         lots ahead of the resting child in its level's FIFO     yes        0 (absent)
                (``book_queue_ahead_nb``; when none rests, the lots at
                the touch it would join) / parent lots, clipped to
                [0, 10]
F_OFI_EMA       EWMA (weight 1/2 per step) of the signed, clipped       yes        0 (absent)
                F_OFI
==============  =======================================================  =========  =========

The first eight slots are the layout of the first policies (``FEATURE_NAMES_V1``); a policy document names
the slots it uses (:mod:`forge.execution.policy`), so those files load unchanged with zero weight on the
later slots.

Actions (``A_*``): A_MARKET (cross now: market order for the rest), A_TOUCH (limit at the touch: the
best bid for a buy / best ask for a sell; on klines the estimated one), A_INSIDE (limit one tick inside
the spread in the simulator; half a half-spread from the mid on klines), A_WAIT (no order this step).

Policy: ``action = argmax_a weights[a] . x`` (ties -> the lowest action index), weights
(N_ACTIONS, N_FEATURES) float64.  The always-taker policy is ``ALWAYS_TAKER`` (score 1 for A_MARKET,
0 elsewhere).
"""

from __future__ import annotations

import numpy as np
from numba import njit

A_MARKET = 0
A_TOUCH = 1
A_INSIDE = 2
A_WAIT = 3
N_ACTIONS = 4
ACTION_NAMES = ("market", "touch", "inside", "wait")

F_BIAS = 0
F_SPREAD = 1
F_VOL = 2
F_URGENCY = 3
F_TAU = 4
F_FILLED = 5
F_IMBALANCE = 6
F_OFI = 7
F_PRESSURE = 8
F_DRIFT = 9
F_QUEUE = 10
F_OFI_EMA = 11
N_FEATURES = 12
FEATURE_NAMES = ("bias", "spread", "vol", "urgency", "tau", "filled", "imbalance", "ofi", "pressure", "drift",
                 "queue", "ofi_ema")
FEATURE_NAMES_V1 = FEATURE_NAMES[:8]
"""The layout of the first (eight-input) policies, e.g. the default always-taker's document."""
KLINE_FEATURES = ("bias", "spread", "vol", "urgency", "tau", "filled")
"""The inputs a kline-bar context observes (imbalance and OFI are 0 there)."""


def always_taker() -> np.ndarray:
    """(N_ACTIONS, N_FEATURES) weights of the default policy: A_MARKET on every decision."""
    w = np.zeros((N_ACTIONS, N_FEATURES))
    w[A_MARKET, F_BIAS] = 1.0
    return w


def maker_then_cross() -> np.ndarray:
    """Weights of the baseline that always rests at the touch (the deadline then crosses the rest)."""
    w = np.zeros((N_ACTIONS, N_FEATURES))
    w[A_TOUCH, F_BIAS] = 1.0
    return w


@njit(cache=True, error_model="numpy")
def policy_action_nb(weights, x):
    """argmax_a weights[a] . x; weights (N_ACTIONS, k) float64, x (m,) float64; the first min(k, m) inputs
    are read (a shorter state reads as zeros beyond its end)."""
    best = 0
    best_s = -np.inf
    nf = min(weights.shape[1], x.shape[0])
    for a in range(weights.shape[0]):
        s = 0.0
        for f in range(nf):
            s += weights[a, f] * x[f]
        if s > best_s:
            best_s = s
            best = a
    return best
