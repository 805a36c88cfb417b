"""The touches probe (``benchmarks/touches.py``): its steps that carry the activations
compute the very GD step of ``dlnsim.backward.gd_step``, and the script writes its JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import touches  # noqa: E402

import dlnsim  # noqa: E402
from dlnsim.backward import gd_step  # noqa: E402
from dlnsim.model import init_params  # noqa: E402
from dlnsim.problem import reduce_data  # noqa: E402

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device


def _data64():
    """The reduced training data (m = 6, d = 10, 3 columns) of a small problem, in float64
    (float64 is on for the whole test session: conftest.py)."""
    problem = dlnsim.make_problem(dlnsim.ProblemConfig(d=10, m=6, s=3, n_train=12), 0)
    problem = jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, problem)
    return reduce_data(problem)


@pytest.mark.parametrize("layout", ["PER_NETWORK_DOT", "PER_NETWORK_ROWS"])
def test_ahead_step_is_the_gd_step(layout):
    """float64, 12 steps with a large decay (0.95 per step): the carried activations are the
    forward pass of the updated weights, and the weights are gd_step's to rounding."""
    layout = getattr(touches, layout)
    assert jax.config.jax_enable_x64  # conftest: float64 for every test
    data = _data64()
    params = init_params(jax.random.key(3), dlnsim.ModelConfig(depth=4, width=7), 6, 10, dtype="float64")
    lr, wd, n = jnp.float64(0.05), jnp.float64(1.0), 12
    ref, ours = params, params
    hs = touches.forward_all(ours, data.y, layout)
    for _ in range(12):
        loss_ref, ref = gd_step(ref, data.y, data.x, data.c0, n, lr, wd)
        loss, ours, hs = touches.ahead_step(ours, hs, data.y, data.x, data.c0, n, lr, wd, layout)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(b))))
    for a, b in zip(hs, touches.forward_all(ref, data.y)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(b))))
    assert not np.allclose(ref[0], params[0], atol=1e-3)  # the weights did move


@pytest.mark.parametrize("variant", [v for v in touches.VARIANTS if v != "fused"])
def test_every_variant_trains_as_the_fused_step(variant):
    """float64, 3 runs x 12 steps under vmap (the run-axis-last variants on one block):
    final weights and every step's loss are the fused step's to rounding."""
    assert jax.config.jax_enable_x64  # conftest: float64 for every test
    data = _data64()
    model = dlnsim.ModelConfig(depth=3, width=7)
    params = jax.vmap(lambda k: init_params(k, model, 6, 10, dtype="float64"))(jax.random.split(jax.random.key(0), 3))
    ref = jax.vmap(touches.trainer("fused", data, 12, 12, 0.05, 1.0))(params)
    ours = jax.vmap(touches.trainer(variant, data, 12, 12, 0.05, 1.0))(params)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-12)
    for a, b in zip(ours[0], ref[0]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(b))))
