"""Sweeps: batching, chunking and grid changes never change a run; compile counts."""

import dataclasses

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim import HParams, ModelConfig, ProblemConfig, SweepConfig, TrainConfig
from dlnsim import devices
from dlnsim import grid as grid_mod
from dlnsim import plan as plan_mod
from dlnsim.config import problem_and_model
from dlnsim.configfile import load_config_text

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

PROBLEM = ProblemConfig(d=16, m=8, s=2, n_train=24, n_test=20)
TRAIN64 = TrainConfig(steps=100, log_every=50, dtype="float64")
RTOL64 = 1e-10  # tolerance table: float64


def _cfg(grid, train=TRAIN64, **kw):
    return SweepConfig(
        problem=PROBLEM, model=ModelConfig(depth=3, width=8), train=train, hparams={"lr": 0.05}, grid=grid, **kw
    )


def _assert_runs_equal(a: xr.Dataset, b: xr.Dataset, rtol=RTOL64):
    for name in dlnsim.Metrics._fields:
        # Singular values come from eigh of E^T E: absolute error ~eps sigma_max^2 / sigma,
        # i.e. ~1e-10 for the smallest ones logged here, which differ between batch sizes.
        atol = 1e-9 if name == "sv" else 1e-14
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=rtol, atol=atol, err_msg=name)
    np.testing.assert_array_equal(a.diverged.values, b.diverged.values)


def test_dataset_layout():
    ds = dlnsim.sweep(_cfg({"depth": [1, 2], "weight_decay": [0.0, 1e-2], "seed": [0, 1, 2]}))
    assert ds.on_err.dims == ("depth", "weight_decay", "seed", "step")
    assert ds.noise_err.dims == ("depth", "weight_decay", "seed", "step", "sigma")
    assert ds.sv.dims[-1] == "k" and ds.sizes["k"] == 8
    assert list(ds.step.values) == [0, 50, 100]
    assert ds.diverged.dims == ("depth", "weight_decay", "seed")
    assert "[grid]" in ds.attrs["config_toml"] and ds.attrs["dtype"] == "float64"
    assert np.isfinite(ds.on_err.values).all()


def test_run_of_a_sweep_equals_the_run_alone():
    ds = dlnsim.sweep(_cfg({"seed": [0, 3], "weight_decay": [0.0, 1e-2], "problem_seed": [0, 5]}))
    for seed, wd, ps in [(3, 1e-2, 5), (0, 0.0, 0)]:
        prob = dlnsim.make_problem(PROBLEM, seed=ps, dtype="float64")
        alone = dlnsim.train(prob, ModelConfig(depth=3, width=8), TRAIN64, HParams(lr=0.05, weight_decay=wd), seed=seed)
        run = ds.sel(seed=seed, weight_decay=wd, problem_seed=ps)
        for name in ("on_err", "off_fro", "loss_data", "balance", "noise_err"):
            np.testing.assert_allclose(run[name].values, getattr(alone.metrics, name), rtol=RTOL64, err_msg=name)


def test_balance_every_k_under_the_sweep_matches_every_point():
    """The cadence's branch under vmap (per-network and block steps) records the same values."""
    base = dataclasses.replace(TRAIN64, steps=150)
    grid = {"seed": [0, 1], "weight_decay": [0.0, 1e-2]}
    ref = dlnsim.sweep(_cfg(grid, dataclasses.replace(base, backward="fused", balance_every=1))).balance.values
    assert np.isfinite(ref).all()
    for backward in ("fused", "blocked"):  # the two steps agree to rounding (test_backward)
        bal = dlnsim.sweep(_cfg(grid, dataclasses.replace(base, backward=backward, balance_every=2))).balance.values
        np.testing.assert_allclose(bal[..., [0, 2, 3]], ref[..., [0, 2, 3]], rtol=RTOL64, err_msg=backward)
        assert np.isnan(bal[..., 1]).all()


def test_adding_runs_does_not_change_existing_runs():
    small = dlnsim.sweep(_cfg({"seed": [0, 1], "weight_decay": [0.0, 1e-2]}))
    big = dlnsim.sweep(_cfg({"seed": [0, 1, 2, 3], "weight_decay": [0.0, 1e-3, 1e-2]}))
    _assert_runs_equal(small, big.sel(seed=[0, 1], weight_decay=[0.0, 1e-2]))


