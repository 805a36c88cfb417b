"""Memory-sized chunks and the run axis sharded over several devices give the same results."""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import dlnsim
from dlnsim import ModelConfig, ProblemConfig, SweepConfig, TrainConfig, devices
from dlnsim import plan as plan_mod

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

PROBLEM = ProblemConfig(d=16, m=8, s=2, n_train=24, n_test=20)
GRID = {"seed": [0, 1, 2], "weight_decay": [0.0, 1e-3, 1e-2]}


def _cpu_env(devices: int | None = None) -> dict[str, str]:
    """A subprocess environment on the CPU platform: these tests are about CPU devices, also
    on a machine with a GPU (where JAX would otherwise default to it). ``devices``: that many
    forced host devices, added to the suite's XLA_FLAGS (conftest.py)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if devices is not None:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return env


def _cfg(**kw):
    return SweepConfig(
        problem=PROBLEM,
        model=ModelConfig(depth=3, width=8),
        train=TrainConfig(steps=100, log_every=50, dtype="float64"),
        hparams={"lr": 0.05},
        grid=GRID,
        **kw,
    )


def test_memory_estimate_scales_with_the_network():
    small = devices.run_bytes(PROBLEM, ModelConfig(depth=3, width=8), TrainConfig(), raw=False)
    wide = devices.run_bytes(PROBLEM, ModelConfig(depth=3, width=64), TrainConfig(), raw=False)
    deep = devices.run_bytes(PROBLEM, ModelConfig(depth=6, width=64), TrainConfig(), raw=False)
    f64 = devices.run_bytes(PROBLEM, ModelConfig(depth=3, width=8), TrainConfig(dtype="float64"), raw=False)
    assert 0 < small < wide < deep and abs(f64 - 2 * small) <= 2


def test_chunks_fit_the_memory_budget():
    per_run = devices.run_bytes(PROBLEM, ModelConfig(depth=3, width=8), _cfg().train, raw=False)
    cfg = _cfg(max_memory=int(per_run * 4.5))
    chunks = plan_mod.plan(cfg)
    assert max(len(c.runs) for c in chunks) == 4 and sum(len(c.runs) for c in chunks) == 9
    # Results do not depend on the chunks: test_grid's chunk-size tests (1, 7, all at once).


_SWEEP_ON_CPU = """
import jax, numpy as np, dlnsim, sys
jax.config.update("jax_enable_x64", True)
assert jax.local_device_count() == int(sys.argv[2])
sys.path.insert(0, %r)
from test_devices import _cfg
ds = dlnsim.sweep(_cfg(chunk_size=5))
np.savez(sys.argv[1], **{k: ds[k].values for k in ("on_err", "off_fro", "balance")})
""" % os.path.dirname(__file__)


def _sweep_on_cpu_devices(n: int, tmp_path) -> dict[str, np.ndarray]:
    """``_cfg(chunk_size=5)`` swept in a subprocess on ``n`` forced CPU devices."""
    out = tmp_path / f"devices_{n}.npz"
    env = _cpu_env(devices=n)
    subprocess.run([sys.executable, "-c", _SWEEP_ON_CPU, out, str(n)], check=True, env=env, timeout=300)
    return dict(np.load(out))


def test_four_devices_equal_one(tmp_path):
    """The run axis split over 4 forced CPU devices gives the single-device results."""
    four = _sweep_on_cpu_devices(4, tmp_path)
    if jax.default_backend() == "cpu":
        ds = dlnsim.sweep(_cfg())
        one = {k: ds[k].values for k in four}
        assert jax.local_device_count() == 1
    else:  # on a GPU machine this process sweeps on the GPU: the reference is one CPU device
        one = _sweep_on_cpu_devices(1, tmp_path)
    for name in ("on_err", "off_fro", "balance"):
        np.testing.assert_allclose(four[name], one[name], rtol=1e-10, err_msg=name)


_PROGRAM_ON_TWO_DEVICES = """
import re, sys, jax, dlnsim
from dlnsim import grid
jax.config.update("jax_enable_x64", True)  # _cfg trains in float64
assert jax.local_device_count() == 2
sys.path.insert(0, %r)
from test_devices import _cfg
compiled = []
real = grid._train_batch_jit()
def spy(*args, **kw):
    compiled.append(real.lower(*args, **kw).compile().as_text())
    return real(*args, **kw)
