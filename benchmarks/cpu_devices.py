"""The command-line option the sweep benchmarks share: how many JAX CPU devices to use.

``parse(ap, argv)`` adds ``--cpu-devices`` to a benchmark's parser, parses, and sets the count
(:func:`dlnsim.use_cpu_cores`) before any JAX computation, as ``dlnsim sweep`` does.
"""

from __future__ import annotations

import argparse

import dlnsim


def parse(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parses ``argv`` with ``ap`` plus ``--cpu-devices N`` and applies the device count."""
    ap.add_argument(
        "--cpu-devices",
        type=int,
        metavar="N",
        help="JAX CPU devices, as the dlnsim commands set them (default: one per core)",
    )
    args = ap.parse_args(argv)
    dlnsim.use_cpu_cores(args.cpu_devices)
    return args
