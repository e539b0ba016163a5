"""Size of the Gauntlet's test stages under the null (issue 29 item 3).

Fast: the circular-shift gate on a position scaled to trailing volatility over GARCH noise — the case where
the former mean-P&L statistic rejected far above its level — is at its size with the studentised statistic
(and the mean statistic is shown not to be), while a real timing edge still passes. Slow: the full null
suite (``gauntlet.size``) at >= 500 draws per market, every p-value stage at its size where the null holds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gauntlet.stages.permutation import circular_shift_mean_pvalue, circular_shift_pvalue


def _garch_vol(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) with t(4) innovations and the conditional sd: returns (r (n,), sigma (n,))."""
    z = rng.standard_t(4, n) / math.sqrt(2.0)
    r, s = np.empty(n), np.empty(n)
    h = 1.0
    for t in range(n):
        s[t] = math.sqrt(h)
        r[t] = s[t] * z[t]
        h = 0.02 + 0.10 * r[t] ** 2 + 0.88 * h
    return 1e-3 * r, 1e-3 * s


def _vol_position(r: np.ndarray, halflife: int = 30) -> np.ndarray:
    """Long in proportion to an EWMA of past squared returns (decided at each close), capped at 1."""
    lam = 0.5 ** (1 / halflife)
    v, acc = np.empty_like(r), float(np.mean(r ** 2))
    for t in range(r.size):
        acc = lam * acc + (1 - lam) * r[t] ** 2
        v[t] = acc
    sig = np.sqrt(v)
    return np.minimum(sig / (2 * np.median(sig)), 1.0)


def _bound(alpha: float, draws: int) -> float:
    return alpha + 2 * math.sqrt(alpha * (1 - alpha) / draws)


def test_studentised_circular_shift_is_at_size_for_a_volatility_scaled_position():
    rng = np.random.default_rng(29)
    draws, n = 300, 3000
    p_t, p_mean = [], []
    for s in range(draws):
        r, _ = _garch_vol(n, rng)
        pos = _vol_position(r)
        p_t.append(circular_shift_pvalue(pos, r, 99, s)["p"])
        pnl = lambda p: np.concatenate([[0.0], p[:-1] * r[1:]])  # noqa: E731  (market timing, no costs)
        p_mean.append(circular_shift_mean_pvalue(pos, pnl, 99, s))
    p_t, p_mean = np.array(p_t), np.array(p_mean)
    for a in (0.05, 0.10):
        assert np.mean(p_t <= a) <= _bound(a, draws), (a, np.mean(p_t <= a))
    assert np.mean(p_mean <= 0.05) > _bound(0.05, draws)  # the former statistic: over its size here


def test_studentised_circular_shift_keeps_its_power_on_a_persistent_edge():
    rng = np.random.default_rng(3)
    n = 8640
    e = rng.standard_normal(n) * math.sqrt(1 - 0.995 ** 2)
    z = np.empty(n)
    z[0] = 0.0
    for t in range(1, n):
        z[t] = 0.995 * z[t - 1] + e[t]
    pos = np.sign(z)
    r, sig = _garch_vol(n, rng)
    r[1:] += 0.03 * sig[1:] * pos[:-1]  # per-bar Sharpe 0.03 for the position held
    assert circular_shift_pvalue(pos, r, 199, 0)["p"] <= 0.01


def _sign_flip_rates(kind: str, seeds: range, flips: int, use_raw: bool) -> tuple[float, float]:
    """Pooled rejection rates at 5 % of the pcmci link test (``position_link``, no parents: HAC t) and of the
    classical-OLS t, for the suite's position scaled to trailing volatility, under random sign flips of the
    return given its volatility path."""
    import statsmodels.api as sm

    from forge.causal import vol_standardized
    from forge.data.gaps import realised_returns
    from forge.data.synthetic import null_positions, synthetic_bars
    from gauntlet.stages.pcmci import position_link

    hac, ols = [], []
    rng = np.random.default_rng(7)
    for seed in seeds:
        bars, _ = synthetic_bars(seed, 0.0, 3, kind=kind)
        r = realised_returns(bars["close"].to_numpy().astype(float), bars["open_time"].to_numpy())
        y0 = r if use_raw else vol_standardized(r)
        pos = null_positions(bars)["vol"][0]
        for _ in range(flips):
            y = np.abs(y0) * rng.choice([-1.0, 1.0], size=y0.size)  # NaN stays NaN
            hac.append(position_link(pos, y, {}, [])["p"])
            ok = np.isfinite(y[1:])
            fit = sm.OLS(y[1:][ok], sm.add_constant(pos[:-1][ok])).fit()
            ols.append(float(fit.tvalues[1] > 1.645))
    return float(np.mean(np.array(hac) <= 0.05)), float(np.mean(ols))


def test_pcmci_link_test_is_exact_given_the_volatility_path():
    """The mechanism behind the null x vol cells (issue 29, helper volsize). On the suite's markets the return's
    sign is independent of its volatility path (symmetric innovations, GARCH on squares) and the ``vol`` position
    reads only |returns|, so random sign flips of the return give the exact null of the link test conditional on
    the volatility path. The stage's HAC t is at its size under it (on the vol-standardised return the stage
    uses and even on raw returns), while a classical OLS t on raw returns is not: heteroskedasticity aligned
    with the position is handled by the studentisation. An excess on a fixed set of seeds therefore lies in
    those draws' realised signs, not in the test's calibration (RESULTS.md, "Sizes of the causal gates ...")."""
    draws = 6 * 60
    for raw in (False, True):
        hac, ols = _sign_flip_rates("heavy", range(10_000, 10_006), 60, raw)
        assert hac <= _bound(0.05, draws), (raw, hac)
        assert hac >= 0.05 - 2 * math.sqrt(0.05 * 0.95 / draws), (raw, hac)  # at size, not conservative
        if raw:
            assert ols > _bound(0.05, draws), ols  # the classical t: over its size on raw GARCH returns


