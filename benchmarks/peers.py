"""What researchers write by hand: the reference implementations dlnsim is compared against.

Every peer trains deep linear networks ``f(y) = W_L ... W_1 y`` with full-batch gradient
descent and weight decay on the *raw* data (all N samples, mean loss), exactly the update of
SCIENCE.md section 2::

    W_l <- (1 - eta lambda) W_l - eta grad_l [ 1/(2N) ||W_L ... W_1 Y - X||_F^2 ]

Init is LeCun normal N(0, 1/fan_in). All maths is float32 at full precision (no TF32).

Peers:
  * ``torch_naive``: one network after another, a Python loop over steps, autograd.
  * ``torch_vmap``: a torch.func ensemble (``stack_module_state`` + ``functional_call`` +
    ``vmap(grad(...))``), all networks of the batch in one call per step.
  * ``jax_naive``: ``jax.jit`` of one network's step, Python loops over networks and steps.

Each function returns a :class:`Timing`: the steady-state seconds of ``networks * steps``
network-steps, plus the warm-up (first call: compilation, allocation) timed separately.
PyTorch is imported lazily so that this module imports without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Shapes = Sequence[tuple[int, int]]  # (fan_out, fan_in) of each layer, first to last


class Timing(NamedTuple):
    """A timed training loop."""

    networks: int  # networks trained in the timed part
    steps: int  # steps per network in the timed part
    seconds: float  # wall time of the timed part (steady state)
    warmup_s: float  # wall time of the untimed first call(s): compile, allocation

    @property
    def network_steps_per_s(self) -> float:
        return self.networks * self.steps / self.seconds


def layer_shapes(d: int, m: int, depth: int, width: int) -> list[tuple[int, int]]:
    """(fan_out, fan_in) of the layers of a depth-L, width-w network from R^m to R^d."""
    dims = [m] + [width] * (depth - 1) + [d]
    return [(dims[i + 1], dims[i]) for i in range(depth)]


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_device(want_gpu: bool) -> str:
    """``"cuda"`` when asked for and available, else ``"cpu"``."""
    import torch

    return "cuda" if want_gpu and torch.cuda.is_available() else "cpu"


def _torch_setup():
    import torch

    # Full float32: the default on Ampere+ GPUs may silently use TF32 (STYLE.md, Precision).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch


def _sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def torch_naive(
    y: np.ndarray, x: np.ndarray, shapes: Shapes, *, networks: int, steps: int, lr: float, weight_decay: float,
    device: str = "cpu", seed: int = 0,
) -> Timing:
    """Trains ``networks`` networks one after another, ``steps`` GD steps each (PyTorch autograd).

    One extra network of ``min(steps, 5)`` steps runs first as warm-up (CUDA context,
    allocator, kernel selection) and is not timed.
    """
    torch = _torch_setup()
    gen = torch.Generator().manual_seed(seed)
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    n = yt.shape[1]
    decay = 1.0 - lr * weight_decay

    def one_network(n_steps: int) -> None:
        ws = [(torch.randn(fo, fi, generator=gen) / math.sqrt(fi)).to(device).requires_grad_() for fo, fi in shapes]
        for _ in range(n_steps):
            h = yt
            for w in ws:
                h = w @ h
            loss = 0.5 * ((h - xt) ** 2).sum() / n
            loss.backward()
            with torch.no_grad():
                for w in ws:
                    w.mul_(decay).sub_(w.grad, alpha=lr)
                    w.grad = None
        _sync(torch, device)

    t0 = time.perf_counter()
    one_network(min(steps, 5))
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(networks):
        one_network(steps)
    return Timing(networks, steps, time.perf_counter() - t0, warm)


def torch_vmap(
    y: np.ndarray, x: np.ndarray, shapes: Shapes, *, networks: int, steps: int, lr: float, weight_decay: float,
    device: str = "cpu", seed: int = 0,
) -> Timing:
    """Trains ``networks`` networks together with a torch.func ensemble, ``steps`` GD steps.

    The standard torch.func ensembling recipe: stacked module state, ``functional_call`` of a
    stateless copy, ``vmap(grad(loss))`` over the stacked parameters. One untimed step first.
    """
    torch = _torch_setup()
    import copy

    from torch import nn
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.manual_seed(seed)

    def make_net() -> nn.Module:
        layers = [nn.Linear(fi, fo, bias=False) for fo, fi in shapes]
        for layer, (_, fi) in zip(layers, shapes):
            nn.init.normal_(layer.weight, std=1.0 / math.sqrt(fi))
        return nn.Sequential(*layers).to(device)

    nets = [make_net() for _ in range(networks)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    del nets
    # nn.Linear works on rows: samples are (N, m) -> (N, d).
    yt = torch.as_tensor(y.T, dtype=torch.float32, device=device).contiguous()
    xt = torch.as_tensor(x.T, dtype=torch.float32, device=device).contiguous()
    n = yt.shape[0]
    decay = 1.0 - lr * weight_decay

    def loss(p, b, yy, xx):
        out = functional_call(base, (p, b), (yy,))
        return 0.5 * ((out - xx) ** 2).sum() / n

    grads_of = vmap(grad(loss), in_dims=(0, 0, None, None))

    def step(p):
        g = grads_of(p, buffers, yt, xt)
        return {k: decay * v - lr * g[k] for k, v in p.items()}

    with torch.no_grad():
        params = {k: v.detach() for k, v in params.items()}
    t0 = time.perf_counter()
    params = step(params)
    _sync(torch, device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        params = step(params)
    _sync(torch, device)
    return Timing(networks, steps, time.perf_counter() - t0, warm)


def jax_naive(
    y: np.ndarray, x: np.ndarray, shapes: Shapes, *, networks: int, steps: int, lr: float, weight_decay: float,
    seed: int = 0,
) -> Timing:
    """``jax.jit`` of one network's GD step; Python loops over networks and steps.

    The warm-up (compilation and one network of ``min(steps, 5)`` steps) is untimed.
    """
    # Full float32 everywhere. On CPUs XLA multiplies float32 in full precision at any
    # setting and its HIGHEST path skips the fast GEMM kernels, so CPUs get DEFAULT (the
    # same rule as dlnsim.model.precision); GPUs get HIGHEST (no TF32).
    hi = jax.lax.Precision.DEFAULT if jax.default_backend() == "cpu" else jax.lax.Precision.HIGHEST
    yj, xj = jnp.asarray(y, jnp.float32), jnp.asarray(x, jnp.float32)
    n = y.shape[1]

    def loss(ws, yy, xx):
        h = yy
        for w in ws:
            h = jnp.matmul(w, h, precision=hi)
        return 0.5 * jnp.sum((h - xx) ** 2) / n

    @jax.jit
    def step(ws, yy, xx, lr, wd):
        g = jax.grad(loss)(ws, yy, xx)
        return tuple((1 - lr * wd) * w - lr * gw for w, gw in zip(ws, g))

    lr_a, wd_a = jnp.float32(lr), jnp.float32(weight_decay)
    rng = np.random.default_rng(seed)

    def one_network(n_steps: int) -> None:
        ws = tuple(jnp.asarray(rng.standard_normal((fo, fi), np.float32) / math.sqrt(fi)) for fo, fi in shapes)
        for _ in range(n_steps):
            ws = step(ws, yj, xj, lr_a, wd_a)
        jax.block_until_ready(ws)

    t0 = time.perf_counter()
    one_network(min(steps, 5))
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(networks):
        one_network(steps)
    return Timing(networks, steps, time.perf_counter() - t0, warm)
