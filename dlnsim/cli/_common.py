"""What every CLI module shares: defaults, the one-line user error, reading a results file,
the jax.config settings."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from dlnsim import compile_cache
from dlnsim.compile_cache import ENV as CACHE_ENV

DEFAULT_OUT = "results/sweep.nc"
INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT, as shells report it)
# The phase-diagram picture written by `dlnsim sweep`: the noisy test error at the largest
# test sigma (the quantity of the paper's Figure 1). Small weight decay leaves E P_perp large,
# which amplifies noise (D1, D4); large weight decay biases E and finally collapses it to 0.
SWEEP_METRIC = "noise_err"
PLOT_KINDS = ("heatmap", "curves", "offsubspace", "noise")
IMAGE_FORMATS = ("png", "svg", "pdf")
# `dlnsim plot --kind` -> function of dlnsim.plotting (all take (ds, ..., path)).
PLOT_FUNCS = {
    "heatmap": "phase_diagram",
    "curves": "learning_curves",
    "offsubspace": "off_subspace_decay",
    "noise": "noise_curves",
}


class Fail(Exception):
    """A one-line error for the user, with the exit code to use."""

    def __init__(self, message: str, code: int = 2):
        # The library's errors name the API's option next to the flag: here the flag alone.
        super().__init__(message.replace("pass force=True (--force)", "pass --force"))
        self.code = code


def error(msg: str) -> None:
    print(f"dlnsim: error: {msg}", file=sys.stderr)


def read_results(path: str, *, shard_ok: bool = False) -> Any:
    """The dataset of the results file at ``path``; a missing or unreadable file is a :class:`Fail`,
    and so is one shard of a sweep (``--shard``) unless ``shard_ok``."""
    from dlnsim.storage import open_results

    if not Path(path).is_file():
        raise Fail(f"no results file at {path}")
    try:
        ds = open_results(path)[0]
    except (OSError, KeyError, ValueError) as e:
        reason = " ".join(str(e).split())  # HDF5 messages span lines
        raise Fail(f"{path} is not a dlnsim results file ({reason})") from None
    if "shard" in ds.attrs and not shard_ok:
        raise Fail(f"{path} is {shard_note(ds)}; merge the shards first (dlnsim merge PARTS... -o RESULTS)")
    return ds


def read_results_to_reduce(args: argparse.Namespace, *, shard_ok: bool = False) -> Any:
    """:func:`read_results` of ``args.results``, then the CLI's JAX settings (cache, devices)
    with float64 for a float64 file: its teachers are redrawn in the sweep's dtype for the
    theory columns (NaN otherwise, :func:`dlnsim.reduce.per_run`)."""
    ds = read_results(args.results, shard_ok=shard_ok)
    setup_jax(args, x64=ds.attrs.get("dtype") == "float64")
    return ds


def shard_note(ds: Any) -> str:
    """What a shard file holds, in words."""
    from dlnsim.storage import shard_runs

    done = len(shard_runs(ds))
    return f"shard {ds.attrs['shard']} of a sweep: {done} of its {ds.diverged.size} runs, the others NaN"


def cache_line(cache: Path | None) -> str:
    """The compilation cache in words, for ``dlnsim info``."""
    if cache is None:
        return f"off (turn it on with --compile-cache DIR or {CACHE_ENV}=DIR)"
    used = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    return (
        f"{cache} ({used / 1e6:.1f} MB of at most {compile_cache.MAX_BYTES / 2**30:.0f} GiB; "
        f"--compile-cache off or {CACHE_ENV}=off turns it off)"
    )


def setup_jax(args: argparse.Namespace, *, x64: bool = False) -> Path | None:
    """Applies the CLI's jax.config settings (CPU devices, cache, x64, dispatch); returns the
    compilation cache dir (or None: off)."""
    import jax

    from dlnsim.devices import use_cpu_cores

    requested = getattr(args, "cpu_devices", None)
    try:  # first: only possible before JAX starts its backends
        split = use_cpu_cores(requested)
    except ValueError as e:
        raise Fail(f"--cpu-devices: {e}") from None
    if requested not in (None, 1) and not split:
        print(
            f"dlnsim: note: --cpu-devices {requested} not applied: the CPU device count is already set "
            "(XLA_FLAGS=--xla_force_host_platform_device_count or jax_num_cpu_devices), and kept",
            file=sys.stderr,
        )
    given = getattr(args, "compile_cache", None)
    with warnings.catch_warnings(record=True) as notes:  # a default place that cannot be created
        warnings.simplefilter("always")
        try:
            cache = compile_cache.use_compile_cache(given)
        except ValueError as e:
            raise Fail(f"--compile-cache {e}" if given else str(e)) from None
    for note in notes:
        print(f"dlnsim: note: {note.message}", file=sys.stderr)
    if x64:
        jax.config.update("jax_enable_x64", True)
    # JAX's CPU async dispatch can lose a wake-up and hang forever with idle threads
    # (jax-ml/jax#25861; seen here twice in long runs). A sweep is a few large calls, so
    # synchronous dispatch costs nothing.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return cache
