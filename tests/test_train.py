"""Training one network: exact facts D1/D3, fast paths equal plain ones, divergence, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlnsim
from dlnsim import HParams, ModelConfig, ProblemConfig, TrainConfig
from dlnsim.step import TrainState, _frozen, training_data

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

SMALL = ProblemConfig(d=24, m=12, s=3, n_train=40, n_test=50)
# Tolerance table (STYLE.md Tests): float32 ~1e-5 relative, float64 ~1e-10.
RTOL = {"float32": 1e-5, "float64": 1e-10}


def _train(depth=3, width=16, steps=200, log_every=50, dtype="float64", problem=SMALL, noise=0.0, seed=0, **kw):
    hp = HParams(lr=kw.pop("lr", 0.05), weight_decay=kw.pop("weight_decay", 1e-2), init_scale=kw.pop("init_scale", 1.0))
    model = ModelConfig(depth=depth, width=width, **{k: kw.pop(k) for k in ("init", "activation") if k in kw})
    prob = dlnsim.make_problem(problem, seed=7, train_noise=noise, dtype=dtype)
    return dlnsim.train(prob, model, TrainConfig(steps=steps, log_every=log_every, dtype=dtype, **kw), hp, seed=seed)


@pytest.mark.parametrize(
    "depth, init, dtype",
    [
        (1, "lecun", "float64"),
        (2, "lecun", "float64"),
        (3, "lecun", "float64"),
        (5, "lecun", "float64"),
        (3, "he", "float64"),
        (3, "xavier", "float64"),
        (3, "orthogonal", "float64"),
        (2, "lecun", "float32"),
        (5, "lecun", "float32"),
    ],
)
def test_d1_off_subspace_decay_is_exact(depth, init, dtype):
    """D1: ||W_1(t) P_perp||_F = (1 - eta lambda)^t ||W_1(0) P_perp||_F at every logged step,
    for every depth and init."""
    lr, wd = 0.02, 5e-2
    run = _train(depth=depth, lr=lr, weight_decay=wd, init=init, dtype=dtype)
    assert not bool(run.diverged)
    t = np.arange(5) * 50
    expected = (1 - lr * wd) ** t * float(run.metrics.w1_off_fro[0])
    # float64: 200 steps of rounding; float32: measured 2.6e-6 (2.6e-5 after 2000 steps).
    np.testing.assert_allclose(run.metrics.w1_off_fro, expected, rtol={"float64": 1e-9, "float32": 2e-5}[dtype])


def test_d1_without_weight_decay_off_subspace_never_moves():
    run = _train(depth=3, weight_decay=0.0)
    np.testing.assert_allclose(run.metrics.w1_off_fro, run.metrics.w1_off_fro[0], rtol=1e-12)
    assert run.metrics.on_err[-1] < 0.1 * run.metrics.on_err[0]  # while the fit does progress


@pytest.mark.parametrize(
    "dtype,depth,noise",
    [
        ("float64", 1, 0.0),
        ("float64", 3, 0.0),
        ("float64", 3, 0.05),
        ("float32", 3, 0.05),
        # float32 without noise: covered by the noisy case (kept out of the default run)
        pytest.param("float32", 1, 0.0, marks=pytest.mark.slow),
        pytest.param("float32", 3, 0.0, marks=pytest.mark.slow),
    ],
)
def test_reduced_path_equals_raw_path(dtype, depth, noise):
    """The exact data reduction gives the same trajectory as the N raw samples (200 steps)."""
    red = _train(depth=depth, dtype=dtype, noise=noise, data="reduced")
    raw = _train(depth=depth, dtype=dtype, noise=noise, data="raw")
    for w_red, w_raw in zip(red.params, raw.params):
        scale = float(jnp.abs(w_raw).max())
        np.testing.assert_allclose(w_red, w_raw, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    for name in ("loss_data", "on_err", "off_fro", "test_err"):
        a, b = getattr(red.metrics, name), getattr(raw.metrics, name)
        # float32: loss sums over N samples vs r factors round differently (~N eps relative).
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype] * (10 if dtype == "float32" else 1), atol=1e-12)


def test_balancedness_decays_under_weight_decay():
    """D3: GD with weight decay drives W_{l+1}^T W_{l+1} - W_l W_l^T to zero, about (1-eta lambda)^(2t)."""
    lr, wd = 0.05, 5e-2
    run = _train(depth=3, steps=8000, log_every=1000, lr=lr, weight_decay=wd, balance_every=1)
    bal = np.asarray(run.metrics.balance)
    assert bal[0] > 1e-2
    # Once the fit has settled (step 2000 on), each 1000 steps shrink it by (1 - eta lambda)^2000
    # until it reaches float64 round-off (~1e-15); the 10% band allows the O(eta^2) terms.
    settled = bal[2:][bal[2:] > 1e-13]
    assert len(settled) >= 3
    np.testing.assert_allclose(settled[1:] / settled[:-1], (1 - lr * wd) ** 2000, rtol=0.1)
    assert bal[-1] < 1e-13


def test_balancedness_is_zero_for_one_layer():
    assert float(_train(depth=1).metrics.balance[-1]) == 0.0  # its value at depth 3: the direct computation below


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_preserved(dtype):
    run = _train(depth=3, dtype=dtype)
    for leaf in jax.tree.leaves((run.params, run.metrics)):
        assert leaf.dtype == jnp.dtype(dtype)


def test_shapes_of_metrics():
    run = _train(depth=3)
    assert run.metrics.on_err.shape == (5,)
    assert run.metrics.noise_err.shape == (5, len(SMALL.test_sigmas))
    assert run.metrics.sv.shape == (5, 8)
    assert [w.shape for w in run.params] == [(16, 12), (16, 16), (24, 16)]


def test_alignment_sines_are_accurate_when_small():
    """Near convergence the top-s singular spaces of E align with span(U) and range(B): the
    sines, checked against numpy, keep their relative accuracy at 3e-8 (``sqrt(1 - cos_min^2)``
    was off by percents there, and stopped near 3e-4 in float32)."""
    prob = dlnsim.make_problem(ProblemConfig(d=20, m=10, s=2, n_train=50, whiten=True), seed=0, dtype="float64")
    tc = TrainConfig(steps=2000, log_every=500, dtype="float64")
    run = dlnsim.train(prob, ModelConfig(depth=3, width=32), tc, HParams(lr=0.05, weight_decay=0.05))
    e = np.asarray(run.params[2] @ run.params[1] @ run.params[0])
    left, _, right_t = np.linalg.svd(e)
    u, qb = np.asarray(prob.u), np.asarray(prob.qb)
    for side, basis, ref in (("left", left[:, :2], u), ("right", right_t[:2].T, qb)):
        sines = np.linalg.svd(basis - ref @ (ref.T @ basis), compute_uv=False)
        # rtol 1e-6, not 1e-10: the singular space itself comes from eigh of E^T E, whose
        # vectors carry an error of ~eps sigma_max^2 / gap (here 1e-8 of a 3e-8 sine at most).
        np.testing.assert_allclose(getattr(run.metrics, f"align_{side}_sin")[-1], sines.max(), rtol=1e-6)
    assert run.metrics.align_left_sin[-1] < 1e-7  # nearly aligned: where the old formula failed


def test_metrics_against_direct_computation():
    run = _train(depth=3)
    prob = dlnsim.make_problem(SMALL, seed=7, dtype="float64")
    e2e = np.asarray(run.params[2] @ run.params[1] @ run.params[0])
    b, u, qb = np.asarray(prob.b), np.asarray(prob.u), np.asarray(prob.qb)
    p_perp = np.eye(12) - qb @ qb.T
    m = jax.tree.map(lambda a: a[-1], run.metrics)
    np.testing.assert_allclose(m.on_err, np.linalg.norm(e2e @ b - u) / np.sqrt(3), rtol=1e-10)
    x_test = np.asarray(prob.x_test)
    direct = np.linalg.norm(e2e @ np.asarray(prob.y_test) - x_test) / np.linalg.norm(x_test)
    np.testing.assert_allclose(m.test_err, direct, rtol=1e-10)
    np.testing.assert_allclose(m.off_fro, np.linalg.norm(e2e @ p_perp), rtol=1e-10)
    np.testing.assert_allclose(m.off_spec, np.linalg.norm(e2e @ p_perp, 2), rtol=1e-10)
    np.testing.assert_allclose(m.sv, np.linalg.svd(e2e, compute_uv=False)[:8], rtol=1e-10)
    np.testing.assert_allclose(m.loss_data, np.sum((e2e @ prob.y - prob.x) ** 2) / 80, rtol=1e-10)
    np.testing.assert_allclose(m.loss_reg, 0.5e-2 * sum(np.sum(np.asarray(w) ** 2) for w in run.params), rtol=1e-10)
    left, sv, right_t = np.linalg.svd(e2e)
    for side, basis, ref in (("left", left[:, :3], u), ("right", right_t[:3].T, qb)):
        cos = np.linalg.svd(ref.T @ basis, compute_uv=False)
        np.testing.assert_allclose(getattr(m, f"align_{side}_cos2"), np.mean(cos**2), rtol=1e-10)
        np.testing.assert_allclose(getattr(m, f"align_{side}_sin"), np.sqrt(1 - cos.min() ** 2), rtol=1e-8)
        sines = np.linalg.svd(basis - ref @ (ref.T @ basis), compute_uv=False)  # accurate when small too
        np.testing.assert_allclose(getattr(m, f"align_{side}_sin"), sines.max(), rtol=1e-8)
    prob_sv = sv / sv.sum()  # every singular value of this E is far above the floor of _entropy
    np.testing.assert_allclose(m.eff_rank, np.exp(-np.sum(prob_sv * np.log(prob_sv))), rtol=1e-10)
    ws = [np.asarray(w) for w in run.params]
    imbalance = [np.linalg.norm(hi.T @ hi - lo @ lo.T) / (np.sum(hi**2) + np.sum(lo**2)) for lo, hi in zip(ws, ws[1:])]
    np.testing.assert_allclose(m.balance, max(imbalance), rtol=1e-10)  # recorded at the last point
    np.testing.assert_allclose(m.w1_off_fro, np.linalg.norm(ws[0] @ p_perp), rtol=1e-10)
    np.testing.assert_allclose(m.e2e_fro, np.linalg.norm(e2e), rtol=1e-10)
    n_test = x_test.shape[1]  # D4 per sigma: clean error plus sigma^2 T ||E||_F^2
    noisy = [np.sqrt((direct**2 * np.sum(x_test**2) + sg**2 * n_test * np.sum(e2e**2)) / np.sum(x_test**2))
             for sg in SMALL.test_sigmas]  # fmt: skip
    np.testing.assert_allclose(m.noise_err, noisy, rtol=1e-10)
    assert np.isnan(m.limit_dist)  # codes not whitened: no closed-form limit


def test_eff_rank_leaves_out_the_float32_floor():
    """A rank-3 map at m = 50: in float32 the Gram's eigenvalues put the 47 zero singular
    values at ~4e-4 sigma_max, which would add about 2% to the effective rank; the value
    must match the exact one from the same weights in float64."""
    cfg = ProblemConfig(d=80, m=50, s=3, n_train=60, n_test=50)
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((20, 3)) @ rng.standard_normal((3, 50)) / 10).astype(np.float32)  # rank 3
    w2 = (rng.standard_normal((80, 20)) / 5).astype(np.float32)
    sv = np.linalg.svd(w2.astype(float) @ w1.astype(float), compute_uv=False)[:3]
    exact = np.exp(-np.sum(sv / sv.sum() * np.log(sv / sv.sum())))
    for dtype in ("float32", "float64"):
        prob = dlnsim.make_problem(cfg, seed=1, dtype=dtype)
        params = (jnp.asarray(w1, dtype), jnp.asarray(w2, dtype))
        data = training_data(prob, ModelConfig(depth=2, width=20), TrainConfig())
        m = dlnsim.metrics.compute_metrics(
            params, prob, data, jnp.asarray(0.0, dtype), None, cfg.test_sigmas, n=60, n_singular=3
        )
        assert float(m.eff_rank) == pytest.approx(exact, rel=1e-5 if dtype == "float32" else 1e-10)


def test_metrics_of_a_collapsed_network():
    """E = 0 (the collapse past the threshold, SCIENCE.md section 3; float32 runs reach it
    exactly by underflow): rank 0, perfectly balanced zero layers, no singular spaces to
    align (NaN, not the angles of an arbitrary eigenbasis), on-subspace and test error 1."""
    prob = dlnsim.make_problem(SMALL, seed=1, dtype="float32")
    model = ModelConfig(depth=3, width=8)
    params = tuple(jnp.zeros(s, jnp.float32) for s in dlnsim.model.layer_shapes(model, SMALL.m, SMALL.d))
    data = training_data(prob, model, TrainConfig())
    m = dlnsim.metrics.compute_metrics(params, prob, data, jnp.float32(1.0), None, (0.0, 0.5), n=40, n_singular=3)
    assert float(m.eff_rank) == 0 and float(m.balance) == 0 and float(m.e2e_fro) == 0
    assert all(
        np.isnan(float(getattr(m, f"align_{side}"))) for side in ("left_sin", "left_cos2", "right_sin", "right_cos2")
    )
    assert float(m.on_err) == pytest.approx(1.0, rel=1e-6) and float(m.test_err) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(m.sv, 0.0)


def test_noise_curve_matches_monte_carlo():
    """D4 closed form vs the noisy test set: agree within Monte Carlo error (n_test = 4000)."""
    prob_cfg = ProblemConfig(d=24, m=12, s=3, n_train=40, n_test=4000, test_sigmas=(0.0, 0.1, 0.5))
    run = _train(depth=3, problem=prob_cfg)
    prob = dlnsim.make_problem(prob_cfg, seed=7, dtype="float64")
    mc = dlnsim.metrics.noise_error_mc(run.params, prob, prob_cfg.test_sigmas)
    np.testing.assert_allclose(mc, run.metrics.noise_err[-1], rtol=0.03)  # MC std ~ 1/sqrt(n_test m)
    assert mc[0] == pytest.approx(float(run.metrics.test_err[-1]), rel=1e-10)


def test_huge_step_diverges_is_flagged_and_frozen():
    run = _train(depth=3, lr=50.0)
    assert bool(run.diverged)
    at = int(run.diverged_at)
    assert 0 <= at < 50
    # Frozen: the logged metrics stop changing after the divergence step.
    m = np.asarray(run.metrics.loss_data)
    np.testing.assert_array_equal(m[2:], m[-1])


@pytest.mark.parametrize(
    "loss, loss0, bad",
    [
        (1.0, 1.0, False),
        (1e6, 1.0, False),
        (2e6, 1.0, True),
        (np.nan, 1.0, True),
        (np.inf, 1.0, True),
        (np.inf, np.inf, True),
        (-np.inf, 1.0, True),
    ],
)
def test_a_step_is_bad_when_its_loss_is_not_finite_or_over_the_cap(loss, loss0, bad):
    """The freeze rule (written without is_finite, which the Pallas kernel cannot lower on
    every jax) flags exactly the non-finite losses and those over cap x the initial loss."""
    state = TrainState(jnp.int32(3), (), (), jnp.bool_(False), jnp.int32(-1), jnp.float64(loss0))
    is_bad, frozen = _frozen(state, jnp.float64(loss), 1e6)
    assert bool(is_bad) is bad and bool(frozen) is bad
    _, frozen = _frozen(state._replace(diverged=jnp.bool_(True)), jnp.float64(1.0), 1e6)
    assert bool(frozen)  # a frozen run stays frozen


def test_adamw_breaks_d1_and_has_no_closed_form_limit():
    """adamw decays by (1 - eta lambda) like GD, but Adam's elementwise scaling moves the data
    update of W_1 off range(Y), so D1 does not hold, and its fixed points are not critical
    points of F, so E* is not its limit (theory.D1_OPTIMIZERS, theory.LIMIT_OPTIMIZERS)."""
    lr, wd = 0.01, 0.05
    whitened = ProblemConfig(d=24, m=12, s=3, n_train=40, n_test=50, whiten=True)
    run = _train(depth=3, lr=lr, weight_decay=wd, optimizer="adamw", problem=whitened)
    w1 = np.asarray(run.metrics.w1_off_fro)
    d1 = (1 - lr * wd) ** (np.arange(5) * 50) * w1[0]
    # GD: 1e-9 (test_d1_off_subspace_decay_is_exact); adamw: 5e-4 to 4e-2 over 12 draws
    assert np.max(np.abs(w1 / d1 - 1)) > 1e-4
    assert np.all(np.isnan(run.metrics.limit_dist))
    assert np.all(
        np.isfinite(_train(depth=3, lr=lr, weight_decay=wd, optimizer="adam", problem=whitened).metrics.limit_dist)
    )


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "adamw"])
def test_optax_optimizers_train(optimizer):
    run = _train(depth=3, lr=0.01, optimizer=optimizer)
    assert not bool(run.diverged)
    assert run.metrics.loss_data[-1] < 0.05 * run.metrics.loss_data[0]


def test_momentum_zero_equals_gradient_descent():
    """optax's SGD without momentum plus coupled weight decay is exactly the GD update."""
    gd = _train(depth=3)
    prob = dlnsim.make_problem(SMALL, seed=7, dtype="float64")
    mom = dlnsim.train(
        prob,
        ModelConfig(depth=3, width=16),
        TrainConfig(steps=200, log_every=50, dtype="float64", optimizer="momentum"),
        HParams(lr=0.05, weight_decay=1e-2, momentum=0.0),
    )
    for a, b in zip(gd.params, mom.params):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("init", ["lecun", "he", "xavier", "orthogonal"])
