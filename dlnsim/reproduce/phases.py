"""``reproduce phases``: the three phases of training, and the exact off-subspace decay D1.

Phase I: fast on-subspace fit (``on_err <= 0.1``); Phase II: stabilisation (loss and
balancedness settle, D3); Phase III: slow off-subspace decay, ``W_1 P_perp`` shrinking
exactly like ``(1 - eta lambda)^t`` (D1), until ``||E P_perp||_F`` is 1% of its start.
"""

from __future__ import annotations

import xarray as xr

from dlnsim import plotting
from dlnsim import reduce as _reduce
from dlnsim.config import SweepConfig
from dlnsim.reproduce import _common as c

SMOKE = (
    "problem.d=16", "problem.m=8", "problem.s=2", "problem.n_train=16", "problem.n_test=50",
    "model.width=16", "train.steps=400", "train.log_every=20",
    "grid.weight_decay=[0.0, 0.05]", "grid.seed=[0, 1]",
)  # fmt: skip
EPS1 = 0.1  # Phase I threshold on the on-subspace error


def numbers(ds: xr.Dataset) -> xr.Dataset:
    """Per run (dims weight_decay, seed): phase steps, D1 fit, D3 balancedness, limit error."""
    runs = _reduce.per_run(ds, eps1=EPS1)
    out = xr.Dataset(
        {
            "steps_phase1": runs["steps_phase1"],
            "steps_phase3": runs["steps_phase3"],
            "steps_phase3_w1": runs["steps_phase3_w1"],
            "pred_steps_phase3": runs["pred_steps_phase3"],
            "rate_ratio_w1_off": runs["rate_ratio_w1_off"],
            "final_on_err": runs["final_on_err"],
            "pred_on_err_limit": runs["pred_on_err_limit"],
            "final_balance": runs["final_balance"],
            "rate_ratio_balance": runs["rate_ratio_balance"],
        }
    )
    return out.transpose("weight_decay", "seed")


def report(ds: xr.Dataset, cfg: SweepConfig, nums: xr.Dataset, pngs: list[str]) -> str:
    med = lambda name, w: nums[name].sel(weight_decay=w).median("seed")  # noqa: E731
    rows = []
    for w in nums["weight_decay"].values:
        rows.append([
            f"{w:g}", med("steps_phase1", w), med("steps_phase3", w), med("steps_phase3_w1", w),
            med("pred_steps_phase3", w),
            med("rate_ratio_w1_off", w), med("final_on_err", w), med("pred_on_err_limit", w),
            med("final_balance", w), med("rate_ratio_balance", w),
        ])  # fmt: skip
    head = ["lambda", "steps I (on_err<=0.1)", "steps III (E P_perp)", "steps III (W_1 P_perp)", "steps III D1",
            "W_1 P_perp rate / D1",
            "final on_err", "limit on_err*", "final imbalance", "imbalance rate / ln(1-eta lambda)"]  # fmt: skip
    return "\n".join(
        [
            "# Three phases of training",
            "",
            *[f"![phases]({p})" for p in pngs],
            "",
            f"Sizes: {c.sizes(cfg)}.",
            "",
            "Medians over seeds. Phase I ends at the first logged step with on-subspace error <= 0.1; Phase III is "
            "reached when ||E P_perp||_F <= 1% of its initial value. The exact decay "
            "||W_1 P_perp|| = (1 - eta lambda)^t ||W_1(0) P_perp|| (D1) predicts when ||W_1 P_perp|| gets to 1% "
            "('steps III D1': the measured W_1 column rounds it up to the log grid); E P_perp = W_{L:2} W_1 P_perp "
            "usually gets there sooner, as the layers above W_1 shrink too. 'rate / D1' is the fitted log-slope of "
            "||W_1 P_perp|| over the last half of the run divided by ln(1 - eta lambda) (D1: exactly 1). "
            "The imbalance max_l ||W_{l+1}^T W_{l+1} - W_l W_l^T|| (relative) decays roughly like "
            "(1 - eta lambda)^(2t) (D3), i.e. rate ratio about 2 once it is past its transient; its fit leaves out the "
            "values below float rounding (1e3 eps of the start), as the W_1 fit does. "
            "on_err* is the closed-form limit (whitened codes).",
            "",
            c.table(head, rows),
            "",
            "Without weight decay (lambda = 0) the off-subspace part never moves (D1), so Phase III is never reached "
            "('-') and the imbalance stays at its initial level.",
        ]
    )


def run(ctx: c.Context) -> c.Outcome:
    cfg = c.config(ctx, "phases", SMOKE)
    ds = c.sweep(ctx, cfg, "phases")
    nums = numbers(ds)
    out, sfx = ctx.out, ctx.suffix
    pngs = [
        plotting.learning_curves(ds, out / f"phases_on_err{sfx}.png", metric="on_err", hue="weight_decay", eps1=EPS1),
        plotting.learning_curves(ds, out / f"phases_off_fro{sfx}.png", metric="off_fro", hue="weight_decay", eps1=EPS1),
        plotting.learning_curves(ds, out / f"phases_balance{sfx}.png", metric="balance", hue="weight_decay", eps1=EPS1),
        plotting.learning_curves(ds, out / f"phases_loss{sfx}.png", metric="loss_data", hue="weight_decay", eps1=EPS1),
        plotting.off_subspace_decay(ds.sel(weight_decay=ds["weight_decay"].values[1:]), out / f"phases_d1{sfx}.png"),
    ]
    path = c.write_report(ctx, "phases", report(ds, cfg, nums, [p.name for p in pngs]))
    return c.Outcome(path, tuple(pngs), {"results": ds, "numbers": nums, "cfg": cfg})
