"""Pit Crew: hot-swap of champions published to ``artifacts/champions/``.

Intake (a hostile folder cannot hurt the trader).  The folder is polled every ``poll_bars`` bars, at a
bar boundary.  Only directory entries named ``*.meta.json`` are considered, and each is read through
:func:`forge.core.champion.verify_champion`: regular files only (``lstat`` before opening; symlinks,
FIFOs, devices and directories refused, ``O_NOFOLLOW | O_NONBLOCK`` so nothing blocks), the genome
named by the meta must be a plain file name in the same folder, every file at most ``max_file_bytes``,
JSON nesting at most ``max_json_depth`` levels (checked by a linear scan *before* parsing), genomes at
most ``max_genome_tokens`` tokens; then sha256, genome checksum, the gauntlet verdict (a champion whose
verdict does not say it survived is refused) and the HMAC over genome *and* meta.  Any exception while
examining one file — including ``RecursionError`` and ``MemoryError`` — becomes a rejection of that file
(the runtime journals a ``reject`` event) and trading goes on.  Each file version (name, size, mtime of
meta and genome) is examined once.

Signatures: required when ``require_signature`` is true (the default on exchange venues, see
:class:`crucible.config.HotswapConfig`) or whenever ``FORGE_SIGNING_KEY`` is set; otherwise (replay) an
unsigned champion is accepted and a ``warning`` event says so.

Promotion.  An accepted champion becomes a *challenger*: it trades in shadow on a paper ledger fed by
the live bars (same signals, same fill model as the venue: next open, taker fee, slippage) for
``shadow_bars`` bars.  It then replaces a live champion of its symbol only if its per-bar returns beat
that champion's over the same bars by a statistically significant margin (:func:`promotion_test`: a
one-sided Diebold–Mariano test with Newey–West variance at level ``alpha``); among the champions it
beats, the weakest (lowest per-bar Sharpe) is replaced.  The replaced champion is kept in the slot's
``previous`` list for rollback.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from crucible.slots import Ledger
from crucible.signals import check_features
from forge.backtest.costs import bps, fill_price, taker_fee
from forge.backtest.metrics import sharpe_per_bar_of_equity
from forge.core.errors import GenomeError
from forge.gp import Genome
from forge.core.champion import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_TOKENS,
    SIGNING_KEY_ENV,
    champion_key,
    champion_policy,
    champion_regime_model,
    champion_sizing,
    champion_stem,
    meta_key,
    verify_champion,
)
from forge.features.regimes import is_regime_feature

__all__ = ["Challenger", "PitCrew", "promotion_test"]

log = logging.getLogger("crucible")
Report = Callable[..., None]


@dataclass
class Challenger:
    """A champion candidate in shadow.

    genome; meta: its publish meta; symbol; started_ms: open time of the first shadow bar; ledger: paper
    ledger (capital = the slot capital); pending: target exposure waiting for the next open (or None);
    equity_curve: paper equity marks (USDT), one per shadow bar.  From the meta: ``policy`` (its execution
    policy, None = always-taker), ``size_multiplier`` (its signed sizing, 1.0 = unit; the shadow ledger trades
    the targets times it, as the slot will) and ``identity`` (``forge.core.champion.champion_key``).
    """

    genome: Genome
    meta: dict[str, Any]
    symbol: str
    started_ms: int
    ledger: Ledger
    source: str
    pending_qty: float | None = None
    target: float = 0.0
    equity_curve: list[float] = field(default_factory=list)
    policy: Any = field(init=False, default=None)
    size_multiplier: float = field(init=False, default=1.0)

    def __post_init__(self) -> None:
        meta = self.meta if isinstance(self.meta, dict) else {}
        pol = champion_policy(meta, self.source)
        self.policy = None if pol.is_always_taker else pol
        self.size_multiplier = champion_sizing(meta, self.source)

    @property
    def identity(self) -> str:
        return champion_key(self.genome.sha256, None if self.policy is None else self.policy.sha256)

    @property
    def key(self) -> str:
        return "ch:" + champion_stem(self.genome.sha256, None if self.policy is None else self.policy.sha256)

    def on_bar(self, open_: float, close: float, target: float, taker_fee_bps: float, slippage_bps: float,
               min_notional: float) -> None:
        """Advance one bar: fill the pending order at ``open_``, mark at ``close``, decide ``target``."""
        if self.pending_qty:
            q = self.pending_qty
            price = fill_price(open_, q, bps(slippage_bps))
            self.ledger.apply(q, price, taker_fee(q, price, bps(taker_fee_bps)))
        self.pending_qty = None
        eq = self.ledger.equity(close)
        self.equity_curve.append(eq)
        if target != self.target and eq > 0:
            qty = target * self.size_multiplier * eq / close - self.ledger.units
            if abs(qty) * close >= min_notional or (target == 0 and self.ledger.units != 0):
                self.pending_qty = qty
            self.target = target

    def score(self) -> float:
        return sharpe_per_bar_of_equity(self.equity_curve)


def _returns(equity: np.ndarray) -> np.ndarray:
    e = np.asarray(equity, dtype=np.float64)
    if e.size < 2:
        return np.zeros(0)
    prev = e[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, np.diff(e) / prev, 0.0)
    return np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)


def promotion_test(challenger_equity: np.ndarray, champion_equity: np.ndarray, *, margin: float = 0.0,
                   alpha: float = 0.05) -> dict[str, Any]:
    """One-sided test that the challenger's per-bar returns beat the champion's by more than ``margin``.

    challenger_equity, champion_equity: (n,) float64 equity marks (USDT) at the closes of the same n bars,
    oldest first (n >= 3); per-bar simple returns r_t = e_t / e_{t-1} - 1 are taken of each and paired.
    margin: per-bar return difference (fraction of equity per bar) required under the null; alpha: level.

    The loss differential d_t = r_challenger,t - r_champion,t is tested with the Diebold–Mariano statistic
    (Diebold & Mariano 1995, "Comparing predictive accuracy", J. Business & Economic Statistics 13(3)):
    DM = (mean(d) - margin) / sqrt(LRV / T), where LRV is the Newey–West (1987) long-run variance of d with
    Bartlett weights and lag L = floor(4 (T/100)^(2/9)) (Newey & West 1994), which keeps the test valid
    for autocorrelated, non-normal per-minute returns.  H0: E[d] <= margin; the p-value is
    1 - Phi(DM).  When d has zero variance (identical or deterministic paths) the challenger is promoted
    only if mean(d) > margin.  A challenger identical in returns to the champion is never promoted.

    returns {"promote": bool, "statistic": DM (float; ±inf when LRV = 0), "p_value": float, "mean_diff":
    float, "se": float, "lag": int, "n": T, "alpha", "margin"}.  raises ValueError for mismatched lengths,
    n < 3 or alpha outside (0, 1).
    """
    a, b = np.asarray(challenger_equity, dtype=np.float64), np.asarray(champion_equity, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 3:
        raise ValueError(f"need two equity curves of the same length >= 3, got {a.shape} and {b.shape}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    d = _returns(a) - _returns(b)
    t = d.size
    mean = float(d.mean())
    u = d - mean
    lag = min(int(math.floor(4.0 * (t / 100.0) ** (2.0 / 9.0))), t - 1)
    lrv = float(u @ u) / t
    for k in range(1, lag + 1):
        lrv += 2.0 * (1.0 - k / (lag + 1.0)) * float(u[k:] @ u[:-k]) / t
    se = math.sqrt(max(lrv, 0.0) / t)
    excess = mean - margin
    if se > 1e-15 * max(1.0, abs(mean)):
        stat_ = excess / se
        p = float(norm.sf(stat_))
        promote = p < alpha
    else:
        se = 0.0
        stat_ = math.inf if excess > 0 else (-math.inf if excess < 0 else 0.0)
        p = 0.0 if excess > 0 else 1.0
        promote = excess > 0
    return {"promote": bool(promote), "statistic": float(stat_), "p_value": p, "mean_diff": mean, "se": se,
            "lag": lag, "n": t, "alpha": alpha, "margin": margin}


class PitCrew:
    """Scans a champions folder for challengers and decides promotions.

    champions_dir: folder; require_signature: refuse champions that cannot be verified with a key (no key
    is then an error for every file); key: HMAC key (default: the FORGE_SIGNING_KEY environment
    variable, read at each scan); max_file_bytes, max_json_depth, max_genome_tokens: intake limits (see
    :func:`forge.core.champion.verify_champion`); margin, alpha: promotion test (:func:`promotion_test`);
    report: optional callback ``report(kind, **data)`` for ``warning`` (unsigned champion accepted) and
    ``promotion_test`` events — the runtime journals them.  A failing callback never stops a scan;
    full_check_every: while the folder's own mtime is unchanged (publishers rename files into it), only
    every this many scans ``lstat`` each entry to catch in-place edits (a scan of an unchanged folder is
    then one ``stat``); history_bars: closed bars of the live signal window — a genome needing more
    (:func:`crucible.signals.check_features`) is rejected (None: not checked).
    """

    def __init__(self, champions_dir: str | Path, *, require_signature: bool = False,
                 key: str | bytes | None = None, max_file_bytes: int = MAX_BYTES, max_json_depth: int = MAX_DEPTH,
                 max_genome_tokens: int = MAX_TOKENS, margin: float = 0.0, alpha: float = 0.05,
                 report: Report | None = None, full_check_every: int = 12, history_bars: int | None = None) -> None:
        self.dir = Path(champions_dir)
        self.history_bars = history_bars  # a genome needing more closed bars than the live window is refused
        self.require_signature = require_signature
        self.key = key
        self.max_file_bytes, self.max_json_depth, self.max_genome_tokens = max_file_bytes, max_json_depth, \
            max_genome_tokens
        self.margin, self.alpha = margin, alpha
        self._report = report
        self.full_check_every = full_check_every
        self._dir_sig: tuple[int, int] | None = None
        self._polls = 0
        self._seen: dict[str, tuple[int, ...]] = {}
        self.rejected: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []
        self.tests: list[dict[str, Any]] = []
        self.models: dict[str, Path] = {}  # genome sha256 -> its verified regime_model.json (regime champions)

    def _emit(self, kind: str, **data: Any) -> None:
        if self._report is None:
            return
        try:
            self._report(kind, **data)
        except Exception:  # bookkeeping must not stop the scan
            log.exception("pit crew report callback failed")

    def _entries(self) -> list[tuple[str, Path]]:
        try:
            with os.scandir(self.dir) as it:
                return sorted((e.name, Path(e.path)) for e in it if e.name.endswith(".meta.json"))
        except OSError:
            return []

    def scan(self, known_sha: set[str] | Callable[[], set[str]]) -> tuple[list[tuple[Genome, dict[str, Any], str]],
                                                                          list[tuple[str, str]]]:
        """Examine new or changed ``*.meta.json`` files.

        known_sha: identities (``forge.core.champion.champion_key``: the genome sha256 for an always-taker
        champion, genome + policy sha256 otherwise) already on the bench or in shadow (skipped), so the same
        genome published with another policy is a new challenger.  It may be a callable returning that set: called only
        when the directory is examined (most polls return at its unchanged signature).
        returns (accepted [(genome, meta, meta path)], rejected [(file, reason)]).  Never raises for a
        bad file: every exception while examining one file is a rejection of that file.
        """
        accepted: list[tuple[Genome, dict[str, Any], str]] = []
        rejected: list[tuple[str, str]] = []
        try:
            dst = os.stat(self.dir)
        except OSError:
            return accepted, rejected
        self._polls += 1
        dsig = (dst.st_mtime_ns, dst.st_ino)
        if dsig == self._dir_sig and self._polls % self.full_check_every:
            return accepted, rejected
        self._dir_sig = dsig
        if callable(known_sha):
            known_sha = known_sha()
        for name, p in self._entries():
            try:
                st = os.lstat(p)
                gp = p.with_name(name[: -len(".meta.json")] + ".json")
                try:
                    gst = os.lstat(gp)
                    gsig = (gst.st_size, gst.st_mtime_ns, gst.st_ino)
                except OSError:
                    gsig = (-1, -1, -1)
            except OSError:
                continue
            sig = (st.st_size, st.st_mtime_ns, st.st_ino, stat.S_IFMT(st.st_mode), *gsig)
            if self._seen.get(name) == sig:
                continue
            self._seen[name] = sig
            try:
                key = self.key if self.key is not None else os.environ.get(SIGNING_KEY_ENV)
                genome, meta = verify_champion(p, key=key or None, require_signature=self.require_signature,
                                               max_bytes=self.max_file_bytes, max_depth=self.max_json_depth,
                                               max_tokens=self.max_genome_tokens)
                if genome.root != "P":
                    raise GenomeError(f"{p}: not a strategy genome (root {genome.root!r})")
                check_features(genome, self.history_bars)
                reg = champion_regime_model(p, meta, self.max_file_bytes)  # verified again: sha256 in the meta
                if any(is_regime_feature(f) for f in genome.features):
                    if reg is None:
                        raise GenomeError(f"{p}: reads regime terminals but ships no regime model "
                                          "(meta 'regime_model'); republish it with its run's regime_model.json")
                    self.models[genome.sha256] = reg
                sym = meta.get("symbol")
                if sym is not None and not (isinstance(sym, str) and sym.isalnum() and len(sym) <= 32):
                    raise GenomeError(f"{p}: field 'symbol' must be 1-32 letters/digits or null, got {sym!r}")
            except Exception as exc:  # noqa: BLE001 - any failure on one file is that file's rejection
                msg = str(exc) if isinstance(exc, GenomeError) else f"{p}: {type(exc).__name__}: {str(exc)[:200]}"
                rejected.append((str(p), msg[:500]))
                continue
            if meta_key(meta) in known_sha:
                continue
            if not key:
                msg = (f"{p}: unsigned champion accepted ({SIGNING_KEY_ENV} not set and signatures not required "
                       "on this venue)")
                self.warnings.append((str(p), msg))
                log.warning(msg)
                self._emit("warning", file=str(p), reason=msg)
            accepted.append((genome, meta, str(p)))
        self.rejected.extend(rejected)
        return accepted, rejected

    def beats(self, challenger: Challenger, champion_marks: np.ndarray, slot: str | None = None,
              last: int | None = None) -> bool:
        """True if ``challenger``'s shadow record beats a champion's over the same bars (:func:`promotion_test`
        with this crew's margin and alpha); the test result is kept in ``tests`` and reported.  last: compare
        over the challenger's last ``last`` marks only (a champion that took its slot during the shadow period).

        champion_marks: (m,) equity marks of the champion's slot, newest last, ending at the *current* bar
        (m >= n + 1 for a challenger with n marks: its last mark is the previous bar's close, so the
        champion's marks are aligned as ``champion_marks[-n-1:-1]``; with exactly n marks the last n are used).
        """
        ch = np.asarray(challenger.equity_curve, dtype=np.float64)
        if last is not None:
            ch = ch[-last:]
        cm = np.asarray(champion_marks, dtype=np.float64)
        n = ch.size
        if n < 3 or cm.size < n:
            return False
        champ = cm[-n - 1:-1] if cm.size >= n + 1 else cm[-n:]
        res = promotion_test(ch, champ, margin=self.margin, alpha=self.alpha)
        rec = {"genome": challenger.genome.sha256, "slot": slot, **res}
        self.tests.append(rec)
        self._emit("promotion_test", **rec)
        return bool(res["promote"])
