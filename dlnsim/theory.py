"""Closed forms of SCIENCE.md section 3: what a faithful simulation must reproduce.

All functions are pure ``jax.numpy`` (usable under ``jit``/``vmap`` and in float64).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dlnsim import _lapack as lapack
from dlnsim.model import exact_matmuls

Array = jax.Array

_BISECT_ITERS = 200  # halves [0, 1] below float64 resolution

# The optimisers (TrainConfig.optimizer) each closed form holds for.
# D1 needs W_1's update to be (1 - eta lambda) W_1 minus a matrix whose rows lie in range(Y):
# plain gradient descent only (momentum carries past steps in, Adam rescales elementwise,
# which moves the data update off range(Y); adamw measured 0.84-0.88 of the D1 rate).
D1_OPTIMIZERS = ("gd",)
# The limit E* and the collapse thresholds describe critical points of F. Those are the fixed
# points of every optimiser whose weight decay is the gradient of F's L2 term; adamw's
# decoupled decay is not (its fixed points solve "Adam direction + lambda W = 0").
LIMIT_OPTIMIZERS = ("gd", "momentum", "adam")


def _bisect(f, lo: Array, hi: Array) -> Array:
    """Root of ``f`` in [lo, hi] with ``f(lo) <= 0 <= f(hi)`` or the reverse (elementwise)."""
    sign_lo = jnp.sign(f(lo))

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        same = jnp.sign(f(mid)) == sign_lo
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECT_ITERS, body, (lo, hi))
    return 0.5 * (lo + hi)


def limit_gain(c: Array, depth: int) -> Array:
    """Largest root ``h`` in (0, 1) of ``(h - 1) + c h^(2/L - 1) = 0``; 0 where none exists.

    ``c = lambda / (kappa sigma^(2/L))`` per singular direction of ``B``. The limit map
    scales direction i by ``h_i / sigma_i`` (SCIENCE.md "Limit"). ``L = 1``: ``1/(1+c)``;
    ``L = 2``: ``max(1 - c, 0)``; ``L >= 3``: bisection right of the minimiser of the
    left-hand side, 0 past the collapse threshold :func:`collapse_threshold`.

    Example:
      >>> float(limit_gain(jnp.asarray(0.5), 2))
      0.5
    """
    c = jnp.asarray(c)
    if depth == 1:
        return 1.0 / (1.0 + c)
    if depth == 2:
        return jnp.maximum(1.0 - c, 0.0)
    p = 2.0 / depth - 1.0  # exponent, in (-1, 0)
    g = lambda h: h - 1.0 + c * h**p  # noqa: E731
    cc = jnp.maximum(c, jnp.finfo(c.dtype).tiny)
    h_min = (cc * (depth - 2) / depth) ** (depth / (2.0 * (depth - 1)))  # g'(h_min) = 0
    h_min = jnp.clip(h_min, 0.0, 1.0)
    exists = (g(h_min) <= 0) & (c > 0)
    root = _bisect(g, h_min, jnp.ones_like(c))
    return jnp.where(c == 0, 1.0, jnp.where(exists, root, 0.0))


def collapse_threshold(depth: int) -> float:
    """``c*``: above it the scalar equation loses its nonzero root (``L >= 3``).

    ``c* = (L/(L-2)) ((L-2)/(2(L-1)))^(2(L-1)/L)``; ``L = 2``: 1; ``L = 1``: inf.

    Example:
      >>> round(collapse_threshold(3), 4)
      0.4725
    """
    if depth == 1:
        return math.inf
    if depth == 2:
        return 1.0
    L = depth
    return (L / (L - 2)) * ((L - 2) / (2 * (L - 1))) ** (2 * (L - 1) / L)


def _gain_host(c: float, depth: int) -> float:
    """Float64 host version of :func:`limit_gain` for one ``c`` (L >= 3)."""
    p = 2.0 / depth - 1.0
    g = lambda h: h - 1.0 + c * h**p  # noqa: E731
    h_min = (c * (depth - 2) / depth) ** (depth / (2.0 * (depth - 1)))
    if g(h_min) > 0:
        return 0.0
    lo, hi = h_min, 1.0
    for _ in range(_BISECT_ITERS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def global_collapse_threshold(depth: int) -> float:
    """Smallest ``c`` at which ``E = 0`` is (weakly) the global minimiser per direction.

    Below :func:`collapse_threshold` the nonzero root still exists but stops being the
    global minimum here (L=3: 0.397, 4: 0.272, 5: 0.210, 8: 0.127). L = 1: inf, L = 2: 1.
    Per direction the objective over kappa is ``(h-1)^2/2 + (L c/2) h^(2/L)``; at h = 0
    it is 1/2.

    Example:
      >>> round(global_collapse_threshold(5), 3)
      0.21
    """
    if depth <= 2:
        return collapse_threshold(depth)

    def gap(c: float) -> float:
        h = _gain_host(c, depth)
        return 0.5 * (h - 1.0) ** 2 + 0.5 * depth * c * h ** (2.0 / depth) - 0.5

    lo, hi = 1e-9, collapse_threshold(depth)
    for _ in range(_BISECT_ITERS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def kappa(loss: str, n_train: int) -> float:
    """The code scale of the limit equation for whitened codes (``Z Z^T = N I``): 1 for the
    mean loss, ``N`` for the sum loss (SCIENCE.md section 3, Limit)."""
    return 1.0 if loss == "mean" else float(n_train)


@exact_matmuls
def limit_map(b: Array, u: Array, weight_decay: Array, depth: int, kappa: Array | float = 1.0) -> Array:
    """Closed-form limit ``E* = U V diag(h_i / sigma_i) Q^T`` for whitened codes.

    With ``Z Z^T = kappa N I`` (mean loss; use ``kappa * N`` for the sum loss) and the
    SVD ``B = Q Sigma V^T``, ``h_i = limit_gain(lambda / (kappa sigma_i^(2/L)), L)``.
    The nonzero critical point is returned (gains set to 0 past the threshold where it
    stops existing).

    Args:
      b: (m, s) ``B = A U``.
      u: (d, s) latent basis.
      weight_decay: lambda.
      depth: L.
      kappa: code scale (1 for whitened codes and the mean loss).

    Returns:
      (d, m) the limit end-to-end map.
    """
    q, sv, vt = lapack.svd(b)
    h = limit_gain(weight_decay / (kappa * sv ** (2.0 / depth)), depth)
    return (u @ vt.T * (h / sv)) @ q.T


@exact_matmuls
def ridge(x: Array, y: Array, weight_decay: Array | float, loss: str = "mean") -> Array:
    """Ridge solution, the L = 1 limit: ``X Y^T (Y Y^T + N lambda I)^{-1}`` (mean loss)."""
    n = y.shape[1] if loss == "mean" else 1.0
    gram = y @ y.T + n * weight_decay * jnp.eye(y.shape[0], dtype=y.dtype)
    return jnp.linalg.solve(gram, y @ x.T).T


def noise_error(clean_sq: Array, e2e_fro_sq: Array, signal_sq: Array, sigmas: Array) -> Array:
    """Relative test error under measurement noise, closed form D4.

    ``E||E y - x||^2 = ||(E A - I) x||^2 + sigma^2 ||E||_F^2`` per test signal, so over
    T signals the relative error is ``sqrt((clean_sq + T sigma^2 ||E||_F^2) / signal_sq)``
    with ``clean_sq`` and ``signal_sq`` summed over the test set and ``e2e_fro_sq``
    multiplied by T by the caller.
    """
    return jnp.sqrt((clean_sq + sigmas**2 * e2e_fro_sq) / signal_sq)


def phase3_steps(w1_off_fro_0: Array, lr: Array, weight_decay: Array, eps: float) -> Array:
    """Predicted steps until ``||W_1 P_perp||_F <= eps`` under D1 (inf with no weight decay;
    0 where it starts there, e.g. at init scale 0).

    ``||W_1(t) P_perp|| = (1 - eta lambda)^t ||W_1(0) P_perp||``, so
    ``t = ln(eps / ||W_1(0) P_perp||) / ln(1 - eta lambda)``.
    """
    w0, eps = jnp.asarray(w1_off_fro_0), jnp.asarray(eps)
    rate = jnp.log1p(-lr * weight_decay)
    above = w0 > eps
    steps = jnp.log(eps / jnp.where(above, w0, 1.0)) / jnp.where(rate < 0, rate, -1.0)
    return jnp.where(above, jnp.where(rate < 0, steps, jnp.inf), 0.0)
