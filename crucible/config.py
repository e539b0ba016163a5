"""Crucible configuration (``configs/crucible.toml``), parsed with tomllib and
validated up front (unknown keys, wrong types and bad values raise
ConfigError naming the file, table and key).

Tables: ``[crucible]`` (paths, order id prefix, history window), ``[replay]``,
``[costs]``, ``[hotswap]``, ``[watchtower]``, ``[cwo]``, ``[execution]``, ``[l2]`` and one ``[[slots]]``
table per slot.  A slot's ``genome`` is a genome JSON path (relative paths
resolve against the current directory) or ``builtin:NAME``
(:mod:`crucible.builtin`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from forge.backtest.costs import INSTRUMENTS
from forge.core.config import build_section, read_toml
from forge.core.errors import ConfigError
from forge.core.requests import ServeConfig

__all__ = ["CrucibleConfig", "GeneralConfig", "ReplayConfig", "CostsConfig", "HotswapConfig", "WatchtowerConfig",
           "CwoConfig", "ExecutionLiveConfig", "L2LiveConfig", "SlotConfig", "load_crucible_config", "DEFAULT_CONFIG_PATH",
           "NAMED_POLICIES"]

NAMED_POLICIES = ("always-taker", "maker-then-cross")
"""Execution policies a config may name instead of a ``forge execution train`` JSON path."""

DEFAULT_CONFIG_PATH = Path("configs/crucible.toml")
_ID = re.compile(r"^[A-Za-z0-9]{1,8}$")


@dataclass(frozen=True)
class GeneralConfig:
    """journal: SQLite path; champions_dir / requests_dir: folders; kill_file: its existence flattens
    everything and stops; order_prefix: client order id namespace (1-6 alphanumerics); history_bars:
    rolling window of closed bars the signals are computed on (>= 2); min_order_notional: USDT below which
    a rebalance is skipped; snapshot_every: bars between equity snapshots in the journal; journal_sync:
    SQLite ``synchronous`` level — "FULL" (every commit fsynced), "NORMAL" (WAL: a committed transaction
    survives a crash of the process, only an OS crash or power loss may roll back the last ones) or
    "auto" (FULL on exchange venues, NORMAL on the replay venue, whose exchange state lives in the
    process anyway); on_mismatch: what a reconcile that finds the venue's positions off the journal's does —
    "halt" (no new orders until an operator looks; the bench keeps marking and booking fills) or "flatten"
    (close every slot's units, then halt); either way a ``halt`` event and a log line say why.
    sibling_benches: bench ids of other benches that share this account and ``order_prefix`` (their orders are
    reported, never booked); an order under this prefix naming any other bench, or naming this bench with a
    tag the bench key did not make, halts the bench.  max_leverage: at every decision a slot's target notional
    is at most ``max_leverage`` x its equity, less fee + slippage + ``exposure_buffer_bps`` (bps); capital the CWO
    moves out of a slot is capped so that this holds after the move (and spot cash never goes negative), the rest
    waits until the slot's reducing order has filled; a spot slot may not exceed 1; SlotConfig.max_leverage
    overrides it per slot.  bar_order_deadline_seconds: wall seconds from a bar's start by which its order work
    (sends, their retries and lookups) ends; what is left is resolved by lookup on later bars, intents not yet sent
    are dropped.  on_exit / exit_wait_seconds: what SIGINT and SIGTERM do (see :func:`crucible.runtime.run_live`).
    daily_loss_limit: USDT, the bench-level daily loss stop (0: off).  alert_webhook / alert_timeout_seconds: see
    :mod:`crucible.alerts`.  panel_wait_seconds: how long a panel slot (a champion reading other instruments,
    :mod:`crucible.panel`) waits, from the bar's start, for every instrument it reads to close the minute; then it
    skips the bar (a ``panel_skip`` event names the late instruments)."""

    journal: str = "artifacts/crucible/journal.sqlite"
    champions_dir: str = "artifacts/champions"
    requests_dir: str = "artifacts/requests"
    kill_file: str = "artifacts/KILL"
    order_prefix: str = "cr"
    history_bars: int = 2000
    min_order_notional: float = 1.0
    snapshot_every: int = 15
    journal_sync: str = "auto"
    # part B of issue 18 (runtime safety): bench identity and outage policy
    bench_id: str = ""  # 1-6 lowercase letters/digits in every client order id; "" = random, kept in the journal
    retry_budget_minutes: float = 3.0  # venue calls retried (exponential backoff + jitter) for this long
    retry_base_seconds: float = 0.5  # first backoff delay; doubles per attempt up to retry_max_seconds
    retry_max_seconds: float = 30.0
    order_lookup_timeout_seconds: float = 300.0  # an acked order the venue cannot find is marked lost after this
    reject_backoff_bars: int = 5  # after a rejection a slot's next signal order waits 5, 10, 20, ... bars
    on_mismatch: str = "halt"  # reconcile finds positions off the journal's: "halt" trading, or "flatten" then halt
    # issue 28 (safety, second pass)
    sibling_benches: tuple[str, ...] = ()  # other benches' ids allowed to trade this account under order_prefix
    max_leverage: float = 1.0  # |target notional| <= max_leverage x slot equity at every decision (per-slot override)
    exposure_buffer_bps: float = 10.0  # headroom on top of fee + slippage when sizing against that cap (gap risk)
    bar_order_deadline_seconds: float = 20.0  # all order work of one bar (sends, retries, lookups) ends by then
    on_exit: str = "flatten"  # SIGINT / SIGTERM: "flatten" every slot (reduce-only on perps) or "leave" positions
    exit_wait_seconds: float = 120.0  # how long the exit waits for its flatten fills before reporting what is open
    daily_loss_limit: float = 0.0  # USDT; the bench's own P&L since the UTC day began <= -this halts it (0 = off)
    alert_webhook: str = ""  # http(s) URL: halts, kills, outages and foreign orders are POSTed as JSON ("" = log only)
    alert_timeout_seconds: float = 3.0
    # issue 30: a panel slot acts on minute t once every instrument it reads closed t, or skips it after this
    panel_wait_seconds: float = 5.0

    def validate(self) -> None:
        if not self.panel_wait_seconds >= 0:
            raise ConfigError(f"panel_wait_seconds must be >= 0, got {self.panel_wait_seconds}")
        if self.bench_id and not re.fullmatch(r"[a-z0-9]{1,6}", self.bench_id):
            raise ConfigError(f"bench_id must be 1-6 lowercase letters/digits (or empty), got {self.bench_id!r}")
        if not (self.retry_budget_minutes >= 0 and 0 < self.retry_base_seconds <= self.retry_max_seconds
                and self.order_lookup_timeout_seconds > 0 and self.reject_backoff_bars >= 1):
            raise ConfigError("need retry_budget_minutes >= 0, 0 < retry_base_seconds <= retry_max_seconds, "
                              "order_lookup_timeout_seconds > 0, reject_backoff_bars >= 1")
        if any(not re.fullmatch(r"[a-z0-9]{1,6}", b) for b in self.sibling_benches):
            raise ConfigError(f"sibling_benches must be bench ids (1-6 lowercase letters/digits), got {self.sibling_benches!r}")
        if not (0 < self.max_leverage <= 100 and 0 <= self.exposure_buffer_bps < 10_000):
            raise ConfigError("need 0 < max_leverage <= 100 and 0 <= exposure_buffer_bps < 10000")
        if not (self.bar_order_deadline_seconds > 0 and self.exit_wait_seconds >= 0 and self.daily_loss_limit >= 0
                and self.alert_timeout_seconds > 0):
            raise ConfigError("need bar_order_deadline_seconds > 0, exit_wait_seconds >= 0, daily_loss_limit >= 0, "
                              "alert_timeout_seconds > 0")
        if self.on_exit not in ("flatten", "leave"):
            raise ConfigError(f"on_exit must be \"flatten\" or \"leave\", got {self.on_exit!r}")
        if self.alert_webhook and not re.match(r"https?://[^\s/]+", self.alert_webhook):
            raise ConfigError(f"alert_webhook must be an http(s) URL or empty, got {self.alert_webhook!r}")
        if self.on_mismatch not in ("halt", "flatten"):
            raise ConfigError(f"on_mismatch must be \"halt\" or \"flatten\", got {self.on_mismatch!r}")
        if self.journal_sync not in ("auto", "FULL", "NORMAL"):
            raise ConfigError(f"journal_sync must be auto, FULL or NORMAL, got {self.journal_sync!r}")
        if not re.fullmatch(r"[A-Za-z0-9]{1,6}", self.order_prefix):
            raise ConfigError(f"order_prefix must be 1-6 letters/digits, got {self.order_prefix!r}")
        if self.history_bars < 2:
            raise ConfigError(f"history_bars must be >= 2, got {self.history_bars}")
        if self.min_order_notional < 0 or self.snapshot_every < 1:
            raise ConfigError("min_order_notional must be >= 0 and snapshot_every >= 1")


@dataclass(frozen=True)
class ReplayConfig:
    """data: kline/parquet files per symbol as "SYMBOL=path" strings (empty: the embedded BTCUSDT sample);
    warmup_bars: bars of history before the first traded bar; max_bars: bars to replay (0 = all);
    speed: multiple of real time (0 = as fast as possible); balance: starting account cash, USDT;
    prefetch_bars: chunked signal pipeline — the replay venue hands the signal engine the next
    ``prefetch_bars`` bars so features and programs run once per chunk instead of once per bar (values at
    bar t still read bars <= t only: features and programs are causal, see ``crucible.signals``); 0 = the
    per-bar rolling window the exchange venues use."""

    data: tuple[str, ...] = ()
    warmup_bars: int = 2000
    max_bars: int = 0
    speed: float = 0.0
    balance: float = 10_000.0
    prefetch_bars: int = 4096

    def validate(self) -> None:
        if self.warmup_bars < 1 or self.max_bars < 0 or self.speed < 0 or self.balance <= 0:
            raise ConfigError("need warmup_bars >= 1, max_bars >= 0, speed >= 0, balance > 0")
        if self.prefetch_bars < 0:
            raise ConfigError(f"prefetch_bars must be >= 0, got {self.prefetch_bars}")


@dataclass(frozen=True)
class CostsConfig:
    """taker_fee_bps, slippage_bps: as ``forge.backtest.BacktestConfig`` (replay venue and shadow ledgers);
    funding_rate_8h: perpetual funding rate per 8 h, a fraction (as ``BacktestConfig.funding_rate_8h``), paid by
    the units of every ``futures`` slot at each funding time (:mod:`forge.backtest.costs`) on the replay venue,
    and on exchange venues when the venue does not report its current rate; funding_interval_h: hours between
    funding times (int in [1, 24], 8 by default; the perpetual's own interval, as the Forge reads it from the
    funding history: many Binance perpetuals settle every 4 h or 1 h), the rate per 8 h scaled to it
    (``forge.backtest.costs.funding_rate_per_event``: the same funding per day), as the backtester charges."""

    taker_fee_bps: float = 10.0
    slippage_bps: float = 1.0
    funding_rate_8h: float = 0.0
    funding_interval_h: int = 8

    @property
    def funding_interval_ms(self) -> int:
        """ms between funding times."""
        return int(self.funding_interval_h) * 3_600_000

    @property
    def funding_rate_event(self) -> float:
        """The configured rate charged at each funding time (``funding_rate_8h`` scaled to the interval)."""
        from forge.backtest.costs import funding_rate_per_event

        return funding_rate_per_event(self.funding_rate_8h, self.funding_interval_ms)

    def validate(self) -> None:
        if not (0 <= self.taker_fee_bps < 10_000 and 0 <= self.slippage_bps < 10_000):
            raise ConfigError("taker_fee_bps and slippage_bps must be in [0, 10000)")
        if not -1.0 < self.funding_rate_8h < 1.0:
            raise ConfigError(f"funding_rate_8h must be a fraction in (-1, 1), got {self.funding_rate_8h}")
        if isinstance(self.funding_interval_h, bool) or not isinstance(self.funding_interval_h, int) \
                or not 1 <= self.funding_interval_h <= 24:
            raise ConfigError(f"funding_interval_h must be a whole number of hours in [1, 24], "
                              f"got {self.funding_interval_h!r}")


@dataclass(frozen=True)
class HotswapConfig:
    """enabled; poll_bars: bars between scans of champions_dir; shadow_bars: bars a challenger paper-trades
    before it may be promoted; margin: per-bar return difference (fraction of equity per bar) by which the
    challenger must beat the champion under the null of the promotion test; alpha: level of that one-sided
    test (Diebold–Mariano with Newey–West variance, :func:`crucible.hotswap.promotion_test`), in (0, 1);
    require_signature: "auto" (required on exchange venues, replay accepts unsigned champions with a
    warning event), true or false — whenever FORGE_SIGNING_KEY is set every champion must carry a valid
    HMAC anyway; max_file_bytes: size cap of each champion file (genome, meta), bytes; max_json_depth:
    deepest JSON nesting accepted; max_genome_tokens: largest genome accepted (tokens)."""

    enabled: bool = True
    poll_bars: int = 5
    shadow_bars: int = 240
    margin: float = 0.0
    alpha: float = 0.05
    require_signature: bool | str = "auto"
    max_file_bytes: int = 1 << 20
    max_json_depth: int = 64
    max_genome_tokens: int = 256

    def validate(self) -> None:
        if self.poll_bars < 1 or self.shadow_bars < 3:
            raise ConfigError("poll_bars must be >= 1 and shadow_bars >= 3")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")
        if isinstance(self.require_signature, str) and self.require_signature != "auto":
            raise ConfigError(f"require_signature must be \"auto\", true or false, got {self.require_signature!r}")
        if self.max_file_bytes < 1024 or self.max_json_depth < 4 or self.max_genome_tokens < 3:
            raise ConfigError("need max_file_bytes >= 1024, max_json_depth >= 4, max_genome_tokens >= 3")

    def signatures_required(self, exchange: bool) -> bool:
        """Whether unsigned champions are refused: ``require_signature``, or with "auto" on exchange venues."""
        return exchange if self.require_signature == "auto" else bool(self.require_signature)


@dataclass(frozen=True)
class WatchtowerConfig:
    """kill_floor: USDT; a slot whose equity (realised + unrealised, after fees) is <= this (or below
    ``min_order_notional``) is flattened and terminated; stale_feed_seconds: no bar for this long (live venues) stands the bench down."""

    kill_floor: float = 0.0
    stale_feed_seconds: float = 180.0

    def validate(self) -> None:
        if self.stale_feed_seconds <= 0:
            raise ConfigError("stale_feed_seconds must be > 0")


@dataclass(frozen=True)
class CwoConfig:
    """interval_seconds: venue-time seconds between reweights; lookback_bars: per-bar returns used;
    eta: exponentiated-gradient learning rate; drawdown_penalty: weight of the current drawdown
    (fraction) in the score; min_weight / max_weight: per-slot bounds; max_turnover: cap of
    sum |w_new - w_old| per reweight.  Regime slots (issue 30 part 4, :func:`crucible.allocator.regime_tilt`):
    regime_model: path of the frozen regime model whose one-step-ahead predicted probabilities tilt the weights
    toward the slots declaring the predicted regime ("" = the model shipped with a regime slot's champion; every
    regime slot must then ship the same one); regime_symbol: the venue symbol it is filtered on ("" = the first
    regime slot's symbol); regime_tilt: strength kappa of the tilt (0 = off)."""

    interval_seconds: float = 60.0
    lookback_bars: int = 240
    eta: float = 0.5
    drawdown_penalty: float = 1.0
    min_weight: float = 0.02
    max_weight: float = 0.5
    max_turnover: float = 0.2
    move_capital: bool = True  # the CWO weights move cash between slot ledgers (journaled transfers)
    regime_model: str = ""
    regime_symbol: str = ""
    regime_tilt: float = 4.0

    def validate(self) -> None:
        if not 0 <= self.regime_tilt <= 50:
            raise ConfigError(f"regime_tilt must be in [0, 50], got {self.regime_tilt}")
        if not (0 <= self.min_weight <= self.max_weight <= 1):
            raise ConfigError("need 0 <= min_weight <= max_weight <= 1")
        if self.interval_seconds <= 0 or self.lookback_bars < 2 or self.eta < 0 or not 0 < self.max_turnover <= 2:
            raise ConfigError("need interval_seconds > 0, lookback_bars >= 2, eta >= 0, 0 < max_turnover <= 2")


@dataclass(frozen=True)
class ExecutionLiveConfig:
    """``[execution]`` (issue 31 part 5): how the bench turns a slot's target change into orders.

    policy: "always-taker" (default; also ""): a market order per target change, exactly as before;
    "maker-then-cross": rest a post-only limit at the touch every bar, cross the rest at the deadline; or the path
    of an execution policy JSON (``forge execution train``, :class:`forge.execution.policy.ExecutionPolicy`).  A
    slot's own ``execution_policy`` overrides it.  deadline_bars: bars an intent of zero urgency may rest
    (:func:`forge.execution.intents.deadline`; >= 0); post_only: limit orders are post-only (Bybit PostOnly,
    Binance GTX); spread_window: two-bar Corwin-Schultz estimates averaged when the venue has no book (the replay
    venue; as ``[execution] spread_window`` of the backtest); cancel_all_after_seconds: the exchange's dead-man's
    switch, re-armed every bar while a passive slot trades (0 = off; Bybit 3..300 s); maker_fee_bps (-1 = the
    ``[costs]`` taker fee) and max_volume_share ((0, 1]): the replay venue's resting-order fills (the kline fill
    model of :mod:`forge.backtest.fills`)."""

    policy: str = "always-taker"
    deadline_bars: int = 5
    post_only: bool = True
    spread_window: int = 20
    cancel_all_after_seconds: float = 0.0
    maker_fee_bps: float = -1.0
    max_volume_share: float = 0.1

    def validate(self) -> None:
        if not 0 <= self.deadline_bars <= 1440:
            raise ConfigError(f"deadline_bars must be in [0, 1440], got {self.deadline_bars}")
        if not 1 <= self.spread_window <= 10_000:
            raise ConfigError(f"spread_window must be in [1, 10000], got {self.spread_window}")
        if not 0 <= self.cancel_all_after_seconds <= 300:
            raise ConfigError(f"cancel_all_after_seconds must be in [0, 300], got {self.cancel_all_after_seconds}")
        if not (self.maker_fee_bps == -1.0 or 0.0 <= self.maker_fee_bps < 10_000):
            raise ConfigError(f"maker_fee_bps must be -1 (the taker fee) or in [0, 10000), got {self.maker_fee_bps}")
        if not 0.0 < self.max_volume_share <= 1.0:
            raise ConfigError(f"max_volume_share must be in (0, 1], got {self.max_volume_share}")


@dataclass(frozen=True)
class L2LiveConfig:
    """``[l2]``: the order books that slots reading recorded-book terminals (``l2_*``,
    :mod:`forge.features.l2terminals`) and the execution policy's book inputs see (:mod:`crucible.books`).

    dir: on the replay venue, the ``crucible record`` directory whose books the replayed minutes read ("" = no
    books); on exchange venues, where the live book feed records ("" = ``l2`` beside the journal).  live: exchange
    venues run a live book feed (``crucible record``'s Recorder on the **mainnet public** feed, in a thread of the
    bench; the books research was evolved on are mainnet books too).  venue: the recording's venue folder
    (replay; "" = the only one holding the symbol) or the feed's exchange ("" = the bench venue's: binanceusdm for
    binance-demo, bybit for bybit-testnet).  k: levels / ticks of the depth measures (as the run's ``[l2] k``);
    depth: levels recorded per side (1..1000, >= k).  ws_url / rest_url: the feed's WebSocket base / REST
    origin instead of mainnet's (loopback fakes in tests)."""

    dir: str = ""
    live: bool = False
    venue: str = ""
    k: int = 5
    depth: int = 20
    ws_url: str = ""
    rest_url: str = ""

    def validate(self) -> None:
        if not 1 <= self.depth <= 1000 or not 1 <= self.k <= self.depth:
            raise ConfigError(f"need 1 <= k <= depth <= 1000, got k = {self.k}, depth = {self.depth}")
        if self.venue not in ("", "binanceusdm", "bybit"):
            raise ConfigError(f"venue {self.venue!r}: expected \"\", \"binanceusdm\" or \"bybit\"")


@dataclass(frozen=True)
class SlotConfig:
    """id: 1-8 letters/digits (part of every client order id); symbol: e.g. BTCUSDT; genome: path or
    builtin:NAME; capital: the slot's virtual capital, USDT; costs: cost preset of the instrument traded —
    "spot" (no funding), "futures" (linear perpetual: funding on the slot's units every 8 h) or "auto"
    (futures on exchange venues, which trade linear perpetuals; spot on the replay venue).
    regime: the regime (state index of the regime model, ``[cwo] regime_model`` or the champion's) this slot
    trades, -1 = none; checked against the model's states at start.  regime_model: path of the frozen model a
    genome reading regime terminals is filtered with ("" = the ``<stem>.regime_model.json`` its published meta
    names, when the genome path is a published champion)."""

    id: str
    symbol: str
    genome: str
    capital: float = 200.0
    costs: str = "auto"
    max_leverage: float = 0.0  # 0 = [crucible] max_leverage
    regime: int = -1
    regime_model: str = ""
    execution_policy: str = ""  # "" = [execution] policy; else as that key (issue 31)

    def validate(self) -> None:
        if self.regime < -1:
            raise ConfigError(f"slot {self.id}: regime must be a state index >= 0 (or -1: none), got {self.regime}")
        if not 0 <= self.max_leverage <= 100:
            raise ConfigError(f"slot {self.id}: max_leverage must be in (0, 100] (0: the [crucible] default)")
        if not _ID.fullmatch(self.id):
            raise ConfigError(f"slot id must be 1-8 letters/digits, got {self.id!r}")
        if self.capital <= 0:
            raise ConfigError(f"slot {self.id}: capital must be > 0")
        if self.costs not in ("auto", *INSTRUMENTS):
            raise ConfigError(f"slot {self.id}: costs must be \"auto\", \"spot\" or \"futures\", got {self.costs!r}")

    def leverage(self, default: float) -> float:
        """The slot's leverage cap: its own ``max_leverage``, else ``default`` ([crucible] max_leverage)."""
        return self.max_leverage or default

    def preset(self, exchange: bool) -> str:
        """The slot's cost preset on a venue: "spot" or "futures" ("auto": futures on exchange venues)."""
        if self.costs == "auto":
            return "futures" if exchange else "spot"
        return self.costs


@dataclass(frozen=True)
class CrucibleConfig:
    """The whole configuration; ``source`` is the file it came from (or "defaults")."""

    slots: tuple[SlotConfig, ...]
    general: GeneralConfig = field(default_factory=GeneralConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    costs: CostsConfig = field(default_factory=CostsConfig)
    hotswap: HotswapConfig = field(default_factory=HotswapConfig)
    watchtower: WatchtowerConfig = field(default_factory=WatchtowerConfig)
    cwo: CwoConfig = field(default_factory=CwoConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)  # the Forge worker of the closed loop (loop.serve)
    execution: ExecutionLiveConfig = field(default_factory=ExecutionLiveConfig)  # passive orders (issue 31)
    l2: L2LiveConfig = field(default_factory=L2LiveConfig)  # order books of the slots (crucible.books)
    source: str = "defaults"

    def presets(self, exchange: bool) -> dict[str, str]:
        """{slot id: "spot" | "futures"} on a venue (``exchange``: a ccxt venue, which trades linear perpetuals).
        raises ConfigError for a spot slot on an exchange venue, or one symbol traded both as spot and futures
        (one venue symbol is one instrument)."""
        out = {s.id: s.preset(exchange) for s in self.slots}
        if exchange and "spot" in out.values():
            spot = sorted(k for k, v in out.items() if v == "spot")
            raise ConfigError(f"{self.source} [[slots]] {spot}: costs = \"spot\" on an exchange venue, which trades "
                              "linear perpetuals; use \"futures\" or \"auto\"")
        kinds: dict[str, set[str]] = {}
        for s in self.slots:
            kinds.setdefault(s.symbol, set()).add(out[s.id])
        mixed = sorted(sym for sym, k in kinds.items() if len(k) > 1)
        if mixed:
            raise ConfigError(f"{self.source} [[slots]]: {mixed} traded both as spot and as futures; one venue symbol "
                              "is one instrument (give every slot of a symbol the same costs preset)")
        return out

    def with_(self, section: str, **changes: Any) -> "CrucibleConfig":
        """Copy with fields of one section replaced (e.g. ``cfg.with_("general", journal="x.sqlite")``)."""
        return replace(self, **{section: replace(getattr(self, section), **changes)})


_SECTIONS = {"crucible": ("general", GeneralConfig), "replay": ("replay", ReplayConfig),
             "costs": ("costs", CostsConfig), "hotswap": ("hotswap", HotswapConfig),
             "watchtower": ("watchtower", WatchtowerConfig), "cwo": ("cwo", CwoConfig),
             "serve": ("serve", ServeConfig), "execution": ("execution", ExecutionLiveConfig),
             "l2": ("l2", L2LiveConfig)}


def config_from_dict(d: dict[str, Any], source: str = "dict") -> CrucibleConfig:
    """Build and validate a CrucibleConfig from a parsed TOML dict; raises ConfigError."""
    unknown = sorted(set(d) - set(_SECTIONS) - {"slots"})
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {unknown}; valid: {sorted(_SECTIONS) + ['slots']}")
    kw: dict[str, Any] = {}
    for table, (attr, cls) in _SECTIONS.items():
        kw[attr] = build_section(cls, dict(d.get(table, {})), f"{source} [{table}]")
    raw_slots = d.get("slots")
    if not isinstance(raw_slots, list) or not raw_slots:
        raise ConfigError(f"{source}: at least one [[slots]] table is required")
    slots = tuple(build_section(SlotConfig, dict(s), f"{source} [[slots]] #{i}") for i, s in enumerate(raw_slots))
    ids = [s.id for s in slots]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: duplicate slot ids {ids}")
    from crucible.slots import NAME_BUDGET

    g = kw["general"]
    long_ = [s.id for s in slots if len(g.order_prefix) + len(g.bench_id or "xxxxxx") + len(s.id) > NAME_BUDGET]
    if long_:
        raise ConfigError(f"{source}: order_prefix {g.order_prefix!r} + bench id + slot id {long_} exceed {NAME_BUDGET} "
                          "characters (a client order id is at most 36, with an 8-character tag): shorten them")
    return CrucibleConfig(slots=slots, source=source, **kw)


def load_crucible_config(path: str | Path | None = None) -> CrucibleConfig:
    """Load ``path`` (default ``configs/crucible.toml``); raises ConfigError (file, table, key)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    return config_from_dict(read_toml(p), str(p))
