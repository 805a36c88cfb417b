"""Per-run reductions: metric histories to numbers per run, with their theory predictions.

:func:`per_run` turns the metric histories of :func:`dlnsim.sweep` into phase durations,
fitted decay rates and final values, next to the predictions of SCIENCE.md section 3
(the D1 rate, the Phase III time, the whitened-code limit and the collapse ratio, the
last two from the teacher redrawn with the sweep's keys). :func:`grid_dims`,
:func:`config_of` and :func:`hparam` read a results dataset for the pictures too.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import numpy as np
import xarray as xr

from dlnsim import _lapack as lapack
from dlnsim._checks import check_float, x64_ready
from dlnsim import theory
from dlnsim.config import GRID_AXES, ProblemConfig, SweepConfig
from dlnsim.hparams import HParams
from dlnsim.metrics import Metrics
from dlnsim.plan import run_teacher
from dlnsim.problem import make_problem

EPS3_REL = 1e-2  # default Phase III threshold, relative to the run's initial off_fro
_FLOOR_EPS = 1e3  # rate fits ignore values below 1e3 * machine eps of their initial value


def grid_dims(ds: xr.Dataset) -> tuple[str, ...]:
    """The run axes of a results dataset (the dims of ``diverged``)."""
    if not isinstance(ds, xr.Dataset) or "diverged" not in ds:
        raise ValueError(
            "ds must be the results of dlnsim.sweep (or dlnsim.open_results), with a 'diverged' flag per run: "
            f"got {'a Dataset without one (a reduction?)' if isinstance(ds, xr.Dataset) else type(ds).__name__}"
        )
    return tuple(ds["diverged"].dims)


def config_of(ds: xr.Dataset) -> SweepConfig | None:
    """The sweep config stored in ``ds.attrs["config_toml"]``, or None if absent."""
    from dlnsim.configfile import load_config_text

    text = ds.attrs.get("config_toml")
    return None if text is None else load_config_text(text, source="config_toml attribute")


def hparam(ds: xr.Dataset, name: str, cfg: SweepConfig | None = None) -> xr.DataArray:
    """A per-run number: the coordinate when swept, else the config's base value."""
    if name in ds.coords:  # swept: a grid axis, or one fixed by selection (scalar)
        return ds[name].astype(float)
    if cfg is None:
        cfg = config_of(ds)
    base = getattr(HParams(**(cfg.hparams if cfg else {})), name)
    return xr.DataArray(float(base))


def _full(ds: xr.Dataset, da: xr.DataArray | float) -> np.ndarray:
    """Broadcast to the run grid, as a NumPy array in grid order."""
    da = xr.DataArray(da) if not isinstance(da, xr.DataArray) else da
    return xr.broadcast(da, ds["diverged"])[0].transpose(*grid_dims(ds)).values.astype(float)


def _history(ds: xr.Dataset, name: str) -> np.ndarray:
    return ds[name].transpose(*grid_dims(ds), "step").values.astype(float)


