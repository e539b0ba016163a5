"""The replacement-request contract between the Crucible and the Forge worker (a kernel contract).

The Crucible's Watchtower writes ``<requests_dir>/<slot>-<minute>.json`` (and the seed genome beside it) when
it kills a slot; the Forge worker (:mod:`loop.serve`) claims, serves and records each request in
``<stem>.serve.json`` (schema ``forge-serve/1``); ``status`` is ``claimed`` → ``served`` | ``unserved``
(:data:`FINAL`: never served again).  Both sides read this module, neither imports the other.  The
``[serve]`` table of a Crucible config (:class:`ServeConfig`) configures the worker and the runtime's wait
for it on replay.

A request file is read only through :func:`parse_request` (hardened reader: a regular file of at most
:data:`REQUEST_MAX_BYTES`, JSON nested at most :data:`forge.core.safeio.MAX_DEPTH` levels, every field typed
and bounded).  A request that ends ``unserved`` says why in ``reason``; one that killed the worker
:data:`QUARANTINE_AFTER` times (the worker died, e.g. ``kill -9`` / out of memory, while the request was
claimed) ends ``unserved`` with ``quarantined: true`` and its ``crashes`` listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.core.errors import ConfigError, GenomeError
from forge.core.safeio import loads_limited, read_regular_file
from forge.data.discovery import symbol_sources

__all__ = ["ServeConfig", "STATE_SCHEMA", "FINAL", "state_path", "read_state", "parse_request", "REQUEST_SCHEMA",
           "REQUEST_MAX_BYTES", "QUARANTINE_AFTER", "TIME_MIN_MS", "TIME_MAX_MS"]

STATE_SCHEMA = "forge-serve/1"
REQUEST_SCHEMA = "crucible-request/1"
FINAL = ("served", "unserved")
REQUEST_MAX_BYTES = 1 << 20  # a request file (it carries its seed genome inline): 1 MiB at most
QUARANTINE_AFTER = 2  # the worker died this many times serving one request: it is quarantined (unserved)
TIME_MIN_MS = 1_230_768_000_000  # 2009-01-01T00:00Z: no exchange bar is older
TIME_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00Z: a bound before any data is touched (10**30 is refused)
_NAME_MAX = 64


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
    seed: base seed (attempt k uses seed + k); max_request_lag_days: a request time later than the data's last
    bar close by more than this many days is unserved (its bars would not be the ones before the kill);
    poll_seconds: rescan interval besides watchdog events;
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
    max_request_lag_days: float = 2.0
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
        if not self.max_request_lag_days >= 0:
            raise ConfigError(f"max_request_lag_days must be >= 0, got {self.max_request_lag_days}")
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


def parse_request(request: Path) -> dict[str, Any]:
    """Read and validate a replacement request file (schema ``crucible-request/1``) with the hardened reader.

    Checks: a regular file (no symlink, FIFO, device) of at most :data:`REQUEST_MAX_BYTES` bytes, JSON nested
    at most ``MAX_DEPTH`` levels, an object with ``slot`` / ``symbol`` / ``seed_genome_file`` plain names
    (``symbol`` alphanumeric, ``seed_genome_file`` without a path separator, at most 64 characters each),
    ``time_ms`` an integer (not a bool) in [2009-01-01, 2100-01-01) UTC in ms, ``seed_genome_sha256`` a
    64-hex string when present.  The request's time is checked against the bars later
    (:func:`loop.serve.request_bars`).
    returns the request dict.  raises GenomeError naming the file and the first problem.
    """
    req = loads_limited(read_regular_file(request, REQUEST_MAX_BYTES), str(request))
    if not isinstance(req, dict) or req.get("schema") != REQUEST_SCHEMA:
        raise GenomeError(f"{request}: not a replacement request (schema {REQUEST_SCHEMA})")
    for key, tp in (("slot", str), ("symbol", str), ("time_ms", int), ("seed_genome_file", str)):
        v = req.get(key)
        if not isinstance(v, tp) or isinstance(v, bool):
            raise GenomeError(f"{request}: field {key!r} must be {tp.__name__}, got {str(v)[:80]!r}")
    name, slot = req["seed_genome_file"], req["slot"]
    if ("/" in name or "\\" in name or "\x00" in name or name in ("", ".", "..") or not req["symbol"].isalnum()
            or not slot or "/" in slot or "\x00" in slot):
        raise GenomeError(f"{request}: seed_genome_file / symbol / slot must be plain names")
    if max(len(name), len(slot), len(req["symbol"])) > _NAME_MAX:
        raise GenomeError(f"{request}: slot / symbol / seed_genome_file longer than {_NAME_MAX} characters")
    t = req["time_ms"]
    if not TIME_MIN_MS <= t < TIME_MAX_MS:
        raise GenomeError(f"{request}: time_ms {str(t)[:40]} is not a time between 2009-01-01 and 2100-01-01 UTC "
                          "(ms since the epoch)")
    sha = req.get("seed_genome_sha256")
    if sha is not None and sha != "" and not (isinstance(sha, str) and len(sha) == 64
                                               and all(c in "0123456789abcdef" for c in sha)):
        raise GenomeError(f"{request}: seed_genome_sha256 must be 64 lowercase hex digits")
    return req
