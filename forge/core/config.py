"""Typed configuration loaded from TOML and validated up front.

A config file has one table per section (``[evolve]``, ``[fitness]``,
``[backtest]``, ...).  Each section maps onto a frozen dataclass; unknown
keys, wrong types and out-of-range values raise :class:`ConfigError` naming
the file, the section and the key, before any work starts.  CLI flags
override file values through :func:`override`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from forge.core.errors import ConfigError

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
"""The repository's ``configs/`` folder (present in a source checkout)."""


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            try:
                return _check_type(value, arm, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected nothing, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arm, _ellipsis) = typing.get_args(tp)
        return tuple(_check_type(v, arm, f"{where}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"{where}: unsupported config type {tp}")


def build_section(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate dataclass ``cls`` from a TOML table, checking keys and types.

    raises ConfigError naming ``where`` and the key for unknown keys, wrong
    types, and whatever ``cls.validate()`` rejects.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; ConfigError with file, line and column on syntax errors."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None


def override(obj: T, where: str = "override", **changes: Any) -> T:
    """Return a copy of dataclass ``obj`` with non-None ``changes`` applied and re-validated."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return obj
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    values.update(changes)
    return build_section(type(obj), values, where)


def to_dict(obj: Any) -> Any:
    """JSON-safe nested dict of a (possibly nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj
