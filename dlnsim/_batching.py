"""One network's function whose ``vmap`` runs a whole-batch implementation.

The block step (:mod:`dlnsim.blocked`) and the on-chip kernel (:mod:`dlnsim.onchip`) are
written for a batch of runs; the engine vmaps one network's step in one place
(:func:`dlnsim.grid._train_batch`). :func:`per_network` connects the two with
``jax.custom_batching.custom_vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap


def per_network(on_batch: Callable[[int, list, Any], Any], alone: Callable | None = None) -> Callable:
    """A function of one network's arrays whose ``vmap`` is ``on_batch`` on the batch.

    ``on_batch(size, leaves, tree)`` gets the flat leaves of the arguments, each with a
    leading run axis of ``size`` (unbatched arguments broadcast), and ``tree`` to rebuild
    them; it returns a pytree of arrays with that leading axis. Called on one network, the
    result runs ``alone(*args)`` if given, else ``on_batch`` on a batch of one.

    Example:
      >>> g = per_network(lambda size, leaves, tree: leaves[0] * leaves[1][:, None])  # (runs, 3) x (runs,)
      >>> g(jnp.ones(3), 2.0).shape, jax.vmap(g, in_axes=(0, None))(jnp.ones((5, 3)), 2.0).shape
      ((3,), (5, 3))
    """

    def lifted(*args):
        # custom_vmap sees flat leaves: pytree nodes that validate their fields (HParams)
        # cannot be rebuilt around its per-leaf "is batched" flags.
        leaves, tree = jax.tree.flatten(args)

        @custom_vmap
        def one(*leaves):
            if alone is not None:
                return alone(*jax.tree.unflatten(tree, leaves))
            out = on_batch(1, [jnp.asarray(a)[None] for a in leaves], tree)
            return jax.tree.map(lambda a: a[0], out)

        @one.def_vmap
        def _batched(axis_size, in_batched, *leaves):
            lead = [a if b else jnp.broadcast_to(a, (axis_size, *jnp.shape(a))) for a, b in zip(leaves, in_batched)]
            out = on_batch(axis_size, lead, tree)
            return out, jax.tree.map(lambda _: True, out)

        return one(*leaves)

    return lifted
