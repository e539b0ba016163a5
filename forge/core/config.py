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


def build_root(root_cls: type[T], raw: dict[str, Any], source: str) -> T:
    """Instantiate a root config: a dataclass whose fields are section dataclasses (one per TOML table, the
    field's ``default_factory`` naming its class) plus an optional ``source: str`` field set to ``source``.

    raw: {table: {key: value}}; missing tables take their defaults.  raises ConfigError for an unknown
    table, a table that is not a table, or anything :func:`build_section` rejects (naming source, table, key).
    """
    sections = {f.name: f.default_factory for f in dataclasses.fields(root_cls) if f.name != "source"}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(sections)}")
    parts: dict[str, Any] = {}
    for name, cls in sections.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        parts[name] = build_section(cls, table, f"{source} [{name}]")  # type: ignore[arg-type]
    if any(f.name == "source" for f in dataclasses.fields(root_cls)):
        parts["source"] = source
    return root_cls(**parts)


def load_config(path: str | Path | None, root_cls: type[T], default_name: str | None = None) -> T:
    """Read a TOML file into ``root_cls`` (see :func:`build_root`).

    The one rule for default paths: ``path`` None -> ``CONFIG_DIR / default_name`` when that file exists,
    else the built-in defaults (``root_cls()``).  raises ConfigError naming file, table and key.
    """
    if path is None:
        default = CONFIG_DIR / default_name if default_name else None
        if default is None or not default.is_file():
            return root_cls()
        path = default
    return build_root(root_cls, read_toml(path), str(path))


def resolve_path(path: str) -> Path:
    """``path`` if it exists or is absolute, else the same relative path in the project checkout if it
    exists there (e.g. the shipped ``configs/sim`` calibration), else ``path`` unchanged (the caller
    decides what a missing file means)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    in_repo = CONFIG_DIR.parent / p
    return in_repo if in_repo.exists() else p
