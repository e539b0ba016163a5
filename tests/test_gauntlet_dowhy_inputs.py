"""DoWhy on the PCMCI graph: a PCMCI parent that is the genome's own input under another name is that input,
not a confounder (issue 29 follow-up: a planted edge found through ``ret_1`` was adjusted on ``return_lag1``,
PCMCI's vol-standardised lag-1 return, i.e. the rule's own input)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forge.causal import vol_standardized
from gauntlet.stages.dowhy_refute import causal_graph, duplicate_inputs, identify_adjustment


def _garch(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r, h = np.empty(n), 1e-6
    for t in range(n):
        r[t] = np.sqrt(h) * rng.standard_t(4) / np.sqrt(2.0)
        h = 5e-8 + 0.10 * r[t] ** 2 + 0.85 * h
    return r


def test_a_parent_that_is_an_input_is_merged_into_it_and_not_adjusted_on():
    n = 4000
    r = _garch(n, 0)
    ret_z = vol_standardized(r)  # PCMCI's "return": the terminal ret_1 over a causal volatility estimate
    trend = np.convolve(r, np.ones(60), "full")[:n]  # "mtf_ret_1h": related to ret_1, not the same series
    assert abs(np.corrcoef(np.nan_to_num(ret_z), r)[0, 1]) < 0.99  # not caught by the plain correlation
    parents = [("return", 1), ("mtf_ret_1h", 1), ("return", 3)]
    series = {"return": ret_z, "mtf_ret_1h": trend}
    dup = duplicate_inputs(parents, series, {"ret_1": r}, lookback=0)
    assert dup == {"return_lag1": "ret_1_lag1"}  # lag 3 is beyond what a lookback-0 genome reads
    assert duplicate_inputs(parents, series, {"ret_1": r}, lookback=240) == {"return_lag1": "ret_1_lag1",
                                                                               "return_lag3": "ret_1_lag1"}
    assert duplicate_inputs(parents, series, {"taker_imb": np.random.default_rng(1).standard_normal(n)}, 240) == {}
    assert duplicate_inputs([("vol_60", 1)], {}, {"vol_60": r}, 0) == {"vol_60_lag1": "vol_60_lag1"}  # same name

    def adjustment(d):
        g, pnodes, _ = causal_graph(parents, ["ret_1"], d)
        data = pd.DataFrame({"position": np.zeros(n), "ret": np.zeros(n), **{p: np.zeros(n) for p in pnodes}})
        return sorted(identify_adjustment(g, data)), g

    before, _ = adjustment({})
    assert "return_lag1" in before  # the former graph: the rule's own input as a confounder
    after, g = adjustment(dup)
    assert after == ["mtf_ret_1h_lag1", "return_lag3"]
    assert "return_lag1" not in g.nodes and g.has_edge("mtf_ret_1h_lag1", "ret_1_lag1")
    assert g.nodes["ret_1_lag1"].get("observed") == "no"
