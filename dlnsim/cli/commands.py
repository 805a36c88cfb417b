"""The subcommands' handlers: ``cmd_<name>(args) -> exit code``, one per ``dlnsim`` command.

Handlers print results to stdout (progress to stderr) and raise
:class:`~dlnsim.cli._common.Fail` for a one-line error with its exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlnsim.cli._common import CACHE_ENV, IMAGE_FORMATS, PLOT_FUNCS, SWEEP_METRIC, Fail, error, setup_jax
from dlnsim.cli.progress import Reporter


def _load(args: argparse.Namespace) -> Any:
    from dlnsim.configfile import ConfigError, default_config, load_config

    overrides = list(args.set or [])
    if args.chunk_size is not None:
        overrides.append(f"sweep.chunk_size={args.chunk_size}")
    if args.max_memory is not None:
        overrides.append(f"sweep.max_memory={json.dumps(args.max_memory)}")  # a TOML string
    try:
        return load_config(args.config, overrides) if args.config else default_config(overrides)
    except ConfigError as e:
        raise Fail(str(e)) from None


def _pick_axes(ds: Any, x: str | None, y: str | None) -> tuple[str, str]:
    """Heatmap axes: the given ones, else weight decay x depth, else the first two non-seed axes."""
    dims = [d for d in ds["diverged"].dims if d != "seed" and ds.sizes[d] > 1]
    prefer = [a for a in ("weight_decay", "depth") if a in dims] + [
        a for a in dims if a not in ("weight_decay", "depth")
    ]
    x = x or next((a for a in prefer if a != y), None)
    y = y or next((a for a in prefer if a != x), None)
    if x is None or y is None:
        raise Fail(
            f"a heatmap needs two grid axes with several values (this sweep has {', '.join(dims) or 'none'}); use --kind curves"
        )
    for name, axis in (("--x", x), ("--y", y)):
        if axis not in ds["diverged"].dims:
            raise Fail(
                f"{name} {axis!r} is not a grid axis of this results file: axes are {', '.join(ds['diverged'].dims)}"
            )
    return x, y


def _summary_text(ds: Any) -> str:
    from dlnsim import reduce

    return reduce.summary_table(ds)


def _plotting() -> Any:
    from dlnsim import plotting  # lazily: matplotlib only for the commands that draw

    return plotting


def cmd_sweep(args: argparse.Namespace) -> int:
    from dlnsim.grid import plan
    from dlnsim.storage import ExistingResultsError, chunk_dir, run_sweep

    cfg = _load(args)
    setup_jax(args, x64=cfg.train.dtype == "float64")
    shard = _shard(args)
    final = Path(args.output)
    out = _part_path(final, *shard) if shard and args.distributed else final
    try:  # planning sizes every group's step: a step that cannot take a group's sizes says so here
        chunks = [c for c in plan(cfg) if shard is None or c.index % shard[1] == shard[0]]
    except ValueError as e:
        raise Fail(str(e)) from None
    quiet = args.quiet
    if not quiet:
        print(
            f"[dlnsim] {cfg.n_runs} runs ({' x '.join(f'{a} {len(v)}' for a, v in cfg.grid.items())}) "
            f"in {len(chunks)} chunks, {cfg.train.steps} steps each -> {out}",
            file=sys.stderr,
            flush=True,
        )
    reporter = None if quiet else Reporter(cfg, len(chunks))
    start = time.perf_counter()
    try:
        ds, skipped = run_sweep(cfg, out, force=args.force, progress=reporter, shard=shard)
    except ExistingResultsError as e:
        raise Fail(str(e)) from None
    except KeyboardInterrupt:
        error(f"interrupted; finished chunks are kept in {chunk_dir(out)}: rerun the same command to resume")
        return 130
    finally:
        if reporter is not None:
            reporter.close()
    wall = time.perf_counter() - start
    resumed = f", {skipped} of {len(chunks)} chunks skipped (already computed)" if skipped else ""
    n_runs = sum(len(c.runs) for c in chunks)
    print(f"wrote {out}: {n_runs} runs in {wall:.1f} s{resumed}")
    if shard is not None:
        if args.distributed:
            return _merge_distributed(final, shard)
        print(f"shard {shard[0]}/{shard[1]}: combine all {shard[1]} shard files with `dlnsim merge`")
        return 0
    try:
        x, y = _pick_axes(ds, None, None)
    except Fail as e:
        print(f"no phase diagram: {e}")
    else:
        try:
            plotting = _plotting()
        except Fail as e:
            print(f"no phase diagram: {e}")
        else:
            sigma = float(ds["sigma"].max())
            png = plotting.phase_diagram(ds, x, y, SWEEP_METRIC, out.with_suffix(".png"), select={"sigma": sigma})
            print(f"wrote {png}: final {SWEEP_METRIC} at sigma = {sigma:g}, median over seeds, {y} x {x}")
    print()
    print(_summary_text(ds))
    return 0


def _shard(args: argparse.Namespace) -> tuple[int, int] | None:
    """``--shard I/N``, or this process's slot under ``--distributed``."""
    if args.distributed:
        import jax

        try:  # None: detected from the cluster (SLURM, Open MPI, ...) or JAX_COORDINATOR_ADDRESS
            jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        except (ValueError, RuntimeError) as e:
            raise Fail(
                f"--distributed could not start ({e}): run under a cluster JAX detects (SLURM, Open MPI) "
                "or give --coordinator HOST:PORT --num-processes N --process-id I"
            ) from None
        return (jax.process_index(), jax.process_count()) if jax.process_count() > 1 else None
    if args.shard is None:
        return None
    try:
        i, n = (int(v) for v in args.shard.split("/"))
    except ValueError:
        raise Fail(f"--shard {args.shard!r} is invalid: must be I/N with integers 0 <= I < N") from None
    if not 0 <= i < n:
        raise Fail(f"--shard {args.shard!r} is invalid: must be I/N with integers 0 <= I < N")
    return i, n


