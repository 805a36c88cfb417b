"""Per-run metrics at a logging step (SCIENCE.md section 4), computed inside the scan.

Only scalars and short vectors are returned, so memory does not grow with the weights.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dlnsim import _lapack as lapack
from dlnsim import theory
from dlnsim.model import Params, end_to_end, exact_matmuls, forward, precision
from dlnsim.problem import Data, Problem, clean_residual_sq, data_loss

Array = jax.Array


class Metrics(NamedTuple):
    """Metrics of one network at one logging step (all float, of the run's dtype).

    ``E`` is the end-to-end map, ``B = A U``, ``P`` projects onto range(B). Metrics that
    need ``E`` are NaN for a ReLU network; ``limit_dist`` is NaN where the closed-form ``E*``
    is not the limit: it needs whitened codes (``ProblemConfig.whiten``), a linear network,
    noise-free training data, weight decay > 0 and an optimiser of
    :data:`dlnsim.theory.LIMIT_OPTIMIZERS`.

    Attributes:
      loss_data: () (||E Y - X||^2) / (2N)  (2 without N for the sum loss)
      loss_reg: () (lambda / 2) sum_l ||W_l||_F^2
      on_err: () ||E B - U||_F / sqrt(s)
      off_fro: () ||E P_perp||_F
      off_spec: () ||E P_perp||_2
      w1_off_fro: () ||W_1 P_perp||_F
      e2e_fro: () ||E||_F
      test_err: () ||f(Y_test) - X_test||_F / ||X_test||_F, clean test data
      noise_err: (n_sigma,) test_err with test noise of each sigma added (D4 closed form; Monte
        Carlo for a ReLU network)
      align_left_sin: () sin of the largest principal angle between the top-s left singular space
        of E and span(U) (accurate down to rounding, about eps)
      align_left_cos2: () mean cos^2 of the principal angles between the top-s left singular
        space of E and span(U)
      align_right_sin: () sin of the largest principal angle between the top-s right singular
        space of E and range(B)
      align_right_cos2: () mean cos^2 of the principal angles between the top-s right singular
        space of E and range(B)
      sv: (n_singular,) top singular values of E (values below ~sqrt(m eps) sigma_max are rounding;
        NaN beyond min(d, m))
      eff_rank: () exp(entropy of the normalised singular values of E above the rounding floor
        sqrt(m eps) sigma_max); 0 for E = 0
      balance: () max_l ||W_{l+1}^T W_{l+1} - W_l W_l^T||_F / (||W_{l+1}||_F^2 + ||W_l||_F^2)
      limit_dist: () ||E - E*||_F / ||E*||_F (||E||_F where E* = 0: collapse)
    """

    loss_data: Array
    loss_reg: Array
    on_err: Array
    off_fro: Array
    off_spec: Array
    w1_off_fro: Array
    e2e_fro: Array
    test_err: Array
    noise_err: Array
    align_left_sin: Array
    align_left_cos2: Array
    align_right_sin: Array
    align_right_cos2: Array
    sv: Array
    eff_rank: Array
    balance: Array
    limit_dist: Array


def _sq(x: Array) -> Array:
    return jnp.sum(x * x)


def _alignments(pairs: list[tuple[Array, Array]]) -> list[tuple[Array, Array]]:
    """Per (basis, ref) pair of orthonormal (n, s) bases: (sin of the largest principal
    angle, mean cos^2).

    The sines are the singular values of ``(I - ref ref^T) basis``; the largest is the square
    root of the top eigenvalue of its (s, s) Gram, which has relative accuracy (one stacked
    eigh for all pairs, see _spectrum). ``sqrt(1 - cos_min^2)`` would stop at about
    ``sqrt(eps)`` (3e-4 in float32) for nearly aligned spaces. The mean cos^2 is
    ``||ref^T basis||_F^2 / s``, the sum of the squared cosines.
    """
    overlaps = [ref.T @ basis for basis, ref in pairs]
    residuals = [basis - ref @ o for (basis, ref), o in zip(pairs, overlaps)]
    evals, _ = lapack.eigh(jnp.stack([r.T @ r for r in residuals]))
    return [(jnp.sqrt(jnp.maximum(e[-1], 0.0)), _sq(o) / o.shape[1]) for e, o in zip(evals, overlaps)]


def _spectrum(e2e: Array, off: Array, prec: str) -> tuple[Array, Array, Array]:
    """Singular values (descending) and right singular vectors of E, and ``||E P_perp||_2^2``.

    One eigh of the stacked ``E^T E`` and ``(E P_perp)^T (E P_perp)``: batched on GPUs,
    one matrix per LAPACK call on CPUs (:mod:`dlnsim._lapack`: batched CPU calls can
    deadlock XLA's thread pool).

    Not the top eigenvalue alone of the second Gram (tridiagonal form, then bisection):
    that ran the metrics 1.15-1.4x faster (m = 100 to 30) but added 1.1-1.5 s of compile
    time per static group, and the built-in sweep took 30-32 s instead of 21-24 s (2 AMD
    EPYC cores, 2026-12-07). A sweep compiles once per group and logs a few dozen times, so
    compile time weighs more here than the decompositions' run time.

    An (m, m) symmetric eigenproblem instead of an SVD of the (d, m) map: 5-50x faster on
    CPU LAPACK and on GPUs. Values come out with absolute error ~sqrt(eps) * sigma_max
    (float32: ~3e-4 sigma_max), so singular values below that are at the floor; the top
    ones and the singular spaces are accurate.
    """
    p = precision(prec)
    grams = jnp.stack([jnp.matmul(e2e.T, e2e, precision=p), jnp.matmul(off.T, off, precision=p)])
    evals, evecs = lapack.eigh(grams)
    return jnp.sqrt(jnp.maximum(evals[0, ::-1], 0.0)), evecs[0, :, ::-1], jnp.maximum(evals[1, -1], 0.0)


def _entropy(sv: Array) -> Array:
    """Entropy of the normalised singular values (descending) of E that are not at the floor.

    The values come from the eigenvalues of ``E^T E`` (:func:`_spectrum`), which carry an
    absolute error of about ``m eps sigma_max^2`` (numpy's ``matrix_rank`` tolerance applied
    to the (m, m) Gram), so values below ``sqrt(m eps) sigma_max`` are indistinguishable from
    zero and left out. In float32 a rank-5 map at m = 100 otherwise reads 5.06 instead of 4.96:
    95 values at a floor of about 4e-4 sigma_max.
    """
    floor = jnp.sqrt(sv.shape[0] * jnp.finfo(sv.dtype).eps) * sv[0]
    kept = jnp.where(sv > floor, sv, 0.0)
    prob = kept / jnp.sum(kept)
    return -jnp.sum(jnp.where(prob > 0, prob * jnp.log(jnp.where(prob > 0, prob, 1.0)), 0.0))


def balancedness(params: Params, prec: str = "highest") -> Array:
    """``max_l ||W_{l+1}^T W_{l+1} - W_l W_l^T||_F / (||W_{l+1}||_F^2 + ||W_l||_F^2)`` (D3).

    The ratio lies in [0, 1]; 0 for ``L = 1`` and for two zero layers (a collapsed network).
    """
    p = precision(prec)
    worst = jnp.zeros((), params[0].dtype)
    for w_lo, w_hi in zip(params[:-1], params[1:]):
        gap = jnp.matmul(w_hi.T, w_hi, precision=p) - jnp.matmul(w_lo, w_lo.T, precision=p)
        norms = _sq(w_hi) + _sq(w_lo)
        worst = jnp.maximum(worst, jnp.sqrt(_sq(gap)) / jnp.where(norms > 0, norms, 1))
    return worst


def _balance_if(flag: bool | Array, params: Params, prec: str, nan: Array) -> Array:
    if isinstance(flag, bool):
        return balancedness(params, prec) if flag else nan
    return jax.lax.cond(flag, lambda p: balancedness(p, prec), lambda p: nan, params)


@exact_matmuls
def compute_metrics(
    params: Params,
    problem: Problem,
    data: Data,
    weight_decay: Array,
    e_star: Array | None,
    sigmas: tuple[float, ...],
    *,
    n: int,
    n_singular: int,
    activation: str = "linear",
    prec: str = "highest",
    balance: bool | Array = True,
) -> Metrics:
    """All metrics of one network.

    Args:
      params: ``(W_1, ..., W_L)``.
      problem: the problem (teacher and test set).
      data: the training data the loss sees (reduced or raw: same loss).
      weight_decay: lambda.
      e_star: (d, m) closed-form limit (NaN where it is not this run's limit), or None.
      sigmas: test noise levels.
      n: loss normaliser (N for the mean loss, 1 for the sum).
      n_singular: number of top singular values to report.
      activation: "linear" or "relu".
      prec: matmul precision name.
      balance: compute the balancedness (else NaN; see ``TrainConfig.balance``); a traced
        bool (``TrainConfig.balance_due``) makes it a ``lax.cond``, a real branch under
        ``vmap`` when the flag is the same for every run.
    """
    p = precision(prec)
    mm = lambda a, b: jnp.matmul(a, b, precision=p)  # noqa: E731
    dt = params[0].dtype
    nan = jnp.full((), jnp.nan, dt)
    s = problem.u.shape[1]
    loss_reg = 0.5 * weight_decay * sum(_sq(w) for w in params)
    w1_off = params[0] - mm(mm(params[0], problem.qb), problem.qb.T)
    signal_sq = _sq(problem.x_test)
    sig = jnp.asarray(sigmas, dt)
    k = min(n_singular, *problem.a.shape)

    if activation != "linear":
        out = forward(params, problem.y_test, activation, prec)
        return Metrics(
            loss_data=data_loss(forward(params, data.y, activation, prec) - data.x, data.c0, n),
            loss_reg=loss_reg,
            on_err=nan,
            off_fro=nan,
            off_spec=nan,
            w1_off_fro=jnp.sqrt(_sq(w1_off)),
            e2e_fro=nan,
            test_err=jnp.sqrt(_sq(out - problem.x_test) / signal_sq),
            noise_err=noise_error_mc(params, problem, sigmas, activation, prec),
            align_left_sin=nan,
            align_left_cos2=nan,
            align_right_sin=nan,
            align_right_cos2=nan,
            sv=jnp.full((k,), jnp.nan, dt),
            eff_rank=nan,
            balance=nan,
            limit_dist=nan,
        )

    e2e = end_to_end(params, prec)
    loss_data = data_loss(mm(e2e, data.y) - data.x, data.c0, n)  # one (d, m) product, not the layers'
    off = e2e - mm(mm(e2e, problem.qb), problem.qb.T)
    on_resid = mm(e2e, problem.b) - problem.u
    clean_sq = clean_residual_sq(on_resid, problem, prec)  # = ||E y_test - x_test||^2
    e2e_sq = _sq(e2e)
    sv, right, off_sq = _spectrum(e2e, off, prec)
    left, _ = lapack.qr(mm(e2e, right[:, :s]))  # basis of the top-s left singular space
    (left_sin, left_cos2), (right_sin, right_cos2) = _alignments([(left, problem.u), (right[:, :s], problem.qb)])
    entropy = _entropy(sv)
    # E = 0 (a collapsed network, SCIENCE.md section 3): rank 0, and no singular spaces to align.
    zero = e2e_sq == 0
    aligned = (left_sin, left_cos2, right_sin, right_cos2)
    left_sin, left_cos2, right_sin, right_cos2 = (jnp.where(zero, nan, v) for v in aligned)
    if e_star is None:
        limit_dist = nan
    else:
        # Relative to ||E*||; past the collapse threshold E* = 0 and the distance is ||E||_F.
        star_sq = _sq(e_star)
        limit_dist = jnp.sqrt(_sq(e2e - e_star) / jnp.where(star_sq > 0, star_sq, 1))
    return Metrics(
        loss_data=loss_data,
        loss_reg=loss_reg,
        on_err=jnp.sqrt(_sq(on_resid) / s),
        off_fro=jnp.sqrt(_sq(off)),
        off_spec=jnp.sqrt(off_sq),
        w1_off_fro=jnp.sqrt(_sq(w1_off)),
        e2e_fro=jnp.sqrt(e2e_sq),
        test_err=jnp.sqrt(clean_sq / signal_sq),
        noise_err=theory.noise_error(clean_sq, problem.x_test.shape[1] * e2e_sq, signal_sq, sig),
        align_left_sin=left_sin,
        align_left_cos2=left_cos2,
        align_right_sin=right_sin,
        align_right_cos2=right_cos2,
        sv=sv[:k],
        eff_rank=jnp.where(zero, 0.0, jnp.exp(entropy)),
        balance=_balance_if(balance, params, prec, nan),
        limit_dist=limit_dist,
    )


def noise_error_mc(
    params: Params, problem: Problem, sigmas: tuple[float, ...], activation: str = "linear", prec: str = "highest"
) -> Array:
    """Monte Carlo relative test error at each sigma, on the problem's fixed noise draw.

    The independent check of the D4 closed form used in ``Metrics.noise_err``.
    """
    sig = jnp.asarray(sigmas, params[0].dtype)
    noisy = problem.y_test + sig[:, None, None] * problem.e_test  # (n_sigma, m, T)
    out = forward(params, noisy, activation, prec)  # the layers' products broadcast over sigma
    return jnp.sqrt(jnp.sum((out - problem.x_test) ** 2, axis=(1, 2)) / _sq(problem.x_test))
