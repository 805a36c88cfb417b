"""The summary table: reduced statistics of a sweep as fixed-width text."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from dlnsim._checks import x64_ready
from dlnsim.reduce.runs import config_of
from dlnsim.reduce.seeds import reduce


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "-" if not np.isfinite(v) else f"{v:.3g}"
    return str(v)


def summary_table(ds_or_reduced: xr.Dataset, **options: Any) -> str:
    """A fixed-width table: one row per non-seed grid cell, medians over seeds.

    Simulated columns: final ``on_err`` and ``off_fro``, steps to Phase I and III (on
    ``E P_perp``, and on ``W_1 P_perp``, which the D1 prediction is exact for), the
    fitted ``W_1 P_perp`` decay rate over the D1 prediction, diverged/total runs. Theory
    columns (shown where defined): ``on_err*`` (whitened-code limit), predicted Phase III
    steps, ``c/c*`` (weight decay relative to the collapse threshold of the depth, with
    the median singular value of ``B``; > 1 predicts collapse to E = 0).

    Args:
      ds_or_reduced: results of :func:`dlnsim.sweep` or of :func:`reduce`.
      **options: passed to :func:`reduce` when given raw results.
    """
    red = ds_or_reduced if "stat" in ds_or_reduced.dims else reduce(ds_or_reduced, **options)

    def med(name: str) -> xr.DataArray | None:
        return red[name].sel(stat="median") if name in red else None

    columns = [
        ("on_err", med("final_on_err")),
        ("off_fro", med("final_off_fro")),
        ("steps I", med("steps_phase1")),
        ("steps III", med("steps_phase3")),
        ("III W1", med("steps_phase3_w1")),
        ("pred III", med("pred_steps_phase3")),
        ("rate/D1", med("rate_ratio_w1_off")),
        ("pred on_err*", med("pred_on_err_limit")),
        ("c/c*", med("collapse_ratio")),
    ]
    on_err = med("final_on_err")
    if on_err is None or not bool(on_err.notnull().any()):  # no subspace metrics (ReLU): the clean test error
        columns.insert(0, ("test_err", med("final_test_err")))
    # Simulated columns always show ("-": never reached); theory columns where defined.
    theory_cols = ("pred III", "pred on_err*", "c/c*")
    columns = [(h, da) for h, da in columns if da is not None and (h not in theory_cols or bool(da.notnull().any()))]
    dims = list(red["n_runs"].dims)
    header = dims + [h for h, _ in columns] + ["diverged"]
    rows = []
    for idx in np.ndindex(red["n_runs"].shape):
        sel = dict(zip(dims, idx))
        row = [_fmt(red[d].values[i].item()) for d, i in zip(dims, idx)]
        row += [_fmt(float(da.isel(sel).values)) for _, da in columns]
        row.append(f"{int(red['n_diverged'].isel(sel))}/{int(red['n_runs'].isel(sel))}")
        rows.append(row)
    widths = [max(len(r[j]) for r in rows + [header]) for j in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(r, widths))

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
            "c/c* = wd / (kappa sigma_med(B)^(2/L)) / c*(L), > 1: collapse to E = 0"
        ),
    ]
    cfg = config_of(red)
    if cfg is not None and not x64_ready(cfg.train.dtype):
        notes.append(
            "pred on_err* and c/c* are left out: they redraw the float64 teachers, which needs "
            "jax.config.update('jax_enable_x64', True) first (the dlnsim CLI does)"
        )
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), *notes])
