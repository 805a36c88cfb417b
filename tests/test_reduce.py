"""Reductions: thresholds and rate fits on synthetic curves, seed statistics, the table."""

import math

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim import reduce as R

STEPS = np.arange(0, 1001, 10)


def _synthetic(lr=(0.02, 0.05), wd=(0.0, 1e-2, 0.1), seeds=4):
    """w1_off_fro and off_fro decaying exactly at the D1 rate; known on_err curves."""
    lr_, wd_ = np.asarray(lr)[:, None, None], np.asarray(wd)[None, :, None]
    scale = 1.0 + np.arange(seeds)[:, None, None, None]  # (seed, lr, wd, step)
    decay = (1 - lr_ * wd_)[None] ** STEPS
    w1 = scale * decay
    on = np.broadcast_to(np.exp(-STEPS / 100.0), w1.shape)  # <= 0.1 from t = 100 ln 10 = 230.3
    dims = ("seed", "lr", "weight_decay", "step")
    return xr.Dataset(
        {
            "w1_off_fro": (dims, w1),
            "off_fro": (dims, 5.0 * w1),
            "on_err": (dims, on.copy()),
            "diverged": (dims[:-1], np.zeros(w1.shape[:-1], bool)),
        },
        coords={"seed": np.arange(seeds), "lr": list(lr), "weight_decay": list(wd), "step": STEPS},
    )


def test_rate_fit_recovers_exponential():
    ds = _synthetic()
    red = R.reduce(ds)
    lr, wd = np.meshgrid(ds.lr.values, ds.weight_decay.values, indexing="ij")
    expected = np.log1p(-lr * wd)
    for name in ("rate_w1_off", "rate_off", "pred_rate"):
        np.testing.assert_allclose(red[name].sel(stat="median").values, expected, rtol=1e-10, atol=1e-15)
    ratio = red["rate_ratio_w1_off"].sel(stat="mean").values
    np.testing.assert_allclose(ratio[:, 1:], 1.0, rtol=1e-10)
    assert np.all(np.isnan(ratio[:, 0]))  # no weight decay: no predicted rate to compare with
    # ... even when the measured rate is not exactly 0 (a drift would give +-inf over pred = 0).
    drift = ds.assign(w1_off_fro=ds.w1_off_fro * np.exp(-1e-4 * ds.step))
    assert np.all(np.isnan(R.per_run(drift).rate_ratio_w1_off.sel(weight_decay=0.0).values))


def test_imbalance_rate_leaves_out_the_rounding_floor():
    """D3: the imbalance decays like (1 - eta lambda)^(2t) (rate ratio 2) until float32
    rounding holds it at ~1e-4 of its start (lambda = 0.1 from t = 921); the fit must not
    see that plateau, which would pull the ratio of the last half's fit below 2."""
    ds = _synthetic(lr=(0.05,), wd=(0.0, 0.01, 0.1))
    start = 0.09 * (1 - ds.lr * ds.weight_decay) ** (2 * ds.step)
    ds["balance"] = (0 * ds.w1_off_fro + np.maximum(start, 0.09 * 1e-4)).astype(np.float32)
    ratio = R.per_run(ds).rate_ratio_balance.values
    np.testing.assert_allclose(ratio[..., 1:], 2.0, rtol=1e-4)  # float32 logs of the values
    assert np.all(np.isnan(ratio[..., 0]))


def test_rate_fit_windows_and_floor():
    t = STEPS.astype(float)
    clean = 2.0 * np.exp(-0.02 * t)
    floored = np.maximum(clean, 1e-6 * 2.0)  # a float32-like rounding floor from t ~ 690
    assert R.fit_rate(clean, t) == pytest.approx(-0.02, rel=1e-10)
    assert R.fit_rate(floored, t, floor=1e-4) == pytest.approx(-0.02, rel=1e-10)
    assert abs(R.fit_rate(floored, t)) < 0.01  # without the floor, the plateau dominates
    kink = np.where(t < 500, np.exp(-0.01 * t), np.exp(-5 - 0.03 * (t - 500)))
    assert R.fit_rate(kink, t, window=(0, 490)) == pytest.approx(-0.01, rel=1e-10)
    assert R.fit_rate(kink, t, window=10) == pytest.approx(-0.03, rel=1e-10)
    # Both ends of a window count: the last 2 points, steps 500 to 510 (one point alone gives NaN).
    assert R.fit_rate(kink, t, window=2) == pytest.approx(-0.03, rel=1e-10)
    assert R.fit_rate(kink, t, window=(500, 510)) == pytest.approx(-0.03, rel=1e-10)
    assert math.isnan(R.fit_rate(np.zeros_like(t), t))


