"""The gradient-descent step of one linear network, with a hand-written backward pass.

``jax.grad`` of the data loss gives each layer's gradient as an outer product
``G_l = delta_l h_{l-1}^T`` written to memory, then a separate pass applies
``W_l <- (1 - eta lambda) W_l - eta G_l``. Here the backward pass is written out and, when
the data has few columns (the reduced path: r = rank Y), the rank-r product is a sum of r
broadcast products inside the same elementwise expression as the decay, so the compiler
fuses the whole update into one pass that reads and writes each weight once, in place
(:func:`_after`). Measured on 2 CPU cores (``benchmarks/throughput.py``, 2026-12-01, Intel
Xeon) it is 2.5x faster than autodiff at the paper's sizes and 2.0x at the small ones
(1.03-1.25x and 1.2-1.5x before the update was in place, on an AMD EPYC); on GPUs it also
removes a weight-sized temporary per layer.

:func:`descend_ahead` is the same step given the forward activations of the weights, which
it returns for the updated weights too (each step does the next one's forward pass): the
block step of :mod:`dlnsim.blocked` runs that way.

The step is exactly SCIENCE.md section 2; tests check it against ``jax.grad`` to float64
rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dlnsim.model import Params, precision
from dlnsim.problem import data_loss

Array = jax.Array

FUSE_MAX_COLUMNS = 8  # up to this many data columns the rank-r update is elementwise


def _outer(delta: Array, h: Array, prec: jax.lax.Precision) -> Array:
    """``delta @ h.T``; as a sum of r broadcast products when r is small (fusable)."""
    r = delta.shape[1]
    if r > FUSE_MAX_COLUMNS:
        return jnp.matmul(delta, h.T, precision=prec)
    out = delta[:, 0, None] * h[None, :, 0]
    for k in range(1, r):
        out = out + delta[:, k, None] * h[None, :, k]
    return out


def descend(
    params: Params,
    y: Array,
    x: Array,
    c0: Array,
    n: int,
    lr: Array,
    weight_decay: Array,
    *,
    matmul: Callable[[Array, Array], Array],
    matmul_t: Callable[[Array, Array], Array],
    update: Callable[[Array, Array, Array, Array], Array],
    ordered: bool = True,
) -> tuple[Array, Params]:
    """The GD step of SCIENCE.md section 2 written out, given how its products are computed.

    :func:`gd_step` (one network) and :func:`dlnsim.blocked.gd_step_block` (a block of
    runs, run axis last) are this step with their own array layouts.

    Args:
      params, y, x, c0, n, lr, weight_decay: as in :func:`gd_step`.
      matmul: ``(w, h) -> w @ h``.
      matmul_t: ``(w, h) -> w.T @ h``.
      update: ``(w, decay, delta, h) -> decay w - delta h^T``.
      ordered: make each layer's update wait for its backward product, so that XLA
        updates the weights in place (see :func:`_after`). The Pallas kernel, whose
        weights live in registers, has no use for it (and Triton cannot take the slice).

    Returns:
      ``(data loss before the step, updated params)``.
    """
    hs = forward_pass(params, y, matmul)
    resid = hs[-1] - x
    loss = data_loss(resid, c0, n)
    # delta_l scaled by eta: the step is W_l <- (1 - eta lambda) W_l - (eta delta_l) h_{l-1}^T,
    # and eta delta_{l-1} = W_l^T (eta delta_l) uses the weights before the update.
    delta = (lr / n) * resid
    decay = 1.0 - lr * weight_decay
    new = list(params)
    for i in reversed(range(len(params))):
        w = params[i]
        below = matmul_t(w, delta) if i else None
        new[i] = update(w, _after(decay, below, jnp.ndim(decay)) if ordered and i else decay, delta, hs[i])
        delta = below
    return loss, tuple(new)


def forward_pass(params: Params, y: Array, matmul: Callable[[Array, Array], Array]) -> list[Array]:
    """The activations ``[y, W_1 y, W_2 W_1 y, ...]`` (the last is the network's output)."""
    hs = [y]
    for w in params:
        hs.append(matmul(w, hs[-1]))
    return hs


def descend_ahead(
    params: Params,
    hs: list[Array],
    x: Array,
    c0: Array,
    n: int,
    lr: Array,
    weight_decay: Array,
    *,
    matmul: Callable[[Array, Array], Array],
    matmul_t: Callable[[Array, Array], Array],
    update: Callable[[Array, Array, Array, Array], Array],
    keep: Callable[[Array, Array], Array] | None = None,
) -> tuple[Array, Params, list[Array]]:
    """:func:`descend` given the activations ``hs`` of ``params`` (:func:`forward_pass`),
    returning those of the updated params too: the next step's forward pass.

    The backward products come first (they read the old weights); then, first layer to
    last, each layer is updated and multiplied into the next step's activations while its
    new weights are fresh in cache (one layer behind: ``h_l'`` waits for the update that
    reads ``h_l``, so it is written in place), and the next step starts with its forward
    pass done. The same arithmetic as :func:`descend` (tests: to float64 rounding). The sweep's
    block step (:func:`dlnsim.blocked.gd_step_block_ahead`) ran 1.16-1.33x faster this way
    at the small sizes on 2 CPU cores; the per-network fused step ran 0.93-1.06x at the
    paper's sizes and is left as it is (``benchmarks/touches.py``, 2026-12-02).

    ``keep(new, old)``, if given, picks each layer's weights from its update and its old
    value (the divergence freeze) before they enter the next forward pass, so the carried
    activations are always those of the returned weights. (Selecting after the forward
    pass instead made XLA copy every weight at each step: the select became a third
    reader of the old weights, after the update.)

    Returns:
      ``(data loss before the step, updated params, their activations)``.
    """
    resid = hs[-1] - x
    loss = data_loss(resid, c0, n)
    decay = 1.0 - lr * weight_decay
    deltas = [(lr / n) * resid]  # eta delta_L, then eta delta_{l-1} = W_l^T (eta delta_l)
    for w in reversed(params[1:]):
        deltas.append(matmul_t(w, deltas[-1]))
    deltas.reverse()
    runs = jnp.ndim(decay)  # 1 on a block of runs (trailing run axis), else 0
    new, ahead = [], [hs[0]]
    for i, w in enumerate(params):
        # Each update waits for the backward read of its old weights, so it is in place.
        w_new = update(w, _after(decay, deltas[i - 1], runs) if i else decay, deltas[i], hs[i])
        new.append(w_new if keep is None else keep(w_new, w))
        if i:  # h_i' after the update that reads h_i, so h_i' takes h_i's buffer (no copy)
            ahead.append(matmul(new[i - 1], _after(ahead[-1], new[i], runs)))
    ahead.append(matmul(new[-1], ahead[-1]))
    return loss, tuple(new), ahead


def _after(value: Array, other: Array, runs: int = 0) -> Array:
    """``value``, made to depend on ``other``: plus 0 times one element of ``other`` per run
    (``runs`` trailing run axes, kept).

    Inside the ``lax.scan`` over steps each new ``W_l`` is written into the buffer of the
    old one, and the update can only do that in place if it is the last reader of the old
    weights. The backward product ``W_l^T delta_l`` and the update are independent, so XLA
    copied every layer but the first at the start of each step (an extra read and write of
    the weights; an optimization barrier does not stop it). Making the decay depend on the
    backward product orders the update after it and the copies go: the block step runs
    1.23-1.34x faster at the small sizes and the fused step 1.17x at the paper's sizes (2
    Intel Xeon cores), the results bitwise the same. :func:`descend_ahead` orders its
    carried activations the same way. (Where that element of ``other`` is not finite the
    value becomes NaN for that run; the layer is then updated with non-finite values
    anyway, and the run is flagged diverged at the next step either way.)
    """
    return value + 0.0 * other[(0,) * (other.ndim - runs)]


def gd_step(
    params: Params, y: Array, x: Array, c0: Array, n: int, lr: Array, weight_decay: Array, prec: str = "highest"
) -> tuple[Array, Params]:
    """One GD step on ``F = (||W_L ... W_1 y - x||_F^2 + c0) / (2n) + (lambda/2) sum ||W_l||^2``.

    Args:
      params: ``(W_1, ..., W_L)``.
      y, x: training inputs (m, k) and targets (d, k), raw samples or reduced factors.
      c0: the constant part of the reduced loss (0 for raw data).
      n: the loss normaliser (N for the mean loss, 1 for the sum loss).
      lr, weight_decay: eta and lambda.
      prec: matmul precision name.

    Returns:
      ``(data loss before the step, updated params)``.

    Example:
      >>> ws = (jnp.eye(2), 2.0 * jnp.eye(2))
      >>> loss, new = gd_step(ws, jnp.eye(2), jnp.eye(2), jnp.zeros(()), 1, 0.1, 0.0)
      >>> float(loss), round(float(new[1][0, 0]), 6)  # E = 2 I: loss 1, dF/dW_2 = (E - I) W_1^T = I
      (1.0, 1.9)
    """
    return descend(params, y, x, c0, n, lr, weight_decay, **per_network_products(prec))


def per_network_products(prec: str = "highest") -> dict[str, Callable]:
    """How :func:`gd_step` computes its products for one network (the ``matmul``,
    ``matmul_t`` and ``update`` of :func:`descend`): matmuls at ``prec``, the rank-r update
    fused into the decay (:func:`_outer`)."""
    p = precision(prec)
    return {
        "matmul": lambda w, h: jnp.matmul(w, h, precision=p),
        "matmul_t": lambda w, h: jnp.matmul(w.T, h, precision=p),
        "update": lambda w, decay, delta, h: decay * w - _outer(delta, h, p),
    }
