"""``dlnsim reproduce NAME``: the paper's findings as named, shipped experiments.

Each experiment loads ``dlnsim/reproduce/experiments/NAME.toml`` (``NAME_full.toml`` with ``full=True``: the
paper's sizes, for a GPU), runs it resumably into ``OUT/*.nc`` (:func:`dlnsim.run_sweep`),
draws PNGs and writes ``OUT/NAME.md`` with the measured numbers next to the prediction.

Example (float64 experiments need ``jax_enable_x64``, which the CLI switches on)::

    from dlnsim import reproduce
    outcome = reproduce.run("depth", "results/reproduce")
    print(outcome.report.read_text())
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dlnsim.reproduce._common import Outcome

# The experiments, each a module of this package, imported when it runs: the CLI builds its
# parser from these names without loading jax or matplotlib.
NAMES = ("fig1", "phases", "depth", "collapse", "limit")
DEFAULT_OUT = "results/reproduce"
X64 = ("limit",)  # experiments that train in float64

__all__ = ["DEFAULT_OUT", "NAMES", "add_parser", "needs_x64", "run"]


def needs_x64(name: str) -> bool:
    """Whether ``reproduce NAME`` (or ``all``) needs ``jax_enable_x64``."""
    return name == "all" or name in X64


def run(
    name: str,
    out: str | Path = DEFAULT_OUT,
    *,
    full: bool = False,
    smoke: bool = False,
    log: Callable[[str], None] = lambda msg: None,
) -> Outcome:
    """Runs one experiment and writes its results, pictures and report into ``out``.

    Args:
      name: one of :data:`NAMES`.
      out: output directory (created).
      full: the paper's sizes (a GPU job).
      smoke: tiny sizes and few steps, seconds long (tests).
      log: progress messages.

    Returns:
      an ``Outcome`` (:mod:`dlnsim.reproduce._common`): the report path, the pictures, the datasets.
    """
    if name not in NAMES:
        raise ValueError(f"experiment {name!r} is unknown: must be one of {', '.join(NAMES)}")
    from dlnsim.reproduce._common import Context

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return importlib.import_module(f"dlnsim.reproduce.{name}").run(Context(out, full=full, smoke=smoke, log=log))


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser], func: Callable) -> None:
    """Registers ``dlnsim reproduce NAME [--full] [-o DIR]`` on the CLI's subparsers."""
    s = sub.add_parser(
        "reproduce",
        parents=parents,
        help="reproduce a finding of the paper (results, pictures, Markdown report)",
        description="Run a named experiment shipped in dlnsim/reproduce/experiments/: results (NetCDF, resumable), PNG pictures "
        "and a Markdown report OUT/NAME.md with measured numbers next to the predictions of SCIENCE.md. "
        "Default sizes run in minutes on 2 CPU cores; --full uses the paper's sizes (for a GPU).",
    )
    s.add_argument("name", choices=(*NAMES, "all"), metavar="NAME", help=f"one of {', '.join(NAMES)}, or all")
    s.add_argument(
        "--full", action="store_true", help="the paper's sizes (d=200, m=100, s=5, L=5, width 400): a GPU job"
    )
    s.add_argument(
        "-o", "--output-dir", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})"
    )
    s.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny sizes, for tests
    s.set_defaults(func=func)


def main(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """Runs ``args.name`` (or all of them) for the CLI; returns the exit code."""
    import time

    for name in NAMES if args.name == "all" else (args.name,):
        start = time.perf_counter()
        outcome = run(name, args.output_dir, full=args.full, smoke=args.smoke, log=log)
        pics = ", ".join(str(p) for p in outcome.pictures)
        log(f"{name}: wrote {outcome.report} and {pics} in {time.perf_counter() - start:.0f} s")
    return 0
