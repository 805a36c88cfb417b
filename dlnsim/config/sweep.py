"""The config of a sweep: the grid axes, :class:`SweepConfig` and its static groups."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from dlnsim._checks import MAX_INT, check_int, fail, parse_bytes, plain
from dlnsim.config.network import ModelConfig, ProblemConfig, TrainConfig

# Grid axes. Static axes change shapes or control flow: each value is its own compiled
# group. Traced axes are vmapped inside one compiled program.
STATIC_AXES = {
    "depth": "model",
    "width": "model",
    "d": "problem",
    "m": "problem",
    "s": "problem",
    "n_train": "problem",
    "m_over_d": "problem",
    "s_over_m": "problem",
}
# Size ratios, for the (m/d x s/m) phase diagrams of SCIENCE.md section 5: ratio axis -> (the
# size it sets, the size it is a fraction of). m = m_over_d * d, then s = s_over_m * m, each rounded to
# the nearest integer (halves up). The base ProblemConfig stays a valid problem of its own.
RATIO_AXES = {"m_over_d": ("m", "d"), "s_over_m": ("s", "m")}
TRACED_AXES = ("seed", "problem_seed", "lr", "weight_decay", "init_scale", "train_noise", "momentum")
GRID_AXES = tuple(STATIC_AXES) + TRACED_AXES


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A grid of runs: the base configs plus the values each swept axis takes.

    Axes not in ``grid`` keep the base value (``hparams`` for the traced numbers,
    ``seed = 0``, ``problem_seed = 0``). Static axes (depth, width, d, m, s, n_train, and
    the size ratios m_over_d, s_over_m of :data:`RATIO_AXES`)
    make one compiled group per value combination; the rest are vmapped.

    Attributes:
      problem, model, train: base configs.
      hparams: base per-run numbers, a mapping with keys of :class:`dlnsim.HParams`.
      grid: axis name -> non-empty sequence of values. Axes: ``GRID_AXES``.
      teacher_per_seed: draw a fresh teacher (U, A, data) for every seed instead of
        sharing the one of ``problem_seed`` across seeds.
      chunk_size: runs per compiled batch (``None``: as many as fit ``max_memory``).
      max_memory: memory budget of one batch, e.g. ``"4GB"`` (``None``: half of an
        accelerator's memory; 512 MB on a CPU host, where smaller chunks run faster);
        ignored when ``chunk_size`` is set.
    """

    problem: ProblemConfig = ProblemConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    teacher_per_seed: bool = False
    chunk_size: int | None = None
    max_memory: int | str | None = None

    def __post_init__(self) -> None:
        from dlnsim.hparams import HParams  # local: hparams imports nothing from here

        c = "SweepConfig"
        object.__setattr__(self, "chunk_size", plain(self.chunk_size))
        if isinstance(self.hparams, HParams):
            object.__setattr__(self, "hparams", self.hparams._asdict())
        for f, t in (("problem", ProblemConfig), ("model", ModelConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, f), t):
                fail(c, f, getattr(self, f), f"must be a {t.__name__}")
        # One number each: numpy and JAX scalars (0-d arrays) become Python numbers.
        hp = {k: plain(v) for k, v in dict(self.hparams).items()}
        for k, v in hp.items():
            if k not in HParams._fields:
                fail(c, "hparams", k, f"keys must be among {', '.join(HParams._fields)}")
            if isinstance(v, bool) or not isinstance(v, int | float):  # one base value; sweep values in grid
                fail(c, f"hparams.{k}", v, f"must be a number (to sweep {k}, put its values in grid.{k})")
        # Validated and completed with the defaults, so equal sweeps compare equal.
        full = {k: float(v) for k, v in HParams(**hp)._asdict().items()}
        object.__setattr__(self, "hparams", _FrozenDict(full))
        grid = {}
        for axis, values in dict(self.grid).items():
            if axis not in GRID_AXES:
                fail(c, "grid", axis, f"axes must be among {', '.join(GRID_AXES)}")
            if isinstance(values, str | bytes) or not isinstance(values, Sequence | range | np.ndarray):
                fail(c, f"grid.{axis}", values, "must be a non-empty list of values")
            if isinstance(values, np.ndarray) and values.ndim != 1:
                fail(c, f"grid.{axis}", values.tolist(), "must be a one-dimensional list of values")
            values = tuple(plain(v) for v in values)  # np.int64(2) -> 2
            if not values:
                fail(c, f"grid.{axis}", values, "must be a non-empty list of values")
            if len(set(values)) != len(values):
                fail(c, f"grid.{axis}", values, "must not repeat a value")
            for v in values:
                _check_axis_value(axis, v)
            grid[axis] = values
        object.__setattr__(self, "grid", _Grid(grid))
        for ratio, (size, _) in RATIO_AXES.items():
            if ratio in grid and size in grid:
                fail(
                    c,
                    f"grid.{ratio}",
                    list(grid[ratio]),
                    f"sets {size}, which grid.{size} sweeps too: sweep one of the two",
                )
        if "momentum" in grid and self.train.optimizer == "gd":
            fail(
                c,
                "grid.momentum",
                list(grid["momentum"]),
                "train.optimizer = 'gd' does not use momentum: set train.optimizer to 'momentum', 'adam' or 'adamw'",
            )
        _check_representable(self.hparams, grid, self.train.dtype)
        if not isinstance(self.teacher_per_seed, bool):
            fail(c, "teacher_per_seed", self.teacher_per_seed, "must be true or false")
        if self.chunk_size is not None:
            check_int(c, "chunk_size", self.chunk_size, 1)
        if self.max_memory is not None:
            try:
                parse_bytes(self.max_memory)
            except ValueError as err:
                raise ValueError(f"SweepConfig.{err}") from None
        # Every static combination must itself be a valid config.
        for combo in static_combinations(self):
            try:
                problem_and_model(self, combo)
            except ValueError as e:
                if not any(a in RATIO_AXES for a in combo):
                    raise
                at = ", ".join(f"{a}={v}" for a, v in combo.items())
                raise ValueError(f"the grid cell {at} gives an invalid problem: {e}") from None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    @property
    def n_runs(self) -> int:
        n = 1
        for k in self.shape:
            n *= k
        return n


