"""Random draws that compile fast: ``jr.normal`` drawn flat and reshaped.

With JAX's (default) partitionable threefry, element ``i`` of a draw depends only on the key
and ``i`` in row-major order, so a flat draw reshaped gives exactly the numbers of the
shaped draw. XLA's CPU backend, though, compiles the flat random-bits kernel about 10x
faster (measured: 0.3 s against 3.0 s for eight vmapped (40, 10) draws), and the weight
init and problem draws sit inside every compiled sweep group.
"""

from __future__ import annotations

import math

import jax
import jax.random as jr

Array = jax.Array


def normal(key: Array, shape: tuple[int, ...], dtype=float) -> Array:
    """Exactly ``jax.random.normal(key, shape, dtype)``, compiled faster.

    Example:
      >>> k = jr.key(3)
      >>> bool((normal(k, (4, 5)) == jr.normal(k, (4, 5))).all())
      True
    """
    return jr.normal(key, (math.prod(shape),), dtype).reshape(shape)
