"""numba options shared by the simulator's kernels (``forge.sim.book_nb``, ``agents_nb``, ``rng_nb``)."""

from __future__ import annotations

NO_NRT = {"cache": True, "_nrt": False}
"""``@njit`` options of every kernel on the simulator's hot path: no reference counting.

A perf profile of one simulated day (default DSG, 1.59 M agent wakes) put 42-66 % of all samples of
the process (imports included) in numba's ``NRT_incref``/``NRT_decref`` (atomic ``lock inc/dec`` on
the arrays' meminfos; benchmarks/RESULTS.md, issue 21): every call
and every unpacking of the ``bookt``/``st`` array tuples took and dropped references.  These kernels
only read and write arrays owned by the Python caller (``Simulator`` keeps them alive for the whole
call) and never allocate, so the runtime's reference counting buys nothing here; with it off the
same day runs ~2.8x fewer CPU seconds with bit-identical output.  ``_nrt`` is numba's own target
option (numba.core.options); a kernel compiled with it cannot allocate arrays — compilation fails
with "NRT required but not enabled" — which keeps the hot path allocation-free by construction.
Kernels that allocate (``replay_nb``, ``agents_nb.init_nb``) keep the default options.
"""
