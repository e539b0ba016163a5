"""load_l2's ``after_gap``: exactly the state each gap marker ends at, as the live recorder flags it.

CI once failed ``test_record.py::test_disconnect_reconnects_with_gap_marker_and_no_duplicate_trades[bybit]``
(4 states flagged for 2 gap markers): the loader flagged every row received in a marker's end millisecond,
so a re-synchronising snapshot and the update received in the same millisecond were both "after a gap" in
research while the live lens flagged only the snapshot.
"""

from __future__ import annotations

import polars as pl

from forge.data.l2 import GAP_SCHEMA, day_of_ms, l2_schema, load_l2, write_part

T0 = 1_796_629_994_000
VENUE, SYM = "bybit", "BTCUSDT"


def _rows(recv_nonce: list[tuple[int, int]]) -> pl.DataFrame:
    rows = [{"ts_ms": r, "recv_ms": r, "nonce": n, "seq": -1, "bid_px": [100.0, 99.0], "bid_sz": [1.0, 2.0],
             "ask_px": [101.0, 102.0], "ask_sz": [1.0, 2.0]} for r, n in recv_nonce]
    return pl.DataFrame(rows, schema=l2_schema(2))


def _gap(start: tuple[int, int] | None, end: tuple[int, int], nonce_known: bool = True) -> dict:
    return {"stream": "l2", "reason": "reconnect", "start_recv_ms": None if start is None else start[0],
            "start_ts_ms": None if start is None else start[0], "start_nonce": None if start is None else start[1],
            "end_recv_ms": end[0], "end_ts_ms": end[0], "end_nonce": end[1] if nonce_known else None}


def test_only_the_state_a_gap_ends_at_is_after_the_gap(tmp_path):
    # the first snapshot and an update in its millisecond; later a reconnect whose snapshot (nonce 50) shares
    # its millisecond with the update after it (nonce 51); a third marker without a nonce
    book = _rows([(T0, 10), (T0, 11), (T0 + 5, 12), (T0 + 9, 50), (T0 + 9, 51), (T0 + 12, 52),
                  (T0 + 20, 60), (T0 + 20, 61)])
    gaps = pl.DataFrame([_gap(None, (T0, 10)), _gap((T0 + 5, 12), (T0 + 9, 50)),
                         _gap((T0 + 12, 52), (T0 + 20, 61), nonce_known=False)], schema=GAP_SCHEMA)
    day = day_of_ms(T0)
    write_part(tmp_path, VENUE, SYM, "l2", day, book, 1)
    write_part(tmp_path, VENUE, SYM, "gaps", day, gaps, 2)
    b = load_l2(tmp_path, VENUE, SYM)
    assert b.after_gap.tolist() == [True, False, False, True, False, False, True, False]
    assert int(b.after_gap.sum()) == gaps.height


def test_the_end_nonce_picks_the_state_within_its_millisecond(tmp_path):
    book = _rows([(T0, 10), (T0 + 9, 49), (T0 + 9, 50)])  # an update received just before the snapshot
    gaps = pl.DataFrame([_gap(None, (T0, 10)), _gap((T0, 10), (T0 + 9, 50))], schema=GAP_SCHEMA)
    day = day_of_ms(T0)
    write_part(tmp_path, VENUE, SYM, "l2", day, book, 1)
    write_part(tmp_path, VENUE, SYM, "gaps", day, gaps, 2)
    assert load_l2(tmp_path, VENUE, SYM).after_gap.tolist() == [True, False, True]
