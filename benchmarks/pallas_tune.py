"""Tunes the Pallas kernel (``dlnsim.onchip``) against the fused step at the small sizes.

Times ``dlnsim.sweep`` at the small sizes of ``throughput.py`` with the fused step (the
default on GPUs) and with ``backward="pallas"`` for each warp count per program, at two
run lengths (their difference separates the per-step rate from the fixed costs of a
sweep), and checks that the kernel's final losses match the fused step's. It chose
``dlnsim.onchip.NUM_WARPS`` (8) on an H200; run it again on a new GPU or jax version.

Usage (on a GPU; on a CPU Pallas only interprets the kernel, so use --tiny there):
  python benchmarks/pallas_tune.py --out results/pallas_tune.json
  python benchmarks/pallas_tune.py --warps 4 8 --steps 2000 10000
  python benchmarks/pallas_tune.py --tiny          # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp

import dlnsim
from dlnsim import onchip


def final_loss(sz: tp.Sizes, runs: int, steps: int, backward: str) -> np.ndarray:
    ds = dlnsim.sweep(tp._sweep_cfg(sz, runs, steps, steps, "reduced", backward))
    return np.asarray(ds["loss_data"].isel(step=-1))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warps", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--steps", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--runs", type=int, default=4096)
    ap.add_argument("--tiny", action="store_true", help="toy sizes, 8 runs, 100 steps, 4 warps")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    sz = tp.SIZES["tiny" if args.tiny else "small"]
    runs, steps, warps = (8, [100], [4]) if args.tiny else (args.runs, args.steps, args.warps)
    result = {
        "device": str(jax.devices()[0].device_kind),
        "jax": jax.__version__,
        "sizes": vars(sz),
        "runs": runs,
        "rows": [],
    }

    def record(**row) -> None:
        result["rows"].append(row)
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        if args.out:
            tp.write_json(args.out, result)

    for n in steps:
        r = tp.time_dlnsim(sz, runs, n, data="reduced", repeats=2, backward="fused")
        record(method="fused", steps=n, network_steps_per_s=r["network_steps_per_s"], compile_s=r["compile_s"])
    check_steps = min(steps)
    reference = final_loss(sz, runs, check_steps, "fused")
    for w in warps:
        onchip.NUM_WARPS = w
        jax.clear_caches()  # the warp count is read when the kernel is traced
        try:
            for n in steps:
                r = tp.time_dlnsim(sz, runs, n, data="reduced", repeats=2, backward="pallas")
                record(
                    method=f"pallas, {w} warps",
                    steps=n,
                    network_steps_per_s=r["network_steps_per_s"],
                    compile_s=r["compile_s"],
                )
            loss = final_loss(sz, runs, check_steps, "pallas")
            record(
                method=f"pallas, {w} warps",
                steps=check_steps,
                max_rel_diff_final_loss_vs_fused=float(np.max(np.abs(loss - reference) / np.abs(reference))),
            )
        except Exception as e:  # a warp count the compiler refuses is a finding
            record(method=f"pallas, {w} warps", error=f"{type(e).__name__}: {str(e)[:500]}")
    return result


if __name__ == "__main__":
    main()
