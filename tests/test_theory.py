"""Theory tests: closed forms of SCIENCE.md section 3 against long float64 training.

conftest.py enables float64. Tolerances: float64 closed forms ~1e-12; trained limits are
limited by the number of steps (the slowest direction decays like (1 - eta lambda)^t).
"""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import dlnsim
from dlnsim import theory
from dlnsim.metrics import noise_error_mc
from dlnsim.training import init_key

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

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
    # The largest root: the left side is positive everywhere in (h, 1] (L >= 3 has a smaller one).
    above = h[:, None] + (1 - h[:, None]) * np.linspace(1e-3, 1, 50)
    assert np.all((above - 1) + np.asarray(c)[:, None] * above ** (2 / depth - 1) > 0)
    if depth >= 3:  # past c* the nonzero root is gone: collapse to 0
        assert float(theory.limit_gain(jnp.asarray(c_star * 1.001), depth)) == 0.0
    assert float(theory.limit_gain(jnp.asarray(0.0), depth)) == 1.0  # no weight decay: h = 1 (exact fit)


def _e_star(problem, wd, depth):
    """E* = U V diag(h / sigma) Q^T from numpy's SVD of B (not through theory.limit_map)."""
    q, sv, vt = np.linalg.svd(np.asarray(problem.b), full_matrices=False)
    h = np.asarray(theory.limit_gain(jnp.asarray(wd / sv ** (2 / depth)), depth))
    return np.asarray(problem.u) @ vt.T @ np.diag(h / sv) @ q.T


def _e2e(params):
    e = np.asarray(params[0])
    for w in params[1:]:
        e = np.asarray(w) @ e
    return e


def test_whitened_limit_reached(whitened_run):
    _, run, _ = whitened_run
    assert not bool(run.diverged)
    # 40k steps: the slowest mode decays like exp(-eta lambda t) = e^-20 ~ 2e-9 (measured 1.7e-9).
    assert float(run.metrics.limit_dist[-1]) < 1e-8
    # D3: balanced at the limit (imbalance decays like (1 - eta lambda)^(2t)).
    assert float(run.metrics.balance[-1]) < 1e-8


def test_limit_dist_is_the_relative_distance_to_e_star(whitened_run):
    """limit_dist = ||E - E*||_F / ||E*||_F (SCIENCE.md section 4), against numpy at the
    initial map and at the trained one."""
    problem, run, tc = whitened_run
    e_star = _e_star(problem, WD, 3)
    key = init_key(0)
    e0 = _e2e(dlnsim.init_params(key, dlnsim.ModelConfig(depth=3, width=20), 10, 20, dtype="float64"))
    dist = lambda e: np.linalg.norm(e - e_star) / np.linalg.norm(e_star)  # noqa: E731
    assert float(run.metrics.limit_dist[0]) == pytest.approx(dist(e0), rel=1e-10)
    # At the limit E - E* is ~4e-9 of O(1) entries: the difference keeps ~7 digits.
    assert float(run.metrics.limit_dist[-1]) == pytest.approx(dist(_e2e(run.params)), rel=1e-4)


def test_sum_loss_limit_uses_kappa_n():
    """Sum loss: E* solves the equation with kappa N (SCIENCE.md Limit). GD on the sum loss
    with step eta/N and decay N lambda is GD on the mean loss with (eta, lambda), so both runs
    follow one trajectory and must report the same distance to their limits at every step."""
    pc = dlnsim.ProblemConfig(d=20, m=10, s=3, n_train=40, whiten=True)
    problem = dlnsim.make_problem(pc, seed=0, dtype="float64")
    model = dlnsim.ModelConfig(depth=3, width=20)

    def run(loss, lr, wd):
        tc = dlnsim.TrainConfig(dtype="float64", steps=2000, log_every=250, loss=loss)
        return dlnsim.train(problem, model, tc, dlnsim.HParams(lr=lr, weight_decay=wd))

    mean, total = run("mean", LR, WD), run("sum", LR / 40, WD * 40)
    dist = np.asarray(mean.metrics.limit_dist)
    assert dist[-1] < 0.5 * dist[0]  # on its way to E*, so a wrong E* would show
    np.testing.assert_allclose(total.metrics.limit_dist, dist, rtol=1e-8)  # 2000 steps of rounding


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


