"""Validation of config values: errors that name the field, the value and what is allowed.

Shared by the frozen configs in :mod:`dlnsim.config` (STYLE.md, Architecture 8).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

_UNITS = {
    **{"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12},
    **{"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40},
}


def parse_bytes(value: int | str) -> int:
    """``4GB``, ``512MiB`` or a plain integer of bytes.

    Example:
      >>> parse_bytes("1.5GB"), parse_bytes("512MiB"), parse_bytes(1000)
      (1500000000, 536870912, 1000)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if match and match.group(2).upper() in _UNITS and float(match.group(1)) > 0:
        return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    raise ValueError(
        f"max_memory = {value!r} is invalid: must be a positive size such as 4GB, 512MiB or bytes "
        "(units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
    )


def fail(cls: str, field: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{cls}.{field} = {value!r} is invalid: {allowed}")


MAX_INT = 2**31 - 1  # sizes and step counts: int32 in the compiled programs


def check_int(cls: str, field: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        fail(cls, field, value, f"must be an integer >= {lo}")
    if value > MAX_INT:
        fail(cls, field, value, f"must be an integer >= {lo} and < 2**31")


def check_choice(cls: str, field: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        fail(cls, field, value, f"must be one of {', '.join(map(repr, choices))}")


def check_float(cls: str, field: str, value: Any, *, lo: float, strict: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        ok = value > lo if strict else value >= lo
        ok = ok and math.isfinite(value)
    if not ok:
        fail(cls, field, value, f"must be a finite number {'>' if strict else '>='} {lo}")


def x64_ready(dtype: str) -> bool:
    """Whether JAX computes in ``dtype``: ``float64`` needs 64-bit JAX (else it silently runs float32)."""
    return dtype != "float64" or bool(jax.config.jax_enable_x64)


def check_x64(field: str, dtype: str) -> None:
    """Raises ``ValueError`` naming ``field`` where ``dtype`` is not :func:`x64_ready`."""
    if not x64_ready(dtype):
        raise ValueError(
            f"{field} = 'float64' needs 64-bit JAX (else JAX computes in float32): call "
            "jax.config.update('jax_enable_x64', True) first (the dlnsim CLI does), or use 'float32'"
        )


def plain(value: Any) -> Any:
    """A numpy or JAX scalar (0-d array) as the Python number it holds; anything else as is."""
    if hasattr(value, "item") and np.ndim(value) == 0:
        return value.item()
    return value