def test_init_schemes(init):
    model = ModelConfig(depth=3, width=300, init=init)
    ws = dlnsim.init_params(jax.random.key(0), model, m=200, d=250, init_scale=2.0, dtype="float64")
    for w in ws:
        fan_out, fan_in = w.shape
        if init == "orthogonal":
            gram = w @ w.T if fan_out <= fan_in else w.T @ w
            np.testing.assert_allclose(gram, 4.0 * np.eye(min(w.shape)), atol=1e-10)
        else:
            var = {"lecun": 1 / fan_in, "he": 2 / fan_in, "xavier": 2 / (fan_in + fan_out)}[init]
            # >= 60,000 entries: sample variance within 3% of 4 * var.
            assert abs(float(jnp.var(w)) / (4.0 * var) - 1) < 0.03


def test_relu_network_trains_on_raw_data():
    run = _train(depth=3, activation="relu", lr=0.02)
    assert np.isnan(run.metrics.on_err).all()  # E is not defined for a ReLU network
    assert run.metrics.loss_data[-1] < run.metrics.loss_data[0]
    assert np.isfinite(run.metrics.noise_err).all()


def test_new_hyperparameters_do_not_recompile():
    from dlnsim.training import _simulate_jit

    _train(depth=3, lr=0.03, weight_decay=1e-3)
    before = _simulate_jit()._cache_size()
    _train(depth=3, lr=0.01, weight_decay=3e-2, init_scale=0.5, seed=4)
    assert _simulate_jit()._cache_size() == before


