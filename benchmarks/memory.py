"""Memory benchmark: a sweep larger than one batch runs in memory-sized chunks.

Runs N small networks (default 10,000: d=20, m=10, s=2, L=5, width 40, N=200) under a
memory budget (``--max-memory``), and prints the planned chunks, the estimated bytes per
run (``dlnsim.devices.run_bytes``), the measured peak resident memory of the process and
the throughput. Writes JSON with ``--out``.

    python benchmarks/memory.py                      # 10,000 runs, 1 GB budget
    python benchmarks/memory.py --runs 2000 --max-memory 256MB --steps 200
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_devices

import dlnsim
from dlnsim import devices, plan
from dlnsim.step import uses_raw_data


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--max-memory", default="1GB")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = cpu_devices.parse(ap, argv)  # before any JAX computation, as `dlnsim sweep` does

    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=20, m=10, s=2, n_train=200, n_test=100),
        model=dlnsim.ModelConfig(depth=5, width=40),
        train=dlnsim.TrainConfig(steps=args.steps, log_every=50),
        hparams={"lr": 0.05},
        grid={"seed": range(args.runs // 10), "weight_decay": [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]},
        max_memory=args.max_memory,
    )
    chunks = plan.plan(cfg)
    problem_cfg, model = plan.group_configs(cfg, 0)
    per_run = devices.run_bytes(problem_cfg, model, cfg.train, uses_raw_data(model, cfg.train))
    rss0 = _peak_rss_bytes()
    start = time.perf_counter()
    ds = dlnsim.sweep(cfg)
    wall = time.perf_counter() - start
    out = {
        "device": f"{jax.local_device_count()} x {jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
        "machine": platform.processor() or platform.machine(),
        "runs": cfg.n_runs,
        "steps": args.steps,
        "max_memory": args.max_memory,
        "chunks": len(chunks),
        "runs_per_chunk": max(len(c.runs) for c in chunks),
        "estimated_bytes_per_run": per_run,
        "estimated_bytes_per_chunk": per_run * max(len(c.runs) for c in chunks),
        "peak_rss_bytes_before": rss0,
        "peak_rss_bytes": _peak_rss_bytes(),
        "wall_seconds": round(wall, 2),
        "network_steps_per_second": round(cfg.n_runs * args.steps / wall),
        "all_finite": bool(ds.on_err.notnull().all()),
        "diverged": int(ds.diverged.sum()),
    }
    for k, v in out.items():
        print(f"{k:28s} {v}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
