"""Configuration sections of ``forge evolve`` (TOML tables -> frozen dataclasses).

``configs/default.toml`` and ``configs/smoke.toml`` hold the shipped values;
every key is optional (the defaults below apply).  ``load_run_config`` reads
a file and validates every section before anything runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from forge.backtest import BacktestConfig
from forge.core.config import CONFIG_DIR, build_section, read_toml
from forge.core.errors import ConfigError
from forge.coevolution import CoevolutionSection
from forge.surrogate import SurrogateSection


@dataclass(frozen=True)
class EvolveSection:
    """``[evolve]``: the (mu + lambda) loop, data split and run directory.

    population: mu, individuals kept per generation.  offspring: lambda,
    children bred per generation (0 = same as population).  cxpb / mutpb:
    probability that a child comes from subtree crossover / mutation (the
    rest are reproductions); cxpb + mutpb <= 1.  in_sample_fraction: leading
    share of the bars evolution may see; the rest is the out-of-sample range,
    never touched by evolution.  checkpoint: write ``checkpoint.json`` every
    generation (``forge evolve --resume``).  seed_genomes: genome files
    seeding ``seed_fraction`` of the initial population (the seeds and
    mutated copies of them; DNA recycling).  subtree_cache_mb: memory bound of
    each worker's subtree cache (0 = off; results are identical either way).
    backend: "loky" (joblib processes on this machine, ``jobs`` workers) or
    "dask" (a Dask distributed cluster at ``scheduler``; the data segment is
    scattered to every worker once).  symbols: evolve across these symbols
    (files ``<SYMBOL>-1m-*`` under ``data``); each strategy's fitness is the
    mean or the worst (``symbol_aggregate``) over symbols.
    """

    seed: int = 0
    population: int = 200
    offspring: int = 0
    generations: int = 10
    cxpb: float = 0.5
    mutpb: float = 0.4
    tournament_size: int = 3
    hall_of_fame_size: int = 10
    init_min_depth: int = 2
    init_max_depth: int = 5
    max_depth: int = 8
    max_size: int = 40
    jobs: int = 1
    in_sample_fraction: float = 0.7
    data: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    feature_library: str = ""
    output_dir: str = "artifacts/runs"
    checkpoint: bool = True
    seed_genomes: tuple[str, ...] = ()
    seed_fraction: float = 0.25
    subtree_cache_mb: int = 512
    backend: str = "loky"
    scheduler: str = ""
    symbols: tuple[str, ...] = ()
    symbol_aggregate: str = "mean"

    def validate(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.population < 2:
            raise ConfigError(f"population must be >= 2, got {self.population}")
        if self.offspring < 0:
            raise ConfigError(f"offspring must be >= 0, got {self.offspring}")
        if self.generations < 0:
            raise ConfigError(f"generations must be >= 0, got {self.generations}")
        for name in ("cxpb", "mutpb"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        if self.cxpb + self.mutpb > 1.0 + 1e-12:
            raise ConfigError(f"cxpb + mutpb must be <= 1, got {self.cxpb + self.mutpb}")
        if self.tournament_size < 1:
            raise ConfigError(f"tournament_size must be >= 1, got {self.tournament_size}")
        if self.hall_of_fame_size < 1:
            raise ConfigError(f"hall_of_fame_size must be >= 1, got {self.hall_of_fame_size}")
        if not 1 <= self.init_min_depth <= self.init_max_depth <= self.max_depth:
            raise ConfigError(
                "need 1 <= init_min_depth <= init_max_depth <= max_depth, got "
                f"{self.init_min_depth}, {self.init_max_depth}, {self.max_depth}"
            )
        if self.max_size < 3:
            raise ConfigError(f"max_size must be >= 3, got {self.max_size}")
        if self.jobs < 1:
            raise ConfigError(f"jobs must be >= 1, got {self.jobs}")
        if self.symbol_aggregate not in ("mean", "worst"):
            raise ConfigError(f"symbol_aggregate must be 'mean' or 'worst', got {self.symbol_aggregate!r}")
        if self.backend not in ("loky", "dask"):
            raise ConfigError(f"backend must be 'loky' or 'dask', got {self.backend!r}")
        if self.backend == "dask" and not self.scheduler:
            raise ConfigError("backend 'dask' needs scheduler = 'tcp://HOST:PORT' (--scheduler)")
        if self.subtree_cache_mb < 0:
            raise ConfigError(f"subtree_cache_mb must be >= 0 (0 = off), got {self.subtree_cache_mb}")
        if not 0.0 <= self.seed_fraction <= 1.0:
            raise ConfigError(f"seed_fraction must be in [0, 1], got {self.seed_fraction}")
        if not 0.1 <= self.in_sample_fraction < 1.0:
            raise ConfigError(f"in_sample_fraction must be in [0.1, 1), got {self.in_sample_fraction}")

    @property
    def n_offspring(self) -> int:
        """lambda: children per generation."""
        return self.offspring or self.population


@dataclass(frozen=True)
class FitnessSection:
    """``[fitness]``: the scalar in-sample fitness blend (higher is better).

    fitness = w_sharpe * clip(Sharpe, +-sharpe_cap) + w_ttt * ttt_score
              - w_drawdown * max_drawdown - w_size * size / max_size
    where ttt_score = 1 - TTT / n_bars if the target multiple was reached,
    else 0.  A strategy with fewer than ``min_trades`` fills, or ruined, gets
    ``floor``.
    """

    w_sharpe: float = 1.0
    w_ttt: float = 1.0
    w_drawdown: float = 2.0
    w_size: float = 0.2
    sharpe_cap: float = 20.0
    min_trades: int = 10
    floor: float = -100.0

    def validate(self) -> None:
        for name in ("w_sharpe", "w_ttt", "w_drawdown", "w_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sharpe_cap <= 0:
            raise ConfigError(f"sharpe_cap must be > 0, got {self.sharpe_cap}")
        if self.min_trades < 0:
            raise ConfigError(f"min_trades must be >= 0, got {self.min_trades}")


@dataclass(frozen=True)
class CausalSection:
    """``[causal]``: PCMCI feature filter before evolution (``forge.causal``).

    enabled: only features with a significant lagged link to the next-bar
    return become GP terminals; tau_max: largest lag (bars) tested; pc_alpha:
    PC-stage significance; alpha_level: significance of the final links
    after Benjamini-Hochberg over the return's candidate parents;
    max_samples: most recent in-sample rows used (runtime bound);
    aggregate_minutes: bars aggregated before the test (1 = none);
    cond_ind_test: "parcorr"; keep_at_least: features kept (smallest p)
    when fewer pass.
    """

    enabled: bool = True
    tau_max: int = 5
    pc_alpha: float = 0.05
    alpha_level: float = 0.01
    max_samples: int = 20000
    aggregate_minutes: int = 1
    cond_ind_test: str = "parcorr"
    keep_at_least: int = 3

    def validate(self) -> None:
        if not 1 <= self.tau_max <= 60:
            raise ConfigError(f"tau_max must be in [1, 60], got {self.tau_max}")
        for name in ("pc_alpha", "alpha_level"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.max_samples < 500:
            raise ConfigError(f"max_samples must be >= 500, got {self.max_samples}")
        if self.aggregate_minutes < 1:
            raise ConfigError(f"aggregate_minutes must be >= 1, got {self.aggregate_minutes}")
        if self.cond_ind_test != "parcorr":
            raise ConfigError(f"cond_ind_test must be 'parcorr', got {self.cond_ind_test!r}")
        if self.keep_at_least < 1:
            raise ConfigError(f"keep_at_least must be >= 1, got {self.keep_at_least}")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``forge evolve`` needs, validated."""

    evolve: EvolveSection = field(default_factory=EvolveSection)
    fitness: FitnessSection = field(default_factory=FitnessSection)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    surrogate: SurrogateSection = field(default_factory=SurrogateSection)
    causal: CausalSection = field(default_factory=CausalSection)
    coevolution: CoevolutionSection = field(default_factory=CoevolutionSection)
    source: str = "<defaults>"


