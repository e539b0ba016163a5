"""``ExecutionPolicy``: the IEL's weights as a versioned, hashed JSON document.

JSON: {"schema": "forge-exec-policy/1", "kind": "linear", "features": [names of the state slots it reads,
in :data:`forge.execution.policy_nb.FEATURE_NAMES` order], "actions": ACTION_NAMES,
"weights": [[...] * len(features)] * N_ACTIONS, "info": {...}}.  ``sha256`` is the hex SHA-256 of the
canonical JSON (sorted keys, no spaces) without "info" and "sha256", so a policy's identity is its weights and
layout only.  A document lists either the eight inputs of the first version (``FEATURE_NAMES_V1``: such
files, including the default always-taker, keep their sha256) or all ``FEATURE_NAMES``; in memory
``weights`` is always the (N_ACTIONS, N_FEATURES) kernel matrix (zero on undeclared slots).
A champion's identity is (genome sha256, policy sha256).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.errors import ConfigError
from forge.execution.policy_nb import (
    ACTION_NAMES,
    FEATURE_NAMES,
    FEATURE_NAMES_V1,
    N_ACTIONS,
    N_FEATURES,
    always_taker,
)

SCHEMA = "forge-exec-policy/1"

__all__ = ["ALWAYS_TAKER_SHA256", "SCHEMA", "ExecutionPolicy"]


@dataclass(frozen=True)
class ExecutionPolicy:
    """weights: (N_ACTIONS, N_FEATURES) float64 kernel matrix (``forge.execution.policy_nb``), or
    (N_ACTIONS, len(features)) columns of the declared ``features``; info: free-form provenance (training
    seeds, cost, ...), not part of the hash; features: the declared layout, ``FEATURE_NAMES`` (default) or
    ``FEATURE_NAMES_V1`` (then the weights on the later slots must be 0).  raises ConfigError otherwise."""

    weights: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] = FEATURE_NAMES

    def __post_init__(self) -> None:
        feats = tuple(self.features)
        if feats not in (FEATURE_NAMES, FEATURE_NAMES_V1):
            raise ConfigError(f"policy features must be {list(FEATURE_NAMES_V1)} or {list(FEATURE_NAMES)}, "
                              f"got {list(feats)}")
        w = np.ascontiguousarray(self.weights, dtype=np.float64)
        if w.ndim == 2 and w.shape == (N_ACTIONS, len(feats)) and len(feats) < N_FEATURES:
            w = np.concatenate([w, np.zeros((N_ACTIONS, N_FEATURES - len(feats)))], axis=1)
        if w.shape != (N_ACTIONS, N_FEATURES):
            raise ConfigError(f"policy weights must have shape ({N_ACTIONS}, {N_FEATURES}) or "
                              f"({N_ACTIONS}, {len(feats)}), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ConfigError("policy weights must be finite")
        if np.any(w[:, len(feats):] != 0.0):
            raise ConfigError(f"policy weights on slots outside its declared features {list(feats)} must be 0")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "features", feats)

    @classmethod
    def always_taker(cls) -> ExecutionPolicy:
        """The default: a market order at every decision (today's behaviour); declared in the first layout,
        so its sha256 (:data:`ALWAYS_TAKER_SHA256`) is that of every release."""
        return cls(always_taker()[:, :len(FEATURE_NAMES_V1)], {"name": "always-taker"}, FEATURE_NAMES_V1)

    @property
    def is_always_taker(self) -> bool:
        """True when every decision is a market order whatever the state (the default's weights)."""
        return bool(np.array_equal(self.weights, always_taker()))

    def body(self) -> dict[str, Any]:
        k = len(self.features)
        return {"schema": SCHEMA, "kind": "linear", "features": list(self.features),
                "actions": list(ACTION_NAMES), "weights": [[float(v) for v in row[:k]] for row in self.weights]}

    @property
    def sha256(self) -> str:
        canon = json.dumps(self.body(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "info": self.info, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: Any, where: str = "<policy>") -> ExecutionPolicy:
        """raises ConfigError naming ``where`` on a wrong schema, layout, shape or a sha256 mismatch."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise ConfigError(f"{where}: not an execution policy (schema {SCHEMA!r} expected)")
        feats = d.get("features")
        if d.get("kind") != "linear" or not isinstance(feats, list) \
                or tuple(feats) not in (FEATURE_NAMES, FEATURE_NAMES_V1) \
                or list(d.get("actions", [])) != list(ACTION_NAMES):
            raise ConfigError(f"{where}: policy layout (kind/features/actions) differs from this version's")
        try:
            w = np.array(d["weights"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: bad weights: {exc}") from None
        if w.shape != (N_ACTIONS, len(feats)):
            raise ConfigError(f"{where}: weights of shape {w.shape}, expected ({N_ACTIONS}, {len(feats)})")
        info = d.get("info")
        if info is not None and not isinstance(info, dict):
            raise ConfigError(f"{where}: field 'info' must be an object")
        pol = cls(w, dict(info or {}), tuple(feats))
        if "sha256" in d and d["sha256"] != pol.sha256:
            raise ConfigError(f"{where}: sha256 {d['sha256']!r} does not match the weights ({pol.sha256})")
        return pol

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> ExecutionPolicy:
        """raises ConfigError for a missing or malformed file."""
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: cannot read execution policy: {exc}") from None
        return cls.from_dict(d, str(p))


ALWAYS_TAKER_SHA256 = ExecutionPolicy.always_taker().sha256
"""sha256 of the default policy: a champion without a ``policy`` field has this identity."""

