"""The hand-written GD steps (per network and on a block of runs) against ``jax.grad``:
one step exactly, whole runs to rounding."""

import importlib
import re

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import dlnsim
from dlnsim import HParams, ModelConfig, ProblemConfig, TrainConfig, blocked
from dlnsim.backward import FUSE_MAX_COLUMNS, gd_step
from dlnsim.blocked import (
    CPU_COMPILER_OPTIONS,
    LANES,
    MAX_TERMS,
    MAX_WIDTH,
    block_layout,
    compiler_options,
    gd_step_block,
    matmul,
    matmul_t,
    run_axis_last,
    supported,
)
from dlnsim.model import init_params
from dlnsim.step import step_kind
from dlnsim.training import init_key

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

step_mod = importlib.import_module("dlnsim.step")

SMALL = ProblemConfig(d=24, m=12, s=3, n_train=40, n_test=50)


def _autodiff_step(params, y, x, c0, n, lr, wd):
    def loss(ws):
        h = y
        for w in ws:
            h = w @ h
        return 0.5 * (jnp.sum((h - x) ** 2) + c0) / n

    value, grads = jax.value_and_grad(loss)(params)
    return value, tuple((1 - lr * wd) * w - lr * g for w, g in zip(params, grads))


@pytest.mark.parametrize("depth", [1, 4])
@pytest.mark.parametrize("cols", [3, FUSE_MAX_COLUMNS + 5])  # fused rank-r update, and the matmul branch
def test_one_step_equals_autodiff(depth, cols):
    m, d = 6, 9
    params = init_params(jr.key(depth), ModelConfig(depth=depth, width=7), m, d, 1.0, "float64")
    y = jr.normal(jr.key(10), (m, cols), jnp.float64)
    x = jr.normal(jr.key(11), (d, cols), jnp.float64)
    c0, n, lr, wd = jnp.asarray(0.3), 17, 0.07, 0.02
    loss, new = gd_step(params, y, x, c0, n, lr, wd)
    ref_loss, ref = _autodiff_step(params, y, x, c0, n, lr, wd)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    for a, b in zip(new, ref):
        assert a.shape == b.shape and a.dtype == jnp.float64
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # The step moved the weights by far more than that tolerance.
    assert max(float(jnp.abs(a - w).max()) for a, w in zip(new, params)) > 1e-4


@pytest.mark.parametrize(
    "depth,cols,width",
    [(depth, cols, 7) for depth in (1, 4) for cols in (3, FUSE_MAX_COLUMNS + 5)]
    + [(4, 3, 2 * MAX_TERMS + 5)],  # hidden products summed in 4 pieces
)
def test_block_step_equals_autodiff_per_run(depth, cols, width):
    """Three runs with their own weights, data, step size and weight decay in one block."""
    m, d, runs = 6, MAX_TERMS + 3, 3  # d: the last layer's backward product in 2 pieces
    params = [
        init_params(jr.key(10 * r + depth), ModelConfig(depth=depth, width=width), m, d, 1.0, "float64")
        for r in range(runs)
    ]
    ys = [jr.normal(jr.key(100 + r), (m, cols), jnp.float64) for r in range(runs)]
    xs = [jr.normal(jr.key(200 + r), (d, cols), jnp.float64) for r in range(runs)]
    c0, lr, wd = jnp.asarray([0.3, 0.0, 1.2]), jnp.asarray([0.07, 0.01, 0.03]), jnp.asarray([0.02, 0.0, 0.5])
    last = lambda arrays: jnp.stack(arrays, axis=-1)  # noqa: E731
    block = tuple(last([p[layer] for p in params]) for layer in range(depth))
    loss, new = gd_step_block(block, last(ys), last(xs), c0, 17, lr, wd)
    for r in range(runs):
        ref_loss, ref = _autodiff_step(params[r], ys[r], xs[r], c0[r], 17, lr[r], wd[r])
        np.testing.assert_allclose(loss[r], ref_loss, rtol=1e-13)
        for a, b in zip(new, ref):
            np.testing.assert_allclose(a[..., r], b, rtol=1e-12, atol=1e-14)


