"""Genome -> flat opcode program -> numba interpreter over whole arrays.

``compile_program`` turns a genome's prefix tokens into postfix
instructions with register allocation (a register is freed as soon as its
last reader has run, so a tree of any size needs only as many (n,) buffers
as its evaluation stack is deep; ``run_program_flat_nb`` runs it that way).
``run_program`` executes the program with the ``@njit(cache=True)`` kernel
``forge.gp.vm_nb.run_program_nb``: cache-blocked, the whole program over
``DEFAULT_BLOCK`` bars at a time, one (H + block,) row per instruction from
the ``BufferPool``, bit-identical to the flat interpreter; there is no
``eval``, no ``gp.compile`` and no per-tree JIT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from forge.core.errors import GenomeError
from forge.gp.genome import Genome, Node, parse_tokens, tree_lookback
from forge.gp.primitives import BY_NAME
from forge.gp.vm_nb import DEFAULT_BLOCK, run_program_nb, run_program_store_nb, tiled_shape


@dataclass(frozen=True)
class Program:
    """A compiled genome.

    op, dst, a, b, c, w: (m,) int64 instruction fields; k: (m,) float64
    constants (see ``forge.gp.vm_nb``); n_registers: scratch rows needed;
    lookback: bars of history read before the current bar, including the
    warm-up of the features read when their lookbacks were given;
    n_features: rows the feature matrix must have; sha256: of the genome;
    store: None, or (m,) int64 -- instruction i's values are also written to
    row store[i] of the matrix given to ``run_compiled`` as S (-1: not kept;
    the subtree cache's rows).
    """

    op: np.ndarray
    dst: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    w: np.ndarray
    k: np.ndarray
    n_registers: int
    lookback: int
    n_features: int
    n_nodes: int
    sha256: str
    is_position: bool = True
    store: np.ndarray | None = None


class BufferPool:
    """Reusable (r, n) float64 scratch registers, grown on demand.

    Not thread-safe; one per worker.  ``get(r, n)`` returns a C-contiguous
    view of at least r rows of length n (contents undefined).
    """

    def __init__(self) -> None:
        self._buf = np.empty((0, 0))

    def get(self, rows: int, n: int) -> np.ndarray:
        if self._buf.shape[1] != n or self._buf.shape[0] < rows:
            self._buf = np.empty((max(rows, self._buf.shape[0] if self._buf.shape[1] == n else 0), n))
        return self._buf[:rows]


def compile_program(
    genome: Genome,
    feature_names: Sequence[str],
    feature_lookbacks: Mapping[str, int] | None = None,
) -> Program:
    """Compile ``genome`` against a feature matrix whose rows are ``feature_names``.

    feature_lookbacks: optional name -> warm-up bars of each feature, added
    into ``Program.lookback``.  raises GenomeError if the genome reads a
    feature that is not in ``feature_names``.
    """
    index = {name: i for i, name in enumerate(feature_names)}
    missing = [f for f in genome.features if f not in index]
    if missing:
        raise GenomeError(f"genome {genome.sha256[:12]} reads feature(s) {missing} that are not available "
                          f"(have {list(feature_names)})")
    root = parse_tokens(genome.tokens, genome.constants, genome.root)
    if root.kind == "feature":  # a bare feature tree: copy through add_c(f, 0)
        root = Node("prim", "add_c", "F", (root, Node("const", 0.0, "C")))
    return compile_tree(root, index, len(feature_names), is_position=genome.root == "P",
                        feature_lookbacks=feature_lookbacks, n_nodes=len(genome.tokens), sha256=genome.sha256)


def compile_tree(root: Node, index: Mapping[str, int], n_features: int, *, is_position: bool = False,
                 feature_lookbacks: Mapping[str, int] | None = None, n_nodes: int = 0, sha256: str = "",
                 stores: Mapping[int, int] | None = None) -> Program:
    """Compile a parsed tree whose root is a primitive; features are rows ``index[name]`` of an
    (n_features, n) matrix.  Used by :func:`compile_program` and the subtree cache.  stores: ``id(node)``
    -> a row of the matrix S given to :func:`run_compiled`, which receives that node's values
    (``Program.store``)."""
    rows: list[tuple[int, int, int, int, int, int, float]] = []
    store: list[int] = []
    free: list[int] = []
    n_regs = 0

    def emit(node: Node) -> int:
        """Emit instructions for ``node``; returns its operand code."""
        nonlocal n_regs
        if node.kind == "feature":
            return index[node.value]
        operands = [emit(ch) for ch in node.children if ch.type in ("F", "B", "P")]
        window = next((ch.value for ch in node.children if ch.kind == "window"), 0)
        const = next((ch.value for ch in node.children if ch.kind == "const"), 0.0)
        if free:
            free.sort()
            reg = free.pop(0)
        else:
            reg, n_regs = n_regs, n_regs + 1
        for code in operands:  # inputs are released after the output is reserved: no aliasing
            if code < 0:
                free.append(-1 - code)
        ops = operands + [0] * (3 - len(operands))
        rows.append((BY_NAME[node.value].opcode, reg, ops[0], ops[1], ops[2], window, const))
        if stores is not None:
            store.append(stores.get(id(node), -1))
        return -1 - reg

    emit(root)
    arr = np.array([r[:6] for r in rows], dtype=np.int64).reshape(-1, 6)
    return Program(
        op=np.ascontiguousarray(arr[:, 0]), dst=np.ascontiguousarray(arr[:, 1]),
        a=np.ascontiguousarray(arr[:, 2]), b=np.ascontiguousarray(arr[:, 3]),
        c=np.ascontiguousarray(arr[:, 4]), w=np.ascontiguousarray(arr[:, 5]),
        k=np.array([r[6] for r in rows], dtype=np.float64),
        n_registers=n_regs,
        lookback=tree_lookback(root, dict(feature_lookbacks) if feature_lookbacks is not None else None),
        n_features=n_features,
        n_nodes=n_nodes,
        sha256=sha256,
        is_position=is_position,
        store=np.array(store, dtype=np.int64) if stores is not None else None,
    )


def run_program(program: Program, X: np.ndarray, pool: BufferPool | None = None) -> np.ndarray:
    """Evaluate a compiled program on every bar.

    X: (f, n) float64 feature matrix (rows in the order given to
    ``compile_program``).  returns: (n,) float64 target position in [-1, 1]
    (NaN mapped to 0) for a strategy; the raw float series (NaN kept) for a
    feature tree.  raises ValueError if X has the wrong shape.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != program.n_features:
        raise ValueError(f"feature matrix must be ({program.n_features}, n) float64, got shape {X.shape}")
    return run_compiled(program, X, pool)


def run_compiled(program: Program, X: np.ndarray, pool: BufferPool | None = None,
                 out: np.ndarray | None = None, S: np.ndarray | None = None) -> np.ndarray:
    """:func:`run_program` without the shape check: X must be a C-contiguous (program.n_features, n)
    float64 matrix; ``out`` ((n,) float64, may be a row of another matrix) receives the root; S: the
    writable C-contiguous (r, n) float64 matrix whose rows ``program.store`` names (required when it
    names any; it may be the matrix X is, if no instruction reads a row that one writes)."""
    n = X.shape[1]
    _, row = tiled_shape(program.w, DEFAULT_BLOCK)
    regs = (pool or BufferPool()).get(program.op.shape[0], row)
    if out is None:
        out = np.empty(n, dtype=np.float64)
    if X.flags.writeable:  # one compiled specialisation: X read-only whether or not it is a worker's memory map
        X = X.view()
        X.flags.writeable = False
    if program.store is not None and program.store.shape[0] and program.store.max() >= 0:
        if S is None:
            raise ValueError("the program stores rows (Program.store) but no matrix S was given")
        run_program_store_nb(program.op, program.dst, program.a, program.b, program.c, program.w, program.k, X, regs,
                             out, program.is_position, DEFAULT_BLOCK, S, program.store)
    else:
        run_program_nb(program.op, program.dst, program.a, program.b, program.c, program.w, program.k, X, regs, out,
                       program.is_position, DEFAULT_BLOCK)
    return out
