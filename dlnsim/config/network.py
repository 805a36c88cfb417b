"""The configs of one run: the problem, the network and how it trains."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from dlnsim._checks import check_choice, check_float, check_int, fail, plain

OPERATORS = ("gaussian", "orthonormal", "dct")
INITS = ("lecun", "he", "xavier", "orthogonal")
OPTIMIZERS = ("gd", "momentum", "adam", "adamw")
DTYPES = ("float32", "float64")
LOSS_NORMS = ("mean", "sum")
DATA_PATHS = ("reduced", "raw")
BACKWARDS = ("auto", "fused", "blocked", "pallas", "autodiff")
ACTIVATIONS = ("linear", "relu")
PRECISIONS = ("highest", "default")


def _plain_fields(cfg: Any) -> None:
    """Numpy scalars (``np.int64(20)``, 0-d arrays) in a config's fields as Python numbers."""
    for f in dataclasses.fields(cfg):
        object.__setattr__(cfg, f.name, plain(getattr(cfg, f.name)))


@dataclasses.dataclass(frozen=True)
class ProblemConfig:
    """The inverse problem of SCIENCE.md section 1 (all sizes are static).

    Attributes:
      d: ambient signal dimension.
      m: number of measurements, ``s < m < d``.
      s: latent subspace dimension.
      n_train: number of training pairs N (``>= s``).
      n_test: number of fresh test signals.
      operator: measurement operator ``A``: ``"gaussian"`` (i.i.d. N(0, 1/m)),
        ``"orthonormal"`` (orthogonal rows scaled so ``A A^T = (d/m) I``) or ``"dct"``
        (m random rows of the orthonormal DCT-II, same scaling). The scaling makes
        ``E||A x||^2 = ||x||^2`` for every operator, so step sizes transfer.
      whiten: rescale the training codes so that ``Z Z^T = N I_s`` exactly, which makes
        the closed-form limit of SCIENCE.md section 3 exact.
      test_sigmas: measurement-noise levels of the noise-robustness curve (D4).
    """

    d: int = 100
    m: int = 50
    s: int = 5
    n_train: int = 1000  # SCIENCE.md section 1: N is not known; 1000 is the default
    n_test: int = 500
    operator: str = "gaussian"
    whiten: bool = False
    test_sigmas: tuple[float, ...] = (0.0, 0.1, 0.5)

    def __post_init__(self) -> None:
        _plain_fields(self)
        c = "ProblemConfig"
        for f in ("d", "m", "s", "n_train", "n_test"):
            check_int(c, f, getattr(self, f), 1)
        if not self.s < self.m:
            fail(c, "s", self.s, f"must satisfy s < m (m = {self.m})")
        if not self.m < self.d:
            fail(c, "m", self.m, f"must satisfy s < m < d (s = {self.s}, d = {self.d})")
        if self.n_train < self.s:
            fail(c, "n_train", self.n_train, f"must be >= s = {self.s}")
        check_choice(c, "operator", self.operator, OPERATORS)
        if not isinstance(self.whiten, bool):
            fail(c, "whiten", self.whiten, "must be true or false")
        sig = self.test_sigmas
        if isinstance(sig, np.ndarray) and sig.ndim == 1:
            sig = sig.tolist()
        if isinstance(sig, str | bytes) or not isinstance(sig, Sequence) or len(sig) == 0:
            fail(c, "test_sigmas", sig, "must be a non-empty list of numbers >= 0")
        sig = tuple(plain(v) for v in sig)
        for v in sig:
            check_float(c, "test_sigmas", v, lo=0.0, strict=False)
        object.__setattr__(self, "test_sigmas", tuple(float(v) for v in sig))
        if len(set(self.test_sigmas)) != len(self.test_sigmas):  # they label the results' sigma axis
            fail(c, "test_sigmas", sig, "must not repeat a value")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The deep network of SCIENCE.md section 2 (static: it fixes shapes).

    Attributes:
      depth: number of weight matrices L (``L = 1`` is ridge regression).
      width: hidden width w.
      init: ``"lecun"`` N(0, 1/fan_in), ``"he"`` N(0, 2/fan_in), ``"xavier"``
        N(0, 2/(fan_in + fan_out)) or ``"orthogonal"``; each is multiplied by the traced
        ``HParams.init_scale``.
      activation: ``"linear"`` (the deep linear network) or ``"relu"`` between layers
        (a comparison model; it trains on the raw data).
    """

    depth: int = 3
    width: int = 100
    init: str = "lecun"
    activation: str = "linear"

    def __post_init__(self) -> None:
        _plain_fields(self)
        c = "ModelConfig"
        check_int(c, "depth", self.depth, 1)
        check_int(c, "width", self.width, 1)
        check_choice(c, "init", self.init, INITS)
        check_choice(c, "activation", self.activation, ACTIVATIONS)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How training runs (static: it fixes the compiled program).

    Attributes:
      steps: number of optimiser steps (a multiple of ``log_every``).
      log_every: metrics are recorded at step 0 and every ``log_every`` steps.
      optimizer: ``"gd"`` (full-batch gradient descent, SCIENCE.md section 2),
        ``"momentum"``, ``"adam"`` (weight decay added to the gradient) or ``"adamw"``
        (decoupled weight decay), the last three through optax.
      loss: ``"mean"`` (the 1/N loss) or ``"sum"``.
      dtype: ``"float32"`` or ``"float64"`` (float64 needs ``jax_enable_x64``).
      precision: matmul precision, ``"highest"`` (default, true float32 on GPUs) or
        ``"default"`` (opt-in fast mode, TF32 on recent GPUs).
      data: ``"reduced"`` trains on the exact rank-r factors of the data (SCIENCE.md
        "Exact data reduction"), ``"raw"`` on all N samples.
      backward: how a gradient-descent step on a linear network is computed (other
        optimisers and ReLU networks always take ``jax.grad``). ``"fused"``: a
        hand-written backward pass with the rank-r update fused into the decay
        (``dlnsim.backward``); ``"blocked"``: the same step on a block of runs at once,
        run axis last (``dlnsim.blocked``); ``"pallas"``: the block step's arithmetic in
        one Pallas kernel per log interval, a network's weights kept on chip across the
        steps (``dlnsim.onchip``; for GPUs, interpreted elsewhere; layers and data at
        most 64 wide; slower than the fused step on an H200, so opt-in);
        ``"autodiff"``: ``jax.grad``. ``"auto"`` (default) takes ``"blocked"`` on CPUs
        for a batch of small networks on few data columns, where it is 3.4-3.8x faster
        (2 EPYC cores, README Performance), and
        ``"fused"`` elsewhere (one network alone included). All compute the same step
        (tested to rounding).
      divergence_cap: a run is flagged diverged when its data loss is not finite or
        exceeds ``divergence_cap`` times its initial data loss (then it is frozen).
      n_singular: how many top singular values of the end-to-end map to record.
      balance: record the balancedness metric (D3). It costs exact (w, w) Gram products
        per layer pair, about 60% of a log point at the paper's sizes on a CPU when
        recorded at every log point; ``False`` records NaN instead.
      balance_every: record the balancedness at every ``balance_every``-th log point
        only (log points 0, k, 2k, ... and always the last), NaN at the others (curves
        join the recorded points). 10 (default): every 500 steps at the default
        ``log_every``, which keeps logging under 15% of a run at the paper's sizes
        (about 23% with it at every log point, on 2 CPU cores); 1: at every log point.
    """

    steps: int = 2000
    log_every: int = 50
    optimizer: str = "gd"
    loss: str = "mean"
    dtype: str = "float32"
    precision: str = "highest"
    data: str = "reduced"
    backward: str = "auto"
    divergence_cap: float = 1e8
    n_singular: int = 8
    balance: bool = True
    balance_every: int = 10

    def __post_init__(self) -> None:
        _plain_fields(self)
        c = "TrainConfig"
        check_int(c, "log_every", self.log_every, 1)
        check_int(c, "steps", self.steps, 1)
        if self.steps < self.log_every:
            fail(c, "steps", self.steps, f"must be at least log_every = {self.log_every}")
        if self.steps % self.log_every:
            fail(c, "steps", self.steps, f"must be a multiple of log_every = {self.log_every}")
        check_choice(c, "optimizer", self.optimizer, OPTIMIZERS)
        check_choice(c, "loss", self.loss, LOSS_NORMS)
        check_choice(c, "dtype", self.dtype, DTYPES)
        check_choice(c, "precision", self.precision, PRECISIONS)
        check_choice(c, "data", self.data, DATA_PATHS)
        check_choice(c, "backward", self.backward, BACKWARDS)
        check_float(c, "divergence_cap", self.divergence_cap, lo=1.0, strict=True)
        check_int(c, "n_singular", self.n_singular, 1)
        if not isinstance(self.balance, bool):
            fail(c, "balance", self.balance, "must be true or false")
        check_int(c, "balance_every", self.balance_every, 1)

    def balance_due(self, i: Any) -> Any:
        """Whether log point ``i`` (0 = the initial state) records the balancedness: a plain
        bool when the answer is the same at every point, else a bool of ``i``'s kind (an int
        or a traced index)."""
        if not self.balance or self.balance_every == 1:
            return self.balance
        return (i % self.balance_every == 0) | (i == self.n_logs - 1)

    @property
    def n_logs(self) -> int:
        """Number of logged points, step 0 included."""
        return self.steps // self.log_every + 1
