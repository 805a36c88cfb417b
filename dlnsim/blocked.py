"""Gradient descent on a block of small networks at once, run axis last (the CPU fast path).

``vmap`` of the per-network step (:func:`dlnsim.backward.gd_step`) puts the run axis first,
so every product ``W h`` becomes a batch of tiny matrix products: at the small sizes
(width 40, two data columns) XLA's CPU runtime spends about 1.5 us on each and the step runs
at a few GFLOP/s. With the run axis *last*, each product is an elementwise multiply over
the weights and a sum over the contraction axis, loops that the compiler vectorises across
runs. Two things keep those loops in cache, both measured on 2 CPU cores at the small sizes
(256 runs, ``benchmarks/throughput.py``):

* **Short sums** (:data:`MAX_TERMS`). XLA's CPU compiler fuses a sum of at most 32
  terms into the loop that computes its products; a longer one it rewrites into a tree
  whose first level writes every product to memory (a (40, 40, 2, B) array per product at
  width 40, twice the weights). The contraction is summed in a power of two of balanced
  pieces of at most 20 terms instead: pieces of 21-32 terms, or three pieces, measured up
  to 3x slower than whole sums at width 60-64.
* **Blocks that fit a core's cache** (:data:`BLOCK_BYTES`). On a CPU the batch is cut into
  blocks of about that working set per device, trained one after another for the whole
  ``log_every`` steps (``lax.map``), so a block's weights stay in cache across steps
  instead of streaming all runs through memory every step.

Together, at the small sizes: about 300k network-steps per second against 160k-220k for
one block of all runs with whole sums (the same hour); width 32 runs 3x faster, and the
built-in phase diagram (width 64) as fast as before. Pieces on one big block are slower
than whole sums, and so are blocks of 8 runs.
On an Intel Xeon with AVX-512 (2026-12-01), with 512-bit vectors
(:data:`CPU_COMPILER_OPTIONS`) and each weight updated in place
(:func:`dlnsim.backward.descend`), the block step runs at 888k, 3.6x the fused step.
The sweep's step (:func:`gd_step_block_ahead`, 2026-12-02) also carries the activations
from one step to the next: each layer's update is followed at once by the next step's
forward product through it, while the new weights are in cache
(:func:`dlnsim.backward.descend_ahead`): 1.16-1.33x faster again on 2 AMD EPYC cores
(1.14-1.18M against 0.89-0.99M network-steps/s, three alternating runs each); the
built-in sweep's results file came out bitwise the same.

:func:`run_axis_last` lifts a function written for a trailing run axis into a per-network
function (``jax.custom_batching.custom_vmap``): called on one network it runs on a block of
one; under ``vmap`` it runs on the whole batch, block by block. So ``simulate`` still
describes one network and the sweep's ``vmap`` stays the only place runs are batched
(STYLE.md 1); the batching rule is where the block layout lives, as a Pallas kernel over a
block of runs would.

The step is exactly SCIENCE.md section 2; tests check it against ``jax.grad`` to float64
rounding, and a run's result does not depend on which runs share its block (bitwise).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from dlnsim._batching import per_network
from dlnsim.backward import descend, descend_ahead, forward_pass
from dlnsim.model import Params
from dlnsim.onchip import pow2

Array = jax.Array

LANES = 8  # blocks are padded to a multiple of this: whole vectors, the same code for every run
BLOCK_BYTES = 1024 * 1024  # CPU: working set per device and block (0.5 and 2-4 MiB measured slower)
MAX_TERMS = 20  # products are summed in pieces of at most this many terms (see above)
MAX_WIDTH = 64  # widest hidden layer the block step is chosen for by default (CPU only)

# XLA's CPU compiler hands reductions to YNNPACK by default, which runs the block step's
# multiply-and-sum loops 4x slower than its own vectorised loops (measured: 470 us against
# 112 us for a (40, 40) block of 256 runs). Dots still go to YNNPACK.
# It also vectorises its own loops 256 bits wide by default; on a CPU with AVX-512, 512-bit
# vectors (16 runs of a block per instruction) run the block step 1.3x faster (measured on
# 2 Intel Xeon cores at the small sizes: 723k-745k against 558k-560k network-steps/s). Without
# AVX-512 the compiler has no wider vectors to use and the option changes nothing.
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
    "xla_cpu_prefer_vector_width": "512",
}


@functools.cache
def compiler_options() -> dict[str, str]:
    """The options dlnsim's jits compile with: those of :data:`CPU_COMPILER_OPTIONS` that a
    CPU backend's XLA knows, else none.

    Option names are XLA internals that come and go between jaxlib versions, and XLA
    rejects a name it does not know, which would fail every compile. So each is checked
    once, the first time a sweep compiles (not at import: that would start the backends).
    """
    if jax.default_backend() != "cpu":
        return {}
    return {k: v for k, v in CPU_COMPILER_OPTIONS.items() if supported({k: v})}


def supported(options: dict[str, str]) -> dict[str, str]:
    """``options`` if a one-line program compiles with them on the default backend, else ``{}``."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(jnp.zeros(())).compile()
    except (RuntimeError, TypeError):  # XLA's "No such compile option", or no such jit argument
        return {}
    return dict(options)


