"""Results files on disk: atomic writes and the NetCDF file written and read back.

Every file is written to a temporary name in the same directory, flushed to disk and
then renamed over its final name (``os.replace`` is atomic on POSIX), so a process
killed at any moment leaves either a complete file or none. Loading never executes
code (NetCDF through ``xarray.open_dataset``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import xarray as xr

from dlnsim.config import SweepConfig
from dlnsim.configfile import load_config_text
from dlnsim.results import check_layout

ENGINE = "h5netcdf"


class OutputPathError(ValueError):
    """An output path that cannot be written: a directory, under a file, or not creatable."""


def check_output(path: str | Path, *, directory: bool = False) -> Path:
    """Checks, before any work and without writing, that ``path`` can become a file (or a
    directory, with ``directory=True``).

    Raises:
      OutputPathError: ``path`` is a directory (a file, for ``directory``), or its nearest
        existing ancestor is a file or not writable.
    """
    if not directory and isinstance(path, str) and path.endswith(("/", os.sep)):
        raise OutputPathError(f"{path} names a directory (it ends with '/'): give a file name, e.g. {path}sweep.nc")
    path = Path(path)
    if path.is_dir() and not directory:
        raise OutputPathError(f"{path} is a directory: give a file name")
    if directory and path.exists() and not path.is_dir():
        raise OutputPathError(f"{path} is a file, not a directory")
    if directory and path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path} cannot be written: it is not writable")
    for parent in path.parents:  # the nearest existing one: the rest is created under it
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{path} cannot be written: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputPathError(f"{path} cannot be written: {parent} is not writable")
            break
    return path


def make_dirs(path: Path, *dirs: Path) -> None:
    """Creates the directories ``dirs`` that writing ``path`` needs, before any work; the
    operating system's refusal becomes an :class:`OutputPathError` naming ``path``."""
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputPathError(f"{path} cannot be written: {e.strerror or e} ({d})") from None


@contextlib.contextmanager
def atomic(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file next to ``path``; on success, fsyncs and renames it over ``path``.

    Raises:
      OSError: naming ``path`` (a full disk, say); the temporary file is removed and ``path``
        is untouched.
    """
    fd, tmp = _mkstemp(path)
    os.close(fd)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a write's error names no file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    _fsync_dir(path.parent)


def write_netcdf(ds: xr.Dataset, path: Path) -> None:
    """Writes ``ds`` to ``path`` atomically (a temporary file renamed over it).

    The HDF5 image is made in memory and written as bytes: HDF5 never meets a failing disk
    (a full disk while HDF5 closed a file left an object whose clean-up segfaulted the
    process; h5py 3.16, h5netcdf 1.8, xarray 2026.9).

    Raises:
      OSError: naming ``path``, for any failure of the write; the temporary file is removed
        and ``path`` is untouched.
    """
    image = ds.to_netcdf(engine=ENGINE)
    try:
        with atomic(path) as f:
            f.write(image)
    except OSError as e:
        raise OSError(e.errno, f"cannot write the results: {e.strerror}", e.filename) from None


def _fsync_dir(path: Path) -> None:
    """Makes a rename durable (the directory entry itself is flushed)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temporary file in ``path``'s directory (same file system, so the rename is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results files get the usual mode
    return fd, tmp


def open_results(path: str | Path) -> tuple[xr.Dataset, SweepConfig]:
    """Loads a results file into memory with its config (no code is executed).

    Returns:
      ``(dataset, config)``; the config is parsed from the ``config_toml`` attribute.

    Raises:
      OSError: no file, or not one HDF5 can read.
      ValueError: no ``config_toml`` attribute (not written by dlnsim), a config that does not
        parse or validate, or data that does not have the layout of its config
        (:func:`dlnsim.results.check_layout`: edited by hand, or cut down).
    """
    with xr.open_dataset(path, engine=ENGINE) as f:
        ds = f.load()
    if "config_toml" not in ds.attrs:
        raise ValueError("no config_toml attribute: not written by dlnsim")
    cfg = load_config_text(ds.attrs["config_toml"], source=f"{path} (config_toml)")
    check_layout(ds, cfg)
    return ds, cfg