grid._train_batch_jit = lambda: spy
dlnsim.sweep(_cfg(chunk_size=8))
ops = sorted(set(re.findall(r"\\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\\(", compiled[0])))
print("collectives:", ops)
sys.exit(1 if ops else 0)
""" % os.path.dirname(__file__)


def test_each_device_trains_its_own_runs_without_collectives():
    """The sweep's program on 2 devices has no collective: each device trains and measures
    its own runs. (Left to the partitioner, the metrics' one-matrix-per-call loops were
    gathered to every device, which then looped over all runs.)"""
    env = _cpu_env(devices=2)
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM_ON_TWO_DEVICES], env=env, timeout=300, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "collectives: []" in out.stdout


_EIGH_ON_TWO_DEVICES = """
import sys, jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from dlnsim import _lapack as lapack
assert jax.local_device_count() == 2
a = np.load(sys.argv[1])
a = jax.device_put(a, NamedSharding(Mesh(np.array(jax.local_devices()), ("runs",)), PartitionSpec("runs")))
np.save(sys.argv[2], jax.jit(jax.vmap(lambda g: lapack.eigh(g)[0]))(a))  # per run, a stack of 2 as in the metrics
"""


def test_decompositions_on_several_cpu_devices_finish(tmp_path):
    """jaxlib's batched CPU LAPACK kernels block pool threads on their pieces: one call per
    device at once used to hang a sharded sweep (2 devices on 2 cores, 64 small runs, in
    the metrics' eigh). ``dlnsim._lapack`` takes one matrix per call (eigh, svd and qr
    share the wrapper). These sizes hung every time before; the values must be right too."""
    a = np.random.default_rng(0).standard_normal((256, 2, 100, 100)).astype(np.float32)
    a = a @ np.swapaxes(a, -1, -2)
    np.save(tmp_path / "a.npy", a)
    env = _cpu_env(devices=2)
    cmd = [sys.executable, "-c", _EIGH_ON_TWO_DEVICES, tmp_path / "a.npy", tmp_path / "w.npy"]
    subprocess.run(cmd, check=True, env=env, timeout=90)
    want = np.linalg.eigvalsh(a[:8].astype(np.float64))
    # float32 eigenvalues of (100, 100) matrices: absolute error ~ n eps max|lambda| ~ 1e-5 max
    np.testing.assert_allclose(np.load(tmp_path / "w.npy")[:8], want, rtol=0, atol=1e-5 * want.max())


def test_use_cpu_cores_splits_the_cpu_before_jax_starts_only():
    code = "import dlnsim, jax; print(dlnsim.use_cpu_cores(3), jax.local_device_count(), dlnsim.use_cpu_cores(2))"
    env = {k: v for k, v in _cpu_env().items() if k != "XLA_FLAGS"}
    for flags, want in (
        (None, ["True", "3", "False"]),
        ("--xla_force_host_platform_device_count=4", ["False", "4", "False"]),
    ):
        run_env = env if flags is None else dict(env, XLA_FLAGS=flags)  # the user's choice is kept
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.split() == want, out.stderr
    jax.devices()  # start this process's backends (never split it: the other tests expect one device)
    assert not dlnsim.use_cpu_cores(2) and jax.local_device_count() == 1
    assert not dlnsim.use_cpu_cores(1)
    with pytest.raises(ValueError, match="CPU devices = 0"):
        dlnsim.use_cpu_cores(0)


def test_use_cpu_cores_limits_openblas_threads_unless_the_user_set_them():
    code = "import os, dlnsim; dlnsim.use_cpu_cores(2); print(repr(os.environ.get('OPENBLAS_NUM_THREADS')))"
    env = {k: v for k, v in _cpu_env().items() if k not in ("XLA_FLAGS", "OPENBLAS_NUM_THREADS")}
    for given, want in ((None, "'1'"), ("", "'1'"), ("3", "'3'")):  # empty is unset, as for OpenBLAS
        run_env = env if given is None else dict(env, OPENBLAS_NUM_THREADS=given)
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.split() == [want], out.stderr


@pytest.mark.parametrize(
    "files,want",
    [
        ({}, None),  # no cgroup files: the affinity
        ({"cpu.max": "max 100000"}, None),  # v2, no quota
        ({"cpu.max": "150000 100000"}, 2),  # v2: 1.5 CPUs round up
        ({"cpu.max": "100000 100000"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),  # v1, no quota
        ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 1),  # v1: half a CPU
    ],
)
def test_usable_cores_honours_a_container_cpu_quota(tmp_path, files, want):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    affinity = len(os.sched_getaffinity(0))
    assert devices.usable_cores(str(tmp_path)) == (affinity if want is None else min(affinity, want))


def test_a_run_larger_than_a_device_is_refused_before_any_work(tmp_path):
    """Not an allocation failure mid-sweep (width 10^7 needs ~3e6 GB); planning alone (as for
    reading a finished file back) does not refuse it."""
    cfg = dlnsim.SweepConfig(model=ModelConfig(depth=3, width=10**7), grid={"depth": [2, 3]})
    plan_mod.plan(cfg)
    for start in (lambda: dlnsim.sweep(cfg), lambda: dlnsim.run_sweep(cfg, tmp_path / "r.nc")):
        with pytest.raises(
            plan_mod.TooLargeError, match=r"one run \(depth=2\) needs about .* GB, more than a device's"
        ):
            start()
    assert not list(tmp_path.iterdir())


def test_memory_estimate_counts_optimiser_state_raw_data_and_gram_matrices():
    """D01 (one copy count for all optimisers), D02 (raw data sized as reduced), D08 (Gram
    matrices w x w counted as w)."""
    model = ModelConfig(depth=3, width=8)
    # One step kind for all (the block step of gd on a CPU adds its own buffers): only the state differs.
    by_opt = [
        devices.run_bytes(PROBLEM, model, TrainConfig(optimizer=o, backward="autodiff"), raw=False)
        for o in ("gd", "momentum", "adam")
    ]
    assert by_opt[0] < by_opt[1] < by_opt[2]
    big_n = dataclasses.replace(PROBLEM, n_train=2000)
    assert devices.run_bytes(big_n, model, TrainConfig(), raw=True) > devices.run_bytes(
        big_n, model, TrainConfig(), raw=False
    ) + 4 * 2000 * (PROBLEM.d + PROBLEM.m)  # at least X and Y of the 2000 samples, float32
    wide = ModelConfig(depth=2, width=2000)  # depth 2: the balance metric's Gram products are the only w^2 terms
    assert devices.run_bytes(PROBLEM, wide, TrainConfig(), raw=False) >= 2 * 2000**2 * 4


def test_chunk_sizes_are_multiples_of_the_device_count(monkeypatch):
    """D03 (no rounding to the devices), D05 (padding rounds down): with 4 devices a budget of
    10 runs makes chunks of 8 (padding 10 to 12 would pass the budget), and 5 runs pad to 8."""
    monkeypatch.setattr(jax, "local_device_count", lambda *a, **k: 4)
    assert devices.chunk_size_for(100, 1050) == 8
    assert devices.chunk_size_for(100, 350) == 3  # fewer runs than devices: as many as fit
    assert [devices.pad_to_devices(n) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]


def test_default_budget_is_half_of_every_accelerator(monkeypatch):
    """D06 (the device count dropped): a chunk is split over the devices, so the default budget
    is half of each device's memory times their number."""
    monkeypatch.setattr(devices, "_accelerator_bytes", lambda: 10**9)
    monkeypatch.setattr(jax, "local_device_count", lambda *a, **k: 4)
    assert devices.default_budget() == 2 * 10**9