@pytest.mark.parametrize("chunk_size", [1, 7])
def test_chunk_size_does_not_change_results(chunk_size):
    grid = {"seed": [0, 1, 2], "weight_decay": [0.0, 1e-3, 1e-2]}
    whole = dlnsim.sweep(_cfg(grid))
    chunked = dlnsim.sweep(_cfg(grid, chunk_size=chunk_size))
    _assert_runs_equal(whole, chunked)


def test_progress_reports_every_chunk_once_in_order():
    """Two depth groups of 5 runs in chunks of at most 3: four events, counting up to the
    10 runs; a sweep that reports progress returns the same results as one that does not."""
    cfg = _cfg({"depth": [1, 2], "seed": [0, 1, 2, 3, 4]}, chunk_size=3)
    events = []
    ds = dlnsim.sweep(cfg, progress=events.append)
    chunks = plan_mod.plan(cfg)
    assert [ev.chunk for ev in events] == chunks and len(chunks) == 4
    sizes = [len(c.runs) for c in chunks]
    assert [ev.runs_done for ev in events] == list(np.cumsum(sizes))
    assert [ev.to_compute for ev in events] == [10 - d for d in np.cumsum(sizes)]
    assert [ev.computed for ev in events] == sizes
    assert all(ev.n_chunks == 4 and ev.n_runs == 10 and ev.steps == 100 and not ev.skipped for ev in events)
    assert all(ev.seconds > 0 for ev in events)
    _assert_runs_equal(ds, dlnsim.sweep(cfg))


def test_teacher_per_seed_draws_distinct_teachers():
    shared = dlnsim.sweep(_cfg({"seed": [0, 1]}))
    own = dlnsim.sweep(_cfg({"seed": [0, 1]}, teacher_per_seed=True))
    # Same init keys, different teachers: the initial off-subspace norms differ.
    assert not np.allclose(shared.w1_off_fro.isel(step=0).values, own.w1_off_fro.isel(step=0).values)


def test_diverging_run_is_flagged_and_isolated():
    cfg = _cfg({"lr": [0.05, 200.0], "seed": [0, 1]})
    ds = dlnsim.sweep(cfg)
    assert ds.diverged.sel(lr=200.0).all() and not ds.diverged.sel(lr=0.05).any()
    assert (ds.diverged_at.sel(lr=200.0) >= 0).all() and (ds.diverged_at.sel(lr=0.05) == -1).all()
    alone = dlnsim.sweep(_cfg({"lr": [0.05], "seed": [0, 1]}))
    _assert_runs_equal(ds.sel(lr=[0.05]), alone)
    assert np.isfinite(ds.on_err.sel(lr=0.05).values).all()


# The compile counts are cache-size differences: clearing the caches would make every later
# test in this worker compile again.
def _programs() -> tuple[int, int]:
    return grid_mod._train_batch_jit()._cache_size(), grid_mod._make_problems._cache_size()


def test_new_step_sizes_and_weight_decays_do_not_retrace():
    dlnsim.sweep(_cfg({"lr": [0.01, 0.02], "weight_decay": [0.0, 1e-2]}))
    before = _programs()
    dlnsim.sweep(_cfg({"lr": [0.03, 0.04], "weight_decay": [1e-3, 3e-3]}))
    assert _programs() == before


def test_sweep_over_k_depths_compiles_k_times():
    before = _programs()
    problem = ProblemConfig(d=16, m=8, s=2, n_train=24, n_test=19)  # no other test's programs
    cfg = _cfg({"depth": [1, 3], "weight_decay": [0.0, 1e-2], "seed": [0, 1]}, chunk_size=3)
    dlnsim.sweep(dataclasses.replace(cfg, problem=problem))
    new_train, new_problems = (a - b for a, b in zip(_programs(), before))
    assert new_train == 2  # one program per depth, chunks reuse it
    assert new_problems == 1  # problems do not depend on depth


def test_sweep_without_grid_axes_is_one_run():
    ds = dlnsim.sweep(_cfg({}))
    assert ds.on_err.dims == ("step",) and ds.diverged.dims == ()
    alone = dlnsim.train(
        dlnsim.make_problem(PROBLEM, 0, dtype="float64"), ModelConfig(depth=3, width=8), TRAIN64, HParams(lr=0.05)
    )
    np.testing.assert_allclose(ds.on_err.values, alone.metrics.on_err, rtol=RTOL64)


