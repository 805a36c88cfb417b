"""The network: initialisation, forward pass and end-to-end map (SCIENCE.md section 2).

Parameters are a tuple ``(W_1, ..., W_L)`` with ``W_1`` (w, m), ``W_2..W_{L-1}`` (w, w)
and ``W_L`` (d, w); ``L = 1`` is a single (d, m) matrix.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr

from dlnsim._random import normal
from dlnsim.config import ModelConfig

Array = jax.Array
Params = tuple[Array, ...]

_PRECISION = {"highest": jax.lax.Precision.HIGHEST, "default": jax.lax.Precision.DEFAULT}


def precision(name: str) -> jax.lax.Precision:
    """The matmul precision of a ``TrainConfig.precision`` name.

    ``"highest"`` asks GPUs and TPUs for true float32 (not TF32/bf16 passes). CPUs always
    multiply in full float32, and there XLA's HIGHEST path skips the fast GEMM kernels
    (3x slower at the paper's sizes, measured), so CPUs get DEFAULT: the same arithmetic.
    """
    if name == "highest" and jax.default_backend() == "cpu":
        return jax.lax.Precision.DEFAULT
    return _PRECISION[name]


def exact_matmuls(fn: Callable) -> Callable:
    """``fn`` with true float32 products wherever it names no precision (off CPUs).

    JAX's default lets GPUs multiply float32 in TF32 (10 mantissa bits) and TPUs in
    bfloat16 passes. The network's products follow ``TrainConfig.precision`` (they name
    it), but the problem draws, the exact data reduction, the subspace metrics and the
    closed forms are the reference the training is measured against: their products take
    :func:`precision` ``("highest")`` whatever the backend. (CPUs multiply float32 in full
    at any setting: there ``"default"``, XLA's fast path.) Works eagerly and inside a
    trace: the setting is read when ``fn``'s products are traced.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("default" if jax.default_backend() == "cpu" else "highest"):
            return fn(*args, **kwargs)

    return wrapped


def layer_shapes(model: ModelConfig, m: int, d: int) -> list[tuple[int, int]]:
    """(fan_out, fan_in) of each layer, first to last."""
    dims = [m] + [model.width] * (model.depth - 1) + [d]
    return [(dims[i + 1], dims[i]) for i in range(model.depth)]


def init_params(
    key: Array, model: ModelConfig, m: int, d: int, init_scale: float | Array = 1.0, dtype: str = "float32"
) -> Params:
    """Draws ``(W_1, ..., W_L)`` from the model's init scheme times ``init_scale``.

    Example:
      >>> ws = init_params(jr.key(0), ModelConfig(depth=3, width=8), m=4, d=6)
      >>> [w.shape for w in ws]
      [(8, 4), (8, 8), (6, 8)]
    """
    dt = jnp.dtype(dtype)
    params = []
    for layer_key, (fan_out, fan_in) in zip(jr.split(key, model.depth), layer_shapes(model, m, d)):
        if model.init == "orthogonal":
            w = jax.nn.initializers.orthogonal()(layer_key, (fan_out, fan_in), dt)
        else:
            var = {"lecun": 1.0 / fan_in, "he": 2.0 / fan_in, "xavier": 2.0 / (fan_in + fan_out)}[model.init]
            w = math.sqrt(var) * normal(layer_key, (fan_out, fan_in), dt)
        params.append(jnp.asarray(init_scale, dt) * w)
    return tuple(params)


def forward(params: Params, y: Array, activation: str = "linear", prec: str = "highest") -> Array:
    """``f(y) = W_L s(... s(W_1 y))`` with ``s`` the identity or ReLU; y is (m, n) (or a stack
    (..., m, n): the products broadcast)."""
    p = precision(prec)
    h = y
    for i, w in enumerate(params):
        h = jnp.matmul(w, h, precision=p)
        if activation == "relu" and i < len(params) - 1:
            h = jax.nn.relu(h)
    return h


def end_to_end(params: Params, prec: str = "highest") -> Array:
    """The end-to-end map ``E = W_L ... W_1`` (d, m) of a linear network."""
    p = precision(prec)
    e2e = params[0]
    for w in params[1:]:
        e2e = jnp.matmul(w, e2e, precision=p)
    return e2e