def _check_axis_value(axis: str, v: Any) -> None:
    c = f"SweepConfig.grid.{axis}"
    if axis in RATIO_AXES:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
            raise ValueError(f"{c} value {v!r} is invalid: must be a number in (0, 1)")
    elif axis in STATIC_AXES:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_INT:
            raise ValueError(f"{c} value {v!r} is invalid: must be an integer >= 1 and < 2**31")
    elif axis in ("seed", "problem_seed"):  # the sweep passes seeds to its program as int32
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31:
            raise ValueError(f"{c} value {v!r} is invalid: must be an integer in [0, 2**31)")
    else:
        from dlnsim.hparams import HParams

        HParams(**{axis: v})


def _check_representable(hparams: Mapping[str, float], grid: Mapping[str, Sequence[Any]], dtype: str) -> None:
    """The traced numbers are passed in the run's dtype: one that float32 rounds to 0 or to
    infinity (lr = 1e-300, weight_decay = 1e300) is refused here rather than mid-sweep."""
    from dlnsim.hparams import HParams

    dt = np.dtype(dtype)
    values = [(f"hparams.{k} =", v) for k, v in hparams.items() if k not in grid]
    values += [(f"grid.{a} value", v) for a in HParams._fields if a in grid for v in grid[a]]
    for where, v in values:
        with np.errstate(over="ignore"):
            cast = float(np.asarray(v, dt))
        if not np.isfinite(cast) or (v != 0 and abs(cast) < np.finfo(dt).tiny):  # XLA flushes subnormals to 0
            raise ValueError(
                f"SweepConfig.{where} {v!r} is invalid: it is {cast:g} in {dtype} (train.dtype); "
                f"must be a number {dtype} represents (magnitude {np.finfo(dt).tiny:.3g} to {np.finfo(dt).max:.3g})"
            )


class _FrozenDict(dict):
    """A dict that is hashable (by value) and immutable, for frozen configs."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def _immutable(self, *a: Any, **k: Any) -> None:
        raise TypeError("configuration mappings are immutable")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _immutable


class _Grid(_FrozenDict):
    """The grid: its axis order is part of its value (it orders the results' dims and runs)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and list(self.items()) == list(other.items())

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))


def static_combinations(cfg: SweepConfig) -> list[dict[str, int]]:
    """All value combinations of the static grid axes, in grid order."""
    import itertools

    axes = [a for a in cfg.grid if a in STATIC_AXES]
    return [dict(zip(axes, vals)) for vals in itertools.product(*(cfg.grid[a] for a in axes))]


def problem_and_model(cfg: SweepConfig, combo: Mapping[str, Any]) -> tuple[ProblemConfig, ModelConfig]:
    """The problem and model configs of one static group (validated); ratio axes set their
    size from the group's other sizes (:data:`RATIO_AXES`).

    Example:
      >>> cfg = SweepConfig(problem=ProblemConfig(d=200, m=100, s=5), grid={"m_over_d": [0.25], "s_over_m": [0.2]})
      >>> p, _ = problem_and_model(cfg, {"m_over_d": 0.25, "s_over_m": 0.2})
      >>> p.d, p.m, p.s
      (200, 50, 10)
    """
    p = {k: v for k, v in combo.items() if STATIC_AXES[k] == "problem" and k not in RATIO_AXES}
    sizes = {**{f: getattr(cfg.problem, f) for f in ("d", "m", "s")}, **p}
    for ratio, (size, of) in RATIO_AXES.items():  # m first: s_over_m is a fraction of the new m
        if ratio in combo:
            # Nearest, halves up, of the ratio as written (0.29 x 50 = 14.5 -> 15; in binary
            # floating point 0.29 x 50 is 14.499999...)
            p[size] = sizes[size] = math.floor(Fraction(repr(float(combo[ratio]))) * sizes[of] + Fraction(1, 2))
    m = {k: v for k, v in combo.items() if STATIC_AXES[k] == "model"}
    return dataclasses.replace(cfg.problem, **p), dataclasses.replace(cfg.model, **m)
