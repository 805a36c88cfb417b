"""Test session setup: float64 available for theory tests; doctests see dlnsim."""

import os

# Tests run toy sizes where XLA's compile time dominates: skip LLVM's expensive backend
# optimisations (2-3x faster compiles; results equal within the float tolerances used).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import pytest  # noqa: E402

import dlnsim  # noqa: E402

jax.config.update("jax_enable_x64", True)
# A notebook run once hung in CPU async dispatch (all workers idle, a lost wake-up, like
# jax-ml/jax#25861); synchronous dispatch costs the toy-sized tests nothing measurable.
jax.config.update("jax_cpu_enable_async_dispatch", False)


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update(dlnsim=dlnsim, jax=jax, jnp=jnp, jr=jr)
    doctest_namespace.update({name: getattr(dlnsim, name) for name in dlnsim.__all__})
