"""Static configuration: frozen, hashable dataclasses that validate themselves.

Everything here fixes shapes or control flow and is therefore a *static* argument of
``jax.jit``. Numbers that are swept per run (step size, weight decay, init scale,
training noise) live in :class:`dlnsim.HParams` and are traced, so one compiled
program serves a whole grid (STYLE.md, Architecture 2).

Every config checks itself on construction and raises ``ValueError`` naming the
field, the bad value and what is allowed (STYLE.md, Architecture 8).

- :mod:`dlnsim.config.network`: one run's configs, ``ProblemConfig``, ``ModelConfig``,
  ``TrainConfig``, and the choices their fields allow.
- :mod:`dlnsim.config.sweep`: ``SweepConfig``, the grid axes, and its static groups.
"""

from dlnsim.config.network import (
    ACTIVATIONS,
    BACKWARDS,
    DATA_PATHS,
    DTYPES,
    INITS,
    LOSS_NORMS,
    OPERATORS,
    OPTIMIZERS,
    PRECISIONS,
    ModelConfig,
    ProblemConfig,
    TrainConfig,
)
from dlnsim.config.sweep import (
    GRID_AXES,
    RATIO_AXES,
    STATIC_AXES,
    TRACED_AXES,
    SweepConfig,
    problem_and_model,
    static_combinations,
)

__all__ = [
    "ACTIVATIONS",
    "BACKWARDS",
    "DATA_PATHS",
    "DTYPES",
    "GRID_AXES",
    "INITS",
    "LOSS_NORMS",
    "OPERATORS",
    "OPTIMIZERS",
    "PRECISIONS",
    "RATIO_AXES",
    "STATIC_AXES",
    "TRACED_AXES",
    "ModelConfig",
    "ProblemConfig",
    "SweepConfig",
    "TrainConfig",
    "problem_and_model",
    "static_combinations",
]
