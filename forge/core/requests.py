"""The replacement-request contract between the Crucible and the Forge worker (a kernel contract).

The Crucible's Watchtower writes ``<requests_dir>/<slot>-<minute>.json`` (and the seed genome beside it) when
it kills a slot; the Forge worker (:mod:`loop.serve`) claims, serves and records each request in
``<stem>.serve.json`` (schema ``forge-serve/1``); ``status`` is ``claimed`` → ``served`` | ``unserved``
(:data:`FINAL`: never served again).  Both sides read this module, neither imports the other.  The
``[serve]`` table of a Crucible config (:class:`ServeConfig`) configures the worker and the runtime's wait
for it on replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.core.errors import ConfigError, GenomeError
from forge.core.safeio import loads_limited, read_regular_file
from forge.data.discovery import symbol_sources

__all__ = ["ServeConfig", "STATE_SCHEMA", "FINAL", "state_path", "read_state"]

STATE_SCHEMA = "forge-serve/1"
FINAL = ("served", "unserved")


@dataclass(frozen=True)
class ServeConfig:
    """The ``[serve]`` table.

    requests_dir / champions_dir: folders ("" = the config's ``[crucible]`` ones); runs_dir: where the
    worker's run directories go; data: ``SYMBOL=path-or-spec`` bar sources ("" = the config's ``[replay]
    data``; BTCUSDT falls back to the embedded sample); evolve_config: a ``forge evolve`` config file ("" =
    the packaged default); gauntlet_config: a gauntlet config file ("" = the packaged one); window_days:
    in-sample + out-of-sample history before the request time (days of 1-minute bars); min_bars: fewer
    bars than this and the request is unserved; population / generations: search size of the first
    attempt (0 = the evolve config's); max_attempts; budget_growth: population factor per retry;
    seed: base seed (attempt k uses seed + k); poll_seconds: rescan interval besides watchdog events;
    nice: CPU niceness of the worker started by ``crucible live --forge`` (0 = none); replay_wait_s: on the
    replay venue, ``crucible live --forge`` waits at most this many wall seconds for each request it wrote
    to be served before trading the next bar (0 = never wait; exchange venues never wait), see
    :mod:`loop.supervisor`.
    """

    requests_dir: str = ""
    champions_dir: str = ""
    runs_dir: str = "artifacts/serve"
    data: tuple[str, ...] = ()
    evolve_config: str = ""
    gauntlet_config: str = ""
    window_days: float = 30.0
    min_bars: int = 5000
    population: int = 0
    generations: int = 0
    max_attempts: int = 2
    budget_growth: float = 2.0
    seed: int = 0
    poll_seconds: float = 2.0
    nice: int = 10
    replay_wait_s: float = 900.0

    def validate(self) -> "ServeConfig":
        if self.window_days <= 0:
            raise ConfigError(f"window_days must be > 0, got {self.window_days}")
        if self.min_bars < 100:
            raise ConfigError(f"min_bars must be >= 100, got {self.min_bars}")
        if self.population < 0 or self.generations < 0:
            raise ConfigError("population and generations must be >= 0 (0 = the evolve config's)")
        if not 1 <= self.max_attempts <= 20:
            raise ConfigError(f"max_attempts must be in [1, 20], got {self.max_attempts}")
        if not 1.0 <= self.budget_growth <= 10.0:
            raise ConfigError(f"budget_growth must be in [1, 10], got {self.budget_growth}")
        if self.seed < 0 or self.poll_seconds <= 0 or not 0 <= self.nice <= 19 or self.replay_wait_s < 0:
            raise ConfigError("seed must be >= 0, poll_seconds > 0, nice in [0, 19] and replay_wait_s >= 0")
        symbol_sources(self.data, "data")
        return self


def _stem(request: Path) -> str:
    return request.name[: -len(".json")]


def state_path(request: Path) -> Path:
    return request.with_name(_stem(request) + ".serve.json")


def read_state(request: Path) -> dict[str, Any] | None:
    """The request's ``.serve.json`` record, or None when there is none (or it is unreadable: the request
    is then served again from its runs' checkpoints)."""
    p = state_path(request)
    try:
        st = loads_limited(read_regular_file(p), str(p))
    except (GenomeError, OSError):
        return None
    return st if isinstance(st, dict) and st.get("schema") == STATE_SCHEMA else None