def test_sum_loss_is_mean_loss_with_rescaled_hyperparameters():
    """GD on the sum loss at (eta, lambda) is GD on the mean loss at (eta N, lambda / N)."""
    n = SMALL.n_train
    run_sum = _train(depth=3, lr=0.05 / n, weight_decay=1e-2 * n, loss="sum")
    run_mean = _train(depth=3, lr=0.05, weight_decay=1e-2)
    for a, b in zip(run_sum.params, run_mean.params):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(run_sum.metrics.loss_data, n * run_mean.metrics.loss_data, rtol=1e-10)


def test_balance_off_records_nan_and_changes_nothing_else():
    on = _train(depth=3, steps=100, balance_every=1)
    off = _train(depth=3, steps=100, balance=False)
    assert np.isnan(off.metrics.balance).all() and np.isfinite(on.metrics.balance).all()
    for name in on.metrics._fields:
        if name != "balance":
            np.testing.assert_array_equal(getattr(on.metrics, name), getattr(off.metrics, name), err_msg=name)
    for a, b in zip(on.params, off.params):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="balance"):
        TrainConfig(balance=1)


def test_balance_every_k_records_the_same_values_at_its_points_and_nan_between():
    """Log points 0, 3, 6 and the last (7) of 8 carry the every-point values; the rest NaN."""
    every = _train(depth=3, steps=70, log_every=10, balance_every=1)
    sparse = _train(depth=3, steps=70, log_every=10, balance_every=3)
    due = np.array([TrainConfig(steps=70, log_every=10, balance_every=3).balance_due(i) for i in range(8)])
    np.testing.assert_array_equal(due, [1, 0, 0, 1, 0, 0, 1, 1])
    np.testing.assert_allclose(sparse.metrics.balance[due], every.metrics.balance[due], rtol=1e-12)
    assert np.isnan(sparse.metrics.balance[~due]).all() and np.all(every.metrics.balance[due] > 1e-4)
    for name in every.metrics._fields:
        if name != "balance":
            np.testing.assert_array_equal(getattr(every.metrics, name), getattr(sparse.metrics, name), err_msg=name)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="balance_every"):
            TrainConfig(balance_every=bad)


