"""The subcommands' handlers: ``cmd_<name>(args) -> exit code``, one per ``dlnsim`` command.

Handlers print results to stdout (progress to stderr) and raise
:class:`~dlnsim.cli._common.Fail` for a one-line error with its exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from dlnsim.cli._common import (
    INTERRUPTED,
    SWEEP_METRIC,
    Fail,
    cache_line,
    error,
    read_results_to_reduce,
    setup_jax,
    shard_note,
)
from dlnsim.cli.dry_run import dry_run
from dlnsim.cli.plot import pick_axes
from dlnsim.cli.progress import ProgressBar

# The options of `dlnsim sweep` that only --distributed uses.
_CLUSTER_OPTIONS = {"coordinator": "--coordinator", "num_processes": "--num-processes", "process_id": "--process-id"}


def _load(args: argparse.Namespace) -> Any:
    from dlnsim.configfile import ConfigError, default_config, load_config

    overrides = list(args.set or [])
    if args.max_memory is not None and any(o.split("=")[0].strip() == "sweep.chunk_size" for o in overrides):
        raise Fail("--max-memory and --set sweep.chunk_size exclude each other: give one of them")
    if args.chunk_size is not None:
        overrides.append(f"sweep.chunk_size={args.chunk_size}")
    if args.max_memory is not None:
        overrides.append(f"sweep.max_memory={json.dumps(args.max_memory)}")  # a TOML string
    try:
        cfg = load_config(args.config, overrides) if args.config else default_config(overrides)
    except ConfigError as e:
        raise Fail(str(e)) from None
    # A budget given on the command line is how the user wants this run batched: it replaces
    # a chunk size of the config, which would otherwise win (SweepConfig.max_memory).
    return dataclasses.replace(cfg, chunk_size=None) if args.max_memory is not None else cfg


def _summary_text(ds: Any, fmt: str = "text", **thresholds: Any) -> str:
    from dlnsim import reduce

    return reduce.summary_table(ds, fmt, **thresholds)  # thresholds checked by the parser


def cmd_sweep(args: argparse.Namespace) -> int:
    from dlnsim.configfile import dumps_config
    from dlnsim.plan import TooLargeError, plan, shard_chunks
    from dlnsim.storage import (
        ExistingResultsError,
        OutputPathError,
        check_output,
        chunk_dir,
        has_chunks,
        holds_sweep,
        resumes_forced,
        run_sweep,
    )

    _check_cluster_options(args)
    cfg = _load(args)
    setup_jax(args, x64=cfg.train.dtype == "float64")
    shard = _shard(args)
    final = Path(args.output)
    out = _part_path(final, *shard) if shard and args.distributed else final
    try:  # planning sizes every group's step: a step that cannot take a group's sizes says so here
        chunks = shard_chunks(plan(cfg), shard)
    except ValueError as e:
        raise Fail(str(e)) from None
    try:  # before any work: a path that cannot take the results, or (merged at the end) another sweep's file
        check_output(args.output)
        if shard is None and final.suffix.lower() == ".png":
            raise OutputPathError(
                f"{final} is where the sweep's picture goes: give the results another name, e.g. {final.with_suffix('.nc')}"
            )
        if shard is None:
            check_output(final.with_suffix(".png"))  # the picture, drawn at the end
        # Another sweep's file is refused (a plain shard checks its own part file), unless an
        # interrupted --force run of this sweep is to replace it.
        text = dumps_config(cfg)
        if not args.force and (out != final or shard is None) and not (shard is None and resumes_forced(final, text)):
            holds_sweep(final, text)
    except (OutputPathError, ExistingResultsError) as e:
        raise Fail(str(e)) from None
    if args.dry_run:
        return dry_run(cfg, chunks, out, shard, args.force)
    quiet = args.quiet
    if not quiet:
        mine = sum(len(c.runs) for c in chunks)
        part = f"shard {shard[0]}/{shard[1]}: {mine} of " if shard else ""
        print(
            f"[dlnsim] {part}{cfg.n_runs} run{'s' * (cfg.n_runs > 1)} "
            f"({' x '.join(f'{len(v)} {a}' for a, v in cfg.grid.items())} values) "
            f"in {len(chunks)} chunks, {cfg.train.steps} steps each -> {out}",
            file=sys.stderr,
            flush=True,
        )
    reporter = None if quiet else ProgressBar(cfg, chunks)
    start = time.perf_counter()
    try:
        ds, skipped = run_sweep(cfg, out, force=args.force, progress=reporter, shard=shard)
    except (ExistingResultsError, OutputPathError, TooLargeError) as e:
        raise Fail(str(e)) from None
    except KeyboardInterrupt:
        side = chunk_dir(out)
        if has_chunks(out):
            again = "without --force" if args.force else "the same command"
            error(f"interrupted; finished chunks are kept in {side}: rerun {again} to resume")
        else:
            error("interrupted before any chunk finished")
        return INTERRUPTED
    finally:
        if reporter is not None:
            reporter.close()
    wall = time.perf_counter() - start
    resumed = f", {skipped} of {len(chunks)} chunks skipped (already computed)" if skipped else ""
    n_runs = sum(len(c.runs) for c in chunks)
    if skipped == len(chunks):  # nothing computed (the file may have been complete already)
        print(f"{out}: all {n_runs} runs were already computed ({wall:.1f} s)")
    else:
        print(f"wrote {out}: {n_runs} runs in {wall:.1f} s{resumed}")
    if shard is not None:
        if args.distributed:
            # The other processes run as many chunks: wait three times as long as this shard's
            # compute time (recorded in its file, so a resumed run knows it too), at least 10 min.
            computed = sum(json.loads(ds.attrs["group_wall_seconds"]))
            return _merge_distributed(final, shard, force=args.force, patience=max(600.0, 3 * max(wall, computed)))
        print(f"shard {shard[0]}/{shard[1]}: combine all {shard[1]} shard files with `dlnsim merge`")
        return 0
    try:
        x, y = pick_axes(ds, None, None)
    except Fail as e:
        print(f"no phase diagram: {e}")
    else:
        from dlnsim import plotting  # lazily: matplotlib only for the commands that draw

        sigma = float(ds["sigma"].max())
        png = plotting.phase_diagram(ds, x, y, SWEEP_METRIC, out.with_suffix(".png"), select={"sigma": sigma})
        print(f"wrote {png}: final {SWEEP_METRIC} at sigma = {sigma:g}, median over seeds, {y} x {x}")
    print()
    print(_summary_text(ds))
    return 0


def _check_cluster_options(args: argparse.Namespace) -> None:
    """The cluster options need --distributed (a plain sweep would silently ignore them), which
    takes its slice from the cluster (so not --shard too)."""
    given = [flag for name, flag in _CLUSTER_OPTIONS.items() if getattr(args, name) is not None]
    if given and not args.distributed:
        raise Fail(f"{given[0]} needs --distributed (it configures jax.distributed.initialize)")
    if args.distributed and args.shard is not None:
        raise Fail("--shard and --distributed exclude each other: each process of --distributed computes its own shard")


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


_POLL_S = 5.0  # how often process 0 looks for the other processes' shards
_REPORT_S = 60.0  # how often it says it is still waiting


def _merge_distributed(final: Path, shard: tuple[int, int], *, force: bool, patience: float) -> int:
    """Under ``--distributed`` every process writes its shard next to ``final`` (a shared file
    system); process 0 waits for all of them (each appears atomically, complete) and merges.

    It gives up after ``patience`` seconds without a new shard (a process that failed would
    otherwise keep it waiting forever); the shards written so far are kept for a rerun.
    """
    if shard[0] != 0:
        return 0
    from dlnsim.storage import merge_shards

    parts = [_part_path(final, i, shard[1]) for i in range(shard[1])]
    last_new, last_report, seen = time.monotonic(), float("-inf"), 0
    while missing := [p for p in parts if not p.exists()]:
        now = time.monotonic()
        if len(parts) - len(missing) > seen:
            seen, last_new = len(parts) - len(missing), now
        if now - last_new > patience:
            raise Fail(
                f"no new process shard for {patience:.0f} s; missing: {', '.join(str(p) for p in missing)}. "
                "A process may have failed: rerun the same command (finished chunks and shards are kept)",
                code=1,
            )
        if now - last_report >= _REPORT_S:
            print(f"waiting for {len(missing)} of {len(parts)} process shards ({missing[0]}, ...)", file=sys.stderr)
            last_report = now
        time.sleep(_POLL_S)
    merge_shards(parts, final, force=force)
    for p in parts:
        p.unlink()
    print(f"wrote {final}: {shard[1]} process shards merged")
    return 0


def _part_path(out: Path, i: int, n: int) -> Path:
    return out.with_name(f"{out.stem}.part{i}of{n}{out.suffix}")


def cmd_merge(args: argparse.Namespace) -> int:
    from dlnsim.storage import merge_shards

    try:  # ValueError: a part that is missing or no results file, an incomplete set, or an output
        # path that cannot take the file or holds another sweep (nothing written)
        ds = merge_shards(args.parts, args.output, force=args.force)
    except (ValueError, KeyError) as e:
        raise Fail(str(e)) from None
    print(f"wrote {args.output}: {len(args.parts)} shards merged, {int(ds.diverged.size)} runs")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    ds = read_results_to_reduce(args, shard_ok=True)
    table = _summary_text(ds, args.table_format, eps1=args.eps1, eps3=args.eps3)
    if "shard" in ds.attrs:
        note = f"{args.results} is {shard_note(ds)} (merge the shards for the whole sweep)"
        if args.table_format == "csv":
            print(note, file=sys.stderr)  # the CSV on stdout stays a plain table
        else:
            print(note + "\n")
    print(table.rstrip("\n"))
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
        ("compilation cache", cache_line(cache)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from dlnsim import reproduce
    from dlnsim.storage import OutputPathError, check_output

    try:  # before any work
        check_output(args.output_dir, directory=True)
    except OutputPathError as e:
        raise Fail(f"-o: {e}") from None
    setup_jax(args, x64=reproduce.needs_x64(args.name))
    return reproduce.main(args, log=lambda msg: print(msg, flush=True))
