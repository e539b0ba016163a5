"""Power and false passes of the default search + Gauntlet on planted and null *panels* (issue 30, "How it is
measured"): ``benchmarks/universe_power.py`` runs it at scale; a test runs its pieces small.

Panels are :func:`forge.data.panels.planted_panel` markets, three **spot** instruments on one clock (the issue
measures under the spot preset) sharing a market factor: a large cap ``MKTUSDT``, a leader ``LEADUSDT`` and the
traded ``FOLLUSDT``.  Classes (the edge is planted in FOLLUSDT; strength 0 is the class's null panel):
``lead_lag`` (it catches up with the leader's *idiosyncratic* move), ``column`` (its trade count alone carries a
latent its returns follow), ``clock`` (an intraday seasonality with a random phase), ``regime`` (a taker-flow
rule whose direction flips with a market-wide volatility regime: about flat ungated).  A fifth class, ``book``,
is one instrument (``BOOKUSDT``) whose next return follows its **recorded order book's** depth imbalance
(:func:`forge.data.planted_l2.planted_l2_market`; no kline column carries it), evolved with ``--l2`` on the
recording: the power of the L2 terminals (issue 31 part 4).

Planted strength is stated **net of the run's costs**, as in :mod:`loop.honesty`: the per-bar Sharpe, after the
spot preset's taker fee and slippage, of the best oracle rule of the class (:func:`panel_oracle_genome`, a
genome the search can build from its default terminals; w in the GP's windows) on long panels of that strength
(:func:`panel_net_sharpe`); :func:`strength_for_panel_sharpe` inverts it by bisection.

A run (:func:`run_panel`) writes the panel as Binance kline files, runs ``forge evolve --universe
MKTUSDT,LEADUSDT,FOLLUSDT --trade FOLLUSDT`` at the given config (default: the packaged ``default.toml``,
co-evolution off) and ``gauntlet validate`` with the default gates on the run directory, exactly as a user
would; the row says whether the champion was published (survived and labelled directional) and whether it
reads the class's carrier (:func:`reads_carrier`).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from forge.backtest import BacktestConfig, run_backtest
from forge.data.gaps import bars_since_gap
from forge.data.panel import Instrument, build_panel
from forge.data.panels import PANEL_KINDS, planted_panel, write_klines
from forge.gp import Genome
from forge.gp.primitives import WINDOWS
from forge.strategy import genome_positions, strategy_features
from loop.honesty import HonestyRun, _cp, _record, _stamp, bisect_strength

__all__ = ["SYMBOLS", "CARRIER", "PANEL_KINDS", "STUDY_KINDS", "BOOK_SYMBOL", "reads_carrier", "panel_oracle_genome", "panel_net_sharpe", "strength_for_panel_sharpe",
           "panel_frame", "run_panel", "summarize_panels"]

SYMBOLS = ("MKTUSDT", "LEADUSDT", "FOLLUSDT")
"""(large cap, leader, traded follower) of every study panel."""
CARRIER = "__LEADUSDT_spot"
"""Suffix of the leader's terminals: a champion reading one reads the lead-lag carrier."""
_COUNT = {"count_z_60", "avg_trade_z_60"}  # the traded instrument's features that read its trade count
_CLOCK = {"mod_sin", "mod_cos", "hour_utc"}  # the minute-of-day terminals
_TAKER = {"taker_imb", "taker_imb_20"}
_VOL = {"vol_20", "vol_240", "atr_14"}
_BOOK = {"l2_pressure", "l2_pressure_close"}  # the terminals that read the recorded depth imbalance
STUDY_KINDS = (*PANEL_KINDS, "book")
"""The panel classes plus ``book`` (an L2 recording's depth imbalance; ``forge evolve --l2``)."""
BOOK_SYMBOL = "BOOKUSDT"
BOOK_VENUE = "binanceusdm"


def reads_carrier(kind: str, features: list[str] | tuple[str, ...]) -> bool:
    """Does a champion reading ``features`` read the carrier of class ``kind``: a leader terminal (lead_lag),
    the traded instrument's trade count (column), its minute of day (clock), or both its taker flow and a
    volatility terminal or regime probability (regime), the recorded book's depth imbalance (book)?"""
    f = set(features)
    if kind == "book":
        return bool(f & _BOOK)
    if kind == "lead_lag":
        return any(x.endswith(CARRIER) for x in f)
    if kind == "column":
        return bool(f & _COUNT)
    if kind == "clock":
        return bool(f & _CLOCK)
    if kind == "regime":
        return bool(f & _TAKER) and bool(f & _VOL or any(x.startswith("regime_") for x in f))
    raise ValueError(f"kind must be one of {PANEL_KINDS}, got {kind!r}")


