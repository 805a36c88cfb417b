"""Training one network on one problem: the steps of :mod:`dlnsim.step`, scanned inside one jit.

``simulate`` knows nothing about seeds or grids; the sweep lifts it with ``vmap``.
Outer ``lax.scan`` over logging points, inner ``lax.scan`` over the steps between them,
metrics reduced inside the scan (STYLE.md, Architecture 4).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from dlnsim import onchip, theory
from dlnsim._checks import check_x64
from dlnsim.blocked import compiler_options, forward_block, run_axis_last
from dlnsim.config import ModelConfig, TrainConfig
from dlnsim.hparams import HParams
from dlnsim.metrics import Metrics, compute_metrics
from dlnsim.model import Params, init_params
from dlnsim.problem import Data, Problem, check_seed
from dlnsim.step import TrainState, initial_state, make_block_step, make_step, normaliser, step_kind, training_data

Array = jax.Array


class Run(NamedTuple):
    """The result of training one network.

    Attributes:
      params: final weights (W_1 (w, m), ..., W_L (d, w))
      metrics: :class:`dlnsim.Metrics` whose fields have a leading axis over the logged steps
        0, log_every, 2 log_every, ..., steps (``TrainConfig.n_logs`` points)
      diverged: () bool
      diverged_at: () int32, -1 if never
    """

    params: Params
    metrics: Metrics
    diverged: Array
    diverged_at: Array


def init_key(seed: int | Array) -> Array:
    """Initialisation key of the run with this seed: ``fold_in(root, seed)``."""
    return jr.fold_in(jr.key(0), seed)


def simulate(
    problem: Problem,
    hp: HParams,
    key: Array,
    *,
    model: ModelConfig,
    train: TrainConfig,
    data: Data | None = None,
) -> Run:
    """Trains one network from initialisation and records metrics (pure, jit/vmap-able).

    Args:
      problem: the problem (arrays in the run's dtype).
      hp: traced per-run numbers.
      key: initialisation key of this run (a typed key). :func:`dlnsim.train` and the
        sweep use ``jax.random.fold_in(jax.random.key(0), seed)`` for the run's ``seed``,
        so that key reproduces their run.
      model, train: static configs (the problem carries its own).
      data: the training data (:class:`dlnsim.Data`: raw or exactly reduced, as
        ``train.data`` says) if already prepared (the sweep prepares each distinct problem
        once); computed here otherwise.

    Returns:
      A :class:`Run`.
    """
    dt = jnp.dtype(train.dtype)
    hp = HParams(*(jnp.asarray(v, dt) for v in hp))
    m, d = problem.a.shape
    if data is None:
        data = training_data(problem, model, train)
    n = normaliser(train, problem)
    params = init_params(key, model, m, d, hp.init_scale, train.dtype)
    state = initial_state(params, data, n, model, train, hp)

    problem_cfg = problem.cfg
    e_star = None  # the closed-form limit (SCIENCE.md section 3), where it is the limit
    if problem_cfg.whiten and model.activation == "linear" and train.optimizer in theory.LIMIT_OPTIMIZERS:
        kappa = theory.kappa(train.loss, problem_cfg.n_train)
        e_star = theory.limit_map(problem.b, problem.u, hp.weight_decay, model.depth, kappa)
        # Only with weight decay (without, E P_perp keeps its initial part, D1) and noise-free
        # data; a sweep that mixes noise levels traces the noise, so that is decided per run.
        known = hp.weight_decay > 0 if problem.noise_free else (hp.weight_decay > 0) & (problem.train_noise == 0)
        e_star = jnp.where(known, e_star, jnp.nan)
    measure = functools.partial(
        compute_metrics,
        problem=problem,
        data=data,
        weight_decay=hp.weight_decay,
        e_star=e_star,
        sigmas=problem_cfg.test_sigmas,
        n=n,
        n_singular=train.n_singular,
        activation=model.activation,
        prec=train.precision,
    )

    def steps_of(kind: str) -> Callable[[TrainState, Data, HParams], TrainState]:
        """``log_every`` steps of the given :func:`step_kind`."""
        if kind == "blocked":  # the activations are carried across the steps (one more forward pass)
            block_step = make_block_step(train, n)
            return lambda state, data, hp: jax.lax.scan(
                lambda c, _: (block_step(c, data, hp), None),
                (state, forward_block(state.params, data.y)),
                None,
                length=train.log_every,
            )[0][0]
        step = make_step(model, train, n, kind)
        return lambda state, data, hp: jax.lax.scan(
            lambda s, _: (step(s, data, hp), None), state, None, length=train.log_every
        )[0]

    kind = step_kind(model, train, m, d, data.y.shape[1])
    advance = steps_of(kind)
    if kind == "blocked":  # under the sweep's vmap, one block of all runs (dlnsim.blocked);
        # one network alone takes the per-network step under "auto" (a block of one is padded to 8)
        advance = run_axis_last(advance, alone=steps_of("fused") if train.backward == "auto" else None)
    elif kind == "pallas":  # under the sweep's vmap, one kernel, one program per run (dlnsim.onchip)
        advance = onchip.one_program_per_run(advance)

    def log_point(state: TrainState, i: Array) -> tuple[TrainState, Metrics]:
        # Log point 0 is the initial state. The predicate is the same for every run, so
        # under vmap this stays a real branch, and the metrics are compiled only once.
        state = jax.lax.cond(i > 0, lambda s: advance(s, data, hp), lambda s: s, state)
        return state, measure(state.params, balance=train.balance_due(i))

    state, metrics = jax.lax.scan(log_point, state, jnp.arange(train.n_logs))
    return Run(state.params, metrics, state.diverged, state.diverged_at)


@functools.cache
def _simulate_jit() -> Callable[..., Run]:
    """``jit(simulate)``, made on first use (its compiler options need the backend)."""
    return jax.jit(simulate, static_argnames=("model", "train"), compiler_options=compiler_options())


def _check_noise(noise: Any, problem_noise: Any) -> None:
    """``hp.train_noise`` is a sweep's axis; alone, :func:`train` takes the problem's noise, so
    a nonzero value that differs from it (it would be ignored) is an error. Traced or batched
    values are not checked."""
    concrete = all(not isinstance(v, jax.core.Tracer) and np.ndim(v) == 0 for v in (noise, problem_noise))
    if concrete and float(noise) != 0 and not np.isclose(float(noise), float(problem_noise), rtol=1e-6, atol=0):
        raise ValueError(
            f"hp.train_noise = {float(noise):g} is not the problem's training noise ({float(problem_noise):g}), "
            f"which train uses: draw the problem with make_problem(..., train_noise={float(noise):g})"
        )


def train(
    problem: Problem,
    model: ModelConfig,
    train_cfg: TrainConfig,
    hp: HParams,
    seed: int | Array = 0,
) -> Run:
    """Trains one network (compiled once per static config; hp values never recompile).

    Args:
      problem: from :func:`dlnsim.make_problem`.
      model: network config.
      train_cfg: training config.
      hp: step size, weight decay, init scale (training noise is the problem's).
      seed: initialisation seed, an integer in [0, 2**32) (or a typed PRNG key).

    Returns:
      A :class:`Run` with final weights and metrics over the logged steps.

    Example:
      >>> pc = ProblemConfig(d=20, m=10, s=2, n_train=30)
      >>> run = train(make_problem(pc), ModelConfig(depth=2, width=16),
      ...             TrainConfig(steps=100, log_every=50), HParams(lr=0.05))
      >>> run.metrics.on_err.shape
      (3,)
    """
    for name, value, kind in (
        ("problem", problem, Problem),
        ("model", model, ModelConfig),
        ("train_cfg", train_cfg, TrainConfig),
        ("hp", hp, HParams),
    ):
        if not isinstance(value, kind):
            made = " (from dlnsim.make_problem)" if kind is Problem else ""
            raise TypeError(f"train: {name} must be a {kind.__name__}{made}, got {type(value).__name__}")
    check_x64("TrainConfig.dtype", train_cfg.dtype)
    _check_noise(hp.train_noise, problem.train_noise)
    dt = jnp.dtype(train_cfg.dtype)
    problem = jax.tree.map(lambda a: jnp.asarray(a, dt), problem)
    hp = HParams(*(jnp.asarray(v, dt) for v in hp))
    is_key = isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key)
    if not is_key:
        check_seed(seed)
    key = seed if is_key else init_key(seed)
    return _simulate_jit()(problem, hp, key, model=model, train=train_cfg)