def _merge_distributed(final: Path, shard: tuple[int, int]) -> int:
    """Under ``--distributed`` every process writes its shard next to ``final`` (a shared file
    system); process 0 waits for all of them (each appears atomically, complete) and merges."""
    if shard[0] != 0:
        return 0
    from dlnsim.storage import merge_shards

    parts = [_part_path(final, i, shard[1]) for i in range(shard[1])]
    while missing := [p for p in parts if not p.exists()]:
        print(
            f"waiting for {len(missing)} of {len(parts)} process shards ({missing[0]}, ...)",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(5.0)
    merge_shards(parts, final)
    for p in parts:
        p.unlink()
    print(f"wrote {final}: {shard[1]} process shards merged")
    return 0


def _part_path(out: Path, i: int, n: int) -> Path:
    return out.with_name(f"{out.stem}.part{i}of{n}{out.suffix}")


def cmd_merge(args: argparse.Namespace) -> int:
    from dlnsim.storage import merge_shards

    try:
        ds = merge_shards(args.parts, args.output)
    except (ValueError, OSError, KeyError) as e:
        raise Fail(str(e)) from None
    print(f"wrote {args.output}: {len(args.parts)} shards merged, {int(ds.diverged.size)} runs")
    return 0


def _open(path: str) -> Any:
    from dlnsim.storage import open_results

    if not Path(path).is_file():
        raise Fail(f"no results file at {path}")
    try:
        return open_results(path)[0]
    except (OSError, KeyError, ValueError) as e:
        raise Fail(f"{path} is not a dlnsim results file ({e})") from None


def cmd_summary(args: argparse.Namespace) -> int:
    ds = _open(args.results)
    print(_summary_text(ds))
    return 0


def _plot_target(args: argparse.Namespace) -> Callable[[str], Path]:
    """Where a picture goes: ``-o`` as a file name (with an image suffix), else a
    directory (default: next to RESULTS) with the file named from ``name``."""
    out = Path(args.output) if args.output else None
    fmt = out.suffix.lower().lstrip(".") if out is not None else ""
    if fmt in IMAGE_FORMATS:
        if args.format not in (None, fmt):
            raise Fail(f"-o {out} is a .{fmt} file but --format is {args.format}; give one of them, or the same")
        out.parent.mkdir(parents=True, exist_ok=True)
        return lambda name: out
    outdir = out or Path(args.results).parent
    if outdir.is_file():
        raise Fail(f"-o {outdir}: an existing file without an image suffix; give a directory or a name ending "
                   f"{', '.join('.' + f for f in IMAGE_FORMATS)}")
    outdir.mkdir(parents=True, exist_ok=True)
    return lambda name: outdir / f"{name}.{args.format or 'png'}"


def cmd_plot(args: argparse.Namespace) -> int:
    ds = _open(args.results)
    plotting = _plotting()
    func = getattr(plotting, PLOT_FUNCS[args.kind])
    target = _plot_target(args)
    stem = Path(args.results).stem
    try:
        if args.kind == "heatmap":
            metric = args.metric or SWEEP_METRIC
            x, y = _pick_axes(ds, args.x, args.y)
            sigma = float(ds["sigma"].max()) if args.sigma is None else args.sigma
            select = {"sigma": sigma} if metric == "noise_err" else None
            written = func(ds, x, y, metric, target(f"{stem}_{metric}_{y}_{x}"), select=select)
        elif args.kind == "curves":
            metric = args.metric or "on_err"
            written = func(ds, target(f"{stem}_curves_{metric}"), metric=metric)
        else:
            written = func(ds, target(f"{stem}_{args.kind}"))
    except (KeyError, ValueError) as e:  # an unknown metric or axis, named by plotting
        raise Fail(f"cannot plot {args.kind}: {str(e).strip(chr(39))}") from None
    print(f"wrote {written}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import h5netcdf
    import jax
    import jaxlib
    import numpy as np
    import xarray as xr

    import dlnsim
    from dlnsim.config import TrainConfig

    cache = setup_jax(args)
    devices = jax.devices()
    kinds = sorted({f"{d.platform}: {d.device_kind}" for d in devices})
    rows = [
        ("dlnsim", dlnsim.__version__),
        ("python", sys.version.split()[0]),
        ("jax / jaxlib", f"{jax.__version__} / {jaxlib.__version__}"),
        ("numpy / xarray / h5netcdf", f"{np.__version__} / {xr.__version__} / {h5netcdf.__version__}"),
        ("backend", jax.default_backend()),
        ("devices", f"{len(devices)} x {', '.join(kinds)}"),
        ("default dtype", f'{TrainConfig().dtype} (float64 available: train.dtype = "float64")'),
        ("matmul precision", f'{TrainConfig().precision} (dlnsim default; train.precision = "default" for fast TF32)'),
        ("jax default matmul precision", str(jax.config.jax_default_matmul_precision)),
        ("compilation cache", cache or f"off (enable with --compile-cache DIR or {CACHE_ENV}=DIR)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from dlnsim import reproduce

    setup_jax(args, x64=reproduce.needs_x64(args.name))
    return reproduce.main(args, log=lambda msg: print(msg, flush=True))