_RAW_CARRIER = {"log_count": "count_z_60"}  # a library tree reading the raw trade count reads the column carrier


def library_reads(run_dir: Path, features: list[str]) -> list[str]:
    """The base-feature names standing for what the run's synthesized features among ``features`` read: for each
    ``syn_*`` name in the run directory's frozen ``feature_library.json``, the carrier name of every raw input its
    tree reads (``log_count`` -> ``count_z_60``); [] without a library.  raises ConfigError on a bad library."""
    from forge.core.rundir import FILES
    from forge.features.library import load_feature_library

    path = Path(run_dir) / FILES.feature_library
    if not path.is_file() or not any(f.startswith("syn_") for f in features):
        return []
    lib = load_feature_library(path)
    out = []
    for feat in lib.features:
        if feat.name in features:
            names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", feat.genome.expression()))
            out += [base for raw, base in _RAW_CARRIER.items() if raw in names]
    return out


def panel_oracle_genome(kind: str = "lead_lag", window: int = 60, params: dict[str, float] | None = None) -> Genome:
    """The class's oracle rule (``params``: the panel's, :func:`forge.data.panels.planted_panel`):

    * lead_lag: ``pos_sign(ts_mean(sub(ret_15__LEADUSDT_spot, ret_15__MKTUSDT_spot), w))`` -- the leader's
      15-bar return net of the market's, smoothed: the catch-up the follower makes;
    * column: ``pos_sign(ts_mean(count_z_60, w))``;
    * clock: ``pos_sign(add(mul_c(mod_sin, cos phase), mul_c(mod_cos, sin phase)))`` (no window);
    * regime: ``pos_sign(if_then_else(gt_c(vol_240, threshold), neg(ts_mean(taker_imb, w)), ts_mean(taker_imb,
      w)))``;
    * book: ``pos_sign(ts_mean(l2_pressure, w))``."""
    p = params or {}
    w = f"window:{window}"
    if kind == "lead_lag":
        return Genome.from_tokens(["pos_sign", "ts_mean", "sub", "feature:ret_15__LEADUSDT_spot",
                                   "feature:ret_15__MKTUSDT_spot", w], [])
    if kind == "column":
        return Genome.from_tokens(["pos_sign", "ts_mean", "feature:count_z_60", w], [])
    if kind == "clock":
        ph = float(p["phase"])
        return Genome.from_tokens(["pos_sign", "add", "mul_c", "feature:mod_sin", "const:0", "mul_c",
                                   "feature:mod_cos", "const:1"], [np.cos(ph), np.sin(ph)])
    if kind == "book":
        return Genome.from_tokens(["pos_sign", "ts_mean", "feature:l2_pressure", w], [])
    if kind == "regime":
        return Genome.from_tokens(["pos_sign", "if_then_else", "gt_c", "feature:vol_240", "const:0", "neg",
                                   "ts_mean", "feature:taker_imb", w, "ts_mean", "feature:taker_imb", w],
                                  [float(p["vol_threshold"])])
    raise ValueError(f"kind must be one of {PANEL_KINDS}, got {kind!r}")


def panel_frame(n_bars: int, seed: int, strength: float, kind: str = "lead_lag"
                ) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], dict[str, float]]:
    """(panel frame traded on FOLLUSDT spot as ``forge evolve --universe`` builds it, the raw frames, the
    panel's parameters); for ``book``, BOOKUSDT's bars with its recording joined as ``forge evolve --l2`` does
    (written to a temporary directory and read back)."""
    if kind == "book":
        import tempfile

        from forge.features.l2terminals import attach_l2

        with tempfile.TemporaryDirectory(prefix="book-") as tmp:
            bars = _write_book_market(Path(tmp), n_bars, seed, strength)[0]
            frame, _rec = attach_l2(bars, tmp, BOOK_SYMBOL, venue=BOOK_VENUE)
        return frame, {BOOK_SYMBOL: bars}, {}
    frames, params = planted_panel(kind, n_bars, seed=seed, strength=strength, symbols=SYMBOLS)
    others = {Instrument(s, "spot"): frames[s] for s in SYMBOLS[:2]}
    return build_panel(frames[SYMBOLS[2]], others), frames, params


def _write_book_market(root: Path | None, n_bars: int, seed: int, strength: float, klines: Path | None = None):
    """The book class's market (:func:`forge.data.planted_l2.planted_l2_market`, recorded from the first bar);
    written as a recording under ``root`` and as kline files under ``klines`` when given."""
    from forge.data.planted_l2 import planted_l2_market, write_recording

    bars, book, gaps, p = planted_l2_market(n_bars, seed=seed, strength=strength)
    if root is not None:
        write_recording(root, BOOK_VENUE, BOOK_SYMBOL, book, gaps)
    if klines is not None:
        write_klines(bars, klines, BOOK_SYMBOL, "spot")
    return bars, book, gaps, p


