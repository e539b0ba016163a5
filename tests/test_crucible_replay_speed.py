"""The replay speed work of issue 27 part 4 (third pass) changes how things are computed, never what: each shortcut
is checked here against the code it replaces (the journals of whole replays are compared by
``benchmarks/crucible_journal_identity.py``)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
import sqlite3

import numpy as np
import pytest

from crucible.journal import _JSON, OPEN_STATUSES, Journal, _encode_event
from crucible.journal_exec import MARKOUTS, ExecBook
from crucible.slots import REPLAY_DEFAULT_KEY, _b36, _tag, client_order_id
from crucible.venues import replay as replay_mod
from crucible.venues.base import Bar, Fill, OrderState
from crucible.venues.replay import ReplayVenue, _maker
from forge.data.loader import load_sample


def test_event_encoder_writes_the_json_encoder_text():
    r = random.Random(7)
    vals = [0.0, -0.0, 1e-300, 5e-324, 1e300, float("nan"), float("inf"), -float("inf"), 1 / 3, np.float64(2.5),
            np.int64(3), True, False, None, 'é"\\x\n\u2028', (1, 2.0), [None, "a"], 10 ** 30, -7]
    for _ in range(20_000):
        d = {}
        for k in range(r.randint(0, 6)):
            v = r.choice(vals) if r.random() < 0.5 else r.uniform(-1e6, 1e6)
            if r.random() < 0.25:
                v = {f"btc{i}": (r.uniform(-10, 10) if r.random() < 0.9 else r.choice(vals)) for i in range(r.randint(0, 6))}
            d[r.choice(["amounts", "reserve", "pending", "weights", "é", "a b"]) + str(k)] = v
        assert _encode_event(d) == _JSON.encode(d) == json.dumps(d, default=str)
    with pytest.raises((ValueError, RecursionError)):  # a cycle is still refused (not encoded forever)
        d = {}
        d["self"] = d
        _encode_event(d)


def test_order_id_tag_is_the_hmac_of_the_body():
    for seq in range(40):
        cid = client_order_id("cr", "btc1", 1_700_000_000_000 + 60_000 * seq, seq, "ab12cd", REPLAY_DEFAULT_KEY)
        body = cid[: len(cid) - 12]
        d = int.from_bytes(hmac.new(REPLAY_DEFAULT_KEY, body.encode(), hashlib.sha256).digest()[:8], "big")
        assert cid[-12:] == _b36(d, 13)[:12] == _tag(REPLAY_DEFAULT_KEY, body, 12)
    r = random.Random(2)
    for _ in range(300):  # keys shorter and longer than the 64-byte block, any bytes
        key = bytes(r.getrandbits(8) for _ in range(r.randint(16, 150)))
        body = "".join(r.choice("abc-XYZ019é") for _ in range(r.randint(1, 40)))
        d = int.from_bytes(hmac.new(key, body.encode(), hashlib.sha256).digest()[:8], "big")
        assert _tag(key, body, 11) == _b36(d, 13)[:11]


@pytest.mark.parametrize("cls, values", [
    (Bar, ("BTCUSDT", 1_700_000_000_000, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 3, 4.0, 6.0)),
    (Fill, ("RBTCUSDT-1", "O1", "cid", "BTCUSDT", -0.25, 100.5, 0.01, 1_700_000_060_000)),
    (OrderState, ("O1", "cid", "BTCUSDT", 1.0, 0.0, "open", 5, "market", 0.0, "")),
])
def test_frozen_maker_builds_the_same_object(cls, values):
    a, b = _maker(cls)(*values), cls(*values)
    assert type(a) is cls and a == b and hash(a) == hash(b) and repr(a) == repr(b)
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.__setattr__(dataclasses.fields(cls)[0].name, "x")
    assert a != _maker(cls)(*values[:-1], "other" if isinstance(values[-1], str) else values[-1] + 1)


def test_replay_bars_across_row_chunks_equal_the_records(monkeypatch):
    monkeypatch.setattr(replay_mod, "ROW_CHUNK", 7)  # many chunk boundaries
    df = load_sample()[0].head(200)
    v = ReplayVenue({"BTCUSDT": df}, start=50)
    rec = v._rec["BTCUSDT"]
    k = 50
    while (b := v.next_bars()) is not None:
        assert b["BTCUSDT"] == Bar("BTCUSDT", *rec[k].item())
        k += 1
    assert k == 200


def _journal_with_fills(tmp_path):
    j = Journal(tmp_path / "j.sqlite", synchronous="NORMAL")
    book = ExecBook(j)
    r = random.Random(3)
    fills = []
    with j:
        for n in range(40):
            cid = f"c{n}"
            t0 = 60_000 * (n // 2)
            j.add_intent(client_order_id=cid, slot="a", symbol="S" if n % 3 else "T", qty=1.0, target=1.0,
                         bar_time=t0, seq=n % 2, reason="signal", now_ms=t0)
            book.add_order(cid, intent_id=None, kind="market", price=0.0, post_only=False, reduce_only=False,
                           action="signal", decision_price=100.0, placed_bar=t0)
            f = Fill(f"t{n}", f"o{n}", cid, "S" if n % 3 else "T", r.choice([-1, 1]) * r.uniform(0.1, 2), r.uniform(90, 110),
                     0.01, t0 + 60_000)
            j.add_fill(f, "a")
            book.add_fill(f.trade_id, "a", f.symbol, cid, f.qty, f.price, f.fee, t0 + 60_000)
            fills.append((f, t0 + 60_000))
    return j, book, fills


def test_markouts_settle_at_the_first_bar_past_each_horizon(tmp_path):
    j, book, fills = _journal_with_fills(tmp_path)
    closes = {}
    with j:
        for m in range(60):  # symbol S every minute, T every third minute
            t = 60_000 * m
            closes[("S", t)] = 100 + 0.37 * m
            book.markouts("S", t, closes[("S", t)])
            if m % 3 == 0:
                closes[("T", t)] = 100 - 0.21 * m
                book.markouts("T", t, closes[("T", t)])
        assert book.pending == 0
    rows = {r[0]: r[1:] for r in j.db.execute("SELECT trade_id, markout_1, markout_5, markout_15 FROM exec_fills")}
    for f, ref in fills:
        side = 1 if f.qty > 0 else -1
        for k, got in zip(MARKOUTS, rows[f.trade_id]):
            # the reference rule: the close of the first bar of the fill's symbol opening >= ref + k minutes
            t = min(t for (s, t) in closes if s == f.symbol and t >= ref + 60_000 * k)
            assert got == 1e4 * side * (closes[(f.symbol, t)] - f.price) / f.price
    j.close()


def test_markouts_are_written_with_the_commit_and_dropped_on_rollback(tmp_path):
    j, book, fills = _journal_with_fills(tmp_path)
    n_s, n_t = sum(f.symbol == "S" for f, _ in fills), sum(f.symbol == "T" for f, _ in fills)
    ro = sqlite3.connect(tmp_path / "j.sqlite")
    settled = "SELECT COUNT(*) FROM exec_fills e JOIN fills f USING(trade_id) WHERE f.symbol=? AND e.markout_15 IS NOT NULL"
    with j:
        book.markouts("S", 60_000 * 100, 101.0)
        assert ro.execute(settled, ("S",)).fetchone()[0] == 0  # carried to the commit
    assert ro.execute(settled, ("S",)).fetchone()[0] == n_s
    with pytest.raises(RuntimeError), j:
        book.markouts("T", 60_000 * 100, 99.0)
        raise RuntimeError("crash mid-bar")
    assert ro.execute(settled, ("T",)).fetchone()[0] == 0  # rolled back: nothing written
    assert book.pending == 0  # the mirror is not rolled back (as before): a reload rebuilds it from the file
    book.reload()
    assert book.pending == 3 * n_t
    with j:
        book.markouts("T", 60_000 * 100, 99.0)
    assert ro.execute(settled, ("T",)).fetchone()[0] == n_t and book.pending == 0
    ro.close()
    j.close()


def test_open_qty_by_slot_is_the_sum_over_open_orders(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    r = random.Random(5)
    with j:
        for n in range(60):
            j.add_intent(client_order_id=f"c{n}", slot=f"s{n % 4}", symbol="S", qty=r.uniform(-3, 3), target=0.5,
                         bar_time=60_000 * n, seq=0, reason="signal", now_ms=60_000 * n)
            if n % 3 == 0:
                j.set_order_status(f"c{n}", "filled", 60_000 * n)
            elif n % 3 == 1:
                j.set_order_status(f"c{n}", "acked", 60_000 * n, venue_order_id=f"o{n}")
        got = j.open_qty_by_slot()
        orders = j.orders(OPEN_STATUSES)
        for sid in ("s0", "s1", "s2", "s3", "s9"):
            want = sum(o["qty"] for o in orders if o["slot"] == sid)
            assert got.get(sid, 0) == want and type(got.get(sid, 0)) is type(want)
    j.close()


def test_meta_at_commit_takes_a_callable(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    calls = []
    with j:
        j.set_meta_at_commit("k", lambda: calls.append(1) or {"bar": 1})
        j.set_meta_at_commit("k", lambda: calls.append(2) or {"bar": 2})  # replaces the first: only it is called
    assert j.get_meta("k") == {"bar": 2} and calls == [2]
    j.set_meta_at_commit("k", lambda: [3])  # outside a transaction: written now
    assert j.get_meta("k") == [3]
    j.close()


def test_order_exec_rows_are_carried_to_the_commit(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    book = ExecBook(j)
    ro = sqlite3.connect(tmp_path / "j.sqlite")
    count = "SELECT COUNT(*) FROM order_exec"
    kw = {"intent_id": None, "kind": "market", "price": 0.0, "post_only": False, "reduce_only": False,
          "action": "signal", "decision_price": 100.0, "placed_bar": 0}
    with pytest.raises(RuntimeError), j:
        book.add_order("c0", **kw)
        raise RuntimeError("crash mid-bar")
    assert ro.execute(count).fetchone()[0] == 0
    with j:
        book.add_order("c1", **kw)
        book.add_order("c1", **{**kw, "action": "again"})  # INSERT OR IGNORE: the first row stays
        book.add_order("c2", **kw)
        assert ro.execute(count).fetchone()[0] == 0
        book.flush()  # a read of the table inside the transaction flushes first
        assert [r[0] for r in j.db.execute("SELECT client_order_id FROM order_exec ORDER BY rowid")] == ["c1", "c2"]
    assert [r[:2] for r in ro.execute("SELECT client_order_id, action FROM order_exec ORDER BY rowid")] == [
        ("c1", "signal"), ("c2", "signal")]
    ro.close()
    j.close()


# ---------------------------------------------------------------------------------------------- fourth pass


def test_cwo_row_scores_are_the_per_row_scores_bit_for_bit():
    """``allocator._scores_rows_nb`` (every row's sums advanced together, each return divided once) gives the floats of
    ``scores_nb`` on the rows, including the edge cases (fewer than 3 marks, a mark <= 0, a flat curve)."""
    from crucible.allocator import _scores_rows_nb, scores_nb

    rng = np.random.default_rng(5)
    for _ in range(1500):
        ns, m = int(rng.integers(1, 8)), int(rng.choice([0, 1, 2, 3, 4, 10, 241]))
        buf = np.cumsum(rng.normal(0, rng.choice([0.1, 1, 10, 60]), (ns, 2 * m + 5)), axis=1) + rng.choice([0.0, 50, 200])
        if rng.random() < 0.2:
            buf[rng.integers(ns), rng.integers(buf.shape[1])] = 0.0
        if rng.random() < 0.2:
            buf[rng.integers(ns), :] = 200.0
        lo = int(rng.integers(0, m + 5))
        w = buf[:, lo: lo + m]  # a strided view, as MarkBook.window
        rows = np.array(sorted(rng.choice(ns, int(rng.integers(1, ns + 1)), replace=False)), dtype=np.int64)
        try:
            want = scores_nb(np.ascontiguousarray(w[rows]), 1.0)
        except ZeroDivisionError:
            with pytest.raises(ZeroDivisionError):
                _scores_rows_nb(w, rows, 1.0)
            continue
        got = _scores_rows_nb(w, rows, 1.0)
        assert np.array_equal(got.view(np.int64), want.view(np.int64))


def test_panel_split_is_the_handles_filter(monkeypatch):
    from types import SimpleNamespace

    from crucible import panel as panel_mod

    monkeypatch.setattr(panel_mod, "is_panel_genome", lambda g: g.sha256.startswith("p"))
    p = panel_mod.PanelSignals(100)
    gs = {f"k{i}": SimpleNamespace(sha256=sha) for i, sha in enumerate(["a1", "p2", "b3", "p4", "p2"])}
    for _ in range(2):  # computed, then memoised
        assert p.split(gs) == {k: g for k, g in gs.items() if p.handles(g)} == {"k1": gs["k1"], "k3": gs["k3"],
                                                                                "k4": gs["k4"]}
    assert p.split({}) == {}


def test_exec_fill_rows_are_carried_with_their_markouts_and_equal_the_direct_writes(tmp_path):
    """exec_fills inserts carried to the commit, markouts settled before that written in the row: the table is the one
    the immediate INSERT + later UPDATEs wrote (same rows, same rowids), at every commit."""
    def run(path, carried):
        j = Journal(path, synchronous="NORMAL")
        book = (ExecBook if carried else _Direct)(j)
        r = random.Random(11)
        for n in range(30):
            with j:
                cid, t0 = f"c{n}", 60_000 * n
                j.add_intent(client_order_id=cid, slot="a", symbol="S", qty=1.0, target=1.0, bar_time=t0, seq=0,
                             reason="signal", now_ms=t0)
                book.add_order(cid, intent_id=None, kind="market", price=0.0, post_only=False, reduce_only=False,
                               action="signal", decision_price=100.0, placed_bar=t0)
                f = Fill(f"t{n}", f"o{n}", cid, "S", r.choice([-1, 1]) * r.uniform(0.1, 2), r.uniform(90, 110), 0.01,
                         t0 + 60_000)
                j.add_fill(f, "a")
                book.add_fill(f.trade_id, "a", "S", cid, f.qty, f.price, f.fee, t0 + 60_000)
                assert bool(book._fill_rows) == carried
                book.markouts("S", t0 + 60_000, 100 + 0.3 * n)
                if n % 7 == 3:
                    j.commit()  # a commit point mid-bar
            if n % 4 == 0:
                with j:
                    pass
        rows = j.db.execute("SELECT rowid, * FROM exec_fills ORDER BY rowid").fetchall()
        j.close()
        return [tuple(x) for x in rows]

    class _Direct(ExecBook):  # the pre-carry writes: an INSERT at once, markouts as UPDATEs at the commit
        def add_fill(self, trade_id, slot, symbol, cid, qty, price, fee, ref_bar):
            o = self.orders.get(cid)
            side = 1 if qty > 0 else -1
            cur = self.db.execute("INSERT OR IGNORE INTO exec_fills(trade_id, slot, client_order_id, side, qty, price,"
                                  " fee, maker, decision_price, ref_bar) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                  (trade_id, slot, cid, side, abs(qty), price, fee, int(o["kind"] == "limit"),
                                   o["decision_price"], int(ref_bar)))
            if cur.rowcount == 1:
                self._expect(trade_id, symbol, side, price, ref_bar, MARKOUTS)

    got, want = run(tmp_path / "a.sqlite", True), run(tmp_path / "b.sqlite", False)
    assert got == want and len(got) == 30 and sum(x[11] is not None for x in got) > 20


def test_carried_exec_fill_rows_are_dropped_on_rollback_and_a_duplicate_keeps_the_first(tmp_path):
    j = Journal(tmp_path / "j.sqlite", synchronous="NORMAL")
    book = ExecBook(j)
    book.add_order("c", intent_id=None, kind="market", price=0.0, post_only=False, reduce_only=False, action="signal",
                   decision_price=100.0, placed_bar=0)
    with pytest.raises(RuntimeError), j:
        book.add_fill("t0", "a", "S", "c", 1.0, 100.0, 0.1, 0)
        raise RuntimeError("crash mid-bar")
    assert j.db.execute("SELECT COUNT(*) FROM exec_fills").fetchone()[0] == 0
    with j:
        book.add_fill("t1", "a", "S", "c", 1.0, 100.0, 0.1, 0)
        book.add_fill("t1", "a", "S", "c", 2.0, 101.0, 0.1, 0)  # INSERT OR IGNORE: the first row stays
    assert [tuple(x) for x in j.db.execute("SELECT trade_id, qty FROM exec_fills")] == [("t1", 1.0)]
    assert book.pending == 2 * len(MARKOUTS)  # t0's (rolled back, still in the mirror, as before) and t1's, once
    with j:  # a carried row whose trade id the file already holds: ignored, the markouts reloaded from the file
        book.add_fill("t1", "a", "S", "c", 3.0, 102.0, 0.1, 0)
    assert [tuple(x) for x in j.db.execute("SELECT trade_id, qty FROM exec_fills")] == [("t1", 1.0)]
    assert book.pending == 0  # rebuilt from the file (exec_fills joined with fills: this test books no fills rows)
    j.close()


def test_replay_fetch_fills_since_is_the_bisection():
    import bisect

    v = ReplayVenue({"BTCUSDT": load_sample()[0].head(60)}, start=10)
    r = random.Random(4)
    t, fills = 0, []
    for n in range(200):
        t += r.choice([0, 0, 60_000, 120_000])  # several fills per bar, gaps
        fills.append(_maker(Fill)(f"R{n}", f"O{n}", f"c{n}", "BTCUSDT", 1.0, 100.0, 0.1, t))
    for m in (0, 1, 3, 9, 40, 200):
        v._fills["BTCUSDT"] = fills[:m]
        for since in [-1, 0, *range(0, t + 180_000, 30_000)]:
            want = fills[:m][bisect.bisect_left(fills[:m], since, key=lambda f: f.time_ms):]
            assert v.fetch_fills("BTCUSDT", since) == want
    assert v.fetch_fills("ETHUSDT", 0) == []


# ---------------------------------------------------------------------------------------------- fifth pass


def test_cwo_step_on_the_markbook_is_the_window_step_bit_for_bit():
    """``allocator.cwo_step_marks_nb`` (the returns of the MarkBook and its last mark <= 0 per row kept across calls,
    three rows' sums and peaks advancing together) gives the floats of ``cwo_step_nb`` on ``MarkBook.window``: across
    slides, resets, calls skipped, marks <= 0 and NaN, short windows and changing live rows."""
    from crucible.allocator import cwo_step_marks_nb, cwo_step_nb
    from crucible.slots import MarkBook

    rng = np.random.default_rng(7)
    steps = 0
    for _ in range(25):
        ns, keep = int(rng.integers(1, 8)), int(rng.choice([3, 5, 20, 241]))
        last = int(rng.choice([1, 2, 3, 4, 241, keep]))
        mb = MarkBook([f"s{i}" for i in range(ns)], keep)
        eq, vol = rng.choice([0.0, 50.0, 200.0]) + np.zeros(ns), rng.choice([0.1, 1, 10, 60])
        bad_rate = rng.choice([1.0, 5.0])  # x the 1 % / 0.5 % / 0.5 % rates of zero, NaN and negative marks
        for _step in range(int(rng.integers(5, 700))):
            eq = eq + rng.normal(0, vol, ns)
            x, u = eq.copy(), rng.random() / bad_rate
            if u < 0.01:
                x[rng.integers(ns)] = 0.0
            elif u < 0.015:
                x[rng.integers(ns)] = np.nan
            elif u < 0.02:
                x[rng.integers(ns)] = -5.0
            mb.push(x.tolist())
            if rng.random() < 0.003:
                mb.reset(f"s{rng.integers(ns)}", 200.0)
            if rng.random() < 0.3:
                continue  # no reweight at this bar
            k = int(rng.integers(1, ns + 1))
            rows = np.array(sorted(rng.choice(ns, k, replace=False)), dtype=np.int64)
            old = rng.dirichlet(np.ones(k)) if rng.random() < 0.9 else np.zeros(k)
            args = (1.0, min(0.02, 1.0 / k), 0.5, 0.5, 0.2)
            want = cwo_step_nb(mb.window(last), rows, old, *args)
            lo, hi = mb.span(last)
            assert mb._buf[:, lo:hi].base is mb.window(last).base and (lo, hi) == (max(0, mb.n - last), mb.n)
            got = cwo_step_marks_nb(mb._buf, mb._ret, mb._ret_n, mb._bad, lo, hi, rows, old, *args)
            assert got.tobytes() == want.tobytes()
            steps += 1
    assert steps > 3000
