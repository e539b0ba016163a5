"""numba's on-disk cache of the kernels a ``forge evolve`` run uses: its real state, and filling it first.

A first run on a machine (or after an update of a kernel's source) compiles every ``@njit(cache=True)``
kernel of the run: minutes on 2 cores (``benchmarks/cold_start.py`` times it per kernel).  This module

* lists those kernels (:data:`KERNELS`, checked against a run by ``tests/test_warmup.py``),
* reads numba's cache index of each (:func:`cache_state`): a kernel counts as cached when its index
  file exists, was written by this numba version and matches its source file's stamp, exactly the test
  numba applies before loading it, so "cached" means no compilation will happen;
* fills the cache (:func:`warmup`) in two processes at once, one compiling the VM
  (``forge.gp.vm_nb``), the other every other kernel through a tiny run, so two cores compile
  different kernels and the run's own workers never compile the same kernels side by side;
  ``forge warmup`` runs it for CI and container images, ``forge evolve`` before its first generation
  when the cache is incomplete.

The cache lives in ``__pycache__`` next to each module, or under ``NUMBA_CACHE_DIR`` when that is set
(a read-only or non-editable install must set it; README).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["KERNELS", "SIM_MODULES", "CacheState", "Warmup", "cache_state", "run_modules", "warmup"]

KERNELS: dict[str, tuple[str, ...]] = {
    "forge.features.features_nb": ("higher_tf_map_nb", "log_return_nb", "rolling_mean_std_nb", "wilder_atr_nb",
                                   "wilder_rsi_nb", "zscore_nb"),
    "forge.causal": ("_vol_standardized_nb",),
    "forge.gp.vm_nb": ("_centred_sums_t", "_corr_blk", "_corr_exact_blk", "_corr_from_centred_t", "_ema_weights",
                       "_latch_blk", "_min_hold_blk", "_nan_rule_blk", "_exact_at_t", "_exact_sums_blk",
                       "_exact_minmax_blk", "_exact_rank_blk", "_sums_blk", "_minmax_blk", "_ema_blk",
                       "_roll_mean_blk", "_roll_std_blk", "_roll_min_blk", "_roll_max_blk", "_roll_rank_blk",
                       "_roll_zscore_blk", "_roll_ema_blk", "apply_blk", "_run_blocks_nb", "run_program_nb",
                       "run_program_store_nb"),
    "forge.backtest.backtest_nb": ("backtest_metrics_nb", "backtest_record_nb", "count_target_changes_nb"),
    "forge.evolution.fitness_nb": ("alpha_period_scores_nb",),
    "forge.sim.rng_nb": ("exponential_nb", "laplace_nb", "next_u64_nb", "normal_nb", "randint_nb", "uniform_nb"),
    "forge.sim.book_nb": ("_release", "_rescan_ask", "_rescan_bid", "_rest", "_unlink", "_untrack",
                          "book_accepts_nb", "book_cancel_nb", "book_depth_nb", "book_limit_nb", "book_match_nb",
                          "book_mid2_nb", "book_reset_nb", "book_shift_nb"),
    "forge.sim.agents_nb": ("_clock", "_finalize_bars", "_hunter", "_less", "_mm", "_momentum", "_noise",
                            "_predator_direction", "_shock", "_sift_down", "_sift_up", "_slow_set", "_slow_update",
                            "_spoofer", "_strategy_order", "_swap", "_vacuum", "_value", "heap_build_nb",
                            "heap_update_nb", "init_nb", "run_nb"),
}
"""module -> the ``cache=True`` dispatchers of it that a default ``forge evolve`` run compiles (callees
included: each is cached on its own)."""

WEIGHTS: dict[str, float] = {"forge.gp.vm_nb": 100.0, "forge.sim.agents_nb": 46.0,
                             "forge.backtest.backtest_nb": 13.0, "forge.sim.book_nb": 9.0,
                             "forge.features.features_nb": 2.0, "forge.sim.rng_nb": 1.0, "forge.evolution.fitness_nb": 0.5,
                             "forge.causal": 0.2}
"""Relative compile seconds per module (benchmarks/cold_start.py --profile, 2 cores), so the fraction
shown while compiling follows the time it takes rather than the count of kernels."""


@dataclass(frozen=True)
class CacheState:
    """cached / total: kernels of :data:`KERNELS` found in numba's cache; fraction: the share of the
    compile time they stand for (:data:`WEIGHTS`), in [0, 1]; missing: "module:name" of the others."""

    cached: int
    total: int
    fraction: float
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.cached == self.total


def _is_cached(dispatcher: object) -> bool:
    """numba's own freshness test of a dispatcher's cache index (numba.core.caching: version, source stamp)."""
    try:
        return bool(dispatcher._cache._cache_file._load_index())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a numba without this layout, an unreadable index: not cached
        return False


SIM_MODULES = ("forge.sim.rng_nb", "forge.sim.book_nb", "forge.sim.agents_nb")
"""The simulator's kernels: a run compiles them only with co-evolution on."""


