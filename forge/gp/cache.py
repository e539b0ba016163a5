"""Population-wide subtree cache: each distinct subtree is evaluated once per data segment.

Evolved populations share many subtrees (crossover copies them, survivors
breed repeatedly).  ``SubtreeCache.run`` walks a genome's tree in
post-order; a subtree's canonical form (primitive name, children's
canonical forms, window, constant) keys an LRU of (n,) result
arrays bounded by ``max_bytes``.  Each node is computed by the same numba
kernel as the VM (``forge.gp.vm_nb.apply_nb``), so results are bitwise
identical with the cache on or off.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from forge.core.errors import GenomeError
from forge.gp.genome import Genome, Node, parse_tokens, tree_lookback
from forge.gp.primitives import BY_NAME
from forge.gp.vm_nb import apply_nb, finish_root_nb


class SubtreeCache:
    """Evaluate genomes on one feature matrix, sharing subtree results.

    X: (f, n) float64 features whose rows are ``feature_names``;
    max_bytes: memory bound of cached arrays (LRU eviction).
    Attributes hits / misses count subtree lookups (feature leaves excluded).
    """

    def __init__(self, X: np.ndarray, feature_names: Sequence[str], max_bytes: int = 512 * 2**20):
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.index = {name: i for i, name in enumerate(feature_names)}
        self.max_bytes = max_bytes
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def hit_rate(self) -> float:
        """Share of subtree lookups answered from the cache (0 when none yet)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def _eval(self, node: Node) -> tuple[str, np.ndarray]:
        if node.kind == "feature":
            return node.value, self.X[self.index[node.value]]
        parts = [self._eval(ch) for ch in node.children if ch.type in ("F", "B")]
        window = next((ch.value for ch in node.children if ch.kind == "window"), 0)
        const = next((ch.value for ch in node.children if ch.kind == "const"), 0.0)
        key = f"{node.value}({','.join(k for k, _ in parts)};{window};{const!r})"
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
            self.hits += 1
            return key, hit
        self.misses += 1
        arrays = [a for _, a in parts]
        xa = arrays[0]
        xb = arrays[1] if len(arrays) > 1 else xa
        xc = arrays[2] if len(arrays) > 2 else xa
        y = np.empty(self.X.shape[1])
        apply_nb(BY_NAME[node.value].opcode, xa, xb, xc, window, const, y)
        self._lru[key] = y
        self.bytes += y.nbytes
        while self.bytes > self.max_bytes and len(self._lru) > 1:
            _k, old = self._lru.popitem(last=False)
            self.bytes -= old.nbytes
        return key, y

    def run(self, genome: Genome) -> np.ndarray:
        """(n,) float64 output of ``genome`` (position, or raw series for a
        feature genome), equal to ``run_program(compile_program(genome, ...), X)``.
        raises GenomeError if the genome reads a missing feature."""
        missing = [f for f in genome.features if f not in self.index]
        if missing:
            raise GenomeError(f"genome {genome.sha256[:12]} reads feature(s) {missing} that are not available")
        root = parse_tokens(genome.tokens, genome.constants, genome.root)
        _key, arr = self._eval(root)
        out = np.empty(self.X.shape[1])
        finish_root_nb(arr, out, genome.root == "P")
        return out

    @staticmethod
    def lookback(genome: Genome, feature_lookbacks: Mapping[str, int] | None = None) -> int:
        """Warm-up bars of a genome (as ``Program.lookback``)."""
        return tree_lookback(parse_tokens(genome.tokens, genome.constants, genome.root),
                             dict(feature_lookbacks) if feature_lookbacks is not None else None)
