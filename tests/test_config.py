"""Every validation rule raises ValueError naming the field (issue 2, item 9)."""

import numpy as np
import pytest

import dlnsim
from dlnsim import HParams, ModelConfig, ProblemConfig, SweepConfig, TrainConfig


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: ProblemConfig(d=10, m=10, s=2), "m"),  # m < d
        (lambda: ProblemConfig(d=20, m=5, s=5), "s"),  # s < m
        (lambda: ProblemConfig(d=20, m=10, s=3, n_train=2), "n_train"),  # n_train >= s
        (lambda: ProblemConfig(d=0), "d"),
        (lambda: ProblemConfig(d=20.5), "d"),
        (lambda: ProblemConfig(operator="fourier"), "operator"),
        (lambda: ProblemConfig(test_sigmas=()), "test_sigmas"),
        (lambda: ProblemConfig(test_sigmas=(0.1, -1.0)), "test_sigmas"),
        (lambda: ProblemConfig(whiten="yes"), "whiten"),
        (lambda: ProblemConfig(test_sigmas=(0.1, 0.1)), "test_sigmas"),  # labels of the sigma axis
        (lambda: ModelConfig(depth=0), "depth"),
        (lambda: ModelConfig(width=0), "width"),
        (lambda: ModelConfig(init="glorot"), "init"),
        (lambda: ModelConfig(activation="tanh"), "activation"),
        (lambda: TrainConfig(steps=10, log_every=20), "steps = 10 is invalid: must be at least log_every = 20"),
        (lambda: TrainConfig(steps=100, log_every=0), "log_every"),
        (lambda: TrainConfig(steps=100, log_every=30), "steps"),  # multiple of log_every
        (lambda: TrainConfig(optimizer="lbfgs"), "optimizer"),
        (lambda: TrainConfig(dtype="float16"), "dtype"),
        (lambda: TrainConfig(loss="max"), "loss"),
        (lambda: TrainConfig(precision="tf32"), "precision"),
        (lambda: TrainConfig(data="compressed"), "data"),
        (lambda: TrainConfig(divergence_cap=0.5), "divergence_cap"),
        (lambda: HParams(lr=0.0), "lr"),
        (lambda: HParams(lr=float("nan")), "lr"),
        (lambda: HParams(weight_decay=-1e-3), "weight_decay"),
        (lambda: HParams(init_scale=-1.0), "init_scale"),
        (lambda: HParams(train_noise=-0.1), "train_noise"),
        (lambda: HParams(momentum=1.0), "momentum"),  # heavy-ball beta / Adam's b1 in [0, 1)
        (lambda: HParams(lr=True), "lr"),  # a bool is not a number here
        (lambda: SweepConfig(grid={"momentum": [0.0, 0.5]}), "momentum"),  # plain GD would ignore it
        (lambda: SweepConfig(grid={"colour": [1]}), "grid"),
        (lambda: SweepConfig(grid={"seed": []}), "grid.seed"),
        (lambda: SweepConfig(grid={"seed": [0, 2**31]}), "grid.seed"),  # passed to the program as int32
        (lambda: SweepConfig(grid={"problem_seed": [-1]}), "grid.problem_seed"),
        (lambda: SweepConfig(grid={"depth": [2, 0]}), "depth"),
        (lambda: SweepConfig(grid={"weight_decay": [0.0, -1.0]}), "weight_decay"),
        (lambda: SweepConfig(grid={"lr": [0.1, 0.1]}), "grid.lr"),
        (lambda: SweepConfig(hparams={"lr": [0.1]}), "hparams.lr"),  # a base value, not a list
        (lambda: SweepConfig(grid={"depth": np.ones((2, 2), int)}), "grid.depth"),
        (lambda: SweepConfig(grid={"m": [200]}), "m"),  # static combination invalid: m >= d
        (lambda: SweepConfig(hparams={"eta": 0.1}), "hparams"),
        (lambda: SweepConfig(chunk_size=0), "chunk_size"),
        (lambda: TrainConfig(steps=2**31, log_every=2), "steps"),  # int32 step counters
        (lambda: ProblemConfig(d=2**70), "d"),
        (lambda: SweepConfig(grid={"width": [2**31]}), "grid.width"),
        (lambda: SweepConfig(grid={"lr": [1e-300]}), "grid.lr"),  # 0 in float32
        (lambda: SweepConfig(hparams={"weight_decay": 1e300}), "hparams.weight_decay"),  # inf in float32
        (lambda: SweepConfig(hparams={"weight_decay": 1e-40}), "hparams.weight_decay"),  # subnormal: XLA flushes to 0
    ],
)
def test_validation_names_the_field(make, field):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        make()


def test_error_message_names_value_and_allowed():
    with pytest.raises(ValueError) as err:
        ModelConfig(init="glorot")
    msg = str(err.value)
    assert "ModelConfig.init" in msg and "'glorot'" in msg and "'lecun'" in msg


def test_configs_are_hashable_and_frozen():
    cfg = SweepConfig(grid={"seed": range(3), "depth": [2, 3]})
    assert hash(cfg) == hash(SweepConfig(grid={"seed": [0, 1, 2], "depth": [2, 3]}))
    with pytest.raises(TypeError):
        cfg.grid["seed"] = (5,)
    assert cfg.shape == (3, 2) and cfg.n_runs == 6


