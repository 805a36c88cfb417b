"""Many steps of a block of small networks in one Pallas kernel, weights kept on chip (GPU).

Each training step of the XLA paths reads every weight from device memory and writes it
back: at the small sizes that traffic, not arithmetic, bounds the step (issue 5: about 26M
network-steps per second on an H100 at four touches per weight). Here one Pallas program
trains one network for all the steps between two log points: it loads the weights once,
runs the steps on values held in registers (and whatever the compiler spills to on-chip
memory), and stores them once. The step inside (:func:`gd_step`) is the block step's
arithmetic on one network, with the same divergence freeze.

:func:`one_program_per_run` lifts a per-network function into one whose ``vmap`` is a single
``pallas_call`` with one program per run (``jax.custom_batching.custom_vmap``, as
:func:`dlnsim.blocked.run_axis_last` does): ``simulate`` still describes one network.
Triton, which compiles the kernel on GPUs, wants every array dimension a power of two, so
the arrays are zero-padded outside the kernel and cut back after. For a linear network's
gradient-descent step zero padding is exact: a padded unit has zero weights in and out, so
its gradients are zero and it stays zero; padded data columns add zero to the loss.

On other backends the kernel runs in Pallas's interpreter, for tests (at the small sizes on
2 CPU cores it ran at 29k network-steps/s, 0.6x the fused step, 64 runs).

Status, measured on an H200 (jax 0.11.2, small sizes of ``benchmarks/throughput.py``, 4096
runs, float32): the kernel runs and matches the fused step (final losses within 9e-4
relative after 500 steps), but it is slower than the fused XLA step, so
``TrainConfig(backward="auto")`` never picks it; ``backward="pallas"`` asks for it. At 2000
steps it ran at 6.8M, 11.9M, 14.6M and 11.1M network-steps/s with 2, 4, 8 and 16 warps per
program (hence :data:`NUM_WARPS`), against 15.7M for the fused step; at 10,000 steps 16.3M
against 18.5M. Padding the width 40 to 64 multiplies its arithmetic by 2.6, and the products
run as multiply-and-sum on the CUDA cores. jax 0.11 also deprecates the Pallas Triton
backend (a warning when the kernel is traced).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dlnsim._batching import per_network
from dlnsim.backward import descend
from dlnsim.model import Params

Array = jax.Array

NUM_WARPS = 8  # 256 threads per program: the fastest of 2, 4, 8, 16 on an H200 (see above)
MAX_SIZE = 64  # widest layer and most data columns the kernel takes (a program holds a network)


def gd_step(
    params: Params, y: Array, x: Array, c0: Array, n: int, lr: Array, weight_decay: Array
) -> tuple[Array, Params]:
    """One network's GD step as the kernel runs it: products as multiply and sum (no matrix
    unit), each sum whole, and the rank-r update as one sum over the data columns (Triton
    cannot slice a piece out of a value held in registers, so not the pieces of
    :func:`dlnsim.blocked.matmul`, which are for XLA's CPU compiler).

    Example:
      >>> ws = (jnp.eye(2), 2.0 * jnp.eye(2))
      >>> loss, new = gd_step(ws, jnp.eye(2), jnp.eye(2), jnp.zeros(()), 1, 0.1, 0.0)
      >>> float(loss), round(float(new[1][0, 0]), 6)  # as dlnsim.backward.gd_step's example
      (1.0, 1.9)
    """
    return descend(
        params,
        y,
        x,
        c0,
        n,
        lr,
        weight_decay,
        matmul=lambda w, h: jnp.sum(w[:, :, None] * h[None, :, :], axis=1),
        matmul_t=lambda w, h: jnp.sum(w[:, :, None] * h[:, None, :], axis=0),
        update=lambda w, decay, delta, h: decay * w - jnp.sum(delta[:, None, :] * h[None, :, :], axis=2),
        ordered=False,
    )


def pow2(n: int) -> int:
    """The smallest power of two >= n (Triton's array dimensions)."""
    return 1 << max(n - 1, 0).bit_length()


def _padded(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(pow2(n) for n in shape)


def _to_kernel(a: Array) -> Array:
    """(B, *shape) -> (B, *padded) with zeros; booleans as int32 (Triton has no bool refs)."""
    if a.dtype == jnp.bool_:
        a = a.astype(jnp.int32)
    return jnp.pad(a, [(0, 0)] + [(0, p - n) for n, p in zip(a.shape[1:], _padded(a.shape[1:]))])


def _from_kernel(a: Array, like: jax.ShapeDtypeStruct) -> Array:
    a = a[(slice(None), *(slice(0, n) for n in like.shape))]
    return a != 0 if like.dtype == jnp.bool_ else a


def on_runs(
    fn: Callable, leaves: list[Array], tree: jax.tree_util.PyTreeDef, runs: int, interpret: bool | None = None
) -> list[Array]:
    """``fn`` on each of ``runs`` runs (leaves with a leading run axis), one Pallas program each.

    ``interpret``: run the kernel in Pallas's interpreter; ``None``: unless the default
    backend is a GPU (decided when the calling program is traced).
    """
    # Imported here: only this path needs Pallas, and not every jaxlib build carries Triton
    # (jax 0.11 deprecates Pallas's Triton backend; a later jax may drop it).
    try:
        from jax.experimental import pallas as pl
        from jax.experimental.pallas import triton as pl_triton
    except ImportError as e:
        raise RuntimeError(
            f"TrainConfig.backward = 'pallas' needs Pallas's Triton backend, which jax {jax.__version__} does not "
            f"provide ({e}); use backward = 'auto'"
        ) from e

    def spec(padded: tuple[int, ...]) -> pl.BlockSpec:
        """One run's whole array per program."""
        zeros = (0,) * len(padded)
        return pl.BlockSpec((1, *padded), lambda i: (i, *zeros))

    one = [jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in leaves]
    out_like, out_tree = jax.tree.flatten(jax.eval_shape(lambda *xs: fn(*jax.tree.unflatten(tree, xs)), *one))
    ins = [_to_kernel(a) for a in leaves]
    out_dtype = lambda s: jnp.int32 if s.dtype == jnp.bool_ else s.dtype  # noqa: E731
    out_shapes = [jax.ShapeDtypeStruct((runs, *_padded(s.shape)), out_dtype(s)) for s in out_like]

    def kernel(*refs):
        in_refs, out_refs = refs[: len(ins)], refs[len(ins) :]
        # Padded values go in: fn's arithmetic runs on power-of-two shapes (exact, see above).
        vals = [r[0] != 0 if s.dtype == jnp.bool_ else r[0] for r, s in zip(in_refs, one)]
        out = jax.tree.leaves(fn(*jax.tree.unflatten(tree, vals)))
        for r, v in zip(out_refs, out):
            r[0] = v.astype(r.dtype)

    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    outs = pl.pallas_call(
        kernel,
        out_shape=out_shapes,
        grid=(runs,),
        in_specs=[spec(a.shape[1:]) for a in ins],
        out_specs=[spec(s.shape[1:]) for s in out_shapes],
        compiler_params=pl_triton.CompilerParams(num_warps=NUM_WARPS),
        interpret=interpret,
        name="dlnsim_advance",
    )(*ins)
    return jax.tree.unflatten(out_tree, [_from_kernel(a, s) for a, s in zip(outs, out_like)])


def one_program_per_run(fn: Callable, interpret: bool | None = None) -> Callable:
    """A per-network function from ``fn`` whose ``vmap`` is one Pallas kernel over the runs.

    ``fn(*args)`` takes and returns pytrees of one network's arrays, and must give the same
    result on arrays zero-padded to power-of-two shapes (true of a linear network's GD
    step). Every array ``fn`` uses must be an argument: only arguments are padded (and a
    kernel cannot capture arrays). Called on one network, the result runs the kernel on a
    block of one. ``interpret`` as in :func:`on_runs`.

    Example:
      >>> g = one_program_per_run(lambda w, c: 2.0 * w + c)
      >>> jax.vmap(g, in_axes=(0, None))(jnp.ones((3, 5, 6)), 1.0).shape
      (3, 5, 6)
    """

    return per_network(lambda size, leaves, tree: on_runs(fn, leaves, tree, size, interpret))
