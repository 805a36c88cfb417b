"""The summary table: reduced statistics of a sweep as fixed-width text, Markdown or CSV."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from dlnsim._checks import x64_ready
from dlnsim.config import RATIO_AXES
from dlnsim.reduce.runs import config_of
from dlnsim.reduce.seeds import reduce


FORMATS = ("text", "markdown", "csv")
RATIO_SIZES = tuple(size for size, _ in RATIO_AXES.values())  # coordinates of a ratio sweep: m, s


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "-" if not np.isfinite(v) else f"{v:.3g}"
    return str(v)


def _csv_value(v: Any) -> str:
    """Full precision for a data file; an empty cell where a value is undefined."""
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else repr(float(v))
    return str(v)


def summary_table(ds_or_reduced: xr.Dataset, fmt: str = "text", **options: Any) -> str:
    """A table: one row per non-seed grid cell, medians over seeds.

    Simulated columns: final ``on_err`` and ``off_fro``, steps to Phase I and III (on
    ``E P_perp``, and on ``W_1 P_perp``, which the D1 prediction is exact for), the
    fitted ``W_1 P_perp`` decay rate over the D1 prediction, diverged/total runs. Theory
    columns (shown where defined): ``on_err*`` (whitened-code limit), predicted Phase III
    steps, ``c/c*`` (weight decay relative to the collapse threshold of the depth, with
    the median singular value of ``B``; > 1 predicts that the median singular direction of
    ``B`` collapses, and ``E = 0`` once every direction's ``c`` exceeds ``c*``).

    Args:
      ds_or_reduced: results of :func:`dlnsim.sweep` or of :func:`reduce`.
      fmt: ``"text"`` (fixed width, 3 digits, ``-`` where undefined, notes below),
        ``"markdown"`` (a pipe table and the notes) or ``"csv"`` (full precision, empty
        where undefined, ``diverged`` and ``runs`` as two columns, no notes).
      **options: passed to :func:`reduce` when given raw results.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt = {fmt!r} is invalid: must be one of {', '.join(map(repr, FORMATS))}")
    red = ds_or_reduced if "stat" in ds_or_reduced.dims else reduce(ds_or_reduced, **options)

    def med(name: str) -> xr.DataArray | None:
        return red[name].sel(stat="median") if name in red else None

    # (header, reduce's variable: the CSV header is it with "_median")
    columns = [
        ("on_err", "final_on_err"),
        ("off_fro", "final_off_fro"),
        ("steps I", "steps_phase1"),
        ("steps III", "steps_phase3"),
        ("III W1", "steps_phase3_w1"),
        ("pred III", "pred_steps_phase3"),
        ("rate/D1", "rate_ratio_w1_off"),
        ("pred on_err*", "pred_on_err_limit"),
        ("c/c*", "collapse_ratio"),
    ]
    on_err = med("final_on_err")
    if on_err is None or not bool(on_err.notnull().any()):  # no subspace metrics (ReLU): the clean test error
        columns.insert(0, ("test_err", "final_test_err"))
    # Simulated columns always show ("-": never reached); theory columns where defined.
    theory_cols = ("pred III", "pred on_err*", "c/c*")
    columns = [(h, v) for h, v in columns if v in red and (h not in theory_cols or bool(med(v).notnull().any()))]
    dims = list(red["n_runs"].dims)
    sizes = [c for c in RATIO_SIZES if c in red.coords and c not in dims]  # set by ratio axes, per cell
    cells = []  # (grid values and sizes, column values, diverged, runs) per row
    for idx in np.ndindex(red["n_runs"].shape):
        sel = dict(zip(dims, idx))
        grid = [red[d].values[i].item() for d, i in zip(dims, idx)]
        grid += [red[c].isel({d: sel[d] for d in red[c].dims}).item() for c in sizes]
        values = [float(med(v).isel(sel).values) for _, v in columns]
        cells.append((grid, values, int(red["n_diverged"].isel(sel)), int(red["n_runs"].isel(sel))))
    names = [h for h, _ in columns]
    if fmt == "csv":
        lines = [",".join(dims + sizes + [f"{v}_median" for _, v in columns] + ["diverged", "runs"])]
        lines += [",".join(map(_csv_value, [*g, *v, n_div, n])) for g, v, n_div, n in cells]
        return "\n".join(lines) + "\n"
    header = dims + sizes + names + ["diverged"]
    rows = [[*map(_fmt, g), *map(_fmt, v), f"{n_div}/{n}"] for g, v, n_div, n in cells]
    notes = _notes(red)
    if fmt == "markdown":
        table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        table += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([*table, "", *(f"- {n}" for n in notes)]) + "\n"
    widths = [max(len(r[j]) for r in rows + [header]) for j in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(r, widths))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), *notes])


def _notes(red: xr.Dataset) -> list[str]:
    """What the columns mean, for the text and Markdown tables."""
    notes = [
        "medians over seeds, diverged runs excluded (diverged = count / runs)",
        (
            f"steps I: first step with on_err <= {red.attrs.get('eps1')}; "
            f"steps III: first step with off_fro <= {red.attrs.get('eps3')}; III W1: the same for ||W_1 P_perp||"
        ),
        f"rate/D1: fitted log-slope of ||W_1 P_perp|| ({red.attrs.get('window')}) / ln(1 - lr*wd)",
        (
            "theory (SCIENCE.md section 3): pred III = D1 decay time (exact for III W1; off_fro usually gets there sooner), "
            "pred on_err* = whitened-code limit, "
            "c/c* = wd / (kappa sigma_med(B)^(2/L)) / c*(L), > 1: the median direction of B collapses "
            "(E = 0 once every direction's c exceeds c*)"
        ),
    ]
    cfg = config_of(red)
    if cfg is not None and not x64_ready(cfg.train.dtype):
        notes.append(
            "pred on_err* and c/c* are left out: they redraw the float64 teachers, which needs "
            "jax.config.update('jax_enable_x64', True) first (the dlnsim CLI does)"
        )
    return notes