def run_modules(coevolution: bool = True) -> tuple[str, ...]:
    """The kernel modules of :data:`KERNELS` a run compiles (the simulator's only with co-evolution)."""
    return tuple(m for m in KERNELS if coevolution or m not in SIM_MODULES)


def cache_state(modules: tuple[str, ...] | None = None) -> CacheState:
    """The cache state of every kernel of :data:`KERNELS` (of ``modules`` only when given; imports the
    modules, compiles nothing)."""
    cached, total, missing, weight, done = 0, 0, [], 0.0, 0.0
    for mod_name, names in KERNELS.items():
        if modules is not None and mod_name not in modules:
            continue
        mod = importlib.import_module(mod_name)
        hits = 0
        for name in names:
            if _is_cached(getattr(mod, name)):
                hits += 1
            else:
                missing.append(f"{mod_name}:{name}")
        cached, total = cached + hits, total + len(names)
        w = WEIGHTS.get(mod_name, 1.0)
        weight, done = weight + w, done + w * hits / len(names)
    return CacheState(cached, total, done / weight if weight else 1.0, tuple(missing))


def _compile_vm() -> None:
    """Compile the VM (``run_program_nb`` and every kernel it calls) with the argument types a run passes."""
    import numpy as np

    from forge.gp.opcodes import Op
    from forge.gp.vm import BufferPool, Program, run_compiled

    one = np.zeros(1, dtype=np.int64)
    prog = Program(op=np.array([Op.ADD], dtype=np.int64), dst=one, a=one, b=one + 1, c=one, w=one,
                   k=np.zeros(1), n_registers=1, lookback=0, n_features=2, n_nodes=3, sha256="warmup")
    X = np.ascontiguousarray(np.ones((2, 300)))
    run_compiled(prog, X, BufferPool())


def _compile_rest(folder: str, coevolution: bool = True, causal: bool = True) -> None:
    """Compile every other kernel of :data:`KERNELS` by a tiny ``forge evolve`` run (features, causal filter,
    backtests, a co-evolution encounter in the simulator, the out-of-sample report) whose programs are
    replaced by a fixed position series, so this process never compiles the VM the other one is compiling.
    causal: False skips the causal filter (a ``forge evolve`` that started this warm-up compiles the
    filter's kernels itself, in its own causal filter, at the same time)."""
    from pathlib import Path

    import numpy as np

    import forge.gp.vm as vm
    from forge.core.runconfig import load_run_config, with_overrides
    from forge.evolution.run import evolve

    def fixed(op, dst, a, b, c, w, k, X, regs, out, clip_root, block):  # noqa: ANN001 - run_program_nb's arguments
        out[:] = np.sign(np.sin(np.arange(out.shape[0]) / 30.0)) if clip_root else X[0]

    def fixed_store(op, dst, a, b, c, w, k, X, regs, out, clip_root, block, S, store):  # noqa: ANN001
        fixed(op, dst, a, b, c, w, k, X, regs, out, clip_root, block)
        for r in store[store >= 0]:  # the subtree cache's rows: defined values, not the program's
            S[r] = X[0]

    vm.run_program_nb = fixed
    vm.run_program_store_nb = fixed_store
    cfg = load_run_config(None)
    cfg = with_overrides(cfg, "evolve", population=6, generations=1, jobs=1, checkpoint=False)
    cfg = with_overrides(cfg, "causal", max_samples=3000, enabled=causal)
    cfg = with_overrides(cfg, "coevolution", adversarial_top=1, predators=2, enabled=coevolution)
    evolve(cfg, run_dir=Path(folder) / "run")


