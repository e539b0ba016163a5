"""``configs/gauntlet.toml``: thresholds and sizes of every stage (``forge.core.config`` parsing: unknown keys and wrong types are errors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forge.core.config import build_section, read_toml
from forge.core.errors import ConfigError

__all__ = ["GauntletConfig", "load_gauntlet_config"]


@dataclass(frozen=True)
class GauntletConfig:
    """Every stage's settings.

    min_trades: fills required on the evaluation range; walk_forward_folds:
    anchored folds reported by the OOS stage (0 = none); min_positive_folds:
    share of folds with Sharpe > 0 required; lookahead_points: truncation
    points; dsr_threshold: DSR needed; max_trials: evaluated candidates
    sampled for the effective number of trials; trial_max_correlation: trials
    correlated above this are one trial; pbo_blocks: CSCV blocks S (even);
    pbo_threshold: PBO must be below; alpha: significance level of the
    permutation, SPA, PCMCI and DoWhy stages; bootstrap_reps and
    bootstrap_block (bars) for the circular block bootstrap; spa_reps and
    spa_block (hours); pcmci_tau_max, pcmci_pc_alpha, pcmci_max_samples;
    dowhy_max_samples, dowhy_placebo_shifts (circular-shift placebos of our own
    gate), dowhy_simulations (per DoWhy refuter); gating: stages whose failure
    rejects a candidate; seed: root of every random choice.
    """

    min_trades: int = 10
    walk_forward_folds: int = 4
    min_positive_folds: float = 0.5
    lookahead_points: int = 12
    dsr_threshold: float = 0.95
    max_trials: int = 300
    trial_max_correlation: float = 0.5
    pbo_blocks: int = 10
    pbo_threshold: float = 0.5
    alpha: float = 0.05
    bootstrap_reps: int = 999
    bootstrap_block: int = 60
    spa_reps: int = 500
    spa_block: int = 24
    pcmci_tau_max: int = 3
    pcmci_pc_alpha: float = 0.05
    pcmci_max_samples: int = 20000
    dowhy_max_samples: int = 20000
    dowhy_placebo_shifts: int = 199
    dowhy_simulations: int = 10
    gating: tuple[str, ...] = ("oos", "lookahead", "dsr", "pbo", "permutation", "pcmci", "dowhy")
    seed: int = 0

    def validate(self) -> GauntletConfig:
        from gauntlet.stages import STAGE_ORDER

        if self.pbo_blocks % 2 or self.pbo_blocks < 4:
            raise ConfigError(f"gauntlet.pbo_blocks must be even and >= 4, got {self.pbo_blocks}")
        for name in ("alpha", "dsr_threshold", "pbo_threshold", "min_positive_folds", "trial_max_correlation"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"gauntlet.{name} must be in (0, 1], got {getattr(self, name)}")
        unknown = set(self.gating) - set(STAGE_ORDER)
        if unknown:
            raise ConfigError(f"gauntlet.gating: unknown stages {sorted(unknown)}; known: {list(STAGE_ORDER)}")
        for name in ("lookahead_points", "max_trials", "bootstrap_reps", "spa_reps", "bootstrap_block", "spa_block"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gauntlet.{name} must be >= 1, got {getattr(self, name)}")
        return self


def load_gauntlet_config(path: str | Path | None) -> GauntletConfig:
    """Read ``[gauntlet]`` from a TOML file (None: defaults). raises ConfigError naming file and key."""
    if path is None:
        return GauntletConfig().validate()
    raw = read_toml(path)
    unknown = sorted(set(raw) - {"gauntlet"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; expected [gauntlet]")
    return build_section(GauntletConfig, raw.get("gauntlet", {}), f"{path} [gauntlet]")
