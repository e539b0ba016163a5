"""Population-wide subtree cache: each distinct windowed subtree is evaluated once per data segment.

Evolved populations share many subtrees (crossover copies them, survivors
breed repeatedly).  What costs time are the windowed operators (``ts_*``,
``ema``: O(n·w) or a pass with state); element-wise nodes are one cheap pass
each.  ``SubtreeCache.run`` therefore caches the results of subtrees rooted
at a windowed operator, keyed by their canonical form (primitive name,
children's canonical forms, window, constant), in the rows of one
preallocated matrix ``[features; cached subtrees]`` bounded by
``max_bytes`` (LRU eviction of rows).  A genome is then run as *one* VM
program in which every cached subtree is read like a feature row; a missing
subtree is computed inside that same program, and the program also writes
its values into a free row as it goes (``Program.store``), so a miss costs
the copy of one row, not a program of its own whose row is read back.
Every node is computed by the same numba kernel (``forge.gp.vm_nb``) on the
same inputs, so results are bitwise identical with the cache on or off.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from forge.core.errors import GenomeError
from forge.gp.genome import Genome, Node, parse_tokens, tree_lookback
from forge.gp.vm import BufferPool, compile_tree, run_compiled

__all__ = ["SubtreeCache", "WINDOWED"]

WINDOWED = frozenset({"ts_mean", "ts_std", "ts_min", "ts_max", "ts_rank", "ts_zscore", "ts_corr", "ema",
                      "latch", "hysteresis", "smooth", "min_hold"})
"""Primitives whose subtrees are cached (their cost grows with the window or carries state)."""


class SubtreeCache:
    """Evaluate genomes on one feature matrix, sharing windowed-subtree results.

    X: (f, n) float64 features whose rows are ``feature_names``; max_bytes: memory bound of the cached
    rows (n float64 each; at least one row is kept).  Attributes hits / misses count lookups of
    windowed subtrees; bytes: memory held by cached rows.
    """

    def __init__(self, X: np.ndarray, feature_names: Sequence[str], max_bytes: int = 512 * 2**20):
        X = np.asarray(X, dtype=np.float64)
        self.n_features, self.n = X.shape
        self.capacity = max(1, int(max_bytes) // max(8 * self.n, 1))
        self.M = np.empty((self.n_features + self.capacity, self.n))
        self.M[: self.n_features] = X
        self.X = self.M[: self.n_features]
        self.names = list(feature_names) + [f"\x00slot{k}" for k in range(self.capacity)]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.max_bytes = max_bytes
        self._lru: OrderedDict[str, int] = OrderedDict()  # canonical key -> row of M
        self._free = list(range(self.n_features + self.capacity - 1, self.n_features - 1, -1))
        self._pool = BufferPool()
        self.hits = 0
        self.misses = 0

    @property
    def bytes(self) -> int:
        return len(self._lru) * self.n * 8

    @property
    def hit_rate(self) -> float:
        """Share of windowed-subtree lookups answered from the cache (0 when none yet)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def _row(self, pinned: set[int]) -> int | None:
        """A free row of M (evicting the least recently used unpinned subtree), or None."""
        if self._free:
            return self._free.pop()
        for key, row in self._lru.items():
            if row not in pinned:
                del self._lru[key]
                return row
        return None

    def _substitute(self, node: Node, pinned: set[int], stores: dict[int, int], pending: list[str],
                    root: bool = False) -> tuple[str, Node] | None:
        """(canonical key, node with every cached windowed subtree replaced by its row); a windowed subtree
        not in the cache stays in the tree, gets a free row and is entered in ``stores`` (``id`` of its new
        node -> row: the genome's program writes it there) and its key in ``pending``; None when the cache
        is too small to hold the rows this tree needs at once.  ``root``: the node is the genome's root,
        which is never cached -- a whole genome is evaluated once per run anyway (the evaluator's memo).

        A second occurrence of a pending subtree in the same genome reads its row: the program is in
        postfix order, the same order as this walk, so the first occurrence's instruction runs before
        every reader of the row within each block (and the earlier blocks, the history, are written)."""
        if node.kind in ("feature", "window", "const"):
            return (node.value if node.kind == "feature" else repr(node.value)), node
        kids = []
        keys = []
        for ch in node.children:
            sub = self._substitute(ch, pinned, stores, pending)
            if sub is None:
                return None
            keys.append(sub[0])
            kids.append(sub[1])
        key = f"{node.value}({','.join(keys)})"
        new = Node(node.kind, node.value, node.type, tuple(kids))
        if node.value not in WINDOWED or root:
            return key, new
        row = self._lru.get(key)
        if row is not None:
            self._lru.move_to_end(key)
            self.hits += 1
            pinned.add(row)
            return key, Node("feature", self.names[row], "F")
        self.misses += 1
        row = self._row(pinned)
        if row is None:
            return None
        # computed where it stands in the genome's program, which also writes it into its row
        self._lru[key] = row
        pending.append(key)
        pinned.add(row)
        stores[id(new)] = row
        return key, new

    def _forget(self, pending: list[str]) -> None:
        """Drop the entries of ``pending`` (rows never written: their genome's program did not run)."""
        for key in pending:
            self._free.append(self._lru.pop(key))

    def run(self, genome: Genome) -> np.ndarray:
        """(n,) float64 output of ``genome`` (position, or raw series for a
        feature genome), equal to ``run_program(compile_program(genome, ...), X)``.
        raises GenomeError if the genome reads a missing feature."""
        missing = [f for f in genome.features if f not in self.index or f.startswith("\x00")]
        if missing:
            raise GenomeError(f"genome {genome.sha256[:12]} reads feature(s) {missing} that are not available")
        root = parse_tokens(genome.tokens, genome.constants, genome.root)
        stores: dict[int, int] = {}
        pending: list[str] = []
        sub = self._substitute(root, set(), stores, pending, root=True)
        if sub is None:  # too small a cache for this tree: plain evaluation
            self._forget(pending)
            tree, stores = root, {}
        else:
            tree = sub[1]
        if tree.kind == "feature":
            tree = Node("prim", "add_c", "F", (tree, Node("const", 0.0, "C")))
        prog = compile_tree(tree, self.index, len(self.names), is_position=genome.root == "P", stores=stores)
        out = np.empty(self.n)
        try:
            run_compiled(prog, self.M, self._pool, out=out, S=self.M)
        except BaseException:
            self._forget(pending if stores else [])
            raise
        return out

    @staticmethod
    def lookback(genome: Genome, feature_lookbacks: Mapping[str, int] | None = None) -> int:
        """Warm-up bars of a genome (as ``Program.lookback``)."""
        return tree_lookback(parse_tokens(genome.tokens, genome.constants, genome.root),
                             dict(feature_lookbacks) if feature_lookbacks is not None else None)
