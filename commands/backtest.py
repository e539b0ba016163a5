"""``forge backtest GENOME``: one genome on chosen bars, against buy-and-hold.

Reuses the one genome -> positions path (:func:`forge.strategy.genome_positions`)
and the one backtester (:func:`forge.backtest.run_backtest`): the numbers are
the ones evolution and the gauntlet compute on the same bars.  Outputs: a
summary dict, the trade list (CSV or Parquet via polars) and an equity /
drawdown plot (PNG, matplotlib).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from forge.core.errors import ConfigError

__all__ = ["GenomeBacktest", "backtest_genome", "panel_symbols", "write_trades", "plot_equity"]


@dataclass
class GenomeBacktest:
    """genome: forge.gp.Genome; bars: the bar frame tested (oldest first); result: BacktestResult of
    the genome; buy_and_hold: BacktestResult of a constant long on the same bars (same costs);
    source: where the bars came from."""

    genome: Any
    genome_path: str
    bars: pl.DataFrame
    result: Any
    buy_and_hold: Any
    source: str
    execution: dict[str, Any] | None = None
    kelly: tuple[float, float] = (0.5, 1.0)
    initial_capital: float = 200.0
    bars_range: str = "all"
    """"in-sample", "out-of-sample" (of the run the genome came from) or "all" (every bar given)."""
    applied_sizing: dict[str, Any] | None = None
    """``[execution] sizing = "kelly"``: the multiplier applied to the positions and the bars it was measured on
    (``forge.execution.sizing.kelly_sizing``); None = unit sizing."""

    @property
    def sizing(self) -> dict[str, Any]:
        """Unit sizing: fractional Kelly (``forge.execution.intents.kelly_fraction``) from this backtest's per-bar
        returns, {"method": "unit", "kelly_cap", "max_leverage", "kelly_multiplier"} (the factor the targets
        would be scaled by; not applied, and measured on the bars shown -- out-of-sample ones for a run's
        genome -- so it is a diagnostic, never a size).  Kelly sizing: the applied multiplier's record,
        measured on in-sample bars only (``applied_sizing``), with "kelly_multiplier" = its multiplier."""
        if self.applied_sizing is not None:
            return {**self.applied_sizing, "kelly_multiplier": self.applied_sizing["multiplier"], "applied": True}
        from forge.execution.intents import kelly_fraction

        eq = np.r_[self.initial_capital, np.asarray(self.result.equity, dtype=np.float64)]
        r = np.divide(eq[1:], eq[:-1], out=np.ones(eq.shape[0] - 1), where=eq[:-1] > 0) - 1.0
        cap, lev = self.kelly
        return {"method": "unit", "kelly_cap": cap, "max_leverage": lev, "kelly_multiplier": kelly_fraction(r, cap, lev),
                "applied": False}

    def summary(self) -> dict[str, Any]:
        """Plain-data summary: genome (sha256, expression, features, lookback), data (source, bars,
        first/last bar open time ISO UTC), metrics and buy-and-hold metrics (forge.backtest.Metrics
        fields: returns as fractions, max_drawdown a loss fraction >= 0, ttt_bars in bars),
        excess_return (strategy minus buy-and-hold total return, fraction), trades (fills)."""
        t = self.bars["open_time"]
        m, bh = self.result.metrics.to_dict(), self.buy_and_hold.metrics.to_dict()
        return {
            "schema": "forge-backtest/1",
            "genome": {"file": self.genome_path, "sha256": self.genome.sha256, "expression": self.genome.expression(),
                       "features": list(self.genome.features), "lookback": self.genome.lookback},
            "data": {"source": self.source, "bars": self.bars.height, "first": _iso(int(t[0])), "last": _iso(int(t[-1])),
                     "range": self.bars_range},
            "metrics": m,
            "buy_and_hold": bh,
            "excess_return": float(m["total_return"]) - float(bh["total_return"]),
            "trades": int(self.result.trades.shape[0]),
            "execution": self.execution or {"mode": "taker"},
            "sizing": self.sizing,
        }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()


def panel_symbols(genome_path: str | Path) -> tuple[str, ...] | None:
    """The symbols a panel genome's universe holds (its ``meta.universe``), for the data-path check; None for
    a single-symbol genome or an unreadable file (the loader reports that)."""
    try:
        meta = json.loads(Path(genome_path).read_text()).get("meta") or {}
    except (OSError, ValueError, AttributeError):
        return None
    uni = meta.get("universe") or {}
    tags = [uni.get("trade"), *(uni.get("instruments") or ())]
    syms = tuple(dict.fromkeys(str(t).rpartition("_")[0] for t in tags if t))
    return syms or None


BAR_RANGES = ("auto", "out-of-sample", "in-sample", "all")


def run_split(genome_path: str | Path) -> dict[str, Any] | None:
    """The walk-forward split of the run a genome file sits in (``manifest.json`` beside it: a run's
    champion.json), or None."""
    import json

    man = Path(genome_path).with_name("manifest.json")
    try:
        split = json.loads(man.read_text()).get("split")
    except (OSError, ValueError, AttributeError):
        return None
    return split if isinstance(split, dict) and "out_of_sample" in split else None


def _with_l2(genome: Any, genome_path: str | Path, bars: Any, l2_dir: str | Path | None = None) -> Any:
    """``bars`` with the recorded-book columns a genome reading L2 terminals needs, from its ``meta.l2`` (or
    its run's manifest) record; unchanged for any other genome.  raises ConfigError without a record,
    DataError when the recording is gone or does not cover the bars."""
    from forge.features.l2terminals import is_l2_feature, reattach_l2

    reads = sorted(f for f in genome.features if is_l2_feature(f))
    if not reads:
        return bars
    rec = (genome.meta or {}).get("l2")
    near = Path(genome_path).with_name("manifest.json")
    if rec is None and near.is_file():
        rec = (json.loads(near.read_text()).get("universe") or {}).get("l2")
    if not rec:
        raise ConfigError(f"{genome_path} reads recorded L2 books ({', '.join(reads)}) but records no recording "
                          "(meta.l2); backtest a run's champion.json")
    return reattach_l2(bars, rec, check_digest=False, root=l2_dir)


def backtest_genome(genome_path: str | Path, data: Sequence[str | Path] | None = None, *,
                    config: str | Path | None = None, library: str | Path | None = None,
                    bars_range: str = "auto", l2_dir: str | Path | None = None) -> GenomeBacktest:
    """Backtest one genome file.

    genome_path: genome JSON (e.g. a run's champion.json); data: kline files
    or folders, or bar Parquet files (None: the embedded BTCUSDT sample);
    config: forge run config whose ``[backtest]`` costs apply (None: the
    packaged default); library: feature library JSON for synthesized
    features (None: the ``feature_library.json`` next to the genome if any); bars_range: "out-of-sample"
    / "in-sample" (the bars of that range of the run whose ``manifest.json`` sits beside the genome, by
    open time; positions are computed on every bar before, so look-backs are warm), "all", or "auto"
    (out-of-sample for a run's genome, else all); l2_dir: the genome's L2 recording (``forge evolve --l2``) at
    another path than its record's.  raises GenomeError, DataError, ConfigError (also for
    a range without a run, or no bar of the given data in it).
    """
    from forge.backtest import run_backtest
    from forge.data.gaps import bars_since_gap
    from forge.data.loader import load_bars
    from forge.gp import Genome
    from forge.core.runconfig import load_run_config
    from forge.strategy import genome_positions, strategy_features

    genome = Genome.load(genome_path)
    cfg = load_run_config(config)
    if library is None:
        near = Path(genome_path).with_name("feature_library.json")
        library = near if near.is_file() else None
    from forge.data.panel import genome_tags, load_run_panel

    universe = (genome.meta or {}).get("universe")
    if universe is None and genome_tags(genome.features):
        near = Path(genome_path).with_name("manifest.json")  # a run's champion: its manifest says what it trades
        universe = (json.loads(near.read_text()).get("universe") if near.is_file() else None) or None
        if not (universe or {}).get("trade"):
            raise ConfigError(f"{genome_path} reads other instruments ({', '.join(genome_tags(genome.features))}) "
                              "but records no traded instrument (meta.universe); backtest a run's champion.json")
    if universe is not None:
        if not data:
            raise ConfigError(f"{genome_path} is a panel genome (trades {universe['trade']}, reads "
                              f"{', '.join(genome_tags(genome.features)) or 'only it'}): pass --data DIR holding "
                              "its instruments' kline files")
        bars, cov, _ = load_run_panel([str(p) for p in data], universe)
    else:
        bars, cov = load_bars([str(p) for p in data] if data else None)
    if bars.height < 2:
        raise ConfigError(f"--data: {bars.height} bar(s); a backtest needs at least 2")
    bars = _with_l2(genome, genome_path, bars, l2_dir)
    fm = strategy_features(bars, genome.features, library)
    t = bars["open_time"].to_numpy()
    o = bars["open"].to_numpy().astype(np.float64)
    c = bars["close"].to_numpy().astype(np.float64)
    pos = genome_positions(genome, fm, bars_since_gap(t))
    if bars_range not in BAR_RANGES:
        raise ConfigError(f"--bars {bars_range!r}: expected one of {', '.join(BAR_RANGES)}")
    split = run_split(genome_path)
    chosen = ("out-of-sample" if split is not None else "all") if bars_range == "auto" else bars_range
    sizing_info = None
    if cfg.execution.sizing == "kelly":
        from forge.core.runconfig import resolve_costs
        from forge.data.discovery import market_type

        # the costs of the backtest shown: [backtest] as written for taker, the preset resolved for the kline model
        bcfg = cfg.backtest if cfg.execution.mode == "taker" else resolve_costs(cfg, [market_type(cov)])[0].backtest
        pos, sizing_info = _kelly_sized(o, c, t, pos, split, cfg, bcfg)
    if chosen != "all":
        if split is None:
            raise ConfigError(f"--bars {chosen}: {genome_path} is not in a run directory (no manifest.json beside "
                              "it), so it has no in-sample / out-of-sample range; use --bars all")
        rng_ = split["out_of_sample" if chosen == "out-of-sample" else "in_sample"]
        keep = np.flatnonzero((t >= int(rng_["first_open_ms"])) & (t <= int(rng_["last_open_ms"])))
        if keep.shape[0] < 2:
            raise ConfigError(f"--bars {chosen}: the data has {keep.shape[0]} bar(s) in the run's {chosen} range "
                              f"({rng_.get('first', rng_['first_open_ms'])} → {rng_.get('last', rng_['last_open_ms'])});"
                              " pass the run's data or --bars all")
        a, b = int(keep[0]), int(keep[-1]) + 1
        bars, t, o, c, pos = bars.slice(a, b - a), t[a:b], o[a:b], c[a:b], pos[a:b]
    if cfg.execution.mode == "taker":
        res = run_backtest(o, c, t, pos, cfg.backtest)
        bh = run_backtest(o, c, t, np.ones(bars.height), cfg.backtest)
        return GenomeBacktest(genome, str(genome_path), bars, res, bh, cov.source, execution=None,
                              kelly=(cfg.execution.kelly_cap, cfg.execution.max_leverage),
                              initial_capital=cfg.backtest.initial_capital, bars_range=chosen,
                              applied_sizing=sizing_info)
    return _kline_backtest(genome, str(genome_path), bars, cov, cfg, pos, chosen, sizing_info)


def _kelly_sized(o: np.ndarray, c: np.ndarray, t: np.ndarray, pos: np.ndarray, split: dict[str, Any] | None,
                 cfg: Any, backtest: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``[execution] sizing = "kelly"``: the positions times the fractional Kelly multiplier measured on the
    run's in-sample bars only (``forge.execution.sizing.kelly_sizing``; the taker backtest with
    ``[backtest]`` costs), or on every bar given when the genome has no run split (then the whole backtest
    is in-sample, and the result says so); backtest: the costs (default ``cfg.backtest``).  raises ConfigError
    when the data holds < 2 in-sample bars."""
    from forge.execution.sizing import kelly_sizing

    if split is not None:
        r = split["in_sample"]
        keep = np.flatnonzero((t >= int(r["first_open_ms"])) & (t <= int(r["last_open_ms"])))
        if keep.shape[0] < 2:
            raise ConfigError("[execution] sizing = \"kelly\": the data holds fewer than 2 bars of the run's in-sample "
                              "range, the only bars the Kelly multiplier may be measured on; pass the run's data")
        rows, label = (int(keep[0]), int(keep[-1]) + 1), "in-sample (the run's in-sample range)"
    else:
        rows, label = (0, t.shape[0]), "every bar given (no run split beside the genome: an in-sample backtest)"
    ex = cfg.execution
    info = kelly_sizing(o, c, t, pos, rows, cfg.backtest if backtest is None else backtest, cap=ex.kelly_cap,
                        max_leverage=ex.max_leverage,
                        sized_on=label)
    return pos * info["multiplier"], info


@dataclass
class _KlineRun:
    """A kline-model result in the shape the summary, trade writer and plot read (trades = FILL_DTYPE)."""

    equity: Any
    trades: Any
    metrics: Any


def _kline_backtest(genome: Any, genome_path: str, bars: pl.DataFrame, cov: Any, cfg: Any, pos: np.ndarray,
                    bars_range: str = "all", sizing_info: dict[str, Any] | None = None) -> GenomeBacktest:
    """``[execution] mode`` kline-limit / policy: the kline fill model (forge.backtest.fills) with the [costs]
    preset resolved for the data (maker and taker fee), for the genome and for buy-and-hold alike."""
    from forge.backtest.fills import FillModel, execution_costs
    from forge.core.runconfig import resolve_costs
    from forge.data.discovery import market_type

    rcfg, rec = resolve_costs(cfg, [market_type(cov)])
    ex = rcfg.execution
    model = FillModel.for_run(ex, rec, rcfg.backtest.taker_fee_bps)
    col = {k: bars[k].to_numpy().astype(np.float64) for k in ("open", "high", "low", "close", "volume")}
    t = bars["open_time"].to_numpy().astype(np.int64)

    def run(p: np.ndarray) -> Any:
        r = model.kline_backtest(col["open"], col["high"], col["low"], col["close"], col["volume"], t, p,
                                 rcfg.backtest)
        return r, _KlineRun(r.equity, r.fills, r.metrics)

    raw, res = run(pos)
    _, bh = run(np.ones(bars.height))
    info = {"mode": ex.mode, "preset": rec["preset"], "taker_fee_bps": rcfg.backtest.taker_fee_bps,
            "maker_fee_bps": model.maker_fee_bps, "policy_sha256": model.policy_sha256 or None, "tick": raw.tick,
            "median_half_spread_bps": float(1e4 * np.median(raw.half_spread)),
            "costs": execution_costs(raw.fills, col["close"])}
    return GenomeBacktest(genome, genome_path, bars, res, bh, cov.source, execution=info,
                          kelly=(ex.kelly_cap, ex.max_leverage), initial_capital=rcfg.backtest.initial_capital,
                          bars_range=bars_range, applied_sizing=sizing_info)


def trades_frame(bt: GenomeBacktest) -> pl.DataFrame:
    """The fills as a polars frame: time (UTC datetime), bar, side (+1 buy / -1 sell), units, price
    (quote per unit, slippage included), notional and fee (quote), position_before/after (exposure)."""
    tr = bt.result.trades
    cols = {name: tr[name] for name in tr.dtype.names}
    df = pl.DataFrame(cols)
    return df.with_columns(pl.from_epoch(pl.col("open_time"), time_unit="ms").dt.replace_time_zone("UTC")
                           .alias("time")).select(["time", *[n for n in tr.dtype.names]])


def write_trades(bt: GenomeBacktest, path: str | Path) -> Path:
    """Write the trade list: ``.csv`` or ``.parquet`` by suffix. raises ConfigError for another suffix."""
    p = Path(path)
    df = trades_frame(bt)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".csv":
        df.write_csv(p)
    elif p.suffix == ".parquet":
        df.write_parquet(p)
    else:
        raise ConfigError(f"--trades {p}: expected a .csv or .parquet file name")
    return p


def plot_equity(bt: GenomeBacktest, path: str | Path) -> Path:
    """Equity of the genome and of buy-and-hold (USDT) above, the genome's drawdown (%) below; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = bt.bars["open_time"].to_numpy().astype("datetime64[ms]")
    eq, bh = bt.result.equity, bt.buy_and_hold.equity
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax1.plot(t, eq, lw=1.2, label=f"strategy ({100 * bt.result.metrics.total_return:+.2f}%)")
    ax1.plot(t, bh, lw=1.0, alpha=0.8, label=f"buy-and-hold ({100 * bt.buy_and_hold.metrics.total_return:+.2f}%)")
    ax1.set_ylabel("equity, USDT")
    ax1.set_title(f"{bt.genome.sha256[:16]}: {bt.genome.expression()[:110]}", fontsize=10)
    ax1.legend(loc="upper left", fontsize=10)
    ax1.grid(alpha=0.3)
    dd = 100 * (eq / np.maximum.accumulate(eq) - 1)
    ax2.fill_between(t, dd, 0, color="tab:red", alpha=0.5)
    ax2.set_ylabel("drawdown, %")
    ax2.grid(alpha=0.3)
    fig.autofmt_xdate()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return p