def test_run_axis_last_is_a_per_network_function():
    """Alone, under vmap with broadcast arguments, and in any batch: the same numbers per run.

    Blocks are padded to whole vectors, so a run does not depend on its block (bitwise).
    """

    def scaled_norms(w, s):  # w (o, i, B), s (B,)
        return jnp.sum(w * w, axis=(0, 1)) * s, w[0] * s

    f = run_axis_last(scaled_norms)
    ws = jr.normal(jr.key(0), (11, 4, 5), jnp.float32)
    alone_norms = jnp.stack([f(w, 3.0)[0] for w in ws])
    alone_rows = jnp.stack([f(w, 3.0)[1] for w in ws])
    batched = jax.jit(jax.vmap(f, in_axes=(0, None)))
    for part in (slice(None), slice(0, 5), slice(3, 4)):  # 11 (padded to 16), 5 (to 8), 1 (to 8)
        norms, rows = batched(ws[part], 3.0)
        np.testing.assert_array_equal(norms, alone_norms[part])
        np.testing.assert_array_equal(rows, alone_rows[part])
    np.testing.assert_allclose(alone_norms, 3.0 * jnp.sum(ws * ws, axis=(1, 2)), rtol=1e-6)


@pytest.mark.parametrize("n", [MAX_TERMS, MAX_TERMS + 1, 3 * MAX_TERMS + 7])  # 1, 2 and 4 pieces
def test_block_products_sum_every_term(n):
    """The contraction is cut into pieces; on integers every sum is exact, so equality is bitwise."""
    w = jr.randint(jr.key(0), (5, n, 16), -8, 8).astype(jnp.float32)
    h = jr.randint(jr.key(1), (n, 3, 16), -8, 8).astype(jnp.float32)
    g = jr.randint(jr.key(2), (5, 3, 16), -8, 8).astype(jnp.float32)
    np.testing.assert_array_equal(matmul(w, h), jnp.einsum("oib,ikb->okb", w, h))
    np.testing.assert_array_equal(matmul_t(w, g), jnp.einsum("oib,okb->ikb", w, g))


def test_block_layout():
    for size in (1, 7, 8, 100, 256, 1000):
        for bytes_per_run in (100, 24_576, 10**7):
            blocks, per = block_layout(size, bytes_per_run)
            assert per % LANES == 0 and blocks * per >= size  # whole vectors
            assert (blocks - 1) * per < size  # no block is all padding
            assert per <= max(LANES, dlnsim.blocked.BLOCK_BYTES // bytes_per_run) + LANES
            assert block_layout(size, bytes_per_run, cpu=False)[0] == 1
    assert block_layout(128, 24_576) == (4, 32)  # the small sizes: 32 runs a block


def test_several_blocks_give_each_run_its_own_result(monkeypatch):
    """A batch cut into many blocks (every ``blocks``-th run in one) gives bitwise the numbers
    of one block and of each run alone."""

    def step(w, s):  # w (n, n, B), s (B,): a few products in a row
        for _ in range(3):
            w = 0.5 * w + 0.1 * s * matmul(w, w)
        return w

    def batched(ws, ss):  # traced anew for each call, so each sees the BLOCK_BYTES of its time
        return jax.jit(jax.vmap(run_axis_last(step)))(ws, ss)

    n = 2 * MAX_TERMS + 5  # products summed in 4 pieces
    ws = jr.normal(jr.key(0), (37, n, n), jnp.float32) / n
    ss = jr.uniform(jr.key(1), (37,), jnp.float32)
    one_block = batched(ws, ss)
    monkeypatch.setattr(dlnsim.blocked, "BLOCK_BYTES", 1)  # LANES runs per block: 5 blocks of 37 runs
    assert block_layout(37, 4 * (n * n + 1)) == (5, 8)
    many = batched(ws, ss)
    np.testing.assert_array_equal(many, one_block)
    alone = jnp.stack([run_axis_last(step)(w, s) for w, s in zip(ws[:3], ss[:3])])
    np.testing.assert_array_equal(many[:3], alone)


def test_run_axis_last_runs_alone_on_its_own_and_fn_under_vmap():
    # Told apart by a marker: real callers pass the same function written both ways.
    f = run_axis_last(lambda w: w * 2.0, alone=lambda w: w * 2.0 + 1.0)
    ws = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(f(ws[0]), ws[0] * 2.0 + 1.0)
    np.testing.assert_array_equal(jax.vmap(f)(ws), ws * 2.0)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="'auto' takes the block step on CPUs only")
