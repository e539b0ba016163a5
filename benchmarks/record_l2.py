"""``crucible record`` throughput and size on the loopback fake feed (tests/fake_l2.py), no internet.

Two figures:

1. **end to end** — a Recorder (ccxt.pro, real WebSocket and REST over 127.0.0.1) records ``--updates`` book
   updates and as many trades that the fake Binance USDⓈ-M feed sends in one burst; rows/s is rows recorded /
   wall time from the start of the burst to the last row recorded (the fake's sender shares the machine's
   cores, so this is a lower bound on the recorder's rate).
2. **writer only** — book states (every size a fresh random number: the incompressible worst case) and
   trades fed straight into the recorder's row builder and flushed in part files every ``--flush-rows`` rows
   (no network): the rate the file side sustains.

Bytes per snapshot (``depth`` 20, float64 prices and sizes, zstd Parquet) are measured on the part files and
after compacting them into a day file.

    PYTHONPATH=. /work/venv/bin/python benchmarks/record_l2.py --updates 3000 --json benchmarks/record_l2.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_l2 import FakeL2  # noqa: E402

from crucible.record import Recorder  # noqa: E402
from forge.data.l2 import compact_day, day_files, load_l2, stream_dir  # noqa: E402

SYM = "BTCUSDT"


def _sizes(dest: Path, venue: str) -> dict:
    sd = stream_dir(dest, venue, SYM, "l2")
    files = day_files(dest, venue, SYM, "l2")
    parts = [p for fs in files.values() for p in fs]
    n = len(load_l2(dest, venue, SYM))
    part_bytes = sum(p.stat().st_size for p in parts)
    for day in files:
        compact_day(dest, venue, SYM, "l2", day)
    day_bytes = sum(p.stat().st_size for p in sd.glob("*.parquet"))
    return {"l2_rows": n, "l2_part_files": len(parts), "bytes_per_snapshot_parts": round(part_bytes / n, 1),
            "bytes_per_snapshot_day_file": round(day_bytes / n, 1)}


def end_to_end(updates: int, depth: int) -> dict:
    with FakeL2("binanceusdm", (SYM,)) as fake, tempfile.TemporaryDirectory() as tmp:
        fake.set_book(SYM, [(round(100.0 - 0.1 * i, 1), 1.0 + i) for i in range(200)],
                      [(round(100.1 + 0.1 * i, 1), 1.0 + i) for i in range(200)])
        rec = Recorder("binanceusdm", [SYM], depth, tmp, ws_url=fake.ws_url, rest_url=fake.rest_url, flush_seconds=1.0)
        th = threading.Thread(target=lambda: asyncio.run(rec.run(600)), daemon=True)
        th.start()
        while not (fake.sub_count[(SYM, "depth")] and fake.sub_count[(SYM, "trade")] and fake.snapshots):
            time.sleep(0.02)
        while rec.stats["l2_rows"] < 1:
            time.sleep(0.02)
        t0 = time.perf_counter()
        fake.burst(SYM, updates, seed=0)  # sent from the server's loop without a round trip per message
        t_sent = time.perf_counter() - t0
        while rec.stats["l2_rows"] < updates + 1 or rec.stats["trade_rows"] < updates:
            time.sleep(0.01)
        t_rec = time.perf_counter() - t0
        rec.stop_threadsafe()
        th.join(60)
        out = {"updates": updates, "trades": updates, "depth": depth, "send_seconds": round(t_sent, 3),
               "record_seconds": round(t_rec, 3), "rows_per_s": round(2 * updates / t_rec, 1),
               "dup_books": rec.stats["dup_books"], "dup_trades": rec.stats["dup_trades"]}
        out.update(_sizes(Path(tmp), "binanceusdm"))
        return out


def writer_only(rows: int, depth: int, flush_rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder("binanceusdm", [SYM], depth, tmp)
        st = rec.syms[SYM]
        rng = np.random.default_rng(1)
        # worst case for the size: every level's size is a fresh random float64 in every state (a real book
        # changes a few levels per push); prices walk by whole ticks
        # (5,000 distinct books built beforehand and cycled: a 1,000-row part never repeats one)
        nb = min(rows, 5000)
        mids = (1000 + np.cumsum(rng.integers(-1, 2, nb))).tolist()
        sizes = rng.uniform(0.001, 50.0, (nb, 2, depth + 5)).tolist()
        books = [{"bids": [[(mids[i] - k) / 10, sizes[i][0][k]] for k in range(depth + 5)],
                  "asks": [[(mids[i] + k + 1) / 10, sizes[i][1][k]] for k in range(depth + 5)]} for i in range(nb)]
        t0 = time.perf_counter()
        for i in range(rows):
            rec._book_row(st, books[i % nb], 1_717_200_000_000 + i, 1000 + i, None)
            rec._trade_row(st, {"id": str(i), "timestamp": 1_717_200_000_000 + i, "price": 100.05, "amount": 0.01,
                                "side": "buy"})
            if (i + 1) % flush_rows == 0:
                rec.flush()
        rec.flush()
        dt = time.perf_counter() - t0
        out = {"rows": 2 * rows, "depth": depth, "flush_rows": flush_rows, "seconds": round(dt, 3),
               "rows_per_s": round(2 * rows / dt, 1), "book_states_per_s": round(rows / dt, 1)}
        out.update(_sizes(Path(tmp), "binanceusdm"))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=3000)
    ap.add_argument("--writer-rows", type=int, default=50_000)
    ap.add_argument("--flush-rows", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = {"end_to_end": end_to_end(a.updates, a.depth), "writer_only": writer_only(a.writer_rows, a.depth, a.flush_rows)}
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
