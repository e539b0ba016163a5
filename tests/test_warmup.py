"""numba's kernel cache as forge evolve sees it (issue 27 part 1): the kernel list, the real cache state, the
warm-up that fills it, and what the progress line says while it compiles."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from commands import ui
from forge import warmup

REPO = Path(__file__).resolve().parents[1]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}


def test_every_listed_kernel_is_a_cached_standalone_dispatcher():
    for mod_name, names in warmup.KERNELS.items():
        mod = importlib.import_module(mod_name)
        for name in names:
            d = getattr(mod, name)
            assert type(d._cache).__name__ != "NullCache", f"{mod_name}:{name} is not cache=True"
            assert d.targetoptions.get("inline", "never") == "never", f"{mod_name}:{name} is inlined, never cached"
    assert set(warmup.WEIGHTS) == set(warmup.KERNELS)


def test_after_the_vm_runs_numba_s_index_holds_every_listed_vm_kernel():
    warmup._compile_vm()
    state = warmup.cache_state(("forge.gp.vm_nb",))
    assert state.complete and state.fraction == 1.0, state.missing


COMPILED_CHILD = r"""
import json, sys
from numba.core import event as ev
seen = set()
class L(ev.Listener):
    def on_start(self, e):
        d = e.data["dispatcher"]
        seen.add(f"{d.py_func.__module__}:{d.py_func.__name__}")
    def on_end(self, e):
        pass
ev.register("numba:compile", L())
from forge.warmup import _compile_vm
_compile_vm()
print(json.dumps(sorted(seen)))
"""


@pytest.mark.slow
def test_the_vm_kernels_a_program_compiles_are_exactly_the_listed_ones(tmp_path):
    """On an empty cache, the vm_nb dispatchers compiled for a program are exactly the listed ones (the list the
    progress line counts cannot drift from the kernel module; minutes on 2 cores)."""
    import json

    out = subprocess.run([sys.executable, "-c", COMPILED_CHILD], env=_env(tmp_path / "c"), capture_output=True,
                         text=True, check=True).stdout.splitlines()[-1]
    compiled = {k.split(":")[1] for k in json.loads(out) if k.startswith("forge.gp.vm_nb:")}
    assert compiled == set(warmup.KERNELS["forge.gp.vm_nb"])


def test_an_empty_cache_dir_is_reported_empty_and_the_message_says_compiling(tmp_path):
    code = ("from forge.warmup import cache_state; s = cache_state(); "
            "print(s.cached, s.total, round(s.fraction, 3), s.complete)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path / "empty"), capture_output=True,
                         text=True, check=True).stdout.split()
    total = sum(len(v) for v in warmup.KERNELS.values())
    assert out == ["0", str(total), "0.0", "False"]
    st = warmup.CacheState(cached=10, total=total, fraction=0.42, missing=("x:y",))
    msg = ui.compile_message(st)
    assert msg.startswith(f"compiling numba kernels  42% (10/{total} cached") and "forge warmup" in msg
    assert len(msg) <= 80
    assert "not cached" in ui.warmup_message(st) and "compiling" not in ui.warmup_message(True)


def test_piped_progress_prints_a_compile_line_per_tenth_then_the_generations():
    con = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    p = ui.EvolveProgress(con, live=False, cached_kernels=False)
    for f in (0.0, 0.03, 0.12, 0.15, 0.5, 1.0):
        p.compiling(warmup.CacheState(int(68 * f), 68, f, ()))
    p.cached = warmup.CacheState(68, 68, 1.0, ())
    p.start(1)
    p.generation({"event": "generation", "gen": 0, "generations": 1, "best": 0.5, "hof_best": 0.5})
    lines = con.file.getvalue().splitlines()
    assert [ln.split("%")[0].split()[-1] for ln in lines[:4]] == ["0", "12", "50", "100"]
    assert lines[4] == "gen 0: evaluating the initial population…" and lines[5].startswith("gen 0/1")


@pytest.mark.slow
def test_warmup_fills_an_empty_cache_and_evolve_then_compiles_nothing(tmp_path):
    """`forge warmup` in a fresh NUMBA_CACHE_DIR leaves every listed kernel cached; a forge evolve on that cache
    prints no compile line (minutes on 2 cores)."""
    env = _env(tmp_path / "cache")
    forge = [sys.executable, "-c", "from cli import forge_app; forge_app()"]
    r = subprocess.run([*forge, "warmup", "--json"], env=env, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"missing": []' in r.stdout
    e = subprocess.run([*forge, "evolve", "-c", str(REPO / "configs" / "smoke.toml"), "--gens", "1", "--pop", "8",
                        "--run-dir", str(tmp_path / "run")], env={**env, "COLUMNS": "80"}, capture_output=True,
                       text=True, cwd=REPO)
    assert e.returncode == 0, e.stderr[-2000:]
    assert "compiling" not in e.stdout and "gen 0: evaluating the initial population…" in e.stdout


@pytest.mark.parametrize("parallel", [True, False])
def test_a_failing_warmup_child_is_reported_with_its_name_and_both_children_are_ended(monkeypatch, parallel):
    """Warmup starts its children on construction; wait() raises RuntimeError naming the failed one (here the
    interpreter is /bin/false, so both fail at once) and leaves no child running."""
    monkeypatch.setattr(sys, "executable", "/bin/false")
    job = warmup.Warmup(parallel=parallel, coevolution=False, causal=False)
    assert len(job._procs) == (2 if parallel else 1)  # the sequential form starts the second after the first
    with pytest.raises(RuntimeError, match=r"kernel warm-up \(vm\) failed"):
        job.wait(poll=0.05)
    assert all(p.poll() is not None for p in job._procs)
    job.stop()  # idempotent


def test_a_finished_warmup_reports_the_real_cache_state_of_the_run_s_modules(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", "/bin/true")  # children that compile nothing
    job = warmup.Warmup(parallel=True, coevolution=False)
    assert job._cmds[1][-2:] == ["no-coev", "causal"]
    secs, state = job.wait(poll=0.05)
    assert secs >= 0 and state.total == sum(len(warmup.KERNELS[m]) for m in warmup.run_modules(False))
    assert state.total < sum(len(v) for v in warmup.KERNELS.values())  # the simulator's kernels left out


def test_forge_evolve_waits_for_the_warmup_after_the_banner_and_before_the_workers():
    """The run banner (data loaded, causal filter done) is printed while the kernels may still compile; the
    warm-up is waited for at the "start" event, before the progress view starts generation 0 (and the run
    its fitness workers)."""
    from commands.evolve import _progress_handler
    from forge.core.runconfig import load_run_config

    order = []

    class View:
        def start(self, generations):
            order.append("view.start")

    con = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    span = {"first": "2024-01-01T00:00:00", "last": "2024-01-02T00:00:00"}
    on_event = _progress_handler(con, load_run_config(None), View(), {"run_dir": None, "gen": None}, "",
                                 before_workers=lambda: order.append(("wait", con.file.getvalue().count("\n"))))
    on_event({"event": "start", "run_id": "r", "run_dir": None, "n_bars": 10, "jobs": 2, "population": 4,
              "offspring": 4, "features": ["ret_1"], "generations": 1,
              "split": {"in_sample": span, "out_of_sample": span}})
    assert order == [("wait", 2), "view.start"]  # after the two banner lines
