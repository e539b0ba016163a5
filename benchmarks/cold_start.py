"""Where a first ``forge evolve`` spends its time before generation 0 (issue 27 part 1).

One command, three measurements, one table each::

    python benchmarks/cold_start.py            # clock (cold, then warm) + compile profile
    python benchmarks/cold_start.py --clock    # only the end-to-end clock
    python benchmarks/cold_start.py --profile  # only the per-kernel compile profile
    python benchmarks/cold_start.py --vm       # only the VM's compile profile
    python benchmarks/cold_start.py --json out.json

1. **clock**: ``forge evolve`` with the default config on the embedded sample, as a user runs it (a
   child process, stdout piped, ``COLUMNS=80``), with an *empty* numba cache (a fresh temporary
   ``NUMBA_CACHE_DIR``) and then again on the cache that run left (warm).  Reported: seconds from the
   process start to the run banner (imports, data load, causal filter) and to the first ``gen 0/`` line
   (the issue's clock: <= 60 s cold on 2 cores).  The child is stopped once ``gen 0/`` is printed.
2. **warmup**: ``forge warmup`` in a fresh cache (what CI / a container image build pays once), then the
   clock on that cache.
3. **profile**: the same run in-process (``jobs=1``, stopped after generation 0) with a listener on
   numba's ``numba:compile`` event (fired only on a cache miss, i.e. a real compilation): exclusive
   compile seconds per dispatcher (time inside nested compilations of callees is charged to the callee),
   summed per kernel module.

The machine's load average (``os.getloadavg``) is printed next to the figures: on a shared machine every
number is inflated, re-run on an idle one for the figures in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORGE = [sys.executable, "-c", "import sys; from cli import forge_app; sys.argv[0] = 'forge'; forge_app()"]


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), COLUMNS="80", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and every live descendant, each with its reaped
    children (/proc/PID/stat fields utime, stime, cutime, cstime); 0.0 where /proc is not readable."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}
    try:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]) / tick)  # ppid; utime stime cutime cstime
    except OSError:
        return 0.0
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo.extend(c for c, (pp, _s) in stats.items() if pp == p)
    return total


def clock(cache: Path, out: Path, extra: tuple[str, ...] = ()) -> dict[str, float | str]:
    """Seconds from starting ``forge evolve`` to its run banner and to its first "gen 0/" line, and the CPU
    seconds its process tree (warm-up children and fitness workers included) had used by that line; the
    child is terminated after that line.  raises RuntimeError when it exits without printing it."""
    t0 = time.perf_counter()
    cmd = [*FORGE, "evolve", "--run-dir", str(out), "--force", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    banner = gen0 = None
    cpu = float("nan")
    lines = []
    notes = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.perf_counter() - t0
            lines.append(line.rstrip())
            if banner is None and line.startswith("run "):
                banner = t
            if "compil" in line and gen0 is None:
                notes.append(line.strip())
            if line.startswith("gen 0/"):
                gen0 = t
                cpu = _tree_cpu(proc.pid)
                break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if gen0 is None:
        raise RuntimeError("forge evolve ended without a 'gen 0/' line:\n" + "\n".join(lines[-20:]))
    return {"to_banner_s": round(banner or float("nan"), 1), "to_gen0_s": round(gen0, 1),
            "cpu_to_gen0_s": round(cpu, 1), "loadavg_1m": round(os.getloadavg()[0], 2),
            "compile_note": notes[0] if notes else ""}


def warmup(cache: Path) -> dict[str, float]:
    """``forge warmup`` into ``cache``: wall seconds and CPU seconds of it and its children (RUSAGE_CHILDREN)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([*FORGE, "warmup"], cwd=ROOT, env=_env(cache), check=True, stdout=subprocess.DEVNULL)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1)}


PROFILE_CHILD = r"""
import json, sys, time
from collections import defaultdict
from numba.core import event as ev

t_start = time.perf_counter()
stack, own, count = [], defaultdict(float), defaultdict(int)

class L(ev.Listener):
    def on_start(self, event):
        stack.append([time.perf_counter(), 0.0])
    def on_end(self, event):
        t, child = stack.pop()
        d = time.perf_counter() - t
        disp = event.data["dispatcher"]
        key = f"{disp.py_func.__module__}:{disp.py_func.__qualname__}"
        own[key] += d - child
        count[key] += 1
        if stack:
            stack[-1][1] += d

ev.register("numba:compile", L())
from forge.core.runconfig import load_run_config, with_overrides
from forge.evolution.run import evolve
cfg = with_overrides(load_run_config(None), "evolve", jobs=1)
marks = {}
def progress(e):
    marks.setdefault(e["event"], time.perf_counter() - t_start)
evolve(cfg, run_dir=__import__("pathlib").Path(sys.argv[1]), progress=progress, stop_after=0)
print(json.dumps({"total_s": time.perf_counter() - t_start, "marks": marks,
                  "kernels": {k: [own[k], count[k]] for k in own}}))
"""


