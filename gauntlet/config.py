"""``configs/gauntlet.toml``: thresholds and sizes of every stage (``forge.core.config`` parsing: unknown keys and wrong types are errors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forge.core.config import build_section, read_toml
from forge.core.errors import ConfigError

__all__ = ["GauntletConfig", "load_gauntlet_config"]


@dataclass(frozen=True)
class GauntletConfig:
    """Every stage's settings (each stage's source is in its module docstring).

    min_trades: fills required on the evaluation range (oos); subperiods: equal
    out-of-sample sub-periods whose alpha is reported (sub-period stability, a
    diagnostic); lookahead_points: truncation points; alpha: level of every
    gating hypothesis test (psr with Holm over the hall of fame, permutation,
    pcmci, dowhy); dsr_threshold: in-sample Deflated Sharpe needed; max_trials:
    contending trials clustered pair by pair (all evaluated genomes are
    backtested; above this many the clustering samples and assigns by
    cluster, ``gauntlet.stats.cluster_labels``); trial_max_correlation:
    trials correlated above this are one cluster; trial_dominated_level: a
    trial whose in-sample net Sharpe is significantly negative at this level
    is dominated (a fee burner) and left out of the clusters, PBO and N;
    pbo_blocks: CSCV blocks S (even); pbo_threshold: PBO must be below, unless
    the in-sample best's probability of loss over the CSCV splits is below
    pbo_loss_threshold (a family of profitable variants, ``gauntlet.stages.pbo``);
    permutation_shifts: circular shifts of the position (timing test);
    bootstrap_reps for the circular block bootstrap (diagnostic, block length by
    Politis–White); spa_reps and spa_min_points (hourly points below which SPA
    is reported as uninformative); pcmci_tau_max, pcmci_pc_alpha (PCMCI's
    regularisation level selecting the market's confounders),
    pcmci_cond_ind_test (the graph's CI test, ``forge.causal.COND_IND_TESTS``: "parcorr_hc", the
    heteroskedasticity-robust partial correlation, by default), pcmci_max_samples; dowhy_max_samples, dowhy_placebo_shifts,
    dowhy_simulations (per DoWhy refuter, diagnostic; the dowhy stage's
    adjustment set is identified by DoWhy on the PCMCI graph); gating: stages whose failure rejects a
    candidate (the others are reported as diagnostics); seed: root of every
    random choice.
    """

    min_trades: int = 10
    subperiods: int = 4
    lookahead_points: int = 12
    alpha: float = 0.05
    dsr_threshold: float = 0.95
    max_trials: int = 5000
    trial_max_correlation: float = 0.5
    trial_dominated_level: float = 0.01
    pbo_blocks: int = 16
    pbo_threshold: float = 0.5
    pbo_loss_threshold: float = 0.2
    permutation_shifts: int = 199
    bootstrap_reps: int = 999
    spa_reps: int = 500
    spa_min_points: int = 200
    pcmci_tau_max: int = 3
    pcmci_pc_alpha: float = 0.05
    pcmci_cond_ind_test: str = "parcorr_hc"
    pcmci_max_samples: int = 100_000
    dowhy_max_samples: int = 20000
    dowhy_placebo_shifts: int = 199
    dowhy_simulations: int = 10
    gating: tuple[str, ...] = ("oos", "lookahead", "psr", "dsr", "pbo", "permutation", "pcmci", "dowhy")
    seed: int = 0

    def validate(self) -> GauntletConfig:
        from gauntlet.stages import STAGE_ORDER

        if self.pbo_blocks % 2 or self.pbo_blocks < 4:
            raise ConfigError(f"gauntlet.pbo_blocks must be even and >= 4, got {self.pbo_blocks}")
        for name in ("alpha", "dsr_threshold", "pbo_threshold", "pbo_loss_threshold", "trial_max_correlation", "trial_dominated_level"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"gauntlet.{name} must be in (0, 1], got {getattr(self, name)}")
        unknown = set(self.gating) - set(STAGE_ORDER)
        if unknown:
            raise ConfigError(f"gauntlet.gating: unknown stages {sorted(unknown)}; known: {list(STAGE_ORDER)}")
        from forge.causal import COND_IND_TESTS

        if self.pcmci_cond_ind_test not in COND_IND_TESTS:
            raise ConfigError(f"gauntlet.pcmci_cond_ind_test must be one of {', '.join(COND_IND_TESTS)}, got "
                              f"{self.pcmci_cond_ind_test!r}")
        for name in ("lookahead_points", "max_trials", "bootstrap_reps", "spa_reps", "permutation_shifts",
                     "dowhy_placebo_shifts", "subperiods", "pcmci_tau_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gauntlet.{name} must be >= 1, got {getattr(self, name)}")
        return self

    @property
    def diagnostics(self) -> tuple[str, ...]:
        """Stages run and reported but not gating."""
        from gauntlet.stages import STAGE_ORDER

        return tuple(n for n in STAGE_ORDER if n not in self.gating)


def load_gauntlet_config(path: str | Path | None) -> GauntletConfig:
    """Read ``[gauntlet]`` from a TOML file (None: defaults). raises ConfigError naming file and key."""
    if path is None:
        return GauntletConfig().validate()
    raw = read_toml(path)
    unknown = sorted(set(raw) - {"gauntlet"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; expected [gauntlet]")
    return build_section(GauntletConfig, raw.get("gauntlet", {}), f"{path} [gauntlet]")
