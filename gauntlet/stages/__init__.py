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

__all__ = ["StageResult", "STAGE_ORDER", "holdout_report_only"]

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


def holdout_report_only(name: str, statistic_name: str, threshold: float | None, own: StageResult | None,
                        cand: Any, shared: dict[str, Any]) -> StageResult:
    """A selection stage (dsr, pbo) in a holdout: reported, never gating (passed True).

    The selection it deflates happened on the run's own bars; on fresh bars nothing was selected, so the
    stage reports the run's own figure: ``own`` (recomputed from the run's in-sample trials when the bars
    given hold them) or the stage result of the run's own validation (``shared["holdout"]``, its
    ``gauntlet_report.json``), else says it is unavailable.
    """
    prior = ((shared.get("holdout") or {}).get("by_sha") or {}).get(cand.genome.sha256, {}).get(name)
    if own is not None:
        src, stat, ok, why, det = "recomputed from the run's in-sample trials", own.statistic, own.passed, \
            own.reason, own.details
    elif prior is not None:
        src = f"from the run's own validation ({(shared['holdout'] or {}).get('source')})"
        stat, ok, why, det = prior.get("statistic"), prior.get("passed"), prior.get("reason"), prior.get("details", {})
    else:
        return StageResult(name, statistic_name, None, None, threshold, True,
                           "holdout: not applied to fresh bars; the run's own figure is unavailable (no "
                           "gauntlet_report.json and the bars given do not hold its in-sample range)",
                           {"holdout": True, "applied": False})
    verdict = "passed" if ok else "failed"
    return StageResult(name, statistic_name, stat, None, threshold, True,
                       f"holdout: not applied to fresh bars; {src}: {verdict} — {why}",
                       {"holdout": True, "applied": False, "source": src, "run_passed": ok, "run_details": det})
