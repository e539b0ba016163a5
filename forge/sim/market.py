"""Orchestration of the HF-ABM: state allocation, seeding, bars out, benchmarks.

``Simulator`` owns every array of one simulated market (book, agents,
schedule, bars) and advances it minute by minute with one numba call per
``run``; ``simulate_bars`` is the one-shot convenience.  Bars come out as a
*bar frame* with exactly ``forge.data.schema.BAR_SCHEMA`` (Binance kline
columns minus ``ignore``), so the feature pipeline and the VM run unchanged
on simulated bars.

Units: internal prices are int ticks of ``tick_size`` quote currency
(``SimConfig.tick_bp`` bp of the start price, rounded to 2 significant
digits); internal sizes are int lots of ``lot_quote / start_price`` base
units.  Simulated time starts ``burn_in_minutes`` before bar 0 so the book
is populated when the first bar opens.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from forge.core import rng
from forge.core.errors import ConfigError, ForgeError
from forge.data.schema import BAR_MS, BAR_SCHEMA
from forge.sim import agents_nb as K
from forge.sim.book_nb import B_BASE, B_BEST_ASK, B_BEST_BID, L_QTY, MSG_DTYPE, BOOK_TRADE_DTYPE, new_book
from forge.sim.params import default_dsg, no_scenario, validate_dsg, validate_scenario

DEFAULT_START_MS = 1718582400000
"""2024-06-17 00:00 UTC, the embedded sample's first bar (ms)."""
DEFAULT_START_PRICE = 66_676.86
"""USDT per BTC, the embedded sample's first open."""
ABIDES_MSG_PER_S = 14_000.0
"""ABIDES (Byrd et al. 2019) order-book messages per second (quoted anchor, not run here)."""
DEFAULT_EVENTS_PER_MINUTE = 30_000
"""Default event budget per simulated minute (incl. burn-in) when ``SimConfig.max_events`` is None:
~30x the default DSG's ~950 book messages per minute; at ~4 M events/s (``sim_throughput``) a
1,440-bar day then costs at most ~11 s of one core."""


