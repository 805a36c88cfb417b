"""Test session setup: float64 available for theory tests; doctests see dlnsim."""

import os
import subprocess
import sys


def _fast_compile_flags() -> str:
    """XLA flags for toy sizes, where compile time dominates the suite.

    LLVM's expensive backend optimisations off (2-3x faster compiles), and on CPUs XLA's
    older fusion emitters instead of the MLIR ones (another ~1.7x: the suite took 3:41
    instead of 5:42-6:11 on 2 cores, 2026-12-03). Results agree within the float
    tolerances the tests use. XLA aborts the process on a flag it does not know, so the
    second is kept only if a child interpreter accepts it (jaxlib versions differ).
    """
    flags = "--xla_backend_optimization_level=0"
    extra = "--xla_cpu_use_fusion_emitters=false"
    probe = [sys.executable, "-c", "import jax; jax.jit(lambda x: x + 1)(1.0)"]
    env = {**os.environ, "XLA_FLAGS": f"{flags} {extra}", "JAX_PLATFORMS": "cpu"}
    ok = subprocess.run(probe, env=env, capture_output=True, timeout=120).returncode == 0
    return f"{flags} {extra}" if ok else flags


# Set once by the first process (pytest-xdist workers and the suite's subprocesses inherit it);
# tests that start a JAX subprocess with flags of their own append them to these.
if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = _fast_compile_flags()
# On a GPU, several JAX processes share the device (two xdist workers, the CLI and notebook
# subprocesses they start): none may grab 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The CLI keeps a compilation cache in the user's home by default: the tests never write there
# (tests/test_cli.py gives its subprocesses a temporary one).
os.environ["DLNSIM_COMPILE_CACHE"] = "off"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import pytest  # noqa: E402

import dlnsim  # noqa: E402

jax.config.update("jax_enable_x64", True)
# One CPU device per test process, whatever the order of the tests: the CLI's setup calls
# dlnsim.use_cpu_cores(), which would otherwise split a worker whose first JAX work is a CLI
# test (multi-device runs are tested in subprocesses).
jax.config.update("jax_num_cpu_devices", 1)
# A notebook run once hung in CPU async dispatch (all workers idle, a lost wake-up, like
# jax-ml/jax#25861); synchronous dispatch costs the toy-sized tests nothing measurable.
jax.config.update("jax_cpu_enable_async_dispatch", False)


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update(dlnsim=dlnsim, jax=jax, jnp=jnp, jr=jr)
    doctest_namespace.update({name: getattr(dlnsim, name) for name in dlnsim.__all__})


# The suite runs on two pytest-xdist workers, one test file per worker at a time
# (pyproject: -n 2 --dist loadfile). These files are compile-bound and long (tens of seconds
# each), so they go first and the short ones fill in around them.
_LONG_FIRST = ("test_reproduce.py", "test_notebooks.py", "test_cli.py", "test_benchmarks.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return _LONG_FIRST.index(name) if name in _LONG_FIRST else len(_LONG_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept
