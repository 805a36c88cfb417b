# %% [markdown]
# # Phase diagrams
#
# Three grids that every deep-linear-network study draws:
#
# 1. **depth x weight decay**: the final on-subspace error, with the theoretical *collapse* boundary of
#    `SCIENCE.md` (past a depth-dependent weight decay the only limit is `E = 0`);
# 2. **step size x weight decay**: where gradient descent diverges (a result, not an error: diverged runs are
#    frozen and flagged);
# 3. **m/d x s/m**: how the problem's sizes (measurements per signal dimension, subspace dimension per
#    measurement) set the noise robustness of the learned inverse.
#
# `DLNSIM_SMOKE=1` runs toy sizes.

# %%
import os
import tempfile

import jax
import numpy as np
from matplotlib.figure import Figure

import dlnsim
import dlnsim.plotting
from dlnsim import theory
from dlnsim.plotting import show

# Synchronous CPU dispatch: building these notebooks once hung in an asynchronously dispatched computation
# (cf. jax-ml/jax#25861); the cost is negligible here.
jax.config.update("jax_cpu_enable_async_dispatch", False)
# On a CPU: one JAX device per core, so the sweeps below use every core (before any JAX computation).
dlnsim.use_cpu_cores()
# JAX's persistent compilation cache (~/.cache/dlnsim/jax; DLNSIM_COMPILE_CACHE=off turns it off):
# after a kernel restart, programs compiled before are loaded from disk instead of compiled again.
dlnsim.use_compile_cache()

SMOKE = os.environ.get("DLNSIM_SMOKE", "0") == "1"
OUT = tempfile.mkdtemp(prefix="dlnsim_nb02_")


if SMOKE:
    problem_cfg = dlnsim.ProblemConfig(d=20, m=10, s=2, n_train=30, n_test=50)
    # One depth and equal batch sizes: both sweeps share one compiled program (compiles dominate toy runs).
    width, steps, log_every, seeds = 16, 100, 20, [0]
    depths = [3]
    weight_decays = [0.0, 1.0]
    lrs = [3.0]
    ratios_m, ratios_s = [0.5], [0.2]
else:
    problem_cfg = dlnsim.ProblemConfig(d=60, m=30, s=5, n_train=100)
    width, steps, log_every, seeds = 48, 3000, 100, [0, 1]
    depths = [1, 2, 3, 4, 6]
    weight_decays = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
    lrs = [0.01, 0.03, 0.1, 0.3, 0.6, 1.0]
    ratios_m, ratios_s = [0.1, 0.25, 0.5], [0.1, 0.25, 0.5]
train_cfg = dlnsim.TrainConfig(steps=steps, log_every=log_every)
print("smoke mode" if SMOKE else "normal size", "|", problem_cfg)

# %% [markdown]
# ## 1. Depth x weight decay
#
# Depth is a *static* axis (one compiled program per depth), weight decay and seeds are vmapped.

# %%
depth_cfg = dlnsim.SweepConfig(
    problem=problem_cfg,
    model=dlnsim.ModelConfig(width=width),
    train=train_cfg,
    hparams={"lr": 0.05},
    grid={"depth": depths, "weight_decay": weight_decays, "seed": seeds},
)
ds_depth = dlnsim.sweep(depth_cfg, progress=dlnsim.ProgressBar(depth_cfg))
path = dlnsim.plotting.phase_diagram(ds_depth, x="weight_decay", y="depth", metric="on_err", path=f"{OUT}/depth.png")
show(path, width=650)

# %% [markdown]
# Reading the diagram: small weight decay fits the subspace (`on_err ~ lambda`); for `L >= 2` the error jumps to 1
# (`E = 0`) once `lambda` passes the collapse threshold, which shrinks with depth. The lines assume the singular
# values of `B = A U` are 1; the real ones spread around 1 (`1 +- sqrt(s/m)`), so the jump is smeared over a cell
# or two. `L = 1` (ridge regression) never collapses: its error grows smoothly like `lambda / (sigma^2 + lambda)`.

# %% [markdown]
# ## 2. The collapse boundary
#
# Per singular direction of `B` the limit scales by a gain `h` solving `(h - 1) + c h^(2/L - 1) = 0` with
# `c = lambda / sigma^(2/L)`. The nonzero root vanishes at `c*(L)` (solid); `E = 0` becomes the *global* minimum
# earlier (dashed). Between the two, gradient descent from a random start may still find the nonzero local minimum.

# %%
Ls = np.arange(2, 11)
fig = Figure(figsize=(10, 3.8), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
ax1.plot(Ls, [theory.collapse_threshold(int(L)) for L in Ls], "o-", label="c*(L): nonzero root vanishes")
ax1.plot(Ls, [theory.global_collapse_threshold(int(L)) for L in Ls], "s--", label="E = 0 becomes global minimum")
ax1.set(xlabel="depth L", ylabel="threshold on c = lambda / sigma^(2/L)", title="collapse thresholds", ylim=(0, 1.05))
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3)
cs = np.linspace(0, 1.1, 221)
for L in (2, 3, 4, 6):
    ax2.plot(cs, np.asarray(theory.limit_gain(cs, L)), label=f"L={L}")
