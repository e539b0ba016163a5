"""DEAP side of the typed GP: primitive set, tree generation, variation operators.

``build_pset`` registers every primitive of ``forge.gp.primitives`` with
its numpy implementation (so DEAP's ``gp.compile`` gives the reference
evaluation), the features as arguments, the windows as terminals and an
ephemeral constant.

DEAP's ``genFull``/``genGrow`` fail on typed sets where a type has
terminals but no primitives (``Window``, ``Const``) or primitives but no
terminals (``BSeries``, ``Position``) — DEAP issues #237 and #579.
``generate`` instead knows, for every type, the minimum height of a
complete subtree and never starts a branch it cannot finish within the
depth limit, so generation cannot fail on types.

All randomness comes from Python's global ``random`` (DEAP's own operators
use it); callers seed it once per run from the run seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial
from typing import Any

from deap import gp

from forge.core.errors import GenomeError
from forge.gp.genome import Genome
from forge.gp.primitives import BY_NAME, PRIMITIVES, TYPES, WINDOWS, Const, Window, random_constant

EPHEMERAL_NAME = "forge_const"


def build_pset(feature_names: Sequence[str], max_version: int | None = None) -> gp.PrimitiveSetTyped:
    """Typed primitive set over ``feature_names`` (each an FSeries argument).

    max_version: only primitives of primitive-set versions up to this one (``PrimitiveSpec.since``); None =
    all.  Feature synthesis passes 1: the turnover-aware primitives of set 2 shape positions, not features.
    raises ValueError if a feature name is not a Python identifier (DEAP
    compiles trees to Python source) or repeats.
    """
    names = list(feature_names)
    if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
        raise ValueError(f"feature names must be distinct identifiers, got {names}")
    pset = gp.PrimitiveSetTyped("forge", [TYPES["F"]] * len(names), TYPES["P"])
    pset.renameArguments(**{f"ARG{i}": n for i, n in enumerate(names)})
    for spec in PRIMITIVES:
        if max_version is not None and spec.since > max_version:
            continue
        pset.addPrimitive(spec.numpy_fn, [TYPES[t] for t in spec.args], TYPES[spec.ret], name=spec.name)
    for w in WINDOWS:
        pset.addTerminal(w, Window, name=f"w{w}")
    pset.addEphemeralConstant(EPHEMERAL_NAME, random_constant, Const)
    return pset


def _min_heights(pset: gp.PrimitiveSetTyped) -> dict[type, int]:
    """Minimum height of a complete subtree rooted at each type (0 = a terminal)."""
    inf = 10**9
    types = set(pset.primitives) | set(pset.terminals)
    h = {t: (0 if pset.terminals.get(t) else inf) for t in types}
    changed = True
    while changed:
        changed = False
        for t in types:
            for p in pset.primitives.get(t, []):
                cand = 1 + max((h.get(a, inf) for a in p.args), default=0)
                if cand < h[t]:
                    h[t], changed = cand, True
    return h


def cx_one_point_typed(ind1: gp.PrimitiveTree, ind2: gp.PrimitiveTree) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
    """Strongly typed one-point crossover (in place), reproducible across processes.

    Same random calls as DEAP's ``gp.cxOnePoint``, but DEAP picks the node type from
    ``list(set(types))``, and types are classes hashed by memory address: the order, and so the
    child, changes from process to process even with the same seed (measured: two ``forge evolve``
    runs with one seed diverged at generation 1). Here the common types are sorted by name.
    """
    if len(ind1) < 2 or len(ind2) < 2:
        return ind1, ind2
    types1: dict[type, list[int]] = {}
    types2: dict[type, list[int]] = {}
    for idx, node in enumerate(ind1[1:], 1):
        types1.setdefault(node.ret, []).append(idx)
    for idx, node in enumerate(ind2[1:], 1):
        types2.setdefault(node.ret, []).append(idx)
    common = sorted((t for t in types1 if t in types2), key=lambda t: t.__name__)
    if common:
        type_ = random.choice(common)
        index1 = random.choice(types1[type_])
        index2 = random.choice(types2[type_])
        slice1 = ind1.searchSubtree(index1)
        slice2 = ind2.searchSubtree(index2)
        ind1[slice1], ind2[slice2] = ind2[slice2], ind1[slice1]
    return ind1, ind2


def _prim_height(p: gp.Primitive, heights: dict[type, int]) -> int:
    return 1 + max(heights[a] for a in p.args)


def generate(pset: gp.PrimitiveSetTyped, min_: int, max_: int, type_: type | None = None,
             full: bool = False) -> list[Any]:
    """A random typed tree (prefix node list) of height in [min_, max_] where possible.

    full=True prefers primitives until the depth limit (DEAP's genFull),
    otherwise terminals and primitives are mixed (genGrow).  Depths adapt
    to the type system: a branch is only started if it can be completed
    within ``max_``; a type without terminals (e.g. BSeries) always gets its
    shallowest completable primitive at the limit.  raises ValueError if
    ``max_`` is below the minimum height of ``type_``.
    """
    type_ = pset.ret if type_ is None else type_
    heights = _min_heights(pset)
    if heights[type_] > max_:
        raise ValueError(f"no {type_.__name__} tree fits in depth {max_} (needs {heights[type_]})")
    height = random.randint(min_, max_)
    out: list[Any] = []

    def grow(t: type, depth: int) -> None:
        room = max_ - depth
        prims = [p for p in pset.primitives.get(t, []) if _prim_height(p, heights) <= room]
        terms = pset.terminals.get(t, [])
        want_term = depth >= height or (not full and random.random() < len(terms) / max(len(terms) + len(prims), 1))
        if depth < min_ and prims:
            want_term = False
        if terms and (want_term or not prims):
            term = random.choice(terms)
            out.append(term() if isinstance(term, type) else term)
            return
        if not prims:  # no terminal of this type: the shallowest primitive that completes
            best = min(_prim_height(p, heights) for p in pset.primitives[t])
            prims = [p for p in pset.primitives[t] if _prim_height(p, heights) == best]
        p = random.choice(prims)
        out.append(p)
        for a in p.args:
            grow(a, depth + 1)

    grow(type_, 0)
    return out


def individual_tokens(ind: Sequence[Any]) -> tuple[tuple[str, ...], tuple[float, ...], str]:
    """(tokens, constants, root) of a DEAP tree built on ``build_pset``: the arguments of ``Genome.from_tokens``
    (constants numbered in order; root "F" when the tree's root is a float series, else "P")."""
    tokens: list[str] = []
    constants: list[float] = []
    for node in ind:
        if isinstance(node, gp.Primitive):
            tokens.append(node.name)
        elif isinstance(type(node), gp.MetaEphemeral):
            tokens.append(f"const:{len(constants)}")
            constants.append(float(node.value))
        elif node.ret is Window:
            tokens.append(f"window:{int(node.name.lstrip('w'))}")
        else:
            tokens.append(f"feature:{node.value}")
    return tuple(tokens), tuple(constants), "F" if ind[0].ret is TYPES["F"] else "P"


def genome_from_individual(ind: Sequence[Any], pset: gp.PrimitiveSetTyped | None = None) -> Genome:
    """Genome of a DEAP tree built on ``build_pset`` (:func:`individual_tokens`); a tree whose root is a float
    series becomes a feature genome (root "F").  raises GenomeError if the tree is not well typed."""
    tokens, constants, root = individual_tokens(ind)
    return Genome.from_tokens(tokens, constants, root=root)


def individual_from_genome(genome: Genome, pset: gp.PrimitiveSetTyped) -> gp.PrimitiveTree:
    """DEAP tree of a genome (inverse of ``genome_from_individual``).

    raises GenomeError (via compile checks) if the genome reads a feature
    that ``pset`` lacks.
    """
    prims = {p.name: p for ps in pset.primitives.values() for p in ps}
    terms = {name: t for name, t in pset.mapping.items() if isinstance(t, gp.Terminal)}
    eph = pset.mapping[EPHEMERAL_NAME]
    nodes: list[Any] = []
    for tok in genome.tokens:
        kind, _, arg = tok.partition(":")
        if not arg:
            nodes.append(prims[tok])
        elif kind == "feature":
            if arg not in terms:
                raise GenomeError(f"genome {genome.sha256[:12]} reads feature {arg!r} missing from the primitive set")
            nodes.append(terms[arg])
        elif kind == "window":
            nodes.append(terms[f"w{arg}"])
        else:
            c = eph.__new__(eph)  # no draw from the run's random stream
            c.value = genome.constants[int(arg)]
            nodes.append(c)
    return gp.PrimitiveTree(nodes)


def deap_compile_function(tree: Any, pset: gp.PrimitiveSetTyped):
    """DEAP's own ``gp.compile``: a Python function of the feature arrays
    evaluating the tree with the numpy reference primitives (the baseline)."""
    return gp.compile(tree, pset)


class Operators:
    """Variation operators with hard depth and size caps.

    crossover: DEAP typed one-point subtree crossover; mutate: one of
    subtree replacement (``mutUniform`` with ``generate``), node
    replacement, ephemeral-constant redraw, shrink, chosen uniformly.  A
    child over ``max_depth`` or ``max_size`` is rejected and the operator
    retried (up to ``retries`` times) before the parent is returned.
    """

    def __init__(self, pset: gp.PrimitiveSetTyped, max_depth: int, max_size: int, retries: int = 8):
        self.pset, self.max_depth, self.max_size, self.retries = pset, max_depth, max_size, retries
        self._expr = partial(generate, min_=0, max_=2)

    def ok(self, tree: gp.PrimitiveTree) -> bool:
        return tree.height <= self.max_depth and len(tree) <= self.max_size

    @staticmethod
    def clone(tree: gp.PrimitiveTree) -> gp.PrimitiveTree:
        return gp.PrimitiveTree(list(tree))

    def init_population(self, n: int, min_depth: int, max_depth: int) -> list[gp.PrimitiveTree]:
        """``n`` distinct trees, ramped half-and-half over heights [min_depth, max_depth]."""
        out: list[gp.PrimitiveTree] = []
        seen: set[str] = set()
        attempts = 0
        while len(out) < n:
            attempts += 1
            tree = gp.PrimitiveTree(generate(self.pset, min_depth, max_depth, full=random.random() < 0.5))
            key = str(tree)
            if self.ok(tree) and (key not in seen or attempts > 20 * n):
                seen.add(key)
                out.append(tree)
        return out

    def crossover(self, a: gp.PrimitiveTree, b: gp.PrimitiveTree) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
        for _ in range(self.retries):
            c1, c2 = cx_one_point_typed(self.clone(a), self.clone(b))
            if self.ok(c1) and self.ok(c2):
                return c1, c2
        return self.clone(a), self.clone(b)

    def mutate(self, tree: gp.PrimitiveTree) -> gp.PrimitiveTree:
        for _ in range(self.retries):
            kind = random.randrange(4)
            child = self.clone(tree)
            if kind == 0:
                (child,) = gp.mutUniform(child, expr=self._expr, pset=self.pset)
            elif kind == 1:
                (child,) = gp.mutNodeReplacement(child, pset=self.pset)
            elif kind == 2:
                (child,) = gp.mutEphemeral(child, mode="one")
            else:
                (child,) = gp.mutShrink(child)
            if self.ok(child):
                return child
        return self.clone(tree)


__all__ = [
    "BY_NAME",
    "Operators",
    "build_pset",
    "deap_compile_function",
    "generate",
    "genome_from_individual",
    "individual_tokens",
    "individual_from_genome",
]
