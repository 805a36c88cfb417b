"""The ``dlnsim`` command line: the only place that parses arguments, prints and sets ``jax.config``.

Subcommands::

    dlnsim sweep [CONFIG] [-o RESULTS] [--set section.key=value ...] [--force] [--quiet]
    dlnsim summary RESULTS
    dlnsim plot RESULTS [--kind heatmap|curves|offsubspace|noise] [--x AXIS --y AXIS --metric NAME]
    dlnsim info

Exit codes: 0 success; 1 failure during compute or plotting; 2 bad arguments, bad
config, or an output that holds a different sweep (nothing computed or written);
130 interrupted (finished chunks are kept, rerun to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = "results/sweep.nc"
CACHE_ENV = "DLNSIM_COMPILE_CACHE"
# The phase-diagram picture written by `dlnsim sweep`: the noisy test error at the largest
# test sigma (the quantity of the paper's Figure 1). Small weight decay leaves E P_perp large,
# which amplifies noise (D1, D4); large weight decay biases E and finally collapses it to 0.
SWEEP_METRIC = "noise_err"
PLOT_KINDS = ("heatmap", "curves", "offsubspace", "noise")
# `dlnsim plot --kind` -> function of dlnsim.plotting (all take (ds, ..., path)).
_PLOT_FUNCS = {
    "heatmap": "phase_diagram",
    "curves": "learning_curves",
    "offsubspace": "off_subspace_decay",
    "noise": "noise_curves",
}


class _Fail(Exception):
    """A one-line error for the user, with the exit code to use."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _err(msg: str) -> None:
    print(f"dlnsim: error: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- jax setup


def _setup_jax(args: argparse.Namespace, *, x64: bool = False) -> str | None:
    """Applies the CLI's jax.config settings; returns the compilation cache dir (or None)."""
    import jax

    cache = getattr(args, "compile_cache", None) or os.environ.get(CACHE_ENV) or None
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(cache))
        # Cache every program: a sweep's groups each compile in seconds, below JAX's 1 s default.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if x64:
        jax.config.update("jax_enable_x64", True)
    # JAX's CPU async dispatch can lose a wake-up and hang forever with idle threads
    # (jax-ml/jax#25861; seen here twice in long runs). A sweep is a few large calls, so
    # synchronous dispatch costs nothing.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return cache