def _oracle_sharpes(panel: pl.DataFrame, costs: BacktestConfig, kind: str, params: dict[str, float]
                    ) -> dict[int, float]:
    from gauntlet.stats import sharpe_per_bar

    g0 = panel_oracle_genome(kind, WINDOWS[0], params)
    fm = strategy_features(panel, tuple(g0.features), None)
    bsg = bars_since_gap(panel["open_time"].to_numpy())
    o = panel["open"].to_numpy().astype(np.float64)
    c = panel["close"].to_numpy().astype(np.float64)
    t = panel["open_time"].to_numpy().astype(np.int64)
    windows = WINDOWS if any(tok.startswith("window:") for tok in g0.tokens) else WINDOWS[:1]
    return {w: sharpe_per_bar(run_backtest(o, c, t, genome_positions(panel_oracle_genome(kind, w, params), fm, bsg),
                                           costs).returns) for w in windows}


def panel_net_sharpe(strength: float, costs: BacktestConfig, *, kind: str = "lead_lag", days: int = 120,
                     seeds: tuple[int, ...] = (7, 8)) -> tuple[float, int]:
    """Per-bar Sharpe after ``costs`` of the best oracle rule of ``kind`` (:func:`panel_oracle_genome`) at
    ``strength``: the mean over ``seeds`` panels of ``days`` days, best window.  returns (net Sharpe, window)."""
    per_w: dict[int, list[float]] = {}
    for s in seeds:
        panel, _, params = panel_frame(days * 1440, s, strength, kind)
        for w, v in _oracle_sharpes(panel, costs, kind, params).items():
            per_w.setdefault(w, []).append(v)
    best = max(per_w, key=lambda w: float(np.mean(per_w[w])))
    return float(np.mean(per_w[best])), best


def strength_for_panel_sharpe(target: float, costs: BacktestConfig, *, lo: float = 0.0, hi: float = 8.0,
                              iters: int = 12, **kw: Any) -> tuple[float, int]:
    """Bisection for the strength whose best oracle rule nets ``target`` per-bar Sharpe after ``costs``
    (``kw``: :func:`panel_net_sharpe`'s, e.g. ``kind``).  returns (strength, window).  raises ValueError when
    ``hi`` is not strong enough."""
    return bisect_strength(lambda s: panel_net_sharpe(s, costs, **kw), target, lo, hi, iters)


def run_panel(seed: int, strength: float, work: Path, *, kind: str = "lead_lag", days: int = 20,
              target: float | None = None,
              config: Path | None = None, jobs: int | None = 1, population: int | None = None,
              generations: int | None = None, causal: bool = True, regimes: bool = False,
              synthesize: float = 0.0) -> HonestyRun:
    """One study run: write the panel (``kind``, ``seed``, ``strength``; the row's kind is ``kind``, or at
    strength 0 ``null`` for lead_lag and ``null_<kind>`` for the others; ``_nocausal`` appended without the
    filter) under
    ``work``, ``forge evolve`` on it as a universe trading FOLLUSDT (book: on BOOKUSDT with ``--l2`` on its recording) (``config``: default the packaged
    default.toml; co-evolution off; ``population`` / ``generations``: that config's unless given; ``causal``
    False: without the PCMCI feature filter, a diagnostic of where power is lost, not the default search;
    ``regimes`` True: with the predictive-regime terminals, ``[regimes] enabled``, rows ``_regimes``;
    ``synthesize`` > 0: ``[evolve] synthesize`` on with that budget in seconds, rows ``_synth``: a synthesized
    feature whose tree reads the carrier's raw input counts as reading the carrier, :func:`library_reads`), then
    ``gauntlet validate``.  returns the row (``champion_uses_planted``: :func:`reads_carrier` of the class)."""
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import evolve
    from gauntlet.config import GauntletConfig
    from gauntlet.validate import validate_run

    t0 = time.perf_counter()
    cls = kind
    kind = cls if strength > 0 else ("null" if cls == "lead_lag" else f"null_{cls}")
    name = f"panel-{kind}-{strength:g}-{seed}"
    data = work / f"{name}-data"
    if cls == "book":
        _write_book_market(work / f"{name}-l2", days * 1440, seed, strength, klines=data)
    else:
        for s, f in planted_panel(cls, days * 1440, seed=seed, strength=strength, symbols=SYMBOLS)[0].items():
            write_klines(f, data, s, "spot")
    cfg = load_run_config(config)
    ev = {"seed": seed, "output_dir": str(work), "data": (str(data),),
          "trial_ledger": str(work / f"{name}.ledger.jsonl")}  # each study market is its own data
    if jobs is not None:
        ev["jobs"] = jobs
    if population is not None:
        ev["population"] = population
    if generations is not None:
        ev["generations"] = generations
    cfg = with_overrides(cfg, "evolve", **ev)
    cfg = with_overrides(cfg, "coevolution", enabled=False)
    if not causal:
        cfg = with_overrides(cfg, "causal", enabled=False)
    if regimes:
        cfg = with_overrides(cfg, "regimes", enabled=True)
    if synthesize > 0:
        cfg = with_overrides(cfg, "evolve", synthesize=True, synthesize_seconds=float(synthesize))
    if cls == "book":
        cfg = with_overrides(cfg, "l2", dir=str(work / f"{name}-l2"))
    else:
        cfg = with_overrides(cfg, "universe", symbols=SYMBOLS, trade=(SYMBOLS[2],))
    run_dir = work / name
    evolve(cfg, run_dir=run_dir)
    gcfg = GauntletConfig(seed=seed).validate()
    rep = validate_run(run_dir, gcfg, publish_dir=None)
    r = _record("evolve", kind, seed, strength, target, rep)
    feats = list(rep.verdicts[0]["features"])
    r.champion_uses_planted = reads_carrier(cls, feats + library_reads(run_dir, feats))
    if not causal:
        r.kind += "_nocausal"  # summarized apart from the default search
    if regimes:
        r.kind += "_regimes"
    if synthesize > 0:
        r.kind += "_synth"
    return _stamp(r, run_dir, cfg.evolve.population, cfg.evolve.generations, days, t0)