def _suite(draws: int, stages: tuple[str, ...]):
    from forge.data.synthetic import NULL_MARKETS
    from gauntlet.size import null_pvalues, size_table

    rows = [r for i in range(draws) for k in NULL_MARKETS for r in null_pvalues(k, 10_000 + i, stages=stages)]
    return size_table(rows)


@pytest.mark.slow
def test_null_suite_studentised_gate_beats_the_mean_statistic_in_every_cell():
    """500 draws per null market (benchmarks/gauntlet_size.py's seeds): in every (market, position) cell the
    studentised gate rejects at 5 % no more often than the former mean statistic (+ 1 point) or within its
    size bound, and for positions scaled to volatility at most 60 % as often as the mean statistic."""
    table = _suite(500, ("permutation", "permutation_mean"))
    by = {(c["market"], c["position"], c["stage"]): c["levels"][0.05]["rate"] for c in table}
    bound = {(c["market"], c["position"]): c["levels"][0.05]["bound"] for c in table}
    for (m, pos, st), rate in by.items():
        if st == "permutation":
            assert rate <= max(by[(m, pos, "permutation_mean")] + 0.01, bound[(m, pos)]), (m, pos, rate)
    assert by[("all", "vol", "permutation")] <= 0.6 * by[("all", "vol", "permutation_mean")]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured (RESULTS.md, 'Sizes of the causal gates on replication seeds'): on the fixed "
                   "seeds pcmci's null x vol cell rejects 8.6 % and dowhy's 7.6 % at 5 % (bound 6.9 %), a property of those "
                   "draws' realised signs (the link test is exact given the volatility path: "
                   "test_pcmci_link_test_is_exact_given_the_volatility_path; on seeds 50,000-50,499 the same cells are "
                   "4.2 % / 3.4 %, while pcmci null x inv_vol at 1 % is then 2.2 % > 1.9 %): a gate at its exact size misses "
                   "one of its 48 two-s.e. cell bounds by chance; only conservative gates meet this criterion every time")
def test_null_suite_every_gate_at_its_size_where_the_null_holds():
    """The issue's criterion: P(p <= alpha) <= alpha + 2 s.e. at 0.01, 0.05, 0.10 in every cell of the
    non-drifting null markets (on the drift market volatility-dependent exposure is real risk timing, which
    the risk-timing label names, not these gates)."""
    table = _suite(500, ("psr", "permutation", "pcmci", "dowhy"))
    for c in table:
        if c["market"] in ("all", "drift"):
            continue
        for a, lv in c["levels"].items():
            assert lv["at_size"], (c["stage"], c["market"], c["position"], a, lv)


@pytest.mark.slow
def test_aligned_bootstrap_brings_volatility_driven_positions_to_size():
    """The mechanism (issue 29 follow-up): circular shifts break a volatility-scaled position's alignment with
    the return's volatility, and the studentised shift test alone rejected ~10 % at 5 % on the synthetic null
    market; requiring the aligned stationary bootstrap as well (the gate's p = max) is at size. 200 draws of the
    suite's seeds on the null and heavy markets, position ∝ trailing volatility."""
    from forge.data.synthetic import null_positions, synthetic_bars
    from forge.backtest import BacktestConfig, run_backtest
    import dataclasses

    gross = dataclasses.replace(BacktestConfig(), taker_fee_bps=0.0, slippage_bps=0.0, funding_rate_8h=0.0)
    draws = 200
    shift, gate = [], []
    for kind in ("null", "heavy"):
        for i in range(draws):
            bars, _ = synthetic_bars(10_000 + i, 0.0, 3, kind=kind)
            o, c = bars["open"].to_numpy().astype(float), bars["close"].to_numpy().astype(float)
            market = run_backtest(o, c, bars["open_time"].to_numpy(), np.ones(len(o)), gross).returns
            res = circular_shift_pvalue(null_positions(bars)["vol"][0], market, 199, 10_000 + i)
            shift.append(res["p_shift"])
            gate.append(res["p"])
    shift, gate = np.array(shift), np.array(gate)
    n = shift.size
    assert np.mean(shift <= 0.05) > _bound(0.05, n)  # the shift test alone: over its size here
    for a in (0.01, 0.05, 0.10):
        assert np.mean(gate <= a) <= _bound(a, n), (a, np.mean(gate <= a))


def _pcmci_replication(draws: int, seed0: int = 50_000):
    from gauntlet.size import null_pvalues, size_table

    rows = [r for i in range(draws) for r in null_pvalues("null", seed0 + i, stages=("pcmci",))]
    return {c["position"]: c for c in size_table(rows) if c["market"] == "null" and c["stage"] == "pcmci"}


@pytest.mark.slow
def test_pcmci_at_its_size_for_volatility_driven_positions_on_unused_seeds():
    """The replication behind the strict xfail above (RESULTS.md, "Sizes of the causal gates on replication seeds"):
    on 2,000 null draws from seeds the fixed suite never uses (50,000-51,999, chosen before the run), the pcmci
    gate is at its size at 1 / 5 / 10 % for positions that scale with volatility or its inverse (measured 0.85 /
    4.75 / 10.4 % and 1.1 / 5.1 / 10.7 %, bounds 1.44 / 5.97 / 11.34 %), where the fixed seeds gave 8.6 % at 5 %."""
    table = _pcmci_replication(2000)
    for pos in ("vol", "inv_vol"):
        for a, lv in table[pos]["levels"].items():
            assert lv["at_size"], (pos, a, lv)