def test_thresholds_on_known_curves():
    ds = _synthetic(lr=(0.05,), wd=(0.0, 0.1))
    ds["off_fro"] = ds["off_fro"] * np.exp(-ds["step"] / 250.0)  # E P_perp: the layers above W_1 shrink too
    runs = R.per_run(ds)
    assert np.all(runs.steps_phase1.values == 240.0)  # first logged step past 230.3
    # Relative eps3 = 1e-2 x initial: W_1 P_perp, (1 - 0.005)^t <= 1e-2 from t = 918.7, never
    # without decay; E P_perp, (1 - 0.005)^t e^(-t/250) <= 1e-2 from t = 511.0, t = 1151.3 without.
    p3, p3_w1 = runs.steps_phase3.values, runs.steps_phase3_w1.values
    assert np.all(p3_w1[..., 1] == 920.0) and np.all(np.isnan(p3_w1[..., 0]))
    assert np.all(p3[..., 1] == 520.0) and np.all(np.isnan(p3[..., 0]))
    pred = runs.pred_steps_phase3.values[..., 1]  # the D1 time of W_1 P_perp, whatever E P_perp does
    np.testing.assert_allclose(pred, math.log(1e-2) / math.log1p(-0.005), rtol=1e-10)
    assert np.all(np.isinf(runs.pred_steps_phase3.values[..., 0]))
    # Absolute eps3, and a Phase I threshold that is never reached.
    runs = R.per_run(ds, eps1=1e-9, eps3=0.5)  # seed 0: (1-0.005)^t <= 0.5 from t = 138.3
    assert np.all(np.isnan(runs.steps_phase1.values))
    assert runs.steps_phase3_w1.sel(seed=0).values[0, 1] == 140.0
    assert runs.pred_steps_phase3.sel(seed=0).values[0, 1] == pytest.approx(math.log(0.5) / math.log1p(-0.005))
    red = R.reduce(ds, eps1=1e-9)
    assert np.all(red.steps_phase1.sel(stat="count").values == 0)


