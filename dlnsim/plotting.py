"""Pictures of sweep results: the only module that imports matplotlib.

Every function takes a results dataset of :func:`dlnsim.sweep` (or one opened from a
results file) and a path, writes one figure (PNG by default; SVG or PDF by the path's
extension) and returns the path. Figures are built on ``matplotlib.figure.Figure``
directly: no pyplot, no global state, no display backend needed.

Grid axes that a picture does not show are fixed at their first value unless
``select={"axis": value}`` says otherwise; the title states the fixed values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import colors
from matplotlib.figure import Figure

from dlnsim import reduce as _reduce
from dlnsim import theory

LABELS = {
    "loss_data": "data loss",
    "loss_reg": "weight-decay loss",
    "on_err": "on-subspace error ||EB - U||_F / sqrt(s)",
    "off_fro": "off-subspace norm ||E P_perp||_F",
    "off_spec": "off-subspace norm ||E P_perp||_2",
    "w1_off_fro": "first-layer off-subspace norm ||W_1 P_perp||_F",
    "e2e_fro": "||E||_F",
    "test_err": "relative test error (clean)",
    "noise_err": "relative test error (noisy)",
    "align_left_sin": "sin largest angle, left space vs span(U)",
    "align_left_cos2": "mean cos^2, left space vs span(U)",
    "align_right_sin": "sin largest angle, right space vs range(B)",
    "align_right_cos2": "mean cos^2, right space vs range(B)",
    "sv": "singular value of E",
    "eff_rank": "effective rank of E",
    "balance": "imbalance max_l ||W_{l+1}^T W_{l+1} - W_l W_l^T|| (rel.)",
    "limit_dist": "distance to limit ||E - E*||_F / ||E*||_F",
    "steps_phase1": "steps to Phase I (on_err <= eps1)",
    "steps_phase3": "steps to Phase III (off_fro <= eps3)",
    "rate_ratio_w1_off": "fitted / D1 decay rate of ||W_1 P_perp||",
    "rate_ratio_off": "fitted / D1 decay rate of ||E P_perp||",
}
AXIS_LABELS = {"weight_decay": "weight decay lambda", "lr": "step size eta", "depth": "depth L", "width": "width w"}


def _label(name: str) -> str:
    return LABELS.get(name.removeprefix("final_"), name)


def _axis_label(name: str) -> str:
    return AXIS_LABELS.get(name, name)


def _fmt(v: Any) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:g}" if isinstance(v, float) else str(v)


def _is_log_grid(values: Any) -> bool:
    """A positive geometric-looking grid (zeros ignored): log spacing more even than linear."""
    v = np.sort(np.asarray(values, float))
    p = v[v > 0]
    if len(p) < 2 or np.any(v < 0) or p[-1] / p[0] < 10:
        return False
    if len(p) == 2:
        return True
    dl, dv = np.diff(np.log(p)), np.diff(p)
    return bool(np.std(dl) / np.mean(dl) < np.std(dv) / np.mean(dv))


def _runs(ds: xr.Dataset) -> tuple[str, ...]:
    return _reduce.grid_dims(ds)


def _fix(
    ds: xr.Dataset, keep: tuple[str, ...], select: Mapping[str, Any] | None, metric: str | None = None
) -> tuple[xr.Dataset, list[str]]:
    """Fixes every run axis outside ``keep`` and ``seed`` (``select`` value, else the first).

    ``sigma``/``k`` selections are applied too and named in the description only where
    ``metric`` has that dim.
    """
    select = dict(select or {})
    fixed = []
    for axis in _runs(ds):
        if axis in keep or axis == "seed":
            continue
        value = select.pop(axis, ds[axis].values[0])
        ds = ds.sel({axis: value})  # keeps the value as a scalar coordinate
        fixed.append(f"{axis}={_fmt(value)}")
    for axis, value in select.items():  # sigma, k, or an axis shown in the picture
        if axis in ds.dims:
            if metric in ds and axis in ds[metric].dims:
                fixed.append(f"{axis}={_fmt(value)}")
            ds = ds.sel({axis: value})
    return ds, fixed


def _context(ds: xr.Dataset, fixed: list[str]) -> str:
    """Problem sizes and base settings from the config, plus the fixed axes."""
    cfg = _reduce.config_of(ds)
    parts = []
    if cfg is not None:
        runs = _runs(ds)
        sizes = {"d": cfg.problem.d, "m": cfg.problem.m, "s": cfg.problem.s, "N": cfg.problem.n_train}
        parts += [f"{k}={v}" for k, v in sizes.items() if {"N": "n_train"}.get(k, k) not in runs]
        if "depth" not in runs:
            parts.append(f"L={cfg.model.depth}")
        if "width" not in runs:
            parts.append(f"w={cfg.model.width}")
        for name in ("lr", "weight_decay"):
            if name not in runs:
                parts.append(f"{name}={_fmt(float(_reduce.hparam(ds, name, cfg)))}")
        parts.append(f"{cfg.train.steps} steps")
    return ", ".join(parts + fixed)


def _per_run_value(ds: xr.Dataset, metric: str) -> xr.DataArray:
    """Final value of a metric, or a per-run reduction (``steps_phase1``, ...)."""
    if metric in ds.data_vars and "step" in ds[metric].dims:
        return ds[metric].isel(step=-1, drop=True)
    runs = _reduce.per_run(ds)
    if metric not in runs:
        raise ValueError(f"metric = {metric!r} is invalid: must be a data variable of the results or of dlnsim.reduce.per_run")
    return runs[metric]


def _over_seeds(da: xr.DataArray, diverged: xr.DataArray, how: str) -> xr.DataArray:
    da = da.where(~diverged)
    if "seed" not in da.dims:
        return da
    if how not in ("median", "mean"):
        raise ValueError(f"reduce = {how!r} is invalid: must be 'median' or 'mean'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all seeds diverged: NaN, as intended
        return getattr(da, how)("seed")


def _default_select(ds: xr.Dataset, metric: str, select: Mapping[str, Any] | None) -> dict[str, Any]:
    select = dict(select or {})
    if metric in ds and "sigma" in ds[metric].dims and "sigma" not in select:
        select["sigma"] = ds["sigma"].values[-1]  # the noisiest level shows the effect
    if metric in ds and "k" in ds[metric].dims and "k" not in select:
        select["k"] = 0
    return select


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    return path


def _index_position(values: np.ndarray, v: float, log: bool) -> float | None:
    """Where ``v`` lies on a categorical axis of grid ``values`` (cell i centred at i).

    Interpolates in log (positive grid values only, a 0 cell is skipped) or linearly,
    extrapolating at most half a cell beyond the ends; None outside.
    """
    idx = np.arange(len(values), dtype=float)
    vals = np.asarray(values, float)
    keep = vals > 0 if log else np.isfinite(vals)
    xs, ys = (np.log(vals[keep]) if log else vals[keep]), idx[keep]
    if len(xs) < 2 or (log and v <= 0):
        return None
    t = math.log(v) if log else v
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    if t < xs[0]:
        pos = ys[0] + (t - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
    elif t > xs[-1]:
        pos = ys[-1] + (t - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    else:
        pos = float(np.interp(t, xs, ys))
    return pos if ys[0] - 0.5 <= pos <= ys[-1] + 0.5 else None


def _collapse_boundary(ax: Any, ds: xr.Dataset, x: str, y: str, log: dict[str, bool]) -> None:
    """Collapse thresholds of SCIENCE.md "Collapse threshold" on a depth x weight-decay map.

    Approximation: kappa = 1 (mean loss; N for the sum loss) and the median singular value
    of ``B`` taken as 1, so the boundary for depth L is ``lambda = kappa c*(L)``.
    """
    cfg = _reduce.config_of(ds)
    kappa = float(cfg.problem.n_train) if cfg is not None and cfg.train.loss == "sum" else 1.0
    depths, wds = ds["depth"].values, ds["weight_decay"].values
    styles = (
        (theory.collapse_threshold, "-", "red", "c*(L): nonzero limit vanishes"),
        (theory.global_collapse_threshold, "--", "orange", "E = 0 becomes the global minimum"),
    )
    beyond = []
    for threshold, ls, color, text in styles:
        pts = []
        for i, depth in enumerate(depths):
            lam = kappa * threshold(int(depth)) if depth >= 2 else math.inf
            pos = _index_position(wds, lam, log["weight_decay"]) if math.isfinite(lam) else None
            if pos is not None:
                pts += [(pos, i - 0.5), (pos, i + 0.5)]
            elif pts:
                break  # a staircase segment ends where the boundary leaves the grid
        if not pts:
            beyond.append(threshold)
            continue
        px, py = np.array(pts).T
        if x == "depth":
            px, py = py, px
        ax.plot(px, py, ls=ls, color=color, lw=2.5, label=f"{text} (sigma(B)~1)")
    if ax.get_legend_handles_labels()[0]:
        ax.figure.legend(loc="outside lower center", fontsize=8, ncol=1, frameon=False)
    if theory.collapse_threshold in beyond:  # say so rather than draw nothing
        at = ", ".join(f"{kappa * theory.collapse_threshold(int(L)):.3g} (L={L})" for L in depths if L >= 2)
        if at:
            ax.figure.text(0.5, 0, f"collapse threshold c*(L) (sigma(B)~1) outside this grid: lambda = {at}",
                           ha="center", va="top", fontsize=8)


def phase_diagram(
    ds: xr.Dataset,
    x: str,
    y: str,
    metric: str = "on_err",
    path: str | Path = "phase_diagram.png",
    reduce: str = "median",
    log: bool | Mapping[str, bool] | None = None,
    select: Mapping[str, Any] | None = None,
) -> Path:
    """Heatmap of a metric's final value over two grid axes, seeds reduced.

    Cells are categorical (one per grid value, so a 0 in a log grid of weight decays is
    shown as its own column); axes whose grid is logarithmic are labelled so.
    Diverged cells (every seed diverged) are hatched and marked "diverged"; cells with
    some diverged seeds show the count. On a depth x weight-decay map the collapse
    boundaries of SCIENCE.md are drawn for each depth L >= 2 (see
    :func:`_collapse_boundary`: median singular value of B taken as 1, kappa = 1).

    Args:
      ds: results of :func:`dlnsim.sweep`.
      x, y: grid axes for the columns and rows.
      metric: a metric (its final value) or a :func:`dlnsim.reduce.per_run` variable.
      path: output file; the extension picks the format (PNG default).
      reduce: "median" or "mean" over seeds (diverged seeds left out).
      log: log grid per axis (bool for both, mapping per axis); None: detected.
      select: values for the axes not shown (default: the first), ``sigma``, ``k``.

    Returns:
      The path written.
    """
    runs = _runs(ds)
    for name, axis in (("x", x), ("y", y)):
        if axis not in runs:
            raise ValueError(f"{name} = {axis!r} is invalid: must be a grid axis of the results ({', '.join(runs)})")
    if x == y:
        raise ValueError(f"y = {y!r} is invalid: must differ from x")
    sub, fixed = _fix(ds, (x, y), _default_select(ds, metric, select), metric)
    value = _per_run_value(sub, metric)
    cell = _over_seeds(value, sub["diverged"], reduce).transpose(y, x).values.astype(float)
    div = sub["diverged"]
    n_div = (div.sum("seed") if "seed" in div.dims else div.astype(int)).transpose(y, x).values
    n_run = sub.sizes.get("seed", 1)
    if isinstance(log, bool) or log is None:
        log = {a: (_is_log_grid(ds[a].values) if log is None else log) for a in (x, y)}
    log = {a: bool(dict(log).get(a, _is_log_grid(ds[a].values))) for a in (x, y)}

    finite = cell[np.isfinite(cell)]
    pos = finite[finite > 0]
    norm, shown, extend = None, cell, "neither"
    if pos.size and finite.min() >= 0 and pos.max() / pos.min() > 100:
        # Errors span decades: log colours; exact zeros (collapse to E = 0) get the lowest
        # colour (the cell text says 0).
        norm = colors.LogNorm(pos.min(), pos.max())
        shown = np.where(cell > 0, cell, pos.min())
        extend = "min" if finite.min() == 0 else "neither"
    ny, nx = cell.shape
    fig = Figure(figsize=(1.6 + 0.75 * max(nx, 5), 1.8 + 0.55 * max(ny, 4)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # cells without a value (all diverged, never reached)
    mesh = ax.pcolormesh(np.arange(nx + 1) - 0.5, np.arange(ny + 1) - 0.5, np.ma.masked_invalid(shown), cmap="viridis", norm=norm)
    cbar = fig.colorbar(mesh, ax=ax, extend=extend)
    final = "final, " if metric in ds.data_vars and "step" in ds[metric].dims else ""
    cbar.set_label(f"{_label(metric)}\n({final}{reduce} over {n_run} seed{'s' * (n_run > 1)})", fontsize=9)
    for i in range(ny):
        for j in range(nx):
            if n_div[i, j] == n_run:
                ax.add_patch(_hatched(j, i))
                ax.text(j, i, "diverged", ha="center", va="center", fontsize=7, color="black")
                continue
            if nx * ny <= 80:
                v = cell[i, j]
                text = "n/a" if not np.isfinite(v) else f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
                if n_div[i, j]:
                    text += f"\n{n_div[i, j]}/{n_run} div."
                rgba = mesh.cmap(mesh.norm(cell[i, j])) if np.isfinite(cell[i, j]) else (1, 1, 1, 1)
                dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    for axis, set_ticks, set_labels, n in ((x, ax.set_xticks, ax.set_xlabel, nx), (y, ax.set_yticks, ax.set_ylabel, ny)):
        set_ticks(np.arange(n), [_fmt(v) for v in ds[axis].values])
        set_labels(_axis_label(axis) + (" (log grid)" if log[axis] else ""))
    ax.tick_params(axis="x", labelrotation=45 if nx > 6 else 0)
    if {x, y} == {"depth", "weight_decay"}:
        _collapse_boundary(ax, sub, x, y, log)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ctx = _context(ds, fixed)
    ax.set_title(f"{_label(metric)}\n{ctx}" if ctx else _label(metric), fontsize=9)
    return _save(fig, path)


def _hatched(j: int, i: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.8", edgecolor="0.3", hatch="xx", lw=0)


def _hue_axis(ds: xr.Dataset, hue: str | None, prefer: str | None = None) -> str | None:
    runs = [a for a in _runs(ds) if a != "seed"]
    if hue is not None:
        if hue not in runs:
            raise ValueError(f"hue = {hue!r} is invalid: must be a grid axis of the results ({', '.join(runs)})")
        return hue
    if prefer in runs:
        return prefer
    return next((a for a in runs if ds.sizes[a] > 1), None)


def _lines(ds: xr.Dataset, hue: str | None):
    """(label, one-hue dataset) pairs; one unlabeled entry without a hue."""
    if hue is None:
        return [(None, ds)]
    return [(f"{hue}={_fmt(v)}", ds.sel({hue: v})) for v in ds[hue].values]


def _band(da: xr.DataArray, diverged: xr.DataArray):
    """Median and interquartile range over non-diverged seeds (NaN if none)."""
    da = da.where(~diverged)
    if "seed" not in da.dims:
        return da, da, da
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all seeds masked: NaN, as intended
        return da.median("seed"), da.quantile(0.25, "seed"), da.quantile(0.75, "seed")


def learning_curves(
    ds: xr.Dataset,
    path: str | Path = "learning_curves.png",
    metric: str = "on_err",
    hue: str | None = None,
    select: Mapping[str, Any] | None = None,
    eps1: float = 0.1,
    eps3: float | None = None,
) -> Path:
    """A metric against step, one line per value of ``hue`` (median over seeds, IQR band).

    Phases are marked on each line: a circle where Phase I ends (median first step with
    ``on_err <= eps1``) and a square where Phase III is reached (median first step with
    ``off_fro <= eps3``; default eps3 = 1e-2 x initial off_fro, see :func:`dlnsim.reduce.per_run`).

    Args:
      ds: results of :func:`dlnsim.sweep`.
      path: output file.
      metric: a metric with a step history.
      hue: the grid axis that tells lines apart (default: the first swept axis).
      select: values for the axes not shown (default: the first), ``sigma``, ``k``.
      eps1, eps3: phase thresholds.
    """
    if metric not in ds or "step" not in ds[metric].dims:
        raise ValueError(f"metric = {metric!r} is invalid: must be a metric with a step history")
    hue = _hue_axis(ds, hue)
    sub, fixed = _fix(ds, (hue,) if hue else (), _default_select(ds, metric, select), metric)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    steps = sub["step"].values
    cmap = colors.LinearSegmentedColormap.from_list("hue", ["#1b4f9c", "#2ca02c", "#e08a00", "#c0272d"])
    lines = _lines(sub, hue)
    for n, (label, one) in enumerate(lines):
        color = cmap(n / max(len(lines) - 1, 1))
        mid, lo, hi = _band(one[metric], one["diverged"])
        ax.plot(steps, mid.values, color=color, lw=1.8, label=label)
        ax.fill_between(steps, lo.values, hi.values, color=color, alpha=0.2, lw=0)
        runs = _reduce.per_run(one, eps1=eps1, eps3=eps3)
        for name, marker in (("steps_phase1", "o"), ("steps_phase3", "s")):
            if name not in runs:
                continue
            t = _over_seeds(runs[name], runs["diverged"], "median")
            t = float(t) if np.isfinite(t) else None
            if t is not None:
                ax.plot([t], [np.interp(t, steps, mid.values)], marker=marker, ms=8, mfc="white", mec=color, mew=2, ls="")
    ax.plot([], [], "o", mfc="white", mec="k", ls="", label=f"Phase I end (on_err <= {eps1:g})")
    eps3_txt = "1e-2 x initial" if eps3 is None else f"{eps3:g}"
    ax.plot([], [], "s", mfc="white", mec="k", ls="", label=f"Phase III reached (off_fro <= {eps3_txt})")
    if metric == "on_err":
        ax.axhline(eps1, color="0.4", ls=":", lw=1)
    vals = sub[metric].values
    pos = vals[np.isfinite(vals) & (vals > 0)]
    if pos.size and (vals[np.isfinite(vals)].min() >= 0) and pos.max() / pos.min() > 100:
        ax.set_yscale("log", nonpositive="mask")  # exact zeros (collapse to E = 0) drop out
    ax.set_xlabel("step")
    ax.set_ylabel(_label(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Learning curves (median over seeds, band: interquartile range)\n{_context(ds, fixed)}", fontsize=9)
    return _save(fig, path)


def off_subspace_decay(
    ds: xr.Dataset,
    path: str | Path = "off_subspace_decay.png",
    hue: str | None = None,
    select: Mapping[str, Any] | None = None,
) -> Path:
    """Measured ``||W_1 P_perp||_F`` against the exact D1 prediction ``(1 - eta lambda)^t`` x initial.

    Left: measured (solid, median over seeds) and predicted (dashed) curves, one colour
    per value of ``hue`` (default: weight decay when swept). Right: the per-run relative
    deviation ``|measured / predicted - 1|`` (median over seeds), which D1 says is zero up
    to rounding.
    """
    hue = _hue_axis(ds, hue, prefer="weight_decay")
    sub, fixed = _fix(ds, (hue,) if hue else (), select)
    cfg = _reduce.config_of(ds)
    fig = Figure(figsize=(11, 4.6))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    steps = sub["step"]
    cmap = colors.LinearSegmentedColormap.from_list("hue", ["#1b4f9c", "#2ca02c", "#e08a00", "#c0272d"])
    lines = _lines(sub, hue)
    for n, (label, one) in enumerate(lines):
        color = cmap(n / max(len(lines) - 1, 1))
        rate = np.log1p(-_reduce.hparam(one, "lr", cfg) * _reduce.hparam(one, "weight_decay", cfg))
        measured = one["w1_off_fro"]
        predicted = measured.isel(step=0) * np.exp(rate * steps)
        mid, lo, hi = _band(measured, one["diverged"])
        left.plot(steps, mid.values, color=color, lw=2, label=label)
        left.fill_between(steps, lo.values, hi.values, color=color, alpha=0.2, lw=0)
        left.plot(steps, _band(predicted, one["diverged"])[0].transpose("step", ...).values, color="k", ls="--", lw=1)
        # Below the rounding floor the measured norm stops at ~eps ||W_1||: not a D1 test.
        floor = 1e3 * np.finfo(measured.dtype).eps * measured.isel(step=0)
        dev = _band(abs(measured / predicted - 1).where(predicted > floor), one["diverged"])[0]
        eps = np.finfo(measured.dtype).eps
        dev = dev.where(~(dev < eps), eps)  # exact agreement drawn at machine eps (log axis)
        right.plot(steps, dev.values, color=color, lw=1.5, label=label)
    left.plot([], [], "k--", lw=1, label="D1 prediction (1 - lr wd)^t x initial")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel(_label("w1_off_fro"))
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    left.set_title("measured (median over seeds, IQR band) vs D1", fontsize=9)
    right.set_yscale("log", nonpositive="mask")
    right.set_xlabel("step")
    right.set_ylabel("|measured / predicted - 1|")
    right.grid(alpha=0.3)
    right.set_title("relative deviation from D1 (rounding level expected; exact 0 drawn at eps;\n"
                    "left out once the prediction is below 1e3 eps x initial)", fontsize=9)
    fig.suptitle(f"Off-subspace decay of the first layer (D1)\n{_context(ds, fixed)}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def noise_curves(
    ds: xr.Dataset,
    path: str | Path = "noise_curves.png",
    hue: str | None = None,
    select: Mapping[str, Any] | None = None,
) -> Path:
    """Final relative test error against test noise level sigma (D4), per weight decay.

    One line per value of ``hue`` (default: weight decay when swept): the median over
    seeds with the interquartile band and the individual seeds as thin lines.
    """
    hue = _hue_axis(ds, hue, prefer="weight_decay")
    sub, fixed = _fix(ds, (hue,) if hue else (), select)
    fig = Figure(figsize=(7, 4.8))
    ax = fig.add_subplot()
    sig = sub["sigma"].values
    cmap = colors.LinearSegmentedColormap.from_list("hue", ["#1b4f9c", "#2ca02c", "#e08a00", "#c0272d"])
    lines = _lines(sub, hue)
    for n, (label, one) in enumerate(lines):
        color = cmap(n / max(len(lines) - 1, 1))
        final = one["noise_err"].isel(step=-1)
        if hue == "weight_decay" and float(one["weight_decay"]) == 0:
            label += " (no weight decay)"
        mid, lo, hi = _band(final, one["diverged"])
        ax.plot(sig, mid.values, color=color, lw=2, marker="o", label=label)
        ax.fill_between(sig, lo.values, hi.values, color=color, alpha=0.2, lw=0)
        if "seed" in final.dims:
            for s in final["seed"].values:
                if not bool(one["diverged"].sel(seed=s)):
                    ax.plot(sig, final.sel(seed=s).values, color=color, lw=0.6, alpha=0.5)
    ax.set_xlabel("test measurement noise sigma")
    ax.set_ylabel("relative test error ||f(y) - x|| / ||x||")
    ax.grid(alpha=0.3)
    if lines[0][0] is not None:
        ax.legend(fontsize=8)
    ax.set_title(f"Noise robustness (median over seeds, IQR band, thin: seeds)\n{_context(ds, fixed)}", fontsize=9)
    return _save(fig, path)
