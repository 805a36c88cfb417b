# %% [markdown]
# # Theory versus simulation
#
# `SCIENCE.md` lists exact facts a faithful simulator must reproduce. This notebook checks four of them in float64:
#
# 1. **D1**: the first layer's off-subspace part decays *exactly* like `(1 - eta lambda)^t`;
# 2. **the limit**: with whitened codes, gradient descent converges to the closed form `E* = U V diag(h_i/sigma_i) Q^T`;
# 3. **ridge**: at depth `L = 1` it converges to `X Y^T (Y Y^T + N lambda I)^{-1}`;
# 4. **collapse**: past a depth-dependent weight decay the limit is `E = 0` (on-subspace error 1).
#
# `DLNSIM_SMOKE=1` runs toy sizes.

# %%
import os
import tempfile

import jax

jax.config.update("jax_enable_x64", True)  # float64 for the theory checks (must come before any computation)
# Synchronous CPU dispatch: building these notebooks once hung in an asynchronously dispatched computation
# (cf. jax-ml/jax#25861); the cost is negligible here.
jax.config.update("jax_cpu_enable_async_dispatch", False)

import numpy as np
from matplotlib.figure import Figure

import dlnsim
import dlnsim.plotting
from dlnsim import theory
from dlnsim.plotting import show

# JAX's persistent compilation cache (~/.cache/dlnsim/jax; DLNSIM_COMPILE_CACHE=off turns it off):
# after a kernel restart, programs compiled before are loaded from disk instead of compiled again.
dlnsim.use_compile_cache()

SMOKE = os.environ.get("DLNSIM_SMOKE", "0") == "1"
OUT = tempfile.mkdtemp(prefix="dlnsim_nb04_")


if SMOKE:
    problem_cfg = dlnsim.ProblemConfig(d=20, m=10, s=2, n_train=30, n_test=50, whiten=True)
    width, steps, log_every, seeds = 16, 200, 20, [0]
    depths = [1, 3]
    weight_decays = [0.01, 0.1, 1.0]
else:
    problem_cfg = dlnsim.ProblemConfig(d=60, m=30, s=5, n_train=100, whiten=True)
    width, steps, log_every, seeds = 48, 4000, 50, [0, 1]
    depths = [1, 2, 3, 5]
    weight_decays = [0.01, 0.03, 0.1, 0.2, 0.3, 0.45, 0.7, 1.0]
lr = 0.1
print("smoke mode" if SMOKE else "normal size", "|", problem_cfg)

# %% [markdown]
# One float64 sweep over depth x weight decay x seeds serves all four checks. Codes are whitened (`Z Z^T = N I`),
# which makes the closed-form limit exact; `limit_dist = ||E - E*||_F / ||E*||_F` is then recorded at every
# logged step.

# %%
cfg = dlnsim.SweepConfig(
    problem=problem_cfg,
    model=dlnsim.ModelConfig(width=width),
    train=dlnsim.TrainConfig(steps=steps, log_every=log_every, dtype="float64"),
    hparams={"lr": lr},
    grid={"depth": depths, "weight_decay": weight_decays, "seed": seeds},
)
ds = dlnsim.sweep(cfg)
red = dlnsim.reduce(ds)
print(f"{cfg.n_runs} runs, {int(ds['diverged'].sum())} diverged")

# %% [markdown]
# ## 1. D1: exact off-subspace decay of the first layer
#
# The data gradient of `W_1` is `(...) Y^T` and `Y^T P_perp = 0`, so `W_1(t) P_perp = (1 - eta lambda)^t W_1(0) P_perp`
# at every depth. Left: measured (solid) against the prediction (dashed) for three weight decays at depth 3; the
# measured norm stops at float64 rounding (`~1e-16` of `||W_1||`) while the prediction goes on. Right: the relative
# deviation, at rounding level until the norm nears that floor. The table fits the decay rate for every run.

# %%
mid = 3 if 3 in depths else depths[-1]
small = ds.sel(weight_decay=weight_decays[:3])  # three decay rates keep the picture readable
path = dlnsim.plotting.off_subspace_decay(small, f"{OUT}/d1.png", hue="weight_decay", select={"depth": mid})
show(path, width=800)
ratio = red["rate_ratio_w1_off"].sel(stat="median").to_pandas()
print("fitted decay rate of ||W_1 P_perp|| / ln(1 - eta lambda)  (1 = D1), rows: depth")
print(ratio.round(6).to_string())

