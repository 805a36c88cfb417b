"""Phase diagrams: a metric's final value as a heatmap over two grid axes, seeds reduced.

On a depth x weight-decay map the collapse thresholds of SCIENCE.md are drawn on top.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import colors
from matplotlib.figure import Figure

from dlnsim import reduce as _reduce
from dlnsim import theory
from dlnsim.plotting._common import axis_label, context, default_select, fix, fmt, metric_label, over_seeds, save


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


# Why a metric can be NaN in every run (the error of a picture that would be empty).
_RELU_HINT = " (the end-to-end map's metrics are NaN for a ReLU network: try test_err)"
NAN_HINTS = {
    **dict.fromkeys(
        ("on_err", "off_fro", "off_spec", "e2e_fro", "sv", "eff_rank", "balance", "align_left_sin"), _RELU_HINT
    ),
    "limit_dist": " (it needs whitened codes, problem.whiten = true, noise-free data and weight decay > 0)",
    "pred_on_err_limit": " (it needs whitened codes, problem.whiten = true, and noise-free data)",
    "pred_rate": " (D1 needs plain gradient descent, optimizer = 'gd', on noise-free data)",
    "pred_steps_phase3": " (D1 needs plain gradient descent, optimizer = 'gd', on noise-free data, and weight decay > 0)",
}
LOG_DECADES = 12  # a log colour scale spans at most this many decades below its top


def _colour_scale(finite: np.ndarray, cell: np.ndarray) -> tuple[Any, np.ndarray, str]:
    """``(norm, values to colour, colorbar extend)`` for the finite cell values.

    Values spanning more than two decades (and none negative) get log colours, at most
    :data:`LOG_DECADES` deep: a collapsed network's distances decay to 1e-140 in float64, which
    would make every other cell the same colour; values below, and exact zeros (collapse to
    E = 0), take the lowest colour (the cell text has the value). Nearly constant values
    (within 1e-3 relative, e.g. a D1 ratio of 1 everywhere) get a range of +-5% around them
    instead of spreading rounding noise over the whole colour map.
    """
    pos = finite[finite > 0]
    if pos.size and finite.min() >= 0 and pos.max() / pos.min() > 100:
        lo = max(pos.min(), pos.max() * 10.0**-LOG_DECADES)
        extend = "min" if finite.min() < lo else "neither"
        return colors.LogNorm(lo, pos.max()), np.where(np.isnan(cell) | (cell > lo), cell, lo), extend
    if finite.size:
        mid, spread = float(np.median(finite)), float(finite.max() - finite.min())
        if spread <= 1e-3 * abs(mid) or spread == 0:
            half = 0.05 * abs(mid) if mid != 0 else 1.0
            return colors.Normalize(mid - half, mid + half), cell, "neither"
    return None, cell, "neither"


def _per_run_value(ds: xr.Dataset, metric: str) -> xr.DataArray:
    """Final value of a metric, or a per-run reduction (``steps_phase1``, ...)."""
    if metric in ds.data_vars and "step" in ds[metric].dims:
        return ds[metric].isel(step=-1, drop=True)
    runs = _reduce.per_run(ds)
    if metric not in runs:
        raise ValueError(
            f"metric = {metric!r} is invalid: must be a data variable of the results or of dlnsim.reduce.per_run"
        )
    return runs[metric]


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
    kappa = theory.kappa(cfg.train.loss, cfg.problem.n_train) if cfg is not None else 1.0
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
            ax.figure.text(
                0.5,
                0,
                f"collapse threshold c*(L) (sigma(B)~1) outside this grid: lambda = {at}",
                ha="center",
                va="top",
                fontsize=8,
            )


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
      select: values for the axes not shown (default: the first), ``sigma`` (default: the
        largest level) and ``k`` (default: 0, the largest singular value); an axis or value
        the results lack is an error.

    Returns:
      The path written.
    """
    runs = tuple(a for a in _reduce.grid_dims(ds) if a != "seed")  # seeds are summarised in each cell
    for name, axis in (("x", x), ("y", y)):
        if axis not in runs:
            raise ValueError(
                f"{name} = {axis!r} is invalid: must be a grid axis of the results other than seed ({', '.join(runs)})"
            )
    if x == y:
        raise ValueError(f"y = {y!r} is invalid: must differ from x")
    sub, fixed = fix(ds, (x, y), default_select(ds, metric, select), metric)
    value = _per_run_value(sub, metric)
    cell = over_seeds(value, sub["diverged"], reduce).transpose(y, x).values.astype(float)
    div = sub["diverged"]
    n_div = (div.sum("seed") if "seed" in div.dims else div.astype(int)).transpose(y, x).values
    n_run = sub.sizes.get("seed", 1)
    if isinstance(log, bool) or log is None:
        log = {a: (_is_log_grid(ds[a].values) if log is None else log) for a in (x, y)}
    log = {a: bool(dict(log).get(a, _is_log_grid(ds[a].values))) for a in (x, y)}

    finite = cell[np.isfinite(cell)]
    if not finite.size and not (n_div == n_run).all():
        hint = NAN_HINTS.get(metric.removeprefix("final_"), "")
        raise ValueError(f"nothing to plot: {metric} is NaN for every run of this selection{hint}")
    norm, shown, extend = _colour_scale(finite, cell)
    ny, nx = cell.shape
    fig = Figure(figsize=(1.6 + 0.75 * max(nx, 5), 1.8 + 0.55 * max(ny, 4)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # cells without a value (all diverged, never reached)
    mesh = ax.pcolormesh(
        np.arange(nx + 1) - 0.5, np.arange(ny + 1) - 0.5, np.ma.masked_invalid(shown), cmap="viridis", norm=norm
    )
    cbar = fig.colorbar(mesh, ax=ax, extend=extend)
    final = "final, " if metric in ds.data_vars and "step" in ds[metric].dims else ""
    cbar.set_label(f"{metric_label(metric)}\n({final}{reduce} over {n_run} seed{'s' * (n_run > 1)})", fontsize=9)
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
                # Above the threshold lines, on a patch of the cell's colour: a line through a
                # cell centre (L = 2 collapses at lambda = 1, a grid value) must not strike it out.
                box = {"boxstyle": "round,pad=0.15", "fc": rgba, "ec": "none", "alpha": 0.85}
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black",
                        zorder=5, bbox=box)  # fmt: skip
    for axis, set_ticks, set_labels, n in (
        (x, ax.set_xticks, ax.set_xlabel, nx),
        (y, ax.set_yticks, ax.set_ylabel, ny),
    ):
        set_ticks(np.arange(n), [fmt(v) for v in ds[axis].values])
        set_labels(axis_label(axis) + (" (log grid)" if log[axis] else ""))
    ax.tick_params(axis="x", labelrotation=45 if nx > 6 else 0)
    if {x, y} == {"depth", "weight_decay"}:
        _collapse_boundary(ax, sub, x, y, log)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ctx = context(ds, fixed)
    ax.set_title(f"{metric_label(metric)}\n{ctx}" if ctx else metric_label(metric), fontsize=9)
    return save(fig, path)


def _hatched(j: int, i: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.8", edgecolor="0.3", hatch="xx", lw=0)