ax2.set(xlabel="c = lambda / sigma^(2/L)", ylabel="limit gain h (0: collapse)", title="gain of the limit map")
ax2.legend(fontsize=8)
ax2.grid(alpha=0.3)
show(fig)

# %% [markdown]
# The simulated final on-subspace error against weight decay, one line per depth, with each depth's threshold
# `c*(L)` (`sigma = 1`) marked by a vertical line of the same colour:

# %%
final = ds_depth["on_err"].isel(step=-1).where(~ds_depth["diverged"]).median("seed")
fig = Figure(figsize=(6.5, 4), layout="constrained")
ax = fig.subplots()
wd = ds_depth["weight_decay"].values
for i, L in enumerate(ds_depth["depth"].values):
    color = f"C{i}"
    ax.plot(wd[wd > 0], final.sel(depth=L).values[wd > 0], "o-", color=color, label=f"L={L}")
    if L >= 2:
        ax.axvline(theory.collapse_threshold(int(L)), color=color, ls=":", lw=1.5)
ax.set_xscale("log")
ax.set(xlabel="weight decay lambda", ylabel="final on_err (median over seeds)", title="collapse to E = 0")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
show(fig)

# %% [markdown]
# ## 3. Step size x weight decay: divergence
#
# Too large a step makes gradient descent blow up. Diverged runs are frozen at the step where the loss passed
# `divergence_cap` times its initial value; the diagram hatches cells where every seed diverged.

# %%
lr_cfg = dlnsim.SweepConfig(
    problem=problem_cfg,
    model=dlnsim.ModelConfig(depth=3, width=width),
    train=train_cfg,
    grid={"lr": lrs, "weight_decay": weight_decays, "seed": seeds},
)
ds_lr = dlnsim.sweep(lr_cfg, progress=dlnsim.ProgressBar(lr_cfg))
path = dlnsim.plotting.phase_diagram(ds_lr, x="weight_decay", y="lr", metric="on_err", path=f"{OUT}/lr.png")
show(path, width=650)
n_div = int(ds_lr["diverged"].sum())
print(f"{n_div} of {lr_cfg.n_runs} runs diverged")
print("step of divergence (seed 0; -1 = never):")
print(ds_lr["diverged_at"].isel(seed=0).to_pandas())

# %% [markdown]
# ## 4. Problem sizes: m/d x s/m
#
# The grid axes `m_over_d` and `s_over_m` set `m = m_over_d * d` and then `s = s_over_m * m` (rounded) per cell,
# one compiled program each. With weight decay the off-subspace part is gone, and what is left of the noise is
# amplified by the small singular values of `B = A U` (D4): the more of the measurements the subspace takes
# (s/m towards 1), the worse `B` is conditioned. The theory column is the closed-form limit's error with
# whitened codes, `sqrt(mean (1 - h_i)^2 + sigma^2 sum (h_i / sigma_i)^2 / s)` (SCIENCE.md "Limit", D4).

# %%
sizes_cfg = dlnsim.SweepConfig(
    problem=dlnsim.ProblemConfig(d=problem_cfg.d, m=problem_cfg.m, s=problem_cfg.s, n_train=problem_cfg.n_train,
                                 whiten=True, test_sigmas=(0.0, 0.5)),
    model=dlnsim.ModelConfig(depth=3, width=width),
    train=train_cfg,
    hparams={"lr": 0.05, "weight_decay": 0.1},
    grid={"m_over_d": ratios_m, "s_over_m": ratios_s, "seed": seeds},
)
ds_sizes = dlnsim.sweep(sizes_cfg, progress=dlnsim.ProgressBar(sizes_cfg))
path = dlnsim.plotting.phase_diagram(ds_sizes, x="m_over_d", y="s_over_m", metric="noise_err",
                                     path=f"{OUT}/sizes.png", select={"sigma": 0.5})
show(path, width=650)
# Measured (seed 0) against the limit's D4 error, per cell.
for ratio_m in ratios_m:
    for ratio_s in ratios_s:
        p, _ = dlnsim.config.problem_and_model(sizes_cfg, {"m_over_d": ratio_m, "s_over_m": ratio_s})
        b = dlnsim.make_problem(p, seed=0).b  # problem_seed 0: the teacher the cell's seeds share
        sv = np.linalg.svd(np.asarray(b, float), compute_uv=False)
        h = np.asarray(theory.limit_gain(np.asarray(0.1 / sv ** (2 / 3)), 3), float)
        predicted = np.sqrt(np.mean((1 - h) ** 2) + 0.25 * np.sum((h / sv) ** 2) / p.s)
        measured = float(ds_sizes["noise_err"].sel(m_over_d=ratio_m, s_over_m=ratio_s, sigma=0.5).isel(seed=0, step=-1))
        print(f"m={p.m:3d} s={p.s:2d}: measured {measured:.3f}, limit (D4) {predicted:.3f}, "
              f"smallest sigma(B) {sv.min():.2f}")

