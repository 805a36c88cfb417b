"""What every picture shares: labels, the slice of the results it shows, seed bands, saving.

Grid axes that a picture does not show are fixed at their first value unless
``select={"axis": value}`` says otherwise (:func:`fix`); :func:`context` states the
fixed values and the config's sizes for the title.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import colors
from matplotlib.figure import Figure

from dlnsim import reduce as _reduce

LABELS = {
    "loss_data": "data loss",
    "loss_reg": "weight-decay loss",
    "on_err": "on-subspace error ||EB - U||_F / sqrt(s)",
    "off_fro": "off-subspace norm ||E P_perp||_F",
    "off_spec": "off-subspace norm ||E P_perp||_2",
    "w1_off_fro": "first-layer off-subspace norm ||W_1 P_perp||_F",
    "e2e_fro": "||E||_F",
    "test_err": "relative test error (clean)",
    "noise_err": "relative test error at test noise sigma",
    "align_left_sin": "sin largest angle, left space vs span(U)",
    "align_left_cos2": "mean cos^2, left space vs span(U)",
    "align_right_sin": "sin largest angle, right space vs range(B)",
    "align_right_cos2": "mean cos^2, right space vs range(B)",
    "sv": "singular value of E",
    "eff_rank": "effective rank of E",
    "balance": "imbalance max_l ||W_{l+1}^T W_{l+1} - W_l W_l^T|| (rel.)",
    "limit_dist": "distance to limit ||E - E*||_F / ||E*||_F",
    # per_run's default thresholds, which the phase diagrams use
    "steps_phase1": "steps to Phase I (on_err <= 0.1)",
    "steps_phase3": "steps to Phase III (off_fro <= 1e-2 x initial)",
    "steps_phase3_w1": "steps to Phase III of W_1 (w1_off_fro <= 1e-2 x initial)",
    "rate_ratio_w1_off": "fitted / D1 decay rate of ||W_1 P_perp||",
    "rate_ratio_off": "fitted / D1 decay rate of ||E P_perp||",
    "rate_ratio_balance": "fitted imbalance decay rate / ln(1 - eta lambda) (D3: ~2)",
}
AXIS_LABELS = {
    "weight_decay": "weight decay lambda",
    "lr": "step size eta",
    "depth": "depth L",
    "width": "width w",
    "m_over_d": "m/d (measurements per signal dimension)",
    "s_over_m": "s/m (subspace dimension per measurement)",
}
# Line colours of the curve plots, from the first to the last value of the hue axis.
HUE_COLORS = colors.LinearSegmentedColormap.from_list("hue", ["#1b4f9c", "#2ca02c", "#e08a00", "#c0272d"])


def metric_label(name: str) -> str:
    return LABELS.get(name.removeprefix("final_"), name)


def axis_label(name: str) -> str:
    return AXIS_LABELS.get(name, name)


def fmt(v: Any) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:g}" if isinstance(v, float) else str(v)


def fix(
    ds: xr.Dataset, keep: tuple[str, ...], select: Mapping[str, Any] | None, metric: str | None = None
) -> tuple[xr.Dataset, list[str]]:
    """Fixes every run axis outside ``keep`` and ``seed`` (``select`` value, else the first).

    ``sigma``/``k`` selections are applied too and named in the description only where
    ``metric`` has that dim.
    """
    select = dict(select or {})
    allowed = [a for a in _reduce.grid_dims(ds) if a not in keep and a != "seed"]
    allowed += [d for d in ("sigma", "k") if d in ds.dims]
    for axis, value in list(select.items()):
        if axis not in allowed:
            raise ValueError(
                f"select = {{{axis!r}: ...}} is invalid: the axes this picture fixes are {', '.join(allowed) or 'none'}"
                + (" (seeds are summarised, not selected)" if axis == "seed" else "")
            )
        match = stored(ds[axis].values, value)
        if match is None:
            shown = ", ".join(fmt(v) for v in ds[axis].values)
            raise ValueError(f"select[{axis!r}] = {value!r} is invalid: {axis} values are {shown}")
        select[axis] = match
    fixed = []
    for axis in _reduce.grid_dims(ds):
        if axis in keep or axis == "seed":
            continue
        value = select.pop(axis, ds[axis].values[0])
        ds = ds.sel({axis: value})  # keeps the value as a scalar coordinate
        fixed.append(f"{axis}={fmt(value)}")
    for axis, value in select.items():  # sigma or k (grid axes were fixed above)
        if axis in ds.dims:
            if metric in ds and axis in ds[metric].dims:
                fixed.append(f"{axis}={fmt(value)}")
            ds = ds.sel({axis: value})
    return ds, fixed


def stored(values: Any, number: Any) -> Any:
    """The value of a coordinate that equals ``number`` up to float rounding (the stored one,
    which selection matches exactly), or None.

    Example:
      >>> stored(np.array([0.0, 0.01, 0.1]), 1e-2), stored(np.array([2, 3]), 4)
      (0.01, None)
    """
    try:
        number = float(number)
    except (TypeError, ValueError):
        return None
    hit = np.flatnonzero(np.isclose(np.asarray(values, float), number, rtol=1e-6, atol=1e-12))
    return values[hit[0]].item() if hit.size else None


def default_select(ds: xr.Dataset, metric: str, select: Mapping[str, Any] | None) -> dict[str, Any]:
    select = dict(select or {})
    if metric in ds and "sigma" in ds[metric].dims and "sigma" not in select:
        select["sigma"] = ds["sigma"].values[-1]  # the noisiest level shows the effect
    if metric in ds and "k" in ds[metric].dims and "k" not in select:
        select["k"] = 0
    return select


def context(ds: xr.Dataset, fixed: list[str]) -> str:
    """Problem sizes and base settings from the config, plus the fixed axes."""
    cfg = _reduce.config_of(ds)
    parts = []
    if cfg is not None:
        runs = _reduce.grid_dims(ds)
        sizes = {"d": cfg.problem.d, "m": cfg.problem.m, "s": cfg.problem.s, "N": cfg.problem.n_train}
        # A size is fixed unless swept, directly or through a ratio axis (m_over_d sets m, and s
        # through s_over_m; s itself stays fixed when only m moves).
        swept = {"N": ["n_train"], "m": ["m", "m_over_d"], "s": ["s", "s_over_m"]}
        parts += [f"{k}={v}" for k, v in sizes.items() if not any(a in runs for a in swept.get(k, [k]))]
        if "depth" not in runs:
            parts.append(f"L={cfg.model.depth}")
        if "width" not in runs:
            parts.append(f"w={cfg.model.width}")
        for name in ("lr", "weight_decay"):
            if name not in runs:
                parts.append(f"{name}={fmt(float(_reduce.hparam(ds, name, cfg)))}")
        parts.append(f"{cfg.train.steps} steps")
        if cfg.model.activation == "relu":
            parts.insert(0, "ReLU network")
    return ", ".join(parts + fixed)


def require_runs(ds: xr.Dataset) -> None:
    """Raises ``ValueError`` when every run of ``ds`` (a picture's selection) diverged:
    their frozen values are not results, and the picture would be empty."""
    div = ds["diverged"].values
    if div.size and div.all():
        raise ValueError(
            f"nothing to plot: all {div.size} selected runs diverged (see diverged_at; a smaller lr usually helps)"
        )


def over_seeds(da: xr.DataArray, diverged: xr.DataArray, how: str) -> xr.DataArray:
    """Median or mean over non-diverged seeds (NaN where every seed diverged)."""
    da = da.where(~diverged)
    if "seed" not in da.dims:
        return da
    if how not in ("median", "mean"):
        raise ValueError(f"reduce = {how!r} is invalid: must be 'median' or 'mean'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all seeds diverged: NaN, as intended
        return getattr(da, how)("seed")


def save(fig: Figure, path: str | Path) -> Path:
    """Writes ``fig`` (PNG unless the path's extension says otherwise) atomically, as the
    results are: a failed write (a full disk) leaves no partial picture and names the file;
    returns the path."""
    from dlnsim.storage.files import atomic

    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as f:
        fig.savefig(f, format=path.suffix[1:].lower(), dpi=130, bbox_inches="tight")
    return path
