"""How dlnsim's throughput scales: network-steps per second against runs, width, depth and N.

Each point is one ``dlnsim.sweep`` over seeds (public API only) on the reduced and on the
raw data path, float32, full-precision matmuls, metrics at step 0 and at the end. One axis
varies at a time around a base configuration; compile time is measured separately (JAX
monitoring listener, see ``throughput.py``); steady state is the fastest of the calls after
a warm-up call (``--repeats``, default 3), or with ``--repeats 1`` the first call minus its
compile time.
The dashed line in each panel is the memory-bandwidth bound of the reduced path
(copy bandwidth measured in the same run / (4 x weight bytes per network)).

Usage:
  python benchmarks/scaling.py                      # CPU defaults, a few minutes
  python benchmarks/scaling.py --quick --out results/scaling.json   # and results/scaling.png
  python benchmarks/scaling.py --tiny --out /tmp/s.json             # seconds; used by the tests
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_devices
import peers
import throughput
from throughput import Sizes


BASE = {
    "cpu": Sizes(d=100, m=50, s=5, depth=5, width=100, n_train=200),
    "gpu": Sizes(d=200, m=100, s=5, depth=5, width=400, n_train=1000),
    "tiny": Sizes(d=8, m=4, s=2, depth=3, width=8, n_train=16),
}
BASE_RUNS = {"cpu": 32, "gpu": 256, "tiny": 4}
# (steps on the reduced path, steps on the raw path): the raw path costs ~N/r times more per step.
STEPS = {"cpu": (100, 10), "gpu": (1000, 100), "tiny": (20, 5)}
AXES = {
    "tiny": {"runs": [1, 4], "width": [4, 8]},  # seconds, for the tests
    "cpu": {
        "runs": [1, 4, 16, 64, 256],
        "width": [25, 50, 100, 200, 400],
        "depth": [2, 3, 5, 8],
        "n_train": [50, 200, 1000, 3000],
    },
    "gpu": {
        "runs": [1, 16, 256, 1024, 4096],
        "width": [50, 100, 200, 400, 800],
        "depth": [2, 3, 5, 8],
        "n_train": [100, 1000, 3000, 10000],
    },
}
LABELS = {"runs": "runs trained together", "width": "width w", "depth": "depth L", "n_train": "training samples N"}


def measure(sizes: Sizes, runs: int, steps: int, path: str, repeats: int) -> dict[str, Any]:
    return throughput.time_dlnsim(sizes, runs, steps, data=path, repeats=repeats)


def run(preset: str, axes: dict[str, list[int]], repeats: int, log=print) -> list[dict[str, Any]]:
    base, base_runs = BASE[preset], BASE_RUNS[preset]
    points = []
    for axis, values in axes.items():
        for value in values:
            runs = value if axis == "runs" else base_runs
            sizes = base if axis == "runs" else dataclasses.replace(base, **{axis: value})
            for path, steps in zip(("reduced", "raw"), STEPS[preset]):
                r = measure(sizes, runs, steps, path, repeats)
                log(
                    f"{axis}={value} {path}: {r['network_steps_per_s']:.4g} network-steps/s (compile {r['compile_s']:.2f} s)"
                )
                shapes = peers.layer_shapes(sizes.d, sizes.m, sizes.depth, sizes.width)
                points.append(
                    {
                        "axis": axis,
                        "value": value,
                        "path": path,
                        "sizes": dataclasses.asdict(sizes),
                        "runs": runs,
                        "weight_bytes_per_network": 4 * sum(fo * fi for fo, fi in shapes),
                        **{k: r[k] for k in ("steps", "seconds", "compile_s", "network_steps_per_s", "steady_state")},
                    }
                )
    return points


def plot(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_names = list(dict.fromkeys(p["axis"] for p in result["points"]))
    ncol = 2 if len(axes_names) > 2 else len(axes_names)
    nrow = -(-len(axes_names) // ncol)
    fig, axs = plt.subplots(
        nrow, ncol, figsize=(4.6 * ncol, 3.4 * nrow + 0.6), sharey=True, constrained_layout=True, squeeze=False
    )
    for ax in axs.flat[len(axes_names) :]:
        ax.set_visible(False)
    axs = axs.flat
    bw = result["bandwidth"]["bytes_per_s"]
    style = {
        "reduced": dict(color="C0", marker="o", label="dlnsim, reduced data"),
        "raw": dict(color="C3", marker="s", label="dlnsim, raw data"),
    }
    for ax, axis in zip(axs, axes_names):
        pts = [p for p in result["points"] if p["axis"] == axis]
        xs = sorted({p["value"] for p in pts})
        for path, st in style.items():
            ys = [next(p["network_steps_per_s"] for p in pts if p["value"] == x and p["path"] == path) for x in xs]
            ax.plot(xs, ys, **st)
        bound = [bw / (4 * next(p["weight_bytes_per_network"] for p in pts if p["value"] == x)) for x in xs]
        ax.plot(xs, bound, "k--", lw=1, label="bandwidth bound (4 touches/step)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel(LABELS[axis])
        ax.grid(True, which="major", alpha=0.3)
    for i in range(0, len(axes_names), ncol):
        axs[i].set_ylabel("network-steps per second")
    b = result["base"]
    handles, labels = axs[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(
        f"dlnsim throughput on {result['device']['n_devices']} x {result['device']['device_kind']} "
        f"({result['device']['cpu_model']}, {result['device']['cpu_count']} cores), float32\n"
        f"base: d={b['d']} m={b['m']} s={b['s']} L={b['depth']} w={b['width']} N={b['n_train']}, "
        f"{result['base_runs']} runs; one axis varied per panel",
        fontsize=10,
    )
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the points as JSON here")
    ap.add_argument(
        "--png", type=Path, help="draw the picture here (default: beside --out, else results/scaling_<device>.png)"
    )
    # One call minus its compile time read the same point at 13.5k and 26k network-steps/s in
    # one run (2 CPU cores, 2026-12-01): points last about a second, so the default is a
    # warm-up call and the fastest of 2 more.
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="calls per point (default 3: the fastest after a warm-up; 1: first call minus compile time)",
    )
    ap.add_argument("--quick", action="store_true", help="three values per axis")
    ap.add_argument("--tiny", action="store_true", help="toy sizes, two axes of two values (seconds; for the tests)")
    args = cpu_devices.parse(ap, argv)  # before any JAX computation, as `dlnsim sweep` does

    platform = "cpu" if jax.devices()[0].platform == "cpu" else "gpu"
    preset = "tiny" if args.tiny else platform
    axes = AXES[preset]
    if args.quick:
        axes = {k: [v[0], v[len(v) // 2], v[-1]] for k, v in axes.items()}
    env = throughput.environment(use_torch=False, torch_dev=None)
    result: dict[str, Any] = {
        "schema": "dlnsim-scaling/1",
        "device": env["device"],
        "versions": env["versions"],
        "dtype": "float32",
        "precision": "highest",
        "base": dataclasses.asdict(BASE[preset]),
        "base_runs": BASE_RUNS[preset],
        "steps": {"reduced": STEPS[preset][0], "raw": STEPS[preset][1]},
        "bandwidth": throughput.copy_bandwidth({"tiny": 8, "cpu": 256, "gpu": 2048}[preset] * 2**20),
    }
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    result["points"] = run(preset, axes, args.repeats, log)
    result = throughput._jsonable(result)
    png = args.png or (args.out.with_suffix(".png") if args.out else Path("results") / f"scaling_{platform}.png")
    plot(result, png)
    print(f"wrote {png}")
    if args.out:
        throughput.write_json(args.out, result)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
