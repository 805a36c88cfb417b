"""Planning a sweep: its static groups, their chunks of runs, shards and teachers.

Python over the config (no training here; JAX only for a teacher's key and the devices'
memory): a *group* is one value combination of the static axes (depth, width, problem
sizes; one compiled program each), a *chunk* a batch of a group's runs trained by one call
(sized to a memory budget by :mod:`dlnsim.devices`), a *shard* every n-th chunk, a run's
*teacher* the problem draw it trains on. :mod:`dlnsim.grid` trains the chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from dlnsim import devices
from dlnsim._checks import check_x64, parse_bytes
from dlnsim.config import (
    RATIO_AXES,
    STATIC_AXES,
    ModelConfig,
    ProblemConfig,
    SweepConfig,
    problem_and_model,
    static_combinations,
)
from dlnsim.hparams import HParams
from dlnsim.problem import problem_key
from dlnsim.step import data_columns, step_kind, uses_raw_data


class Chunk(NamedTuple):
    """A batch of runs of one static group, trained by one call of the compiled program."""

    index: int  # position in the plan
    group: int  # static group index
    runs: tuple[int, ...]  # flat (C-order) indices into the grid


def run_values(cfg: SweepConfig, flat: int) -> dict[str, Any]:
    """The grid values of run ``flat`` (its C-order index into the grid), axis by axis."""
    idx = np.unravel_index(flat, cfg.shape) if cfg.grid else ()
    return {axis: values[i] for (axis, values), i in zip(cfg.grid.items(), idx)}


def _group_of(cfg: SweepConfig, values: dict[str, Any]) -> dict[str, int]:
    return {a: values[a] for a in cfg.grid if a in STATIC_AXES}


def plan(cfg: SweepConfig, chunk_size: int | None = None) -> list[Chunk]:
    """Splits the grid into chunks: runs grouped by static config, then cut to size.

    Args:
      cfg: the sweep.
      chunk_size: runs per chunk (default ``cfg.chunk_size``; if that is ``None`` too,
        as many runs as fit ``cfg.max_memory`` by :func:`dlnsim.devices.run_bytes`).
    """
    check_x64("SweepConfig.train.dtype", cfg.train.dtype)
    size = chunk_size or cfg.chunk_size
    combos = static_combinations(cfg)
    members: list[list[int]] = [[] for _ in combos]
    for flat in range(cfg.n_runs):
        members[combos.index(_group_of(cfg, run_values(cfg, flat)))].append(flat)
    budget = parse_bytes(cfg.max_memory) if cfg.max_memory is not None else devices.default_budget()
    chunks = []
    for g, runs in enumerate(members):
        problem_cfg, model = group_configs(cfg, g)
        raw = uses_raw_data(model, cfg.train)
        # A step that cannot take a group's sizes (backward = "pallas" on a wide one) says so here.
        step_kind(model, cfg.train, problem_cfg.m, problem_cfg.d, data_columns(problem_cfg, raw, noisy(cfg)))
        if size is None:
            per_run = devices.run_bytes(problem_cfg, model, cfg.train, raw)
            if cfg.max_memory is not None and per_run > budget:
                where = ", ".join(f"{a}={v}" for a, v in combos[g].items()) or "this sweep"
                raise ValueError(
                    f"max_memory = {cfg.max_memory!r} is too small: one run ({where}) needs about "
                    f"{per_run / 1e6:.3g} MB; allowed: at least {per_run} bytes, or unset for the default budget"
                )
            step = devices.chunk_size_for(per_run, budget)
        else:
            step = size
        for start in range(0, len(runs), step):
            chunks.append(Chunk(len(chunks), g, tuple(runs[start : start + step])))
    return chunks


class TooLargeError(ValueError):
    """One run of a sweep needs more memory than a device has."""


def check_fits_device(cfg: SweepConfig) -> None:
    """Raises :class:`TooLargeError` where one run of a static group needs more memory than a
    device has (:func:`dlnsim.devices.device_bytes`): a clear error before any work instead of
    an allocation failure mid-sweep. (Not part of :func:`plan`: a finished file is still read
    back on a smaller machine.)"""
    memory = devices.device_bytes()
    for g, combo in enumerate(static_combinations(cfg)):
        problem_cfg, model = group_configs(cfg, g)
        per_run = devices.run_bytes(problem_cfg, model, cfg.train, uses_raw_data(model, cfg.train))
        if per_run > memory:
            where = ", ".join(f"{a}={v}" for a, v in combo.items()) or "this sweep"
            raise TooLargeError(
                f"one run ({where}) needs about {per_run / 1e9:.3g} GB, more than a device's {memory / 1e9:.3g} GB "
                "of memory: allowed are sizes (problem.d, problem.m, problem.n_train, model.width, model.depth) "
                "whose run fits one device"
            )


def shard_chunks(chunks: list[Chunk], shard: tuple[int, int] | None) -> list[Chunk]:
    """The chunks of slice ``i`` of ``n`` (``shard = (i, n)``; None: all of them).

    Raises:
      ValueError: not ``0 <= i < n``; or some slice would be empty (more slices than
        chunks): every slice says so, so no job waits for a shard that never comes.
    """
    if shard is None:
        return chunks
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n):
        raise ValueError(f"shard = ({i!r}, {n!r}) is invalid: must be (i, n) with integers 0 <= i < n")
    if n > len(chunks):
        raise ValueError(
            f"shard = {i}/{n} is invalid: the sweep has {len(chunks)} chunks, so {n - len(chunks)} of {n} "
            f"shards would hold no runs; allowed: at most {len(chunks)} shards, or more chunks (a smaller chunk_size)"
        )
    return [c for c in chunks if c.index % n == i]


def group_configs(cfg: SweepConfig, group: int) -> tuple[ProblemConfig, ModelConfig]:
    """Problem and model config of a static group."""
    return problem_and_model(cfg, static_combinations(cfg)[group])


def noisy(cfg: SweepConfig) -> bool:
    """Static: does any run carry training noise (then the data have full rank)?"""
    return any(v != 0 for v in cfg.grid.get("train_noise", (cfg.hparams.get("train_noise", 0.0),)))


def teacher_keys(cfg: SweepConfig, rows: list[dict[str, Any]]) -> list[tuple[int, int | None, float]]:
    """A run's teacher: (problem_seed[, seed], train_noise)."""
    base = HParams(**cfg.hparams)
    return [
        (
            int(r.get("problem_seed", 0)),
            int(r.get("seed", 0)) if cfg.teacher_per_seed else None,
            float(r.get("train_noise", base.train_noise)),
        )
        for r in rows
    ]


