"""The decompositions of dlnsim._lapack against numpy's LAPACK (float64 unless said)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnsim import _lapack as lapack


def _psd(rng, shape, n, rank=None):
    g = rng.standard_normal((*shape, n, rank or n))
    return g @ np.swapaxes(g, -1, -2)


@pytest.mark.parametrize("n", [1, 2, 5, 30])
def test_eigvalsh_max_is_the_top_eigenvalue(n):
    rng = np.random.default_rng(n)
    a = _psd(rng, (3, 2), n)
    want = np.linalg.eigvalsh(a)[..., -1]
    np.testing.assert_allclose(lapack.eigvalsh_max(jnp.asarray(a)), want, rtol=1e-13)  # leading axes
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.vmap(lapack.eigvalsh_max)))(a), want, rtol=1e-13)
    sym = rng.standard_normal((4, n, n))
    sym = sym + np.swapaxes(sym, -1, -2) - 3 * n * np.eye(n)  # indefinite, the top eigenvalue negative
    np.testing.assert_allclose(lapack.eigvalsh_max(jnp.asarray(sym)), np.linalg.eigvalsh(sym)[..., -1], rtol=1e-13)


def test_eigvalsh_max_keeps_relative_accuracy_at_any_scale():
    """The metrics take sin of the largest principal angle from the top eigenvalue of a
    residual Gram whose entries are sin^2 (1e-30 for nearly aligned spaces in float64):
    the error is relative to the matrix, not absolute."""
    rng = np.random.default_rng(0)
    a = _psd(rng, (5,), 4)
    for scale in (1e-30, 1.0, 1e30):
        want = np.linalg.eigvalsh(scale * a)[:, -1]
        np.testing.assert_allclose(lapack.eigvalsh_max(jnp.asarray(scale * a)), want, rtol=1e-13)


def test_eigvalsh_max_of_degenerate_matrices():
    rng = np.random.default_rng(1)
    low = _psd(rng, (4,), 20, rank=2)  # 18 zero eigenvalues
    np.testing.assert_allclose(lapack.eigvalsh_max(jnp.asarray(low)), np.linalg.eigvalsh(low)[:, -1], rtol=1e-13)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    double = q @ np.diag([1.0, 2.0, 3.0, 3.0, 3.0, 0.5]) @ q.T  # top eigenvalue of multiplicity 3
    assert float(lapack.eigvalsh_max(jnp.asarray(double))) == pytest.approx(3.0, rel=1e-14)
    assert float(lapack.eigvalsh_max(jnp.zeros((7, 7)))) == 0.0  # a collapsed network's Gram
    assert np.isnan(float(lapack.eigvalsh_max(jnp.full((3, 3), jnp.nan))))


def test_eigvalsh_max_in_float32():
    a = _psd(np.random.default_rng(2), (8,), 100).astype(np.float32)
    want = np.linalg.eigvalsh(a.astype(np.float64))[:, -1]
    got = lapack.eigvalsh_max(jnp.asarray(a))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)  # about eps ||a||, as eigh's
