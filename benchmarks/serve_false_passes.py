"""Per-request false passes of ``forge serve`` with retries (issue 29, "the pipeline's error rates"): replacement
requests on null markets, each served as the closed loop serves it (``loop.serve.serve_request``: up to
``max_attempts`` evolve -> validate attempts on the same bars, the population growing by ``budget_growth`` per
retry, every attempt validated at alpha / max_attempts), and a request counted as a false pass when any attempt
published a champion.  ``--kinds planted`` (a planted market of ``--strength``) is the power control: there a
served request is a true pass.

    PYTHONPATH=. nice python benchmarks/serve_false_passes.py --requests 10 --kinds null,drift,heavy,seasonal \\
        --attempts 2 --population 24 --generations 3 --out benchmarks/serve_false_passes.jsonl
    PYTHONPATH=. python benchmarks/serve_false_passes.py --summarize benchmarks/serve_false_passes.jsonl

Request i of kind k serves ``synthetic:<k>?seed=<seed-offset + i>&days=<days>`` (a market the run never saw
before; its own trial ledger). The request's seed genome is the built-in ``flow`` genome with no recorded
selection bars, so the serve loop withholds it exactly as it withholds a seed ranked on live marks
(issue 29 item 1). One JSON line per request: kind, seed, status, attempts (population, alpha, published,
failed stages of the champion), seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T0 = 1718582400000  # first bar of the synthetic markets' clock (the embedded sample's)


def _loop(tmp: Path, spec: str, a: argparse.Namespace):
    """The worker setup of one request: the packaged evolve and gauntlet configs (co-evolution off, a trial
    ledger of this market only), ``[serve]`` at the study's budget, folders under ``tmp``."""
    from forge.core.requests import ServeConfig
    from forge.core.runconfig import load_run_config, with_overrides
    from gauntlet.config import load_gauntlet_config
    from loop.serve import Loop

    sc = ServeConfig(runs_dir=str(tmp / "runs"), population=a.population, generations=a.generations,
                     window_days=a.days - 1, min_bars=2000, max_attempts=a.attempts).validate()
    rc = with_overrides(load_run_config(None), "evolve", trial_ledger=str(tmp / "ledger.jsonl"))
    rc = with_overrides(rc, "coevolution", enabled=False)
    return Loop(sc, tmp / "requests", tmp / "champions", tmp / "runs", {"NULLUSDT": [spec]}, "serve_false_passes",
                rc, load_gauntlet_config(None))


def serve_one(kind: str, seed: int, a: argparse.Namespace) -> dict:
    """Serve one request on a fresh null market of ``kind``; returns its row."""
    from crucible.builtin import builtin_genome
    from crucible.watchtower import write_replacement_request
    from loop.serve import serve_request

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serve-fp-") as d:
        tmp = Path(d)
        spec = f"synthetic:{kind}?seed={seed}&days={a.days}" + (f"&strength={a.strength}" if kind == "planted" else "")
        loop = _loop(tmp, spec, a)
        req = write_replacement_request(tmp / "requests", slot="s1", symbol="NULLUSDT",
                                        time_ms=T0 + int((a.days - 0.5) * 86_400_000),
                                        equity=0.5, killed=builtin_genome("meanrev"), seed=builtin_genome("flow"),
                                        seed_score=None)
        st = serve_request(loop, req)
    attempts = [{"population": x.get("population"), "alpha": x.get("alpha"), "status": x.get("status"),
                 "published": len(x.get("published") or []),
                 "champion_failed": (x.get("reasons") or [{}])[0].get("failed"),
                 "seed_used": (x.get("seed_genome") or {}).get("used")} for x in st.get("attempts", [])]
    return {"kind": kind, "seed": seed, "status": st["status"], "reason": st.get("reason"),
            "attempts": attempts, "max_attempts": a.attempts,
            "population": a.population, "generations": a.generations, "days": a.days,
            "seconds": round(time.perf_counter() - t0, 1)}


def summarize(rows: list[dict]) -> dict:
    from loop.honesty import _cp

    out = {}
    for kind in sorted({r["kind"] for r in rows}) + ["all_null"]:
        rs = [r for r in rows if r["kind"] == kind or (kind == "all_null" and r["kind"] != "planted")]
        if not rs:
            continue
        k = sum(r["status"] == "served" for r in rs)  # nulls: false passes; planted: power
        out[kind] = {"requests": len(rs), "served": k, "rate": k / len(rs), "clopper_pearson_95": _cp(k, len(rs)),
                     "attempts_run": sum(len(r["attempts"]) for r in rs),
                     "attempts_published": sum(x["published"] > 0 for r in rs for x in r["attempts"]),
                     "alpha_per_attempt": sorted({x["alpha"] for r in rs for x in r["attempts"] if x["alpha"]}),
                     "seconds_median": sorted(r["seconds"] for r in rs)[len(rs) // 2]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10, help="requests per kind")
    ap.add_argument("--kinds", default="null,drift,heavy,seasonal")
    ap.add_argument("--seed-offset", type=int, default=60_000)
    ap.add_argument("--days", type=int, default=13, help="market length (the request's window is days - 1)")
    ap.add_argument("--attempts", type=int, default=2, help="[serve] max_attempts")
    ap.add_argument("--population", type=int, default=24)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--strength", type=float, default=0.35, help="the planted kind's strength (a power control)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--summarize", nargs="*", type=Path)
    a = ap.parse_args()
    if a.summarize is not None:
        rows = [json.loads(line) for p in a.summarize for line in p.read_text().splitlines() if line.strip()]
        print(json.dumps(summarize(rows), indent=1))
        return
    if a.out is None:
        ap.error("give --out or --summarize")
    for i in range(a.requests):
        for kind in (k for k in a.kinds.split(",") if k):
            row = serve_one(kind, a.seed_offset + i, a)
            with a.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{kind} seed {row['seed']}: {row['status']} ({len(row['attempts'])} attempt(s), "
                  f"{row['seconds']} s) {[x['champion_failed'] for x in row['attempts']]}", flush=True)


if __name__ == "__main__":
    main()