class Teacher(NamedTuple):
    """The teacher (problem draw) of a run: :func:`run_teacher`."""

    problem: ProblemConfig  # the sweep's problem config with the run's swept sizes
    problem_seed: int
    seed: int | None  # the run's seed with teacher_per_seed, else None (shared across seeds)
    train_noise: float

    def key(self) -> jax.Array:
        """The key :func:`~dlnsim.problem.make_problem` draws this teacher from."""
        return problem_key(self.problem_seed, self.seed)


def run_teacher(cfg: SweepConfig, run: Mapping[str, Any]) -> Teacher:
    """The teacher a run of ``cfg`` trains on, from the run's grid values (axes it lacks at
    their base values): ``make_problem(t.problem, key=t.key(), train_noise=t.train_noise,
    dtype=cfg.train.dtype)`` is the very problem the sweep drew for the run."""
    problem_cfg, _ = problem_and_model(
        cfg, {a: v if a in RATIO_AXES else int(v) for a, v in run.items() if a in STATIC_AXES}
    )
    return Teacher(problem_cfg, *teacher_keys(cfg, [dict(run)])[0])


class BatchShape(NamedTuple):
    """Padded sizes shared by the chunks of one group, so each group compiles once."""

    runs: int  # runs per call, a multiple of the local device count
    teachers: int  # distinct problems per call


def batch_shape(cfg: SweepConfig, chunks: list[Chunk]) -> dict[int, BatchShape]:
    """Per group: the largest chunk (rounded up to the devices) and most distinct teachers."""
    shapes: dict[int, BatchShape] = {}
    for c in chunks:
        teachers = len(set(teacher_keys(cfg, [run_values(cfg, r) for r in c.runs])))
        runs = devices.pad_to_devices(len(c.runs))
        old = shapes.get(c.group, BatchShape(0, 0))
        shapes[c.group] = BatchShape(max(old.runs, runs), max(old.teachers, teachers))
    return shapes