def first_step(values: np.ndarray, steps: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """First logged step with ``values <= threshold`` (last axis = steps); NaN if never."""
    hit = values <= np.asarray(threshold, float)[..., None]
    return np.where(hit.any(-1), np.asarray(steps, float)[np.argmax(hit, -1)], np.nan)


def fit_rate(values: np.ndarray, steps: np.ndarray, window: Any = None, floor: float = 0.0) -> np.ndarray:
    """Least-squares slope of ``log(values)`` per step over a window (last axis = steps).

    Points at or below ``floor * values[..., 0]`` (the rounding floor of a decayed
    quantity: float32 cannot resolve ``W_1 P_perp`` below ~1e-7 of ``W_1``) and
    non-finite points are left out; NaN with fewer than two points left.

    Args:
      values: (..., n_steps) positive decaying quantity.
      steps: (n_steps,) step numbers.
      window: None (the last half of the logged steps above the floor), an int k (the
        last k logged points) or a pair ``(first_step, last_step)`` (inclusive, in steps).
      floor: relative floor (0: keep every positive point).

    Returns:
      (...) the rate ``r`` in ``values ~ C exp(r t)``; D1 predicts ``ln(1 - eta lambda)``.

    Example:
      >>> t = np.arange(0, 1001, 100)
      >>> round(float(fit_rate(3.0 * np.exp(-2e-3 * t), t)), 9)
      -0.002
    """
    values = np.asarray(values, float)
    steps = np.asarray(steps, float)
    i = np.arange(len(steps))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(values)
        ok = np.isfinite(y) & (values > floor * values[..., :1])
        if window is None:
            last = len(steps) - 1 - np.argmax(ok[..., ::-1], -1)  # last point above the floor
            inside = (i >= (last[..., None] + 1) // 2) & (i <= last[..., None])
        elif isinstance(window, int | np.integer):
            inside = i >= len(steps) - int(window)
        else:
            inside = (steps >= window[0]) & (steps <= window[1])
        ok = ok & inside
        w = ok.astype(float)
        cnt = w.sum(-1)
        tbar = (w * steps).sum(-1) / cnt
        ybar = np.where(ok, y, 0.0).sum(-1) / cnt
        dt = (steps - tbar[..., None]) * w
        num = (dt * np.where(ok, y - ybar[..., None], 0.0)).sum(-1)
        slope = num / (dt * dt).sum(-1)
    return np.where(cnt >= 2, slope, np.nan)


@functools.partial(jax.jit, static_argnames=("problem_cfg", "dtype"))
def _b_singular_values(key: jax.Array, problem_cfg: ProblemConfig, dtype: str) -> jax.Array:
    """Singular values of ``B = A U`` of the teacher the sweep drew with this key."""
    return lapack.svdvals(make_problem(problem_cfg, key=key, dtype=dtype).b)


# One compiled program per depth instead of an op-by-op bisection loop.
_limit_gain = jax.jit(theory.limit_gain, static_argnames="depth")


def _teacher_predictions(ds: xr.Dataset, cfg: SweepConfig | None) -> tuple[np.ndarray, np.ndarray]:
    """Per run: predicted limit on-subspace error (whitened codes) and ``c / c*``.

    Redraws each distinct teacher from the config (the sweep's keys) for the singular
    values ``sigma_i`` of ``B = A U``. With ``c_i = lambda / (kappa sigma_i^(2/L))`` the
    limit gains are ``h_i = limit_gain(c_i, L)`` and ``E* B - U = U V diag(h - 1) V^T``, so
    ``on_err* = sqrt(mean_i (1 - h_i)^2)`` (exact for whitened, noise-free codes; NaN
    otherwise). ``c / c*`` uses the median ``sigma_i`` and the threshold ``c*(L)`` of
    SCIENCE.md (``kappa = 1`` is exact only for whitened codes). Both NaN where the
    teacher cannot be redrawn (no config, training noise, ReLU, float64 without x64) or
    the optimiser's fixed points are not critical points of F (adamw, see
    :data:`dlnsim.theory.LIMIT_OPTIMIZERS`).
    """
    shape = ds["diverged"].shape
    on_star, ratio = np.full(shape, np.nan), np.full(shape, np.nan)
    if cfg is None or cfg.model.activation != "linear" or cfg.train.optimizer not in theory.LIMIT_OPTIMIZERS:
        return on_star, ratio
    if not x64_ready(cfg.train.dtype):
        return on_star, ratio  # float32 draws would be a different teacher
    dims = grid_dims(ds)
    wd = _full(ds, hparam(ds, "weight_decay", cfg))
    noise = _full(ds, hparam(ds, "train_noise", cfg))
    cache: dict[Any, np.ndarray] = {}
    # One compiled limit_gain call per (depth, s): runs of a swept s have s gains each.
    by_shape: dict[tuple[int, int], list[tuple[tuple[int, ...], np.ndarray, bool]]] = {}
    for idx in np.ndindex(shape):
        if noise[idx] != 0:
            continue
        run = {a: ds[a].values[i].item() for a, i in zip(dims, idx)}
        run.update({a: ds[a].item() for a in GRID_AXES if a in ds.coords and ds[a].ndim == 0})
        depth = int(run.get("depth", cfg.model.depth))
        teacher = run_teacher(cfg, run)
        problem_cfg = teacher.problem
        if teacher not in cache:
            cache[teacher] = np.asarray(_b_singular_values(teacher.key(), problem_cfg, cfg.train.dtype), float)
        sv = cache[teacher]
        kappa = theory.kappa(cfg.train.loss, problem_cfg.n_train)
        c = wd[idx] / (kappa * sv ** (2.0 / depth))
        by_shape.setdefault((depth, len(c)), []).append((idx, c, problem_cfg.whiten))
        c_med = wd[idx] / (kappa * np.median(sv) ** (2.0 / depth))
        c_star = theory.collapse_threshold(depth)
        ratio[idx] = c_med / c_star if math.isfinite(c_star) else np.nan  # L = 1 never collapses
    for (depth, _), rows in by_shape.items():
        gains = np.asarray(_limit_gain(np.stack([c for _, c, _ in rows]), depth))
        for (idx, _, whiten), h in zip(rows, gains):
            if whiten:
                on_star[idx] = math.sqrt(float(np.mean((1.0 - h) ** 2)))
    return on_star, ratio


def _check_inputs(ds: Any, eps1: Any, eps3: Any, window: Any) -> None:
    """Clear errors for what :func:`per_run` cannot take (instead of a KeyError or a numpy error deep inside)."""
    grid_dims(ds)  # a results dataset at all
    if "step" not in ds.dims:
        raise ValueError(
            "ds must be the results of dlnsim.sweep (metric histories over 'step'): this one has no step "
            "axis (a reduction's output?); pass the sweep's results"
        )
    check_float("per_run", "eps1", eps1, lo=0.0, strict=True)
    if eps3 is not None:
        check_float("per_run", "eps3", eps3, lo=0.0, strict=True)
    number = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)  # noqa: E731
    pair = isinstance(window, tuple | list) and len(window) == 2 and all(number(x) for x in window)
    last_k = isinstance(window, numbers.Integral) and not isinstance(window, bool) and window >= 2
    if not (window is None or pair or last_k):
        raise ValueError(
            f"window = {window!r} is invalid: must be None (the last half of the logged steps), an integer "
            "k >= 2 (the last k logged points) or a pair (first_step, last_step)"
        )


def per_run(ds: xr.Dataset, *, eps1: float = 0.1, eps3: float | None = None, window: Any = None) -> xr.Dataset:
    """Numbers per run, with theory predictions alongside (dims: the run grid).

    Variables (present when their metrics are in ``ds``):

    - ``steps_phase1``: first logged step with ``on_err <= eps1`` (NaN if never).
    - ``steps_phase3``: first logged step with ``off_fro <= eps3``; ``eps3`` (stored per
      run) defaults to ``1e-2 * off_fro`` at step 0, i.e. a 100-fold decay.
    - ``steps_phase3_w1``: the same for ``W_1 P_perp``: first logged step with
      ``w1_off_fro <= eps3_w1`` (default ``1e-2 * w1_off_fro`` at step 0; an absolute
      ``eps3`` applies to both).
    - ``rate_w1_off`` / ``rate_off`` / ``rate_balance``: fitted slope per step of
      ``log w1_off_fro`` / ``log off_fro`` / ``log balance`` over the window (see
      :func:`fit_rate`; points below the rounding floor left out).
    - ``pred_rate``: ``ln(1 - eta lambda)`` (D1; NaN where D1 does not hold: with
      training noise, which gives ``Y^T P_perp != 0``, and for the optimizers other than
      those of :data:`dlnsim.theory.D1_OPTIMIZERS`); ``rate_ratio_w1_off`` /
      ``rate_ratio_off`` / ``rate_ratio_balance``: fitted / predicted (1 under D1; about 2
      for the imbalance, D3; NaN without weight decay).
    - ``pred_steps_phase3``: :func:`dlnsim.theory.phase3_steps` from the initial
      ``w1_off_fro`` to ``eps3_w1`` at the D1 rate: ``steps_phase3_w1`` rounded up to the
      log grid, exactly (D1). ``E P_perp = W_{L:2} W_1 P_perp`` decays at that rate only
      asymptotically and usually reaches its threshold earlier (the layers above it shrink
      too; at the default sizes about 0.7 of the D1 time), so for ``steps_phase3`` the
      prediction is a time scale, not an estimate.
    - ``pred_on_err_limit``, ``collapse_ratio``: see :func:`_teacher_predictions`.
    - ``final_<metric>``: the last logged value of every :class:`dlnsim.Metrics` field.
    - ``diverged``, ``diverged_at``: copied.

    Args:
      ds: results of :func:`dlnsim.sweep`.
      eps1: Phase I threshold on ``on_err``.
      eps3: absolute Phase III threshold on ``off_fro`` (default: relative, see above).
      window: rate-fit window (see :func:`fit_rate`).
    """
    _check_inputs(ds, eps1, eps3, window)
    cfg = config_of(ds)
    dims = grid_dims(ds)
    steps = ds["step"].values
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    if "on_err" in ds:
        out["steps_phase1"] = (dims, first_step(_history(ds, "on_err"), steps, eps1))
    lr, wd = _full(ds, hparam(ds, "lr", cfg)), _full(ds, hparam(ds, "weight_decay", cfg))
    with np.errstate(invalid="ignore"):
        pred = np.log1p(-lr * wd)
    if cfg is not None and cfg.train.optimizer not in theory.D1_OPTIMIZERS:
        pred = np.full_like(pred, np.nan)
    pred = np.where(_full(ds, hparam(ds, "train_noise", cfg)) > 0, np.nan, pred)  # D1 needs Y^T P_perp = 0
    out["pred_rate"] = (dims, pred)
    for name, suffix in (("off_fro", ""), ("w1_off_fro", "_w1")):
        if name in ds:
            hist = _history(ds, name)
            thr = EPS3_REL * hist[..., 0] if eps3 is None else np.full(hist.shape[:-1], float(eps3))
            out[f"eps3{suffix}"] = (dims, thr)
            out[f"steps_phase3{suffix}"] = (dims, first_step(hist, steps, thr))
            if name == "w1_off_fro":  # D1 times W_1 P_perp exactly
                p3 = np.asarray(theory.phase3_steps(hist[..., 0], lr, wd, thr), float)
                out["pred_steps_phase3"] = (dims, np.where(np.isnan(pred), np.nan, p3))
    for name, short in (("w1_off_fro", "w1_off"), ("off_fro", "off"), ("balance", "balance")):
        if name in ds:
            floor = _FLOOR_EPS * np.finfo(ds[name].dtype).eps
            rate = fit_rate(_history(ds, name), steps, window, floor)
            out[f"rate_{short}"] = (dims, rate)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"rate_ratio_{short}"] = (dims, np.where(pred < 0, rate / pred, np.nan))
    on_star, ratio = _teacher_predictions(ds, cfg)
    out["pred_on_err_limit"] = (dims, on_star)
    out["collapse_ratio"] = (dims, ratio)
    res = xr.Dataset(out, coords={d: ds[d] for d in dims})
    for name in Metrics._fields:
        if name in ds:
            res[f"final_{name}"] = ds[name].isel(step=-1, drop=True)
    res["diverged"] = ds["diverged"]
    if "diverged_at" in ds:
        res["diverged_at"] = ds["diverged_at"]
    res.attrs = {k: v for k, v in ds.attrs.items()}
    res.attrs.update(
        eps1=eps1,
        eps3="1e-2 x initial off_fro" if eps3 is None else float(eps3),
        window="last half of the logged steps above the rounding floor" if window is None else str(window),
    )
    return res
