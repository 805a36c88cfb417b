"""Sweeps: the one place where runs are batched with ``vmap``.

:func:`dlnsim.plan.plan` cuts the grid into chunks of one static group each (one compiled
program per group); each chunk is trained here by one call of ``vmap(simulate)``,
its runs split over the local devices. A run's keys come from its own seed values only,
so its result does not depend on which runs share its chunk.

``plan`` -> ``run_chunk`` (pure compute, returns NumPy) -> ``assemble``
(:mod:`dlnsim.results`: xarray) is the whole pipeline; :func:`sweep` chains them, and
the storage layer persists chunks in between to resume a killed sweep.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import PartitionSpec

from dlnsim import devices
from dlnsim.blocked import compiler_options
from dlnsim.config import SweepConfig
from dlnsim.hparams import HParams
from dlnsim.plan import (
    BatchShape,
    Chunk,
    batch_shape,
    check_fits_device,
    group_configs,
    noisy,
    plan,
    run_values,
    teacher_keys,
)
from dlnsim.problem import make_problem, problem_key, raw_data, reduce_data
from dlnsim.results import assemble, run_attrs
from dlnsim.step import uses_raw_data
from dlnsim.training import init_key, simulate


class ChunkResult(NamedTuple):
    """NumPy outputs of one chunk, one leading entry per run of the chunk."""

    metrics: dict[str, np.ndarray]  # name -> (n, n_logs, ...)
    diverged: np.ndarray  # (n,) bool
    diverged_at: np.ndarray  # (n,) int32
    seconds: float  # wall time of the chunk, compile included


class Progress(NamedTuple):
    """Reported to the ``progress`` callback of :func:`sweep` and
    :func:`~dlnsim.storage.run_sweep` after every chunk (:class:`dlnsim.ProgressBar` shows it)."""

    chunk: Chunk  # the chunk just finished
    n_chunks: int  # chunks to run: the whole plan's, or a shard's
    runs_done: int  # runs finished so far, loaded ones included
    n_runs: int  # runs of those chunks
    skipped: bool  # True: loaded from an earlier, interrupted run; False: computed now
    seconds: float  # compute time of this chunk (0 when skipped)
    steps: int  # optimiser steps per run
    computed: int  # runs of this chunk computed now (the others were on disk)
    to_compute: int  # runs of later chunks still to compute (runs on disk excluded)


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


def _batch_inputs(cfg: SweepConfig, runs: tuple[int, ...], pad: BatchShape):
    rows = [run_values(cfg, r) for r in runs]
    rows += [rows[-1]] * (pad.runs - len(rows))  # padding repeats a run; trimmed after
    dt = np.dtype(cfg.train.dtype)
    base = HParams(**cfg.hparams)
    hp = HParams(*(np.array([r.get(f, getattr(base, f)) for r in rows], dt) for f in HParams._fields))
    seeds = np.array([r.get("seed", 0) for r in rows], np.int32)
    # Each distinct teacher is drawn once (padding repeats the last one).
    teachers = teacher_keys(cfg, rows)
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
        noisy=noisy(cfg),
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
    progress: Callable[[Progress], None] | None = None,
) -> xr.Dataset:
    """Runs every run of the grid and returns the metrics as an ``xarray.Dataset``.

    Args:
      cfg: the sweep.
      progress: called with a :class:`Progress` after every chunk, for example a
        :class:`dlnsim.ProgressBar` (a bar in a notebook or on a terminal). To keep
        finished chunks on disk, use :func:`dlnsim.run_sweep`.

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
    done = 0
    for chunk in chunks:
        res = run_chunk(cfg, chunk, pad)
        results.append(res)
        n = len(chunk.runs)
        done += n
        if progress is not None:
            left = cfg.n_runs - done
            event = Progress(chunk, len(chunks), done, cfg.n_runs, False, res.seconds, cfg.train.steps, n, left)
            progress(event)
    return assemble(cfg, chunks, results, attrs=run_attrs(cfg))
