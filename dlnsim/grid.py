"""Sweeps: the one place where runs are batched with ``vmap``.

A grid is planned into *groups* (one value combination of the static axes: depth,
width, problem sizes; one compiled program each) and each group into *chunks* of runs
that are trained together by ``vmap(simulate)``. A run's keys come from its own seed
values only, so its result does not depend on which runs share its chunk.

``plan`` -> ``run_chunk`` (pure compute, returns NumPy) -> ``assemble``
(:mod:`dlnsim.results`: xarray) is the whole pipeline; :func:`sweep` chains them, and
the storage layer persists chunks in between to resume a killed sweep.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import PartitionSpec

from dlnsim import devices
from dlnsim._checks import check_x64, parse_bytes
from dlnsim.blocked import compiler_options
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
from dlnsim.problem import make_problem, problem_key, raw_data, reduce_data
from dlnsim.results import assemble, run_attrs
from dlnsim.step import data_columns, step_kind, uses_raw_data
from dlnsim.training import init_key, simulate


class Chunk(NamedTuple):
    """A batch of runs of one static group, trained by one call of the compiled program."""

    index: int  # position in the plan
    group: int  # static group index
    runs: tuple[int, ...]  # flat (C-order) indices into the grid


class ChunkResult(NamedTuple):
    """NumPy outputs of one chunk, one leading entry per run of the chunk."""

    metrics: dict[str, np.ndarray]  # name -> (n, n_logs, ...)
    diverged: np.ndarray  # (n,) bool
    diverged_at: np.ndarray  # (n,) int32
    seconds: float  # wall time of the chunk, compile included


def _run_values(cfg: SweepConfig, flat: int) -> dict[str, Any]:
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
        members[combos.index(_group_of(cfg, _run_values(cfg, flat)))].append(flat)
    budget = parse_bytes(cfg.max_memory) if cfg.max_memory is not None else devices.default_budget()
    chunks = []
    for g, runs in enumerate(members):
        problem_cfg, model = group_configs(cfg, g)
        raw = uses_raw_data(model, cfg.train)
        # A step that cannot take a group's sizes (backward = "pallas" on a wide one) says so here.
        step_kind(model, cfg.train, problem_cfg.m, problem_cfg.d, data_columns(problem_cfg, raw, _noisy(cfg)))
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


def _noisy(cfg: SweepConfig) -> bool:
    """Static: does any run carry training noise (then the data have full rank)?"""
    return any(v != 0 for v in cfg.grid.get("train_noise", (cfg.hparams.get("train_noise", 0.0),)))


@functools.partial(jax.jit, static_argnames=("problem_cfg", "dtype", "raw", "noisy"))
def _make_problems(keys, noises, *, problem_cfg, dtype, raw, noisy):
    """Draws each distinct problem of a chunk once and prepares its training data.

    Depth and width do not enter, so groups that differ only in them share this
    compiled program.
    """

    def one(key, noise):
        problem = make_problem(problem_cfg, key=key, train_noise=noise if noisy else 0.0, dtype=dtype)
        return problem, raw_data(problem) if raw else reduce_data(problem)

    return jax.vmap(one)(keys, noises)


def _train_batch(problems, datas, which, seeds, hp, *, model, train):
    """vmap of one run over the batch: the only vmap over runs in dlnsim.

    Run i trains on problem ``which[i]``; unused problem arrays (the raw training set
    on the reduced path) are never gathered. Each device trains its own slice of the runs
    (``shard_map``: the problems are replicated, so its program has no collectives). Left
    to the compiler's partitioner, the metrics' one-matrix-per-call decompositions (a loop
    over runs, :mod:`dlnsim._lapack`) were gathered to every device and each device looped
    over all runs (2 devices, 256 small runs: 12-13 ms per log point, 10-11 ms without).
    """

    def one(which, seed, hp):
        pick = lambda a: a[which]  # noqa: E731
        problem, data = jax.tree.map(pick, problems), jax.tree.map(pick, datas)
        run = simulate(problem, hp, init_key(seed), model=model, train=train, data=data)
        return run.metrics, run.diverged, run.diverged_at

    split = PartitionSpec(devices.RUNS)
    # check_vma=False: the custom batching rules inside (the block step, the decompositions'
    # loops) do not track which values vary across devices; nothing here is reduced across them.
    per_device = jax.shard_map(
        jax.vmap(one), mesh=devices.run_mesh(), in_specs=(split, split, split), out_specs=split, check_vma=False
    )
    return per_device(which, seeds, hp)


@functools.cache
def _train_batch_jit():
    """``jit(_train_batch)``, made on first use (its compiler options need the backend)."""
    return jax.jit(_train_batch, static_argnames=("model", "train"), compiler_options=compiler_options())


def _teachers(cfg: SweepConfig, rows: list[dict[str, Any]]) -> list[tuple[int, int | None, float]]:
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
    return Teacher(problem_cfg, *_teachers(cfg, [dict(run)])[0])


class BatchShape(NamedTuple):
    """Padded sizes shared by the chunks of one group, so each group compiles once."""

    runs: int  # runs per call, a multiple of the local device count
    teachers: int  # distinct problems per call


def batch_shape(cfg: SweepConfig, chunks: list[Chunk]) -> dict[int, BatchShape]:
    """Per group: the largest chunk (rounded up to the devices) and most distinct teachers."""
    shapes: dict[int, BatchShape] = {}
    for c in chunks:
        teachers = len(set(_teachers(cfg, [_run_values(cfg, r) for r in c.runs])))
        runs = devices.pad_to_devices(len(c.runs))
        old = shapes.get(c.group, BatchShape(0, 0))
        shapes[c.group] = BatchShape(max(old.runs, runs), max(old.teachers, teachers))
    return shapes


def _batch_inputs(cfg: SweepConfig, runs: tuple[int, ...], pad: BatchShape):
    rows = [_run_values(cfg, r) for r in runs]
    rows += [rows[-1]] * (pad.runs - len(rows))  # padding repeats a run; trimmed after
    dt = np.dtype(cfg.train.dtype)
    base = HParams(**cfg.hparams)
    hp = HParams(*(np.array([r.get(f, getattr(base, f)) for r in rows], dt) for f in HParams._fields))
    seeds = np.array([r.get("seed", 0) for r in rows], np.int32)
    # Each distinct teacher is drawn once (padding repeats the last one).
    teachers = _teachers(cfg, rows)
    slot = {t: i for i, t in enumerate(dict.fromkeys(teachers))}
    distinct = list(slot) + [teachers[-1]] * (pad.teachers - len(slot))
    which = np.array([slot[t] for t in teachers], np.int32)
    keys = jnp.stack([problem_key(ps, sd) for ps, sd, _ in distinct])
    noises = np.array([n for _, _, n in distinct], dt)
    return keys, noises, which, seeds, hp


def run_chunk(cfg: SweepConfig, chunk: Chunk, pad: dict[int, BatchShape] | None = None) -> ChunkResult:
    """Trains the runs of one chunk (one compiled call) and returns NumPy results.

    Args:
      cfg: the sweep.
      chunk: from :func:`plan`.
      pad: padded sizes per group (see :func:`batch_shape`), so a short last chunk
        reuses the compiled program of the full ones.
    """
    start = time.perf_counter()
    problem_cfg, model = group_configs(cfg, chunk.group)
    n = len(chunk.runs)
    shape = (pad or batch_shape(cfg, [chunk]))[chunk.group]
    keys, noises, which, seeds, hp = _batch_inputs(cfg, chunk.runs, shape)
    problems, datas = _make_problems(
        keys,
        noises,
        problem_cfg=problem_cfg,
        dtype=cfg.train.dtype,
        raw=uses_raw_data(model, cfg.train),
        noisy=_noisy(cfg),
    )
    # Runs are split across local devices; teachers are replicated (no collectives).
    split, replicated = devices.run_sharding()
    problems, datas = jax.device_put((problems, datas), replicated)
    which, seeds, hp = jax.device_put((which, seeds, hp), split)
    metrics, diverged, diverged_at = _train_batch_jit()(problems, datas, which, seeds, hp, model=model, train=cfg.train)
    out = {k: np.asarray(v)[:n] for k, v in metrics._asdict().items()}
    # Pad the spectrum to n_singular so groups with small m or d stack.
    sv = out["sv"]
    if sv.shape[-1] < cfg.train.n_singular:
        fill = np.full(sv.shape[:-1] + (cfg.train.n_singular - sv.shape[-1],), np.nan, sv.dtype)
        out["sv"] = np.concatenate([sv, fill], axis=-1)
    return ChunkResult(out, np.asarray(diverged)[:n], np.asarray(diverged_at)[:n], time.perf_counter() - start)


def sweep(
    cfg: SweepConfig,
    *,
    on_chunk: Callable[[Chunk, ChunkResult], None] | None = None,
) -> xr.Dataset:
    """Runs every run of the grid and returns the metrics as an ``xarray.Dataset``.

    Args:
      cfg: the sweep.
      on_chunk: called after each chunk (progress reporting, persistence).

    Returns:
      The dataset of :func:`dlnsim.results.assemble`, with the config in its attributes.

    Example:
      >>> cfg = dlnsim.SweepConfig(
      ...     problem=dlnsim.ProblemConfig(d=20, m=10, s=2, n_train=30),
      ...     model=dlnsim.ModelConfig(depth=2, width=16),
      ...     train=dlnsim.TrainConfig(steps=100, log_every=50),
      ...     grid={"seed": [0, 1], "weight_decay": [0.0, 1e-2]})
      >>> dlnsim.sweep(cfg).on_err.dims
      ('seed', 'weight_decay', 'step')
    """
    chunks = plan(cfg)
    check_fits_device(cfg)
    pad = batch_shape(cfg, chunks)
    results = []
    for chunk in chunks:
        res = run_chunk(cfg, chunk, pad)
        results.append(res)
        if on_chunk is not None:
            on_chunk(chunk, res)
    return assemble(cfg, chunks, results, attrs=run_attrs(cfg))
