"""The ``dlnsim`` command line: the only place that parses arguments, prints and sets ``jax.config``.

Subcommands::

    dlnsim sweep [CONFIG] [-o RESULTS] [--set section.key=value ...] [--force] [--quiet]
    dlnsim sweep CONFIG --shard I/N -o PART   |   dlnsim merge PART ... -o RESULTS
    dlnsim summary RESULTS
    dlnsim plot RESULTS [--kind heatmap|curves|offsubspace|noise] [--x AXIS --y AXIS --metric NAME]
    dlnsim reproduce fig1|phases|depth|collapse|limit|all [--full]
    dlnsim info

Exit codes: 0 success; 1 failure during compute or plotting; 2 bad arguments, bad
config, or an output that holds a different sweep (nothing computed or written);
130 interrupted (finished chunks are kept, rerun to resume).

Modules: :mod:`~dlnsim.cli.parser` (arguments), :mod:`~dlnsim.cli.commands` (one handler
per subcommand), :mod:`~dlnsim.cli.progress` (progress of a sweep), ``_common`` (defaults,
errors, jax.config).
"""

from __future__ import annotations

from collections.abc import Sequence

from dlnsim.cli._common import CACHE_ENV, DEFAULT_OUT, PLOT_KINDS, SWEEP_METRIC, Fail, error
from dlnsim.cli.parser import build_parser
from dlnsim.cli.progress import Reporter as _Reporter  # noqa: F401 (tests reach it as cli._Reporter)

__all__ = ["CACHE_ENV", "DEFAULT_OUT", "PLOT_KINDS", "SWEEP_METRIC", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dlnsim`` and ``python -m dlnsim``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Fail as e:
        error(str(e))
        return e.code
