"""Every peer of the throughput benchmark trains the same networks the same way.

The peers (``benchmarks/peers.py``) are only a fair comparison if they do dlnsim's work: full-
batch GD with weight decay on the raw data, SCIENCE.md section 2. Each peer's weights after a
few steps are checked against an independent float64 NumPy computation of that update. The
step size and weight decay are large (decay factor 0.975 per step), so a peer that dropped the
decay, doubled it, or normalised the loss differently would be off by percents, far outside
the float32 tolerance. Torch peers are skipped when torch (the ``bench`` extra) is missing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peers

# Results that depend on the JAX backend: benchmarks/gpu_check.sh runs these first on a GPU.
pytestmark = pytest.mark.device

HAS_TORCH = importlib.util.find_spec("torch") is not None
LR, WD, STEPS = 0.05, 0.5, 6
SHAPES = peers.layer_shapes(d=6, m=4, depth=3, width=5)


def _reference(weights, y, x, steps):
    """float64 GD on 1/(2N) ||W_L ... W_1 Y - X||_F^2 with decay (1 - lr wd)."""
    ws = [w.astype(np.float64) for w in weights]
    y, x = y.astype(np.float64), x.astype(np.float64)
    n = y.shape[1]
    for _ in range(steps):
        hs = [y]
        for w in ws:
            hs.append(w @ hs[-1])
        delta = (hs[-1] - x) / n
        grads = []
        for w, h in zip(reversed(ws), reversed(hs[:-1])):
            grads.append(delta @ h.T)
            delta = w.T @ delta
        ws = [(1 - LR * WD) * w - LR * g for w, g in zip(ws, reversed(grads))]
    return ws


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((SHAPES[0][1], 9)).astype(np.float32)
    x = rng.standard_normal((SHAPES[-1][0], 9)).astype(np.float32)
    return y, x, peers.init_weights(SHAPES, rng)


def _check(got, want):
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["jax_naive", "torch_naive", "torch_tuned"])
def test_loop_peer_matches_reference(name, data):
    if name.startswith("torch") and not HAS_TORCH:
        pytest.skip("torch not installed (pip install -e .[bench])")
    y, x, w0 = data
    before = [w.copy() for w in w0]
    train = getattr(peers, name)(y, x, lr=LR, weight_decay=WD)
    want = _reference(w0, y, x, STEPS)
    assert max(np.abs(a - b).max() for a, b in zip(want, w0)) > 1e-2  # the steps moved the weights
    _check(train(w0, STEPS), want)
    for w, b in zip(w0, before):  # the caller's initial weights are left as they were
        np.testing.assert_array_equal(w, b)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed (pip install -e .[bench])")
def test_torch_vmap_peer_matches_reference(data):
    y, x, _ = data
    stacked = peers.init_weights(SHAPES, np.random.default_rng(4), networks=3)
    before = [w.copy() for w in stacked]
    got = peers.torch_vmap(y, x, lr=LR, weight_decay=WD)(stacked, STEPS)
    for w, b in zip(stacked, before):
        np.testing.assert_array_equal(w, b)
    for k in range(3):
        _check([g[k] for g in got], _reference([w[k] for w in stacked], y, x, STEPS))


def test_time_loop_counts_network_steps(data):
    y, x, _ = data
    t = peers.time_loop(peers.jax_naive(y, x, lr=LR, weight_decay=WD), SHAPES, networks=2, steps=3)
    assert (t.networks, t.steps) == (2, 3) and t.seconds > 0 and t.warmup_s > 0
