"""Curve plots: metrics against step or test noise, one line per value of a grid axis.

Each line is the median over seeds with the interquartile band (diverged seeds left out).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from dlnsim import reduce as _reduce
from dlnsim.plotting._common import (
    HUE_COLORS,
    context,
    default_select,
    fix,
    fmt,
    metric_label,
    over_seeds,
    require_runs,
    save,
)

MARKERS = {"steps_phase1": "o", "steps_phase3": "s"}  # phase ends marked on learning curves


def hue_axis(ds: xr.Dataset, hue: str | None, prefer: str | None = None) -> str | None:
    """The grid axis a curve picture tells lines apart by: ``hue`` (checked), else ``prefer``
    when swept, else the first axis with several values (None: one line)."""
    runs = [a for a in _reduce.grid_dims(ds) if a != "seed"]
    if hue is not None:
        if hue not in runs:
            raise ValueError(f"hue = {hue!r} is invalid: must be a grid axis of the results ({', '.join(runs)})")
        return hue
    if prefer in runs:
        return prefer
    return next((a for a in runs if ds.sizes[a] > 1), None)


def _lines(ds: xr.Dataset, hue: str | None):
    """(label, colour, one-hue dataset) triples; one unlabeled entry without a hue."""
    if hue is None:
        return [(None, HUE_COLORS(0.0), ds)]
    values = ds[hue].values
    lines = []
    for n, v in enumerate(values):
        one = ds.sel({hue: v})
        gone = " (all diverged)" if bool(one["diverged"].all()) else ""  # its line is not drawn
        lines.append((f"{hue}={fmt(v)}{gone}", HUE_COLORS(n / max(len(values) - 1, 1)), one))
    return lines


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
      select: values for the axes not shown (default: the first), ``sigma`` (default: the
        largest level) and ``k`` (default: 0, the largest singular value); an axis or value
        the results lack is an error.
      eps1, eps3: phase thresholds.
    """
    if metric not in ds or "step" not in ds[metric].dims:
        raise ValueError(f"metric = {metric!r} is invalid: must be a metric with a step history")
    hue = hue_axis(ds, hue)
    sub, fixed = fix(ds, (hue,) if hue else (), default_select(ds, metric, select), metric)
    require_runs(sub)
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    steps = sub["step"].values
    # steps where no run recorded the metric (TrainConfig.balance_every) are left out
    kept = np.isfinite(sub[metric]).any([d for d in sub[metric].dims if d != "step"]).values
    kept = kept if kept.any() else np.ones_like(kept)
    lines = _lines(sub, hue)
    drawn: set[str] = set()  # the phases marked on some line
    for label, color, one in lines:
        mid, lo, hi = (v.values[kept] for v in _band(one[metric], one["diverged"]))
        ax.plot(steps[kept], mid, color=color, lw=1.8, label=label)
        ax.fill_between(steps[kept], lo, hi, color=color, alpha=0.2, lw=0)
        runs = _reduce.per_run(one, eps1=eps1, eps3=eps3)
        for name, marker in MARKERS.items():
            if name not in runs:
                continue
            t = over_seeds(runs[name], runs["diverged"], "median")
            t = float(t) if np.isfinite(t) else None
            if t is not None:
                drawn.add(name)
                ax.plot(
                    [t], [np.interp(t, steps[kept], mid)], marker=marker, ms=8, mfc="white", mec=color, mew=2, ls=""
                )
    eps3_txt = "1e-2 x initial" if eps3 is None else f"{eps3:g}"
    for name, text in (
        ("steps_phase1", f"Phase I end (on_err <= {eps1:g})"),
        ("steps_phase3", f"Phase III reached (off_fro <= {eps3_txt})"),
    ):
        # A phase no line reaches says so, rather than leaving a marker to look for.
        suffix = "" if name in drawn else f": not reached in {int(steps[-1])} steps"
        ax.plot([], [], MARKERS[name], mfc="white", mec="k", ls="", label=text + suffix)
    if metric == "on_err":
        ax.axhline(eps1, color="0.4", ls=":", lw=1)
    vals = sub[metric].values
    pos = vals[np.isfinite(vals) & (vals > 0)]
    if pos.size and (vals[np.isfinite(vals)].min() >= 0) and pos.max() / pos.min() > 100:
        ax.set_yscale("log", nonpositive="mask")  # exact zeros (collapse to E = 0) drop out
    ax.set_xlabel("step")
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3)
    # Beside the axes: inside, some curve always ran under it (the flat lambda = 0 floor of on_err).
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.set_title(f"Learning curves (median over seeds, band: interquartile range)\n{context(ds, fixed)}", fontsize=9)
    return save(fig, path)


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
    hue = hue_axis(ds, hue, prefer="weight_decay")
    sub, fixed = fix(ds, (hue,) if hue else (), select)
    require_runs(sub)
    cfg = _reduce.config_of(ds)
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    steps = sub["step"]
    lines = _lines(sub, hue)
    for label, color, one in lines:
        rate = np.log1p(-_reduce.hparam(one, "lr", cfg) * _reduce.hparam(one, "weight_decay", cfg))
        measured = one["w1_off_fro"]
        predicted = measured.isel(step=0) * np.exp(rate * steps)
        mid, lo, hi = _band(measured, one["diverged"])
        left.plot(steps, mid.values, color=color, lw=2, label=label)
        left.fill_between(steps, lo.values, hi.values, color=color, alpha=0.2, lw=0)
        # Below the rounding floor the measured norm stops at ~eps ||W_1||: not a D1 test, and
        # the prediction is drawn down to that floor only (it would stretch the axis to 1e-30).
        floor = 1e3 * np.finfo(measured.dtype).eps * measured.isel(step=0)
        shown = _band(predicted.where(predicted > floor), one["diverged"])[0]
        left.plot(steps, shown.transpose("step", ...).values, color="k", ls="--", lw=1)
        dev = _band(abs(measured / predicted - 1).where(predicted > floor), one["diverged"])[0]
        eps = np.finfo(measured.dtype).eps
        dev = dev.where(~(dev < eps), eps)  # exact agreement drawn at machine eps (log axis)
        right.plot(steps, dev.values, color=color, lw=1.5, label=label)
    left.plot([], [], "k--", lw=1, label="D1 prediction (1 - lr wd)^t x initial")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel(metric_label("w1_off_fro"))
    left.grid(alpha=0.3)
    left.set_title("measured (median over seeds, IQR band) vs D1", fontsize=9)
    right.set_yscale("log", nonpositive="mask")
    right.set_xlabel("step")
    right.set_ylabel("|measured / predicted - 1|")
    right.grid(alpha=0.3)
    right.set_title(
        "relative deviation from D1 (rounding level expected; exact 0 drawn at eps;\n"
        "left out once the prediction is below 1e3 eps x initial)",
        fontsize=9,
    )
    fig.suptitle(f"Off-subspace decay of the first layer (D1)\n{context(ds, fixed)}", fontsize=10)
    # One legend for both panels, below them: the curves fill the axes from corner to corner.
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncol=min(len(labels), 5), frameon=False)
    return save(fig, path)


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
    hue = hue_axis(ds, hue, prefer="weight_decay")
    if ds.sizes.get("sigma", 0) < 2:
        raise ValueError(
            f"noise curves need at least two test noise levels: the results have sigma = "
            f"{', '.join(fmt(v) for v in ds['sigma'].values)} (set problem.test_sigmas)"
        )
    sub, fixed = fix(ds, (hue,) if hue else (), select)
    require_runs(sub)
    fig = Figure(figsize=(7, 4.8))
    ax = fig.add_subplot()
    sig = sub["sigma"].values
    lines = _lines(sub, hue)
    for label, color, one in lines:
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
    seeds = "median over seeds, IQR band, thin: seeds" if sub.sizes.get("seed", 1) > 1 else "one seed"
    ax.set_title(f"Noise robustness ({seeds})\n{context(ds, fixed)}", fontsize=9)
    return save(fig, path)
