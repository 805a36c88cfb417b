"""Problem generation and the exact data reduction (SCIENCE.md section 1, "Exact data reduction")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlnsim
from dlnsim import ModelConfig, ProblemConfig
from dlnsim.step import _data_loss

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

F64 = dict(rtol=1e-10, atol=0)


def test_shapes_and_subspace():
    cfg = ProblemConfig(d=30, m=12, s=3, n_train=40, n_test=25)
    p = dlnsim.make_problem(cfg, seed=1, dtype="float64")
    assert p.a.shape == (12, 30) and p.u.shape == (30, 3) and p.x.shape == (30, 40) and p.y.shape == (12, 40)
    assert p.x_test.shape == (30, 25) and p.y_test.shape == (12, 25) and p.e_test.shape == (12, 25)
    np.testing.assert_allclose(p.u.T @ p.u, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(p.qb.T @ p.qb, np.eye(3), atol=1e-12)
    # Signals lie in span(U); measurements are A X exactly without noise.
    np.testing.assert_allclose(p.x - p.u @ (p.u.T @ p.x), 0, atol=1e-12)
    np.testing.assert_allclose(p.y, p.a @ p.x, atol=1e-12)
    np.testing.assert_allclose(p.b, p.a @ p.u, atol=1e-12)
    assert p.noise_free and p.cfg == cfg


def test_whitened_codes_are_exact():
    cfg = ProblemConfig(d=30, m=12, s=3, n_train=40, whiten=True)
    p = dlnsim.make_problem(cfg, seed=0, dtype="float64")
    z = p.u.T @ p.x
    np.testing.assert_allclose(z @ z.T, 40 * np.eye(3), atol=1e-10)


@pytest.mark.parametrize("operator", ["orthonormal", "dct"])
def test_orthogonal_operators_are_isotropic(operator):
    cfg = ProblemConfig(d=32, m=8, s=2, operator=operator)
    a = dlnsim.make_problem(cfg, seed=0, dtype="float64").a
    np.testing.assert_allclose(a @ a.T, (32 / 8) * np.eye(8), atol=1e-10)


def test_gaussian_operator_variance():
    cfg = ProblemConfig(d=400, m=200, s=5)
    a = np.asarray(dlnsim.make_problem(cfg, seed=0, dtype="float64").a)
    # 80,000 entries: the sample variance is within 2% of 1/m with overwhelming probability.
    assert abs(a.var() * 200 - 1) < 0.02 and abs(a.mean()) < 1e-3


def test_seeds_and_noise():
    cfg = ProblemConfig(d=20, m=10, s=2, n_train=30)
    p0, p0b, p1 = (dlnsim.make_problem(cfg, s, dtype="float64") for s in (0, 0, 1))
    np.testing.assert_array_equal(p0.a, p0b.a)
    assert not np.allclose(p0.a, p1.a)
    noisy = dlnsim.make_problem(cfg, 0, train_noise=0.1, dtype="float64")
    assert not noisy.noise_free
    np.testing.assert_array_equal(noisy.a, p0.a)  # noise does not change the teacher
    resid = noisy.y - noisy.a @ noisy.x
    assert 0.08 < resid.std() < 0.12


@pytest.mark.parametrize(
    "noise,depth",
    [(0.0, 1), (0.0, 3), (0.05, 3), pytest.param(0.05, 1, marks=pytest.mark.slow)],  # slow: covered by (0.05, 3)
)
def test_reduced_data_gives_same_loss_and_gradient(noise, depth):
    cfg = ProblemConfig(d=24, m=12, s=3, n_train=50)
    p = dlnsim.make_problem(cfg, 3, train_noise=noise, dtype="float64")
    params = dlnsim.init_params(jax.random.key(0), ModelConfig(depth=depth, width=16), 12, 24, dtype="float64")
    raw, red = dlnsim.raw_data(p), dlnsim.reduce_data(p)
    assert red.y.shape[1] == (3 if noise == 0 else 12)
    f = jax.value_and_grad(_data_loss)
    (l_raw, g_raw), (l_red, g_red) = f(params, raw, 50, "linear", "highest"), f(params, red, 50, "linear", "highest")
    np.testing.assert_allclose(l_red, l_raw, **F64)
    for a, b in zip(g_red, g_raw):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * float(jnp.abs(b).max()))


@pytest.mark.parametrize("n_test", [1, 2, 50])
def test_clean_residual_from_the_test_root_is_the_direct_one(n_test):
    """``||E y_test - x_test||^2`` from the (s, s) root equals the sum over the T test
    signals, for any map E (also with fewer test signals than s)."""
    pc = ProblemConfig(d=12, m=6, s=3, n_train=20, n_test=n_test)
    prob = dlnsim.make_problem(pc, seed=4, dtype="float64")
    e = np.random.default_rng(0).standard_normal((12, 6))
    direct = np.sum((e @ np.asarray(prob.y_test) - np.asarray(prob.x_test)) ** 2)
    got = dlnsim.problem.clean_residual_sq(jnp.asarray(e) @ prob.b - prob.u, prob)
    assert float(got) == pytest.approx(direct, rel=1e-12)


def test_noise_draws_are_independent_of_the_codes():
    """Training noise and test noise come from keys of their own: with N = T = 2000 every
    row correlation with the codes is ~N(0, 1/2000) (sd 0.022); a shared key makes it ~1."""

    def corr(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return a @ b.T / np.sqrt(np.sum(a * a, 1)[:, None] * np.sum(b * b, 1)[None])

    pc = ProblemConfig(d=20, m=10, s=3, n_train=2000, n_test=2000)
    p = dlnsim.make_problem(pc, seed=0, train_noise=0.1, dtype="float64")
    assert np.abs(corr(p.y - p.a @ p.x, p.u.T @ p.x)).max() < 0.15  # about 7 sd
    assert np.abs(corr(p.e_test, p.u.T @ p.x_test)).max() < 0.15
