"""Every product of a sweep is true float32 off CPUs (JAX's default lets GPUs use TF32).

Checked on the traced programs, with the backend reported as a GPU: on a CPU every
precision gives the same float32 arithmetic, so only the programs can tell.
"""

import functools

import jax
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr

import dlnsim
from dlnsim import grid, plan, problem

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def _dot_precisions(jaxpr: Jaxpr) -> list:
    """The ``precision`` of every dot_general in ``jaxpr`` and the jaxprs inside it."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn.params["precision"])
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if isinstance(sub, ClosedJaxpr):
                    found += _dot_precisions(sub.jaxpr)
                elif isinstance(sub, Jaxpr):
                    found += _dot_precisions(sub)
    return found


@pytest.fixture
def traced_as_on_a_gpu(monkeypatch):
    """dlnsim's code sees a GPU backend; no trace made so outlives the test.

    The sweep's functions are traced unjitted; the one jit inside, the problem draw, is
    cleared after (its traces are also keyed by the matmul precision, which differs).
    """
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    yield
    monkeypatch.undo()
    problem._draw.clear_cache()


def _sweep_programs(precision: str, noises: list[float]) -> tuple[list, list]:
    """Dot precisions of a sweep's two programs: drawing and reducing the problems, training.

    Noise-free whitened data bring the closed-form limit E* into the metrics; noisy data the
    full-rank reduction.
    """
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=12, m=6, s=2, n_train=20, whiten=True),
        model=dlnsim.ModelConfig(depth=3, width=8),
        train=dlnsim.TrainConfig(steps=20, log_every=10, dtype="float32", precision=precision),
        grid={"seed": [0, 1], "train_noise": noises},
    )
    (chunk,) = plan.plan(cfg)
    problem_cfg, model = plan.group_configs(cfg, chunk.group)
    pad = plan.batch_shape(cfg, [chunk])[chunk.group]
    keys, noise_draws, which, seeds, hp = grid._batch_inputs(cfg, chunk.runs, pad)
    draw = functools.partial(
        grid._make_problems.__wrapped__, problem_cfg=problem_cfg, dtype="float32", raw=False, noisy=plan.noisy(cfg)
    )
    drawn = jax.make_jaxpr(draw, return_shape=True)(keys, noise_draws)
    train = functools.partial(grid._train_batch, model=model, train=cfg.train)
    trained = jax.make_jaxpr(train)(*drawn[1], which, seeds, hp)
    return _dot_precisions(drawn[0].jaxpr), _dot_precisions(trained.jaxpr)


@pytest.mark.parametrize("noises", [[0.0], [0.0, 0.1]])
def test_every_product_of_a_sweep_is_full_float32_on_gpus(traced_as_on_a_gpu, noises):
    """The data, their exact reduction, the training steps, the metrics and E* all ask for HIGHEST."""
    draw, train = _sweep_programs("highest", noises)
    assert len(draw) >= 5 and len(train) >= 20  # the programs were traced, products and all
    assert all(p == HIGHEST for p in draw + train), sorted(set(map(str, draw + train)))


def test_lower_training_precision_leaves_the_reference_products_exact(traced_as_on_a_gpu):
    """precision="default" lowers the training products only: data and metrics stay HIGHEST."""
    draw, train = _sweep_programs("default", [0.0])
    assert all(p == HIGHEST for p in draw)
    assert any(p == HIGHEST for p in train) and any(p != HIGHEST for p in train)