def test_diverged_runs_masked_and_counted():
    ds = _synthetic(lr=(0.05,), wd=(0.1,), seeds=5)
    ds["on_err"][dict(seed=1)] = 1e30  # a diverged, frozen run carries garbage
    ds["diverged"][dict(seed=1)] = True
    ds["diverged_at"] = xr.where(ds["diverged"], 123, -1)
    red = R.reduce(ds)
    assert int(red.n_diverged.item()) == 1 and int(red.n_runs.item()) == 5
    final = red.final_on_err.sel(lr=0.05, weight_decay=0.1)
    assert float(final.sel(stat="count")) == 4
    assert float(final.sel(stat="mean")) == pytest.approx(math.exp(-10.0), rel=1e-12)
    assert float(final.sel(stat="ci95_hi")) == pytest.approx(math.exp(-10.0), rel=1e-12)  # zero spread
    # Predictions are not masked: the theory does not depend on the run having diverged.
    for name in ("pred_rate", "pred_steps_phase3", "eps3", "eps3_w1"):
        assert float(red[name].sel(stat="count").item()) == 5, name
    # A run that diverged at once (NaN initial loss, e.g. init_scale = 1e30) was computed
    # too; a shard file's runs of other slices are NaN and not diverged.
    ds["loss_data"] = xr.ones_like(ds["on_err"])
    ds["loss_data"][dict(seed=1)] = np.nan
    ds["loss_data"][dict(seed=4)] = np.nan  # another slice's run
    red = R.reduce(ds)
    assert int(red.n_diverged.item()) == 1 and int(red.n_runs.item()) == 4


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's all-NaN and inf cells
def test_seed_statistics_equal_xarrays_own_reductions():
    """NaN (a threshold never reached, a masked run), inf, an all-NaN cell, a masked value and a
    non-dimension coordinate: the same numbers, dims, coordinates and attributes as xarray's
    nan-aware reductions (which the NumPy version replaced for speed)."""
    from dlnsim.reduce.seeds import STATS, _seed_stats, t975

    a = np.array([[1.0, 2.0, np.inf, 5.0], [np.nan, 3.0, np.inf, 2.0], [4.0, np.nan, np.inf, 8.0]])
    a = np.stack([a, a * 2.0])  # (depth, seed, lr)
    da = xr.DataArray(
        a.transpose(1, 0, 2), dims=("seed", "depth", "lr"), name="x", attrs={"description": "d"},
        coords={"seed": [0, 1, 2], "depth": [1, 2], "lr": [0.1, 0.2, 0.3, 0.4], "m": ("depth", [5, 6])},
    )  # fmt: skip
    da[:, 0, 3] = np.nan  # an all-NaN cell
    valid = xr.ones_like(da, dtype=bool)
    valid[2, 1, 0] = False  # a diverged run
    got = _seed_stats(da, valid)
    ref = da.where(valid)
    count = ref.count("seed")
    half = xr.apply_ufunc(t975, count - 1) * ref.std("seed", ddof=1) / np.sqrt(count)
    parts = [
        ref.mean("seed"), ref.std("seed", ddof=1), ref.median("seed"),
        ref.quantile(0.25, "seed").drop_vars("quantile"), ref.quantile(0.75, "seed").drop_vars("quantile"),
        ref.mean("seed") - half, ref.mean("seed") + half, count.astype(float),
    ]  # fmt: skip
    want = xr.concat(parts, dim=xr.DataArray(list(STATS), dims="stat", name="stat"))
    want = want.rename("x").assign_attrs(description="d")
    xr.testing.assert_identical(got, want)
    assert float(got.sel(stat="median", depth=1, lr=0.3)) == np.inf


def test_seed_statistics_and_t_quantiles():
    values = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    ds = xr.Dataset(
        {
            "w1_off_fro": (("seed", "step"), np.exp(-np.outer(values, STEPS) * 1e-3)),
            "diverged": ("seed", np.zeros(5, bool)),
        },
        coords={"seed": np.arange(5), "step": STEPS},
    )
    rate = R.reduce(ds).rate_w1_off
    r = -values * 1e-3
    half = 2.776445105 * r.std(ddof=1) / math.sqrt(5)
    assert float(rate.sel(stat="median")) == pytest.approx(np.median(r))
    assert float(rate.sel(stat="q25")) == pytest.approx(np.quantile(r, 0.25))
    assert float(rate.sel(stat="q75")) == pytest.approx(np.quantile(r, 0.75))
    assert float(rate.sel(stat="ci95_lo")) == pytest.approx(r.mean() - half)
    assert float(rate.sel(stat="ci95_hi")) == pytest.approx(r.mean() + half)
    stats = pytest.importorskip("scipy.stats")
    df = np.array([1, 2, 7, 30, 31, 45, 100, 1000])
    np.testing.assert_allclose(R.t975(df), stats.t.ppf(0.975, df), rtol=1e-6)
    table = np.arange(1, 31)  # the table's 10 digits up to df = 30 (the expansion is off by ~1e-6 there)
    np.testing.assert_allclose(R.t975(table), stats.t.ppf(0.975, table), rtol=1e-8)
    assert np.isnan(R.t975(0))


def test_no_seed_axis_and_callable_module():
    ds = _synthetic(seeds=1).isel(seed=0, drop=True)
    red = dlnsim.reduce(ds)  # the module is callable
    assert red.rate_w1_off.dims == ("stat", "lr", "weight_decay")
    assert np.all(red.n_runs.values == 1)
    assert np.all(np.isnan(red.rate_w1_off.sel(stat="ci95_lo").values))  # one value: no interval
    table = dlnsim.reduce.summary_table(ds)
    assert len([ln for ln in table.splitlines() if ln.strip().startswith(("0.02", "0.05"))]) == 6


