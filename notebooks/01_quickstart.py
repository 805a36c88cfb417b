# %% [markdown]
# # dlnsim quick start
#
# A deep linear network `f(y) = W_L ... W_1 y` learns to invert measurements `y = A x` of signals `x`
# that live on an `s`-dimensional subspace (see `SCIENCE.md`). This notebook trains **one network**,
# plots its learning curves, then runs a **small sweep** (seeds x weight decay x step size), reduces
# it over seeds and draws a phase diagram.
#
# Set the environment variable `DLNSIM_SMOKE=1` to run everything at toy sizes (the test suite does).

# %%
import os
import tempfile

import jax
import numpy as np
from matplotlib.figure import Figure

import dlnsim
import dlnsim.plotting
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
OUT = tempfile.mkdtemp(prefix="dlnsim_nb01_")  # pictures written by dlnsim.plotting


print("smoke mode" if SMOKE else "normal size", "| dlnsim", dlnsim.__version__)

# %% [markdown]
# ## 1. One problem, one network
#
# `ProblemConfig` fixes the sizes: signals in `R^d`, `m` measurements, an `s`-dimensional latent subspace,
# `N = n_train` training pairs. `make_problem` draws the subspace `U`, the Gaussian operator `A` and the data.

# %%
if SMOKE:
    problem_cfg = dlnsim.ProblemConfig(d=20, m=10, s=2, n_train=30, n_test=50)
    model = dlnsim.ModelConfig(depth=3, width=16)
    train_cfg = dlnsim.TrainConfig(steps=100, log_every=20)
else:
    problem_cfg = dlnsim.ProblemConfig(d=100, m=50, s=5, n_train=200)
    model = dlnsim.ModelConfig(depth=3, width=100)
    train_cfg = dlnsim.TrainConfig(steps=3000, log_every=50)

problem = dlnsim.make_problem(problem_cfg, seed=0)
print("A:", problem.a.shape, " U:", problem.u.shape, " X:", problem.x.shape, " Y:", problem.y.shape)

# %% [markdown]
# `train` runs full-batch gradient descent with weight decay `lambda` and step size `eta` and records metrics
# every `log_every` steps. Among them:
#
# * `on_err = ||E B - U||_F / sqrt(s)`: how well the end-to-end map `E = W_L ... W_1` inverts `A` on the subspace,
# * `off_fro = ||E P_perp||_F`: the size of `E` on measurement directions that carry no signal (these amplify noise),
# * `w1_off_fro = ||W_1 P_perp||_F`: its first-layer counterpart, which decays exactly like `(1 - eta lambda)^t` (D1).

# %%
hp = dlnsim.HParams(lr=0.05, weight_decay=1e-2)
run = dlnsim.train(problem, model, train_cfg, hp, seed=0)
steps = np.arange(train_cfg.n_logs) * train_cfg.log_every
m = run.metrics
print(f"diverged: {bool(run.diverged)}")
print(
    f"final on_err = {float(m.on_err[-1]):.3g}, off_fro = {float(m.off_fro[-1]):.3g}, "
    f"clean test error = {float(m.test_err[-1]):.3g}"
)

# %%
fig = Figure(figsize=(10, 3.8), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
ax1.semilogy(steps, m.on_err, lw=2)
ax1.set(xlabel="step", ylabel="on_err = ||EB - U||_F / sqrt(s)", title="on-subspace error (fast fit)")
ax2.semilogy(steps, m.off_fro, lw=2, label="||E P_perp||_F (measured)")
ax2.semilogy(steps, m.w1_off_fro, lw=2, label="||W_1 P_perp||_F (measured, under the D1 line)")
d1 = float(m.w1_off_fro[0]) * (1 - hp.lr * hp.weight_decay) ** steps
ax2.semilogy(steps, d1, "k--", lw=1, label="D1: (1 - eta lambda)^t x initial")
ax2.set(xlabel="step", ylabel="norm", title="off-subspace part (slow decay under weight decay)")
ax2.legend(fontsize=8)
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.suptitle(f"one network: L={model.depth}, w={model.width}, eta={hp.lr}, lambda={hp.weight_decay}")
show(fig)

# %% [markdown]
# ## 2. A small sweep
#
# `SweepConfig` names a grid. Step size, weight decay and seeds are *traced* axes: all runs are trained
# together by one compiled program (`vmap`). Depth, width and the problem sizes are *static* axes (one
# compiled program per value). `sweep` returns an `xarray.Dataset` with every metric over the grid and the steps;
# `progress=dlnsim.ProgressBar(cfg)` draws a bar as the chunks finish (runs, network-steps per second, ETA).

# %%
if SMOKE:
    grid = {"seed": [0, 1], "weight_decay": [0.0, 0.1], "lr": [0.02, 0.05]}
else:
    grid = {"seed": [0, 1, 2], "weight_decay": [0.0, 1e-3, 1e-2, 1e-1], "lr": [0.02, 0.05]}
sweep_cfg = dlnsim.SweepConfig(problem=problem_cfg, model=model, train=train_cfg, grid=grid)
ds = dlnsim.sweep(sweep_cfg, progress=dlnsim.ProgressBar(sweep_cfg))
print(f"{sweep_cfg.n_runs} runs; dims: {dict(ds.sizes)}")

# %% [markdown]
# `dlnsim.reduce` turns the histories into per-run numbers (steps to the phases, fitted decay rates, final
# metrics, theory predictions) and statistics over seeds; `summary_table` prints the medians.

# %%
red = dlnsim.reduce(ds)
print(dlnsim.reduce.summary_table(red))

# %% [markdown]
# Learning curves of the off-subspace norm for each weight decay (median over seeds, interquartile band):
# without weight decay `E P_perp` keeps its random initial size; with weight decay it decays at the rate
# `eta lambda` until float32 rounding stops it (the floor near `1e-5`).

# %%
path = dlnsim.plotting.learning_curves(
    ds, f"{OUT}/off_fro.png", metric="off_fro", hue="weight_decay", select={"lr": 0.05}
)
show(path, width=650)

# %% [markdown]
# A phase diagram: the final off-subspace norm over weight decay and step size (median over seeds).

# %%
path = dlnsim.plotting.phase_diagram(ds, x="weight_decay", y="lr", metric="off_fro", path=f"{OUT}/phase.png")
show(path, width=600)

# %% [markdown]
# The same dataset can be saved with `ds.to_netcdf(...)`; from the command line `dlnsim sweep CONFIG.toml`
# runs a sweep into a results file and `dlnsim plot` draws these pictures.
