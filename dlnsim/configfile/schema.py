"""What a config file may hold: its sections and keys, the TOML kind of every key, and errors.

:data:`SCHEMA` maps ``section -> key -> kind``, derived from the config dataclasses;
:func:`coerce` checks a value against its kind and :func:`toml_value` writes a value as
TOML text. Every problem is a :class:`ConfigError` naming the key path, the value and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any

from dlnsim.config import GRID_AXES, RATIO_AXES, STATIC_AXES, ModelConfig, ProblemConfig, SweepConfig, TrainConfig
from dlnsim.hparams import HParams

REQUIRED_SECTIONS = ("problem", "model", "train", "grid")
SECTIONS = ("problem", "model", "train", "hparams", "grid", "sweep")
DATACLASS_SECTIONS = {"problem": ProblemConfig, "model": ModelConfig, "train": TrainConfig}
_INT_AXES = tuple(a for a in STATIC_AXES if a not in RATIO_AXES) + ("seed", "problem_seed")
_NOT_SWEEP_OPTIONS = ("problem", "model", "train", "hparams", "grid")


class ConfigError(ValueError):
    """A config file or override is invalid; ``key`` is the offending key path."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# Its public home: tracebacks, doctests and pickles name dlnsim.configfile.ConfigError.
ConfigError.__module__ = "dlnsim.configfile"


def bad(key: str, value: Any, allowed: str) -> ConfigError:
    """The error for a value of the wrong kind or range at ``key``."""
    return ConfigError(key, f"{key} = {show(value)} is invalid: {allowed}")


def show(value: Any) -> str:
    """A value as it would be written in TOML (what the user typed), for messages."""
    try:
        return toml_value(value)
    except TypeError:
        return repr(value)


def toml_value(v: Any) -> str:
    """A value as TOML text: bools, ints, floats (inf and nan too), strings, lists."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)  # Python's shortest round-trip repr is valid TOML (1e-05, 0.001)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as a TOML value")


def _kind(tp: Any) -> str:
    """Maps a dataclass field annotation to a TOML kind (see :data:`ALLOWED`).

    ``X | None`` fields are optional: leaving the key out means None.
    """
    args = set(typing.get_args(tp)) - {type(None)} if typing.get_origin(tp) in (typing.Union, types.UnionType) else {tp}
    if args == {int, str}:
        return "size"
    if len(args) == 1:
        (tp,) = args
        if tp in (int, float, bool, str):
            return tp.__name__
        if typing.get_origin(tp) is tuple:
            return "floats"
    raise TypeError(f"no TOML kind for {tp!r}")  # a new field type needs a rule here


def _schema() -> dict[str, dict[str, str]]:
    out = {}
    for name, cls in DATACLASS_SECTIONS.items():
        hints = typing.get_type_hints(cls)
        out[name] = {f.name: _kind(hints[f.name]) for f in dataclasses.fields(cls)}
    out["hparams"] = {f: "float" for f in HParams._fields}
    out["grid"] = {a: "ints" if a in _INT_AXES else "floats" for a in GRID_AXES}
    hints = typing.get_type_hints(SweepConfig)
    out["sweep"] = {
        f.name: _kind(hints[f.name]) for f in dataclasses.fields(SweepConfig) if f.name not in _NOT_SWEEP_OPTIONS
    }
    return out


SCHEMA = _schema()

ALLOWED = {
    "int": "must be an integer",
    "float": "must be a number",
    "bool": "must be true or false",
    "str": "must be a string",
    "floats": "must be a non-empty list of numbers",
    "ints": "must be a non-empty list of integers",
    "size": 'must be a size such as "4GB" or a number of bytes',
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def coerce(key: str, kind: str, value: Any) -> Any:
    """Checks a TOML value against its kind; ints become floats where numbers are wanted."""
    ok = {
        "int": _is_int(value),
        "float": _is_num(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "floats": isinstance(value, list) and len(value) > 0 and all(map(_is_num, value)),
        "ints": isinstance(value, list) and len(value) > 0 and all(map(_is_int, value)),
        "size": _is_int(value) or isinstance(value, str),
    }[kind]
    if not ok:
        raise bad(key, value, ALLOWED[kind])
    if kind == "float":
        return float(value)
    if kind == "floats":
        return [float(v) for v in value]
    return value
