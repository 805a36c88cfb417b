"""One training step of one network: the state it advances, which step computes it
(``jax.grad``, the hand-written fused step, the block step, the Pallas kernel), and
divergence as data (a run whose loss blows up is frozen, never an exception).

:mod:`dlnsim.training` scans these steps; nothing here loops or logs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlnsim import onchip
from dlnsim.backward import FUSE_MAX_COLUMNS, gd_step
from dlnsim.blocked import MAX_WIDTH, gd_step_block_ahead
from dlnsim.config import ModelConfig, ProblemConfig, TrainConfig
from dlnsim.hparams import HParams
from dlnsim.model import Params, forward
from dlnsim.problem import Data, Problem, data_loss, raw_data, reduce_data, reduced_rank

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


def initial_state(
    params: Params, data: Data, n: int, model: ModelConfig, train: TrainConfig, hp: HParams
) -> TrainState:
    """The state before the first step: no steps taken, not diverged, the optimiser's initial
    state, and the initial data loss (the scale of the divergence cap)."""
    opt_state = () if train.optimizer == "gd" else _optimizer(train, hp).init(params)
    loss0 = _data_loss(params, data, n, model.activation, train.precision)
    return TrainState(
        jnp.zeros((), jnp.int32), params, opt_state, jnp.zeros((), bool), jnp.full((), -1, jnp.int32), loss0
    )


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
    a block of runs, activations carried from step to step), ``"fused"``
    (:func:`dlnsim.backward.gd_step`), ``"pallas"`` (the block step in a Pallas kernel,
    :mod:`dlnsim.onchip`; only when asked for, and only for layers and data of at most
    :data:`dlnsim.onchip.MAX_SIZE`, else ``ValueError``) or ``"autodiff"``.

    The hand-written steps do plain gradient descent on a linear network. ``backward =
    "auto"`` takes the block step on CPUs when every layer is at most
    :data:`dlnsim.blocked.MAX_WIDTH` wide and the data has at most
    :data:`dlnsim.backward.FUSE_MAX_COLUMNS` columns (the reduced path), the fused step
    otherwise; :func:`dlnsim.training.simulate` on one network alone (not under ``vmap``)
    takes the fused step there too.
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


def normaliser(train: TrainConfig, problem: Problem) -> int:
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