def summarize_panels(runs: list[HonestyRun]) -> dict[str, Any]:
    """Per null kind (``null``, ``null_<class>``) and for all null rows together (``null_all``): false passes
    (published champions) with a Clopper-Pearson 95 % interval and the champions reading the lead-lag carrier;
    per planted class and target (``<class>@<target>``): power = published champions that read the class's
    carrier, its interval, the realised out-of-sample net Sharpe, edge-kind labels and the stages' pass rates."""
    out: dict[str, Any] = {}

    def stages(rs: list[HonestyRun]) -> dict[str, float]:
        return {s: float(np.mean([r.stage_passed.get(s, False) for r in rs])) for s in rs[0].stage_passed}

    def kinds(rs: list[HonestyRun]) -> dict[str, int]:
        return {lab: sum(r.champion_edge_kind == lab for r in rs) for lab in ("directional", "risk timing", "no alpha")}

    def secs(rs: list[HonestyRun]) -> float:
        return float(np.median([r.seconds or 0.0 for r in rs]))

    null = [r for r in runs if r.kind.startswith("null")]
    groups = [(k, [r for r in null if r.kind == k]) for k in sorted({r.kind for r in null})]
    for name, rs in groups + ([("null_all", null)] if len(groups) > 1 else []):
        k = sum(r.champion_published for r in rs)
        out[name] = {"runs": len(rs), "published": k, "rate": k / len(rs), "clopper_pearson_95": _cp(k, len(rs)),
                     "survived": sum(r.champion_survived for r in rs),
                     "runs_with_any_survivor": sum(r.any_survived for r in rs),
                     "champion_reads_leader": sum(CARRIER in r.champion_expression for r in rs),
                     "edge_kinds": kinds(rs), "stage_pass_rate": stages(rs), "seconds_median": secs(rs)}
    planted = [r for r in runs if not r.kind.startswith("null")]
    for cls, tgt in sorted({(r.kind, r.target_net_sharpe) for r in planted}, key=lambda x: (x[0], x[1] or 0.0)):
        rs = [r for r in planted if r.kind == cls and r.target_net_sharpe == tgt]
        k = sum(r.champion_published and r.champion_uses_planted for r in rs)
        out[f"{cls}@{tgt:g}" if tgt is not None else cls] = {
            "runs": len(rs), "strength": rs[0].strength, "published_reading_carrier": k, "power": k / len(rs),
            "clopper_pearson_95": _cp(k, len(rs)), "published": sum(r.champion_published for r in rs),
            "champion_reads_carrier": sum(r.champion_uses_planted for r in rs),
            "realised_net_sharpe_mean": float(np.mean([r.realised_net_sharpe or 0.0 for r in rs])),
            "edge_kinds": kinds(rs), "stage_pass_rate": stages(rs), "seconds_median": secs(rs)}
    return out