@dataclass(frozen=True)
class SimConfig:
    """Structural settings of the simulated market (not calibrated).

    n_noise/n_mm/n_momentum/n_value: agents per class (class rates are
    totals split evenly, so counts change only the streams); tick_bp: tick
    size in bp of the start price; n_levels: width of the dense price window
    (ticks); order_capacity: order-pool slots; mean_order_lots: mean
    background order size (lots); burn_in_minutes: simulated before bar 0;
    max_events: per-simulation event budget — the run stops cleanly once the
    book messages (limit/market/cancel) *or* the agent wakes processed reach
    it (checked before every wake; the last wake may overshoot by the
    messages it sends), every later bar repeats the last close with zero
    volume and ``Simulator.truncated`` / ``SimResult.truncated`` /
    ``StrategySimResult.truncated`` say so.  None (default) =
    ``DEFAULT_EVENTS_PER_MINUTE`` x (burn_in_minutes + n_minutes); an int >= 1
    is the absolute cap.
    """

    n_noise: int = 4
    n_mm: int = 4
    n_momentum: int = 2
    n_value: int = 2
    tick_bp: float = 1.0
    n_levels: int = 4096
    order_capacity: int = 16384
    mean_order_lots: int = 100_000
    burn_in_minutes: int = 30
    max_events: int | None = None

    def validate(self) -> None:
        """raises ConfigError naming the bad field."""
        for name in ("n_noise", "n_mm", "n_momentum", "n_value"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1 or v > 64:
                raise ConfigError(f"SimConfig.{name} must be an int in [1, 64], got {v!r}")
        if not (0.01 <= self.tick_bp <= 100.0):
            raise ConfigError(f"SimConfig.tick_bp must be in [0.01, 100] bp, got {self.tick_bp!r}")
        if not (256 <= self.n_levels <= 1 << 20):
            raise ConfigError(f"SimConfig.n_levels must be in [256, 2^20], got {self.n_levels!r}")
        if not (64 <= self.order_capacity <= 1 << 24):
            raise ConfigError(f"SimConfig.order_capacity must be in [64, 2^24], got {self.order_capacity!r}")
        if not (1 <= self.mean_order_lots <= 10**9):
            raise ConfigError(f"SimConfig.mean_order_lots must be in [1, 1e9], got {self.mean_order_lots!r}")
        if not (0 <= self.burn_in_minutes <= 1440):
            raise ConfigError(f"SimConfig.burn_in_minutes must be in [0, 1440], got {self.burn_in_minutes!r}")
        if self.max_events is not None and (
            not isinstance(self.max_events, (int, np.integer)) or isinstance(self.max_events, bool)
            or not (1 <= self.max_events <= 2**62)
        ):
            raise ConfigError(f"SimConfig.max_events must be None or an int in [1, 2^62], got {self.max_events!r}")

    def event_budget(self, n_minutes: int) -> int:
        """Book events / agent wakes one simulation of ``n_minutes`` bars may process."""
        if self.max_events is not None:
            return int(self.max_events)
        return DEFAULT_EVENTS_PER_MINUTE * (self.burn_in_minutes + int(n_minutes))


def tick_size_for(start_price: float, tick_bp: float) -> float:
    """Tick size (quote currency): tick_bp bp of the price, 2 significant digits."""
    raw = start_price * tick_bp * 1e-4
    return float(f"{raw:.2g}")


# agent layout: (class key, type code, count attribute or fixed count)
_PREDATORS = (("hunter", K.T_HUNTER), ("vacuum", K.T_VACUUM), ("spoofer", K.T_SPOOFER), ("shock", K.T_SHOCK))


class Simulator:
    """One simulated market, advanced minute by minute.

    dsg: (N_P,) float64 DSG (``forge.sim.params``); seed: int >= 0 (every
    agent stream is derived from it and the agent's key); n_minutes: bars to
    hold; scenario: (N_SC,) float64 predator genome or None (quiet);
    start_ms: open_time of bar 0 (int ms, UTC); start_price: quote currency
    per base at t=0; record_messages / record_trades: keep the MSG_DTYPE /
    BOOK_TRADE_DTYPE logs (tests, benchmarks).
    raises ConfigError on invalid parameters.
    """

    def __init__(
        self,
        dsg: np.ndarray,
        seed: int,
        n_minutes: int,
        *,
        scenario: np.ndarray | None = None,
        start_ms: int = DEFAULT_START_MS,
        start_price: float = DEFAULT_START_PRICE,
        config: SimConfig | None = None,
        record_messages: bool = False,
        record_trades: bool = False,
    ) -> None:
        cfg = config or SimConfig()
        cfg.validate()
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an int >= 0, got {seed!r}")
        if not isinstance(n_minutes, (int, np.integer)) or n_minutes < 1:
            raise ConfigError(f"n_minutes must be an int >= 1, got {n_minutes!r}")
        if not (isinstance(start_price, (int, float)) and math.isfinite(start_price) and start_price > 0):
            raise ConfigError(f"start_price must be a positive finite number, got {start_price!r}")
        if not isinstance(start_ms, (int, np.integer)):
            raise ConfigError(f"start_ms must be an int (ms since epoch, UTC), got {start_ms!r}")
        self.config = cfg
        self.p = validate_dsg(dsg)
        self.sc = no_scenario() if scenario is None else validate_scenario(scenario)
        self.seed = int(seed)
        self.n_minutes = int(n_minutes)
        self.start_ms = int(start_ms)
        self.start_price = float(start_price)
        self.tick_size = tick_size_for(self.start_price, cfg.tick_bp)
        self.p0_ticks = max(int(round(self.start_price / self.tick_size)), 1)
        self.lot_base = float(self.p[K.P_LOT_QUOTE]) / self.start_price
        self._price_decimals = max(0, -math.floor(math.log10(self.tick_size)) + 2)

        # agents: clock, noise, mm, momentum, value, predators, strategy
        types: list[int] = [K.T_CLOCK]
        keys: list[tuple[object, ...]] = [("clock",)]
        for cls, code, n in (("noise", K.T_NOISE, cfg.n_noise), ("mm", K.T_MM, cfg.n_mm),
                             ("momentum", K.T_MOM, cfg.n_momentum), ("value", K.T_VAL, cfg.n_value)):
            for i in range(n):
                types.append(code)
                keys.append((cls, i))
        for cls, code in _PREDATORS:
            types.append(code)
            keys.append((cls,))
        types.append(K.T_STRATEGY)
        keys.append(("strategy",))
        self.agent_keys = keys
        n_ag = len(types)
        self.ag_type = np.array(types, dtype=np.int64)
        self.strategy_agent = n_ag - 1
        self.rs = np.array(
            [rng.seed_sequence(self.seed, "sim", *k).generate_state(2, dtype=np.uint32).view(np.uint64)[0] for k in keys],
            dtype=np.uint64,
        )
        self.ag_f = np.zeros((n_ag, K.N_AF), dtype=np.float64)
        self.qs = np.full((n_ag, 2, K.MAXQ, 2), -1, dtype=np.int64)
        self.hp_t = np.zeros(n_ag, dtype=np.float64)
        self.hp_a = np.zeros(n_ag, dtype=np.int64)
        self.hp_pos = np.zeros(n_ag, dtype=np.int64)
        self.o, self.lv, self.bk, self.free, self.tracked, self.fb = new_book(cfg.order_capacity, cfg.n_levels)
        self.shift_out = np.zeros((cfg.order_capacity, 6), dtype=np.int64)
        self.sf = np.zeros(K.N_SF, dtype=np.float64)
        si = np.zeros(K.N_SI, dtype=np.int64)
        si[K.I_RECORD_MSG] = int(bool(record_messages))
        si[K.I_RECORD_TRADE] = int(bool(record_trades))
        si[K.I_BAR_OFFSET] = cfg.burn_in_minutes
        si[K.I_MEAN_LOTS] = cfg.mean_order_lots
        si[K.I_STRAT_AGENT] = self.strategy_agent
        si[K.I_MARGIN] = cfg.n_levels // 4
        first_noise = 1
        first_mm = first_noise + cfg.n_noise
        si[K.I_FIRST_NOISE] = first_noise
        si[K.I_N_NOISE] = cfg.n_noise
        si[K.I_FIRST_MM] = first_mm
        si[K.I_N_MM] = cfg.n_mm
        si[K.I_N_MOM] = cfg.n_momentum
        si[K.I_N_VAL] = cfg.n_value
        si[K.I_HEADROOM] = cfg.order_capacity + 4 * K.MAXQ + 16
        self.max_events = cfg.event_budget(self.n_minutes)
        si[K.I_MAX_EVENTS] = self.max_events
        self.si = si
        cap0 = si[K.I_HEADROOM] * 2
        self.msg_log = np.zeros(cap0 if record_messages else 1, dtype=MSG_DTYPE)
        self.trade_log = np.zeros(cap0 if record_trades else 1, dtype=BOOK_TRADE_DTYPE)
        self.bars_raw = np.zeros((self.n_minutes, K.N_BAR), dtype=np.float64)
        K.init_nb(self.p, self.sc, self.o, self.lv, self.bk, self.free, self.tracked, self.ag_type, self.ag_f,
                  self.qs, self.rs, self.hp_t, self.hp_a, self.hp_pos, self.sf, self.si, self.p0_ticks)
        self.minute = 0
        """Bars completed so far (bar ``minute`` is the next to form)."""
        self._run_to(cfg.burn_in_minutes * 60.0)

    # ---------------------------------------------------------------- running
    @property
    def truncated(self) -> bool:
        """True once the event budget (``SimConfig.max_events``) stopped the simulation."""
        return bool(self.si[K.I_TRUNCATED])

    def _finalize_truncated(self, t_end: float) -> None:
        n_done = min(int(t_end / 60.0 + 1e-9) - self.config.burn_in_minutes, self.n_minutes)
        if n_done > 0:
            K._finalize_bars(self.bars_raw, self.si, n_done)

    def _run_to(self, t_end: float) -> None:
        if self.si[K.I_TRUNCATED]:
            # budget already exhausted: no more events; an order queued now never executes
            self.si[K.I_STRAT_PENDING] = 0
            self.sf[K.S_STRAT_FILL_QTY] = 0.0
            self.sf[K.S_STRAT_FILL_NOTIONAL] = 0.0
            self._finalize_truncated(t_end)
            return
        while True:
            status = K.run_nb(
                t_end, self.p, self.sc, self.o, self.lv, self.bk, self.free, self.tracked, self.fb,
                self.shift_out, self.ag_type, self.ag_f, self.qs, self.rs, self.hp_t, self.hp_a, self.hp_pos,
                self.sf, self.si, self.bars_raw, self.msg_log, self.trade_log,
            )
            if status == K.STATUS_DONE:
                return
            if status == K.STATUS_BUDGET:  # stopped cleanly between two events
                self._finalize_truncated(t_end)
                return
            if self.si[K.I_RECORD_MSG]:
                self.msg_log = np.concatenate([self.msg_log, np.zeros_like(self.msg_log)])
            if self.si[K.I_RECORD_TRADE]:
                self.trade_log = np.concatenate([self.trade_log, np.zeros_like(self.trade_log)])

    def run(self, n: int = 1) -> None:
        """Simulate the next ``n`` minutes (bars). raises ForgeError past n_minutes."""
        if n < 1 or self.minute + n > self.n_minutes:
            raise ForgeError(f"cannot run {n} more minute(s): {self.minute} of {self.n_minutes} done")
        self.minute += n
        self._run_to((self.config.burn_in_minutes + self.minute) * 60.0)

    def advance_to(self, t_seconds: float) -> None:
        """Simulate up to ``t_seconds`` of simulated time (burn-in included; sub-minute steps for the
        execution environment, ``forge.execution.lob_env``).  Use either this or :meth:`run`, not both.
        raises ForgeError past the last bar or backwards in time."""
        end = (self.config.burn_in_minutes + self.n_minutes) * 60.0
        if not (self.sf[K.S_T] <= t_seconds <= end + 1e-9):
            raise ForgeError(f"advance_to({t_seconds}): outside [{self.sf[K.S_T]}, {end}] s")
        self._run_to(float(t_seconds))
        self.minute = max(self.minute, min(self.n_minutes, int(t_seconds / 60.0 + 1e-9) - self.config.burn_in_minutes))

    @property
    def now(self) -> float:
        """Simulated seconds since the start (burn-in included)."""
        return float(self.sf[K.S_T])

    # ---------------------------------------------------------------- strategy hooks
    def queue_strategy_order(self, lots: int) -> None:
        """Market order of ``lots`` (signed: + buy) sent at the open of the next minute."""
        self.si[K.I_STRAT_PENDING] = int(lots)

    def last_strategy_fill(self) -> tuple[int, float, float, float]:
        """(signed lots filled, notional in quote currency, mid before, mid after)
        of the strategy order sent at the start of the last ``run``
        (quote currency per base for the mids)."""
        q = int(self.sf[K.S_STRAT_FILL_QTY])
        notional = float(self.sf[K.S_STRAT_FILL_NOTIONAL]) * self.tick_size * self.lot_base
        return q, notional, self.sf[K.S_STRAT_MID_BEFORE] * self.tick_size, self.sf[K.S_STRAT_MID_AFTER] * self.tick_size

    @property
    def strategy_lots(self) -> int:
        """The strategy's position in lots (signed)."""
        return int(self.si[K.I_STRAT_POS])

    def mid(self) -> float:
        """Current mid price (quote currency per base)."""
        bb, ba = int(self.bk[B_BEST_BID]), int(self.bk[B_BEST_ASK])
        if bb >= 0 and ba >= 0:
            return 0.5 * (bb + ba) * self.tick_size
        if bb >= 0:
            return bb * self.tick_size
        if ba >= 0:
            return ba * self.tick_size
        return int(self.si[K.I_LAST_PX]) * self.tick_size

    def book_snapshot(self, ticks: int = 10) -> dict[str, float]:
        """Current top of book: spread (ticks; NaN if a side is empty) and the resting lots
        on each side within ``ticks`` ticks of the mid (``mid()``), for liquidity checks."""
        bb, ba = int(self.bk[B_BEST_BID]), int(self.bk[B_BEST_ASK])
        spread = float(ba - bb) if bb >= 0 and ba >= 0 else math.nan
        m = self.mid() / self.tick_size
        base = int(self.bk[B_BASE])
        px = base + np.arange(self.lv.shape[2])
        near = np.abs(px - m) <= ticks
        return {"spread_ticks": spread, "bid_lots": float(self.lv[0, L_QTY][near].sum()),
                "ask_lots": float(self.lv[1, L_QTY][near].sum())}

    # ---------------------------------------------------------------- output
    def bar_columns(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Completed bars [start, stop) as BAR_SCHEMA-typed numpy columns."""
        stop = self.minute if stop is None else min(stop, self.minute)
        raw = self.bars_raw[start:stop]
        tick = self.tick_size
        lot = self.lot_base
        dec = self._price_decimals
        ot = self.start_ms + BAR_MS * np.arange(start, stop, dtype=np.int64)
        return {
            "open_time": ot,
            "open": np.round(raw[:, K.BAR_OPEN] * tick, dec),
            "high": np.round(raw[:, K.BAR_HIGH] * tick, dec),
            "low": np.round(raw[:, K.BAR_LOW] * tick, dec),
            "close": np.round(raw[:, K.BAR_CLOSE] * tick, dec),
            "volume": raw[:, K.BAR_VOL] * lot,
            "close_time": ot + (BAR_MS - 1),
            "quote_volume": raw[:, K.BAR_QUOTE] * (tick * lot),
            "count": raw[:, K.BAR_COUNT].astype(np.int64),
            "taker_buy_volume": raw[:, K.BAR_TBV] * lot,
            "taker_buy_quote_volume": raw[:, K.BAR_TBQ] * (tick * lot),
        }

    def bars(self, start: int = 0, stop: int | None = None) -> pl.DataFrame:
        """Completed bars [start, stop) as a bar frame (exact BAR_SCHEMA)."""
        return pl.DataFrame(self.bar_columns(start, stop), schema=BAR_SCHEMA)

    def messages(self) -> np.ndarray:
        """Recorded book messages (MSG_DTYPE), in processing order (a copy)."""
        return self.msg_log[: int(self.si[K.I_N_MSG_REC])].copy()

    def trades(self) -> np.ndarray:
        """Recorded fills (BOOK_TRADE_DTYPE), in order (a copy)."""
        return self.trade_log[: int(self.si[K.I_N_TRADE_REC])].copy()

    def stats(self) -> dict[str, int]:
        """Counters: events (book messages), fills, wakes, rejected limit orders, recenters,
        the event budget (max_events) and truncated (0/1)."""
        return {
            "events": int(self.si[K.I_N_MSG]),
            "fills": int(self.si[K.I_N_FILL]),
            "wakes": int(self.si[K.I_N_WAKE]),
            "rejected": int(self.si[K.I_N_REJECT]),
            "recenters": int(self.si[K.I_N_RECENTER]),
            "max_events": int(self.max_events),
            "truncated": int(self.si[K.I_TRUNCATED]),
        }

    def agent_positions(self) -> dict[str, float]:
        """Net position (base units) of each agent, keyed 'class[i]'."""
        return {"/".join(str(x) for x in k): float(self.ag_f[i, K.AF_INV]) * self.lot_base for i, k in enumerate(self.agent_keys)}


@dataclass(frozen=True)
class SimResult:
    """Output of :func:`simulate`: bars (bar frame, BAR_SCHEMA); truncated: the event budget
    stopped the run (bars after that point repeat the last close with zero volume); stats:
    ``Simulator.stats()``."""

    bars: pl.DataFrame
    truncated: bool
    stats: dict[str, int]


def simulate(
    dsg: np.ndarray,
    n_minutes: int,
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    scenario: np.ndarray | None = None,
    *,
    start_price: float = DEFAULT_START_PRICE,
    config: SimConfig | None = None,
) -> SimResult:
    """Like :func:`simulate_bars` but also reports whether the event budget truncated the run."""
    sim = Simulator(dsg, seed, n_minutes, scenario=scenario, start_ms=start_ms, start_price=start_price, config=config)
    sim.run(n_minutes)
    return SimResult(bars=sim.bars(), truncated=sim.truncated, stats=sim.stats())


def simulate_bars(
    dsg: np.ndarray,
    n_minutes: int,
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    scenario: np.ndarray | None = None,
    *,
    start_price: float = DEFAULT_START_PRICE,
    config: SimConfig | None = None,
) -> pl.DataFrame:
    """Simulate ``n_minutes`` 1-minute bars of the HF-ABM.

    dsg: (N_P,) float64 DSG (``forge.sim.params.default_dsg()`` or a
    calibration's ``dsg``); seed: int >= 0; start_ms: open_time of the first
    bar (int ms UTC); scenario: optional (N_SC,) predator genome.
    returns: bar frame with exactly BAR_SCHEMA, n_minutes rows, open_time
    strictly increasing by 60,000 ms; bars without trades repeat the previous
    close with zero volume (as Binance does) — so do all bars after the event
    budget (``SimConfig.max_events``) stopped the run; use :func:`simulate`
    to learn whether it did.
    raises ConfigError on invalid parameters.
    """
    return simulate(dsg, n_minutes, seed, start_ms, scenario, start_price=start_price, config=config).bars


def sim_throughput(seed: int = 0, *, day_minutes: int = 1440, replay_minutes: int = 60,
                   repeats: int = 3) -> dict[str, Any]:
    """Speed of the simulator for ``forge bench`` (one core, after JIT warm-up; every timing is the
    fastest of ``repeats`` identical runs, timeit's convention on a machine shared with other load).

    - numba HF-ABM incl. agent logic: one simulated day of ``day_minutes``
      bars with the default DSG, timed end to end (allocation, burn-in, run,
      bar frame); events = book messages (limit/market/cancel).
    - book alone: the message stream of ``replay_minutes`` simulated minutes
      replayed through the numba book and through the pure-Python
      ``RefBook`` in the same run (ratio = numba / Python messages per second;
      the fills are compared for equality).
    - anchor: ABIDES ~14k messages/s (quoted, not run).

    Honesty notes: ``events`` counts every book message (limit, market,
    cancel — incl. the cancels of recentering) of the whole run *including*
    the ``burn_in_minutes`` before bar 0, and ``day_seconds`` times that
    whole run (allocation, burn-in, JIT-warm run, bar frame), so the rate is
    messages per wall second of one core; agent wakes that send nothing and
    fills are not counted as events (reported separately).

    returns dict: events, wakes, wakes_per_s, simulated_minutes (incl.
    burn-in), day_seconds, events_per_s, seconds_per_day (scaled
    to 1,440 bars), fills, replay_messages, numba_book_msgs_per_s,
    python_book_msgs_per_s, book_ratio, sim_vs_python_book_ratio,
    replay_fills_equal, abides_msgs_per_s, sim_vs_abides_ratio, machine.
    """
    from forge.sim.book_ref import replay_numba_arrays, replay_reference

    dsg = default_dsg()
    simulate_bars(dsg, 5, seed)  # JIT warm-up
    day_s = math.inf
    for _ in range(repeats):  # the same seeded day each time; the fastest run is the least disturbed
        t0 = time.perf_counter()
        sim = Simulator(dsg, seed, day_minutes)
        sim.run(day_minutes)
        sim.bars()
        day_s = min(day_s, time.perf_counter() - t0)
    st = sim.stats()

    rec = Simulator(dsg, seed + 1, replay_minutes, record_messages=True)
    rec.run(replay_minutes)
    msgs = rec.messages()
    replay_numba_arrays(msgs[:1000])  # JIT warm-up of the replay kernel
    nb_s = py_s = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fills_nb, _ = replay_numba_arrays(msgs)
        nb_s = min(nb_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        fills_py = replay_reference(msgs)
        py_s = min(py_s, time.perf_counter() - t0)
    equal = len(fills_py) == len(fills_nb) and all(
        (f.taker_uid, f.maker_uid, f.price, f.qty, f.taker_side) == tuple(int(v) for v in row)
        for f, row in zip(fills_py, fills_nb)
    )
    m = len(msgs)
    ev_s = st["events"] / day_s
    py_rate = m / py_s
    return {
        "events": st["events"],
        "wakes": st["wakes"],
        "wakes_per_s": st["wakes"] / day_s,
        "simulated_minutes": day_minutes + sim.config.burn_in_minutes,
        "fills": st["fills"],
        "day_minutes": day_minutes,
        "day_seconds": day_s,
        "events_per_s": ev_s,
        "seconds_per_day": day_s * 1440.0 / day_minutes,
        "replay_messages": m,
        "numba_book_msgs_per_s": m / nb_s,
        "python_book_msgs_per_s": py_rate,
        "book_ratio": (m / nb_s) / py_rate,
        "sim_vs_python_book_ratio": ev_s / py_rate,
        "replay_fills_equal": bool(equal),
        "abides_msgs_per_s": ABIDES_MSG_PER_S,
        "sim_vs_abides_ratio": ev_s / ABIDES_MSG_PER_S,
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cpus, python {platform.python_version()}",
    }
