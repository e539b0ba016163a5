"""``crucible record`` against a loopback fake of Binance USDⓈ-M and Bybit v5 public feeds (tests/fake_l2.py).

No test needs the internet: ccxt's WebSocket base URL and REST origin point at the fake.  Each recorded book
row is checked against the state the fake exchange had at that row's update id, each trade against what was
served; disconnects, lost messages (sequence gaps), a UTC-midnight rotation (injected clock) and a SIGKILL of
a recorder subprocess are injected.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_l2 import FakeL2  # noqa: E402

from crucible.record import Recorder, book_subscription_depth, parse_symbols  # noqa: E402
from forge.core.errors import ConfigError, DataError  # noqa: E402
from forge.data.l2 import (compact_day, compact_hour, day_files, load_gaps, load_l2, load_meta,  # noqa: E402
                           load_trades, stream_dir, write_part)
from forge.features.l2lens import lens_states, load_lens_bars  # noqa: E402

SYM = "BTCUSDT"
DEPTH = 20
VENUES = ("binanceusdm", "bybit")
ROOT = Path(__file__).resolve().parents[1]


def _initial(fake: FakeL2, n: int = 40) -> None:
    fake.set_book(SYM, [(round(100.0 - 0.1 * i, 1), 1.0 + i) for i in range(n)],
                  [(round(100.1 + 0.1 * i, 1), 2.0 + i) for i in range(n)])


def _wait(pred, timeout: float = 60.0) -> None:  # generous: the recorder thread shares 2 cores with the suite
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@contextmanager
def _running(rec: Recorder, seconds: float = 120.0):
    out: dict = {}

    def main() -> None:
        try:
            out["summary"] = asyncio.run(rec.run(seconds))
        except BaseException as exc:  # surfaced by the test
            out["error"] = exc

    th = threading.Thread(target=main, daemon=True)
    th.start()
    try:
        yield out
    finally:
        _wait(lambda: getattr(rec, "_loop", None) is not None or not th.is_alive(), 10)
        rec.stop_threadsafe()
        th.join(30)
    if "error" in out:
        raise out["error"]


def _recorder(fake: FakeL2, dest: Path, **kw) -> Recorder:
    return Recorder(fake.venue, [SYM], DEPTH, str(dest), ws_url=fake.ws_url, rest_url=fake.rest_url,
                    flush_seconds=kw.pop("flush_seconds", 0.2), backoff=(0.05, 0.5), **kw)


def _synced(fake: FakeL2, n: int = 1, trades: int | None = None):
    def ok() -> bool:
        subs = fake.sub_count[(SYM, "depth")] >= n and fake.sub_count[(SYM, "trade")] >= (n if trades is None else trades)
        return subs and sum(1 for s, _ in fake.snapshots if s == SYM) >= n
    return ok


def _check_rows_equal_states(fake: FakeL2, book) -> None:
    """Every recorded row is the exchange's book at that row's update id (top DEPTH, NaN-padded)."""
    assert len(book) > 0
    for i in range(len(book)):
        bids, asks = fake.state(SYM, int(book.nonce[i]), DEPTH)
        for (px, sz), lv in ((( book.bid_px[i], book.bid_sz[i]), bids), ((book.ask_px[i], book.ask_sz[i]), asks)):
            want_px = np.full(DEPTH, np.nan)
            want_sz = np.full(DEPTH, np.nan)
            want_px[:len(lv)] = [p for p, _ in lv]
            want_sz[:len(lv)] = [q for _, q in lv]
            np.testing.assert_array_equal(px, want_px)
            np.testing.assert_array_equal(sz, want_sz)


def _push(fake: FakeL2, k: int, start: int = 0) -> tuple[list[int], list[str]]:
    """k book updates (the best ask is taken out each time, so levels beyond the 20th move into the top 20)
    and k trades; returns (update ids, trade ids)."""
    nonces, tids = [], []
    for j in range(start, start + k):
        best_ask = min(fake.books[SYM]["asks"])
        nonces.append(fake.update(SYM, bids=[(100.0, 5.0 + j)], asks=[(best_ask, 0.0)]))
        tids.append(fake.trade(SYM, best_ask, 0.25 + 0.001 * j, "buy" if j % 2 else "sell"))
    return nonces, tids


def _served_trades(fake: FakeL2) -> list[tuple[str, int, float, float, int]]:
    out = []
    for m in fake.trades[SYM]:
        if fake.venue == "binanceusdm":
            out.append((str(m["t"]), m["T"], float(m["p"]), float(m["q"]), -1 if m["m"] else 1))
        else:
            d = m["data"][0]
            out.append((d["i"], d["T"], float(d["p"]), float(d["v"]), 1 if d["S"] == "Buy" else -1))
    return out


# ---------------------------------------------------------------------------------------------- recording


@pytest.mark.parametrize("venue", VENUES)
def test_normal_recording_rows_equal_what_was_served(tmp_path, venue):
    with FakeL2(venue, (SYM,)) as fake:
        _initial(fake)
        rec = _recorder(fake, tmp_path)
        with _running(rec):
            _wait(_synced(fake))
            _wait(lambda: rec.stats["l2_rows"] >= 1)
            nonces, tids = _push(fake, 25)
            _wait(lambda: rec.stats["l2_rows"] >= 26 and rec.stats["trade_rows"] >= 25)
        book = load_l2(tmp_path, venue, SYM)
        _check_rows_equal_states(fake, book)
        snap = fake.snapshots[0][1]
        assert list(book.nonce) == [snap] + nonces  # the snapshot state, then every update, in order
        assert book.bid_px.shape == (26, DEPTH) and book.bid_px.dtype == np.float64
        assert np.all(np.diff(book.recv_ms) >= 0)
        # 25 asks taken out of 40: the last rows' top 20 reach the 40th level of the initial snapshot
        assert np.isnan(book.ask_px[-1, 15:]).all() and not np.isnan(book.ask_px[-1, :15]).any()
        tr = load_trades(tmp_path, venue, SYM)
        got = list(zip(tr["id"], tr["ts_ms"], tr["price"], tr["amount"], tr["side"]))
        assert got == _served_trades(fake) and tr["id"].to_list() == tids
        gaps = load_gaps(tmp_path, venue, SYM)
        assert sorted(gaps["stream"].to_list()) == ["l2", "trades"] and set(gaps["reason"]) == {"start"}
        assert gaps.filter(pl.col("stream") == "l2")["end_nonce"].to_list() == [snap]
        assert rec.stats["dup_trades"] == 0 and rec.stats["reconnects"] == 0
        # the market as recorded (tick from ccxt's market), and the Liquidity Lens bars on the recording
        meta = load_meta(tmp_path, venue, SYM)
        assert meta["tick"] == 0.1 and meta["depth"] == DEPTH and meta["ccxt_symbol"] == "BTC/USDT:USDT"
        t0 = int(book.ts_ms[0]) // 60_000 * 60_000
        bars = load_lens_bars(tmp_path, venue, SYM, t0, int(book.ts_ms[-1]) + 60_000, k=5)
        e = lens_states(book, k=5)["ofi_e"]
        assert bars["n_states"].sum() == len(book) and bars["ofi_n"].sum() == len(book) - 1
        assert np.nansum(bars["ofi"].to_numpy()) == pytest.approx(np.nansum(e))
        assert bars["gap"][0]  # the recording's first minute: the start gap marker


@pytest.mark.parametrize("venue", VENUES)
def test_disconnect_reconnects_with_gap_marker_and_no_duplicate_trades(tmp_path, venue):
    with FakeL2(venue, (SYM,)) as fake:
        _initial(fake)
        fake.replay_trades = 3  # a new trade subscription re-sends the last 3 trades
        rec = _recorder(fake, tmp_path)
        with _running(rec):
            _wait(_synced(fake))
            n1, t1 = _push(fake, 6)
            _wait(lambda: rec.stats["trade_rows"] >= 6 and rec.stats["l2_rows"] >= 7)
            fake.hold_subscriptions = True  # the recorder cannot re-subscribe yet ...
            fake.disconnect()
            missed = fake.update(SYM, asks=[(min(fake.books[SYM]["asks"]), 0.0)])  # ... so it misses this update
            fake.hold_subscriptions = False
            _wait(_synced(fake, 2))
            _wait(lambda: rec.stats["dup_trades"] >= 3)
            _wait(lambda: rec.stats["l2_rows"] >= 8)
            n2, t2 = _push(fake, 6, start=6)
            _wait(lambda: rec.stats["trade_rows"] >= 12 and rec.stats["l2_rows"] >= 14)
        book = load_l2(tmp_path, venue, SYM)
        _check_rows_equal_states(fake, book)
        assert len(set(zip(book.ts_ms, book.nonce))) == len(book)
        assert set(n1 + n2) <= set(book.nonce.tolist())
        tr = load_trades(tmp_path, venue, SYM)
        assert tr["id"].to_list() == t1 + t2  # replayed trades dropped, nothing lost
        assert rec.stats["dup_trades"] == 3 and rec.stats["reconnects"] >= 2
        gaps = load_gaps(tmp_path, venue, SYM).filter(pl.col("reason") == "reconnect")
        assert sorted(gaps["stream"].to_list()) == ["l2", "trades"]
        g = gaps.filter(pl.col("stream") == "l2").row(0, named=True)
        assert g["start_nonce"] == n1[-1]  # from the last state before the drop ...
        second_snap = [u for s, u in fake.snapshots if s == SYM][1]
        assert g["end_nonce"] == second_snap == missed  # ... to the re-synchronised snapshot, which has the missed change
        i = int(np.flatnonzero(book.nonce == second_snap)[0])
        # one "after a gap" state per l2 gap marker: the start, this reconnect, and any sequence resync that a
        # loaded machine adds (an update overtaking the REST snapshot is a real gap, marked as such)
        l2_gaps = load_gaps(tmp_path, venue, SYM).filter(pl.col("stream") == "l2")
        assert book.after_gap[i] and book.after_gap.sum() == l2_gaps.height >= 2
        gt = gaps.filter(pl.col("stream") == "trades").row(0, named=True)
        # the trade gap runs from the last trade before the drop to the new subscription's acknowledgement
        assert gt["start_recv_ms"] == int(tr.filter(pl.col("id") == t1[-1])["recv_ms"][0])
        assert gt["start_recv_ms"] < gt["end_recv_ms"] <= int(tr.filter(pl.col("id") == t2[0])["recv_ms"][0])
        assert gt["end_ts_ms"] is None


@pytest.mark.parametrize("venue", VENUES)
def test_sequence_gap_writes_marker_and_resyncs(tmp_path, venue):
    with FakeL2(venue, (SYM,)) as fake:
        _initial(fake)
        rec = _recorder(fake, tmp_path)
        with _running(rec):
            _wait(_synced(fake))
            n1, _ = _push(fake, 4)
            _wait(lambda: rec.stats["l2_rows"] >= 5)
            lost = fake.update(SYM, bids=[(99.8, 7.7)], send=False)  # never reaches the client
            after = fake.update(SYM, bids=[(99.9, 2.5)])  # u jumps: the chain is broken
            _wait(_synced(fake, 2, trades=1))  # the book re-subscribed (fresh snapshot); trades untouched
            _wait(lambda: rec.stats["l2_rows"] >= 6)
            n2, _ = _push(fake, 3, start=4)
            _wait(lambda: rec.stats["l2_rows"] >= 9)
        book = load_l2(tmp_path, venue, SYM)
        _check_rows_equal_states(fake, book)
        # no state was built on the hole (the row at `after` is the re-synchronised book, 99.8 included)
        assert lost not in book.nonce.tolist() and after in book.nonce.tolist()
        assert set(n1 + n2) <= set(book.nonce.tolist())
        assert rec.stats["sequence_gaps"] == 1
        g = load_gaps(tmp_path, venue, SYM).filter(pl.col("reason") == "sequence").row(0, named=True)
        assert g["stream"] == "l2" and g["start_nonce"] == n1[-1]
        assert g["end_nonce"] == [u for s, u in fake.snapshots if s == SYM][1] == after


def test_bybit_service_restart_snapshot_is_a_sequence_gap_without_reconnect(tmp_path):
    with FakeL2("bybit", (SYM,)) as fake:
        _initial(fake)
        rec = _recorder(fake, tmp_path)
        with _running(rec):
            _wait(_synced(fake))
            n1, _ = _push(fake, 3)
            _wait(lambda: rec.stats["l2_rows"] >= 4)
            fake.books[SYM]["bids"][99.85] = 4.0  # changed while Bybit's service restarts
            one = fake.bybit_restart(SYM)
            n2, _ = _push(fake, 3, start=3)  # u = 2, 3, 4 continue from the restart snapshot
            _wait(lambda: rec.stats["l2_rows"] >= 8)
        book = load_l2(tmp_path, "bybit", SYM)
        _check_rows_equal_states(fake, book)
        assert book.nonce.tolist()[-4:] == [one] + n2 == [1, 2, 3, 4]
        g = load_gaps(tmp_path, "bybit", SYM).filter(pl.col("reason") == "sequence").row(0, named=True)
        assert g["start_nonce"] == n1[-1] and g["end_nonce"] == 1
        assert rec.stats["reconnects"] == 0 and rec.stats["sequence_gaps"] == 1


def test_rotation_at_utc_midnight_with_an_injected_clock(tmp_path):
    now = int(time.time() * 1000)
    midnight = (now // 86_400_000 + 1) * 86_400_000
    shift = {"ms": 0}
    clock = lambda: int(time.time() * 1000) + shift["ms"]  # noqa: E731
    day1 = datetime.fromtimestamp((midnight - 1) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
    day2 = (datetime.fromtimestamp(midnight / 1000, tz=timezone.utc)).strftime("%Y-%m-%d")
    with FakeL2("binanceusdm", (SYM,)) as fake:
        _initial(fake)
        rec = _recorder(fake, tmp_path, clock=clock)
        with _running(rec):
            _wait(_synced(fake))
            _wait(lambda: rec.stats["l2_rows"] >= 1)
            shift["ms"] = midnight - int(time.time() * 1000) - 1500  # the receive clock jumps to 1.5 s before midnight
            _push(fake, 5)
            _wait(lambda: rec.stats["trade_rows"] >= 5)
            assert clock() < midnight
            _wait(lambda: clock() > midnight + 400)  # past midnight and past a flush
            _push(fake, 5, start=5)
            _wait(lambda: rec.stats["trade_rows"] >= 10)
            _wait(lambda: rec.stats["compacted_days"] >= 3)
        for stream in ("l2", "trades"):
            sd = stream_dir(tmp_path, "binanceusdm", SYM, stream)
            assert (sd / f"{day1}.parquet").is_file() and not (sd / day1).exists()  # finished day compacted
            assert list((sd / day2).glob("part-*.parquet"))  # the new day still in parts
            files = day_files(tmp_path, "binanceusdm", SYM, stream)
            assert list(files) == [day1, day2]
            d1 = pl.read_parquet(sd / f"{day1}.parquet")
            assert d1["recv_ms"].max() < midnight
            d2 = pl.concat([pl.read_parquet(p) for p in files[day2]])
            assert d2["recv_ms"].min() >= midnight
        tr = load_trades(tmp_path, "binanceusdm", SYM)
        assert tr.height == 10 and tr["id"].n_unique() == 10
        assert (tr["recv_ms"] < midnight).sum() == 5
        assert rec.stats["compacted_days"] == 3  # l2, trades, gaps of day 1


def _spawn(fake: FakeL2, dest: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    exe = Path(sys.executable).parent / "crucible"
    return subprocess.Popen([str(exe), "record", "--venue", fake.venue, "--symbols", SYM, "--depth", str(DEPTH),
                             "--dest", str(dest), "--flush-seconds", "0.2", "--max-seconds", "120",
                             "--ws-url", fake.ws_url, "--rest-url", fake.rest_url],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_leaves_readable_files_and_a_restart_adds_no_duplicates(tmp_path):
    with FakeL2("binanceusdm", (SYM,)) as fake:
        _initial(fake)
        fake.replay_trades = 5
        proc = _spawn(fake, tmp_path)
        try:
            _wait(_synced(fake), 90)
            _wait(lambda: fake.sub_count[(SYM, "trade")] >= 1, 30)
            n1, t1 = _push(fake, 8)

            def on_disk() -> bool:
                try:
                    return set(t1) <= set(load_trades(tmp_path, "binanceusdm", SYM)["id"].to_list())
                except DataError:  # a part renamed while it is listed
                    return False
            _wait(on_disk, 30)  # flushed within the interval (0.2 s) of arrival
            _push(fake, 2, start=8)  # may or may not be flushed before the kill
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        # every part file the killed recorder left is whole; the rows flushed > 1 s before the kill are there
        parts = list(tmp_path.rglob("*.parquet"))
        assert parts and all(pl.read_parquet(p).height > 0 for p in parts)
        tr = load_trades(tmp_path, "binanceusdm", SYM)
        assert set(t1) <= set(tr["id"].to_list())
        book = load_l2(tmp_path, "binanceusdm", SYM)
        assert set(n1) <= set(book.nonce.tolist())
        last_recv = int(book.recv_ms.max())
        proc = _spawn(fake, tmp_path)  # restart: replayed trades (5) must not come back twice
        try:
            _wait(_synced(fake, 2), 90)
            _wait(lambda: fake.sub_count[(SYM, "trade")] >= 2, 30)
            time.sleep(0.5)
            n3, t3 = _push(fake, 4, start=10)
            _wait(lambda: set(t3) <= set(load_trades(tmp_path, "binanceusdm", SYM)["id"].to_list()), 30)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "dropped duplicates: 5 trades" in out or "dropped duplicates: 3 trades" in out
        tr = load_trades(tmp_path, "binanceusdm", SYM)
        ids = tr["id"].to_list()
        assert len(ids) == len(set(ids)) and ids[-4:] == t3
        assert set(ids) == {t for t, *_ in _served_trades(fake)}  # the replay even recovers rows the kill lost
        book = load_l2(tmp_path, "binanceusdm", SYM)
        assert len(set(zip(book.ts_ms.tolist(), book.nonce.tolist()))) == len(book)
        assert set(n3) <= set(book.nonce.tolist())
        _check_rows_equal_states(fake, book)
        g = load_gaps(tmp_path, "binanceusdm", SYM)
        restart = g.filter((pl.col("stream") == "l2") & pl.col("start_recv_ms").is_not_null())
        assert restart.height == 1 and restart["reason"][0] == "start"
        assert restart["start_recv_ms"][0] == last_recv  # the restart's gap starts at the killed run's last row


# ---------------------------------------------------------------------------------------------- files, input


def _trades_df(ids, recv0):
    return pl.DataFrame({"id": [str(i) for i in ids], "ts_ms": [recv0 + i for i in ids], "recv_ms": [recv0 + i for i in ids],
                         "price": [1.0] * len(ids), "amount": [1.0] * len(ids), "side": [1] * len(ids)},
                        schema={"id": pl.String, "ts_ms": pl.Int64, "recv_ms": pl.Int64, "price": pl.Float64,
                                "amount": pl.Float64, "side": pl.Int8})


def test_reader_prefers_a_finished_day_file_over_leftover_parts_and_ignores_tmp(tmp_path):
    t0 = 1_717_200_000_000  # 2024-06-01
    write_part(tmp_path, "bybit", SYM, "trades", "2024-06-01", _trades_df([1, 2], t0), 1)
    write_part(tmp_path, "bybit", SYM, "trades", "2024-06-01", _trades_df([3], t0), 2)
    sd = stream_dir(tmp_path, "bybit", SYM, "trades")
    (sd / "2024-06-01" / ".part-x.parquet.tmp").write_bytes(b"half a file")
    assert load_trades(tmp_path, "bybit", SYM)["id"].to_list() == ["1", "2", "3"]
    # a kill after the day file was written but before the parts were deleted: the reader reads the day file once
    pl.concat([_trades_df([1, 2], t0), _trades_df([3], t0)]).write_parquet(sd / "2024-06-01.parquet")
    assert load_trades(tmp_path, "bybit", SYM)["id"].to_list() == ["1", "2", "3"]
    assert compact_day(tmp_path, "bybit", SYM, "trades", "2024-06-01") == sd / "2024-06-01.parquet"
    assert not (sd / "2024-06-01").exists()
    assert load_trades(tmp_path, "bybit", SYM, t0 + 2, t0 + 3)["id"].to_list() == ["2"]
    # hours: parts of 00:xx and 01:xx; the finished hour 00 is compacted, a kill leaves its parts behind too
    h1 = t0 + 3_600_000
    write_part(tmp_path, "bybit", SYM, "trades", "2024-06-02", _trades_df([10, 11], t0 + 86_400_000), 3)
    write_part(tmp_path, "bybit", SYM, "trades", "2024-06-02", _trades_df([12], t0 + 86_400_000 + 3_600_000), 4)
    p0 = write_part(tmp_path, "bybit", SYM, "trades", "2024-06-02", _trades_df([13], t0 + 86_400_000), 5)
    hf = compact_hour(tmp_path, "bybit", SYM, "trades", "2024-06-02", 0)
    assert hf.name == "hour-00.parquet" and not p0.exists() and h1
    p0.parent.joinpath("x").mkdir()  # an unrelated entry: the day directory is still removed only when empty
    p0.parent.joinpath("x").rmdir()
    write_part(tmp_path, "bybit", SYM, "trades", "2024-06-02", _trades_df([10], t0 + 86_400_000), 6)  # a leftover copy
    days = day_files(tmp_path, "bybit", SYM, "trades")
    assert [p.name for p in days["2024-06-02"]][0] == "hour-00.parquet" and len(days["2024-06-02"]) == 2
    assert load_trades(tmp_path, "bybit", SYM)["id"].to_list() == ["1", "2", "3", "10", "11", "13", "12"]
    compact_day(tmp_path, "bybit", SYM, "trades", "2024-06-02")
    assert not (sd / "2024-06-02").exists()
    assert load_trades(tmp_path, "bybit", SYM)["id"].to_list() == ["1", "2", "3", "10", "11", "13", "12"]
    (sd / "2024-06-01.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="unreadable Parquet"):
        load_trades(tmp_path, "bybit", SYM)
    with pytest.raises(DataError, match="no recorded L2"):
        load_l2(tmp_path, "bybit", "ETHUSDT")


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    with pytest.raises(ConfigError, match="not an exchange symbol"):
        parse_symbols("BTC/USDT")
    assert parse_symbols(" btcusdt,ETHUSDT,BTCUSDT ") == ["BTCUSDT", "ETHUSDT"]
    assert book_subscription_depth("bybit", 20) == 50 and book_subscription_depth("bybit", 200) == 200
    assert book_subscription_depth("binanceusdm", 20) == 1000
    with pytest.raises(ConfigError, match="depth"):
        Recorder("bybit", [SYM], 0, str(tmp_path))
    from forge.data.l2 import write_meta

    write_meta(tmp_path, "bybit", SYM, {"depth": 50})
    with pytest.raises(ConfigError, match="holds a depth-50 recording"):
        asyncio.run(Recorder("bybit", [SYM], 20, str(tmp_path)).run(1))
    exe = Path(sys.executable).parent / "crucible"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args, msg in ((["--venue", "kraken", "--symbols", SYM], "--venue 'kraken'"),
                      (["--venue", "bybit", "--symbols", "BTC-USDT"], "not an exchange symbol"),
                      (["--venue", "bybit", "--symbols", SYM, "--depth", "5000"], "--depth 5000")):
        r = subprocess.run([str(exe), "record", *args, "--dest", str(tmp_path)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with FakeL2("binanceusdm", (SYM,)) as fake:  # a symbol the exchange does not list
        r = subprocess.run([str(exe), "record", "--venue", "binanceusdm", "--symbols", "NOPEUSDT", "--dest", str(tmp_path),
                            "--max-seconds", "30", "--ws-url", fake.ws_url, "--rest-url", fake.rest_url],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "NOPEUSDT is not a binanceusdm" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_live_lens_bars_during_recording_equal_the_lens_of_the_recording(tmp_path):
    from forge.features.l2lens import load_lens_bars as llb

    with FakeL2("binanceusdm", (SYM,)) as fake:
        _initial(fake)
        now = int(time.time() * 1000)
        edge = (now // 60_000 + 2) * 60_000
        fake.ts_offset_ms = edge - now - 8000  # the exchange's clock crosses a minute 8 s into the test
        events = []
        rec = _recorder(fake, tmp_path, progress=events.append, lens_k=3)
        with _running(rec):
            _wait(_synced(fake))
            _wait(lambda: rec.stats["l2_rows"] >= 1)
            assert fake._now() < edge - 500
            _push(fake, 6)
            _wait(lambda: fake._now() > edge + 200)
            _push(fake, 3, start=6)
            _wait(lambda: any(e["event"] == "lens" for e in events))
        lens = [e for e in events if e["event"] == "lens"]
        assert [e["open_time"] for e in lens] == [edge - 60_000]
        bars = llb(tmp_path, "binanceusdm", SYM, edge - 60_000, edge, k=3)
        assert bars.height == 1
        for c in ("ofi", "ofi_n", "n_states", "pressure", "pressure_ticks", "density", "spread", "pressure_close",
                  "mid_close", "gap"):
            assert lens[0][c] == pytest.approx(bars[c][0]), c
        assert lens[0]["n_states"] == 7 and lens[0]["gap"]  # the snapshot + 6 updates; the start gap's minute
        assert lens[0]["density"] == lens[0]["density"]  # a number: the tick came from the market (0.1)


@pytest.mark.parametrize("venue", VENUES)
def test_live_lens_bars_over_minutes_with_a_reconnect_equal_the_lens_of_the_recording(tmp_path, venue):
    """Six minutes of exchange time (the fake's clock is moved minute by minute), several book updates a
    minute, and a dropped connection in the third minute that re-synchronises in the fourth: every live lens
    bar equals load_lens_bars of the written files on every column.  The receive clock is held still from the
    reconnect until the updates after it are recorded, so the re-synchronising snapshot shares its receive
    millisecond with later rows (as on a loaded machine): a loader that flags every row of that millisecond
    "after a gap" drops their OFI increments and differs from the live lens."""
    now = int(time.time() * 1000)
    m0 = (now // 60_000 + 10) * 60_000  # exchange minutes m0 .. m0 + 5 (+ one state in m0 + 6)
    if (m0 + 7 * 60_000) // 86_400_000 != now // 86_400_000:  # keep exchange and receive times on one UTC day
        m0 -= 30 * 60_000
    frozen: dict = {"ms": None}

    def clock() -> int:  # the receive clock: the wall clock, or held at frozen["ms"]
        return frozen["ms"] if frozen["ms"] is not None else int(time.time() * 1000)

    with FakeL2(venue, (SYM,)) as fake:
        _initial(fake)

        def at(minute: int, sec: float) -> None:  # the exchange's clock reads m0 + minute:sec now
            fake.ts_offset_ms = m0 + minute * 60_000 + int(sec * 1000) - int(time.time() * 1000)

        step = {"j": 0}

        def push(k: int) -> None:
            rows = rec.stats["l2_rows"]
            for _ in range(k):
                j = step["j"]
                step["j"] += 1
                if j % 3 == 0:
                    fake.update(SYM, bids=[(100.0, 5.0 + j)], asks=[(100.1, 2.0 + 0.5 * j)])
                elif j % 3 == 1:
                    fake.update(SYM, bids=[(99.9, 1.0 + j)], asks=[(100.1, 0.0)])  # the best ask moves up
                else:
                    fake.update(SYM, bids=[(100.0, 0.0)], asks=[(100.1, 1.5 + j)])  # ... back; the best bid down
            _wait(lambda: rec.stats["l2_rows"] >= rows + k)

        at(0, 5)
        events: list = []
        rec = _recorder(fake, tmp_path, progress=events.append, lens_k=3, clock=clock)
        with _running(rec):
            _wait(_synced(fake))
            _wait(lambda: rec.stats["l2_rows"] >= 1)
            push(3)
            at(0, 40)
            push(2)
            at(1, 10)
            push(4)
            at(2, 5)
            push(3)
            fake.hold_subscriptions = True  # the drop: the recorder cannot re-subscribe yet ...
            fake.disconnect()
            at(2, 50)
            fake.update(SYM, bids=[(99.8, 9.0)])  # ... so it misses this update (the snapshot has it)
            at(3, 5)
            frozen["ms"] = int(time.time() * 1000)
            rows = rec.stats["l2_rows"]
            fake.hold_subscriptions = False
            _wait(_synced(fake, 2))
            _wait(lambda: rec.stats["l2_rows"] >= rows + 1)  # the re-synchronising snapshot
            push(3)  # received in the snapshot's millisecond (the receive clock is held)
            frozen["ms"] = None
            at(3, 30)
            push(2)
            at(4, 10)
            push(4)
            at(5, 20)
            push(3)
            at(6, 5)
            push(1)  # closes the bar of m0 + 5
            _wait(lambda: sum(e["event"] == "lens" for e in events) >= 6)
        live = [e for e in events if e["event"] == "lens"]
        assert [e["open_time"] for e in live] == [m0 + 60_000 * i for i in range(6)]
        gaps = load_gaps(tmp_path, venue, SYM).filter(pl.col("stream") == "l2")
        assert gaps.filter(pl.col("reason") == "reconnect").height == 1
        book = load_l2(tmp_path, venue, SYM)
        g = gaps.filter(pl.col("reason") == "reconnect").row(0, named=True)
        assert (book.recv_ms == g["end_recv_ms"]).sum() >= 2  # the snapshot shares its millisecond
        bars = load_lens_bars(tmp_path, venue, SYM, m0, m0 + 6 * 60_000, k=3)
        assert bars.height == len(live) == 6
        assert bars["gap"].to_list() == [True, False, True, True, False, False]  # the start; the drop's two minutes
        assert (bars["n_states"].to_numpy() >= 3).all()
        for i, want in enumerate(bars.iter_rows(named=True)):
            got = live[i]
            for c, w in want.items():
                v = got[c]
                if c in ("open_time", "ofi_n", "n_states", "gap"):
                    assert v == w, (i, c, v, w)
                elif np.isnan(w):  # NaN equals NaN
                    assert np.isnan(v), (i, c, v, w)
                else:
                    assert v == pytest.approx(w, rel=1e-12), (i, c, v, w)
        assert book.after_gap.sum() == gaps.height  # one state after each l2 marker


def test_a_recording_that_cannot_be_written_stops_with_a_data_error(tmp_path):
    with FakeL2("binanceusdm", (SYM,)) as fake:
        _initial(fake)
        dest = tmp_path / "rec"
        rec = _recorder(fake, dest)
        with pytest.raises(DataError, match="cannot write the recording"):
            with _running(rec):
                _wait(_synced(fake))
                _wait(lambda: rec.stats["parts"] >= 1)
                # the disk refuses new part files (a file where the day's directory must be; root ignores modes)
                import shutil

                for d in stream_dir(dest, "binanceusdm", SYM, "l2").iterdir():
                    shutil.rmtree(d)
                    d.write_text("in the way")
                _push(fake, 3)
                _wait(lambda: rec._stop is not None and rec._stop.is_set(), 20)


def test_reader_relists_when_a_recorder_compacts_while_it_reads(tmp_path, monkeypatch):
    import forge.data.l2 as l2

    t0 = 1_717_200_000_000
    write_part(tmp_path, "bybit", SYM, "trades", "2024-06-01", _trades_df([1, 2], t0), 1)
    real = l2.day_files
    calls = {"n": 0}

    def stale(*a, **k):  # the first listing names a part compacted away before it is read
        calls["n"] += 1
        out = real(*a, **k)
        if calls["n"] == 1:
            out = {d: fs + [fs[0].with_name("part-1717200000000-99999999.parquet")] for d, fs in out.items()}
        return out

    monkeypatch.setattr(l2, "day_files", stale)
    assert load_trades(tmp_path, "bybit", SYM)["id"].to_list() == ["1", "2"] and calls["n"] == 2


def test_a_second_recorder_of_the_same_book_is_refused_with_the_first_ones_pid(tmp_path):
    """Two writers of one folder would record every row twice and compact the same files: the second is refused at
    start (a bench's live feed too, before its thread starts); another symbol, or the same one after the first
    stopped, records."""
    import os

    from crucible.books import LiveBooks

    first = Recorder("binanceusdm", [SYM], DEPTH, str(tmp_path))
    first.lock()
    try:
        second = Recorder("binanceusdm", ["ETHUSDT", SYM], DEPTH, str(tmp_path))
        with pytest.raises(ConfigError, match=rf"another recorder \(pid {os.getpid()}\) is recording binanceusdm/"
                                              rf"{SYM}") as e:
            second.lock()
        assert "\n" not in str(e.value) and not second._locks  # nothing half-held
        feed = LiveBooks("binanceusdm", [SYM], tmp_path, depth=DEPTH)
        with pytest.raises(ConfigError, match="another recorder"):
            feed.start()
        assert feed._thread is None
        Recorder("binanceusdm", ["ETHUSDT"], DEPTH, str(tmp_path)).lock()  # another book: fine
        Recorder("bybit", [SYM], DEPTH, str(tmp_path)).lock()  # another venue's folder: fine
    finally:
        first.unlock()
    again = Recorder("binanceusdm", [SYM], DEPTH, str(tmp_path))
    again.lock()
    again.unlock()
