"""Everything the stages read about one run: bars, features, candidates, returns.

Loaded once per ``gauntlet validate``: the run manifest and hall of fame from
``forge evolve``, the bars (the run's own data by default, or ``--data``),
the terminal features (synthesized ones from the run's feature library), and
for each hall-of-fame candidate its positions on every bar and its backtest
returns on the in-sample and evaluation (out-of-sample) ranges.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from forge.backtest import BacktestConfig, BacktestResult, run_backtest
from forge.backtest.fills import FillModel, KlineInputs
from forge.causal import vol_standardized
from forge.core.errors import ConfigError, DataError
from forge.core.rundir import FILES, Manifest, iter_evaluated, read_hall_of_fame, read_manifest
from forge.data.gaps import bars_since_gap, realised_returns
from forge.data.loader import coverage_of, load_bars
from forge.data.discovery import load_symbol_bars
from forge.data.panel import load_run_panel
from forge.features.l2terminals import reattach_l2
from forge.features import FeatureMatrix
from forge.gp import BufferPool, Genome
from forge.core.runconfig import config_from_dict
from forge.strategy import genome_positions, strategy_features
from gauntlet.stats import Hedge, hourly_sums, market_hedged, sharpe_per_bar

__all__ = ["Candidate", "RunContext", "PositionFn", "Trials", "genome_position_fn", "MIN_EVALUATION_BARS",
           "candidate_limit"]

MIN_EVALUATION_BARS = 100
"""Fewest evaluation bars a validation accepts (own out-of-sample range or holdout)."""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

PositionFn = Callable[[pl.DataFrame], np.ndarray]
"""bars (oldest first) -> (n,) float64 target positions decided at each bar's close."""


def genome_position_fn(genome: Genome, feature_names: Sequence[str], library: Path | None,
                       regimes: Path | None = None) -> PositionFn:
    """The candidate's full signal path from raw bars (features recomputed; a regime model only filtered with
    its frozen parameters, never refitted), as the Crucible runs it."""
    names = tuple(dict.fromkeys(list(genome.features)))

    def fn(bars: pl.DataFrame) -> np.ndarray:
        fm = strategy_features(bars, names, library, regimes)
        return genome_positions(genome, fm, bars_since_gap(bars["open_time"].to_numpy()))

    return fn


def candidate_limit(candidates: str | int | None, max_candidates: int | None, *, holdout: bool) -> int | None:
    """Number of hall-of-fame members to validate (None: all).

    candidates: "champion" (1), "all" (None), an int or digit string N >= 1, or None (the mode's default:
    the champion in a holdout, all otherwise); max_candidates caps the result. raises ConfigError otherwise."""
    if candidates is None:
        n = 1 if holdout else None
    elif isinstance(candidates, int) or str(candidates).isdigit():
        n = int(candidates)
        if n < 1:
            raise ConfigError(f"--candidates must be champion, all or N >= 1, got {candidates!r}")
    elif candidates == "champion":
        n = 1
    elif candidates == "all":
        n = None
    else:
        raise ConfigError(f"--candidates must be champion, all or N >= 1, got {candidates!r}")
    if max_candidates is not None:
        n = max_candidates if n is None else min(n, max_candidates)
    return n



@dataclass(frozen=True)
class Trials:
    """The in-sample trials of a run (see ``RunContext.in_sample_trials``)."""

    hourly: np.ndarray
    sharpe: np.ndarray
    rank_row: dict[int, int]
    n_total: int
    n_obs: int = 0


@dataclass
class Candidate:
    """One hall-of-fame member.

    position: (n,) float64 target positions on all bars; is_result / oos_result:
    BacktestResult on the in-sample and evaluation rows (backtest restarted at
    each range's first bar, as ``forge evolve`` reports it).
    """

    rank: int
    genome: Genome
    position: np.ndarray
    is_result: BacktestResult | None
    oos_result: BacktestResult
    position_fn: PositionFn

    @property
    def name(self) -> str:
        return f"#{self.rank} {self.genome.sha256[:10]}"


