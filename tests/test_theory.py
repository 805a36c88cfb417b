"""Theory tests: closed forms of SCIENCE.md section 3 against long float64 training.

conftest.py enables float64. Tolerances: float64 closed forms ~1e-12; trained limits are
limited by the number of steps (the slowest direction decays like (1 - eta lambda)^t).
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import dlnsim
from dlnsim import theory
from dlnsim.metrics import noise_error_mc

LR, WD = 0.05, 1e-2


@pytest.fixture(scope="module")
def whitened_run():
    """L = 3 on whitened codes, 40k float64 steps: E* is exact here."""
    pc = dlnsim.ProblemConfig(d=20, m=10, s=3, n_train=40, whiten=True)
    problem = dlnsim.make_problem(pc, seed=0, dtype="float64")
    tc = dlnsim.TrainConfig(dtype="float64", steps=40000, log_every=100)
    run = dlnsim.train(problem, dlnsim.ModelConfig(depth=3, width=20), tc, dlnsim.HParams(lr=LR, weight_decay=WD))
    return problem, run, tc


@pytest.mark.parametrize(
    "depth, local, glob",
    [(3, 0.4725, 0.397), (4, 0.385, 0.272), (5, 0.347, 0.210), (8, 0.303, 0.127)],
)
def test_collapse_thresholds_match_science(depth, local, glob):
    # SCIENCE.md quotes 3-4 significant digits.
    assert theory.collapse_threshold(depth) == pytest.approx(local, abs=6e-4)
    assert theory.global_collapse_threshold(depth) == pytest.approx(glob, abs=6e-4)


@pytest.mark.parametrize("depth", [3, 4, 5, 8])
def test_global_threshold_is_where_zero_ties(depth):
    """At c_g the nonzero root and E = 0 have equal objective (h-1)^2/2 + (Lc/2) h^(2/L) = 1/2."""
    c = theory.global_collapse_threshold(depth)
    h = float(theory.limit_gain(jnp.asarray(c), depth))
    assert 0.5 * (h - 1) ** 2 + 0.5 * depth * c * h ** (2 / depth) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 8])
def test_limit_gain_solves_its_equation(depth):
    c_star = theory.collapse_threshold(depth)
    c = jnp.asarray(np.linspace(1e-4, min(c_star, 2.0) * 0.999, 25))
    h = np.asarray(theory.limit_gain(c, depth))
    assert np.all((h > 0) & (h <= 1))
    # (h - 1) + c h^(2/L - 1) = 0 (L = 1: h = 1/(1+c), the same equation).
    residual = (h - 1) + np.asarray(c) * h ** (2 / depth - 1)
    np.testing.assert_allclose(residual, 0.0, atol=1e-12)
    if depth >= 3:  # past c* the nonzero root is gone: collapse to 0
        assert float(theory.limit_gain(jnp.asarray(c_star * 1.001), depth)) == 0.0


def test_whitened_limit_reached(whitened_run):
    _, run, _ = whitened_run
    assert not bool(run.diverged)
    # 40k steps: the slowest mode decays like exp(-eta lambda t) = e^-20 ~ 2e-9.
    assert float(run.metrics.limit_dist[-1]) < 1e-6
    # D3: balanced at the limit (imbalance decays like (1 - eta lambda)^(2t)).
    assert float(run.metrics.balance[-1]) < 1e-8


def test_whitened_limit_on_subspace_error(whitened_run):
    """on_err at the limit = sqrt(mean (1 - h_i)^2), h_i the limit gains (SCIENCE.md Limit)."""
    problem, run, _ = whitened_run
    sv = np.linalg.svd(np.asarray(problem.b), compute_uv=False)
    h = np.asarray(theory.limit_gain(jnp.asarray(WD / sv ** (2 / 3)), 3))
    predicted = math.sqrt(np.mean((1 - h) ** 2))
    # limit_dist < 1e-6 bounds the deviation of E, hence of on_err, at that level.
    assert float(run.metrics.on_err[-1]) == pytest.approx(predicted, rel=1e-5)


def test_d1_decay_exact_and_phase3_steps(whitened_run):
    _, run, tc = whitened_run
    w1 = np.asarray(run.metrics.w1_off_fro)
    t = np.arange(len(w1)) * tc.log_every
    # D1: ||W_1(t) P_perp|| = (1 - eta lambda)^t ||W_1(0) P_perp||, exactly. Float64 rounding
    # accumulates over 40k steps (rtol) and computing W_1 - W_1 P leaves an absolute floor
    # of ~10 eps ||W_1|| ~ 2e-14 (atol).
    predicted = w1[0] * (1 - LR * WD) ** t
    np.testing.assert_allclose(w1, predicted, rtol=1e-10, atol=1e-12 * w1[0])
    eps = 1e-3 * w1[0]
    steps = float(theory.phase3_steps(jnp.asarray(w1[0]), LR, WD, eps))
    assert steps == pytest.approx(math.log(1e-3) / math.log1p(-LR * WD), rel=1e-12)
    first = t[np.argmax(w1 <= eps)]
    assert steps <= first < steps + tc.log_every  # the first logged step past the prediction


def test_ridge_at_depth_one():
    pc = dlnsim.ProblemConfig(d=20, m=10, s=3, n_train=40)
    problem = dlnsim.make_problem(pc, seed=1, dtype="float64")
    wd = 0.1  # eta lambda = 5e-3: the slowest (off-subspace) mode reaches 1e-13 in 6k steps
    tc = dlnsim.TrainConfig(dtype="float64", steps=6000, log_every=6000)
    run = dlnsim.train(problem, dlnsim.ModelConfig(depth=1, width=20), tc, dlnsim.HParams(lr=LR, weight_decay=wd))
    e = np.asarray(run.params[0])
    ridge = np.asarray(theory.ridge(problem.x, problem.y, wd))
    assert np.linalg.norm(e - ridge) / np.linalg.norm(ridge) < 1e-8


def test_noise_error_closed_form_matches_monte_carlo():
    sigmas = (0.0, 0.1, 0.5)
    pc = dlnsim.ProblemConfig(d=20, m=10, s=3, n_train=40, n_test=20000, test_sigmas=sigmas)
    problem = dlnsim.make_problem(pc, seed=2, dtype="float64")
    tc = dlnsim.TrainConfig(dtype="float64", steps=300, log_every=300)
    model = dlnsim.ModelConfig(depth=3, width=20)
    run = dlnsim.train(problem, model, tc, dlnsim.HParams(lr=LR, weight_decay=0.0))
    closed = np.asarray(run.metrics.noise_err[-1])
    mc = np.asarray(noise_error_mc(run.params, problem, sigmas))
    assert closed[0] == pytest.approx(mc[0], rel=1e-10)  # no noise: the same number
    # 20000 x 10 noise draws: the noise energy is known to ~sqrt(2 / 2e5) = 0.3%;
    # cross terms with the clean residual add less. 2% leaves room without going blind.
    np.testing.assert_allclose(closed[1:], mc[1:], rtol=2e-2)
    assert closed[2] > 1.5 * closed[0]  # the noise term matters at sigma = 0.5
