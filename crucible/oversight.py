"""Bench oversight at each bar boundary (a mixin of :class:`crucible.runtime.Runtime`).

* the global kill switch (file or SIGTERM): flatten everything, stop;
* Watchtower (:mod:`crucible.watchtower`): a slot at or below its floor (own P&L) is killed, flattened and a
  replacement request is written, seeded from the best genome seen for its symbol;
* Pit Crew (:mod:`crucible.hotswap`): challengers whose shadow period is over re-arm a killed slot of their
  symbol (the one their lineage names first; :mod:`crucible.lineage`), else are promoted when their record
  beats a live champion's by the promotion test; new champion files are scanned every ``poll_bars``;
* CWO (:mod:`crucible.allocator`): exponentiated-gradient weights every ``cwo.interval_seconds``, journaled when
  a weight moved by more than ``WEIGHT_TOL``; capital moved between slot ledgers (journaled ``transfer``
  events, at most ``cwo.max_turnover`` of the bench's equity per reweight).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from crucible.allocator import cwo_step_marks_nb
from crucible.hotswap import Challenger
from crucible.journal import OPEN_STATUSES
from crucible.lineage import challenger_lineage, champion_extras
from crucible.slots import Ledger
from crucible.venues.base import Bar
from crucible.watchtower import write_replacement_request
from forge.backtest.metrics import sharpe_per_bar_of_equity
from forge.core.errors import ConfigError, GenomeError
from forge.gp import Genome

__all__ = ["OversightMixin", "WEIGHT_TOL", "REBALANCE_TOL"]

WEIGHT_TOL = 1e-6  # a reweight is journaled when some weight moved by more than this (fraction of capital)
REBALANCE_TOL = 0.05  # a transfer re-sizes a slot whose exposure is off target by more than this fraction of equity


class OversightMixin:
    """Kill switch, Watchtower, Pit Crew and CWO (see module docstring)."""

    def _kill_switch(self, bar_time: int) -> None:
        if self.stopped_by != "kill_switch":
            with self.journal:
                self.journal.event("killswitch", self.venue.now_ms(), None,
                                   reason="signal" if self.kill_requested else f"file {self.cfg.general.kill_file}")
                self.journal.commit()
            self._emit("killswitch")
            self.stopped_by = "kill_switch"
        for s in self.slots.values():
            if s.status == "live" or s.ledger.units != 0.0:
                self._clear_resting(s)  # resting orders are cancelled before the flatten
                if s.ledger.units != 0.0 and not self.journal.has_open_order(s.id):
                    self.flatten(s, "killswitch", bar_time)
                if s.status == "live":
                    s.status = "stopped"

    def _watchtower(self, bar_time: int, now: int) -> None:
        floor, min_notional = self.cfg.watchtower.kill_floor, self.cfg.general.min_order_notional
        for s in self._slot_list:
            if s.status != "live":
                continue
            mark = s.mark
            if mark <= 0:
                continue
            led = s.ledger
            eq = led.cash + led.units * mark  # s.equity() (mark > 0)
            if not (eq - led.transfers <= floor or eq < min_notional):  # breaches_floor(eq, floor, min_notional, ...)
                continue
            self.kill_info[s.id] = {"equity": eq, "time_ms": now, "bar": self.bar_no}
            s.status = "killed"
            s.weight = 0.0
            self.counters["kills"] += 1
            self.journal.event("kill", now, s.id, equity=eq, floor=floor, genome=s.genome.sha256,
                               **({"champion": s.identity} if s.policy is not None else {}))
            self.journal.commit()  # the kill is durable before its flattening order
            self.flatten(s, "kill", bar_time)
            self._remember(s.genome, s.symbol, sharpe_per_bar_of_equity(self.marks.curve(s.id)), s.identity)
            seed, score = self._best_genome(s.symbol, exclude=s.identity, now=now)
            path = write_replacement_request(self.cfg.general.requests_dir, slot=s.id, symbol=s.symbol,
                                             time_ms=now, equity=eq, killed=s.genome, seed=seed, seed_score=score)
            self.requests.append(str(path))
            self.new_requests.append(str(path))
            self.journal.event("request", now, s.id, path=str(path), seed=seed.sha256)
            self._emit("kill", slot=s.id, equity=eq, request=str(path))
            self._alert("kill", now, slot=s.id, equity=eq, floor=floor, genome=s.genome.sha256[:16])

    def _remember(self, g: Genome, symbol: str, score: float | None, key: str | None = None) -> None:
        """Book ``g``'s live score under its champion identity ``key`` (``forge.core.champion.champion_key``;
        default the genome sha256 = an always-taker champion)."""
        k = g.sha256 if key is None else key
        old = self.genome_book.get(k)
        self.genome_book[k] = (g, symbol, score if score is not None else (old[2] if old else None))

    def _best_genome(self, symbol: str, exclude: str, now: int | None = None) -> tuple[Genome, float | None]:
        """The request's seed: the best live-scored genome of ``symbol`` other than the champion identity
        ``exclude`` (else the killed genome itself), as a copy whose ``meta.selected_on`` (``forge.core.provenance``) says it was selected on
        every bar up to ``now`` -- the live marks it was ranked on are the tail of the replacement run's
        window, and its own champion run saw earlier bars; ``forge serve`` / ``forge evolve`` keep such a
        seed out of any run whose out-of-sample range those bars overlap."""
        g, sc = self._rank_genomes(symbol, exclude)
        if now is None:
            return g, sc
        sel = [{"first_open_ms": 0, "last_open_ms": int(now), "n_bars": 0,
                "note": "live marks up to the request time and the champion's own selection before them"}]
        return dataclasses.replace(g, meta={**(g.meta or {}), "selected_on": sel}), sc

    def _rank_genomes(self, symbol: str, exclude: str) -> tuple[Genome, float | None]:
        for s in self.slots.values():  # current champions' live scores
            if s.symbol == symbol and s.status == "live":
                self._remember(s.genome, s.symbol, sharpe_per_bar_of_equity(self.marks.curve(s.id)), s.identity)
        cands = [(sc if sc is not None else -np.inf, k, g) for k, (g, sym, sc) in self.genome_book.items()
                 if sym == symbol and k != exclude]
        if not cands:
            g, _sym, sc = self.genome_book[exclude]
            return g, sc
        sc, _k, g = max(cands, key=lambda x: (x[0], x[1]))
        return g, (None if not np.isfinite(sc) else float(sc))

    def _pit_crew(self, bars: dict[str, Bar], bar_time: int, now: int) -> None:
        hs = self.cfg.hotswap
        done = [(-c.score(), k, c) for k, c in self.challengers.items() if len(c.equity_curve) >= hs.shadow_bars] \
            if self.challengers else ()
        for _neg, key, ch in sorted(done, key=lambda x: x[:2]):  # the best shadow record first
            dead = self._dead_slot_for(ch)
            # a champion is compared only over bars it held its slot: at least shadow_bars of them
            n = len(ch.equity_curve)
            held = {s.id: n if s.lineage.get("since_ms") is None else min(n, (bar_time - s.lineage["since_ms"]) // 60_000)
                    for s in self.slots.values() if s.status == "live" and s.symbol == ch.symbol}
            rivals = [self.slots[k] for k, m in held.items() if m >= hs.shadow_bars]
            if dead is None and held and not rivals:
                continue  # every live champion of its symbol is newer than shadow_bars: keep shadowing
            del self.challengers[key]
            score = ch.score()
            self._remember(ch.genome, ch.symbol, score, ch.identity)
            if dead is not None and self._rearm(dead, ch, now):  # a dead slot first; refused: a live one may follow
                continue
            best = None
            for s in rivals:
                m = held[s.id]
                champ = sharpe_per_bar_of_equity(self.marks.curve(s.id, m))
                if self.pit.beats(ch, self.marks.curve(s.id, m + 1), s.id, last=m) \
                        and (best is None or champ < best[1]):
                    best = (s, champ)
            if best is None:
                self._emit("challenger", result="not promoted", genome=ch.genome.sha256[:16], score=score)
                with self.journal:
                    self.journal.event("shadow_end", now, None, genome=ch.genome.sha256, score=score, promoted=False)
                continue
            s, champ = best
            self._remember(s.genome, s.symbol, champ, s.identity)
            test = next((t for t in reversed(self.pit.tests) if t["slot"] == s.id
                         and t["genome"] == ch.genome.sha256), {})
            s.lineage = challenger_lineage(ch, now, self.bar_no, "replaced: the challenger's shadow record beat it "
                                           f"(Diebold-Mariano p = {test.get('p_value', float('nan')):.3g})")
            s.previous.append(s.genome)
            s.genome = ch.genome
            s.policy, s.size_multiplier = ch.policy, ch.size_multiplier
            s.genome_since = self.bar_no
            self.counters["swaps"] += 1
            with self.journal:
                self.journal.event("swap", now, s.id, genome=ch.genome.to_dict(), old=s.previous[-1].sha256,
                                   new=ch.genome.sha256, challenger_score=score, champion_score=champ,
                                   source=ch.source, lineage=s.lineage, **champion_extras(ch))
                self.journal.commit()
            self._emit("swap", slot=s.id, old=s.previous[-1].sha256[:16], new=ch.genome.sha256[:16],
                       challenger_score=score, champion_score=champ)
        if self.bar_no % hs.poll_bars == 0:
            def known() -> set[str]:  # built only when the directory is examined
                k = {s.identity for s in self.slots.values()} | {c.identity for c in self.challengers.values()}
                return k | set(self.genome_book)

            accepted, rejected = self.pit.scan(known)
            for path, reason in rejected:
                self.counters["rejected_files"] += 1
                with self.journal:
                    self.journal.event("reject", now, None, file=path, reason=reason)
                self._emit("reject", file=path, reason=reason)
            symbols = {s.symbol for s in self.slots.values() if s.status in ("live", "killed")}
            for g, meta, path in accepted:
                sym = (meta.get("symbol") or "").upper() or None
                targets = [sym] if sym in symbols else (sorted(symbols) if sym is None else [])
                if not targets:
                    continue
                cap = min(s.capital for s in self.slots.values())
                if self.panel.handles(g):  # its regime model (checked at intake) and the venue's feeds
                    try:
                        self.panel.register(g, self.pit.models.get(g.sha256), where=path, symbol=targets[0])
                        self._check_challenger_feeds(g, targets[0], path)
                    except (GenomeError, ConfigError) as exc:
                        self.counters["rejected_files"] += 1
                        with self.journal:
                            self.journal.event("reject", now, None, file=path, reason=str(exc))
                        self._emit("reject", file=path, reason=str(exc))
                        continue
                ch = Challenger(g, meta, targets[0], bar_time, Ledger(cap), path)
                self.challengers[ch.key] = ch
                self.genome_book.setdefault(ch.identity, (g, ch.symbol, None))
                with self.journal:
                    self.journal.event("shadow_start", now, None, genome=g.sha256, file=path, symbol=ch.symbol,
                                       **({"champion": ch.identity} if ch.policy is not None else {}))
                self._emit("challenger", result="shadow", genome=g.sha256[:16], file=path)

    def _check_challenger_feeds(self, g, symbol: str, path: str) -> None:
        from crucible.panel import check_slot_feeds

        markets = {s.symbol: ("perp" if s.perpetual else "spot") for s in self.slots.values()}
        symbols = tuple(getattr(self.venue, "symbols", ()) or ())
        if symbols:
            check_slot_feeds(path, symbol, markets.get(symbol, "spot"), g, symbols, markets)

    def _cwo(self, now: int) -> None:
        cwo = self.cfg.cwo
        slots = self._slot_list
        extra: dict = {}
        alive = []
        weights = []  # the live slots' weights, in slot order
        held, equity = [], []  # the live slots with a mark and their equity, for _move_capital (unchanged until then)
        i = 0
        for s in slots:
            if s.status == "live":
                alive.append(i)
                weights.append(s.weight)
                mark = s.mark
                if mark > 0:
                    held.append(s)
                    led = s.ledger
                    equity.append(led.cash + led.units * mark)  # s.equity() (mark > 0)
            else:
                s.weight = 0.0
            i += 1
        if alive:
            rows = self._cwo_rows
            if rows[0] != alive:  # the live rows change only on kills, re-arms and stops
                rows = self._cwo_rows = (alive, np.array(alive, dtype=np.int64))
            old = np.array(weights)
            mb = self.marks
            lo, hi = mb.span(cwo.lookback_bars + 1)  # cwo_step_nb(mb.window(...), ...) with the returns kept
            new = cwo_step_marks_nb(mb._buf, mb._ret, mb._ret_n, mb._bad, lo, hi, rows[1],
                                    old, cwo.drawdown_penalty,
                                    min(cwo.min_weight, 1.0 / len(alive)), cwo.max_weight, cwo.eta, cwo.max_turnover)
            if self.regime_alloc is not None:  # regime slots: tilt toward the predicted regime (crucible.panel)
                new, extra = self.regime_alloc.apply(self.venue, now - 60_000, [slots[i].id for i in alive], old,
                                                     new, cwo)
            for i, x in zip(alive, new.tolist()):
                slots[i].weight = x
        self.last_cwo_ms = now
        self.counters["reweights"] += 1
        prev = self._journaled_weights
        # moved: as comparing the dict {s.id: s.weight} with the journaled one (same keys, some |change| > WEIGHT_TOL)
        moved = prev is None or prev.keys() != self.slots.keys()
        if not moved:
            for s in slots:
                if abs(s.weight - prev[s.id]) > WEIGHT_TOL:
                    moved = True
                    break
        if moved:
            w = {s.id: s.weight for s in slots}
            with self.journal:
                self.journal.event("reweight", now, None, weights=w, **extra)
            self._journaled_weights = w
        else:  # moves below WEIGHT_TOL are not taken: the weights in force are always the journaled ones
            for s in slots:
                s.weight = prev[s.id]
            w = prev
        self._move_capital(now, held, equity)
        if self._progress_on:
            self._emit("reweight", weights=dict(w))

    def _free_capital(self, s, open_orders: list[dict] | None = None, *, flight: float | None = None,
                      eq: float | None = None) -> float:
        """USDT that may leave slot ``s`` now: what keeps its exposure (the larger of the units held and the units held
        plus those of its orders in flight: a reducing order frees capital only once it has filled) within
        ``max_leverage`` x its equity after the move, and (spot) no more than its cash less what its buys in
        flight will cost, so a transfer never creates leverage or negative cash.  open_orders: the journal's
        open orders when the caller has them already (default: asked from the journal); flight: the slot's units in
        flight when the caller summed them already (:meth:`crucible.journal.Journal.open_qty_by_slot`); eq: its
        equity now when the caller has it."""
        if eq is None:
            eq = s.equity()
        if flight is None:
            if open_orders is None:
                open_orders = self.journal.orders(OPEN_STATUSES)
            flight = sum(o["qty"] for o in open_orders if o["slot"] == s.id)  # decided, unfilled
        units = s.ledger.units
        held = max(abs(units), abs(units + flight))  # a reducing order counts once it has filled
        room = eq - held * s.mark / self.leverage[s.id]
        if not s.perpetual:
            room = min(room, s.ledger.cash - max(0.0, flight) * s.mark * (1.0 + self._buffer))
        return max(0.0, room)

    def _move_capital(self, now: int, live: list | None = None, equity: list[float] | None = None) -> None:
        """Move cash between slot ledgers so each live slot's equity approaches weight x bench equity
        (bench equity = live slots' equity + reserve), scaled down so that sum |transfer| <= max_turnover x
        bench equity; journals one ``transfer`` event {amounts: slot -> USDT in, reserve, pending}.

        Capital leaving a slot is capped at its free capital (:meth:`_free_capital`); the rest is ``pending`` — the
        slot is re-sized at the next bar as if it had already left (:meth:`Runtime._size`) and it moves at a later
        reweight, once the reducing order has filled (at the next bar's open).  Inflows are scaled to what actually
        leaves plus the reserve."""
        if not self.cfg.cwo.move_capital:
            return
        if live is None:  # (the CWO passes them: the live slots with a mark > 0, in slot order, and their equity)
            live, equity = [], []
            for s in self._slot_list:
                mark = s.mark
                if s.status == "live" and mark > 0:
                    live.append(s)
                    led = s.ledger
                    equity.append(led.cash + led.units * mark)  # s.equity() (mark > 0)
        if not live:
            return
        reserve = self.reserve
        bench = sum(equity) + reserve
        if bench <= 0:
            return
        # the amounts as a list in the order of ``live`` (a dict slot -> amount only for the event); out / inn: the sums
        # of the negative / positive amounts in that order, as sum([...]) of them (an int 0 when there is none)
        amounts = []
        pending: dict[str, float] = {}
        flight = None
        out = inn = moved = 0  # moved: sum([abs(a) for a in amounts]) unless the inflows are scaled below
        for s, e in zip(live, equity):
            a = s.weight * bench - e
            if a < 0:
                if flight is None:  # one look at the orders in flight for every slot of this reweight
                    flight = self.journal.open_qty_by_slot()
                # _free_capital(s, flight=..., eq=e), inline (the same operations)
                sid = s.id
                fl = flight.get(sid, 0)
                led = s.ledger
                units = led.units
                mark = s.mark
                held, h2 = abs(units), abs(units + fl)
                if h2 > held:  # max(abs(units), abs(units + fl))
                    held = h2
                room = e - held * mark / self.leverage[sid]
                if not s.perpetual:
                    r2 = led.cash - (fl if fl > 0.0 else 0.0) * mark * (1.0 + self._buffer)  # max(0.0, fl)
                    if r2 < room:  # min(room, r2)
                        room = r2
                if not room > 0.0:  # max(0.0, room)
                    room = 0.0
                if -a > room:
                    pending[sid] = -a - room
                    a = -room
                if a < 0:
                    out += a
            elif a > 0:
                inn += a
            amounts.append(a)
            moved += abs(a)
        out = -out
        avail = out + (0.0 if 0.0 > reserve else reserve)  # out + max(reserve, 0.0)
        if inn > avail:
            amounts = [(a * avail / inn if a > 0 else a) for a in amounts]
            moved = 0
            for a in amounts:
                moved += abs(a)
        if moved < self.cfg.general.min_order_notional:
            if pending == self.pending_out:
                return
            amounts = []
        else:
            cap = self.cfg.cwo.max_turnover * bench
            if moved > cap:
                amounts = [a * cap / moved for a in amounts]
        total = 0
        event_amounts = {}
        for s, a in zip(live, amounts):
            total += a
            event_amounts[s.id] = a
            led = s.ledger
            led.cash += a  # led.transfer(a), inline
            led.transfers += a
            t = s.target
            mark = s.mark
            if t == t and t != 0.0 and mark > 0:  # re-size when the exposure is now off target
                eq = led.cash + led.units * mark  # s.equity() (mark > 0)
                if eq > 0 and abs(led.units * mark - t * eq) > REBALANCE_TOL * eq:
                    s.target = float("nan")
        for sid in pending:
            if self.slots[sid].target != 0.0:
                self.slots[sid].target = float("nan")  # re-size down now: its capital waits for that fill
        self.pending_out = pending
        self.reserve = reserve = reserve - total  # reserve - sum(amounts)
        self.journal.event("transfer", now, None, amounts=event_amounts, reserve=reserve, pending=pending)
        if self._progress_on:
            self._emit("transfer", amounts=event_amounts, reserve=reserve, pending=pending)
