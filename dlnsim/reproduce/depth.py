"""``reproduce depth``: deeper (and wider) networks reach the on-subspace fit in fewer steps (D2)."""

from __future__ import annotations

import xarray as xr

from dlnsim import plotting
from dlnsim import reduce as _reduce
from dlnsim.config import SweepConfig
from dlnsim.reproduce import _common as c
from dlnsim.reproduce import figures

SMOKE = (
    "problem.d=16", "problem.m=8", "problem.s=2", "problem.n_train=16", "problem.n_test=20",
    "train.steps=160", "train.log_every=4", "hparams.lr=0.05",
    "grid.depth=[2, 3]", "grid.width=[16]", "grid.seed=[0, 1]",
)  # fmt: skip
EPS = 0.1  # on-subspace error threshold (10%)
D2 = {2: 52, 3: 41, 5: 33, 8: 28}  # SCIENCE.md D2: steps to 10% error at width 200
D2_WIDTH = 200


def steps_to_fit(ds: xr.Dataset) -> xr.DataArray:
    """First logged step with on-subspace error <= EPS, dims (depth, width, seed)."""
    return _reduce.per_run(ds, eps1=EPS)["steps_phase1"].transpose("depth", "width", "seed")


def report(cfg: SweepConfig, steps: xr.DataArray, pngs: list[str]) -> str:
    rows = []
    for L in steps["depth"].values:
        row = [int(L)]
        for w in steps["width"].values:
            med, lo, hi = c.seed_stats(steps.sel(depth=L, width=w))
            row.append(f"{c.fmt(med)} [{c.fmt(lo)}, {c.fmt(hi)}]")
        row.append(D2.get(int(L), float("nan")))
        rows.append(row)
    head = ["depth L"] + [f"width {w}: median [min, max]" for w in steps["width"].values] + [f"D2 (width {D2_WIDTH})"]
    med = steps.median("seed")
    lo_d, hi_d = int(steps["depth"].values[0]), int(steps["depth"].values[-1])
    speed = ", ".join(
        f"width {w}: {c.fmt(med.sel(depth=lo_d, width=w) / med.sel(depth=hi_d, width=w))}x"
        for w in steps["width"].values
    )
    return "\n".join(
        [
            "# Steps to the on-subspace fit against depth and width (D2)",
            "",
            *[f"![depth]({p})" for p in pngs],
            "",
            f"Sizes: {c.sizes(cfg)}. Metrics logged every {cfg.train.log_every} step(s).",
            "",
            f"Steps until the on-subspace error ||E B - U||_F / sqrt(s) first falls to {EPS:g}, over seeds "
            "(each seed its own teacher and init), next to SCIENCE.md D2 (one measurement, width 200).",
            "",
            c.table(head, rows),
            "",
            f"Speed-up from depth {lo_d} to depth {hi_d} (ratio of median steps): {speed}. '-': never reached within "
            f"{cfg.train.steps} steps.",
        ]
    )


def run(ctx: c.Context) -> c.Outcome:
    cfg = c.config(ctx, "depth", SMOKE)
    ds = c.sweep(ctx, cfg, "depth")
    steps = steps_to_fit(ds)
    out, sfx = ctx.out, ctx.suffix
    width = D2_WIDTH if D2_WIDTH in ds["width"].values else int(ds["width"].values[-1])
    pngs = [
        figures.depth(steps, D2, D2_WIDTH, EPS, out / f"depth{sfx}.png"),
        plotting.learning_curves(
            ds, out / f"depth_curves{sfx}.png", metric="on_err", hue="depth", select={"width": width}, eps1=EPS
        ),
    ]
    path = c.write_report(ctx, "depth", report(cfg, steps, [p.name for p in pngs]))
    return c.Outcome(path, tuple(pngs), {"results": ds, "steps": steps, "cfg": cfg})
