"""Strict JSON (RFC 8259) for every machine-readable output of the project.

Python's ``json`` writes ``Infinity``/``NaN`` for non-finite floats, which
``JSON.parse``, ``jq`` and strict parsers reject.  One rule, applied here and
nowhere else: a non-finite float becomes ``null`` and the top-level object
gets a ``"nonfinite"`` map from the value's JSON Pointer (RFC 6901) to the
reason, one of ``"+inf"``, ``"-inf"`` or ``"nan"``.  For example a time to
target that was never reached::

    {"meta": {"ttt_bars": null}, "nonfinite": {"/meta/ttt_bars": "+inf"}}

The map is present only when something was replaced (so clean objects are
unchanged).  numpy scalars and arrays, tuples, sets and ``Path`` objects are
converted to their JSON equivalents; anything else raises ``TypeError``.

Every ``--json`` of the command line prints :func:`dumps` of its object, and
a file written alongside (``gauntlet_report.json``) holds the same text.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

__all__ = ["sanitize", "dumps", "loads_strict", "revive_nonfinite", "NONFINITE_KEY"]

NONFINITE_KEY = "nonfinite"


def _pointer_token(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _reason(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return "+inf" if x > 0 else "-inf"


def _clean(obj: Any, path: str, found: dict[str, str]) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        found[path or "/"] = _reason(obj)
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v, f"{path}/{_pointer_token(k)}", found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, f"{path}/{i}", found) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [_clean(v, f"{path}/{i}", found) for i, v in enumerate(sorted(obj, key=str))]
    if isinstance(obj, PurePath):
        return str(obj)
    try:  # numpy without importing it
        import numpy as np

        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return _clean(float(obj), path, found)
        if isinstance(obj, np.ndarray):
            return _clean(obj.tolist(), path, found)
        if isinstance(obj, np.datetime64):
            return str(obj)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    raise TypeError(f"{path or '/'}: {type(obj).__name__} is not JSON serialisable")


def sanitize(obj: Any) -> Any:
    """JSON-ready copy of ``obj`` with non-finite floats replaced by ``None``.

    When ``obj`` is a dict and a value was replaced, the copy has a
    ``"nonfinite"`` key: ``{json_pointer: "+inf" | "-inf" | "nan"}`` (merged
    with an existing map of that name).  For a non-dict top level the reasons
    cannot be attached and only the nulls remain.  raises TypeError for a
    value that has no JSON form (naming its JSON Pointer).
    """
    found: dict[str, str] = {}
    clean = _clean(obj, "", found)
    if found and isinstance(clean, dict):
        prior = clean.get(NONFINITE_KEY)
        merged = dict(prior) if isinstance(prior, dict) else {}
        merged.update(found)
        clean[NONFINITE_KEY] = merged
    return clean


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (see module docstring); never contains ``Infinity``/``NaN``."""
    return json.dumps(sanitize(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads_strict(text: str) -> Any:
    """Parse JSON text, rejecting ``Infinity``, ``-Infinity`` and ``NaN`` (ValueError)."""
    return json.loads(text, parse_constant=_reject_constant)


_NONFINITE_STRINGS = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan,
                      "Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def revive_nonfinite(obj: Any) -> Any:
    """Copy of ``obj`` read from an older artifact in which non-finite floats were written as the
    strings "inf"/"-inf"/"nan" (``forge.core.artifacts.atomic_write_json``): those exact strings
    become floats again, so :func:`dumps` reports them as null with a reason like any other."""
    if isinstance(obj, str):
        return _NONFINITE_STRINGS.get(obj, obj)
    if isinstance(obj, dict):
        return {k: revive_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [revive_nonfinite(v) for v in obj]
    return obj