SECTIONS = {"evolve": EvolveSection, "fitness": FitnessSection, "backtest": BacktestConfig,
            "surrogate": SurrogateSection, "causal": CausalSection, "coevolution": CoevolutionSection}


def config_to_dict(cfg: RunConfig) -> dict:
    """JSON-ready {section: {key: value}} of a run config."""
    from forge.core.config import to_dict

    return {name: to_dict(getattr(cfg, name)) for name in SECTIONS}


def config_from_dict(d: dict, source: str = "<dict>") -> RunConfig:
    """Inverse of ``config_to_dict`` (validated; raises ConfigError)."""
    unknown = sorted(set(d) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}")
    parts = {name: build_section(cls, d.get(name, {}), f"{source} [{name}]") for name, cls in SECTIONS.items()}
    return RunConfig(source=source, **parts)


def load_run_config(path: str | Path | None = None) -> RunConfig:
    """Read and validate a run config.

    path: TOML file; None -> ``configs/default.toml`` when present, else the
    built-in defaults.  raises ConfigError naming file, section and key.
    """
    if path is None:
        default = CONFIG_DIR / "default.toml"
        if not default.is_file():
            return RunConfig()
        path = default
    raw = read_toml(path)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    parts = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        parts[name] = build_section(cls, table, f"{path} [{name}]")
    return RunConfig(source=str(path), **parts)


def with_overrides(cfg: RunConfig, section: str, **changes) -> RunConfig:
    """Copy of ``cfg`` with non-None ``changes`` applied to one section (re-validated)."""
    from forge.core.config import override

    sec = getattr(cfg, section)
    new = override(sec, f"{cfg.source} [{section}] (command line)", **changes)
    return dataclasses.replace(cfg, **{section: new})
