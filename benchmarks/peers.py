"""What researchers write by hand: the reference implementations dlnsim is compared against.

Every peer trains deep linear networks ``f(y) = W_L ... W_1 y`` with full-batch gradient
descent and weight decay on the *raw* data (all N samples, mean loss), exactly the update of
SCIENCE.md section 2::

    W_l <- (1 - eta lambda) W_l - eta grad_l [ 1/(2N) ||W_L ... W_1 Y - X||_F^2 ]

Init is LeCun normal N(0, 1/fan_in). All maths is float32 at full precision (no TF32).

Peers:
  * ``torch_naive``: the PyTorch loop a researcher writes first: ``nn.Sequential`` of
    bias-free ``nn.Linear`` layers, ``torch.optim.SGD(weight_decay=...)``, ``zero_grad`` /
    ``backward`` / ``step``; one network after another. The issue's speed targets on CPUs
    are ratios to this loop.
  * ``torch_tuned``: the same loop hand-tuned: bare weight tensors, the update written in
    place (``mul_`` then ``sub_``), gradients dropped instead of zeroed. No module, no
    optimizer object. It shows how much of the naive loop is per-step framework overhead.
  * ``torch_vmap``: a torch.func ensemble (``stack_module_state`` + ``functional_call`` +
    ``vmap(grad(...))``), all networks of the batch in one call per step.
  * ``jax_naive``: ``jax.jit`` of one network's step, Python loops over networks and steps.

Each peer is a *trainer* ``train(weights, steps) -> weights`` on NumPy arrays (one network's
list of float32 matrices; for ``torch_vmap`` each matrix has a leading network axis), so the
tests can check that every peer computes the update above. The ``time_*`` functions time a
trainer and return a :class:`Timing`: the steady-state seconds of ``networks * steps``
network-steps, plus the warm-up (first call: compilation, allocation) timed separately.
PyTorch is imported lazily so that this module imports without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Shapes = Sequence[tuple[int, int]]  # (fan_out, fan_in) of each layer, first to last
Weights = list[np.ndarray]  # one network's weight matrices, first layer first
Trainer = Callable[[Weights, int], Weights]


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


def init_weights(shapes: Shapes, rng: np.random.Generator, networks: int | None = None) -> Weights:
    """LeCun normal float32 weights; with ``networks``, each matrix gets a leading network axis."""
    lead = () if networks is None else (networks,)
    return [rng.standard_normal((*lead, fo, fi), np.float32) / np.float32(math.sqrt(fi)) for fo, fi in shapes]


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


# ---------------------------------------------------------------- trainers


def torch_naive(y: np.ndarray, x: np.ndarray, *, lr: float, weight_decay: float, device: str = "cpu") -> Trainer:
    """The textbook PyTorch loop: ``nn.Sequential``, ``optim.SGD``, autograd."""
    torch = _torch_setup()
    from torch import nn

    # nn.Linear works on rows: samples are (N, m) -> (N, d).
    yt = torch.as_tensor(y.T, dtype=torch.float32, device=device).contiguous()
    xt = torch.as_tensor(x.T, dtype=torch.float32, device=device).contiguous()
    n = yt.shape[0]

    def train(weights: Weights, steps: int) -> Weights:
        layers = [nn.Linear(w.shape[1], w.shape[0], bias=False) for w in weights]
        with torch.no_grad():
            for layer, w in zip(layers, weights):
                layer.weight.copy_(torch.from_numpy(w))
        model = nn.Sequential(*layers).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.5 * ((model(yt) - xt) ** 2).sum() / n
            loss.backward()
            opt.step()
        return [layer.weight.detach().cpu().numpy() for layer in layers]

    return train


def torch_tuned(y: np.ndarray, x: np.ndarray, *, lr: float, weight_decay: float, device: str = "cpu") -> Trainer:
    """The PyTorch loop without module or optimizer: bare tensors, update in place."""
    torch = _torch_setup()
    yt = torch.as_tensor(y, dtype=torch.float32, device=device)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    n = yt.shape[1]
    decay = 1.0 - lr * weight_decay

    def train(weights: Weights, steps: int) -> Weights:
        ws = [torch.tensor(w, device=device, requires_grad=True) for w in weights]  # a copy: updated in place
        for _ in range(steps):
            h = yt
            for w in ws:
                h = w @ h
            loss = 0.5 * ((h - xt) ** 2).sum() / n
            loss.backward()
            with torch.no_grad():
                for w in ws:
                    w.mul_(decay).sub_(w.grad, alpha=lr)
                    w.grad = None
        return [w.detach().cpu().numpy() for w in ws]

    return train


def torch_vmap(y: np.ndarray, x: np.ndarray, *, lr: float, weight_decay: float, device: str = "cpu") -> Trainer:
    """A torch.func ensemble; ``train`` takes and returns matrices with a leading network axis.

    The standard torch.func ensembling recipe: stacked module state, ``functional_call`` of a
    stateless copy, ``vmap(grad(loss))`` over the stacked parameters.
    """
    torch = _torch_setup()
    from torch import nn
    from torch.func import functional_call, grad, vmap

    yt = torch.as_tensor(y.T, dtype=torch.float32, device=device).contiguous()
    xt = torch.as_tensor(x.T, dtype=torch.float32, device=device).contiguous()
    n = yt.shape[0]
    decay = 1.0 - lr * weight_decay

    def train(weights: Weights, steps: int) -> Weights:
        base = nn.Sequential(*[nn.Linear(w.shape[2], w.shape[1], bias=False) for w in weights]).to("meta")

        def loss(p, yy, xx):
            return 0.5 * ((functional_call(base, p, (yy,)) - xx) ** 2).sum() / n

        grads_of = vmap(grad(loss), in_dims=(0, None, None))
        params = {f"{i}.weight": torch.from_numpy(w).to(device) for i, w in enumerate(weights)}
        for _ in range(steps):
            g = grads_of(params, yt, xt)
            params = {k: decay * v - lr * g[k] for k, v in params.items()}
        return [params[f"{i}.weight"].cpu().numpy() for i in range(len(weights))]

    return train


def jax_naive(y: np.ndarray, x: np.ndarray, *, lr: float, weight_decay: float) -> Trainer:
    """``jax.jit`` of one network's GD step, called once per step."""
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

    def train(weights: Weights, steps: int) -> Weights:
        ws = tuple(jnp.asarray(w) for w in weights)
        for _ in range(steps):
            ws = step(ws, yj, xj, lr_a, wd_a)
        return [np.asarray(w) for w in ws]

    return train


# ---------------------------------------------------------------- timing


def time_loop(train: Trainer, shapes: Shapes, *, networks: int, steps: int, seed: int = 0) -> Timing:
    """Times ``networks`` networks trained one after another, ``steps`` steps each.

    One extra network of ``min(steps, 5)`` steps runs first as warm-up (compilation, CUDA
    context, allocator, kernel selection) and is not timed. Initial weights are drawn
    before the clock starts.
    """
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    train(init_weights(shapes, rng), min(steps, 5))
    warm = time.perf_counter() - t0
    inits = [init_weights(shapes, rng) for _ in range(networks)]
    t0 = time.perf_counter()
    for ws in inits:
        train(ws, steps)
    return Timing(networks, steps, time.perf_counter() - t0, warm)


def time_ensemble(train: Trainer, shapes: Shapes, *, networks: int, steps: int, seed: int = 0) -> Timing:
    """Times one ensemble of ``networks`` networks for ``steps`` steps, after one untimed step."""
    rng = np.random.default_rng(seed)
    ws = init_weights(shapes, rng, networks)
    t0 = time.perf_counter()
    ws = train(ws, 1)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(ws, steps)
    return Timing(networks, steps, time.perf_counter() - t0, warm)