# ---------------------------------------------------------------- progress


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Reporter:
    """Progress over chunks: a tqdm bar on a terminal, one log line per chunk otherwise.

    The rate is network-steps (runs x optimiser steps) per second of computing, compile
    included; the ETA extrapolates it to the runs still to compute (loaded chunks cost
    nothing).
    """

    def __init__(self, cfg: Any, n_chunks: int, stream: Any = None):
        from dlnsim.config import static_combinations

        self.stream = stream or sys.stderr
        self.groups = static_combinations(cfg)
        self.n_chunks = n_chunks
        self.start = time.perf_counter()
        self.computed = 0  # runs computed in this process
        self.loaded = 0  # chunks loaded from an earlier run
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} runs [{elapsed}{postfix}]"
            self.bar = tqdm(total=cfg.n_runs, unit="run", file=self.stream, bar_format=fmt, dynamic_ncols=True)

    def __call__(self, ev: Any) -> None:
        elapsed = time.perf_counter() - self.start
        n = len(ev.chunk.runs)
        if ev.skipped:
            self.loaded += 1
        else:
            self.computed += n
        rate = self.computed * ev.steps / elapsed if self.computed else float("nan")
        left = (ev.n_runs - ev.runs_done) * ev.steps
        eta = _clock(left / rate) if self.computed else "?"
        group = " ".join(f"{k}={v}" for k, v in self.groups[ev.chunk.group].items()) or "all"
        what = "loaded" if ev.skipped else f"{ev.seconds:.1f} s"
        stats = f"{rate:.3g} net-steps/s, ETA {eta}"
        if self.bar is not None:
            self.bar.set_postfix_str(f"chunk {ev.chunk.index + 1}/{self.n_chunks}, {stats}", refresh=False)
            self.bar.update(n)
        else:
            print(
                f"[dlnsim] chunk {ev.chunk.index + 1}/{self.n_chunks} ({group}, {what}): "
                f"{ev.runs_done}/{ev.n_runs} runs, {stats}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- commands


def _load(args: argparse.Namespace) -> Any:
    from dlnsim.configfile import ConfigError, default_config, load_config

    overrides = list(args.set or [])
    if args.chunk_size is not None:
        overrides.append(f"sweep.chunk_size={args.chunk_size}")
    try:
        return load_config(args.config, overrides) if args.config else default_config(overrides)
    except ConfigError as e:
        raise _Fail(str(e)) from None


def _pick_axes(ds: Any, x: str | None, y: str | None) -> tuple[str, str]:
    """Heatmap axes: the given ones, else weight decay x depth, else the first two non-seed axes."""
    dims = [d for d in ds["diverged"].dims if d != "seed" and ds.sizes[d] > 1]
    prefer = [a for a in ("weight_decay", "depth") if a in dims] + [
        a for a in dims if a not in ("weight_decay", "depth")
    ]
    x = x or next((a for a in prefer if a != y), None)
    y = y or next((a for a in prefer if a != x), None)
    if x is None or y is None:
        raise _Fail(
            f"a heatmap needs two grid axes with several values (this sweep has {', '.join(dims) or 'none'}); use --kind curves"
        )
    for name, axis in (("--x", x), ("--y", y)):
        if axis not in ds["diverged"].dims:
            raise _Fail(
                f"{name} {axis!r} is not a grid axis of this results file: axes are {', '.join(ds['diverged'].dims)}"
            )
    return x, y


def _summary_text(ds: Any) -> str:
    from dlnsim import reduce

    return reduce.summary_table(ds)


def _plotting() -> Any:
    try:
        from dlnsim import plotting
    except ImportError as e:  # TODO(lead): drop once dlnsim/plotting.py has landed
        raise _Fail(f"plotting is not available in this build ({e})", code=1) from None
    return plotting


def cmd_sweep(args: argparse.Namespace) -> int:
    from dlnsim.grid import plan
    from dlnsim.storage import ExistingResultsError, chunk_dir, run_sweep

    cfg = _load(args)
    _setup_jax(args, x64=cfg.train.dtype == "float64")
    shard = _shard(args)
    final = Path(args.output)
    out = _part_path(final, *shard) if shard and args.distributed else final
    chunks = [c for c in plan(cfg) if shard is None or c.index % shard[1] == shard[0]]
    quiet = args.quiet
    if not quiet:
        print(
            f"[dlnsim] {cfg.n_runs} runs ({' x '.join(f'{a} {len(v)}' for a, v in cfg.grid.items())}) "
            f"in {len(chunks)} chunks, {cfg.train.steps} steps each -> {out}",
            file=sys.stderr,
            flush=True,
        )
    reporter = None if quiet else _Reporter(cfg, len(chunks))
    start = time.perf_counter()
    try:
        ds, skipped = run_sweep(cfg, out, force=args.force, progress=reporter, shard=shard)
    except ExistingResultsError as e:
        raise _Fail(str(e)) from None
    except KeyboardInterrupt:
        _err(f"interrupted; finished chunks are kept in {chunk_dir(out)}: rerun the same command to resume")
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
    except _Fail as e:
        print(f"no phase diagram: {e}")
    else:
        try:
            plotting = _plotting()
        except _Fail as e:
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
            raise _Fail(
                f"--distributed could not start ({e}): run under a cluster JAX detects (SLURM, Open MPI) "
                "or give --coordinator HOST:PORT --num-processes N --process-id I"
            ) from None
        return (jax.process_index(), jax.process_count()) if jax.process_count() > 1 else None
    if args.shard is None:
        return None
    try:
        i, n = (int(v) for v in args.shard.split("/"))
    except ValueError:
        raise _Fail(f"--shard {args.shard!r} is invalid: must be I/N with integers 0 <= I < N") from None
    if not 0 <= i < n:
        raise _Fail(f"--shard {args.shard!r} is invalid: must be I/N with integers 0 <= I < N")
    return i, n


def _merge_distributed(final: Path, shard: tuple[int, int]) -> int:
    """Under ``--distributed`` every process writes its shard next to ``final`` (a shared file
    system); process 0 waits for all of them (each appears atomically, complete) and merges."""
    if shard[0] != 0:
        return 0
    from dlnsim.storage import merge_shards

    parts = [_part_path(final, i, shard[1]) for i in range(shard[1])]
    while missing := [p for p in parts if not p.exists()]:
        print(f"waiting for {len(missing)} of {len(parts)} process shards ({missing[0]}, ...)", file=sys.stderr, flush=True)
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
        raise _Fail(str(e)) from None
    print(f"wrote {args.output}: {len(args.parts)} shards merged, {int(ds.diverged.size)} runs")
    return 0


def _open(path: str) -> Any:
    from dlnsim.storage import open_results

    if not Path(path).is_file():
        raise _Fail(f"no results file at {path}")
    try:
        return open_results(path)[0]
    except (OSError, KeyError, ValueError) as e:
        raise _Fail(f"{path} is not a dlnsim results file ({e})") from None


def cmd_summary(args: argparse.Namespace) -> int:
    ds = _open(args.results)
    print(_summary_text(ds))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    ds = _open(args.results)
    plotting = _plotting()
    func = getattr(plotting, _PLOT_FUNCS[args.kind], None)
    if func is None:  # TODO(lead): every kind should exist once dlnsim/plotting.py is complete
        raise _Fail(
            f"--kind {args.kind} is not available yet (dlnsim.plotting.{_PLOT_FUNCS[args.kind]} is missing)", code=1
        )
    outdir = Path(args.output_dir) if args.output_dir else Path(args.results).parent
    outdir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.results).stem
    try:
        if args.kind == "heatmap":
            metric = args.metric or SWEEP_METRIC
            x, y = _pick_axes(ds, args.x, args.y)
            sigma = float(ds["sigma"].max()) if args.sigma is None else args.sigma
            select = {"sigma": sigma} if metric == "noise_err" else None
            written = func(ds, x, y, metric, outdir / f"{stem}_{metric}_{y}_{x}.{args.format}", select=select)
        elif args.kind == "curves":
            metric = args.metric or "on_err"
            written = func(ds, outdir / f"{stem}_curves_{metric}.{args.format}", metric=metric)
        else:
            written = func(ds, outdir / f"{stem}_{args.kind}.{args.format}")
    except (KeyError, ValueError) as e:  # an unknown metric or axis, named by plotting
        raise _Fail(f"cannot plot {args.kind}: {str(e).strip(chr(39))}") from None
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

    cache = _setup_jax(args)
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

    _setup_jax(args, x64=reproduce.needs_x64(args.name))
    return reproduce.main(args, log=lambda msg: print(msg, flush=True))


