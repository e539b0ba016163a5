"""The calibration result and its file, and the ``[calibrate]`` config of ``forge calibrate``.

``CalibrationResult`` (what :func:`forge.sim.calibrate.calibrate` returns) with ``write_calibration`` /
``read_calibration`` / ``load_calibration`` / ``load_calibrated_facts`` (calibration.json, schema
``SCHEMA_VERSION``), and ``CalibrateConfig`` / ``load_calibrate_config``.  The search itself is in
``forge.sim.calibrate``, which re-exports these names."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forge.core.artifacts import atomic_write_json
from forge.core.config import load_config
from forge.core.errors import ConfigError, DataError
from forge.data.ranges import DataRange
from forge.sim.facts import facts_table
from forge.sim.params import DSG_SPECS, default_dsg, from_dict, to_dict

DEFAULT_CALIBRATION_PATH = Path("artifacts/sim/calibration.json")
"""Where ``forge calibrate`` writes and ``load_calibration`` reads by default."""
SCHEMA_VERSION = 2
"""2: distance-space weights (log-ratios for scale-free facts), ``facts_target``; 1 files still load."""

SEARCH_IDX: tuple[int, ...] = tuple(i for i, s in enumerate(DSG_SPECS) if s.name != "lot_quote")
"""DSG indices CMA-ES moves (all but lot_quote)."""


@dataclass
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    dsg: (N_P,) float64 best DSG (natural units, lot_quote fitted);
    loss / loss_default: mean-over-seeds loss of the best / the start DSG;
    loss_history: (n_evals,) best-so-far loss after each evaluation
    (non-increasing; entry 0 is the start DSG); eval_losses: (n_evals,) loss
    of each evaluated candidate in order; facts_real: fact name -> value on
    the whole real sample; facts_target: what the loss compares with (mean
    over real windows of the simulation length in distance space, back in
    natural units; = facts_real for target="bootstrap"); facts_sim /
    facts_default: the mean over seeds (in distance space, back in natural
    units) of the best / start DSG; weights: fact name -> 1 / variance in
    distance space; boot_sd: fact name -> the matching sd (distance space:
    log units for ``LOG_FACTS``) across real windows / bootstrap replicates;
    settings: the arguments; seconds: wall time.
    """

    dsg: np.ndarray
    loss: float
    loss_default: float
    loss_history: list[float]
    eval_losses: list[float]
    facts_real: dict[str, float]
    facts_sim: dict[str, float]
    facts_default: dict[str, float]
    weights: dict[str, float]
    boot_sd: dict[str, float]
    settings: dict[str, Any]
    seconds: float
    generations: int = 0
    stop_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    facts_target: dict[str, float] = field(default_factory=dict)

    @property
    def data_range(self) -> DataRange | None:
        """The real bars the fit used (``settings["data_range"]``, recorded by :func:`calibrate`); None for a
        file written before ranges were recorded.  raises ConfigError when the recorded range is malformed."""
        d = self.settings.get("data_range")
        return None if d is None else DataRange.from_dict(d, "calibration settings")

    @property
    def params(self) -> dict[str, float]:
        """DSG parameter name -> value."""
        return to_dict(self.dsg)

    def facts_rows(self) -> list[dict[str, Any]]:
        """Rows {fact, real, sim, ratio, default, weight, target} for the CLI table."""
        rows = facts_table(self.facts_real, self.facts_sim)
        for r in rows:
            r["default"] = self.facts_default.get(r["fact"], math.nan)
            r["weight"] = self.weights.get(r["fact"], math.nan)
            r["target"] = self.facts_target.get(r["fact"], math.nan)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (schema_version 1): parameters by name, facts real vs
        simulated, loss history, weights, settings."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "forge.sim.calibration",
            "parameters": self.params,
            "searched": [DSG_SPECS[i].name for i in SEARCH_IDX],
            "loss": self.loss,
            "loss_default": self.loss_default,
            "n_evals": len(self.eval_losses),
            "generations": self.generations,
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "facts": self.facts_rows(),
            "facts_real": self.facts_real,
            "facts_target": self.facts_target,
            "facts_sim": self.facts_sim,
            "facts_default": self.facts_default,
            "weights": self.weights,
            "boot_sd": self.boot_sd,
            "loss_history": self.loss_history,
            "eval_losses": self.eval_losses,
            "settings": self.settings,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationResult:
        """Inverse of :meth:`to_dict`. raises ConfigError on a malformed dict."""
        try:
            if d.get("kind") != "forge.sim.calibration":
                raise ConfigError(f"not a calibration file (kind={d.get('kind')!r})")

            def fl(x: Any) -> float:
                if x is None:
                    return math.nan
                if isinstance(x, str):
                    return float(x)  # "inf" / "-inf" from atomic_write_json
                return float(x)

            def fd(x: dict[str, Any]) -> dict[str, float]:
                return {k: fl(v) for k, v in x.items()}

            return cls(
                dsg=from_dict(d["parameters"]),
                loss=fl(d["loss"]),
                loss_default=fl(d["loss_default"]),
                loss_history=[fl(v) for v in d["loss_history"]],
                eval_losses=[fl(v) for v in d["eval_losses"]],
                facts_real=fd(d["facts_real"]),
                facts_sim=fd(d["facts_sim"]),
                facts_default=fd(d["facts_default"]),
                weights=fd(d["weights"]),
                boot_sd=fd(d["boot_sd"]),
                settings=dict(d["settings"]),
                seconds=fl(d["seconds"]),
                generations=int(d.get("generations", 0)),
                stop_reason=str(d.get("stop_reason", "")),
                extra=dict(d.get("extra", {})),
                facts_target=fd(d.get("facts_target", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"malformed calibration dict: {type(e).__name__}: {e}") from None


@dataclass(frozen=True)
class CalibrateConfig:
    """``[calibrate]``: the settings of ``forge calibrate`` (command-line flags override them).

    data: kline files or folders (empty: the embedded BTCUSDT sample); in_sample_fraction: the fit uses
    only the leading share of the bars (the in-sample range of ``forge evolve`` with the same fraction, by
    the same split rule, ``forge.data.split.holdout_split``), so a run over the same data never meets a
    simulator fitted on its out-of-sample bars; 1.0 fits every bar (such a calibration is refused by any
    run whose out-of-sample range it overlaps).  budget: CMA-ES evaluations (>= 5); minutes: simulated
    minutes per evaluation and seed (>= 30); seeds: simulation seeds per evaluation (seeds 0..seeds-1,
    common random numbers); seed: CMA-ES and bootstrap seed; target: "windows", "pooled" or "bootstrap"
    (:func:`calibrate`); n_boot: real replicates (>= 10); block_minutes: bootstrap block length;
    sigma0: initial CMA-ES step in unit coordinates, (0, 1]; start: warm-start calibration JSON ("" = the
    built-in DSG); out: the calibration JSON to write.
    """

    data: tuple[str, ...] = ()
    in_sample_fraction: float = 0.7
    budget: int = 60
    minutes: int = 720
    seeds: int = 2
    seed: int = 0
    target: str = "windows"
    n_boot: int = 100
    block_minutes: int = 240
    sigma0: float = 0.2
    start: str = ""
    out: str = str(DEFAULT_CALIBRATION_PATH)

    def validate(self) -> None:
        """raises ConfigError naming the first invalid field."""
        checks = [
            ("in_sample_fraction", 0 < self.in_sample_fraction <= 1, "in (0, 1]"),
            ("budget", self.budget >= 5, ">= 5"),
            ("minutes", self.minutes >= 30, ">= 30"),
            ("seeds", self.seeds >= 1, ">= 1"),
            ("seed", self.seed >= 0, ">= 0"),
            ("target", self.target in ("windows", "pooled", "bootstrap"), "'windows', 'pooled' or 'bootstrap'"),
            ("n_boot", self.n_boot >= 10, ">= 10"),
            ("block_minutes", self.block_minutes >= 1, ">= 1"),
            ("sigma0", 0 < self.sigma0 <= 1, "in (0, 1]"),
            ("out", bool(self.out), "a file path"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name} must be {expected}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class CalibrateFile:
    """A ``forge calibrate`` config file: one ``[calibrate]`` table (:class:`CalibrateConfig`)."""

    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    source: str = "<defaults>"


def load_calibrate_config(path: str | Path | None = None) -> CalibrateConfig:
    """The ``[calibrate]`` table of ``path``; None -> ``configs/calibrate.toml`` when present, else the
    defaults of :class:`CalibrateConfig` (``forge.core.config.load_config``).  raises ConfigError naming the
    file, table and key."""
    return load_config(path, CalibrateFile, "calibrate.toml").calibrate


# --------------------------------------------------------------------------- files
def write_calibration(result: CalibrationResult, path: str | Path = DEFAULT_CALIBRATION_PATH) -> Path:
    """Atomically write ``result.to_dict()`` as JSON (parents created). returns the Path."""
    return atomic_write_json(path, result.to_dict())


def read_calibration(path: str | Path = DEFAULT_CALIBRATION_PATH) -> CalibrationResult:
    """The CalibrationResult stored at ``path``.

    raises DataError if the file is missing, ConfigError if it is not valid
    calibration JSON (out-of-bounds or unknown parameters included).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("calibration file not found (run `forge calibrate`)", file=p)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a JSON object")
    return CalibrationResult.from_dict(d)


def load_calibration(path: str | Path = DEFAULT_CALIBRATION_PATH) -> np.ndarray:
    """(N_P,) float64 calibrated DSG from ``path``; ``default_dsg()`` if the file
    does not exist.  raises ConfigError if the file exists but is malformed."""
    p = Path(path)
    if not p.is_file():
        return default_dsg()
    return read_calibration(p).dsg


def load_calibrated_facts(path: str | Path = DEFAULT_CALIBRATION_PATH) -> tuple[dict[str, float], dict[str, float]] | None:
    """(facts of the calibrated simulator, weights) for ``realism_distance``, or
    None if no calibration file exists.  raises ConfigError if malformed."""
    p = Path(path)
    if not p.is_file():
        return None
    r = read_calibration(p)
    return r.facts_sim, r.weights