@pytest.mark.parametrize("backward", ["fused", "blocked", "autodiff"])
def test_diverged_at_is_the_first_step_over_the_cap(backward):
    """L = 1 (E = W_1) with too large a step: numpy's own GD loop finds the first step whose
    data loss exceeds divergence_cap x the initial loss, and the run reports that step, with
    every step kind (each checks divergence in its own code)."""
    from dlnsim.training import init_key

    prob = dlnsim.make_problem(SMALL, seed=7, dtype="float64")
    model, lr, wd = ModelConfig(depth=1, width=16), 2.0, 1e-2  # |1 - lr sigma_max(Y Y^T / N)| = 2.6
    tc = TrainConfig(steps=200, log_every=50, dtype="float64", backward=backward)
    run = dlnsim.train(prob, model, tc, HParams(lr=lr, weight_decay=wd))
    w = np.asarray(dlnsim.init_params(init_key(0), model, SMALL.m, SMALL.d, dtype="float64")[0])
    x, y = np.asarray(prob.x), np.asarray(prob.y)
    loss = lambda w: np.sum((w @ y - x) ** 2) / (2 * SMALL.n_train)  # noqa: E731
    loss0, t = loss(w), 0
    while t < 200 and loss(w) <= 1e8 * loss0:  # TrainConfig's default divergence_cap
        w = (1 - lr * wd) * w - lr * (w @ y - x) @ y.T / SMALL.n_train
        t += 1
    assert 5 < t < 200 and bool(run.diverged) and int(run.diverged_at) == t


