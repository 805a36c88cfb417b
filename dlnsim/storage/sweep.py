"""Running a sweep into a results file, resumably: the chunk loop and the final file.

While a sweep runs, every finished chunk is persisted in the sidecar directory
``RESULTS.nc.chunks/`` (:mod:`dlnsim.storage.chunks`). Re-running the same sweep
recomputes only the missing chunks; a different config at the same path is refused
(:class:`~dlnsim.storage.identity.ExistingResultsError`) unless forced. The final NetCDF
file is written once every chunk is done, and the sidecar directory is removed.

The final file's data, coordinates and attributes depend only on the config, the
software versions and the device, except for the attributes in
:data:`VOLATILE_ATTRS` (start/end time and wall time per group), which record when
each chunk was actually computed.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.config import SweepConfig, static_combinations
from dlnsim.configfile import dumps_config
from dlnsim.grid import Progress, run_chunk
from dlnsim.plan import Chunk, batch_shape, check_fits_device, plan, shard_chunks
from dlnsim.results import assemble, run_attrs, run_shapes
from dlnsim.storage.chunks import Stored, add_runs, chunk_dir, finished_runs, gather, save_chunk
from dlnsim.storage.files import atomic, check_output, make_dirs, open_results, write_netcdf
from dlnsim.storage.identity import (
    FORCED,
    SHARD_LINE,
    holds_sweep,
    not_results,
    partial_config,
    refuse,
    resumes_forced,
    same_sweep,
)

# Attributes that record when the work was done: they differ between two runs of the
# same sweep, and between an interrupted-and-resumed run and an uninterrupted one.
VOLATILE_ATTRS = ("start_time", "end_time", "group_wall_seconds")
# The random part of a temporary's name (tempfile.mkstemp: 8 characters), so that the
# temporaries of r.nc are not confused with those of r.nc.bak.
_RANDOM = "?" * 8


def _remove_leftovers(out: Path, side: Path, keep_chunks: bool = False) -> None:
    """Temporaries of a killed write (never complete) of ``out`` and in ``side``, chunk
    directories a killed run was removing; ``side`` itself unless ``keep_chunks`` (its chunks
    are in ``out`` once that is written)."""
    for junk in [*out.parent.glob(f".{glob.escape(out.name)}.{_RANDOM}.tmp"), *side.glob(".*.tmp")]:
        with contextlib.suppress(FileNotFoundError):
            junk.unlink()
    for gone in out.parent.glob(f".{glob.escape(side.name)}.*.removed"):
        shutil.rmtree(gone, ignore_errors=True)
    if not keep_chunks:
        _remove_dir(side)


def _remove_dir(side: Path) -> None:
    """Removes a chunk directory as a whole: renamed away first (atomic), so a process killed
    meanwhile never leaves some chunks without their config.toml."""
    gone = side.with_name(f".{side.name}.{os.getpid()}.removed")
    try:
        side.rename(gone)
    except FileNotFoundError:
        return
    shutil.rmtree(gone, ignore_errors=True)


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def _attrs(cfg: SweepConfig, chunks: list[Chunk], stored: list[Stored]) -> dict[str, Any]:
    attrs = run_attrs(cfg)
    groups = static_combinations(cfg)
    wall = np.zeros(len(groups))
    for chunk, s in zip(chunks, stored):
        wall[chunk.group] += s.result.seconds
    attrs["groups"] = json.dumps(groups)
    # JSON text, like "groups": NetCDF would turn a length-1 array attribute into a scalar.
    attrs["group_wall_seconds"] = json.dumps([round(float(w), 3) for w in wall])
    attrs["start_time"] = _iso(min(s.started for s in stored))
    attrs["end_time"] = _iso(max(s.finished for s in stored))
    return attrs


def _identity(cfg: SweepConfig, shard: tuple[int, int] | None) -> str:
    """The text that names the sweep (a shard's with its slice) in its chunk directory and file."""
    return dumps_config(cfg) + (SHARD_LINE.format(*shard) if shard else "")


def _holds(out: Path, text: str) -> bool:
    """Whether ``out`` holds the sweep of config text ``text`` (a rerun reads it back).

    Raises:
      ExistingResultsError: ``out`` or its chunk directory belongs to another sweep (unless
        an interrupted ``--force`` run of this sweep is to replace it).
    """
    if resumes_forced(out, text):
        return False
    partial = partial_config(out)
    if holds_sweep(out, text):  # raises for another sweep's file
        return True
    if partial is not None and not same_sweep(partial, text):
        raise refuse(chunk_dir(out), partial, text)
    return False


def runs_on_disk(
    cfg: SweepConfig, out_path: str | Path, *, force: bool = False, shard: tuple[int, int] | None = None
) -> set[int] | None:
    """What :func:`run_sweep` with these arguments would not compute, found without
    computing or writing anything: None where ``out_path`` already holds the sweep (it is
    read back), else the runs held by the finished chunk files it would take (any chunk
    plan's; none with ``force``).

    Raises:
      ExistingResultsError: where :func:`run_sweep` would refuse ``out_path``.
    """
    out = Path(out_path)
    if force:
        return set()
    if _holds(out, _identity(cfg, shard)):
        return None
    return set(finished_runs(chunk_dir(out), run_shapes(cfg)))


def run_sweep(
    cfg: SweepConfig,
    out_path: str | Path,
    *,
    force: bool = False,
    progress: Callable[[Progress], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> tuple[xr.Dataset, int]:
    """Runs a sweep into a NetCDF file, resuming from the chunks an earlier run finished.

    Args:
      cfg: the sweep.
      out_path: the results file (``.nc``); its directory is created if needed.
      force: discard partial chunks and recompute every run, even if ``out_path`` already
        holds this very sweep; results of a *different* config at ``out_path`` (otherwise
        :class:`ExistingResultsError`) are replaced when the new file is written, so an
        interrupted forced run loses nothing: rerun it without ``force`` to resume.
      progress: called with a :class:`Progress` after every chunk (computed or loaded).
      shard: ``(i, n)``: compute only slice i of n of the sweep's chunks (0-based), for
        one job of an array of jobs; :func:`~dlnsim.storage.merge_shards` combines the n files into the
        file a single run writes. The other runs are NaN in a shard's file.

    Returns:
      ``(dataset, skipped)``: the dataset written to the file (read back from it when
      the file was already complete), and how many chunks
      were loaded from an earlier run instead of computed (all of them when the file
      was already complete).

    Raises:
      ValueError: ``shard`` is not ``(i, n)`` with ``0 <= i < n``, or has more slices than the
        sweep has chunks.
      ExistingResultsError: ``out_path`` or its chunk directory belongs to another config.
      OutputPathError: ``out_path`` is a directory, or cannot be created (nothing computed).
    """
    out = check_output(out_path)
    side = chunk_dir(out)
    text = _identity(cfg, shard)
    all_chunks = plan(cfg)
    chunks = shard_chunks(all_chunks, shard)
    if force:  # recompute; an old file at out stays until the new one replaces it (atomically)
        _remove_dir(side)
    elif _holds(out, text):
        # Chunks of this sweep are leftovers of a run killed after writing its file.
        partial = partial_config(out)
        _remove_leftovers(out, side, keep_chunks=partial is not None and not same_sweep(partial, text))
        try:
            return open_results(out)[0], len(chunks)
        except (OSError, KeyError, ValueError) as e:  # its config's, but not its data's layout
            raise not_results(out, " ".join(str(e).split())) from None
    # An interrupted --force run of this sweep is resumed and replaces whatever out holds.
    resume_forced = not force and resumes_forced(out, text)
    check_fits_device(cfg)  # a run larger than a device: refused before any work
    # Padding comes from the whole plan, so a shard runs the very programs a single run does.
    pad = batch_shape(cfg, all_chunks)
    make_dirs(out, out.parent, side)
    _remove_leftovers(out, side, keep_chunks=True)
    with atomic(side / "config.toml") as f:
        f.write(text.encode())
    if force:
        with atomic(side / FORCED) as f:
            f.write(b"this run replaces the results file; rerun without --force to resume it\n")
    elif not resume_forced:  # a marker without chunks of this sweep: not this run's to honour
        (side / FORCED).unlink(missing_ok=True)

    stored: list[Stored] = []
    skipped = runs_done = 0
    finished = finished_runs(side, run_shapes(cfg))  # also the runs of another chunk plan's files
    n_runs = sum(len(c.runs) for c in chunks)
    to_compute = sum(r not in finished for c in chunks for r in c.runs)
    for chunk in chunks:
        todo = chunk._replace(runs=tuple(r for r in chunk.runs if r not in finished))
        if todo.runs:  # all of the chunk's runs, unless another plan's files hold some
            started = time.time()
            res = run_chunk(cfg, todo, pad)  # the chunk's padded batch shape: the same program
            s = Stored(res, started, time.time())
            save_chunk(side, todo, res, s.started, s.finished)
            add_runs(finished, todo.runs, s)
        stored.append(gather(chunk, finished))
        loaded = not todo.runs
        skipped += loaded
        runs_done += len(chunk.runs)
        to_compute -= len(todo.runs)
        if progress is not None:
            seconds = 0.0 if loaded else res.seconds
            steps = cfg.train.steps
            event = Progress(chunk, len(chunks), runs_done, n_runs, loaded, seconds, steps, len(todo.runs), to_compute)
            progress(event)
    attrs = _attrs(cfg, chunks, stored)
    if shard:
        attrs["config_toml"] = text
        attrs["shard"] = f"{shard[0]}/{shard[1]}"
        attrs["shard_runs"] = np.array(sorted(r for c in chunks for r in c.runs), np.int64)
    ds = assemble(cfg, chunks, [s.result for s in stored], attrs=attrs)
    write_netcdf(ds, out)
    _remove_dir(side)
    return ds, skipped