def matmul(w: Array, h: Array) -> Array:
    """``w @ h`` per run: w (o, i, B), h (i, k, B) -> (o, k, B) (or without the run axis)."""
    return _sum(w[:, :, None, ...] * h[None, :, :, ...], axis=1)


def matmul_t(w: Array, h: Array) -> Array:
    """``w.T @ h`` per run: w (o, i, B), h (o, k, B) -> (i, k, B) (or without the run axis)."""
    return _sum(w[:, :, None, ...] * h[:, None, :, ...], axis=0)


def _sum(products: Array, axis: int) -> Array:
    """``jnp.sum(products, axis)`` in a power of two of balanced pieces of at most
    :data:`MAX_TERMS` terms, each fused into the loop that computes its products (see the
    module docstring)."""
    n = products.shape[axis]
    pieces = pow2(math.ceil(n / MAX_TERMS))
    cuts = [i * n // pieces for i in range(pieces + 1)]
    parts = (jnp.sum(jax.lax.slice_in_dim(products, a, b, axis=axis), axis=axis) for a, b in zip(cuts, cuts[1:]))
    return functools.reduce(operator.add, parts)


def block_layout(size: int, bytes_per_run: int, cpu: bool = True) -> tuple[int, int]:
    """``(blocks, runs per block)`` that cover a batch of ``size`` runs (on one device).

    On a CPU each block holds about :data:`BLOCK_BYTES` of working set (at least
    :data:`LANES` runs), and the blocks are as even as whole vectors allow; elsewhere there
    is one block. A block is a whole number of :data:`LANES`.

    Example:
      >>> block_layout(128, 24_576)  # the small sizes, one of 2 devices' 128 runs: 32 runs a block
      (4, 32)
      >>> block_layout(5, 24_576), block_layout(256, 24_576, cpu=False)
      ((1, 8), (1, 256))
    """
    blocks = 1
    if cpu:
        per_block = max(LANES, BLOCK_BYTES // max(bytes_per_run, 1) // LANES * LANES)
        blocks = math.ceil(size / per_block)
    return blocks, math.ceil(math.ceil(size / blocks) / LANES) * LANES


def gd_step_block(
    params: Params, y: Array, x: Array, c0: Array, n: int, lr: Array, weight_decay: Array
) -> tuple[Array, Params]:
    """One GD step of each run of a block: :func:`dlnsim.backward.gd_step` with a trailing run axis
    (both are :func:`dlnsim.backward.descend`).

    Args:
      params: ``(W_1, ..., W_L)``, each (fan_out, fan_in, B).
      y, x: training inputs (m, k, B) and targets (d, k, B).
      c0: (B,) the constant part of the reduced loss.
      n: the loss normaliser.
      lr, weight_decay: (B,) eta and lambda.

    Returns:
      ``((B,) data loss before the step, updated params)``.

    Example:
      >>> ws = (jnp.eye(2)[..., None], 2.0 * jnp.eye(2)[..., None])
      >>> i2, zero = jnp.eye(2)[..., None], jnp.zeros(1)
      >>> loss, new = gd_step_block(ws, i2, i2, zero, 1, jnp.full(1, 0.1), zero)
      >>> float(loss[0]), round(float(new[1][0, 0, 0]), 6)  # as gd_step's example
      (1.0, 1.9)
    """
    return descend(params, y, x, c0, n, lr, weight_decay, matmul=matmul, matmul_t=matmul_t, update=_update)


def forward_block(params: Params, y: Array) -> list[Array]:
    """The activations of each run of a block (:func:`dlnsim.backward.forward_pass`, run axis last)."""
    return forward_pass(params, y, matmul)


def gd_step_block_ahead(
    params: Params,
    hs: list[Array],
    x: Array,
    c0: Array,
    n: int,
    lr: Array,
    weight_decay: Array,
    keep: Callable[[Array, Array], Array] | None = None,
) -> tuple[Array, Params, list[Array]]:
    """:func:`gd_step_block` given the activations of ``params`` (:func:`forward_block`),
    returning those of the updated params too (:func:`dlnsim.backward.descend_ahead`, whose
    ``keep`` applies the divergence freeze).

    Example:
      >>> ws = (jnp.eye(2)[..., None], 2.0 * jnp.eye(2)[..., None])
      >>> i2, zero = jnp.eye(2)[..., None], jnp.zeros(1)
      >>> loss, new, hs = gd_step_block_ahead(ws, forward_block(ws, i2), i2, zero, 1, jnp.full(1, 0.1), zero)
      >>> float(loss[0]), round(float(new[1][0, 0, 0]), 6)  # as gd_step's example
      (1.0, 1.9)
      >>> round(float(hs[-1][0, 0, 0]), 6)  # the new output: W_2' W_1' = 1.9 x 0.8
      1.52
    """
    return descend_ahead(
        params, hs, x, c0, n, lr, weight_decay, matmul=matmul, matmul_t=matmul_t, update=_update, keep=keep
    )


def _update(w: Array, decay: Array, delta: Array, h: Array) -> Array:
    """``decay w - delta h^T`` per run, a sum of k broadcast products (one fused loop)."""
    out = decay * w
    for k in range(delta.shape[1]):
        out = out - delta[:, None, k, ...] * h[None, :, k, ...]
    return out


def run_axis_last(fn: Callable, alone: Callable | None = None) -> Callable:
    """A per-network function from ``fn``, written for arrays with a trailing run axis.

    ``fn(*args)`` takes and returns pytrees of arrays whose last axis is the run. The
    result ``g`` takes one network's arrays: ``vmap(g)`` runs ``fn`` on the whole batch
    (unbatched arguments are broadcast), in the blocks of :func:`block_layout` one after
    another, and ``g(*args)`` runs ``alone(*args)`` if given (the same function written for
    one network), else ``fn`` on a block of one. Blocks are padded to whole vectors by
    repeating the last run, so every run is computed by the same vector code whatever the
    batch size (results do not depend on the chunk size); ``alone`` spares one network that
    padding (8x the work).

    A block takes every ``blocks``-th run. The batch is one device's: the sweep gives each
    device its own runs (``shard_map``, :func:`dlnsim.grid._train_batch`).

    Example:
      >>> g = run_axis_last(lambda a, b: a * b)
      >>> g(jnp.ones(3), 2.0).shape, jax.vmap(g, in_axes=(0, None))(jnp.ones((5, 3)), 2.0).shape
      ((3,), (5, 3))
    """

    def on_blocks(size: int, leaves: list, tree: Any) -> Any:
        """``fn`` on ``size`` runs given with a leading run axis; outputs with a leading run axis."""
        bytes_per_run = sum(a.size // size * a.dtype.itemsize for a in leaves)
        blocks, per = block_layout(size, bytes_per_run, jax.default_backend() == "cpu")
        pad = blocks * per - size
        if pad:
            leaves = [jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) for a in leaves]
        # Run p * blocks + j is run p of block j: (per, blocks, ...) -> (blocks, ..., per).
        split = [jnp.moveaxis(a.reshape(per, blocks, *a.shape[1:]), (1, 0), (0, -1)) for a in leaves]
        on_block = lambda block: fn(*jax.tree.unflatten(tree, block))  # noqa: E731
        if blocks == 1:  # no loop of one
            out = jax.tree.map(lambda a: a[None], on_block([a[0] for a in split]))
        else:
            out = jax.lax.map(on_block, split)
        return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0).reshape(blocks * per, *a.shape[1:-1])[:size], out)

    return per_network(on_blocks, alone)