def test_limit_dist_of_noise_free_runs_survives_noisy_runs_in_the_sweep():
    """With any noisy run, every problem of a sweep is drawn with a traced noise level; the
    noise-free runs must still get E* (their own sweep's value), the others and lambda = 0 NaN."""

    def sweep(noises):
        return dlnsim.sweep(dlnsim.SweepConfig(
            problem=dlnsim.ProblemConfig(d=16, m=8, s=2, n_train=20, whiten=True),
            model=dlnsim.ModelConfig(depth=2, width=12),
            train=dlnsim.TrainConfig(steps=100, log_every=50, dtype="float64"),
            hparams={"lr": 0.05},
            grid={"train_noise": noises, "weight_decay": [0.0, 0.05], "seed": [0]},
        ))  # fmt: skip

    mixed, clean = sweep([0.0, 0.01]), sweep([0.0])
    dist = mixed.limit_dist.sel(seed=0)
    assert np.all(np.isnan(dist.sel(train_noise=0.01))) and np.all(np.isnan(dist.sel(weight_decay=0.0)))
    # Same runs, trained on min(m, N) columns instead of s: the same gradients (exact reduction).
    np.testing.assert_allclose(
        dist.sel(train_noise=0.0, weight_decay=0.05),
        clean.limit_dist.sel(seed=0, train_noise=0.0, weight_decay=0.05),
        rtol=1e-10,
    )


def test_run_teacher_is_the_problem_the_sweep_trained_on():
    """run_teacher redraws a run's problem exactly (swept sizes, teacher per seed, noise):
    training it alone reproduces the sweep's run bit for bit in float64."""
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=12, m=6, s=2, n_train=12, n_test=16),
        model=dlnsim.ModelConfig(depth=2, width=8),
        train=dlnsim.TrainConfig(steps=40, log_every=20, dtype="float64"),
        hparams={"lr": 0.05, "weight_decay": 0.01},
        grid={"d": [12, 14], "seed": [0, 3], "train_noise": [0.0, 0.1]},
        teacher_per_seed=True,
    )
    ds = dlnsim.sweep(cfg)
    run = {"d": 14, "seed": 3, "train_noise": 0.1}
    t = plan_mod.run_teacher(cfg, run)
    assert (t.problem.d, t.seed, t.train_noise) == (14, 3, 0.1)
    problem = dlnsim.make_problem(t.problem, key=t.key(), train_noise=t.train_noise, dtype="float64")
    hp = dlnsim.HParams(lr=0.05, weight_decay=0.01, train_noise=0.1)
    alone = dlnsim.train(problem, cfg.model, cfg.train, hp, seed=3)
    np.testing.assert_allclose(ds.on_err.sel(run).values, alone.metrics.on_err, rtol=1e-10)


def test_size_ratio_axes_equal_the_sizes_they_set():
    """m_over_d and s_over_m (SCIENCE.md section 5's m/d x s/m diagrams) set m = round(m_over_d
    d) and s = round(s_over_m m): the runs are those of the sizes swept directly (the same
    programs and keys, in other batches), and the theory columns (which redraw each run's
    teacher, s singular values each) follow."""
    base = dict(
        problem=dlnsim.ProblemConfig(d=40, m=20, s=2, n_train=30, whiten=True),
        model=dlnsim.ModelConfig(depth=2, width=12),
        train=dlnsim.TrainConfig(steps=100, log_every=50),
        hparams={"lr": 0.05, "weight_decay": 0.05},
    )
    ratios = dlnsim.sweep(dlnsim.SweepConfig(**base, grid={"m_over_d": [0.25, 0.5], "s_over_m": [0.1, 0.2]}))
    for m_over_d, m in ((0.25, 10), (0.5, 20)):
        s_values = [round(0.1 * m), round(0.2 * m)]
        sizes = dlnsim.sweep(dlnsim.SweepConfig(**base, grid={"m": [m], "s": s_values}))
        for s_over_m, s in zip((0.1, 0.2), s_values):
            np.testing.assert_allclose(  # the same program and keys: equal up to batch-size rounding
                ratios.on_err.sel(m_over_d=m_over_d, s_over_m=s_over_m), sizes.on_err.sel(m=m, s=s), rtol=1e-6
            )
    assert ratios.m.dims == ("m_over_d",) and ratios.m.values.tolist() == [10, 20]  # on record per cell
    assert ratios.s.dims == ("m_over_d", "s_over_m") and ratios.s.values.tolist() == [[1, 2], [2, 4]]
    rows = [r.split(",")[:4] for r in dlnsim.summary_table(ratios, "csv").splitlines()]  # the sizes as columns
    assert rows == [["m_over_d", "s_over_m", "m", "s"], *(
        [str(r), str(q), str(m), str(s)] for r, m, qs in ((0.25, 10, (1, 2)), (0.5, 20, (2, 4))) for q, s in zip((0.1, 0.2), qs)
    )]  # fmt: skip
    runs = dlnsim.reduce.per_run(ratios)  # s = 1, 2 (m = 10) and 2, 4 (m = 20): differing numbers of gains
    assert np.isfinite(runs.pred_on_err_limit.values).all() and np.isfinite(runs.collapse_ratio.values).all()
    cfg = dlnsim.SweepConfig(**base, grid={"m_over_d": [0.25], "s_over_m": [0.2]})
    assert load_config_text(dlnsim.dumps_config(cfg)) == cfg  # floats in the config file


