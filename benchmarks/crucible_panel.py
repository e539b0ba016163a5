"""Crucible panel slots on the replay venue (issue 30): throughput of a slot reading other instruments against a
one-symbol slot on the same bars, the research parity of its targets, and skip counts under a late instrument.

Usage (from the repository root):

    PYTHONPATH=. /work/venv/bin/python benchmarks/crucible_panel.py            # FILUSDT perp + BTCUSDT/ALGOUSDT, 2024-02
    PYTHONPATH=. /work/venv/bin/python benchmarks/crucible_panel.py --bars 5000

Trades FILUSDT (USDⓈ-M perpetual, 2024-02) with a genome reading BTCUSDT spot's and ALGOUSDT perp's 5-minute
returns (a 3-instrument panel) and with a one-symbol genome of the same shape on FILUSDT's own return.  Rows:
bars/s of each replay (best of ``--repeats``, after a warm-up run that compiles the kernels), bars where the
panel slot's target differed from ``forge.strategy.genome_positions`` on the research panel
(``forge.data.panel.load_panel``), and skips when BTCUSDT's bar of every k-th minute is late beyond
``panel_wait_seconds``.  Writes ``benchmarks/crucible_panel.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import crucible.panel as cpanel  # noqa: E402
from crucible.config import config_from_dict  # noqa: E402
from crucible.runtime import run_live  # noqa: E402
from crucible.venues.factory import make_venue  # noqa: E402
from forge.data.gaps import bars_since_gap  # noqa: E402
from forge.data.panel import load_panel  # noqa: E402
from forge.gp import Genome  # noqa: E402
from forge.strategy import genome_positions, strategy_features  # noqa: E402

DATA = ROOT.parent.parent / "shared" / "data" / "binance"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/binance")
PANEL = Genome.from_tokens(["long_short", "gt_c", "add", "feature:ret_5__BTCUSDT_spot", "feature:ret_5__ALGOUSDT_perp",
                            "const:0", "lt_c", "add", "feature:ret_5__BTCUSDT_spot", "feature:ret_5__ALGOUSDT_perp",
                            "const:1"], [0.003, -0.003])
SINGLE = Genome.from_tokens(["long_short", "gt_c", "add", "feature:ret_5", "feature:ret_15", "const:0", "lt_c", "add",
                             "feature:ret_5", "feature:ret_15", "const:1"], [0.003, -0.003])


def config(work: Path, genome: Genome, bars: int, **general):
    g = work / f"{genome.sha256[:8]}.json"
    g.write_text(genome.to_json())
    fil = DATA / "futures-um" / "FILUSDT" / "1m"
    algo = DATA / "futures-um" / "ALGOUSDT" / "1m"
    btc = sorted((DATA / "spot" / "BTCUSDT" / "1m").glob("BTCUSDT-1m-2024-02-*.csv"))
    return config_from_dict({
        "crucible": {"journal": str(work / f"j{time.monotonic_ns()}.sqlite"), "champions_dir": str(work / "ch"),
                     "requests_dir": str(work / "rq"), "kill_file": str(work / "KILL"), "history_bars": 2000,
                     **general},
        "replay": {"data": [f"FILUSDT={fil}", f"ALGOUSDT={algo}", *(f"BTCUSDT={p}" for p in btc)],
                   "warmup_bars": 2000, "max_bars": bars, "prefetch_bars": 4096},
        "hotswap": {"enabled": False},
        "slots": [{"id": "fil", "symbol": "FILUSDT", "genome": str(g), "costs": "futures"}]}, "bench")


def timed(cfg, repeats: int) -> tuple[float, dict]:
    best, out = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run_live(cfg.with_("general", journal=str(Path(cfg.general.journal).with_suffix(f".{time.monotonic_ns()}"))))
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return out["bars"] / best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--late-every", type=int, default=97)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "crucible_panel.json"))
    a = ap.parse_args()
    if not (DATA / "futures-um" / "FILUSDT").is_dir():
        raise SystemExit(f"no shared data under {DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_live(config(work, PANEL, 300))  # compile
        run_live(config(work, SINGLE, 300))
        single_bps, _ = timed(config(work, SINGLE, a.bars), a.repeats)
        seen: list[tuple[int, float]] = []
        orig = cpanel.PanelSignals.targets

        def rec(self, venue, symbol, genomes, bar_time, **kw):
            out = orig(self, venue, symbol, genomes, bar_time, **kw)
            seen.extend((bar_time, v) for v in out.values())
            return out

        cpanel.PanelSignals.targets = rec
        panel_bps, pout = timed(config(work, PANEL, a.bars), 1)
        cpanel.PanelSignals.targets = orig
        panel_bps = max(panel_bps, timed(config(work, PANEL, a.bars), a.repeats - 1)[0]) if a.repeats > 1 else panel_bps
        _t, frame, _c, _i = load_panel([str(DATA)], ["BTCUSDT:spot", "ALGOUSDT:perp"], "FILUSDT:perp")
        t = frame["open_time"].to_numpy()
        ref = dict(zip(t.tolist(), genome_positions(PANEL, strategy_features(frame, PANEL.features),
                                                    bars_since_gap(t)).tolist()))
        mismatches = sum(1 for bt, v in seen if ref[bt] != v)
        nan_bars = sum(1 for bt, _v in seen if frame["close__BTCUSDT_spot"][int(t.searchsorted(bt))] is None)
        cfg = config(work, PANEL, a.bars, panel_wait_seconds=0.001)
        v = make_venue(cfg)
        late = set()

        def bar_closed(sym, bt):
            if sym == "BTCUSDT" and (bt // 60_000) % a.late_every == 0:
                late.add(bt)
                return False
            return True

        v.bar_closed = bar_closed
        try:
            sout = run_live(cfg, venue=v, fresh=True)
        finally:
            v.close()
    res = {"bars": a.bars, "single_bars_per_s": single_bps, "panel_bars_per_s": panel_bps,
           "panel_decisions": len(seen), "parity_mismatches": mismatches,
           "decisions_on_minutes_without_btc_bar": nan_bars, "late_every": a.late_every,
           "late_minutes": len(late), "panel_skips": sout["panel_skips"], "orders_panel": pout["orders"],
           "command": " ".join(["benchmarks/crucible_panel.py", *sys.argv[1:]])}
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print("| replay | bars/s |\n|---|---|")
    print(f"| one-symbol slot (FILUSDT) | {single_bps:,.0f} |\n| panel slot (FILUSDT + BTCUSDT spot + ALGOUSDT perp) | "
          f"{panel_bps:,.0f} |")
    print(f"parity: {mismatches} of {len(seen)} decisions differ from research ({nan_bars} on minutes without a "
          f"BTCUSDT bar); skips: {sout['panel_skips']} for {len(late)} late minutes")


if __name__ == "__main__":
    main()