def test_simulate_with_the_documented_key_is_train():
    """simulate's docstring: train(seed) and the sweep initialise with fold_in(key(0), seed)."""
    prob = dlnsim.make_problem(SMALL, seed=1, dtype="float64")
    model, tc, hp = ModelConfig(depth=2, width=8), TrainConfig(steps=100, log_every=50, dtype="float64"), HParams()
    run = dlnsim.train(prob, model, tc, hp, seed=3)
    key = jax.random.fold_in(jax.random.key(0), 3)
    sim = jax.jit(dlnsim.simulate, static_argnames=("model", "train"))(prob, hp, key, model=model, train=tc)
    np.testing.assert_array_equal(sim.metrics.on_err, run.metrics.on_err)
    np.testing.assert_array_equal(sim.params[0], run.params[0])


def test_training_noise_in_hp_that_the_problem_lacks_is_an_error():
    """train takes the problem's training noise: a different nonzero hp.train_noise would be ignored."""
    model, tc = ModelConfig(depth=2, width=8), TrainConfig(steps=50, dtype="float64")
    with pytest.raises(ValueError, match=r"hp.train_noise = 0.1 is not the problem's training noise \(0\)"):
        dlnsim.train(dlnsim.make_problem(SMALL, dtype="float64"), model, tc, HParams(train_noise=0.1))
    with pytest.raises(ValueError, match=r"hp.train_noise = 0.1 is not"):  # a numpy number too
        dlnsim.train(dlnsim.make_problem(SMALL, dtype="float64"), model, tc, HParams(train_noise=np.float32(0.1)))
    noisy = dlnsim.make_problem(SMALL, train_noise=0.1)  # float32 0.1: the same value
    dlnsim.train(noisy, model, TrainConfig(steps=50), HParams(train_noise=0.1))
    dlnsim.train(noisy, model, TrainConfig(steps=50), HParams())  # the default 0: the problem's noise


