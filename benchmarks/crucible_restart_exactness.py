"""Crucible restart exactness: stop a replay bench cleanly after bar K (``run_live(max_bars=K)``), restart it on the same
journal and venue, and compare the journal (orders, fills, ledger-moving events) and the venue's books with the
uninterrupted run, for every K in range(7, N, step).  The bench is the soak tests' three-slot one
(tests/crucible_driver.py::make_cfg); policy: "taker" (always-taker) or "maker-then-cross".

    PYTHONPATH=. /work/venv/bin/python benchmarks/crucible_restart_exactness.py taker 1500 41
    PYTHONPATH=. /work/venv/bin/python benchmarks/crucible_restart_exactness.py maker-then-cross 1500 41
"""
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_crucible_soak as S
from crucible.runtime import run_live
policy = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "taker" else ""
N = int(sys.argv[2]) if len(sys.argv) > 2 else 600
base = Path(tempfile.mkdtemp(prefix="restart-exactness-"))
ref_cfg = S.make_cfg(base / "ref", bench_id=S.BENCH, policy=policy)
rv = S._replay_venue(N); run_live(ref_cfg, venue=rv)
a = S.journal_state(Path(ref_cfg.general.journal))
bad = []
for K in range(7, N, int(sys.argv[3]) if len(sys.argv) > 3 else 23):
    d = base / f"k{K}"
    cfg = S.make_cfg(d, bench_id=S.BENCH, policy=policy)
    v = S._replay_venue(N)
    run_live(cfg, venue=v, max_bars=K)
    run_live(cfg, venue=v, fresh=False)
    b = S.journal_state(Path(cfg.general.journal))
    ok = b == a and v.state() == rv.state()
    if not ok: bad.append(K)
    shutil.rmtree(d)
step = int(sys.argv[3]) if len(sys.argv) > 3 else 23
print(policy or "taker", "diverging stop points:", bad, "of", len(range(7, N, step)))
shutil.rmtree(base, ignore_errors=True)
