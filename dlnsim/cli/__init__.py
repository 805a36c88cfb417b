"""The ``dlnsim`` command line: the only place that parses arguments, prints and sets ``jax.config``.

Subcommands::

    dlnsim sweep [CONFIG] [-o RESULTS] [--set section.key=value ...] [--force] [--quiet]
    dlnsim sweep CONFIG --shard I/N -o PART   |   dlnsim merge PART ... -o RESULTS [--force]
    dlnsim summary RESULTS
    dlnsim plot RESULTS [--kind heatmap|curves|offsubspace|noise] [--x AXIS --y AXIS --metric NAME]
    dlnsim reproduce fig1|phases|depth|collapse|limit|all [--full]
    dlnsim info
    dlnsim --version

Exit codes: 0 success; 1 failure during compute or plotting (or writing), or stdout closed
early (``| head``); 2 bad arguments, bad config, an output path that cannot be written,
or an output that holds a different sweep (nothing computed or written);
130 interrupted (finished chunks are kept, rerun to resume).

Modules: :mod:`~dlnsim.cli.parser` (arguments), :mod:`~dlnsim.cli.commands` (one handler
per subcommand), :mod:`~dlnsim.cli.plot` (``dlnsim plot``: its options checked against the
results file), :mod:`~dlnsim.cli.progress` (progress of a sweep),
:mod:`~dlnsim.cli.interrupt` (Ctrl-C also where Python would drop it), ``_common``
(defaults, errors, reading a results file, jax.config).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from dlnsim.cli._common import CACHE_ENV, DEFAULT_OUT, INTERRUPTED, PLOT_KINDS, SWEEP_METRIC, Fail, error
from dlnsim.cli.interrupt import interrupts
from dlnsim.cli.parser import build_parser

__all__ = ["CACHE_ENV", "DEFAULT_OUT", "PLOT_KINDS", "SWEEP_METRIC", "entry", "main"]


def entry() -> None:
    """The ``dlnsim`` script and ``python -m dlnsim``: :func:`main`, then exit with its code.

    After an interrupt the process ends at once (``os._exit``, output flushed): a Ctrl-C that
    stops XLA mid-compilation leaves it in a state in which the interpreter's clean-up
    segfaults (exit code 139 instead of 130; jaxlib 0.10.2 on CPU). Finished chunks are already
    on disk, so nothing is lost.
    """
    code = main()
    if code == INTERRUPTED:
        with contextlib.suppress(OSError):  # a closed stdout or stderr
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line on ``argv`` (default: ``sys.argv``); returns the exit code (tests call
    it in-process; :func:`entry` is the script)."""
    try:
        with interrupts():
            args = build_parser().parse_args(argv)
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe (`dlnsim summary R | head`) raises here, not at exit
        return code
    except Fail as e:
        error(str(e))
        return e.code
    except BrokenPipeError:
        # The reader of stdout is gone: stop quietly. Python flushes stdout again at exit, so
        # point it at devnull first (the Python docs' recipe, signal module, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:  # a file system failure no check foresaw (disk full, permissions, ...)
        error(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else " ".join(str(e).split()))
        return 1
    except KeyboardInterrupt:  # outside a sweep's chunk loop (which says what it kept)
        error("interrupted")
        return INTERRUPTED
    except Exception as e:
        if "RESOURCE_EXHAUSTED" not in str(e):  # a bug: the traceback is what to report
            raise
        # XLA could not allocate: a run, or a chunk of runs, larger than the device's memory.
        first = next((line for line in str(e).splitlines() if "RESOURCE_EXHAUSTED" in line), str(e))
        error(f"out of memory: {first.strip()}; use a smaller --max-memory or --chunk-size, or smaller sizes")
        return 1