def _numpy_optimizer(optimizer, w, x, y, lr, wd, beta, steps):
    """Textbook recursions at L = 1 (mean loss): heavy ball v <- g + lambda W + beta v (optax.sgd
    with momentum); Adam on g + lambda W (coupled L2); AdamW on g with -eta lambda W apart
    (decoupled); optax's b2 = 0.999, eps = 1e-8."""
    n = y.shape[1]
    m1, m2, v = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):
        g = (w @ y - x) @ y.T / n
        if optimizer == "momentum":
            v = g + wd * w + beta * v
            w = w - lr * v
        else:
            g = g + wd * w if optimizer == "adam" else g
            m1 = beta * m1 + (1 - beta) * g
            m2 = 0.999 * m2 + 0.001 * g * g
            step = (m1 / (1 - beta**t)) / (np.sqrt(m2 / (1 - 0.999**t)) + 1e-8)
            w = w - lr * (step + (wd * w if optimizer == "adamw" else 0.0))
    return w


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "adamw"])
def test_optimizers_match_a_numpy_reference_at_depth_one(optimizer):
    """60 steps at L = 1 equal the textbook recursion: heavy ball, not Nesterov; Adam's decay
    in the gradient; AdamW's decoupled (and present)."""
    from dlnsim.training import init_key

    prob = dlnsim.make_problem(SMALL, seed=7, dtype="float64")
    model, lr, wd, beta = ModelConfig(depth=1, width=16), 0.02, 0.05, 0.9
    tc = TrainConfig(steps=60, log_every=60, dtype="float64", optimizer=optimizer)
    run = dlnsim.train(prob, model, tc, HParams(lr=lr, weight_decay=wd, momentum=beta))
    w0 = np.asarray(dlnsim.init_params(init_key(0), model, SMALL.m, SMALL.d, dtype="float64")[0])
    ref = _numpy_optimizer(optimizer, w0, np.asarray(prob.x), np.asarray(prob.y), lr, wd, beta, 60)
    np.testing.assert_allclose(run.params[0], ref, rtol=1e-9, atol=1e-12)