def test_real_sweep_d1_ratio_theory_columns_and_table():
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=16, m=8, s=2, n_train=20, whiten=True),
        model=dlnsim.ModelConfig(depth=2, width=12),
        train=dlnsim.TrainConfig(steps=600, log_every=20),
        hparams={"lr": 0.05},
        grid={"weight_decay": [0.0, 0.05, 2.0], "seed": [0, 1]},
    )
    ds = dlnsim.sweep(cfg)
    red = dlnsim.reduce(ds)
    # D1 is exact; float32 rounding over 600 steps stays far below 1e-3.
    np.testing.assert_allclose(red.rate_ratio_w1_off.sel(stat="median").values[1:], 1.0, rtol=1e-3)
    # ... so W_1 P_perp reaches 1% of its start at the first log point past the D1 time
    # (lambda = 2: 43.7 steps; float32 would have to move it by 2e-2 to change the step).
    pred = float(red.pred_steps_phase3.sel(stat="median")[2])
    assert pred == pytest.approx(math.log(1e-2) / math.log1p(-0.1))
    np.testing.assert_array_equal(red.steps_phase3_w1.sel(stat="q25")[2], 20 * math.ceil(pred / 20))
    np.testing.assert_array_equal(red.steps_phase3_w1.sel(stat="q75")[2], 20 * math.ceil(pred / 20))
    # L = 2 collapses past c = 1 (c ~ lambda / sigma(B)): lambda = 2 is past it.
    ratio = red.collapse_ratio.sel(stat="median").values
    assert ratio[0] == 0 and 0 < ratio[1] < 1 < ratio[2]
    on_star = red.pred_on_err_limit.sel(stat="median").values
    assert on_star[0] == 0 and on_star[2] == 1  # no decay: exact fit; collapse: E = 0
    assert float(red.final_on_err.sel(stat="median")[2]) == pytest.approx(1.0, abs=1e-3)
    # In between, from numpy's singular values of the shared teacher's B: L = 2 has the
    # closed form h_i = 1 - c_i, c_i = lambda / sigma_i, so the limit's on_err is
    # sqrt(mean c_i^2), and c/c* is lambda / median(sigma) (c* = 1).
    sv = np.linalg.svd(np.asarray(dlnsim.make_problem(cfg.problem, seed=0).b, float), compute_uv=False)
    assert on_star[1] == pytest.approx(math.sqrt(np.mean((0.05 / sv) ** 2)), rel=1e-5)
    np.testing.assert_allclose(ratio, np.array([0.0, 0.05, 2.0]) / np.median(sv), rtol=1e-5)
    # Past the collapse E* = 0 and limit_dist is the distance ||E||_F itself.
    collapsed = ds.sel(weight_decay=2.0)
    np.testing.assert_allclose(collapsed.limit_dist, collapsed.e2e_fro, rtol=1e-6)
    table = dlnsim.summary_table(ds)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["weight_decay", "on_err", "off_fro"] and "c/c*" in lines[0]
    assert len(lines) == 2 + 3 + 4 and all(ln.rstrip().endswith("0/2") for ln in lines[2:5])


def test_adamw_sweep_gets_no_d1_or_limit_predictions():
    """adamw: neither D1 nor the closed-form limit holds (test_train shows both), so the rate,
    Phase III, limit and collapse predictions are NaN, and so is limit_dist."""
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=16, m=8, s=2, n_train=20, whiten=True),
        model=dlnsim.ModelConfig(depth=2, width=12),
        train=dlnsim.TrainConfig(steps=100, log_every=50, optimizer="adamw"),
        hparams={"lr": 0.01, "weight_decay": 0.05},
        grid={"seed": [0, 1]},
    )
    ds = dlnsim.sweep(cfg)
    runs = R.per_run(ds)
    for name in ("pred_rate", "pred_steps_phase3", "pred_on_err_limit", "collapse_ratio", "rate_ratio_w1_off"):
        assert np.all(np.isnan(runs[name].values)), name
    assert np.all(np.isnan(ds.limit_dist.values))
    assert np.all(np.isfinite(runs.rate_w1_off.values))  # the measured rate is still there