# ---------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--compile-cache",
        metavar="DIR",
        help=f"persistent JAX compilation cache directory (default: ${CACHE_ENV}, else off)",
    )
    p = argparse.ArgumentParser(
        prog="dlnsim", description="Simulate deep linear networks on subspace inverse problems."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "sweep",
        parents=[common],
        help="run a sweep into a results file",
        description="Run a sweep (a TOML config; default: the built-in depth x weight-decay phase diagram), "
        "write a NetCDF results file and a phase-diagram picture next to it, print a summary. "
        "Rerunning the same command after an interruption resumes from the finished chunks.",
    )
    s.add_argument("config", nargs="?", metavar="CONFIG", help="TOML sweep config (default: built-in phase diagram)")
    s.add_argument(
        "-o", "--output", default=DEFAULT_OUT, metavar="RESULTS", help=f"results file (default: {DEFAULT_OUT})"
    )
    s.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a config value, VALUE in TOML syntax (repeatable), e.g. --set train.steps=500 --set grid.depth=[2,3]",
    )
    s.add_argument(
        "--force", action="store_true", help="overwrite results of a different (or the same) sweep at RESULTS"
    )
    s.add_argument("--quiet", "-q", action="store_true", help="no progress output (the summary is still printed)")
    s.add_argument(
        "--chunk-size", type=int, metavar="N", help="runs per compiled batch (same as --set sweep.chunk_size=N)"
    )
    s.add_argument(
        "--shard",
        metavar="I/N",
        help="compute only slice I of N (0-based) of the sweep's chunks, e.g. one job of a SLURM array; "
        "combine the N files with `dlnsim merge`",
    )
    s.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: call jax.distributed.initialize(); each process computes its shard into "
        "RESULTS.partIofN.nc and process 0 merges them into RESULTS",
    )
    s.add_argument("--coordinator", metavar="HOST:PORT", help="--distributed: coordinator address (default: detected)")
    s.add_argument("--num-processes", type=int, metavar="N", help="--distributed: number of processes (default: detected)")
    s.add_argument("--process-id", type=int, metavar="I", help="--distributed: this process's index (default: detected)")
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser(
        "merge",
        help="combine shard files into one results file",
        description="Combine the files of `dlnsim sweep --shard I/N` (all N of them) into the file a single run writes.",
    )
    s.add_argument("parts", nargs="+", metavar="SHARD", help="shard results files")
    s.add_argument("-o", "--output", required=True, metavar="RESULTS", help="merged results file")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser(
        "summary",
        parents=[common],
        help="print reduced statistics of a results file",
        description="Print a table of the reduced statistics (medians over seeds, phase durations, theory predictions).",
    )
    s.add_argument("results", metavar="RESULTS", help="results file written by `dlnsim sweep`")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser(
        "plot",
        parents=[common],
        help="make pictures from a results file",
        description="Make a picture from a results file.",
    )
    s.add_argument("results", metavar="RESULTS", help="results file written by `dlnsim sweep`")
    s.add_argument(
        "--kind",
        choices=PLOT_KINDS,
        default="heatmap",
        help="heatmap: phase diagram over two grid axes (default); curves: learning curves; offsubspace: decay vs D1; noise: noise robustness",
    )
    s.add_argument("--x", metavar="AXIS", help="heatmap x axis (default: weight_decay or the first non-seed axis)")
    s.add_argument("--y", metavar="AXIS", help="heatmap y axis (default: depth or the next non-seed axis)")
    s.add_argument(
        "--metric",
        metavar="NAME",
        help=f"metric of heatmap (final value; default {SWEEP_METRIC}) or curves (default on_err): a variable of the results file or of dlnsim.reduce.per_run",
    )
    s.add_argument(
        "--sigma", type=float, metavar="S", help="test noise level of a noise_err heatmap (default: the largest)"
    )
    s.add_argument("--format", choices=("png", "svg", "pdf"), default="png", help="image format (default: png)")
    s.add_argument("-o", "--output-dir", metavar="DIR", help="where to write (default: next to RESULTS)")
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser(
        "info",
        parents=[common],
        help="print versions, devices, precision and cache settings",
        description="Print versions, devices, default precision and the compilation-cache setting.",
    )
    s.set_defaults(func=cmd_info)

    from dlnsim import reproduce

    reproduce.add_parser(sub, parents=[common], func=cmd_reproduce)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dlnsim`` and ``python -m dlnsim``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except _Fail as e:
        _err(str(e))
        return e.code