def test_no_limit_without_weight_decay_on_noise_free_data():
    """Whitened, noise-free, lambda = 0: E* is not the limit (D1: E P_perp keeps its initial
    part), so limit_dist is NaN at every step."""
    prob = dlnsim.make_problem(ProblemConfig(d=20, m=10, s=3, n_train=40, whiten=True), dtype="float64")
    run = dlnsim.train(prob, ModelConfig(depth=2, width=8), TrainConfig(steps=50, dtype="float64"), HParams())
    assert np.isnan(run.metrics.limit_dist).all()


@pytest.mark.parametrize("unbalanced", ["last", "first"])
def test_balancedness_takes_every_layer_pair(unbalanced):
    """(I, I, 2I) and (2I, I, I): one pair is balanced, the other gives
    ||4I - I||_F / (4 + 1) ||I||_F^2 = 3 sqrt(3) / 15 for 3x3 blocks."""
    eye = jnp.eye(3, dtype=jnp.float64)
    params = (eye, eye, 2 * eye) if unbalanced == "last" else (2 * eye, eye, eye)
    assert float(dlnsim.metrics.balancedness(params)) == pytest.approx(3 * np.sqrt(3) / 15, rel=1e-12)


def test_layers_and_init_and_teacher_streams_are_independent():
    """Each layer draws from its own key, and the teacher's stream differs from the init's."""
    import jax.random as jr

    from dlnsim.problem import problem_key
    from dlnsim.training import init_key

    for seed in range(4):
        assert not np.array_equal(jr.key_data(problem_key(seed)), jr.key_data(init_key(seed)))
    ws = dlnsim.init_params(init_key(0), ModelConfig(depth=3, width=20), 20, 20, dtype="float64")
    corr = np.corrcoef(np.stack([np.ravel(w) for w in ws]))  # 400 entries each: sd 0.05
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.3
