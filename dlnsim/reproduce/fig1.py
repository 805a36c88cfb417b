"""``reproduce fig1``: noise robustness with and without weight decay (the paper's Figure 1).

Panel (a) the deep linear network, panel (b) a ReLU network of the same sizes on the same
data, several seeds each; the linear panel is checked against the D4 noise decomposition
of SCIENCE.md (closed form vs Monte Carlo, and the predicted curves) and the D4 table is
measured at the paper's sizes with N = 100 (``reproduce/experiments/fig1_d4.toml``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from dlnsim import theory
from dlnsim.config import SweepConfig
from dlnsim.hparams import HParams
from dlnsim.metrics import noise_error_mc
from dlnsim.plan import run_teacher
from dlnsim.problem import make_problem
from dlnsim.reproduce import _common as c
from dlnsim.reproduce import figures
from dlnsim.training import train

SMOKE = (
    "problem.d=24", "problem.m=12", "problem.s=3", "problem.n_train=24", "problem.n_test=500",
    "model.depth=3", "model.width=24", "train.steps=600", "train.log_every=100",
    "grid.weight_decay=[0.0, 0.05]", "grid.seed=[0, 1]",
)  # fmt: skip
# SCIENCE.md D4: relative test error at Figure-1 sizes, N=100, eta=0.05, 3000 steps.
D4_TABLE = {0.0: {0.0: 0.0, 0.1: 0.59, 0.5: 2.93}, 0.01: {0.0: 0.011, 0.1: 0.10, 0.5: 0.51}}
ASSUMPTIONS = """\
Assumed where the paper's setup is unknown (SCIENCE.md sections 1-2): Gaussian operator
with N(0, 1/m) entries, codes z ~ N(0, I_s) (not whitened), LeCun init N(0, 1/fan_in), no
biases, full-batch gradient descent on the mean loss (eta and steps: see Sizes), no
training noise, Gaussian test noise e ~ N(0, sigma^2 I_m) added to A x of fresh test
signals, relative error ||f(y) - x|| / ||x|| over the test set. N = 1000 in `--full`
(not stated in the paper). The ReLU network is the same architecture with ReLU between
layers, same init, same teachers and data (raw samples)."""


def final_noise_err(ds: xr.Dataset) -> xr.DataArray:
    """Final relative test error, dims (weight_decay, seed, sigma)."""
    return ds["noise_err"].isel(step=-1, drop=True).transpose("weight_decay", "seed", "sigma")


def predicted_noise_err(ds: xr.Dataset, cfg: SweepConfig) -> xr.DataArray:
    """D4 prediction per run, dims (weight_decay, seed, sigma).

    ``err^2 = ||(E A - I) x||^2 / ||x||^2 + sigma^2 ||E||_F^2 / s`` (D4, codes N(0, I)) with
    the ``E`` theory says training ends at:

    - lambda = 0: ``E P = U B^+`` (on-subspace fit exact) and ``E P_perp`` frozen at its
      initial value (D1 freezes ``W_1 P_perp``; deeper layers still move, so this is
      approximate), i.e. ``sigma sqrt((||E_0 P_perp||_F^2 + sum_i sigma_i^-2) / s)``.
    - lambda > 0: the limit ``E*`` (SCIENCE.md "Limit", kappa = 1; exact for whitened
      codes, approximate otherwise): ``sqrt(mean_i (1 - h_i)^2 + sigma^2 sum_i (h_i /
      sigma_i)^2 / s)``, assuming training converged (``E P_perp`` decayed).
    """
    s, depth = cfg.problem.s, cfg.model.depth
    sig = ds["sigma"].values
    off0 = ds["off_fro"].isel(step=0).transpose("weight_decay", "seed").values.astype(float)
    out = np.zeros((ds.sizes["weight_decay"], ds.sizes["seed"], len(sig)))
    for j, seed in enumerate(ds["seed"].values):
        sv = c.b_singular_values(cfg, {"seed": int(seed)})
        for i, wd in enumerate(ds["weight_decay"].values):
            if wd == 0:
                out[i, j] = sig * np.sqrt((off0[i, j] ** 2 + np.sum(sv**-2.0)) / s)
            else:
                h = np.asarray(theory.limit_gain(np.asarray(wd / sv ** (2.0 / depth)), depth), float)
                out[i, j] = np.sqrt(np.mean((1 - h) ** 2) + sig**2 * np.sum((h / sv) ** 2) / s)
    coords = {"weight_decay": ds["weight_decay"], "seed": ds["seed"], "sigma": ds["sigma"]}
    return xr.DataArray(out, coords=coords, dims=("weight_decay", "seed", "sigma"))


def margins(measured: xr.DataArray, predicted: xr.DataArray) -> xr.Dataset:
    """How much weight decay lowers the error: (lambda = 0) - (largest lambda), median over seeds."""
    lo, hi = measured["weight_decay"].values.min(), measured["weight_decay"].values.max()
    gap = lambda da: (da.sel(weight_decay=lo) - da.sel(weight_decay=hi)).median("seed")  # noqa: E731
    return xr.Dataset({"measured": gap(measured), "predicted": gap(predicted)})


def mc_check(cfg: SweepConfig, seed: int = 0) -> xr.Dataset:
    """Closed-form (D4) vs Monte Carlo test error of run ``seed``, retrained to get its weights.

    The run is the sweep's own (same teacher key, same init key); Monte Carlo uses the
    problem's fixed noise draw (T x m Gaussian entries).
    """
    t = run_teacher(cfg, {"seed": seed})
    problem = make_problem(t.problem, key=t.key(), train_noise=t.train_noise, dtype=cfg.train.dtype)
    sigmas = cfg.problem.test_sigmas
    closed, mc = [], []
    for wd in cfg.grid["weight_decay"]:
        hp = HParams(**{**cfg.hparams, "weight_decay": wd})
        run = train(problem, cfg.model, cfg.train, hp, seed)
        closed.append(np.asarray(run.metrics.noise_err[-1], float))
        mc.append(np.asarray(noise_error_mc(run.params, problem, sigmas, cfg.model.activation), float))
    dims = ("weight_decay", "sigma")
    coords = {"weight_decay": list(cfg.grid["weight_decay"]), "sigma": list(sigmas)}
    return xr.Dataset({"closed_form": (dims, closed), "monte_carlo": (dims, mc)}, coords=coords)


def _spread(da: xr.DataArray) -> str:
    med, lo, hi = c.seed_stats(da)
    return f"{c.fmt(med)} [{c.fmt(lo)}, {c.fmt(hi)}]"


def report(
    lin: xr.Dataset,
    relu: xr.Dataset,
    cfg: SweepConfig,
    mc: xr.Dataset,
    d4: xr.Dataset | None,
    d4_cfg: SweepConfig | None,
    png: str,
) -> str:
    """The Markdown report (pure: numbers from the datasets)."""
    meas, pred = final_noise_err(lin), predicted_noise_err(lin, cfg)
    wds = lin["weight_decay"].values
    head = ["sigma"] + [f"{k} lambda={w:g}" for w in wds for k in ("measured", "D4 predicted")]
    rows = [
        [f"{s:g}"]
        + [
            x
            for w in wds
            for x in (_spread(meas.sel(weight_decay=w, sigma=s)), pred.sel(weight_decay=w, sigma=s).median("seed"))
        ]
        for s in lin["sigma"].values
    ]
    gap = margins(meas, pred)
    mc_rel = np.abs(mc["monte_carlo"] / mc["closed_form"] - 1).where(mc["sigma"] > 0)
    out = [
        "# Figure 1: noise robustness with and without weight decay",
        "",
        f"![fig1]({png})",
        "",
        f"Sizes: {c.sizes(cfg)}. Both panels train on the same teachers and data.",
        "",
        ASSUMPTIONS,
        "",
        "## (a) Deep linear network: measured vs D4",
        "",
        "Final relative test error, median [min, max] over seeds, next to the D4 prediction (median over seeds; "
        "lambda=0: E P = U B^+ with E P_perp frozen at init; lambda>0: the limit E*).",
        "",
        c.table(head, rows),
        "",
        "Weight decay lowers the error at the largest sigma by "
        f"{c.fmt(gap['measured'].isel(sigma=-1))} (measured) vs {c.fmt(gap['predicted'].isel(sigma=-1))} (D4 predicted).",
        "",
        f"Closed form (D4) vs Monte Carlo on the fixed test-noise draw, run seed 0: largest relative difference "
        f"{c.fmt(float(mc_rel.max()))} over sigma > 0 and both weight decays.",
        "",
        c.table(
            ["lambda", "sigma", "closed form", "Monte Carlo"],
            [
                [
                    f"{w:g}",
                    f"{s:g}",
                    mc["closed_form"].sel(weight_decay=w, sigma=s),
                    mc["monte_carlo"].sel(weight_decay=w, sigma=s),
                ]
                for w in mc["weight_decay"].values
                for s in mc["sigma"].values
            ],
        ),
        "",
        "## (b) ReLU network, same sizes and data (Monte Carlo errors)",
        "",
        c.table(
            ["sigma"] + [f"lambda={w:g}" for w in relu["weight_decay"].values],
            [
                [f"{s:g}"]
                + [_spread(final_noise_err(relu).sel(weight_decay=w, sigma=s)) for w in relu["weight_decay"].values]
                for s in relu["sigma"].values
            ],
        ),
        "",
        "No closed form exists for the ReLU network; the claim checked is qualitative: weight decay lowers the noisy error.",
    ]
    if d4 is not None:
        m4 = final_noise_err(d4)
        rows4 = []
        for w in d4["weight_decay"].values:
            for s in d4["sigma"].values:
                ref = D4_TABLE.get(float(w), {}).get(float(s), float("nan"))
                med, lo, hi = c.seed_stats(m4.sel(weight_decay=w, sigma=s))
                inside = "yes" if lo <= ref <= hi else f"no ({c.fmt(100 * (med / ref - 1), 2)}% off)" if ref else "-"
                rows4.append([f"{w:g}", f"{s:g}", _spread(m4.sel(weight_decay=w, sigma=s)), ref, inside])
        out += [
            "",
            "## D4 table at the paper's sizes (N = 100)",
            "",
            f"Sizes: {c.sizes(d4_cfg)}.",
            "",
            c.table(["lambda", "sigma", "measured median [min, max]", "SCIENCE.md D4", "inside seed range"], rows4),
        ]
    return "\n".join(out)


def run(ctx: c.Context) -> c.Outcome:
    cfg = c.config(ctx, "fig1", SMOKE)
    lin = c.sweep(ctx, cfg, "fig1_linear").assign_coords(activation="linear")
    relu_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, activation="relu"))
    relu = c.sweep(ctx, relu_cfg, "fig1_relu").assign_coords(activation="relu")
    ctx.log("[reproduce] fig1: Monte Carlo check of the D4 closed form (retrains seed 0)")
    mc = mc_check(cfg)
    d4 = d4_cfg = None
    if not ctx.smoke:  # the paper's sizes: about 2 minutes on 2 CPU cores
        d4_cfg = c.config(ctx, "fig1_d4")
        d4 = c.sweep(ctx, d4_cfg, "fig1_d4")
    png = figures.fig1(
        final_noise_err(lin),
        predicted_noise_err(lin, cfg),
        final_noise_err(relu),
        mc,
        final_noise_err(d4) if d4 is not None else None,
        D4_TABLE,
        ctx.out / f"fig1{ctx.suffix}.png",
    )
    path = c.write_report(ctx, "fig1", report(lin, relu, cfg, mc, d4, d4_cfg, png.name))
    return c.Outcome(path, (png,), {"linear": lin, "relu": relu, "d4": d4, "mc": mc, "cfg": cfg})
