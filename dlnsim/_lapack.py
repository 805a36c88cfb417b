"""Matrix decompositions that cannot hang XLA's CPU runtime: one matrix per LAPACK call.

jaxlib's CPU kernels for eigh, SVD and QR split a batch of matrices over XLA's thread pool
and then block a pool thread until the pieces are done. When as many such calls run at
once as the pool has threads, every thread waits for work that no thread is free to run,
and the process hangs with no CPU use. That happens whenever a vmapped decomposition runs
on several CPU devices at once (measured on 2 cores: a sweep of 64 small runs over 2
forced host devices hung in the metrics' eigh), or twice in one program.

One matrix per call runs on the calling thread and never waits on the pool. So on a CPU
these functions take the matrices one at a time, also under ``vmap`` (a loop,
``jax.custom_batching.sequential_vmap``), which is no slower there: 512 symmetric (100, 100)
eigenproblems took 480-580 ms one at a time against 730 ms in one batched call. Other
backends batch as usual.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.custom_batching import sequential_vmap

Array = jax.Array


def _one_matrix_per_call(fn: Callable) -> Callable:
    """``fn`` of one matrix, applied over any leading axes; on a CPU one matrix per call."""
    looped = sequential_vmap(fn)

    @functools.wraps(fn)
    def call(a: Array):
        f = looped if jax.default_backend() == "cpu" else fn
        for _ in range(a.ndim - 2):
            f = jax.vmap(f)
        return f(a)

    return call


@_one_matrix_per_call
def eigh(a: Array) -> tuple[Array, Array]:
    """``(eigenvalues ascending, eigenvectors)`` of symmetric matrices (``jnp.linalg.eigh``)."""
    return tuple(jnp.linalg.eigh(a))


@_one_matrix_per_call
def qr(a: Array) -> tuple[Array, Array]:
    """Reduced ``(q, r)`` (``jnp.linalg.qr``)."""
    return tuple(jnp.linalg.qr(a))


@_one_matrix_per_call
def svd(a: Array) -> tuple[Array, Array, Array]:
    """Thin ``(u, s, vt)`` (``jnp.linalg.svd(a, full_matrices=False)``)."""
    return tuple(jnp.linalg.svd(a, full_matrices=False))


@_one_matrix_per_call
def svdvals(a: Array) -> Array:
    """Singular values, descending (``jnp.linalg.svd(a, compute_uv=False)``)."""
    return jnp.linalg.svd(a, compute_uv=False)
