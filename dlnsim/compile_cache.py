"""JAX's persistent compilation cache, where dlnsim keeps it.

A sweep compiles one program per static group (seconds each on a CPU, tens of seconds on a
GPU at the paper's sizes) and the same program serves every traced value: step sizes,
weight decays, seeds, noise. With the cache on, a later process that needs a program
compiled before loads it from disk instead: the built-in ``dlnsim sweep`` took 32 s the
first time and 11-12 s after, also with a new step size and weight-decay grid (2 Intel Xeon
cores, 2026-12-08). The ``dlnsim`` commands turn it on; in a notebook or script call
:func:`use_compile_cache` right after the imports.

Where: ``path`` if given, else ``$DLNSIM_COMPILE_CACHE``, else
``$XDG_CACHE_HOME/dlnsim/jax`` (by default ``~/.cache/dlnsim/jax``); ``off`` (or none,
no, false, 0) in either place turns it off. At most :data:`MAX_BYTES`: JAX evicts the least
recently used programs first (its size cap needs the ``filelock`` package, a dependency).
Turning the cache on first mends what a process killed while writing an entry can leave
(:func:`repair`: an entry cut short would fail every read and never be rewritten, one
without its access time would make every later write fail).
XLA checks that a cached CPU program suits the machine that loads it (one that does not is
compiled again), so a cache shared by nodes of different CPUs is safe but helps only nodes
of one kind.
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

ENV = "DLNSIM_COMPILE_CACHE"
OFF = ("off", "none", "no", "false", "0")  # values of ``path`` or $DLNSIM_COMPILE_CACHE that turn it off
# The built-in sweep's four groups take about 1 MB, a paper-size group a few MB.
MAX_BYTES = 2**30


def default_dir() -> Path | None:
    """``$XDG_CACHE_HOME/dlnsim/jax``, by default ``~/.cache/dlnsim/jax`` (None without a
    home directory)."""
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:  # no $HOME and no password-database entry
        return None
    return Path(base) / "dlnsim" / "jax"


def resolve(path: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """The cache directory (None: off) and what chose it, in words: ``path``, else
    ``$DLNSIM_COMPILE_CACHE`` (unset or empty: not given), else ``"default"``.

    Example:
      >>> resolve("off")
      (None, 'off')
    """
    if path is not None and str(path):
        value, source = str(path), str(path)
    elif os.environ.get(ENV):
        value = os.environ[ENV]
        source = f"{ENV}={value}"
    else:
        return default_dir(), "default"
    return (None if value.strip().lower() in OFF else Path(value).expanduser()), source


_STAMP = ".dlnsim-checked"  # its time: when repair last read the entries written before it
_SLACK_NS = 2 * 10**9  # entries up to 2 s older than the stamp are read again (coarse file times)
_ZSTD = b"\x28\xb5\x2f\xfd"  # a zstd frame's magic number (JAX's compression with zstd)


def _zstd_decompress():
    """A zstd decompressor (Python >= 3.14, or the zstandard package), or None."""
    try:
        from compression import zstd  # Python >= 3.14

        return zstd.decompress, zstd.ZstdError
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard.ZstdDecompressor().decompress, zstandard.ZstdError


def readable(entry: Path) -> bool:
    """Whether an entry holds a whole compressed program: JAX compresses each one with zlib,
    or with zstd where Python or the zstandard package has it. A format that cannot be
    checked here counts as readable; an empty file does not."""
    data = entry.read_bytes()
    if not data:
        return False
    if data[:1] == b"\x78":  # a zlib header (deflate, 32 KiB window)
        stream = zlib.decompressobj()
        try:
            stream.decompress(data)
        except zlib.error:
            return False
        return stream.eof  # a stream cut short decodes without error, but does not end
    zstd = _zstd_decompress()
    if data[:4] != _ZSTD[: len(data)] or zstd is None:
        return True
    decompress, error = zstd
    try:
        decompress(data)
    except error:
        return False
    return True


def repair(directory: Path) -> int:
    """Mends what a process killed while JAX wrote an entry can leave; returns how many
    entries it mended. JAX writes an entry (``KEY-cache``, a compressed program) and then
    its access time (``KEY-atime``, read to evict) as two plain writes, under
    ``.lockfile``:

    - an entry cut short (empty, or a compressed stream that does not end) fails every
      read, with a warning and a compile each time, and is never rewritten: it is removed;
    - an entry without its time makes every later eviction, hence every later write, fail
      (a warning per compile): it gets the time 0 (evicted first).

    Entries are read once: those written since the last repair (the time of the file
    ``.dlnsim-checked``), about 10 ms per MB. Done under JAX's own lock; skipped if
    another process holds it for 10 s.
    """
    import filelock

    stamp = directory / _STAMP
    try:
        with filelock.FileLock(directory / ".lockfile", timeout=10):
            checked = stamp.stat().st_mtime_ns - _SLACK_NS if stamp.exists() else None
            mended = 0
            for entry in directory.glob("*-cache"):
                key = entry.name.removesuffix("-cache")
                atime = directory / f"{key}-atime"
                if (checked is None or entry.stat().st_mtime_ns >= checked) and not readable(entry):
                    entry.unlink()
                    atime.unlink(missing_ok=True)
                elif not atime.exists():
                    atime.write_bytes((0).to_bytes(8, "little"))
                else:
                    continue
                mended += 1
            stamp.touch()  # now, in the file system's clock: later entries are newer
            return mended
    except (filelock.Timeout, OSError):
        return 0


def enable(directory: Path) -> None:
    """Points JAX's persistent compilation cache at ``directory`` (which must exist), for
    every program however fast it compiled, capped at :data:`MAX_BYTES`."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    # Every program: a sweep's groups each compile in seconds, below JAX's 1 s default.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)


def use_compile_cache(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache where dlnsim keeps it (see the module
    docstring for where), before the first compile; later compiles in this process and in
    later ones are loaded from it. Like :func:`dlnsim.use_cpu_cores`, one of the few library
    functions that set ``jax.config``: only when called.

    Args:
      path: the cache directory, or ``"off"``; default ``$DLNSIM_COMPILE_CACHE``, else
        ``~/.cache/dlnsim/jax``.

    Returns:
      The directory, or None when turned off (or the default place cannot be created: a
      warning says why).

    Raises:
      ValueError: a ``path`` or ``$DLNSIM_COMPILE_CACHE`` directory that cannot be created.
    """
    directory, source = resolve(path)
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        reason = e.strerror or str(e)
        if source != "default":
            raise ValueError(f"{source} cannot be the compilation cache directory ({reason})") from None
        warnings.warn(f"no compilation cache: cannot create {directory} ({reason})", stacklevel=2)
        return None
    repair(directory)
    enable(directory)
    return directory
