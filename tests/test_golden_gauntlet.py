"""Golden gauntlet verdicts: the same run directory validated with the same config must give the same
verdicts across refactors of the gauntlet, its statistics and the shared metrics (issue 16: "the same
gauntlet verdicts").

Two one-candidate runs (``loop.honesty.oracle_run``: the oracle genome, no search) on synthetic
markets (:mod:`forge.data.synthetic`): a planted after-cost edge, which must survive, and a null market,
which must not.  What is compared: survived, the failed gating stages, and every stage's p-value and
statistic rounded to 4 significant digits.  When a change is *meant* to alter a stage, update the constants
in a commit of their own that says why; recompute with ``.venv/bin/python -m tests.test_golden_gauntlet``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

MARKETS = {"planted": "synthetic:planted?seed=3&days=20&strength=0.2", "null": "synthetic:null?seed=3&days=20"}


def _sig(x: Any) -> Any:
    return None if x is None else float(f"{float(x):.4g}")


def golden_verdict(tmp: Path, market: str) -> dict[str, Any]:
    """Validate the oracle genome on ``market``; returns survived, failed stages and rounded stage numbers."""
    from forge.data.loader import load_bars
    from forge.core.runconfig import load_run_config
    from gauntlet.config import GauntletConfig
    from loop.honesty import oracle_genome, oracle_run
    from gauntlet.validate import validate_run

    bars, _ = load_bars([MARKETS[market]])
    cfg = load_run_config(None)
    run_dir = oracle_run(bars, oracle_genome(240), tmp / market, cfg, cfg.evolve.in_sample_fraction)
    rep = validate_run(run_dir, GauntletConfig(seed=0).validate(), publish_dir=None, bars=bars)
    v = rep.verdicts[0]
    return {"survived": v["survived"], "failed": v["failed"],
            "stages": {n: [_sig(s.p_value), _sig(s.statistic)] for n, s in v["stages"].items()}}


# Issue 29 added the edge_kind stage (a label, not gating): its p-value is the new key; no other value changed.
# Issue 29 follow-up (gauntlet-power): the permutation gate's p is max(circular-shift p, aligned stationary-bootstrap
# p); on the null market the bootstrap's is the larger (0.16 -> 0.17); every other value unchanged.
# Issue 29 (PCMCI's oversized graph): the market graph's CI test is the HC-studentised partial correlation
# (pcmci_cond_ind_test = "parcorr_hc"); the graph's parents change, so the pcmci p-values (planted 5.243e-17 ->
# 1.361e-17, null 0.09011 -> 0.09274) and the null's dowhy p (0.115 -> 0.12, its adjustment set) moved; no verdict changed.
GOLDEN: dict[str, dict[str, Any]] = {
    "planted": {"survived": True, "failed": [], "stages": {
        "oos": [None, 72.73], "lookahead": [None, 0.0], "psr": [1.036e-13, 1.036e-13], "dsr": [None, None],
        "pbo": [None, None], "permutation": [0.005, 0.005], "pcmci": [1.361e-17, 1.361e-17], "dowhy": [0.005, 0.005],
        "edge_kind": [6.985e-09, 6.985e-09]}},
    "null": {"survived": False, "failed": ["psr", "permutation", "pcmci", "dowhy"], "stages": {
        "oos": [None, -2.546], "lookahead": [None, 0.0], "psr": [0.8004, 0.8004], "dsr": [None, None],
        "pbo": [None, None], "permutation": [0.17, 0.17], "pcmci": [0.09274, 0.09274], "dowhy": [0.12, 0.12],
        "edge_kind": [0.8538, 0.8538]}},
}


@pytest.mark.parametrize("market", ["planted", "null"])
def test_gauntlet_verdicts_are_golden(tmp_path, market):
    got = golden_verdict(tmp_path, market)
    assert got["survived"] is (market == "planted")
    assert got == GOLDEN[market], f"{market} verdict changed:\n{json.dumps(got)}"


if __name__ == "__main__":
    import tempfile

    for m in MARKETS:
        with tempfile.TemporaryDirectory() as d:
            print(f"GOLDEN[{m!r}] = {golden_verdict(Path(d), m)!r}")