def test_grid_axes_are_documented():
    assert set(dlnsim.GRID_AXES) >= {
        "seed",
        "problem_seed",
        "depth",
        "width",
        "lr",
        "weight_decay",
        "init_scale",
        "train_noise",
    }


def test_numpy_grid_values_are_plain_numbers():
    """Grids built with numpy (np.arange, np.logspace, np.int64 items) equal their list twins."""
    a = SweepConfig(grid={"depth": np.arange(2, 4), "weight_decay": np.array([0.0, 1e-3]), "seed": [np.int64(0)]})
    b = SweepConfig(grid={"depth": [2, 3], "weight_decay": [0.0, 1e-3], "seed": [0]})
    assert a == b and all(type(v) is int for v in a.grid["depth"])
    assert SweepConfig(hparams={"lr": np.float64(0.05)}) == SweepConfig(hparams={"lr": 0.05})
    assert SweepConfig(hparams={"lr": np.array(0.05)}) == SweepConfig(hparams={"lr": 0.05})  # 0-d array


def test_numpy_numbers_in_configs_are_plain_numbers():
    """np.int64 sizes, numpy arrays of test sigmas and an HParams as base values are taken as
    their Python twins (and equal them)."""
    a = ProblemConfig(d=np.int64(20), m=np.int32(10), s=2, test_sigmas=np.linspace(0.0, 0.5, 3))
    assert a == ProblemConfig(d=20, m=10, s=2, test_sigmas=(0.0, 0.25, 0.5)) and type(a.d) is int
    assert ModelConfig(depth=np.int64(2)) == ModelConfig(depth=2)
    assert TrainConfig(steps=np.int64(100), log_every=50) == TrainConfig(steps=100, log_every=50)
    assert SweepConfig(hparams=HParams(lr=0.1)) == SweepConfig(hparams={"lr": 0.1})
    assert SweepConfig(train=TrainConfig(optimizer="momentum"), grid={"momentum": [0.0, 0.5]}).n_runs == 2


def test_float64_without_x64_is_an_error():
    """Without jax_enable_x64 JAX computes float64 requests in float32: refused, not a silent
    float32 run labelled float64."""
    import jax

    pc = ProblemConfig(d=20, m=10, s=2, n_train=20)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="make_problem.dtype = 'float64' needs 64-bit JAX"):
            dlnsim.make_problem(pc, dtype="float64")
        with pytest.raises(ValueError, match="TrainConfig.dtype = 'float64' needs 64-bit JAX"):
            prob = dlnsim.make_problem(pc)
            dlnsim.train(prob, ModelConfig(depth=2, width=8), TrainConfig(steps=50, dtype="float64"), HParams())
        with pytest.raises(ValueError, match="SweepConfig.train.dtype = 'float64' needs 64-bit JAX"):
            dlnsim.sweep(SweepConfig(problem=pc, train=TrainConfig(dtype="float64")))
    finally:
        jax.config.update("jax_enable_x64", True)  # conftest's setting
    with pytest.raises(ValueError, match="make_problem.dtype = 'float16'"):
        dlnsim.make_problem(pc, dtype="float16")


def test_train_names_a_misplaced_argument():
    pc = ProblemConfig(d=20, m=10, s=2, n_train=20)
    prob, model, tc = dlnsim.make_problem(pc), ModelConfig(depth=2, width=8), TrainConfig(steps=50)
    with pytest.raises(TypeError, match="problem must be a Problem .from dlnsim.make_problem., got ProblemConfig"):
        dlnsim.train(pc, model, tc, HParams())
    with pytest.raises(TypeError, match="model must be a ModelConfig, got TrainConfig"):
        dlnsim.train(prob, tc, model, HParams())
    with pytest.raises(TypeError, match="hp must be a HParams, got dict"):
        dlnsim.train(prob, model, tc, {"lr": 0.05})


def test_hparams_names_its_fields_for_an_unknown_one():
    with pytest.raises(TypeError, match="HParams got unknown field 'learning_rate': its fields are lr, weight_decay"):
        HParams(learning_rate=0.1)


def test_hparams_defaults_and_closed_bounds():
    """The documented defaults (README: lr 0.02), the closed ends of the bounds (0 is allowed for
    everything but lr) and all five fields given by position (as grid.py and training.py do)."""
    assert HParams() == (0.02, 0.0, 1.0, 0.0, 0.9)
    assert HParams(1e-3, 0.0, 0.0, 0.0, 0.0) == HParams(lr=1e-3, init_scale=0.0, momentum=0.0)


def test_boundaries_of_the_validation_rules():
    """C03 (n_train <= s refused), C04 (divergence_cap = 1 accepted): each rule's boundary."""
    ProblemConfig(d=20, m=10, s=3, n_train=3)  # n_train >= s: N = s is allowed
    with pytest.raises(ValueError, match="divergence_cap"):
        TrainConfig(divergence_cap=1.0)  # must be > 1
    TrainConfig(divergence_cap=1.5)