def test_noisy_training_data_gets_no_d1_prediction():
    """With training noise Y^T P_perp != 0 and D1 does not hold: no D1 rate, ratio or Phase
    III time for those runs (the noise-free runs keep theirs), and no collapse ratio. The
    limit's on_err* needs whitened codes too: NaN for every run of this teacher."""
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=16, m=8, s=2, n_train=20),
        model=dlnsim.ModelConfig(depth=2, width=12),
        train=dlnsim.TrainConfig(steps=100, log_every=50),
        hparams={"lr": 0.05, "weight_decay": 0.1},
        grid={"train_noise": [0.0, 0.1], "seed": [0, 1]},
    )
    runs = R.per_run(dlnsim.sweep(cfg))
    for name in ("pred_rate", "pred_steps_phase3", "rate_ratio_w1_off"):
        assert np.all(np.isfinite(runs[name].sel(train_noise=0.0))), name
        assert np.all(np.isnan(runs[name].sel(train_noise=0.1))), name
    assert np.all(np.isfinite(runs.collapse_ratio.sel(train_noise=0.0)))
    assert np.all(np.isnan(runs.collapse_ratio.sel(train_noise=0.1)))
    assert np.all(np.isnan(runs.pred_on_err_limit))


def test_reduce_inputs_are_checked():
    ds = _synthetic()
    red = R.reduce(ds)
    assert "step" not in red.coords  # no stray step = 0 label on final values
    with pytest.raises(ValueError, match="results of dlnsim.sweep.*without one .a reduction"):
        R.reduce(red)
    with pytest.raises(ValueError, match="results of dlnsim.sweep.*no step axis"):
        R.reduce(R.per_run(ds))  # per-run numbers: 'diverged', but no histories
    for kw, field in (({"window": "last"}, "window"), ({"window": 1}, "window"), ({"eps1": -1.0}, "eps1")):
        with pytest.raises(ValueError, match=f"{field} = "):
            R.reduce(ds, **kw)
    with pytest.raises(ValueError, match="eps3 = 0"):
        R.per_run(ds, eps3=0)


def test_relu_sweep_table_shows_the_test_error():
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=16, m=8, s=2, n_train=20),
        model=dlnsim.ModelConfig(depth=2, width=12, activation="relu"),
        train=dlnsim.TrainConfig(steps=100, log_every=50),
        grid={"seed": [0, 1]},
    )
    ds = dlnsim.sweep(cfg)
    lines = dlnsim.summary_table(ds).splitlines()
    assert lines[0].split()[0] == "test_err"
    assert float(lines[2].split()[0]) == pytest.approx(float(ds.test_err.isel(step=-1).median("seed")), rel=1e-2)


def test_summary_table_as_csv_and_markdown():
    """CSV: full-precision medians under reduce's names (empty where undefined), diverged and
    runs apart; Markdown: a pipe table with the text table's cells and the notes."""
    import csv
    import io

    ds = _synthetic(seeds=3)
    ds["diverged"][dict(seed=0, lr=0, weight_decay=0)] = True
    red = R.reduce(ds)
    rows = list(csv.DictReader(io.StringIO(R.summary_table(ds, "csv"))))
    assert len(rows) == 6 and list(rows[0])[:3] == ["lr", "weight_decay", "final_on_err_median"]
    med = red.rate_ratio_w1_off.sel(stat="median")
    for row in rows:
        cell = med.sel(lr=float(row["lr"]), weight_decay=float(row["weight_decay"]))
        assert row["rate_ratio_w1_off_median"] == ("" if np.isnan(cell) else repr(float(cell)))
    assert (rows[0]["diverged"], rows[0]["runs"]) == ("1", "3")
    text, md = R.summary_table(ds).splitlines(), R.summary_table(ds, "markdown").splitlines()
    assert md[0].split(" | ")[0] == "| lr" and len(md) == 2 + 6 + 1 + 4
    assert [c.strip() for c in md[2].strip("|").split("|")] == text[2].split()  # the same cells
    cells = text[2].split()  # lr = 0.02, weight_decay = 0: 3 digits; no D1 rate ratio, "-"
    assert md[1] == "|" + "---|" * len(cells)  # one delimiter per column, or no Markdown table
    assert cells[2] == f"{float(red.final_on_err.sel(stat='median')[0, 0]):.3g}" and cells[-2] == "-"
    with pytest.raises(ValueError, match="fmt = 'html' is invalid"):
        R.summary_table(ds, "html")