def test_one_network_alone_takes_the_per_network_step_under_auto(monkeypatch):
    """A batch of small networks takes the block step; one alone is not padded to a block
    of 8 but takes the fused step (which test_training_runs_match_autodiff checks)."""
    traced = []
    for name in ("gd_step", "gd_step_block_ahead"):
        real = getattr(step_mod, name)
        monkeypatch.setattr(step_mod, name, lambda *a, _n=name, _f=real, **k: traced.append(_n) or _f(*a, **k))
    prob = dlnsim.make_problem(SMALL, seed=3)
    model, train = ModelConfig(depth=3, width=12), TrainConfig(steps=100, log_every=50)

    def one(seed):
        return dlnsim.simulate(prob, HParams(lr=0.05), init_key(seed), model=model, train=train).metrics.on_err

    jax.make_jaxpr(one)(0)
    assert traced == ["gd_step"]
    traced.clear()
    jax.make_jaxpr(jax.vmap(one))(jnp.arange(3))
    assert "gd_step_block_ahead" in traced


def test_step_kind():
    small, wide = ModelConfig(depth=3, width=16), ModelConfig(depth=3, width=MAX_WIDTH + 1)
    auto = TrainConfig()
    assert step_kind(small, auto, 12, 24, 3) == ("blocked" if jax.default_backend() == "cpu" else "fused")
    assert step_kind(wide, auto, 12, 24, 3) == "fused"
    assert step_kind(small, auto, 12, 24, FUSE_MAX_COLUMNS + 1) == "fused"
    assert step_kind(wide, TrainConfig(backward="blocked"), 12, 24, 40) == "blocked"
    assert step_kind(small, TrainConfig(backward="pallas"), 12, 24, 3) == "pallas"  # only when asked for
    with pytest.raises(ValueError, match="backward = 'pallas' is for small networks"):
        step_kind(small, TrainConfig(backward="pallas"), 100, 200, 5)
    assert step_kind(small, TrainConfig(backward="autodiff"), 12, 24, 3) == "autodiff"
    assert step_kind(small, TrainConfig(optimizer="adam", backward="blocked"), 12, 24, 3) == "autodiff"
    assert step_kind(ModelConfig(depth=3, width=16, activation="relu"), auto, 12, 24, 3) == "autodiff"


# Noise-free reduced data has r = s = 3 columns (the fused rank-r update); noisy reduced
# data has r = m = 12 and raw data N = 40 (the matmul branch). The paths sum in different
# orders; measured gaps after 300 steps, relative to the largest entry: 1.4e-15 (float64)
# and 5e-7 (float32) for fused and blocked, so the tolerances leave 10-20x room. Width 12
# is not a power of two: the Pallas kernel pads it to 16 (and d = 24 to 32), and the
# padding must change nothing.
# Kept out of the default run (the suite's 5 minutes): cases another one covers, the
# block and Pallas steps on 12 noisy columns (the raw case has 40) and the Pallas step in
# float64 on reduced data (test_onchip's sweep test compares it with the fused step).
_COVERED = {("blocked", 0.05), ("pallas", 0.05), ("pallas", 0.0, "float64", "reduced")}


def _case(backward, dtype, rtol, data, noise):
    slow = (backward, noise) in _COVERED or (backward, noise, dtype, data) in _COVERED
    return pytest.param(backward, dtype, rtol, data, noise, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize(
    "backward,dtype,rtol,data,noise",
    [
        _case(b, *case)
        for case in [
            ("float64", 1e-12, "reduced", 0.0),
            ("float32", 1e-5, "reduced", 0.0),
            ("float64", 1e-12, "reduced", 0.05),
            ("float64", 1e-12, "raw", 0.0),
        ]
        for b in ("fused", "blocked", "pallas")
    ],
)
def test_training_runs_match_autodiff(backward, dtype, rtol, data, noise):
    """300 steps with every metric: each hand-written step and ``backward="autodiff"`` agree to rounding."""
    prob = dlnsim.make_problem(SMALL, seed=3, train_noise=noise, dtype=dtype)
    model = ModelConfig(depth=3, width=12)
    hp = HParams(lr=0.05, weight_decay=1e-2)
    runs = [
        dlnsim.train(prob, model, TrainConfig(steps=300, log_every=100, dtype=dtype, data=data, backward=b), hp, seed=1)
        for b in (backward, "autodiff")
    ]
    fused, ref = runs
    for a, b in zip(fused.params, ref.params):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(jnp.abs(b).max()))
    for name in ref.metrics._fields:
        a, b = np.asarray(getattr(fused.metrics, name)), np.asarray(getattr(ref.metrics, name))
        scale = np.nanmax(np.abs(b)) if np.isfinite(b).any() else 0.0  # limit_dist is NaN here (no E*)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=name)
    assert float(ref.metrics.loss_data[-1]) < 0.1 * float(ref.metrics.loss_data[0])  # it trained