def test_size_ratio_axes_round_halves_up():
    cfg = dlnsim.SweepConfig(problem=dlnsim.ProblemConfig(d=40, m=20, s=2), grid={"s_over_m": [0.25]})
    sizes = [problem_and_model(cfg, {"m_over_d": r, "s_over_m": 0.25})[0] for r in (0.25, 0.75)]
    assert [(p.m, p.s) for p in sizes] == [(10, 3), (30, 8)]  # 2.5 -> 3 and 7.5 -> 8 (not 2 and 8)
    # The ratio as written: 0.29 x 50 is 14.5 (14.499999... in binary floating point) -> 15
    cfg = dlnsim.SweepConfig(problem=dlnsim.ProblemConfig(d=50, m=20, s=2), grid={"m_over_d": [0.29]})
    assert problem_and_model(cfg, {"m_over_d": 0.29})[0].m == 15
    assert (
        problem_and_model(
            dataclasses.replace(cfg, problem=dlnsim.ProblemConfig(d=100, m=20, s=2)), {"m_over_d": 0.145}
        )[0].m
        == 15
    )


def test_ratio_sizes_follow_every_axis_they_depend_on():
    """m = m_over_d x d over a swept d too; s = s_over_m x m over all three axes."""
    from dlnsim.results import ratio_sizes

    grid = {"d": [40, 80], "m_over_d": [0.25, 0.5], "s_over_m": [0.1]}
    sizes = ratio_sizes(SweepConfig(problem=ProblemConfig(d=40, m=20, s=2), grid=grid))
    assert sizes["m"][0] == ("d", "m_over_d") and sizes["m"][1].tolist() == [[10, 20], [20, 40]]
    assert sizes["s"][0] == ("d", "m_over_d", "s_over_m") and sizes["s"][1].tolist() == [[[1], [2]], [[2], [4]]]


def test_config_files_with_ratio_axes_check_the_cells_not_the_base_sizes():
    """A size axis next to a ratio axis is valid or not with the cell's other sizes: the file
    (or a results file's config text) loads when every cell is a valid problem."""
    base = ["problem.d=40", "problem.m=20", "problem.s=4"]
    for extra in (["grid.m_over_d=[0.1]", "grid.s_over_m=[0.5]"], ["grid.d=[16, 40]", "grid.m_over_d=[0.5]"],
                  ["grid.s=[2, 10]", "grid.m_over_d=[0.5]", "problem.m=8"]):  # fmt: skip
        cfg = load_config_text(dlnsim.configfile.DEFAULT_TOML, base + extra)
        assert load_config_text(dlnsim.dumps_config(cfg)) == cfg
    with pytest.raises(
        dlnsim.ConfigError,
        match=r"grid: the grid cell depth=1, d=16, m_over_d=0.2 gives an invalid problem: problem.s = 4 is invalid: must satisfy s < m \(m = 3\)",
    ):
        load_config_text(dlnsim.configfile.DEFAULT_TOML, [*base, "grid.d=[16, 40]", "grid.m_over_d=[0.2]"])


@pytest.mark.parametrize(
    "grid, words",
    [
        ({"m_over_d": [1.0]}, "grid.m_over_d value 1.0 is invalid: must be a number in (0, 1)"),
        ({"m_over_d": [0.5], "m": [20]}, "sets m, which grid.m sweeps too"),
        ({"s_over_m": [0.01]}, "grid cell s_over_m=0.01 gives an invalid problem: ProblemConfig.s = 0"),
        ({"m_over_d": [0.99]}, "grid cell m_over_d=0.99 gives an invalid problem: ProblemConfig.m = 40"),
    ],
)
def test_size_ratio_axes_are_checked(grid, words):
    with pytest.raises(ValueError) as err:
        dlnsim.SweepConfig(problem=dlnsim.ProblemConfig(d=40, m=20, s=2), grid=grid)
    assert words in str(err.value)


