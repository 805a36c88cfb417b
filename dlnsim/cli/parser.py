"""The ``dlnsim`` argument parser: every subcommand, its options and its handler."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from dlnsim.cli._common import CACHE_ENV, DEFAULT_OUT, IMAGE_FORMATS, PLOT_KINDS, SWEEP_METRIC
from dlnsim.cli.commands import cmd_info, cmd_merge, cmd_reproduce, cmd_summary, cmd_sweep
from dlnsim.cli.plot import cmd_plot


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line errors of every other dlnsim error (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"dlnsim: error: {message} (see '{self.prog} --help')\n")


def _positive(text: str) -> float:
    """A threshold option's value: a finite number > 0 (else argparse names the option)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be a finite number > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``dlnsim`` parser; a parsed subcommand's handler is ``args.func``."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--compile-cache",
        metavar="DIR|off",
        help=f"persistent JAX compilation cache directory, or off (default: ${CACHE_ENV}, else "
        "~/.cache/dlnsim/jax); a rerun with new traced values (lr, weight decay, seeds...) skips compiling",
    )
    common.add_argument(
        "--cpu-devices",
        type=int,
        metavar="N",
        help="on a CPU, split it into N JAX devices; a sweep runs one program per device (default: one per "
        "core, at most 8; a device count set in XLA_FLAGS is kept, with a note)",
    )
    p = _Parser(
        prog="dlnsim",
        description="Simulate deep linear networks on subspace inverse problems.",
        epilog="Exit codes: 0 success; 1 a failure while computing, plotting or writing, or a closed stdout; "
        "2 bad arguments or config, or an output that cannot be written (nothing computed or written); "
        "130 interrupted (finished chunks are kept: rerun to resume).",
    )
    from dlnsim import __version__

    p.add_argument("--version", action="version", version=f"dlnsim {__version__}")
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
        "--dry-run",
        "-n",
        action="store_true",
        help="print what the sweep would compute (its compiled programs, chunks, memory per run, runs already "
        "on disk) and stop: nothing is computed or written",
    )
    batching = s.add_mutually_exclusive_group()
    batching.add_argument(
        "--chunk-size", type=int, metavar="N", help="runs per compiled batch (same as --set sweep.chunk_size=N)"
    )
    batching.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="memory budget of one compiled batch, e.g. 2GB or 512MiB: the sweep runs in chunks that fit "
        "(same as --set sweep.max_memory='SIZE', and replaces a chunk_size of the config; default: half of "
        "an accelerator's memory, 512 MB on a CPU)",
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
    s.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="with --distributed (an error without it): coordinator address (default: detected)",
    )
    s.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="with --distributed (an error without it): number of processes (default: detected)",
    )
    s.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        help="with --distributed (an error without it): this process's index (default: detected)",
    )
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser(
        "merge",
        help="combine shard files into one results file",
        description="Combine the files of `dlnsim sweep --shard I/N` (all N of them) into the file a single run writes.",
    )
    s.add_argument("parts", nargs="+", metavar="SHARD", help="shard results files")
    s.add_argument("-o", "--output", required=True, metavar="RESULTS", help="merged results file")
    s.add_argument(
        "--force",
        action="store_true",
        help="overwrite RESULTS even if it holds a different sweep (or is not a results file); "
        "a file of the same sweep is always rewritten",
    )
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser(
        "summary",
        parents=[common],
        help="print reduced statistics of a results file",
        description="Print a table of the reduced statistics (medians over seeds, phase durations, theory predictions).",
    )
    s.add_argument("results", metavar="RESULTS", help="results file written by `dlnsim sweep`")
    s.add_argument(
        "--format",
        dest="table_format",
        choices=("text", "markdown", "csv"),
        default="text",
        help="text (default: fixed width, notes below), markdown (a pipe table and the notes) or csv "
        "(full precision, empty cells where undefined, no notes: for pandas or a spreadsheet)",
    )
    s.add_argument(
        "--eps1", type=_positive, default=0.1, metavar="X", help="Phase I threshold on on_err (default: 0.1)"
    )
    s.add_argument(
        "--eps3",
        type=_positive,
        default=None,
        metavar="X",
        help="absolute Phase III threshold on off_fro and w1_off_fro (default: 1e-2 x each run's initial value)",
    )
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
    s.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="AXIS=VALUE",
        help="value of a grid axis the picture does not show (repeatable; default: its first value), "
        "e.g. --select depth=3",
    )
    s.add_argument(
        "--format", choices=IMAGE_FORMATS, help="image format (default: png, or the suffix of an -o file name)"
    )
    s.add_argument(
        "-o",
        "--output",
        "--output-dir",
        dest="output",
        metavar="PATH",
        help="a file name ending .png, .svg or .pdf, or a directory to write into (default: next to RESULTS; "
        "the name then comes from RESULTS, the kind, the metric and the axes)",
    )
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