@pytest.mark.parametrize("backward", ["fused", "blocked", "pallas"])
def test_hand_written_steps_freeze_a_diverging_run(backward):
    prob = dlnsim.make_problem(SMALL, seed=3, dtype="float64")
    run = dlnsim.train(
        prob,
        ModelConfig(depth=3, width=16),
        TrainConfig(steps=100, log_every=50, dtype="float64", backward=backward),
        HParams(lr=50.0, weight_decay=0.0),
    )
    assert bool(run.diverged) and 0 <= int(run.diverged_at) < 100
    assert all(bool(jnp.all(jnp.isfinite(w))) for w in run.params)


def test_backward_is_validated():
    with pytest.raises(ValueError, match="backward"):
        TrainConfig(backward="manual")


# The Pallas case is kept out of the default run (the suite's 5 minutes): the kernel's
# batching rule is the block step's, and test_onchip runs it under the sweep's vmap.
@pytest.mark.parametrize("backward", ["blocked", pytest.param("pallas", marks=pytest.mark.slow)])
def test_block_step_under_nested_vmap_equals_runs_alone(backward):
    """vmap over step sizes of vmap over seeds (the batching rule itself batched again)."""
    prob = dlnsim.make_problem(ProblemConfig(d=12, m=6, s=2, n_train=20), dtype="float64")
    model, train = (
        ModelConfig(depth=3, width=8),
        TrainConfig(steps=100, log_every=50, dtype="float64", backward=backward),
    )

    def one(lr, seed):
        hp = HParams(lr=lr, weight_decay=1e-3)
        return dlnsim.simulate(prob, hp, init_key(seed), model=model, train=train).metrics.on_err

    lrs, seeds = jnp.asarray([0.02, 0.05, 0.1]), jnp.arange(4)
    nested = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))(lrs, seeds)
    alone = np.array([[np.asarray(jax.jit(one)(lr, s)) for s in seeds] for lr in lrs])
    np.testing.assert_allclose(nested, alone, rtol=1e-12)
    assert float(alone[..., -1].max()) < 0.5 * float(alone[..., 0].min())  # they trained


def test_compiler_options_are_checked_before_use(monkeypatch):
    # XLA fails every compile that names an option it does not know (they change between
    # jaxlib versions), so unknown options are dropped rather than passed on.
    assert supported({"xla_cpu_no_such_option": "1"}) == {}
    assert supported({"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_NO_SUCH_TYPE"}) == {}
    # Older jaxlibs (0.5.3, say) do not know the option: then the sweeps compile without it.
    # Each option is checked on its own: one that this XLA lacks does not drop the others.
    if jax.default_backend() != "cpu":
        assert compiler_options() == {}
        return
    real = compiler_options()
    assert real.items() <= CPU_COMPILER_OPTIONS.items()
    monkeypatch.setattr(blocked, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "1", **CPU_COMPILER_OPTIONS})
    compiler_options.cache_clear()
    try:
        got = compiler_options()
    finally:
        compiler_options.cache_clear()  # later callers see the real options again
    assert got == real  # the unknown option is dropped, the known ones kept


def _loop_body_copies(hlo: str) -> list[str]:
    """Copies of arrays (rank >= 1) inside the body of the optimized program's while loop."""
    body = re.search(r"while\(.*?body=%?([\w.\-]+)", hlo).group(1)
    block = re.search(r"^%?" + re.escape(body) + r" .*?^}", hlo, re.M | re.S).group(0)
    return [line.strip() for line in block.splitlines() if re.search(r"\[\d[\d,]*\]\{[\d,]*\} copy\(", line)]


