"""Gauntlet stages: each module exposes ``NAME`` and ``run(ctx, candidate, cfg, shared) -> StageResult``.

A stage returns its statistic, a p-value or threshold, pass/fail and a
one-line reason; ``details`` holds every number behind the decision (written
to ``gauntlet_report.json``).  ``shared`` carries set-level results computed
once per run (effective trials, PBO, SPA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StageResult", "STAGE_ORDER"]

STAGE_ORDER = ("oos", "lookahead", "psr", "dsr", "pbo", "permutation", "pcmci", "dowhy", "edge_kind")
"""``edge_kind`` labels a candidate directional or risk timing (``gauntlet.stages.edge_kind``); it is not in
the default ``gating``: the label decides publication (``validate_run(allow_risk_timing=...)``), not survival."""


@dataclass
class StageResult:
    """stage: stage name; statistic: the tested number (its meaning in ``statistic_name``);
    p_value: None for threshold tests; threshold: the pass boundary; passed: the verdict;
    reason: one line a researcher can read; details: every supporting number; seconds: runtime."""

    stage: str
    statistic_name: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {"stage": self.stage, "statistic_name": self.statistic_name, "statistic": clean(self.statistic),
                "p_value": clean(self.p_value), "threshold": clean(self.threshold), "passed": bool(self.passed),
                "reason": self.reason, "details": self.details, "seconds": round(self.seconds, 3)}

    def cell(self) -> str:
        """Short table cell: ✓/✗ and the statistic."""
        mark = "✓" if self.passed else "✗"
        if self.p_value is not None:
            return f"{mark} p={self.p_value:.3g}"
        if self.statistic is not None and math.isfinite(self.statistic):
            return f"{mark} {self.statistic:.3g}"
        return mark