# %% [markdown]
# ## 2. Convergence to the closed-form limit `E*`
#
# Distance of the trained end-to-end map to `E*` against step (depth `L = 3`). The last phase is governed by the
# off-subspace decay at rate `eta lambda`, so small weight decays converge slowest.

# %%
path = dlnsim.plotting.learning_curves(
    ds.sel(weight_decay=[w for w in weight_decays if w <= 0.2]),
    f"{OUT}/limit.png",
    metric="limit_dist",
    hue="weight_decay",
    select={"depth": mid},
)
show(path, width=650)

# %% [markdown]
# ## 3. Ridge regression at `L = 1`
#
# A single matrix with weight decay is ridge regression; gradient descent must reach
# `E = X Y^T (Y Y^T + N lambda I)^{-1}` (`theory.ridge`). Here trained with `dlnsim.train` (float64) on the same
# problem, with a larger step (the problem is convex) so that the slow `eta lambda` phase fits the step budget.

# %%
problem = dlnsim.make_problem(problem_cfg, seed=0, dtype="float64")
ridge_train = dlnsim.TrainConfig(steps=steps, log_every=steps // 4 if not SMOKE else log_every, dtype="float64")
print(" lambda   ||E_GD - E_ridge||_F / ||E_ridge||_F")
for wd in weight_decays[:4]:
    run = dlnsim.train(
        problem, dlnsim.ModelConfig(depth=1, width=width), ridge_train, dlnsim.HParams(lr=0.5, weight_decay=wd), seed=0
    )
    e_gd = np.asarray(dlnsim.end_to_end(run.params))
    e_ridge = np.asarray(theory.ridge(problem.x, problem.y, wd))
    print(f"{wd:7g}   {np.linalg.norm(e_gd - e_ridge) / np.linalg.norm(e_ridge):.2e}")

# %% [markdown]
# ## 4. Collapse thresholds versus the simulated on-subspace error
#
# For whitened codes the limit's on-subspace error is `sqrt(mean_i (1 - h_i)^2)` with gains
# `h_i = limit_gain(lambda / sigma_i^(2/L), L)` from the true singular values `sigma_i` of `B`
# (`pred_on_err_limit` of `dlnsim.reduce`). Left: simulated against predicted, one point per depth and weight decay.
# Right: the simulated error against `c / c*(L)` (weight decay relative to the depth's collapse threshold, median
# `sigma_i`); the theory puts the jump to 1 between the global-minimum threshold and `c / c* = 1`.

# %%
sim = red["final_on_err"].sel(stat="median")
pred = red["pred_on_err_limit"].sel(stat="median")
cratio = red["collapse_ratio"].sel(stat="median")
fig = Figure(figsize=(11, 4.2), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for i, L in enumerate(ds["depth"].values):
    ax1.plot(pred.sel(depth=L), sim.sel(depth=L), "o", color=f"C{i}", ms=7, label=f"L={L}")
    if L >= 2:
        ax2.plot(cratio.sel(depth=L), sim.sel(depth=L), "o-", color=f"C{i}", label=f"L={L}")
        g = theory.global_collapse_threshold(int(L)) / theory.collapse_threshold(int(L))
        ax2.axvline(g, color=f"C{i}", ls=":", lw=1.2)
ax1.plot([0, 1.05], [0, 1.05], "k--", lw=1, label="simulated = predicted")
ax1.set(xlabel="predicted limit on_err (closed form)", ylabel=f"simulated on_err after {steps} steps")
ax1.set_title("on-subspace error: simulation vs closed-form limit", fontsize=10)
ax1.legend(fontsize=8)
ax2.axvline(1.0, color="k", lw=1.5, label="c = c*(L)")
ax2.plot([], [], "k:", label="global-minimum threshold (per depth)")
ax2.set_xscale("log")
ax2.set(xlabel="c / c*(L)  (median singular value of B)", ylabel="simulated on_err")
ax2.set_title("collapse to E = 0 (on_err = 1)", fontsize=10)
ax2.legend(fontsize=8)
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
show(fig)

# %%
print(dlnsim.reduce.summary_table(red))
