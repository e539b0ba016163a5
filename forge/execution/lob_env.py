"""The limit-order-book simulator as an execution environment (simulated microstructure).

One episode = one simulated market (``forge.sim.market.Simulator``, quiet scenario -- the predators react
to ``si[I_STRAT_POS]``, which these child orders do not update, so no scenario is run --, seed ``seed``) and a
fixed stream of intents from a planted strategy: every ``intent_every_min`` minutes a parent order of
``intent_lots`` lots, side and urgency drawn from ``forge.core.rng.generator(seed, "exec", "intents")``, a
deadline of :func:`forge.execution.intents.deadline` decision steps of ``step_s`` seconds.  At each step
the policy (:mod:`forge.execution.policy_nb`) sees the state (spread, top-of-book imbalance, OFI of the last
step and its EWMA, book pressure over 5 ticks, volatility, urgency, time to deadline, fraction filled, the
price's drift since the decision, the queue ahead of the child) and acts:

* market: cancel the resting child, market order for the rest (taker fee), intent done;
* touch: a limit at the best bid (buy) / best ask (sell);
* inside: one tick inside the spread (at the touch when the spread is one tick);
* wait: cancel the resting child.

A resting child at an unchanged price is kept (it keeps its queue position); otherwise it is cancelled
and replaced, joining the back of the new level's queue.  Queue position is exact: the book is
price-time priority and a child fills only after the lots ahead of it are traded or cancelled
(``forge.sim.book_nb.book_queue_ahead_nb``).  At the deadline the rest crosses.

Cost of an intent (implementation shortfall, Perold 1988, plus fees): sum of side * (fill price - decision
mid) * lots + fees, per unit of decision-mid notional; reported in bp.  Markout: side * (mid at the next
intent's decision - average fill price) / decision mid, bp.  These are **simulated microstructure**
figures: the simulator is calibrated on bar-level facts only; its spread, depth and fill probabilities
have not been checked against recorded books.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.core import rng as _rng
from forge.core.errors import ConfigError
from forge.execution.intents import deadline as _deadline
from forge.execution.policy_nb import (
    A_INSIDE,
    A_MARKET,
    A_TOUCH,
    A_WAIT,
    F_BIAS,
    F_DRIFT,
    F_FILLED,
    F_IMBALANCE,
    F_OFI,
    F_OFI_EMA,
    F_PRESSURE,
    F_QUEUE,
    F_SPREAD,
    F_TAU,
    F_URGENCY,
    F_VOL,
    N_FEATURES,
    policy_action_nb,
)
from forge.sim import agents_nb as K
from forge.sim.book_nb import BUY, NO_PRICE, O_ALIVE, O_UID, SELL, book_queue_ahead_nb, book_top_nb
from forge.sim.lens_nb import book_pressure_nb, ofi_nb

__all__ = ["EnvConfig", "evaluate_policy", "run_episode"]

LABEL = "simulated microstructure"


@dataclass(frozen=True)
class EnvConfig:
    """minutes: simulated minutes per episode; step_s: seconds between decisions; intent_every_min:
    minutes between intents; deadline_steps: steps an intent of zero urgency may rest (>= 1);
    intent_lots: parent order size (lots; the simulator's mean background order is 100,000 lots);
    maker_fee_bps / taker_fee_bps: fees (default the USDⓈ-M futures preset, 2 / 5 bp);
    vol_halflife_steps: EWMA half-life of the per-step mid volatility."""

    minutes: int = 60
    step_s: float = 10.0
    intent_every_min: int = 3
    deadline_steps: int = 12
    intent_lots: int = 200_000
    maker_fee_bps: float = 2.0
    taker_fee_bps: float = 5.0
    vol_halflife_steps: float = 6.0

    def validate(self) -> None:
        if self.minutes < self.intent_every_min + 2:
            raise ConfigError(f"minutes must be >= intent_every_min + 2, got {self.minutes}")
        if not 0 < self.step_s <= 60:
            raise ConfigError(f"step_s must be in (0, 60], got {self.step_s}")
        if self.deadline_steps < 1 or (self.deadline_steps + 1) * self.step_s > self.intent_every_min * 60:
            raise ConfigError("need deadline_steps >= 1 and (deadline_steps + 1) * step_s <= intent_every_min * 60")
        if self.intent_lots < 1:
            raise ConfigError(f"intent_lots must be >= 1, got {self.intent_lots}")


def _intents(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = _rng.generator(seed, "exec", "intents")
    side = np.where(g.random(n) < 0.5, 1, -1)
    urg = g.random(n)
    return side, urg


def run_episode(weights: np.ndarray, seed: int, env: EnvConfig = EnvConfig(), *, fixed_action: int = -1,
                dsg: np.ndarray | None = None, record: bool = False) -> dict[str, Any]:
    """Execute the intent stream of ``seed`` with the policy ``weights`` ((N_ACTIONS, N_FEATURES) float64;
    ``fixed_action`` >= 0 overrides it with one action every step: A_MARKET = always-taker, A_TOUCH =
    always-maker-then-cross).  dsg: simulator parameters (default ``forge.sim.params.default_dsg()``).
    returns {"label", "cost_bps" (shortfall + fees per unit of decision notional), "fee_bps",
    "shortfall_bps", "maker_share" (lots filled passively / lots), "fill_rate" (share of intents completed
    without crossing at the deadline or choosing market), "markout_bps", "n_intents", "decision_s"
    (mean seconds per policy decision), "intents": per-intent rows when ``record``}.
    """
    import time

    from forge.sim.market import SimConfig, Simulator
    from forge.sim.params import default_dsg

    env.validate()
    sim = Simulator(default_dsg() if dsg is None else dsg, int(seed), env.minutes, config=SimConfig())
    a = sim.strategy_agent
    arrs = (sim.o, sim.lv, sim.bk, sim.free, sim.tracked, sim.fb, sim.ag_f, sim.sf, sim.si, sim.bars_raw,
            sim.msg_log, sim.trade_log)
    t0 = sim.now
    n_int = (env.minutes - 2) // env.intent_every_min
    sides, urgs = _intents(int(seed), n_int)
    top = np.zeros(4, dtype=np.int64)
    x = np.zeros(N_FEATURES)
    lam = 1.0 - math.exp(-math.log(2.0) / env.vol_halflife_steps)
    mk, tk = env.maker_fee_bps / 1e4, env.taker_fee_bps / 1e4
    v2 = 0.0
    tot_base = tot_slip = tot_fee = tot_maker_lots = tot_lots = 0.0
    n_passive_done = 0
    marks: list[float] = []
    rows: list[dict[str, Any]] = []
    n_dec = 0
    t_dec = 0.0
    pending_mark: tuple[int, float, float] | None = None
    for k in range(n_int):
        sim.advance_to(t0 + k * env.intent_every_min * 60.0)
        mid0 = sim.mid() / sim.tick_size  # ticks
        if pending_mark is not None:
            s_prev, px_prev, mid_prev = pending_mark
            marks.append(1e4 * s_prev * (mid0 - px_prev) / mid_prev)
        side = int(sides[k])
        bs = BUY if side > 0 else SELL
        u = float(urgs[k])
        dl = _deadline(u, env.deadline_steps)
        lots = env.intent_lots
        inv0 = sim.ag_f[a, K.AF_INV]
        cash0 = sim.ag_f[a, K.AF_CASH]
        taker_lots = 0.0
        taker_notional = 0.0
        oid, uid, opx = -1, -1, NO_PRICE
        book_top_nb(sim.lv, sim.bk, top)
        prev = top.copy()
        prev_mid = mid0
        ofi_ema = 0.0
        crossed = False
        for step in range(dl + 1):
            book_top_nb(sim.lv, sim.bk, top)
            bb, ba, qb, qa = int(top[0]), int(top[1]), int(top[2]), int(top[3])
            mid = sim.mid() / sim.tick_size
            if step > 0 and mid > 0 and prev_mid > 0:
                lr = math.log(mid / prev_mid)
                v2 = (1 - lam) * v2 + lam * lr * lr
            prev_mid = mid
            filled = abs(sim.ag_f[a, K.AF_INV] - inv0)
            rem = lots - int(round(filled))
            if rem <= 0:
                break
            left = dl - step
            t_a = time.perf_counter()
            if left <= 0:
                act = A_MARKET
            elif fixed_action >= 0:
                act = fixed_action
            else:
                spread = (ba - bb) if (bb != NO_PRICE and ba != NO_PRICE) else 1
                x[F_BIAS] = 1.0
                x[F_SPREAD] = spread / mid * 1e3
                x[F_VOL] = math.sqrt(v2) * 1e3
                x[F_URGENCY] = u
                x[F_TAU] = left / dl
                x[F_FILLED] = filled / lots
                depth = qb + qa
                x[F_IMBALANCE] = side * (qb - qa) / depth if depth > 0 else 0.0
                e = ofi_nb(prev[0], prev[2], prev[1], prev[3], bb, qb, ba, qa) if step > 0 else 0.0
                x[F_OFI] = max(-1.0, min(1.0, side * e / depth)) if depth > 0 else 0.0
                ofi_ema = 0.5 * ofi_ema + 0.5 * x[F_OFI]
                x[F_OFI_EMA] = ofi_ema
                x[F_PRESSURE] = side * book_pressure_nb(sim.lv, sim.bk, 5)
                x[F_DRIFT] = side * (mid - mid0) / mid0 * 1e3
                alive = oid >= 0 and sim.o[oid, O_ALIVE] == 1 and sim.o[oid, O_UID] == uid
                ahead = book_queue_ahead_nb(sim.o, sim.lv, oid) if alive else (qb if side > 0 else qa)
                x[F_QUEUE] = min(10.0, max(0.0, ahead / lots))
                act = int(policy_action_nb(weights, x))
            t_dec += time.perf_counter() - t_a
            n_dec += 1
            prev[:] = top
            if act == A_MARKET:
                if oid >= 0:
                    K.strategy_cancel_nb(*arrs, oid, uid)
                    oid = -1
                # the cancel may race nothing (single-threaded): recompute the rest after it
                rem = lots - int(round(abs(sim.ag_f[a, K.AF_INV] - inv0)))
                if rem > 0:
                    q, notional = K.strategy_market_nb(*arrs, bs, rem)
                    taker_lots += q
                    taker_notional += notional
                crossed = True
                break
            want = NO_PRICE
            if act == A_TOUCH:
                want = bb if side > 0 else ba
            elif act == A_INSIDE:
                if bb != NO_PRICE and ba != NO_PRICE and ba - bb > 1:
                    want = bb + 1 if side > 0 else ba - 1
                else:
                    want = bb if side > 0 else ba
            if want == NO_PRICE or act == A_WAIT:
                if oid >= 0:
                    K.strategy_cancel_nb(*arrs, oid, uid)
                    oid = -1
            else:
                alive = oid >= 0 and sim.o[oid, O_ALIVE] == 1 and sim.o[oid, O_UID] == uid
                if not (alive and opx == want):
                    if oid >= 0:
                        K.strategy_cancel_nb(*arrs, oid, uid)
                    rem = lots - int(round(abs(sim.ag_f[a, K.AF_INV] - inv0)))
                    oid, uid = K.strategy_limit_nb(*arrs, bs, want, rem)
                    opx = want
            end = sim.now + env.step_s
            sim.advance_to(end)
        if oid >= 0:
            K.strategy_cancel_nb(*arrs, oid, uid)
        dq = abs(sim.ag_f[a, K.AF_INV] - inv0)
        paid = side * -(sim.ag_f[a, K.AF_CASH] - cash0)  # ticks*lots paid for a buy, received for a sell
        maker_lots = dq - taker_lots
        maker_notional = max(paid - taker_notional, 0.0)
        fee = mk * maker_notional + tk * taker_notional
        avg_px = paid / dq if dq > 0 else mid0
        base = mid0 * dq
        slip = side * (avg_px - mid0) * dq
        tot_base += base
        tot_slip += slip
        tot_fee += fee
        tot_maker_lots += maker_lots
        tot_lots += dq
        n_passive_done += int(not crossed)
        pending_mark = (side, avg_px, mid0)
        if record:
            rows.append({"intent": k, "side": side, "urgency": u, "deadline_steps": dl, "lots": dq,
                         "maker_lots": maker_lots, "avg_px_ticks": avg_px, "decision_mid_ticks": mid0,
                         "cost_bps": 1e4 * (slip + fee) / base if base > 0 else math.nan, "crossed": crossed})
    sim.advance_to(t0 + n_int * env.intent_every_min * 60.0)
    if pending_mark is not None:
        s_prev, px_prev, mid_prev = pending_mark
        marks.append(1e4 * s_prev * (sim.mid() / sim.tick_size - px_prev) / mid_prev)
    return {"label": LABEL, "cost_bps": 1e4 * (tot_slip + tot_fee) / tot_base, "fee_bps": 1e4 * tot_fee / tot_base,
            "shortfall_bps": 1e4 * tot_slip / tot_base, "maker_share": tot_maker_lots / tot_lots,
            "fill_rate": n_passive_done / n_int, "markout_bps": float(np.mean(marks)) if marks else math.nan,
            "n_intents": n_int, "decision_s": t_dec / max(n_dec, 1), "intents": rows}


def evaluate_policy(weights: np.ndarray, seeds: list[int] | tuple[int, ...], env: EnvConfig = EnvConfig(), *,
                    fixed_action: int = -1) -> dict[str, Any]:
    """:func:`run_episode` over ``seeds``: the per-seed results and their means ("cost_bps" is the mean of
    per-seed costs, every seed trading the same number of equal-size intents)."""
    per = [run_episode(weights, s, env, fixed_action=fixed_action) for s in seeds]
    keys = ("cost_bps", "fee_bps", "shortfall_bps", "maker_share", "fill_rate", "markout_bps", "decision_s")
    out: dict[str, Any] = {k: float(np.mean([p[k] for p in per])) for k in keys}
    out["label"] = LABEL
    out["seeds"] = list(seeds)
    out["per_seed_cost_bps"] = [p["cost_bps"] for p in per]
    return out

