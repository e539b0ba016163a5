"""Champion intake that cannot hurt the trader (issue 18, items 1-2): hostile files in the champions folder
are rejected per file while trading goes on; the HMAC covers genome and meta; signatures by default on
exchange venues; the gauntlet verdict is checked; promotion needs a significant shadow record."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from crucible.builtin import builtin_genome
from crucible.config import HotswapConfig, config_from_dict
from crucible.hotswap import PitCrew, promotion_test
from crucible.journal import Journal
from crucible.runtime import Runtime, run_live
from crucible.venues.replay import ReplayVenue
from forge.core.errors import ConfigError, GenomeError
from forge.data.loader import load_sample
from forge.gp import Genome
from forge.core.champion import champion_signature, verify_champion
from forge.core.safeio import json_depth
from gauntlet.publish import publish_champion

SYM = "BTCUSDT"
KEY = "k3y"


@pytest.fixture(scope="module")
def sample():
    return load_sample()[0]


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("FORGE_SIGNING_KEY", raising=False)


def make_cfg(tmp: Path, slots=None, **sections):
    d = {"crucible": {"journal": str(tmp / "journal.sqlite"), "champions_dir": str(tmp / "champions"),
                      "requests_dir": str(tmp / "requests"), "kill_file": str(tmp / "KILL"), "history_bars": 400,
                      "snapshot_every": 1},
         "hotswap": {"enabled": True, "poll_bars": 1, "shadow_bars": 30},
         "slots": slots or [{"id": "a", "symbol": SYM, "genome": "builtin:momentum"},
                            {"id": "b", "symbol": SYM, "genome": "builtin:meanrev"}]}
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return config_from_dict(d, "test")


def replay(sample, start=300, n=300) -> ReplayVenue:
    return ReplayVenue({SYM: sample.head(start + n)}, start=start)


def _publish(folder: Path, genome: Genome, key=None, **kw) -> Path:
    return publish_champion(genome, folder, run_id="t", symbol=kw.pop("symbol", SYM), features=list(genome.features),
                            verdict=kw.pop("verdict", {"survived": True}), key=key, **kw)


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _scan(crew: PitCrew, timeout: float = 20.0):
    """Run one scan in a thread: a hang (e.g. a FIFO opened blocking) fails the test instead of the suite."""
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", crew.scan(set())), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "scan hung"
    return out["r"]


def _hostile_folder(folder: Path, outside: Path) -> dict[str, str]:
    """Fill ``folder`` with the hostile set; returns {meta file name: expected words in the reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    expect = {}
    # 1. a FIFO named like a meta file
    os.mkfifo(folder / "fifo.meta.json")
    expect["fifo.meta.json"] = "FIFO"
    # 2. a valid meta whose genome file is a FIFO
    m = json.loads(_publish(folder, builtin_genome("rsi")).read_text())
    gfile = folder / m["file"]
    gfile.unlink()
    os.mkfifo(gfile)
    expect[f"{m['file'][:-5]}.meta.json"] = "FIFO"
    # 3. a meta whose "file" points at /dev/zero (absolute path) and 4. at ../ outside the folder
    for name, target in (("zero", "/dev/zero"), ("escape", "../outside/genome.json")):
        (folder / f"{name}.meta.json").write_text(json.dumps({**m, "file": target}))
        expect[f"{name}.meta.json"] = "same folder"
    # 5. a genome that is a symlink to /dev/zero
    (folder / "zlink.json").symlink_to("/dev/zero")
    (folder / "zlink.meta.json").write_text(json.dumps({**m, "file": "zlink.json"}))
    expect["zlink.meta.json"] = "symbolic link"
    # 6. a meta file that is a symlink to a valid champion outside the folder
    out_meta = _publish(outside, builtin_genome("flow"))
    (folder / "linked.meta.json").symlink_to(out_meta)
    expect["linked.meta.json"] = "symbolic link"
    # 7. 200,000-level nesting in a meta file
    (folder / "deepmeta.meta.json").write_bytes(b'{"schema": ' + _deep(200_000) + b"}")
    expect["deepmeta.meta.json"] = "nested"
    # 8. 200,000-level nesting in a genome file (its sha256 matches the meta, so only the depth check stops it)
    deep_g = b'{"meta": ' + _deep(200_000) + b"}"
    (folder / "deepg.json").write_bytes(deep_g)
    (folder / "deepg.meta.json").write_text(json.dumps({**m, "file": "deepg.json",
                                                        "sha256": hashlib.sha256(deep_g).hexdigest()}))
    expect["deepg.meta.json"] = "nested"
    # 9. a 50 MB genome (sparse file) and 10. a 50 MB meta file
    with open(folder / "big.json", "wb") as fh:
        fh.truncate(50 * 2**20)
    (folder / "big.meta.json").write_text(json.dumps({**m, "file": "big.json"}))
    expect["big.meta.json"] = "limit"
    with open(folder / "bigmeta.meta.json", "wb") as fh:
        fh.truncate(50 * 2**20)
    expect["bigmeta.meta.json"] = "limit"
    # 11. a directory named like a meta file
    (folder / "dir.meta.json").mkdir()
    expect["dir.meta.json"] = "directory"
    return expect


# ----------------------------------------------------------------------------- item 1: hostile files


def test_json_depth_counts_outside_strings_only():
    assert json_depth(b"1") == 0 and json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[[[\\"[[["}') == 1
    assert json_depth(_deep(200_000)) == 200_000


def test_each_hostile_file_rejected_with_its_reason(tmp_path):
    folder = tmp_path / "champions"
    expect = _hostile_folder(folder, tmp_path / "outside")
    crew = PitCrew(folder)
    accepted, rejected = _scan(crew)
    assert accepted == []
    got = {Path(f).name: reason for f, reason in rejected}
    assert set(got) == set(expect), (sorted(got), sorted(expect))
    for name, words in expect.items():
        assert words in got[name], (name, got[name])
        assert "\n" not in got[name] and len(got[name]) < 500  # one line, no traceback
    assert _scan(crew) == ([], [])  # each file version examined once


def test_hostile_files_do_not_change_trading(tmp_path, sample):
    """A replay of 300 bars with the hostile set in the champions folder ends with the same fills as without
    it; every hostile file is journaled as a rejection."""
    runs = {}
    for kind in ("clean", "hostile"):
        d = tmp_path / kind
        cfg = make_cfg(d)
        if kind == "hostile":
            expect = _hostile_folder(Path(cfg.general.champions_dir), d / "outside")
        s = run_live(cfg, venue=replay(sample))
        j = Journal(cfg.general.journal, readonly=True)
        try:
            runs[kind] = (s, [(f["slot"], f["qty"], f["price"], f["fee"], f["time_ms"]) for f in j.fills()],
                          j.events("reject"))
        finally:
            j.close()
    (s0, f0, r0), (s1, f1, r1) = runs["clean"], runs["hostile"]
    assert s1["bars"] == s0["bars"] == 300 and s1["stopped_by"] == "end"
    assert len(f0) > 10 and f1 == f0
    assert r0 == [] and {Path(e["data"]["file"]).name for e in r1} == set(expect)
    assert s1["rejected_files"] == len(expect) and s1["swaps"] == 0


def test_unexpected_exception_in_one_file_is_a_rejection(tmp_path, monkeypatch):
    folder = tmp_path / "champions"
    _publish(folder, builtin_genome("rsi"))
    _publish(folder, builtin_genome("flow"))
    import crucible.hotswap as hs

    real = hs.verify_champion
    calls = []

    def boom(p, **kw):
        calls.append(p)
        if len(calls) == 1:
            raise MemoryError("simulated")
        return real(p, **kw)

    monkeypatch.setattr(hs, "verify_champion", boom)
    accepted, rejected = _scan(PitCrew(folder))
    assert len(accepted) == 1 and len(rejected) == 1 and "MemoryError" in rejected[0][1]


def test_oversized_genome_tokens_rejected(tmp_path):
    folder = tmp_path / "champions"
    _publish(folder, builtin_genome("trend"))  # 8 tokens
    accepted, rejected = _scan(PitCrew(folder, max_genome_tokens=5))
    assert accepted == [] and "tokens" in rejected[0][1]


# ----------------------------------------------------------------------------- item 2: signatures & verdict


def test_signed_meta_edits_rejected(tmp_path):
    folder = tmp_path / "champions"
    meta_path = _publish(folder, builtin_genome("rsi"), key=KEY)
    verify_champion(meta_path, key=KEY)  # intact: accepted
    good = json.loads(meta_path.read_text())
    for field, value in (("symbol", "ETHUSDT"), ("verdict", {"survived": True, "forged": 1}), ("run_id", "x")):
        meta_path.write_text(json.dumps({**good, field: value}))
        with pytest.raises(GenomeError, match="HMAC"):
            verify_champion(meta_path, key=KEY)
    # a forged meta carrying the old genome-only HMAC (valid for the genome bytes) is refused too
    data = (folder / good["file"]).read_bytes()
    genome_only = hmac.new(KEY.encode(), data, hashlib.sha256).hexdigest()
    meta_path.write_text(json.dumps({**good, "symbol": "ETHUSDT", "hmac_sha256": genome_only}))
    with pytest.raises(GenomeError, match="HMAC"):
        verify_champion(meta_path, key=KEY)
    meta_path.write_text(json.dumps({**good, "schema": "forge-champion/1", "hmac_sha256": genome_only}))
    with pytest.raises(GenomeError, match="signs the genome only"):
        verify_champion(meta_path, key=KEY)


def test_verdict_must_say_survived(tmp_path):
    folder = tmp_path / "champions"
    g = builtin_genome("rsi")
    with pytest.raises(GenomeError, match="did not survive"):
        _publish(folder, g, key=KEY, verdict={"survived": False})
    meta_path = _publish(folder, g, key=KEY)
    m = json.loads(meta_path.read_text())
    data = (folder / m["file"]).read_bytes()
    for forged in ({**m, "survived": False}, {**m, "verdict": {"survived": False}},
                   {k: v for k, v in m.items() if k not in ("survived",)} | {"verdict": {}}):
        forged["hmac_sha256"] = champion_signature(forged, data, KEY.encode())  # validly signed, not survived
        meta_path.write_text(json.dumps(forged))
        with pytest.raises(GenomeError, match="verdict"):
            verify_champion(meta_path, key=KEY)


def test_signatures_required_by_default_on_exchange_venues(tmp_path, sample, monkeypatch):
    monkeypatch.setenv("CRUCIBLE_BENCH_KEY", "test-bench-key-0123456789")  # an exchange-like venue needs one
    hs = HotswapConfig()
    assert hs.require_signature == "auto" and hs.signatures_required(True) and not hs.signatures_required(False)
    assert HotswapConfig(require_signature=True).signatures_required(False)
    with pytest.raises(ConfigError):
        config_from_dict({"hotswap": {"require_signature": "maybe"},
                          "slots": [{"id": "a", "symbol": SYM, "genome": "builtin:rsi"}]})
    folder = tmp_path / "champions"
    _publish(folder, builtin_genome("rsi"))  # unsigned

    class ExchangeLike(ReplayVenue):
        name = "bybit-sandbox"

    cfg = make_cfg(tmp_path)
    for v, required in ((ExchangeLike({SYM: sample.head(400)}, start=300), True), (replay(sample, n=10), False)):
        j = Journal(tmp_path / f"j{int(required)}.sqlite")
        try:
            rt = Runtime(cfg, v, j)
            assert rt.pit.require_signature is required
            accepted, rejected = rt.pit.scan(set())
            if required:
                assert accepted == [] and "signatures are required" in rejected[0][1]
            else:  # replay: accepted with a journaled warning
                assert len(accepted) == 1 and rejected == []
                assert [e["kind"] for e in j.events()] == ["warning"] and "unsigned" in j.events()[0]["data"]["reason"]
        finally:
            j.close()


# ----------------------------------------------------------------------------- item 2: promotion test


def test_promotion_test_equal_not_promoted_better_promoted():
    rng = np.random.default_rng(3)
    champ = 200 * np.cumprod(1 + rng.normal(0, 1e-3, 240))
    assert not promotion_test(champ, champ)["promote"]  # identical record
    better = 200 * np.cumprod(1 + np.r_[0, np.diff(champ) / champ[:-1]] + 5e-4)  # +5 bps every bar
    res = promotion_test(better, champ)
    assert res["promote"] and res["p_value"] < 1e-6 and res["mean_diff"] == pytest.approx(5e-4, rel=1e-6)
    assert not promotion_test(champ, better)["promote"]
    with pytest.raises(ValueError):
        promotion_test(champ[:10], champ)
    with pytest.raises(ValueError):
        promotion_test(champ, champ, alpha=1.0)


def test_promotion_test_size_under_the_null():
    """Two independent strategies with the same return distribution: the challenger is promoted in about
    alpha of the trials (one-sided test at 5%), not about half of them as with 'higher Sharpe wins'."""
    rng = np.random.default_rng(7)
    n_trials, promoted, sharpe_wins = 400, 0, 0
    for _ in range(n_trials):
        r = rng.standard_t(4, size=(2, 240)) * 1e-3 + 2e-5
        a, b = 200 * np.cumprod(1 + r[0]), 200 * np.cumprod(1 + r[1])
        promoted += promotion_test(a, b, alpha=0.05)["promote"]
        sharpe_wins += r[0].mean() / r[0].std() > r[1].mean() / r[1].std()
    assert 0.02 <= promoted / n_trials <= 0.09, promoted
    assert 0.4 <= sharpe_wins / n_trials <= 0.6


def _genome(tokens, consts) -> Genome:
    return Genome.from_tokens(tokens, consts)


def test_runtime_promotes_clearly_better_not_equal(tmp_path, sample):
    """A champion that flips on every 1-bar return sign pays fees every few bars; a flat challenger beats it
    clearly and is promoted.  A near-copy of the champion (threshold moved by 1e-12: the same trades) is not."""
    flipper = _genome(["long_short", "gt_c", "feature:ret_1", "const:0", "lt_c", "feature:ret_1", "const:1"],
                      [0.0, 0.0])
    flat = _genome(["long_only", "gt_c", "feature:ret_1", "const:0"], [1.0])
    near_copy = _genome(["long_short", "gt_c", "feature:ret_1", "const:0", "lt_c", "feature:ret_1", "const:1"],
                        [1e-12, -1e-12])
    results = {}
    for name, challenger in (("better", flat), ("equal", near_copy)):
        d = tmp_path / name
        champ_file = d / "champ.json"
        champ_file.parent.mkdir(parents=True)
        champ_file.write_text(flipper.to_json())
        cfg = make_cfg(d, slots=[{"id": "a", "symbol": SYM, "genome": str(champ_file)}],
                       hotswap={"shadow_bars": 60}, cwo={"min_weight": 1.0, "max_weight": 1.0})  # no capital flows
        _publish(Path(cfg.general.champions_dir), challenger)
        s = run_live(cfg, venue=replay(sample, n=120))
        j = Journal(cfg.general.journal, readonly=True)
        try:
            tests = j.events("promotion_test")
        finally:
            j.close()
        results[name] = (s, tests)
    s, tests = results["better"]
    assert s["swaps"] == 1 and s["slots"][0]["genome"] == flat.sha256[:16]
    assert len(tests) == 1 and tests[0]["data"]["promote"] and tests[0]["data"]["p_value"] < 0.05
    s, tests = results["equal"]
    assert s["swaps"] == 0 and s["slots"][0]["genome"] == flipper.sha256[:16]
    assert len(tests) == 1 and not tests[0]["data"]["promote"]


def test_scan_of_unchanged_folder_is_cheap_but_sees_new_and_edited_files(tmp_path):
    folder = tmp_path / "champions"
    m1 = _publish(folder, builtin_genome("rsi"))
    crew = PitCrew(folder, full_check_every=4)
    assert len(crew.scan(set())[0]) == 1
    _publish(folder, builtin_genome("flow"))  # renamed into the folder: seen at the next scan
    assert len(crew.scan(set())[0]) == 1
    g1 = folder / json.loads(m1.read_text())["file"]
    os.utime(g1, ns=(1, 1))
    with open(g1, "a") as fh:  # an in-place edit does not touch the folder's mtime
        fh.write(" ")
    st = os.stat(folder)
    os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns))
    seen = [crew.scan(set())[1] for _ in range(4)]
    assert sum(len(r) for r in seen) == 1 and "sha256" in [r for r in seen if r][0][0][1]
