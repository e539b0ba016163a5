"""``ExecutionPolicy``: the IEL's weights as a versioned, hashed JSON document.

JSON: {"schema": "forge-exec-policy/1", "kind": "linear", "features": FEATURE_NAMES,
"actions": ACTION_NAMES, "weights": [[...] * N_FEATURES] * N_ACTIONS, "info": {...}}.  ``sha256`` is the
hex SHA-256 of the canonical JSON (sorted keys, no spaces) without "info", so a policy's identity is its
weights and layout only.  A champion's identity is (genome sha256, policy sha256).
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
    N_ACTIONS,
    N_FEATURES,
    always_taker,
)

SCHEMA = "forge-exec-policy/1"

__all__ = ["ALWAYS_TAKER_SHA256", "SCHEMA", "ExecutionPolicy"]


@dataclass(frozen=True)
class ExecutionPolicy:
    """weights: (N_ACTIONS, N_FEATURES) float64 (``forge.execution.policy_nb``); info: free-form
    provenance (training seeds, cost, ...), not part of the hash."""

    weights: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = np.ascontiguousarray(self.weights, dtype=np.float64)
        if w.shape != (N_ACTIONS, N_FEATURES):
            raise ConfigError(f"policy weights must have shape ({N_ACTIONS}, {N_FEATURES}), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ConfigError("policy weights must be finite")
        object.__setattr__(self, "weights", w)

    @classmethod
    def always_taker(cls) -> ExecutionPolicy:
        """The default: a market order at every decision (today's behaviour)."""
        return cls(always_taker(), {"name": "always-taker"})

    def body(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "kind": "linear", "features": list(FEATURE_NAMES),
                "actions": list(ACTION_NAMES), "weights": [[float(v) for v in row] for row in self.weights]}

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
        if d.get("kind") != "linear" or list(d.get("features", [])) != list(FEATURE_NAMES) \
                or list(d.get("actions", [])) != list(ACTION_NAMES):
            raise ConfigError(f"{where}: policy layout (kind/features/actions) differs from this version's")
        try:
            w = np.array(d["weights"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: bad weights: {exc}") from None
        pol = cls(w, dict(d.get("info") or {}))
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

