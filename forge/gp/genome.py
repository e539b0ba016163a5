"""Genome: the versioned, checksummed JSON form of an evolved strategy.

A genome is a prefix (Polish-notation) token list over the primitive set
``forge.gp.primitives`` plus a constant table:

- a primitive token is its name (``"ts_mean"``);
- ``"feature:NAME"`` reads feature NAME (a row of the feature matrix);
- ``"window:N"`` is a window length N (one of ``WINDOWS``);
- ``"const:I"`` is ``constants[I]``.

JSON (schema_version 1)::

    {"schema_version": 1, "pset_version": "forge-gp/1",   # or "forge-gp/2" when it uses a version-2 primitive
     "tokens": [...], "constants": [...], "features": [...],
     "lookback": 59, "root": "P", "sha256": "<hex>", "meta": {...}}

``root`` is "P" for a strategy (position root) or "F" for a feature tree.
``pset_version`` is the oldest primitive-set version that has every primitive the genome uses
(``forge.gp.primitives.pset_version_of``), so genomes written before a version added primitives keep
their checksums.  ``sha256`` is the SHA-256 of the canonical form (schema version, primitive
set version, root type, tokens and constants; compact JSON with sorted keys); ``meta``
(run, rank, metrics...) is informational and outside the checksum.
``features`` and ``lookback`` are derived from the tokens and checked on load.
No ``eval``, no pickle: loading only parses and type-checks tokens.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.core.errors import GenomeError
from forge.core.safeio import MAX_BYTES, MAX_DEPTH, loads_limited, read_regular_file
from forge.gp.primitives import BY_NAME, PSET_VERSION, WINDOWS, pset_version_of
from forge.core.jsonsafe import dumps

SCHEMA_VERSION = 1
SUPPORTED_PSET_VERSIONS = ("forge-gp/1", PSET_VERSION)


@dataclass(frozen=True)
class Node:
    """A parsed token: kind in {"prim", "feature", "window", "const"}, the
    value (primitive name, feature name, window bars, constant value), its
    type code and children."""

    kind: str
    value: Any
    type: str
    children: tuple[Node, ...] = ()


def parse_tokens(tokens: tuple[str, ...], constants: tuple[float, ...], root_type: str = "P") -> Node:
    """Parse and type-check a prefix token list.

    returns the root Node.  raises GenomeError naming the token index for an
    unknown primitive, a type mismatch, a bad window/constant reference,
    missing or extra tokens.
    """
    pos = 0

    def node(expected: str) -> Node:
        nonlocal pos
        if pos >= len(tokens):
            raise GenomeError(f"token list ends early: expected a {expected!r}-typed token at index {pos}")
        i, tok = pos, tokens[pos]
        pos += 1
        if not isinstance(tok, str):
            raise GenomeError(f"token {i} is {tok!r}; expected a string")
        if ":" in tok:
            kind, _, arg = tok.partition(":")
            if kind == "feature" and arg:
                got: Node = Node("feature", arg, "F")
            elif kind == "window":
                if not arg.isdigit() or int(arg) not in WINDOWS:
                    raise GenomeError(f"token {i} {tok!r}: window must be one of {WINDOWS}")
                got = Node("window", int(arg), "W")
            elif kind == "const":
                if not arg.isdigit() or int(arg) >= len(constants):
                    raise GenomeError(f"token {i} {tok!r}: no such constant (have {len(constants)})")
                got = Node("const", float(constants[int(arg)]), "C")
            else:
                raise GenomeError(f"token {i} {tok!r}: unknown terminal kind {kind!r}")
        else:
            spec = BY_NAME.get(tok)
            if spec is None:
                raise GenomeError(f"token {i}: unknown primitive {tok!r} (primitive set {PSET_VERSION})")
            got = Node("prim", tok, spec.ret, tuple(node(t) for t in spec.args))
        if got.type != expected:
            raise GenomeError(f"token {i} {tok!r} has type {got.type!r} where {expected!r} is expected")
        return got

    root = node(root_type)
    if pos != len(tokens):
        raise GenomeError(f"{len(tokens) - pos} extra token(s) after a complete tree, from index {pos}")
    return root


def tree_lookback(node: Node, feature_lookbacks: dict[str, int] | None = None) -> int:
    """Bars of history before the current bar the tree reads.

    feature_lookbacks: feature name -> its own warm-up in bars; None counts
    features as 0 (the operators' lookback only).
    """
    if node.kind == "feature":
        return int((feature_lookbacks or {}).get(node.value, 0))
    if node.kind != "prim":
        return 0
    spec = BY_NAME[node.value]
    window = next((ch.value for ch in node.children if ch.kind == "window"), 0)
    return spec.lookback(window) + max((tree_lookback(ch, feature_lookbacks) for ch in node.children), default=0)


def tree_features(node: Node) -> set[str]:
    """Names of the features a tree reads."""
    if node.kind == "feature":
        return {node.value}
    out: set[str] = set()
    for ch in node.children:
        out |= tree_features(ch)
    return out


@dataclass(frozen=True)
class Genome:
    """An evolved strategy (see module docstring).

    tokens: prefix tokens; root: "P" (strategy) or "F" (feature tree);
    constants: float64 values referenced by
    ``const:I``; features: sorted feature names read; lookback: bars of
    history the operators read before the current bar (feature warm-up not
    included); sha256: checksum of the canonical form; meta: free-form.
    """

    tokens: tuple[str, ...]
    constants: tuple[float, ...]
    features: tuple[str, ...]
    lookback: int
    sha256: str
    root: str = "P"
    pset_version: str = PSET_VERSION
    schema_version: int = SCHEMA_VERSION
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # ------------------------------------------------------------------ build

    @staticmethod
    def canonical_hash(text: str) -> str:
        """SHA-256 hex digest of a UTF-8 string."""
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @staticmethod
    def canonical_form(tokens: tuple[str, ...], constants: tuple[float, ...], root: str = "P",
                       pset_version: str | None = None, schema_version: int = SCHEMA_VERSION) -> str:
        """The compact, key-sorted JSON the checksum is taken over (pset_version None: the version the
        tokens need, ``pset_version_of``)."""
        if pset_version is None:
            pset_version = pset_version_of(tokens)
        return json.dumps(
            {"constants": list(constants), "pset_version": pset_version, "root": root,
             "schema_version": schema_version, "tokens": list(tokens)},
            sort_keys=True, separators=(",", ":"), allow_nan=False,
        )

    @classmethod
    def from_tokens(cls, tokens: list[str] | tuple[str, ...], constants: list[float] | tuple[float, ...] = (),
                    meta: dict[str, Any] | None = None, root: str = "P") -> Genome:
        """Build (and type-check) a genome from tokens and constants.

        root: "P" for a strategy (position root) or "F" for a feature tree
        (float-series root, used by feature synthesis).
        raises GenomeError on any malformed token, non-finite constant or
        unsupported root type.
        """
        if root not in ("P", "F"):
            raise GenomeError(f"root type must be 'P' (strategy) or 'F' (feature), got {root!r}")
        tokens = tuple(tokens)
        constants = tuple(float(c) for c in constants)
        if not all(math.isfinite(c) for c in constants):
            raise GenomeError(f"constants must be finite, got {constants}")
        node = parse_tokens(tokens, constants, root)
        version = pset_version_of(tokens)
        digest = cls.canonical_hash(cls.canonical_form(tokens, constants, root, version))
        return cls(tokens=tokens, constants=constants, features=tuple(sorted(tree_features(node))),
                   lookback=tree_lookback(node), sha256=digest, root=root, pset_version=version,
                   meta=dict(meta or {}))

    # ------------------------------------------------------------------ io

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (see module docstring)."""
        return {
            "schema_version": self.schema_version,
            "pset_version": self.pset_version,
            "tokens": list(self.tokens),
            "constants": list(self.constants),
            "features": list(self.features),
            "lookback": self.lookback,
            "root": self.root,
            "sha256": self.sha256,
            "meta": self.meta,
        }

    def to_json(self) -> str:
        """Pretty strict JSON text (a non-finite meta value -> null, see forge.core.jsonsafe);
        ``Genome.from_json(g.to_json()) == g``."""
        return dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "genome") -> Genome:
        """Validate and load a genome dict.

        raises GenomeError (naming ``source``) for a missing field, an
        unsupported schema or primitive-set version, unknown primitive, type
        error, or a checksum / features / lookback that does not match.
        """
        if not isinstance(d, dict):
            raise GenomeError(f"{source}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in ("schema_version", "pset_version", "tokens", "constants", "sha256") if k not in d]
        if missing:
            raise GenomeError(f"{source}: missing field(s) {missing}")
        if d["schema_version"] != SCHEMA_VERSION:
            raise GenomeError(f"{source}: schema_version {d['schema_version']!r} unsupported (expected {SCHEMA_VERSION})")
        if d["pset_version"] not in SUPPORTED_PSET_VERSIONS:
            raise GenomeError(f"{source}: primitive set {d['pset_version']!r} unsupported "
                              f"(this build knows {SUPPORTED_PSET_VERSIONS})")
        if not isinstance(d["tokens"], list) or not isinstance(d["constants"], list):
            raise GenomeError(f"{source}: 'tokens' and 'constants' must be lists")
        try:
            consts = [float(c) for c in d["constants"]]
        except (TypeError, ValueError) as exc:
            raise GenomeError(f"{source}: constants must be numbers ({exc})") from None
        try:
            g = cls.from_tokens(d["tokens"], consts, meta=d.get("meta") or {}, root=d.get("root", "P"))
        except GenomeError as exc:
            raise GenomeError(f"{source}: {exc}") from None
        if d["pset_version"] != g.pset_version:
            raise GenomeError(f"{source}: pset_version {d['pset_version']!r} does not match the primitives used "
                              f"(they need {g.pset_version!r})")
        if d["sha256"] != g.sha256:
            raise GenomeError(f"{source}: checksum mismatch: file says {d['sha256']}, content hashes to {g.sha256} "
                              "(the genome was modified or corrupted)")
        for key in ("features", "lookback"):
            if key in d and (list(d[key]) if key == "features" else d[key]) != (
                    list(getattr(g, key)) if key == "features" else getattr(g, key)):
                raise GenomeError(f"{source}: {key} {d[key]!r} does not match the tokens ({getattr(g, key)!r})")
        return g

    @classmethod
    def from_json(cls, text: str, *, source: str = "genome") -> Genome:
        """Parse JSON text (nested at most ``forge.core.safeio.MAX_DEPTH`` levels); raises GenomeError on
        invalid or too deeply nested JSON (with line/column)."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise GenomeError(f"{source}: not UTF-8 text ({exc.reason})") from None
        return cls.from_dict(loads_limited(data, source), source=source)

    @classmethod
    def load(cls, path: str | Path, *, follow_symlinks: bool = True, max_bytes: int = MAX_BYTES,
             max_depth: int = MAX_DEPTH) -> Genome:
        """Read a genome JSON file with the hardened reader (:func:`forge.core.safeio.read_regular_file`,
        :func:`forge.core.safeio.loads_limited`): only a regular file of at most ``max_bytes`` bytes (default
        1 MiB) is read (a FIFO, device, socket or directory is refused without blocking), JSON nested at
        most ``max_depth`` levels.  follow_symlinks: True (default) reads the file a symlink points to
        (resolved once, the target checked the same way); False refuses a symlink (files in folders others
        may write to: replacement requests, ``crucible verify``).
        raises GenomeError naming the file for any of these, unreadable or invalid JSON, or an invalid genome.
        """
        p = Path(path)
        target = p
        if follow_symlinks:
            try:
                if p.is_symlink():
                    target = Path(os.path.realpath(p))
            except OSError as exc:
                raise GenomeError(f"{p}: cannot read genome ({exc.strerror})") from None
        try:
            data = read_regular_file(target, max_bytes)
        except GenomeError as exc:
            raise GenomeError(f"cannot read genome: {exc}" if target == p else f"{p} -> {exc}") from None
        return cls.from_dict(loads_limited(data, str(p), max_depth), source=str(p))

    def expression(self) -> str:
        """Human-readable infix-free expression, e.g. ``long_only(gt(ret_1, ts_mean(ret_1, 20)))``."""
        root = parse_tokens(self.tokens, self.constants, self.root)

        def fmt(n: Node) -> str:
            if n.kind == "prim":
                return f"{n.value}({', '.join(fmt(c) for c in n.children)})"
            return repr(n.value) if n.kind == "const" else str(n.value)

        return fmt(root)
