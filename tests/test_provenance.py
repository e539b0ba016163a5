"""Leak-free seeding with provenance (issue 29 item 1): every seed genome's selection bars are known (signed
champion meta, a run's manifest, the genome's meta) or dated by its file; a seed selected on the run's
out-of-sample bars is refused; the closed loop withholds its request seeds, shares alpha across attempts, and
seed features pass the causal filter."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from crucible.builtin import builtin_genome
from forge.core.errors import ConfigError, GenomeError
from forge.core.provenance import seed_provenance
from forge.data.loader import load_sample
from forge.data.ranges import DataRange
from forge.core.runconfig import load_run_config, with_overrides
from forge.evolution.market import Market
from forge.evolution.run import _seed_trees, refuse_out_of_sample_leaks

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.toml"


@pytest.fixture(scope="module")
def sample():
    bars, cov = load_sample()
    market = Market.build("", bars, cov, ("ret_1", "clv", "taker_imb"), 0.7)
    a, b = market.split.out_of_sample
    (ia, ib), (ifirst, ilast) = market.split.in_sample, market.split.in_sample_ms
    return market, DataRange(*market.split.out_of_sample_ms, b - a), DataRange(ifirst, ilast, ib - ia)


def _cfg(tmp_path, **evolve):
    return with_overrides(load_run_config(SMOKE), "evolve", output_dir=str(tmp_path), **evolve)


def _seed(tmp_path: Path, name: str, selected_on: list[DataRange] | None) -> Path:
    g = builtin_genome("flow")
    meta = {"selected_on": [r.to_dict() for r in selected_on]} if selected_on is not None else {}
    p = tmp_path / name
    p.write_text(dataclasses.replace(g, meta=meta).to_json())
    return p


def test_seed_selected_on_out_of_sample_bars_is_refused(tmp_path, sample):
    """Fails on the main this branch started from: refuse_out_of_sample_leaks checked libraries and calibrations only."""
    market, oos, ins = sample
    leak = _seed(tmp_path, "leak.json", [DataRange(oos.first_open_ms, oos.last_open_ms, oos.n_bars)])
    with pytest.raises(ConfigError, match="seed genome was selected on .* overlaps this run's out-of-sample"):
        refuse_out_of_sample_leaks(_cfg(tmp_path, seed_genomes=(str(leak),)), [market], None)
    # known provenance is refused even with --allow-unknown-provenance
    with pytest.raises(ConfigError, match="seed genome was selected on"):
        refuse_out_of_sample_leaks(_cfg(tmp_path, seed_genomes=(str(leak),), allow_unknown_provenance=True),
                                   [market], None)
    early = _seed(tmp_path, "early.json", [ins])  # selected on the in-sample head only
    [prov] = refuse_out_of_sample_leaks(_cfg(tmp_path, seed_genomes=(str(early),)), [market], None)
    assert prov.source == "genome meta" and prov.selected_on == (ins,)


def test_seed_of_unknown_provenance_counts_as_selected_before_its_file_time(tmp_path, sample):
    market, oos, _ins = sample
    plain = _seed(tmp_path, "plain.json", None)
    with pytest.raises(ConfigError, match="records no selection bars.*--allow-unknown-provenance"):
        refuse_out_of_sample_leaks(_cfg(tmp_path, seed_genomes=(str(plain),)), [market], None)
    [prov] = refuse_out_of_sample_leaks(_cfg(tmp_path, seed_genomes=(str(plain),), allow_unknown_provenance=True),
                                        [market], None)
    assert prov.source == "unknown" and prov.selected_on[0].first_open_ms == 0
    # a file dated before the out-of-sample range cannot have been selected on it
    os.utime(plain, (oos.first_open_ms / 1000 - 86_400, oos.first_open_ms / 1000 - 86_400))
    refuse_out_of_sample_leaks(_cfg(tmp_path, seed_genomes=(str(plain),)), [market], None)


def test_published_champion_carries_signed_selection_bars(tmp_path, monkeypatch, sample):
    from gauntlet.publish import publish_champion

    _market, _oos, ins = sample
    monkeypatch.setenv("FORGE_SIGNING_KEY", "k" * 32)
    meta_path = Path(publish_champion(builtin_genome("flow"), tmp_path, run_id="r", symbol="BTCUSDT",
                                      features=["taker_imb"], verdict={"survived": True}, edge_kind="directional",
                                      selected_on=[ins.to_dict()]))
    genome_path = meta_path.with_name(json.loads(meta_path.read_text())["file"])
    prov = seed_provenance(genome_path)
    assert prov.source == "champion meta" and prov.signed and prov.selected_on == (ins,)
    meta = json.loads(meta_path.read_text())
    meta["selected_on"][0]["first_open_ms"] += 86_400_000  # move the record: the signature breaks
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(GenomeError, match="HMAC"):
        seed_provenance(genome_path)


def test_seed_features_pass_the_causal_filter(tmp_path):
    from forge.gp import build_pset

    flow = builtin_genome("flow")
    pset = build_pset(tuple(sorted(set(flow.features) | {"ret_1"})))
    f = tmp_path / "flow.json"
    f.write_text(flow.to_json())
    assert len(_seed_trees((str(f),), pset)) == 1
    # a seed reading a feature PCMCI dropped does not enter the population (the feature used to be kept for it,
    # bypassing the filter)
    assert _seed_trees((str(f),), pset, frozenset(flow.features)) == []


def test_request_seed_is_withheld_when_its_ranking_reached_the_out_of_sample_range(tmp_path):
    """The closed loop, replay included: the Watchtower ranks the seed on live marks up to the request time
    (``_best_genome``), the tail of the replacement run's window, so the attempt evolves without it; a seed
    whose selection bars precede the out-of-sample range is used.  Every attempt runs at alpha / max_attempts."""
    from forge.data.synthetic import bars_from_spec
    from gauntlet.config import GauntletConfig
    from loop.serve import request_alpha, seed_admission

    bars = bars_from_spec("synthetic:null?seed=1&days=12")
    t = bars["open_time"].to_numpy()
    request_time = int(t[-1]) + 60_000
    ranked = _seed(tmp_path, "ranked.json", [DataRange(0, request_time, 0)])
    rec = seed_admission(ranked, bars, 0.7)
    assert not rec["used"] and rec["reason"].startswith("withheld") and rec["source"] == "genome meta"
    early = _seed(tmp_path, "early.json", [DataRange(int(t[0]), int(t[len(t) // 2]), len(t) // 2)])
    assert seed_admission(early, bars, 0.7)["used"]
    assert request_alpha(GauntletConfig(alpha=0.05), 3).alpha == pytest.approx(0.05 / 3)


def test_watchtower_seed_records_its_selection_bars():
    """crucible.oversight's _best_genome returns a copy of the seed with meta.selected_on up to the request
    time (the genome's identity, its sha256, is unchanged)."""
    from crucible.oversight import OversightMixin

    g = builtin_genome("flow")

    class Bench(OversightMixin):
        def __init__(self):
            self.slots = {}
            self.genome_book = {g.sha256: (g, "BTCUSDT", 0.1)}

    seed, score = Bench()._best_genome("BTCUSDT", exclude="x" * 64, now=1_700_000_000_000)
    assert seed.sha256 == g.sha256 and score == 0.1 and "selected_on" not in g.meta
    assert seed.meta["selected_on"][0]["last_open_ms"] == 1_700_000_000_000
    assert seed_provenance_of(seed).source == "genome meta"


def seed_provenance_of(genome):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "seed.json"
        p.write_text(genome.to_json())
        return seed_provenance(p)
