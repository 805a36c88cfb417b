"""Pictures of the reproduce experiments that :mod:`dlnsim.plotting` does not draw.

Departure from STYLE.md (only ``dlnsim.plotting`` imports matplotlib): these figures
belong to the experiments and ``dlnsim/plotting/`` is owned elsewhere; like the CLI,
this package is an edge module and is never imported by the core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from dlnsim.plotting._common import save

COLORS = ("#1b4f9c", "#c0272d", "#2ca02c", "#e08a00", "#7b3294")


def _noise_panel(ax, measured: xr.DataArray, predicted: xr.DataArray | None, title: str) -> None:
    sig = measured["sigma"].values
    for n, w in enumerate(measured["weight_decay"].values):
        color = COLORS[n % len(COLORS)]
        one = measured.sel(weight_decay=w)
        label = f"lambda={w:g}" + (" (no weight decay)" if w == 0 else "")
        ax.plot(sig, one.median("seed"), color=color, lw=2, marker="o", ms=4, label=label + ", median")
        ax.fill_between(sig, one.min("seed"), one.max("seed"), color=color, alpha=0.2, lw=0)
        for s in one["seed"].values:
            ax.plot(sig, one.sel(seed=s), color=color, lw=0.5, alpha=0.5)
        if predicted is not None:
            ax.plot(sig, predicted.sel(weight_decay=w).median("seed"), color=color, ls="--", lw=1.3)
    if predicted is not None:
        ax.plot([], [], "k--", lw=1.3, label="D4 prediction")
    ax.set_xlabel("test measurement noise sigma")
    ax.set_ylabel("relative test error ||f(y) - x|| / ||x||")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def fig1(lin, lin_pred, relu, mc, d4, d4_table, path: Path) -> Path:
    """(a) linear with D4 prediction and Monte Carlo points, (b) ReLU, (c) the D4 table check."""
    ncol = 3 if d4 is not None else 2
    fig = Figure(figsize=(5 * ncol, 4.4), layout="constrained")
    axes = fig.subplots(1, ncol, sharey=False)
    _noise_panel(axes[0], lin, lin_pred, "(a) deep linear network\nband: min-max over seeds, thin: seeds")
    for n, w in enumerate(mc["weight_decay"].values):
        axes[0].plot(
            mc["sigma"],
            mc["monte_carlo"].sel(weight_decay=w),
            ls="",
            marker="x",
            ms=7,
            color="k",
            label="Monte Carlo, seed 0" if n == 0 else None,
        )
    axes[0].legend(fontsize=7)
    _noise_panel(axes[1], relu, None, "(b) ReLU network, same sizes and data\n(Monte Carlo errors)")
    top = max(float(lin.max()), float(relu.max())) * 1.05
    axes[0].set_ylim(0, top)
    axes[1].set_ylim(0, top)
    if d4 is not None:
        _noise_panel(axes[2], d4, None, "(c) paper sizes d=200, m=100, w=400, N=100\nvs the D4 table of SCIENCE.md")
        for n, row in enumerate(d4_table.values()):
            axes[2].plot(
                list(row),
                list(row.values()),
                ls="",
                marker="*",
                ms=11,
                mec="k",
                color=COLORS[n],
                label="SCIENCE.md D4 table" if n == 0 else None,
            )
        axes[2].legend(fontsize=7)
    fig.suptitle("Figure 1: weight decay makes the learned map robust to measurement noise", fontsize=11)
    return save(fig, path)


def depth(steps: xr.DataArray, reference: dict[int, float], ref_width: int, eps: float, path: Path) -> Path:
    """Steps to reach ``on_err <= eps`` against depth, one line per width (median, min-max bars)."""
    fig = Figure(figsize=(6.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    depths = steps["depth"].values
    for n, w in enumerate(steps["width"].values):
        one = steps.sel(width=w)
        med, lo, hi = one.median("seed"), one.min("seed"), one.max("seed")
        x = depths + (n - (steps.sizes["width"] - 1) / 2) * 0.08
        ax.errorbar(
            x,
            med,
            yerr=[med - lo, hi - med],
            color=COLORS[n % len(COLORS)],
            marker="o",
            capsize=3,
            lw=1.8,
            label=f"width {w} (median, min-max over seeds)",
        )
    ax.plot(
        list(reference),
        list(reference.values()),
        ls="",
        marker="*",
        ms=12,
        color="k",
        label=f"SCIENCE.md D2 (width {ref_width})",
    )
    ax.set_xticks(depths)
    ax.set_xlabel("depth L")
    ax.set_ylabel(f"steps until on-subspace error <= {eps:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Steps to the on-subspace fit vs depth and width (fixed step size)", fontsize=10)
    return save(fig, path)


def distance_to_limit(dist: xr.DataArray, path: Path) -> Path:
    """``||E - E*|| / ||E*||`` against step, one colour per weight decay, thin lines per seed."""
    fig = Figure(figsize=(6.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    steps = dist["step"].values
    for n, w in enumerate(dist["weight_decay"].values):
        one = dist.sel(weight_decay=w)
        color = COLORS[n % len(COLORS)]
        ax.plot(steps, np.maximum(one.median("seed"), 1e-16), color=color, lw=2, label=f"lambda={w:g} (median)")
        for s in one["seed"].values:
            ax.plot(steps, np.maximum(one.sel(seed=s), 1e-16), color=color, lw=0.5, alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("||E - E*||_F / ||E*||_F")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Convergence to the closed-form limit E* (whitened codes, float64)", fontsize=10)
    return save(fig, path)
