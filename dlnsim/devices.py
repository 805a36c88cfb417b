"""Placing runs on devices: memory per run, chunk sizing to a budget, sharding the run axis.

Runs are independent, so the run axis is split across all local devices
(:func:`run_mesh`; the sweep's ``shard_map`` gives each device its own runs and a program
with no collectives); results equal those of one device.
On a CPU, :func:`use_cpu_cores` makes each core a device, so a sweep runs one program per
core.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dlnsim.backward import FUSE_MAX_COLUMNS
from dlnsim.config import ModelConfig, ProblemConfig, TrainConfig
from dlnsim.model import layer_shapes
from dlnsim.onchip import pow2
from dlnsim.step import data_columns, step_kind

# Default per-chunk budget on CPU hosts. Memory is rarely the limit there, cache is: at the
# paper's sizes 256 runs in chunks of 32 train at 560 network-steps/s, in one chunk at 309
# (2 cores, measured); 512 MB gives ~30 such runs per chunk and leaves small networks whole.
_CPU_BUDGET = 512 * 10**6
_DEVICE_FRACTION = 0.5  # of an accelerator's memory, leaving room for XLA's workspace
# Default cap of use_cpu_cores: measured on 2 cores only, and every chunk is padded to a
# multiple of the device count (a 30-run chunk at the paper's sizes would be 128 runs on 128).
MAX_CPU_DEVICES = 8


def run_bytes(problem: ProblemConfig, model: ModelConfig, train: TrainConfig, raw: bool) -> int:
    """Estimated device memory of one run in a batch (bytes), peak over a step or a log.

    Counts the weights with their gradient, update and optimiser state, the data the
    loss sees (r columns reduced, N raw) with its activations, the test set gathered per
    run, and the metric temporaries (end-to-end map, SVD copies, Gram matrices), with a
    factor 1.5 for XLA's buffers. The block step (``dlnsim.blocked``) also writes out the
    products of a layer with the data columns; the Pallas step (``dlnsim.onchip``) copies
    the weights zero-padded in and out of its kernel. ``benchmarks/memory.py`` compares the
    estimate with the peak resident memory of a real sweep.
    """
    d, m = problem.d, problem.m
    shapes = layer_shapes(model, m, d)
    n_params = sum(a * b for a, b in shapes)
    copies = {"gd": 3, "momentum": 4, "adam": 5, "adamw": 5}[train.optimizer]
    cols = problem.n_train if raw else min(m, problem.n_train)
    widest = max(model.width, d, m)
    data = (d + m) * cols + model.depth * widest * cols * 2
    test = (d + 2 * m) * problem.n_test
    gram = 2 * model.width**2 if model.depth > 1 else 0
    metric_tmp = 4 * d * m + gram
    logs = train.n_logs * (20 + len(problem.test_sigmas) + train.n_singular)
    words = copies * n_params + data + test + metric_tmp + logs
    kind = step_kind(model, train, m, d, data_columns(problem, raw, noisy=False))
    if kind == "blocked":
        words += 2 * min(cols, FUSE_MAX_COLUMNS) * max(a * b for a, b in shapes)
    elif kind == "pallas":  # the kernel's zero-padded weights and data, in and out (power-of-two shapes)
        words += 2 * sum(pow2(a) * pow2(b) for a, b in shapes) + (pow2(d) + pow2(m)) * pow2(cols)
    return int(1.5 * words * np.dtype(train.dtype).itemsize)


def usable_cores(cgroup: str = "/sys/fs/cgroup") -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU quota.

    The quota is cgroup v2's ``cpu.max`` (``"quota period"``) or v1's ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` under ``cgroup``, rounded up; none (``max`` or -1) leaves the
    affinity. A container limited by quota rather than by affinity would otherwise get a
    device per host core.

    Example:
      >>> 1 <= usable_cores() <= (os.cpu_count() or 1)
      True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for files in (["cpu.max"], ["cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"]):
        try:
            quota, period = (int(f) for f in " ".join(Path(cgroup, name).read_text() for name in files).split()[:2])
        except (OSError, ValueError):  # absent, or "max" (no quota)
            continue
        if quota > 0 and period > 0:
            return max(1, min(cores, math.ceil(quota / period)))
    return cores


def use_cpu_cores(n: int | None = None) -> bool:
    """Makes JAX's CPU backend ``n`` devices (default: one per core this process may use,
    :func:`usable_cores`, at most :data:`MAX_CPU_DEVICES`).

    XLA runs most of a step's loops on one thread, so on one CPU device a sweep keeps one
    core busy; split over one device per core (the sweep shards its runs over all local
    devices) it keeps them all busy. Measured on 2 cores, 256 runs, with the fused step
    (2026-11-30): 2.1-2.3x at the small sizes (183k-193k against 76k-86k network-steps per
    second), 1.2x at the paper's sizes (711-720 against 596-609). Results do not depend on
    the device count.

    Only possible before JAX starts its backends (before any JAX computation), and a count
    the user chose (``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or
    ``jax_num_cpu_devices``) is kept. ``dlnsim`` commands call this; in a notebook or
    script call it right after the imports. It also sets ``OPENBLAS_NUM_THREADS=1`` unless
    set to a value (for scipy's OpenBLAS, which XLA's CPU decompositions use, if not yet loaded).
    It is the one library function that sets ``jax.config`` and the environment (STYLE.md
    keeps that to the edges): only when called, as the first thing a program does.

    Returns:
      Whether the count was set (False: too late, the user's choice, or one core).
    """
    if n is None:
        n = min(usable_cores(), MAX_CPU_DEVICES)
    if n < 1:
        raise ValueError(f"CPU devices = {n} is invalid: must be at least 1")
    chosen = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    if n == 1 or chosen or jax.config.jax_num_cpu_devices > 0:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the backends have started: their device count stays
        return False
    # XLA's LAPACK kernels (scipy's OpenBLAS, loaded at the first decomposition) then run on
    # every device at once; OpenBLAS threads of its own only contend with them (a paper-size
    # log point: 25 ms per network on 2 devices, 18 ms with one OpenBLAS thread, as on one device).
    # An empty value counts as unset, as OpenBLAS reads it.
    if not os.environ.get("OPENBLAS_NUM_THREADS", "").strip():
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


def _accelerator_bytes() -> int | None:
    """Memory limit of one local accelerator; None on a CPU (or where JAX does not say)."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    return stats["bytes_limit"] if stats and "bytes_limit" in stats else None


def default_budget() -> int:
    """Bytes one chunk may use: half an accelerator's memory, or 512 MB on a CPU host."""
    limit = _accelerator_bytes()
    return _CPU_BUDGET if limit is None else int(_DEVICE_FRACTION * limit) * jax.local_device_count()


def device_bytes() -> float:
    """Memory of one local device: an accelerator's limit, else the host's physical memory
    (``inf`` where neither is known)."""
    if (limit := _accelerator_bytes()) is not None:
        return float(limit)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return math.inf


def chunk_size_for(per_run: int, budget: int) -> int:
    """Runs per chunk that fit the budget, a multiple of the device count when possible."""
    n_dev = jax.local_device_count()
    size = max(1, budget // max(per_run, 1))
    return max(n_dev, size - size % n_dev) if size >= n_dev else size


def pad_to_devices(n: int) -> int:
    """Smallest multiple of the local device count that holds n runs."""
    n_dev = jax.local_device_count()
    return n_dev * math.ceil(n / n_dev)


RUNS = "runs"  # the mesh axis the run axis is split along


def run_mesh() -> Mesh:
    """All local devices, in one axis :data:`RUNS`."""
    return Mesh(np.array(jax.local_devices()), (RUNS,))


def run_sharding() -> tuple[NamedSharding, NamedSharding]:
    """(split along the run axis, replicated) over all local devices."""
    mesh = run_mesh()
    return NamedSharding(mesh, PartitionSpec(RUNS)), NamedSharding(mesh, PartitionSpec())