@dataclass
class RunContext:
    """A run directory made ready for validation.

    bars: the bar frame (oldest first); features: terminal FeatureMatrix on all
    bars; in_sample / evaluation: (start, stop) row ranges; overlap: True when
    the evaluation rows overlap the in-sample range (only with allow_overlap); holdout: True when the
    evaluation rows are bars after the run's last bar (fresh data; in_sample is then the run's in-sample
    rows inside the bars given, or (0, 0) when they do not hold them).  fill: the run's fill model
    (``forge.backtest.fills.FillModel`` from its ``[execution]`` and resolved costs): every net backtest of a
    candidate, a trial and buy-and-hold goes through it (:meth:`backtest_rows`), so validation scores the
    fills evolution selected with.
    """

    run_dir: Path
    manifest: Manifest
    backtest: BacktestConfig
    bars: pl.DataFrame
    features: FeatureMatrix
    in_sample: tuple[int, int]
    evaluation: tuple[int, int]
    candidates: list[Candidate]
    library: Path | None
    data_source: str
    overlap: bool = False
    holdout: bool = False
    buy_and_hold: BacktestResult | None = None
    trial_genomes: list[Genome] = field(default_factory=list)
    n_evaluated: int = 0
    regimes: Path | None = None  # the run's frozen regime_model.json (published beside its champions), or None
    ledger: Any = None  # forge.core.ledger.LedgerTally of the run's in-sample bars, or None (no ledger entry)
    fill: FillModel = field(default_factory=FillModel)
    _market: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    _arrays: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def open_time(self) -> np.ndarray:
        return self.bars["open_time"].to_numpy()

    @functools.cached_property
    def log_returns(self) -> np.ndarray:
        """(n,) float64 log return realised during each bar; NaN at the start and after every gap."""
        return realised_returns(self.bars["close"].to_numpy().astype(np.float64), self.open_time)

    @functools.cached_property
    def return_z(self) -> np.ndarray:
        """(n,) float64 log return of each bar over a causal EWMA volatility estimate
        (``forge.causal.vol_standardized``): the outcome of the PCMCI and DoWhy stages."""
        return vol_standardized(self.log_returns)

    def arrays(self, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(open, close, open_time) on ``rows``: float64, float64, int64; computed once per range."""
        key = tuple(rows)
        if key not in self._arrays:
            a, b = key
            self._arrays[key] = (self.bars["open"].to_numpy()[a:b].astype(np.float64),
                                 self.bars["close"].to_numpy()[a:b].astype(np.float64),
                                 self.open_time[a:b].astype(np.int64))
        return self._arrays[key]

    @functools.cached_property
    def kline(self) -> KlineInputs | None:
        """The kline fill model's inputs on every bar (None when the fill model is taker)."""
        return self.fill.inputs(*(self.bars[k].to_numpy() for k in ("high", "low", "close", "volume")))

    def backtest_rows(self, position: np.ndarray, rows: tuple[int, int]) -> BacktestResult:
        """The net backtest of ``position`` (all bars) restarted at rows[0], under the run's fill model."""
        o, c, t = self.arrays(rows)
        a, b = rows
        if self.fill.taker:
            return run_backtest(o, c, t, position[a:b], self.backtest)
        kl = self.kline
        return self.fill.run(o, c, t, position[a:b], self.backtest, kl.rows(a, b) if kl is not None else None)

    def market_returns(self, rows: tuple[int, int]) -> np.ndarray:
        """(rows[1] - rows[0],) float64 per-bar gross return of buy-and-hold on ``rows`` (the market factor
        every strategy's returns are hedged against; same timing as the backtester's returns)."""
        key = tuple(rows)
        if key not in self._market:
            o, c, t = self.arrays(rows)
            gross = dataclasses.replace(self.backtest, taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=0.0)
            self._market[key] = run_backtest(o, c, t, np.ones(len(o)), gross).returns
        return self._market[key]

    def hedged(self, result: BacktestResult, rows: tuple[int, int]) -> Hedge:
        """A backtest's per-bar returns on ``rows`` net of their market exposure (``gauntlet.stats.market_hedged``)."""
        return market_hedged(result.returns, self.market_returns(rows))

    def in_sample_trials(self) -> Trials:
        """The trials of the run's selection: hall-of-fame members plus every other evaluated genome
        (``evaluated.jsonl``), each backtested on the in-sample rows with the run's costs (taker fee,
        slippage, funding) and hedged against the market — the matrix PBO's CSCV and the DSR's trial count and
        Sharpe variance are defined on (Bailey et al. 2017; Bailey & López de Prado 2014). Trials with identical
        in-sample positions are one trial. (Clustering, and sampling by cluster above a stated size, happen in
        ``gauntlet.stats.effective_trials``.)

        returns: Trials (hourly (N, H) float64 hourly sums of hedged net per-bar returns, sharpe (N,) per-bar
        Sharpe of the hedged net returns, rank_row: hall-of-fame rank -> row, n_total: genomes evaluated,
        n_obs: in-sample bars).
        """
        a, b = self.in_sample
        hof = {c.genome.sha256 for c in self.candidates}
        others = [g for g in self.trial_genomes if g.sha256 not in hof]
        bsg = bars_since_gap(self.open_time)
        pool = BufferPool()
        t_is = self.open_time[a:b]
        rows: list[np.ndarray] = []
        srs: list[float] = []
        seen: dict[bytes, int] = {}
        rank_row: dict[int, int] = {}
        items = [(c.rank, c.position) for c in self.candidates] + [(None, g) for g in others]
        for rank, item in items:
            pos = item if isinstance(item, np.ndarray) else genome_positions(item, self.features, bsg, pool)
            key = np.nan_to_num(pos[a:b]).tobytes()
            if key in seen:
                if rank is not None:
                    rank_row[rank] = seen[key]
                continue
            h = self.hedged(self.backtest_rows(pos, (a, b)), (a, b)).hedged
            seen[key] = len(rows)
            if rank is not None:
                rank_row[rank] = len(rows)
            srs.append(sharpe_per_bar(h))
            rows.append(hourly_sums(h, t_is))
        return Trials(hourly=np.array(rows), sharpe=np.array(srs), rank_row=rank_row,
                      n_total=max(self.n_evaluated, len(self.trial_genomes), len(rows)), n_obs=b - a)

    @classmethod
    def load(cls, run_dir: str | Path, data: Sequence[str | Path] | None = None, *,
             allow_overlap: bool = False, max_candidates: int | None = None,
             bars: pl.DataFrame | None = None, candidates: str | int | None = None,
             l2_dir: str | Path | None = None) -> RunContext:
        """Load a run directory through the run-directory contract (``forge.core.rundir``). bars: the run's
        own bars in memory (e.g. a synthetic market the run was evolved on; the manifest's split applies),
        instead of reloading its data; l2_dir: the run's L2 recording at another path than its manifest's
        (``forge.features.l2terminals.reattach_l2``). candidates / max_candidates: which hall-of-fame members
        (``candidate_limit``). With ``data`` holding bars after the run's last bar the context is a
        holdout (``holdout`` True): those bars are evaluated, every earlier bar given only warms features up.
        Raises RunDirError (missing/corrupt files) or DataError (bars that do not match the run, fewer than
        ``MIN_EVALUATION_BARS`` evaluation bars, or bars overlapping its in-sample range with no bar after the
        run and no allow_overlap; the message names the ranges)."""
        run_dir = Path(run_dir)
        manifest = read_manifest(run_dir)
        hall = read_hall_of_fame(run_dir).members
        cfg = config_from_dict(manifest.config)
        library = run_dir / FILES.feature_library
        library = library if library.is_file() else None
        regimes = run_dir / FILES.regime_model  # frozen at evolve time; the gauntlet only filters with it
        regimes = regimes if regimes.is_file() else None
        split = manifest.split
        is_first, is_last = split["in_sample"]["first_open_ms"], split["in_sample"]["last_open_ms"]
        overlap = False
        universe = manifest.universe if (manifest.universe or {}).get("trade") else None
        holdout = False
        run_last = int(split["out_of_sample"]["last_open_ms"])
        if data:
            if universe is not None:  # a panel run: the same instruments on the same clock, from --data
                bars, cov, _ = load_run_panel([str(p) for p in data], universe)
            else:
                bars, cov = load_bars([str(p) for p in data])
            t = bars["open_time"].to_numpy()
            after = t > run_last
            if after.any():
                # holdout: the evaluation bars are those after the run's last bar; every earlier bar given with
                # them only warms the features up (no metric reads it)
                holdout = True
                ev = (int(np.flatnonzero(after)[0]), len(t))
                if ev[1] - ev[0] < MIN_EVALUATION_BARS:
                    raise DataError(
                        f"holdout: --data has {ev[1] - ev[0]} bars after the run's last bar "
                        f"({_iso(run_last)}); need at least {MIN_EVALUATION_BARS} (--data spans {_iso(t[0])} → "
                        f"{_iso(t[-1])}, the run {split['in_sample']['first']} → {split['out_of_sample']['last']})")
                # the run's in-sample trials can be recomputed only when the bars given hold its in-sample range
                lo, hi = int(np.searchsorted(t, is_first)), int(np.searchsorted(t, is_last, side="right"))
                n_is = int(split["in_sample"]["rows"][1]) - int(split["in_sample"]["rows"][0])
                covered = hi - lo == n_is and lo < len(t) and int(t[lo]) == is_first
                in_sample = (lo, hi) if covered else (0, 0)
            else:
                inside = (t >= is_first) & (t <= is_last)
                if inside.any():
                    if not allow_overlap:
                        raise DataError(
                            f"--data ({_iso(t[0])} → {_iso(t[-1])}) overlaps the run's in-sample range "
                            f"{split['in_sample']['first']} → {split['in_sample']['last']} "
                            f"({int(inside.sum()):,} bars); evolution saw those bars. Pass bars after the run's "
                            f"last bar {split['out_of_sample']['last']} (holdout), or --allow-overlap")
                    overlap = True
                # history before the evaluation start only warms features up; metrics use bars after the in-sample end
                after_is = t > is_last
                ev = (int(np.flatnonzero(after_is)[0]), len(t)) if after_is.any() and not overlap else (0, len(t))
                in_sample = (int(np.searchsorted(t, is_first)), int(np.searchsorted(t, is_last, side="right")))
            source = cov.source
        else:
            paths = list(manifest.config["evolve"].get("data") or [])
            symbol = (manifest.data or {}).get("symbol")
            if bars is not None:
                cov = coverage_of(bars, source="in-memory bars")
            elif universe is not None:
                bars, cov, _ = load_run_panel(tuple(paths), universe)
            elif symbol and paths:
                bars, cov = load_symbol_bars(tuple(paths), symbol)
            else:
                bars, cov = load_bars(paths or None)
            in_sample, ev = tuple(split["in_sample"]["rows"]), tuple(split["out_of_sample"]["rows"])
            t = bars["open_time"].to_numpy()
            if (len(t) < ev[1] or int(t[in_sample[0]]) != is_first or int(t[ev[0]]) != split["out_of_sample"]["first_open_ms"]
                    or int(t[ev[1] - 1]) != split["out_of_sample"]["last_open_ms"]):
                raise DataError(f"{cov.source}: the bars no longer match the run's split (files changed since "
                                f"{manifest.created_utc}); pass --data explicitly")
            source = cov.source
        if ev[1] - ev[0] < MIN_EVALUATION_BARS:
            raise DataError(f"evaluation range has {ev[1] - ev[0]} bars; need at least {MIN_EVALUATION_BARS}")
        l2 = (manifest.universe or {}).get("l2")
        if l2:  # recorded-book terminals: the same recording joined again (refused when it changed since the run)
            bars = reattach_l2(bars, l2, check_digest=not holdout and not overlap, root=l2_dir)
            books = ", ".join(f"{b['venue']}/{b['symbol']} ({b['valid_ratio']:.0%} of the run's bars)"
                              for b in l2["books"])
            source = f"{source} + L2 books {books} from {l2_dir or l2['books'][0]['dir']}"
        features = strategy_features(bars, manifest.features, library, regimes)
        bsg = bars_since_gap(bars["open_time"].to_numpy())
        ctx = cls(run_dir=run_dir, manifest=manifest, backtest=cfg.backtest, bars=bars, features=features,
                  in_sample=in_sample, evaluation=ev, candidates=[], library=library, data_source=source,
                  overlap=overlap, holdout=holdout, regimes=regimes, fill=run_fill_model(manifest, cfg))
        ctx.buy_and_hold = ctx.backtest_rows(np.ones(bars.height), ev)
        pool = BufferPool()
        limit = candidate_limit(candidates, max_candidates, holdout=holdout)
        for m in hall[: limit or len(hall)]:
            g = m.to_genome()
            pos = genome_positions(g, features, bsg, pool)
            ctx.candidates.append(Candidate(
                rank=int(m.rank), genome=g, position=pos,
                is_result=ctx.backtest_rows(pos, in_sample) if in_sample[1] - in_sample[0] > 1 else None,
                oos_result=ctx.backtest_rows(pos, ev),
                position_fn=genome_position_fn(g, manifest.features, library, regimes)))
        if (run_dir / FILES.evaluated).is_file():
            ctx.trial_genomes = [r.genome for r in iter_evaluated(run_dir)]
        ctx.n_evaluated = int(manifest.candidates_evaluated or len(ctx.trial_genomes))
        if not ctx.trial_genomes:
            ctx.trial_genomes = [cd.genome for cd in ctx.candidates]
        ctx.ledger = ledger_tally(run_dir, manifest)
        return ctx


def run_fill_model(manifest: Manifest, cfg: Any) -> FillModel:
    """The fill model the run was evolved with: its ``[execution]`` with the manifest's resolved costs
    (``forge.evolution.run.run_fill_model``).  raises ConfigError when its policy file is unreadable or is not
    the policy the run recorded (sha256 in the manifest's ``costs.execution``)."""
    costs = manifest.costs or {}
    fill = FillModel.for_run(cfg.execution, costs, cfg.backtest.taker_fee_bps)
    want = (costs.get("execution") or {}).get("policy_sha256")
    if want and fill.policy_sha256 != want:
        raise ConfigError(f"[execution] policy {cfg.execution.policy!r}: sha256 {fill.policy_sha256[:12]}… is not the "
                          f"policy the run was evolved with ({want[:12]}…); restore that file")
    return fill


def ledger_tally(run_dir: Path, manifest: Manifest) -> Any:
    """Runs and trials of the trial ledger (``forge.core.ledger``) on bars overlapping this run's in-sample
    range (the run itself included when recorded; a run evolved before the ledger existed still counts its
    own trials); None when the manifest names no in-sample range."""
    from forge.core.ledger import LedgerTally, entry_for_manifest, ledger_path, tally_overlapping

    entry = entry_for_manifest(manifest)
    if entry is None:
        return None
    tally = tally_overlapping(ledger_path(run_dir, (manifest.config.get("evolve") or {}).get("trial_ledger")), entry)
    if tally.runs == tally.other_runs:  # not recorded itself
        tally = LedgerTally(tally.runs + 1, tally.trials + entry.trials, tally.other_runs, tally.other_trials)
    return tally