VM_CHILD = PROFILE_CHILD.split("from forge.core.runconfig")[0] + r"""
from forge.warmup import _compile_vm
_compile_vm()
print(json.dumps({"total_s": time.perf_counter() - t_start, "marks": {},
                  "kernels": {k: [own[k], count[k]] for k in own}}))
"""


def profile_vm(cache: Path) -> dict:
    """Per-dispatcher compile seconds of the VM alone (``run_program_nb`` and its callees) on an empty cache."""
    res = subprocess.run([sys.executable, "-c", VM_CHILD], cwd=ROOT, env=_env(cache), capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def profile(cache: Path, out: Path) -> dict:
    """Per-dispatcher compile seconds of an in-process run to generation 0 on an empty cache."""
    res = subprocess.run([sys.executable, "-c", PROFILE_CHILD, str(out)], cwd=ROOT, env=_env(cache),
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _print_profile(p: dict, top: int = 15,
                   title: str = "compile profile (in-process, jobs=1, stopped after gen 0)") -> None:
    kernels = p["kernels"]
    per_mod: dict[str, list[float]] = {}
    for k, (s, n) in kernels.items():
        acc = per_mod.setdefault(k.split(":")[0], [0.0, 0])
        acc[0] += s
        acc[1] += n
    total = sum(s for s, _n in kernels.values())
    print(f"\n{title}: {p['total_s']:.1f} s wall, "
          f"{total:.1f} s compiling ({len(kernels)} dispatchers)")
    print(f"{'module':<34}{'compiles':>9}{'seconds':>9}{'share':>8}")
    for mod, (s, n) in sorted(per_mod.items(), key=lambda kv: -kv[1][0]):
        print(f"{mod:<34}{n:>9}{s:>9.1f}{s / total if total else 0:>8.0%}")
    print(f"\ntop {top} dispatchers (exclusive compile seconds)")
    print(f"{'dispatcher':<58}{'n':>4}{'seconds':>9}")
    for k, (s, n) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{k[-57:]:<58}{n:>4}{s:>9.1f}")
    marks = p.get("marks", {})
    if marks:
        print("\nprogress events (seconds from start): "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(marks.items(), key=lambda kv: kv[1])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clock", action="store_true", help="only the end-to-end clock (cold, warm, after warmup)")
    ap.add_argument("--profile", action="store_true", help="only the per-kernel compile profile")
    ap.add_argument("--vm", action="store_true", help="only the VM's compile profile (run_program_nb and callees)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--cold-only", action="store_true", help="with --clock: only the cold and warm runs (no forge warmup)")
    args = ap.parse_args(argv)
    both = not (args.clock or args.profile or args.vm)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores "
          f"(figures are inflated when it exceeds the core count)")
    figures: dict = {"loadavg": load, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="forge-cold-") as tmp:
        tmp = Path(tmp)
        if args.clock or both:
            cold = clock(tmp / "cache", tmp / "run")
            warm = clock(tmp / "cache", tmp / "run")
            if args.cold_only:
                wu, after = {"wall_s": float("nan"), "cpu_s": float("nan")}, dict(warm, to_banner_s="-", to_gen0_s="-",
                                                                                 cpu_to_gen0_s="-", loadavg_1m="-")
            else:
                wu = warmup(tmp / "cache2")
                after = clock(tmp / "cache2", tmp / "run")
            figures["clock"] = {"cold": cold, "warm": warm, "warmup_s": wu, "after_warmup": after}
            print("\nforge evolve (default config, embedded sample, piped, COLUMNS=80)")
            print(f"{'numba cache':<30}{'to banner s':>12}{'to gen 0/ s':>12}{'CPU s':>8}{'load':>7}")
            for name, c in (("empty (cold)", cold), ("warm (second run)", warm),
                            (f"after forge warmup ({wu['wall_s']:.0f} s)", after)):
                print(f"{name:<30}{c['to_banner_s']:>12}{c['to_gen0_s']:>12}{c['cpu_to_gen0_s']:>8}"
                      f"{c['loadavg_1m']:>7}")
            print(f"forge warmup: {wu['wall_s']} s wall, {wu['cpu_s']} CPU s (its child processes)")
            if cold["compile_note"]:
                print(f"cold run said: {cold['compile_note'][:200]}")
        if args.profile or both:
            p = profile(tmp / "cache3", tmp / "run")
            figures["profile"] = p
            _print_profile(p)
        if args.vm:
            p = profile_vm(tmp / "cache4")
            figures["vm"] = p
            _print_profile(p, title="VM alone (run_program_nb and callees)")
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
