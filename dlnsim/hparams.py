"""Per-run numbers that are swept: traced arrays, never compile-time constants."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

# field -> (lower bound, strict, upper bound): lr > 0, momentum in [0, 1), everything else >= 0.
_BOUNDS = {
    "lr": (0.0, True, math.inf),
    "weight_decay": (0.0, False, math.inf),
    "init_scale": (0.0, False, math.inf),
    "train_noise": (0.0, False, math.inf),
    "momentum": (0.0, False, 1.0),  # heavy-ball beta or Adam's b1: 1 or more never settles
}


class _HParamsBase(NamedTuple):
    lr: Any = 0.02  # step size eta; scalar, float
    weight_decay: Any = 0.0  # lambda; scalar, float
    init_scale: Any = 1.0  # multiplies the init scheme's std; scalar, float
    train_noise: Any = 0.0  # std of the training measurement noise; scalar, float
    momentum: Any = 0.9  # momentum ("momentum") or b1 ("adam", "adamw"); scalar, float


class HParams(_HParamsBase):
    """Traced per-run hyperparameters (a pytree: vmap over any of its fields).

    Concrete values (Python or NumPy numbers) are validated on construction; traced
    values pass through untouched, since nothing is validated in traced code.

    Attributes:
      lr: step size eta, > 0 (default 0.02).
      weight_decay: lambda, >= 0 (default 0).
      init_scale: multiplies the init scheme's standard deviation, >= 0 (default 1).
      train_noise: standard deviation of the training measurement noise, >= 0 (default 0).
      momentum: heavy-ball beta (optimizer ``"momentum"``) or Adam's b1 (``"adam"``,
        ``"adamw"``), in [0, 1) (default 0.9); unused by ``"gd"``.

    Example:
      >>> HParams(lr=0.05, weight_decay=1e-2).lr
      0.05
      >>> HParams(lr=-1.0)
      Traceback (most recent call last):
      ...
      ValueError: HParams.lr = -1.0 is invalid: must be a finite number > 0
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> HParams:
        unknown = [k for k in kwargs if k not in cls._fields]
        if unknown or len(args) > len(cls._fields):
            what = f"unknown field {unknown[0]!r}" if unknown else f"{len(args)} values"
            raise TypeError(f"HParams got {what}: its fields are {', '.join(cls._fields)}")
        self = super().__new__(cls, *args, **kwargs)
        for name, value in zip(self._fields, self):
            if isinstance(value, int | float | np.number | np.ndarray) and not isinstance(value, bool):
                lo, strict, hi = _BOUNDS[name]
                v = np.asarray(value, dtype=float)
                ok = np.all(np.isfinite(v)) and np.all(v > lo if strict else v >= lo) and np.all(v < hi)
                if not ok:
                    op = ">" if strict else ">="
                    bound = f"in [{lo:g}, {hi:g})" if math.isfinite(hi) else f"{op} {lo:g}"
                    raise ValueError(f"HParams.{name} = {value!r} is invalid: must be a finite number {bound}")
            elif isinstance(value, bool | str | None):
                raise ValueError(f"HParams.{name} = {value!r} is invalid: must be a number")
        return self
