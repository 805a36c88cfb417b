"""Training one network on one problem: a pure step, scanned inside one jit.

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
import optax

from dlnsim import onchip, theory
from dlnsim._checks import check_x64
from dlnsim.backward import FUSE_MAX_COLUMNS, gd_step
from dlnsim.blocked import MAX_WIDTH, compiler_options, forward_block, gd_step_block_ahead, run_axis_last
from dlnsim.config import ModelConfig, ProblemConfig, TrainConfig
from dlnsim.hparams import HParams
from dlnsim.metrics import Metrics, compute_metrics
from dlnsim.model import Params, forward, init_params
from dlnsim.problem import Data, Problem, check_seed, data_loss, raw_data, reduce_data, reduced_rank

Array = jax.Array


class TrainState(NamedTuple):
    """Everything that changes from one step to the next.

    Attributes:
      step: () int32, steps taken
      params: (W_1 (w, m), ..., W_L (d, w)), run dtype
      opt_state: optax state; () for plain gradient descent
      diverged: () bool, the run was frozen
      diverged_at: () int32, step at which it diverged, -1 if never
      loss0: () initial data loss, the scale of the divergence cap
    """

    step: Array
    params: Params
    opt_state: Any
    diverged: Array
    diverged_at: Array
    loss0: Array


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


def _optimizer(train: TrainConfig, hp: HParams) -> optax.GradientTransformation:
    if train.optimizer == "momentum":
        return optax.sgd(hp.lr, momentum=hp.momentum)
    if train.optimizer == "adam":
        return optax.adam(hp.lr, b1=hp.momentum)
    return optax.adamw(hp.lr, b1=hp.momentum, weight_decay=hp.weight_decay)


def uses_raw_data(model: ModelConfig, train: TrainConfig) -> bool:
    """Raw samples where asked for (``TrainConfig.data = "raw"``) or where the exact
    reduction does not apply (a ReLU network); the reduced factors otherwise."""
    return train.data == "raw" or model.activation != "linear"


def step_kind(model: ModelConfig, train: TrainConfig, m: int, d: int, columns: int) -> str:
    """How a step is computed: ``"blocked"`` (:func:`dlnsim.blocked.gd_step_block_ahead` on
    a block of runs, activations carried from step to step), ``"fused"`` (:func:`dlnsim.backward.gd_step`), ``"pallas"`` (the block
    step in a Pallas kernel, :mod:`dlnsim.onchip`; only when asked for, and only for
    layers and data of at most :data:`dlnsim.onchip.MAX_SIZE`, else ``ValueError``) or
    ``"autodiff"``.

    The hand-written steps do plain gradient descent on a linear network. ``backward =
    "auto"`` takes the block step on CPUs when every layer is at most
    :data:`dlnsim.blocked.MAX_WIDTH` wide and the data has at most
    :data:`dlnsim.backward.FUSE_MAX_COLUMNS` columns (the reduced path), the fused step
    otherwise; :func:`simulate` on one network alone (not under ``vmap``) takes the fused
    step there too.
    """
    if train.backward == "autodiff" or train.optimizer != "gd" or model.activation != "linear":
        return "autodiff"
    if train.backward == "pallas" and max(m, d, model.width, columns) > onchip.MAX_SIZE:
        raise ValueError(
            f"TrainConfig.backward = 'pallas' is for small networks: every layer and the data at most "
            f"{onchip.MAX_SIZE} wide (here m = {m}, d = {d}, width = {model.width}, {columns} data columns); "
            f"use 'auto'"
        )
    if train.backward != "auto":
        return train.backward
    return "blocked" if block_step_fits(model, m, d, columns) and jax.default_backend() == "cpu" else "fused"


def block_step_fits(model: ModelConfig, m: int, d: int, columns: int) -> bool:
    """Small enough for the block step's elementwise products: every layer at most
    :data:`dlnsim.blocked.MAX_WIDTH` wide, at most :data:`dlnsim.backward.FUSE_MAX_COLUMNS`
    data columns (where ``"auto"`` takes it on CPUs)."""
    return max(m, d, model.width) <= MAX_WIDTH and columns <= FUSE_MAX_COLUMNS


def data_columns(problem: ProblemConfig, raw: bool, noisy: bool) -> int:
    """Columns of the training data a step sees: N raw samples, else ``rank Y``."""
    return problem.n_train if raw else reduced_rank(problem, noisy)


def training_data(problem: Problem, model: ModelConfig, train: TrainConfig) -> Data:
    """What the loss trains on (see :func:`uses_raw_data`)."""
    return raw_data(problem) if uses_raw_data(model, train) else reduce_data(problem)


def _normaliser(train: TrainConfig, problem: Problem) -> int:
    """N for the mean loss, 1 for the sum loss (SCIENCE.md section 2)."""
    return problem.x.shape[1] if train.loss == "mean" else 1


def _data_loss(params: Params, data: Data, n: int, activation: str, prec: str) -> Array:
    return data_loss(forward(params, data.y, activation, prec) - data.x, data.c0, n)


def _frozen(state: TrainState, loss: Array, cap: float) -> tuple[Array, Array]:
    """``(bad, frozen)``: this step's data loss (before it) is not finite or exceeds ``cap``
    times the initial loss; the run is frozen from then on (a result, never an exception)."""
    # abs < inf is isfinite (false for NaN and +-inf); Pallas's Triton lowering in jax 0.6
    # and 0.7 has no is_finite, and this runs inside the kernel of backward = "pallas".
    bad = ~(jnp.abs(loss) < jnp.inf) | (loss > cap * state.loss0)
    return bad, state.diverged | bad


def _next_state(state: TrainState, bad: Array, frozen: Array, params: Params, opt_state: Any) -> TrainState:
    """The state after a step, given its (already frozen-selected) params and optimiser state."""
    return TrainState(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        diverged=frozen,
        diverged_at=jnp.where(bad & ~state.diverged, state.step, state.diverged_at),
        loss0=state.loss0,
    )


def make_step(model: ModelConfig, train: TrainConfig, n: int, kind: str):
    """One pure training step ``step(state, data, hp) -> state``.

    Gradient descent follows SCIENCE.md section 2 exactly:
    ``W_l <- (1 - eta lambda) W_l - eta grad_l F_data``; diverging runs are frozen
    (:func:`_frozen`). ``kind`` is a :func:`step_kind` other than ``"blocked"``
    (:func:`make_block_step`).
    """
    if kind == "blocked":
        raise ValueError("make_step does not take the block step: use make_block_step")
    value_and_grad = jax.value_and_grad(_data_loss)

    def update(params: Params, opt_state: Any, data: Data, hp: HParams) -> tuple[Array, Params, Any]:
        """(data loss before the step, new params, new optimiser state)."""
        if kind == "pallas":
            loss, new = onchip.gd_step(params, data.y, data.x, data.c0, n, hp.lr, hp.weight_decay)
            return loss, new, opt_state
        if kind == "fused":
            loss, new = gd_step(params, data.y, data.x, data.c0, n, hp.lr, hp.weight_decay, train.precision)
            return loss, new, opt_state
        loss, grads = value_and_grad(params, data, n, model.activation, train.precision)
        if train.optimizer == "gd":
            decay = 1.0 - hp.lr * hp.weight_decay
            return loss, tuple(decay * w - hp.lr * g for w, g in zip(params, grads)), opt_state
        if train.optimizer != "adamw":  # coupled weight decay: gradient of the L2 term
            grads = tuple(g + hp.weight_decay * w for w, g in zip(params, grads))
        updates, new_opt = _optimizer(train, hp).update(grads, opt_state, params)
        return loss, optax.apply_updates(params, updates), new_opt

    def step(state: TrainState, data: Data, hp: HParams) -> TrainState:
        loss, new_params, new_opt = update(state.params, state.opt_state, data, hp)
        bad, frozen = _frozen(state, loss, train.divergence_cap)
        # The select fuses into the update kernel: freezing costs no extra pass over weights.
        keep = lambda new, old: jnp.where(frozen, old, new)  # noqa: E731
        return _next_state(
            state,
            bad,
            frozen,
            jax.tree.map(keep, new_params, state.params),
            jax.tree.map(keep, new_opt, state.opt_state),
        )

    return step


def make_block_step(train: TrainConfig, n: int):
    """The block step (:mod:`dlnsim.blocked`, every array with a trailing run axis) that
    carries the activations: ``step((state, hs), data, hp) -> (state, hs)``, where ``hs``
    is the forward pass of ``state.params`` (:func:`dlnsim.blocked.forward_block`), so each
    step also computes the next one's (:func:`dlnsim.backward.descend_ahead`). A frozen
    run keeps its activations with its weights."""

    def step(carry: tuple[TrainState, list[Array]], data: Data, hp: HParams) -> tuple[TrainState, list[Array]]:
        state, hs = carry
        # The freeze is decided before the update, from the loss descend_ahead also forms
        # (the same expression: XLA computes it once).
        bad, frozen = _frozen(state, data_loss(hs[-1] - data.x, data.c0, n), train.divergence_cap)
        _, new, hs = gd_step_block_ahead(
            state.params,
            hs,
            data.x,
            data.c0,
            n,
            hp.lr,
            hp.weight_decay,
            keep=lambda new, old: jnp.where(frozen, old, new),  # a frozen run's activations are its own
        )
        return _next_state(state, bad, frozen, new, state.opt_state), hs

    return step


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
    n = _normaliser(train, problem)
    params = init_params(key, model, m, d, hp.init_scale, train.dtype)
    opt_state = () if train.optimizer == "gd" else _optimizer(train, hp).init(params)
    loss0 = _data_loss(params, data, n, model.activation, train.precision)
    state = TrainState(
        jnp.zeros((), jnp.int32), params, opt_state, jnp.zeros((), bool), jnp.full((), -1, jnp.int32), loss0
    )

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