def test_training_noise_of_the_base_hparams_is_drawn():
    """[hparams] train_noise without a grid axis makes a noisy sweep, the same as the axis."""
    kw = dict(
        problem=PROBLEM, model=ModelConfig(depth=2, width=8), train=TrainConfig(steps=50, log_every=50, dtype="float64")
    )
    base = dlnsim.sweep(SweepConfig(**kw, hparams={"lr": 0.05, "train_noise": 0.1}, grid={"seed": [0]}))
    swept = dlnsim.sweep(SweepConfig(**kw, hparams={"lr": 0.05}, grid={"seed": [0], "train_noise": [0.1]}))
    np.testing.assert_allclose(base.loss_data.values, swept.loss_data.sel(train_noise=0.1).values, rtol=1e-10)


def test_shard_count_may_equal_the_chunk_count():
    """G03 (n > len -> n >= len): n == number of chunks is allowed, one chunk per shard, and
    the slices of every allowed n partition the plan."""
    chunks = [plan_mod.Chunk(i, 0, (2 * i, 2 * i + 1)) for i in range(4)]
    for n in range(1, 5):
        slices = [plan_mod.shard_chunks(chunks, (i, n)) for i in range(n)]
        assert all(slices) and sorted(c.index for s in slices for c in s) == list(range(4))
    assert plan_mod.shard_chunks(chunks, (3, 4)) == [chunks[3]]
    with pytest.raises(ValueError, match="1 of 5 shards would hold no runs"):
        plan_mod.shard_chunks(chunks, (0, 5))


def test_large_seeds_in_a_sweep_equal_the_run_alone():
    """G06 (seeds passed as int16): a grid seed near the documented bound 2**31 trains the same
    network as dlnsim.train with that seed."""
    model = ModelConfig(depth=2, width=8)
    train = TrainConfig(steps=50, log_every=50, dtype="float64")
    seed = 2**31 - 1
    ds = dlnsim.sweep(SweepConfig(problem=PROBLEM, model=model, train=train, hparams={"lr": 0.05},
                                  grid={"seed": [70000, seed]}))  # fmt: skip
    prob = dlnsim.make_problem(PROBLEM, 0, dtype="float64")
    alone = dlnsim.train(prob, model, train, dlnsim.HParams(lr=0.05), seed=seed)
    np.testing.assert_allclose(ds.on_err.sel(seed=seed).values, alone.metrics.on_err, rtol=1e-10)


def test_batch_shape_takes_the_most_teachers_of_any_chunk():
    """G07 (teachers of the last chunk only): a group whose first chunk holds 2 teachers and
    whose last holds 1 is padded to 2 teachers, so all its chunks share one program."""
    cfg = SweepConfig(problem=PROBLEM, model=ModelConfig(depth=2, width=8), train=TRAIN64,
                      grid={"problem_seed": [0, 1], "seed": [0, 1, 2]}, chunk_size=4)  # fmt: skip
    chunks = plan_mod.plan(cfg)
    assert [c.runs for c in chunks] == [(0, 1, 2, 3), (4, 5)]
    assert plan_mod.batch_shape(cfg, chunks) == {0: plan_mod.BatchShape(runs=4, teachers=2)}


def test_grid_values_in_any_order_label_their_own_runs():
    """G08 (coords sorted): a grid written in descending order keeps its order, and each
    coordinate labels the run trained with that value."""
    base = dict(problem=PROBLEM, model=ModelConfig(depth=2, width=8), train=TRAIN64, hparams={"lr": 0.05})
    down = dlnsim.sweep(SweepConfig(**base, grid={"weight_decay": [0.05, 0.0], "seed": [0]}))
    up = dlnsim.sweep(SweepConfig(**base, grid={"weight_decay": [0.0, 0.05], "seed": [0]}))
    assert list(down.weight_decay.values) == [0.05, 0.0]
    for wd in (0.0, 0.05):
        np.testing.assert_allclose(down.off_fro.sel(weight_decay=wd), up.off_fro.sel(weight_decay=wd), rtol=1e-10)


def test_a_budget_of_exactly_one_run_is_enough():
    """G12 (per_run > budget -> >=): max_memory equal to one run's estimate plans chunks of one run."""
    cfg = SweepConfig(problem=PROBLEM, model=ModelConfig(depth=3, width=8), train=TRAIN64, grid={"seed": [0, 1, 2]})
    per_run = devices.run_bytes(PROBLEM, cfg.model, cfg.train, raw=False)
    chunks = plan_mod.plan(dataclasses.replace(cfg, max_memory=per_run))
    assert [len(c.runs) for c in chunks] == [1, 1, 1]