def test_summary_table_shows_partly_defined_theory_columns_and_swept_sizes_once():
    """A theory column defined in some cells only (c/c* is NaN at L = 1) is shown, "-" in the
    others; a size swept directly (m) is one column, not a second one of a ratio axis's sizes."""
    red = R.reduce(_synthetic(seeds=2))
    red["collapse_ratio"].loc[dict(stat="median", lr=0.05)] = 0.5
    lines = R.summary_table(red).splitlines()
    assert lines[0].split()[-2:] == ["c/c*", "diverged"]
    assert [ln.split()[-2] for ln in lines[2:8]] == ["-"] * 3 + ["0.5"] * 3
    sizes = _synthetic(seeds=2).rename(lr="m").assign_coords(m=[10, 20])
    assert R.summary_table(sizes, "csv").splitlines()[0].split(",")[:3] == ["m", "weight_decay", "final_on_err_median"]


def test_first_step_counts_a_value_at_the_threshold():
    """Phase I ends at the first step with on_err <= eps1 (SCIENCE.md section 4): equality counts."""
    assert R.first_step(np.array([1.0, 0.5, 0.25, 0.125]), np.array([0, 10, 20, 30]), 0.25) == 20


def _teacher_sweep(**changes):
    """A whitened L = 3, s = 3 sweep (median != mean of 3 singular values; c*(3) != 1)."""
    base = dict(
        problem=dlnsim.ProblemConfig(d=16, m=8, s=3, n_train=20, whiten=True),
        model=dlnsim.ModelConfig(depth=3, width=12),
        train=dlnsim.TrainConfig(steps=10, log_every=10),
        hparams={"lr": 0.05},
        grid={"weight_decay": [0.02, 0.1], "seed": [0]},
    )
    return dlnsim.SweepConfig(**{**base, **changes})


def test_collapse_ratio_uses_the_median_singular_value_and_the_depths_threshold():
    cfg = _teacher_sweep(grid={"weight_decay": [0.02, 0.1], "depth": [4], "seed": [0]})  # base depth: 3
    runs = R.per_run(dlnsim.sweep(cfg))
    sv = np.linalg.svd(np.asarray(dlnsim.make_problem(cfg.problem, seed=0).b, float), compute_uv=False)
    want = np.array([0.02, 0.1]) / np.median(sv) ** (2 / 4) / dlnsim.theory.collapse_threshold(4)  # the run's L
    np.testing.assert_allclose(runs.collapse_ratio.values[:, 0, 0], want, rtol=1e-5)


def test_sum_loss_predictions_equal_the_mean_loss_ones():
    """The sum loss at (eta / N, lambda N) is the mean loss at (eta, lambda): the teacher
    predictions (kappa = N for the sum loss) must agree."""
    n = 20
    mean = R.per_run(dlnsim.sweep(_teacher_sweep()))
    total = R.per_run(
        dlnsim.sweep(
            _teacher_sweep(
                train=dlnsim.TrainConfig(steps=10, log_every=10, loss="sum"),
                hparams={"lr": 0.05 / n},
                grid={"weight_decay": [0.02 * n, 0.1 * n], "seed": [0]},
            )
        )
    )
    for name in ("pred_on_err_limit", "collapse_ratio"):
        np.testing.assert_allclose(total[name].values, mean[name].values, rtol=1e-6, err_msg=name)


def test_every_statistic_of_a_diverged_run_is_masked():
    """Seed 3 diverged (its histories grow): no simulated statistic counts it."""
    good = np.exp(-1e-3 * STEPS) * np.array([[1.0], [2.0], [3.0]])
    w1 = np.concatenate([good, np.exp(1e-2 * STEPS)[None]])
    on = np.concatenate([np.broadcast_to(np.exp(-STEPS / 100), (3, STEPS.size)), np.ones((1, STEPS.size))])
    ds = xr.Dataset(
        {
            "w1_off_fro": (("seed", "step"), w1),
            "on_err": (("seed", "step"), on),
            "diverged": ("seed", [False, False, False, True]),
        },
        coords={"seed": np.arange(4), "step": STEPS},
    )
    red = R.reduce(ds)
    for name in red.data_vars:
        if "stat" in red[name].dims and not name.startswith(("pred_", "eps3", "collapse")):
            assert float(red[name].sel(stat="count")) <= 3, name
    assert float(red.rate_w1_off.sel(stat="mean")) == pytest.approx(-1e-3, rel=1e-10)
