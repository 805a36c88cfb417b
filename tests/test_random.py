"""``dlnsim._random.normal`` draws exactly the numbers of ``jax.random.normal``."""

import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

from dlnsim._random import normal

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device


@pytest.mark.parametrize("shape", [(7,), (40, 10), (3, 5, 2), (1, 1)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_same_numbers_as_jax_random_normal(shape, dtype):
    keys = jr.split(jr.key(11), 4)
    ours = jax.jit(jax.vmap(lambda k: normal(k, shape, dtype)))(keys)
    ref = jax.jit(jax.vmap(lambda k: jr.normal(k, shape, dtype)))(keys)
    assert ours.shape == (4, *shape) and ours.dtype == dtype
    assert bool(jnp.array_equal(ours, ref))
