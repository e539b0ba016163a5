"""No out-of-sample leak: changing only the out-of-sample bars must leave evolution's decisions bit-identical.

Every in-sample quantity a run decides on -- the PCMCI feature filter, the surrogate's proxy windows, every
fitness, the hall of fame's genomes, fitness and in-sample metrics -- may read only in-sample bars (features
are causal, so values at in-sample rows cannot depend on later rows).  The test perturbs every price and
volume after the split and compares.  It can fail: a variant that lets fitness read the whole series (a
deliberate leak, monkeypatched in) is caught.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from forge.data.loader import load_bars
from forge.data.split import split_point
from forge.evolution import evolve
from forge.core.runconfig import load_run_config, with_overrides
from forge.evolution.market import Market, MarketArrays
from tests.test_golden import SMOKE


def _perturb_out_of_sample(bars: pl.DataFrame, fraction: float, seed: int = 7) -> pl.DataFrame:
    """The same bars with every row after the split replaced by another consistent market: prices scaled by
    a random walk factor (OHLC together, so high >= open/close >= low still holds), volumes rescaled."""
    n_is = split_point(bars.height, fraction)
    rng = np.random.default_rng(seed)
    k = bars.height - n_is
    price = np.concatenate([np.ones(n_is), np.exp(np.cumsum(3e-3 * rng.standard_normal(k)))])
    vol = np.concatenate([np.ones(n_is), rng.uniform(0.2, 3.0, k)])
    cols = {c: pl.col(c) * price for c in ("open", "high", "low", "close")}
    cols |= {c: pl.col(c) * vol for c in ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")}
    return bars.with_columns(**cols)


def _decisions(result) -> list[dict]:
    """What evolution decided, without the out-of-sample report."""
    out = []
    for m in result.hall_of_fame:
        genome = dict(m["genome"], meta={k: v for k, v in m["genome"]["meta"].items() if k != "out_of_sample"})
        out.append({"genome": genome, "fitness": m["fitness"], "in_sample": m["in_sample"]})
    return out


def _run(tmp_path, bars: pl.DataFrame, name: str, mode: str = "taker"):
    cfg = with_overrides(load_run_config(SMOKE), "evolve", output_dir=str(tmp_path), generations=2, population=16)
    cfg = with_overrides(cfg, "execution", mode=mode)
    res = evolve(cfg, bars=bars, run_dir=tmp_path / name)
    causal = json.loads((res.run_dir / "causal.json").read_text())
    causal.pop("seconds")  # wall time of the test
    return res, causal


def test_out_of_sample_bars_cannot_change_the_hall_of_fame(tmp_path, monkeypatch):
    bars, _ = load_bars(None)
    fraction = load_run_config(SMOKE).evolve.in_sample_fraction
    other = _perturb_out_of_sample(bars, fraction)
    n_is = split_point(bars.height, fraction)
    assert bars.head(n_is).equals(other.head(n_is)) and not bars.tail(10).equals(other.tail(10))

    a, causal_a = _run(tmp_path, bars, "a")
    b, causal_b = _run(tmp_path, other, "b")
    assert _decisions(a) == _decisions(b)
    assert causal_a == causal_b
    assert a.hall_of_fame[0]["out_of_sample"] != b.hall_of_fame[0]["out_of_sample"]  # the report did change

    # the same comparison catches a leak: fitness on the whole series instead of the in-sample rows
    def leaky(self: Market, fill=None) -> MarketArrays:
        return MarketArrays.from_bars(self.bars, self.features, (0, self.bars.height), self.symbol, fill)

    monkeypatch.setattr(Market, "in_sample_arrays", leaky)
    la, _ = _run(tmp_path, bars, "leak-a")
    lb, _ = _run(tmp_path, other, "leak-b")
    assert _decisions(la) != _decisions(lb)


def test_the_kline_fill_model_reads_no_out_of_sample_bar(tmp_path, monkeypatch):
    """``[execution] mode = "kline-limit"``: fitness scores passive fills from the bars' high, low and volume and a
    Corwin-Schultz spread estimate; none of them may read a bar after the split (the estimate at the first
    in-sample rows reads only earlier bars).  A variant whose spread estimate reads the whole series is caught."""
    from forge.backtest import fills

    bars, _ = load_bars(None)
    fraction = load_run_config(SMOKE).evolve.in_sample_fraction
    other = _perturb_out_of_sample(bars, fraction)
    a, _ = _run(tmp_path, bars, "a", "kline-limit")
    b, _ = _run(tmp_path, other, "b", "kline-limit")
    assert _decisions(a) == _decisions(b)
    assert a.hall_of_fame[0]["out_of_sample"] != b.hall_of_fame[0]["out_of_sample"]
    assert a.manifest["costs"]["execution"]["mode"] == "kline-limit"
    taker, _ = _run(tmp_path, bars, "taker")
    assert [m["in_sample"] for m in _decisions(taker)] != [m["in_sample"] for m in _decisions(a)]  # the model is used

    real = fills.FillModel.inputs

    def leaky(self, high, low, close, volume):  # the estimate averaged over every bar, later ones included
        k = real(self, high, low, close, volume)
        return None if k is None else fills.KlineInputs(k.high, k.low, k.volume, np.full_like(k.half_spread,
                                                        float(np.mean(leak_hs[0]))), k.tick)

    for name, data in (("leak-a", bars), ("leak-b", other)):
        full = real(fills.FillModel.for_run(fills.ExecutionConfig(mode="kline-limit"), {}, 10.0),
                    *(data[c].to_numpy() for c in ("high", "low", "close", "volume")))
        leak_hs = [full.half_spread * 50]  # scaled so the leak moves fitness, not only its last digits
        monkeypatch.setattr(fills.FillModel, "inputs", leaky)
        res = _run(tmp_path, data, name, "kline-limit")[0]
        monkeypatch.setattr(fills.FillModel, "inputs", real)
        if name == "leak-a":
            la = res
    assert _decisions(la) != _decisions(res)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
