"""The Pallas path (dlnsim.onchip): one program per run, zero padding cut back, lowers to Triton.

On a CPU the kernel runs in Pallas's interpreter, so these tests check its semantics; that
the whole step matches ``jax.grad`` is in test_backward.py (``backward="pallas"``). The last
test lowers a sweep's step loop for CUDA on this machine: Triton refuses operations it has
no lowering for (slicing a value held in registers, say) at that stage, without a GPU
(the jaxlib wheels for CPUs carry the Triton lowering).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import dlnsim
from dlnsim import HParams, ModelConfig, ProblemConfig, TrainConfig, onchip
from dlnsim.step import TrainState, make_step, training_data
from dlnsim.training import init_key

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device


def _fn(w, v, flag, k):
    """A per-network function with odd shapes, a scalar, a bool and an int."""
    out = jnp.where(flag, 2.0 * w, w) + jnp.sum(v) * k.astype(w.dtype)
    return {"w": out, "flag": ~flag, "k": k + 1}


def test_one_program_per_run_equals_the_function_per_run():
    ws = jr.normal(jr.key(0), (5, 3, 7))  # (runs, 3, 7): padded to (4, 8) inside
    flags = jnp.array([True, False, True, False, False])
    ks = jnp.arange(5, dtype=jnp.int32)
    v = jnp.arange(5.0)  # shared by every run: broadcast
    lifted = onchip.one_program_per_run(_fn)
    got = jax.jit(jax.vmap(lifted, in_axes=(0, None, 0, 0)))(ws, v, flags, ks)
    for i in range(5):
        want = _fn(ws[i], v, flags[i], ks[i])
        assert got["w"][i].shape == (3, 7) and got["flag"].dtype == jnp.bool_ and got["k"].dtype == jnp.int32
        np.testing.assert_array_equal(got["w"][i], want["w"])
        assert bool(got["flag"][i]) == bool(want["flag"]) and int(got["k"][i]) == int(want["k"])
    alone = lifted(ws[1], v, flags[1], ks[1])  # no vmap: a block of one
    np.testing.assert_array_equal(alone["w"], _fn(ws[1], v, flags[1], ks[1])["w"])


def test_a_jax_without_pallas_triton_gets_a_clear_error(monkeypatch):
    import sys

    from jax.experimental import pallas

    monkeypatch.setitem(sys.modules, "jax.experimental.pallas.triton", None)  # the import fails...
    monkeypatch.delattr(pallas, "triton", raising=False)  # ...also once it was imported
    with pytest.raises(RuntimeError, match="backward = 'pallas' needs Pallas's Triton backend.*use backward = 'auto'"):
        jax.vmap(onchip.one_program_per_run(lambda w: 2.0 * w))(jnp.ones((2, 3, 3)))


@pytest.mark.slow  # whole runs against jax.grad in test_backward.py cover it; kept for debugging
def test_gd_step_matches_the_fused_step():
    m, d, cols = 6, 9, 3
    params = dlnsim.model.init_params(jr.key(1), ModelConfig(depth=3, width=7), m, d, 1.0, "float32")
    y, x = jr.normal(jr.key(2), (m, cols)), jr.normal(jr.key(3), (d, cols))
    a = onchip.gd_step(params, y, x, jnp.zeros(()), 5, 0.05, 1e-2)
    b = dlnsim.backward.gd_step(params, y, x, jnp.zeros(()), 5, 0.05, 1e-2)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=2e-6, atol=1e-7)


def test_the_kernel_lowers_to_triton_for_cuda():
    prob = dlnsim.make_problem(ProblemConfig(d=20, m=10, s=2, n_train=200))
    model, train = ModelConfig(depth=5, width=40), TrainConfig(steps=100, log_every=50, backward="pallas")
    data = training_data(prob, model, train)
    step = make_step(model, train, 200, "pallas")

    def advance(state, data, hp):  # every array an argument: the kernel pads its arguments
        return jax.lax.scan(lambda s, _: (step(s, data, hp), None), state, None, length=train.log_every)[0]

    def one(hp, seed):
        params = dlnsim.model.init_params(init_key(seed), model, 10, 20, 1.0, "float32")
        state = TrainState(
            jnp.zeros((), jnp.int32), params, (), jnp.zeros((), bool), jnp.full((), -1, jnp.int32), jnp.ones(())
        )
        return onchip.one_program_per_run(advance, interpret=False)(state, data, hp)

    runs = 64
    hp = HParams(*(jnp.full(runs, v, jnp.float32) for v in (0.02, 1e-3, 1.0, 0.0, 0.0)))
    lowered = jax.jit(jax.vmap(one)).trace(hp, jnp.arange(runs)).lower(lowering_platforms=("cuda",))
    text = lowered.as_text()
    assert "__gpu$xla.gpu.triton" in text and "dlnsim_advance" in text


def test_sweep_with_the_kernel_equals_the_fused_step(monkeypatch):
    """The kernel under the sweep's vmap, inside the log-point cond, over 2 chunks (float64)."""
    blocks = []
    on_runs = onchip.on_runs
    monkeypatch.setattr(
        onchip,
        "on_runs",
        lambda fn, leaves, tree, runs, interp: blocks.append(runs) or on_runs(fn, leaves, tree, runs, interp),
    )
    problem = ProblemConfig(d=12, m=6, s=2, n_train=20)
    grid = {"lr": [0.02, 0.05], "seed": [0, 1, 2]}

    def sweep(backward):
        train = TrainConfig(steps=100, log_every=50, dtype="float64", backward=backward)
        cfg = dlnsim.SweepConfig(
            problem=problem, model=ModelConfig(depth=3, width=8), train=train, grid=grid, chunk_size=4
        )
        return dlnsim.sweep(cfg)

    a, b = sweep("pallas"), sweep("fused")
    assert 4 in blocks  # the kernel ran on whole chunks (blocks of 1: custom_vmap tracing one run)
    for name in ("loss_data", "on_err", "off_fro", "w1_off_fro", "balance", "test_err"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-12, atol=1e-14, err_msg=name)
    assert float(a.on_err.isel(step=-1).max()) < float(a.on_err.isel(step=0).min())  # they trained