@pytest.mark.parametrize("layout", ["fused", "blocked"])
def test_the_step_updates_the_weights_in_place(layout):
    # Inside the scan over steps XLA writes each new W_l into the old one's buffer only if the
    # update is ordered after the backward product W_l^T delta_l (dlnsim.backward._after);
    # otherwise it copies every layer but the first at the start of each step (measured
    # 1.17-1.34x slower). A structural check, not a timing: the loop body copies no array.
    if jax.default_backend() != "cpu":
        pytest.skip("XLA's CPU pipeline is the one checked")
    runs, m, d = 8, 10, 20
    axis = -1 if layout == "blocked" else 0  # the run axis: last in a block, first under vmap
    params = init_params(jr.key(0), ModelConfig(depth=4, width=16), m, d, 1.0, "float32")
    params = tuple(jnp.stack([w] * runs, axis=axis) for w in params)
    f32 = jnp.float32
    y = jnp.stack([jr.normal(jr.key(1), (m, 2), f32)] * runs, axis=axis)
    x = jnp.stack([jr.normal(jr.key(2), (d, 2), f32)] * runs, axis=axis)
    c0, lr, wd = jnp.zeros(runs, f32), jnp.full(runs, 0.02, f32), jnp.full(runs, 1e-3, f32)
    if layout == "blocked":
        step = lambda ws: gd_step_block(ws, y, x, c0, 40, lr, wd)  # noqa: E731
    else:  # one network per run, vmapped as the sweep does
        one = lambda ws, y, x, c0, lr, wd: gd_step(ws, y, x, c0, 40, lr, wd)  # noqa: E731
        step = lambda ws: jax.vmap(one)(ws, y, x, c0, lr, wd)  # noqa: E731
    scan = jax.jit(
        lambda ws: jax.lax.scan(lambda p, _: (step(p)[1], None), ws, None, length=3)[0],
        compiler_options=compiler_options(),
    )
    copies = _loop_body_copies(scan.lower(params).compile().as_text())
    assert copies == [], copies


def test_the_carried_block_step_updates_the_weights_in_place():
    """The sweep's block step (dlnsim.step.make_block_step: activations carried, divergence
    freeze selected before the next forward pass) copies no weight inside its scan. (With the
    freeze selected after the forward pass instead, XLA copied every layer at each step and
    the block step ran 4x slower; with each h_l' computed before the update that reads h_l,
    it copied the activations.) Only the per-run flags (diverged, diverged_at) may be copied."""
    if jax.default_backend() != "cpu":
        pytest.skip("XLA's CPU pipeline is the one checked")
    runs, m, d, n = 8, 10, 20, 40
    params = init_params(jr.key(0), ModelConfig(depth=4, width=16), m, d, 1.0, "float32")
    params = tuple(jnp.stack([w] * runs, axis=-1) for w in params)
    f32 = jnp.float32
    y = jnp.stack([jr.normal(jr.key(1), (m, 2), f32)] * runs, axis=-1)
    x = jnp.stack([jr.normal(jr.key(2), (d, 2), f32)] * runs, axis=-1)
    data = dlnsim.problem.Data(y, x, jnp.zeros(runs, f32))
    hp = HParams(lr=jnp.full(runs, 0.02, f32), weight_decay=jnp.full(runs, 1e-3, f32))
    zeros = jnp.zeros(runs, jnp.int32)
    state = step_mod.TrainState(zeros, params, (), jnp.zeros(runs, bool), zeros - 1, jnp.ones(runs, f32))
    step = step_mod.make_block_step(TrainConfig(), n)

    def run(state):
        carry = (state, blocked.forward_block(state.params, data.y))
        return jax.lax.scan(lambda c, _: (step(c, data, hp), None), carry, None, length=3)[0][0]

    hlo = jax.jit(run, compiler_options=compiler_options()).lower(state).compile().as_text()
    copies = [c for c in _loop_body_copies(hlo) if re.search(r"= f32\[", c)]
    assert copies == [], copies


def test_make_step_refuses_the_block_step():
    """The block step has its own maker (its arrays are run-axis-last); make_step would
    otherwise fall through to jax.grad on them."""
    with pytest.raises(ValueError, match="make_block_step"):
        step_mod.make_step(ModelConfig(depth=2, width=4), TrainConfig(), 10, "blocked")