class Warmup:
    """A warm-up under way: the VM compiling in one child process, every other kernel in another (side by
    side when ``parallel``, else the second starts when the first is done), started on construction so the
    caller can do other work meanwhile -- ``forge evolve`` loads its data and runs its causal filter while
    they compile (``causal=False``: the children leave the filter's kernels to it).  The children inherit
    the environment (``NUMBA_CACHE_DIR``).  coevolution: False leaves the simulator's kernels out.
    :meth:`wait` for the result, :meth:`stop` to end the children early (idempotent)."""

    def __init__(self, parallel: bool = True, coevolution: bool = True, causal: bool = True):
        self.t0 = time.perf_counter()
        self.mods = run_modules(coevolution)
        self._tmp = tempfile.TemporaryDirectory(prefix="forge-warmup-")
        self._cmds = [[sys.executable, "-m", "forge.warmup", "vm"],
                      [sys.executable, "-m", "forge.warmup", "rest", self._tmp.name,
                       "coev" if coevolution else "no-coev", "causal" if causal else "no-causal"]]
        self._parallel = parallel
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[object] = []
        self._launch(self._cmds[0])
        if parallel:
            self._launch(self._cmds[1])

    def _launch(self, cmd: list[str]) -> None:
        log = tempfile.TemporaryFile()
        self._logs.append(log)
        self._procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()))

    def wait(self, progress: Callable[[CacheState], None] | None = None,
             poll: float = 1.0) -> tuple[float, CacheState]:
        """Wait for both children, calling ``progress`` with the :func:`cache_state` (of :func:`run_modules`)
        every ``poll`` seconds meanwhile.  returns (seconds since the start, final state).  raises
        RuntimeError with the child's last output when one fails (the children are stopped either way)."""
        try:
            _wait(self._procs[0], progress, poll, self.mods)
            if not self._parallel:
                self._launch(self._cmds[1])
            _wait(self._procs[1], progress, poll, self.mods)
            for p, log in zip(self._procs, self._logs):
                if p.returncode:
                    log.seek(0)  # type: ignore[attr-defined]
                    tail = log.read().decode(errors="replace").strip().splitlines()[-5:]  # type: ignore[attr-defined]
                    raise RuntimeError(f"kernel warm-up ({' '.join(p.args[3:4])}) failed: " + " | ".join(tail))
        finally:
            self.stop()
        return time.perf_counter() - self.t0, cache_state(self.mods)

    def stop(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        self._tmp.cleanup()


def warmup(parallel: bool = True, progress: Callable[[CacheState], None] | None = None,
           poll: float = 1.0, coevolution: bool = True) -> tuple[float, CacheState]:
    """Fill numba's cache with every kernel of :data:`KERNELS` (:class:`Warmup`, waited for): the VM in one
    child process and the rest in another, side by side when ``parallel`` (else one after the other);
    ``progress`` gets the :func:`cache_state` every ``poll`` seconds while they run.  coevolution: False
    leaves the simulator's kernels out (a run without co-evolution never compiles them); the states are of
    :func:`run_modules` then.  returns (seconds, final state).  raises RuntimeError with the child's last
    output when one fails."""
    return Warmup(parallel, coevolution).wait(progress, poll)


def _wait(p: subprocess.Popen[bytes], progress: Callable[[CacheState], None] | None, poll: float,
          mods: tuple[str, ...]) -> None:
    while True:
        try:
            p.wait(timeout=poll)
            return
        except subprocess.TimeoutExpired:
            if progress is not None:
                progress(cache_state(mods))


if __name__ == "__main__":  # the warm-up's child processes: python -m forge.warmup vm | rest FOLDER
    if sys.argv[1] == "vm":
        _compile_vm()
    else:
        _compile_rest(sys.argv[2], coevolution=sys.argv[3] != "no-coev",
                      causal=len(sys.argv) < 5 or sys.argv[4] != "no-causal")
