"""``dlnsim reproduce``: every experiment end to end at smoke size, and the Figure 1 claims.

All five experiments run once per module (smoke sizes: compile time dominates) and the
tests read their outcomes; ``limit`` goes through the CLI to check the registration and
the float64 switch.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from dlnsim import ModelConfig, TrainConfig, cli, reproduce
from dlnsim.model import init_params
from dlnsim.problem import make_problem, raw_data
from dlnsim.reproduce import _common, fig1, limit
from dlnsim.step import _data_loss, uses_raw_data


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("reproduce")


@pytest.fixture(scope="module")
def outcomes(out):
    res = {name: reproduce.run(name, out, smoke=True) for name in reproduce.NAMES if name != "limit"}
    assert cli.main(["reproduce", "limit", "--smoke", "-o", str(out)]) == 0
    res["limit"] = limit.run(_common.Context(out, smoke=True))  # reloads the finished results file
    return res


@pytest.mark.parametrize("name", reproduce.NAMES)
def test_experiment_writes_results_pictures_report(outcomes, out, name):
    o = outcomes[name]
    assert o.report == out / f"{name}_smoke.md"
    text = o.report.read_text()
    assert text.startswith("# ") and "| " in text and "Sizes: d=" in text
    for png in o.pictures:
        assert png.is_file() and png.stat().st_size > 1000
        assert f"]({png.name})" in text
    assert (out / f"{name if name != 'fig1' else 'fig1_linear'}_smoke.nc").is_file()


def test_reports_contain_comparison_numbers(outcomes):
    f = outcomes["fig1"]
    gap = fig1.margins(
        fig1.final_noise_err(f.data["linear"]), fig1.predicted_noise_err(f.data["linear"], f.data["cfg"])
    )
    text = f.report.read_text()
    assert (
        f"by {_common.fmt(gap['measured'].isel(sigma=-1))} (measured) vs {_common.fmt(gap['predicted'].isel(sigma=-1))}"
        in text
    )
    nums = outcomes["phases"].data["numbers"]
    w = nums["weight_decay"].values[-1]
    row = f"| {w:g} | {_common.fmt(nums['steps_phase1'].sel(weight_decay=w).median('seed'))} |"
    assert row in outcomes["phases"].report.read_text()
    steps = outcomes["depth"].data["steps"]
    assert "D2 (width 200)" in outcomes["depth"].report.read_text()
    assert np.isfinite(steps).all()  # every smoke run reaches 10% error
    nums = outcomes["collapse"].data["numbers"]
    cell = f"{_common.fmt(nums['measured'].isel(depth=0, weight_decay=-1).median('seed'))} / {_common.fmt(nums['predicted'].isel(depth=0, weight_decay=-1).median('seed'))}"
    assert cell in outcomes["collapse"].report.read_text()
    assert float(nums["predicted"].isel(weight_decay=-1).max()) == 1.0  # lambda = 1 is past c*(3): collapse
    final = outcomes["limit"].data["numbers"]["final"]
    assert _common.fmt(final.median("seed").item()) in outcomes["limit"].report.read_text()


def test_fig1_weight_decay_lowers_noisy_error_by_the_d4_margin(outcomes):
    f = outcomes["fig1"]
    meas = fig1.final_noise_err(f.data["linear"])
    gap = fig1.margins(meas, fig1.predicted_noise_err(f.data["linear"], f.data["cfg"])).sel(sigma=slice(0.1, None))
    assert (gap["predicted"] > 0).all()
    # 10%: the lambda = 0 prediction freezes E P_perp at its init although the layers above W_1 still
    # move (a few % smaller at the end), and lambda > 0 uses the converged limit with kappa = 1 for
    # unwhitened codes; measured ratios are 0.95-0.97 at these sizes.
    assert (gap["measured"] >= 0.9 * gap["predicted"]).all(), (gap["measured"].values, gap["predicted"].values)


def test_fig1_linear_error_agrees_with_d4(outcomes):
    f = outcomes["fig1"]
    mc = f.data["mc"].sel(sigma=slice(0.05, None))
    # D4 identity vs Monte Carlo on one fixed draw of T x m noise entries: the draw's
    # ||E e||^2 deviates from T ||E||_F^2 by ~sqrt(2 / (T r_eff)) (T = 500): 3% bounds it.
    np.testing.assert_allclose(mc["monte_carlo"], mc["closed_form"], rtol=3e-2)
    meas = fig1.final_noise_err(f.data["linear"]).median("seed")
    pred = fig1.predicted_noise_err(f.data["linear"], f.data["cfg"]).median("seed")
    # The predicted curves (see predicted_noise_err): 5% at lambda = 0 (E P_perp taken frozen at
    # init), 15% with weight decay at sigma >= 0.1 (kappa = 1 for unwhitened codes, and the
    # smoke run's off-subspace part has decayed only to (1 - eta lambda)^600 ~ 0.2 of its start).
    np.testing.assert_allclose(
        meas.isel(weight_decay=0).sel(sigma=slice(0.05, None)),
        pred.isel(weight_decay=0).sel(sigma=slice(0.05, None)),
        rtol=5e-2,
    )
    np.testing.assert_allclose(
        meas.isel(weight_decay=-1).sel(sigma=slice(0.1, None)),
        pred.isel(weight_decay=-1).sel(sigma=slice(0.1, None)),
        rtol=0.15,
    )


def test_fig1_relu_uses_raw_data_and_is_labelled(outcomes):
    f = outcomes["fig1"]
    relu, cfg = f.data["relu"], f.data["cfg"]
    assert relu["activation"].item() == "relu" and f.data["linear"]["activation"].item() == "linear"
    assert uses_raw_data(ModelConfig(activation="relu"), cfg.train)
    assert 'activation = "relu"' in relu.attrs["config_toml"]
    assert relu["on_err"].isnull().all()  # metrics that need E are NaN for ReLU
    assert np.isfinite(relu["noise_err"]).all()  # Monte Carlo errors are measured
    # Same teachers and data: the two panels start from the same initial clean error scale.
    assert relu.sizes == f.data["linear"].sizes


def test_relu_gradient_matches_finite_differences():
    assert jax.config.jax_enable_x64  # conftest: float64 for a 1e-7-accurate difference quotient
    problem = make_problem(
        _common.config(_common.Context(None, smoke=True), "fig1", fig1.SMOKE).problem, dtype="float64"
    )
    data = raw_data(problem)
    model = ModelConfig(depth=3, width=24, activation="relu")
    params = init_params(jr.key(3), model, problem.cfg.m, problem.cfg.d, dtype="float64")
    loss = lambda p: _data_loss(p, data, problem.cfg.n_train, "relu", "highest")  # noqa: E731
    grads = jax.grad(loss)(params)
    for k in range(3):
        v = tuple(jr.normal(jr.fold_in(jr.key(k), i), w.shape, jnp.float64) for i, w in enumerate(params))
        h = 1e-6
        plus = loss(tuple(w + h * d for w, d in zip(params, v)))
        minus = loss(tuple(w - h * d for w, d in zip(params, v)))
        fd = (plus - minus) / (2 * h)
        exact = sum(jnp.sum(g * d) for g, d in zip(grads, v))
        # Central differences in float64: O(h^2) truncation + eps/h rounding ~1e-9 relative,
        # unless a ReLU kink lies within h (measure zero for Gaussian data).
        np.testing.assert_allclose(float(fd), float(exact), rtol=1e-6)
    assert TrainConfig().data == "reduced" and uses_raw_data(model, TrainConfig())
