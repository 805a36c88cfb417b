"""The subspace inverse problem (SCIENCE.md section 1) and its exact data reduction.

Everything here is a pure function of a key and static sizes, so problems can be drawn
inside ``jit``/``vmap`` (one teacher per run when the sweep asks for it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from dlnsim import _lapack as lapack
from dlnsim._checks import check_choice, check_x64
from dlnsim._random import normal
from dlnsim.config import DTYPES, ProblemConfig
from dlnsim.model import exact_matmuls, precision

Array = jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["a", "u", "b", "qb", "x", "y", "x_test", "y_test", "test_root", "e_test", "train_noise"],
    meta_fields=["cfg", "noise_free"],
)
@dataclasses.dataclass(frozen=True)
class Problem:
    """One inverse problem: teacher, training set and test set (shapes for N, T).

    A pytree whose arrays are leaves and whose config is static metadata, so it can be
    made inside ``jit``/``vmap`` and passed to :func:`dlnsim.train` on its own.

    Attributes:
      cfg: static: the sizes and options it was made with
      noise_free: static: the training measurements carry no noise (rank Y = s)
      a: (m, d) measurement operator A
      u: (d, s) orthonormal basis of the latent subspace
      b: (m, s) B = A U
      qb: (m, s) orthonormal basis of range(B); P = qb qb^T
      x: (d, N) training signals X = U Z
      y: (m, N) training measurements Y = A X + noise
      x_test: (d, T) fresh test signals
      y_test: (m, T) their clean measurements A x_test
      test_root: (s, min(s, T)) R with Z_test Z_test^T = R R^T (x_test = U Z_test), see
        clean_residual_sq
      e_test: (m, T) unit-variance Gaussian noise draw for Monte Carlo checks
      train_noise: () std of the training measurement noise
    """

    cfg: ProblemConfig
    noise_free: bool
    a: Array
    u: Array
    b: Array
    qb: Array
    x: Array
    y: Array
    x_test: Array
    y_test: Array
    test_root: Array
    e_test: Array
    train_noise: Array


class Data(NamedTuple):
    """What the loss sees: ``F_data = (||E y - x||_F^2 + c0) / (2 n)``.

    The raw path has ``y = Y``, ``x = X``, ``c0 = 0``. The reduced path has the r-column
    factors of SCIENCE.md "Exact data reduction", which give the same loss and gradients.

    Attributes:
      y: (m, r) inputs
      x: (d, r) targets
      c0: () constant part of the squared residual ||X (I - V_r V_r^T)||_F^2
    """

    y: Array
    x: Array
    c0: Array


def data_loss(resid: Array, c0: Array, n: int) -> Array:
    """``F_data`` from the residual ``E y - x`` of :class:`Data`: ``(||resid||_F^2 + c0) / (2 n)``.

    ``resid`` is (d, k), or (d, k, B) for a block of runs (then c0 is (B,) and so is the loss).
    """
    return 0.5 * (jnp.sum(resid * resid, axis=(0, 1)) + c0) / n


def _operator(key: Array, cfg: ProblemConfig, dtype: jnp.dtype) -> Array:
    d, m = cfg.d, cfg.m
    if cfg.operator == "gaussian":
        return normal(key, (m, d), dtype) / math.sqrt(m)
    if cfg.operator == "orthonormal":
        q, _ = lapack.qr(normal(key, (d, m), dtype))
        return math.sqrt(d / m) * q.T
    # Subsampled orthonormal DCT-II: the usual compressed-sensing operator.
    n = jnp.arange(d, dtype=dtype)
    k = jnp.arange(d, dtype=dtype)[:, None]
    c = jnp.cos(jnp.pi * (n + 0.5) * k / d) * math.sqrt(2.0 / d)
    c = c.at[0].multiply(1.0 / math.sqrt(2.0))
    rows = jr.choice(key, d, (m,), replace=False)
    return math.sqrt(d / m) * c[jnp.sort(rows)]


def _whiten(z: Array) -> Array:
    """Rescale codes so that ``Z Z^T = N I`` exactly (symmetric inverse square root)."""
    n = z.shape[1]
    evals, evecs = lapack.eigh(z @ z.T)
    return math.sqrt(n) * (evecs * jax.lax.rsqrt(evals)) @ evecs.T @ z


def check_seed(seed: object, field: str = "seed") -> None:
    """Raises ``ValueError`` for a seed that a key cannot fold in: ``fold_in`` takes a uint32.

    JAX arrays pass unchecked (they may be traced; the sweep makes them from checked configs).

    Example:
      >>> check_seed(-1)
      Traceback (most recent call last):
      ...
      ValueError: seed = -1 is invalid: must be an integer in [0, 2**32)
    """
    if isinstance(seed, jax.Array):
        return
    value = seed.item() if isinstance(seed, np.integer | np.ndarray) and np.ndim(seed) == 0 else seed
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ValueError(f"{field} = {seed!r} is invalid: must be an integer in [0, 2**32)")


def problem_key(problem_seed: int | Array, seed: int | Array | None = None) -> Array:
    """The teacher's key: from ``problem_seed`` alone, or per run seed when given.

    Drawn from a different root than initialisation keys (:func:`dlnsim.training.init_key`),
    so equal seed numbers never share random streams.
    """
    key = jr.fold_in(jr.key(1), problem_seed)
    return key if seed is None else jr.fold_in(key, seed)


@exact_matmuls
def make_problem(
    cfg: ProblemConfig,
    seed: int | Array = 0,
    *,
    train_noise: float | Array = 0.0,
    dtype: str = "float32",
    key: Array | None = None,
) -> Problem:
    """Draws a latent subspace, an operator, training and test sets.

    ``X = U Z`` with ``Z ~ N(0, I_s)`` (optionally whitened), ``Y = A X + train_noise * N(0, I)``.

    Args:
      cfg: sizes and options.
      seed: the problem seed, an integer in [0, 2**32) (ignored when ``key`` is given).
      train_noise: std of the training measurement noise (may be traced).
      dtype: ``"float32"`` or ``"float64"``.
      key: a typed PRNG key, used instead of ``seed`` (the sweep derives it).

    Returns:
      A :class:`Problem`.

    Example:
      >>> p = make_problem(ProblemConfig(d=20, m=10, s=2, n_train=30), seed=0)
      >>> p.a.shape, p.u.shape, p.x.shape, p.y.shape
      ((10, 20), (20, 2), (20, 30), (10, 30))
    """
    check_choice("make_problem", "dtype", dtype, DTYPES)
    check_x64("make_problem.dtype", dtype)
    if key is None:
        check_seed(seed)
        key = problem_key(seed)
    # Noise-free is static only when known at trace time (a Python 0): it selects rank s.
    noise_free = isinstance(train_noise, int | float) and train_noise == 0
    return _draw(cfg, key, train_noise, dtype=dtype, noise_free=noise_free)


@functools.partial(jax.jit, static_argnames=("cfg", "dtype", "noise_free"))
def _draw(cfg: ProblemConfig, key: Array, train_noise: Array, *, dtype: str, noise_free: bool) -> Problem:
    dt = jnp.dtype(dtype)
    k_u, k_a, k_z, k_noise, k_test, k_etest = jr.split(key, 6)
    u, _ = lapack.qr(normal(k_u, (cfg.d, cfg.s), dt))
    a = _operator(k_a, cfg, dt)
    z = normal(k_z, (cfg.s, cfg.n_train), dt)
    if cfg.whiten:
        z = _whiten(z)
    x = u @ z
    noise = jnp.asarray(train_noise, dt)
    y = a @ x
    if not noise_free:
        y = y + noise * normal(k_noise, (cfg.m, cfg.n_train), dt)
    z_test = normal(k_test, (cfg.s, cfg.n_test), dt)
    x_test = u @ z_test
    b = a @ u
    qb, _ = lapack.qr(b)
    _, r = lapack.qr(z_test.T)  # Z_test^T = Q r, so Z_test Z_test^T = r^T r
    return Problem(
        cfg=cfg,
        noise_free=noise_free,
        a=a,
        u=u,
        b=b,
        qb=qb,
        x=x,
        y=y,
        x_test=x_test,
        y_test=a @ x_test,
        test_root=r.T,
        e_test=normal(k_etest, (cfg.m, cfg.n_test), dt),
        train_noise=noise,
    )


def clean_residual_sq(on_resid: Array, problem: Problem, prec: str = "highest") -> Array:
    """``||E y_test - x_test||_F^2`` of a linear map E from ``on_resid = E B - U`` (d, s).

    The clean test signals are ``x_test = U Z_test`` and ``y_test = B Z_test``, so the
    residual is ``(E B - U) Z_test`` and its squared norm ``||(E B - U) R||_F^2`` with
    ``Z_test Z_test^T = R R^T`` (``Problem.test_root``): d s^2 multiply-adds instead of
    the d m T of ``E y_test``, and no cancellation (an orthogonal factorisation).
    """
    resid = jnp.matmul(on_resid, problem.test_root, precision=precision(prec))
    return jnp.sum(resid * resid)


def data_rank(problem: Problem) -> int:
    """Static column count of the reduced data: ``rank Y`` (s when noise-free)."""
    return reduced_rank(problem.cfg, noisy=not problem.noise_free)


def reduced_rank(cfg: ProblemConfig, noisy: bool) -> int:
    """``rank Y`` from the config: s noise-free, min(m, N) with training noise."""
    return min(cfg.m, cfg.n_train) if noisy else cfg.s


def raw_data(problem: Problem) -> Data:
    """The N training samples as they are."""
    return Data(y=problem.y, x=problem.x, c0=jnp.zeros((), problem.y.dtype))


@exact_matmuls
def reduce_data(problem: Problem) -> Data:
    """Exact r-column reduction of the training set (SCIENCE.md "Exact data reduction").

    With a thin SVD ``Y = Q_r S_r V_r^T``:
    ``||E Y - X||^2 = ||E Q_r S_r - X V_r||^2 + ||X (I - V_r V_r^T)||^2``, so training on
    ``(Q_r S_r, X V_r)`` gives the same gradients as training on all N samples.

    Args:
      problem: the problem whose training set to reduce; its static rank
        (:func:`data_rank`) is s for noise-free data, else ``min(m, N)``.

    Returns:
      :class:`Data` with r columns.
    """
    rank = data_rank(problem)
    q, sv, vt = lapack.svd(problem.y)
    q, sv, v = q[:, :rank], sv[:rank], vt[:rank].T
    xv = problem.x @ v
    rest = problem.x - xv @ v.T
    return Data(y=q * sv, x=xv, c0=jnp.sum(rest * rest))
