"""Statistics over seeds: every per-run number summarised over the ``seed`` axis.

:func:`reduce` masks diverged runs (counting them) and gives mean, std, median,
quartiles and a t-based 95% confidence interval of the mean per grid cell.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.reduce.runs import per_run

STATS = ("mean", "std", "median", "q25", "q75", "ci95_lo", "ci95_hi", "count")
# Prediction columns: deterministic given the run, so never masked for divergence.
_UNMASKED = ("pred_rate", "pred_steps_phase3", "pred_on_err_limit", "collapse_ratio", "eps3", "eps3_w1")

# Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30 (scipy.stats.t.ppf).
_T975 = (12.706204736, 4.30265273, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
         2.306004135, 2.262157163, 2.228138852, 2.20098516, 2.17881283, 2.160368656, 2.144786688,
         2.131449546, 2.119905299, 2.109815578, 2.10092204, 2.093024054, 2.085963447, 2.079613845,
         2.073873068, 2.06865761, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
         2.045229642, 2.042272456)  # fmt: skip


def t975(df: Any) -> np.ndarray:
    """Student-t 97.5% quantile (elementwise; NaN for df < 1).

    Table for df <= 30, Cornish-Fisher expansion beyond (error < 2e-6 there: 1.75e-6 at df = 31, against scipy).

    Example:
      >>> round(float(t975(4)), 3), round(float(t975(1000)), 3)
      (2.776, 1.962)
    """
    df = np.asarray(df, float)
    z = 1.959963984540054
    v = np.maximum(df, 1.0)
    cf = z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
    cf += (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    table = np.asarray(_T975)[np.clip(v.astype(int), 1, 30) - 1]
    return np.where(df < 1, np.nan, np.where(df <= 30, table, cf))


def _seed_stats(da: xr.DataArray, valid: xr.DataArray | None) -> xr.DataArray:
    """:data:`STATS` of ``da`` over ``seed`` (NaN ignored; masked where not ``valid``), on a
    new leading ``stat`` dim. In NumPy on the values: the same numbers as xarray's reductions
    (nan-aware, linear quartiles), 3.5x faster (32 variables of the built-in sweep: 0.13 s
    instead of 0.45 s on 2 Intel Xeon cores, 2026-12-08)."""
    if valid is not None:
        da = da.where(valid)
    da = da.astype(float)
    rest = [d for d in da.dims if d != "seed"]
    a = da.transpose(*rest, "seed").values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells give NaN, as intended
        count = np.sum(~np.isnan(a), axis=-1)
        mean, std = np.nanmean(a, axis=-1), np.nanstd(a, axis=-1, ddof=1)
        q25, q75 = np.nanquantile(a, [0.25, 0.75], axis=-1)
        half = t975(count - 1) * std / np.sqrt(count)
        parts = (mean, std, np.nanmedian(a, axis=-1), q25, q75, mean - half, mean + half, count.astype(float))
    coords = {k: v for k, v in da.coords.items() if "seed" not in v.dims}
    return xr.DataArray(
        np.stack(parts), dims=("stat", *rest), coords={**coords, "stat": list(STATS)}, name=da.name, attrs=da.attrs
    )


def reduce(ds: xr.Dataset, *, eps1: float = 0.1, eps3: float | None = None, window: Any = None) -> xr.Dataset:
    """Per-run reductions (:func:`per_run`), then statistics over the ``seed`` axis.

    Every variable of :func:`per_run` gets a ``stat`` dim in place of ``seed``: mean,
    std, median, q25, q75, a t-based 95% confidence interval of the mean
    (``ci95_lo``/``ci95_hi``, NaN with fewer than two values) and ``count`` (values
    used). Diverged runs are masked (except for the ``pred_*`` theory columns) and counted in
    ``n_diverged`` of ``n_runs`` (the runs computed: a shard's file holds NaN for the others);
    runs that never reach a threshold give NaN steps and
    drop out of the ``count`` of that variable. Without a ``seed`` axis each run is its
    own one-seed group.

    Args:
      ds: results of :func:`dlnsim.sweep`.
      eps1, eps3, window: see :func:`per_run`.

    Returns:
      Dataset over the non-seed run axes (+ ``stat``, ``sigma``, ``k``).

    Example:
      >>> import numpy as np, xarray as xr
      >>> t = np.arange(0, 101, 10)
      >>> ds = xr.Dataset({"w1_off_fro": (("seed", "step"), np.exp(-0.01 * t) * [[1.0], [2.0]]),
      ...                  "diverged": ("seed", [False, False])}, coords={"seed": [0, 1], "step": t})
      >>> round(float(reduce(ds).rate_w1_off.sel(stat="median")), 6)
      -0.01
    """
    runs = per_run(ds, eps1=eps1, eps3=eps3, window=window)
    if "seed" not in runs.dims:
        runs = runs.expand_dims("seed")
    valid = ~runs["diverged"]
    out = {}
    for name, da in runs.data_vars.items():
        if name in ("diverged", "diverged_at"):
            continue
        out[name] = _seed_stats(da, None if name in _UNMASKED else valid)
    res = xr.Dataset(out)
    # Runs that were computed: all of them, but for the others' runs in a shard's file (NaN and
    # not diverged; a computed run's initial loss is NaN only if it diverged at once).
    if "loss_data" in ds:
        computed = ds["loss_data"].isel(step=0, drop=True).notnull() | ds["diverged"]
    else:
        computed = xr.ones_like(ds["diverged"])
    computed = computed.expand_dims("seed") if "seed" not in computed.dims else computed
    res["n_runs"] = computed.sum("seed").astype(int)
    res["n_diverged"] = (runs["diverged"] & computed).sum("seed").astype(int)
    res.attrs = dict(runs.attrs)
    return res