def test_phase3_steps_at_the_edges():
    """No decay: never (inf); starting at or under eps (init scale 0: 0 <= 0): no steps, and
    no floating-point warning from 0 / 0."""
    w0, eps = np.array([2.0, 2.0, 0.5, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    lr, wd = np.array([0.1, 0.1, 0.1, 0.1, 0.1]), np.array([0.5, 0.0, 0.5, 0.5, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps = np.asarray(theory.phase3_steps(w0, lr, wd, eps))
    np.testing.assert_allclose(steps, [math.log(0.5) / math.log1p(-0.05), np.inf, 0, 0, 0], rtol=1e-6)


def test_ridge_at_depth_one():
    pc = dlnsim.ProblemConfig(d=20, m=10, s=3, n_train=40)
    problem = dlnsim.make_problem(pc, seed=1, dtype="float64")
    wd = 0.1  # eta lambda = 5e-3: the slowest (off-subspace) mode reaches 1e-13 in 6k steps
    tc = dlnsim.TrainConfig(dtype="float64", steps=6000, log_every=6000)
    run = dlnsim.train(problem, dlnsim.ModelConfig(depth=1, width=20), tc, dlnsim.HParams(lr=LR, weight_decay=wd))
    e = np.asarray(run.params[0])
    ridge = np.asarray(theory.ridge(problem.x, problem.y, wd))
    assert np.linalg.norm(e - ridge) / np.linalg.norm(ridge) < 1e-8


def test_ridge_closed_form_for_both_losses():
    """X Y^T (Y Y^T + n lambda I)^-1, n = N for the mean loss and 1 for the sum loss (whose
    gradient has no 1/N), against numpy."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 40)), rng.standard_normal((4, 40))
    for loss, n in (("mean", 40), ("sum", 1)):
        want = x @ y.T @ np.linalg.inv(y @ y.T + n * 0.3 * np.eye(4))
        np.testing.assert_allclose(theory.ridge(jnp.asarray(x), jnp.asarray(y), 0.3, loss), want, rtol=1e-10)


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


def test_d2_deeper_networks_fit_faster():
    """D2: steps to 10% on-subspace error fall with depth at fixed eta (SCIENCE.md's setting,
    8 teachers and inits). Single runs scatter by +-25% and L = 5 and 8 overlap, so the test
    compares medians over seeds: strictly fewer steps from L = 2 to 3 to 5, L = 8 below L = 3,
    and every median within 25% of SCIENCE.md's measurement (measured: 50 / 41 / 30 / 31)."""
    from dlnsim import reduce as R

    science = {2: 52, 3: 41, 5: 33, 8: 28}
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=100, m=50, s=5, n_train=50),
        model=dlnsim.ModelConfig(width=200),
        train=dlnsim.TrainConfig(steps=70, log_every=2, balance=False),  # Phase I to 2 steps; all < 70
        hparams={"lr": 0.02, "weight_decay": 1e-3},
        grid={"depth": list(science), "seed": list(range(8))},
        teacher_per_seed=True,
    )
    steps = R.per_run(dlnsim.sweep(cfg)).steps_phase1.median("seed").values
    assert steps[0] > steps[1] > steps[2] and steps[3] < steps[1]
    np.testing.assert_allclose(steps, list(science.values()), rtol=0.25)


def test_collapse_at_depth_three():
    """Collapse threshold (SCIENCE.md section 3), simulated at L = 3: with every
    c_i = lambda / sigma_i^(2/3) below the global threshold GD reaches the nonzero E*; with
    every c_i above c* it collapses to E = 0 (on-subspace error 1, limit_dist = ||E||_F)."""
    pc = dlnsim.ProblemConfig(d=20, m=10, s=3, n_train=40, whiten=True)
    problem = dlnsim.make_problem(pc, seed=0, dtype="float64")
    sv = np.linalg.svd(np.asarray(problem.b), compute_uv=False)
    below = 0.8 * theory.global_collapse_threshold(3) * sv.min() ** (2 / 3)
    above = 1.2 * theory.collapse_threshold(3) * sv.max() ** (2 / 3)
    tc = dlnsim.TrainConfig(dtype="float64", steps=3000, log_every=3000)

    def final(wd):
        run = dlnsim.train(problem, dlnsim.ModelConfig(depth=3, width=20), tc, dlnsim.HParams(lr=LR, weight_decay=wd))
        return {k: float(getattr(run.metrics, k)[-1]) for k in ("limit_dist", "on_err", "e2e_fro")}

    kept, gone = final(below), final(above)
    # eta lambda = 9e-3: 3000 steps take the slowest mode to ~e^-27 (measured 2e-12).
    assert kept["limit_dist"] < 1e-9 and kept["e2e_fro"] > 1.0
    h = np.asarray(theory.limit_gain(jnp.asarray(below / sv ** (2 / 3)), 3))
    assert kept["on_err"] == pytest.approx(math.sqrt(np.mean((1 - h) ** 2)), rel=1e-8)
    assert gone["e2e_fro"] < 1e-12 and gone["on_err"] == pytest.approx(1.0, abs=1e-12)
    assert gone["limit_dist"] == gone["e2e_fro"]  # E* = 0: the distance is ||E||_F


@pytest.mark.slow  # 6 networks at the paper's sizes x 3000 steps: 58 s on 2 EPYC cores
def test_d4_table_at_figure1_sizes():
    """SCIENCE.md D4: relative test error at Figure-1 sizes (N = 100, eta = 0.05, 3000 steps),
    lambda = 0: 0 / 0.59 / 2.93 and lambda = 0.01: 0.011 / 0.10 / 0.51 at sigma = 0 / 0.1 / 0.5.
    Medians over 3 teachers; measured 1.4-4.1% from the table (float32), so 6% holds them."""
    from pathlib import Path

    from dlnsim.configfile import load_config

    cfg = load_config(Path(dlnsim.__file__).parent / "reproduce" / "experiments" / "fig1_d4.toml")
    err = dlnsim.sweep(cfg).noise_err.isel(step=-1).median("seed").transpose("weight_decay", "sigma").values
    assert err[0, 0] < 1e-5  # no decay, no noise: exact on the subspace (float32 floor)
    np.testing.assert_allclose(err[0, 1:], [0.59, 2.93], rtol=0.06)
    np.testing.assert_allclose(err[1], [0.011, 0.10, 0.51], rtol=0.06)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_momentum_reaches_e_star_and_adam_hovers_near_it(depth):
    """E* is a critical point of F, so every optimiser whose decay is F's gradient stops there
    (theory.LIMIT_OPTIMIZERS). Heavy-ball momentum converges to it at L = 1, 2, 3 (measured
    1.3e-9 to 2.5e-9 after 20k steps); Adam at a constant step hovers about it (measured
    4e-4 to 4e-3 from 2 at the start), the reason limit_dist is recorded for it too."""
    pc = dlnsim.ProblemConfig(d=20, m=10, s=3, n_train=40, whiten=True)
    problem = dlnsim.make_problem(pc, seed=0, dtype="float64")
    model = dlnsim.ModelConfig(depth=depth, width=20)

    def final(optimizer, lr):
        tc = dlnsim.TrainConfig(dtype="float64", steps=20000, log_every=20000, optimizer=optimizer)
        run = dlnsim.train(problem, model, tc, dlnsim.HParams(lr=lr, weight_decay=WD, momentum=0.9))
        return float(run.metrics.limit_dist[-1])

    assert final("momentum", 0.01) < 1e-8
    assert final("adam", 0.003) < 1e-2
