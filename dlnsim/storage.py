"""Results on disk: the only module that reads or writes result files.

A sweep writes one self-contained NetCDF file (``RESULTS.nc``, xarray + h5netcdf) at
the end. While it runs, every finished chunk is persisted in a sidecar directory
``RESULTS.nc.chunks/`` next to it::

    RESULTS.nc.chunks/
      config.toml          # the sweep's canonical config (dumps_config)
      chunk-00000.npz      # one per finished chunk: runs, metrics, diverged, timings

Every file is written to a temporary name in the same directory, flushed to disk and
then renamed over its final name (``os.replace`` is atomic on POSIX), so a process
killed at any moment leaves either a complete chunk file or none: a half-written
temporary is never counted. A chunk file is only used if it loads with
``allow_pickle=False`` and holds exactly the runs the plan assigns to that chunk.
Re-running the same sweep recomputes only the missing chunks; the sidecar directory is
removed once the final file is in place.

The final file's data, coordinates and attributes depend only on the config, the
software versions and the device, except for the attributes in
:data:`VOLATILE_ATTRS` (start/end time and wall time per group), which record when
each chunk was actually computed.

Loading never executes code: NetCDF through ``xarray.open_dataset`` and ``.npz`` with
``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import xarray as xr

from dlnsim.config import SweepConfig, static_combinations
from dlnsim.configfile import dumps_config, load_config_text
from dlnsim.grid import Chunk, ChunkResult, assemble, batch_shape, plan, run_attrs, run_chunk
from dlnsim.metrics import Metrics

ENGINE = "h5netcdf"
# Attributes that record when the work was done: they differ between two runs of the
# same sweep, and between an interrupted-and-resumed run and an uninterrupted one.
VOLATILE_ATTRS = ("start_time", "end_time", "group_wall_seconds")


class ExistingResultsError(ValueError):
    """The output path already holds results (or a partial sweep) of a different config."""


class Progress(NamedTuple):
    """Reported to the ``progress`` callback of :func:`run_sweep` after every chunk."""

    chunk: Chunk  # the chunk just finished
    n_chunks: int  # chunks in the plan
    runs_done: int  # runs finished so far, loaded ones included
    n_runs: int  # runs in the sweep
    skipped: bool  # True: loaded from an earlier, interrupted run; False: computed now
    seconds: float  # compute time of this chunk (0 when skipped)
    steps: int  # optimiser steps per run


def chunk_dir(out_path: str | Path) -> Path:
    """The sidecar directory holding the finished chunks of an unfinished sweep."""
    out = Path(out_path)
    return out.with_name(out.name + ".chunks")


# ---------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def _atomic(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file next to ``path``; on success, fsyncs and renames it over ``path``."""
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


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


def _write_netcdf(ds: xr.Dataset, path: Path) -> None:
    fd, tmp = _mkstemp(path)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine=ENGINE)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


# ---------------------------------------------------------------- chunk files


def _chunk_path(side: Path, chunk: Chunk) -> Path:
    return side / f"chunk-{chunk.index:05d}.npz"


def _save_chunk(side: Path, chunk: Chunk, res: ChunkResult, started: float, finished: float) -> None:
    arrays = {f"metric_{k}": v for k, v in res.metrics.items()}
    arrays.update(
        runs=np.asarray(chunk.runs, np.int64),
        diverged=res.diverged,
        diverged_at=res.diverged_at,
        seconds=np.float64(res.seconds),
        started=np.float64(started),
        finished=np.float64(finished),
    )
    with _atomic(_chunk_path(side, chunk)) as f:
        np.savez(f, **arrays)


class _Stored(NamedTuple):
    result: ChunkResult
    started: float  # unix time the chunk's computation began
    finished: float  # unix time it ended


def _load_chunk(side: Path, chunk: Chunk) -> _Stored | None:
    """A finished chunk from disk, or None if absent, unreadable or not this chunk's runs."""
    path = _chunk_path(side, chunk)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if not np.array_equal(z["runs"], np.asarray(chunk.runs)):
                return None  # a different plan (e.g. another chunk size) wrote it
            n = len(chunk.runs)
            metrics = {k: z[f"metric_{k}"] for k in Metrics._fields}
            if any(v.shape[0] != n for v in metrics.values()) or z["diverged"].shape != (n,):
                return None
            res = ChunkResult(metrics, z["diverged"], z["diverged_at"], float(z["seconds"]))
            return _Stored(res, float(z["started"]), float(z["finished"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # what np.load raises on a damaged or foreign file


# ---------------------------------------------------------------- config identity


def _flatten(text: str) -> dict[str, Any]:
    doc = tomllib.loads(text)
    return {f"{s}.{k}": v for s, table in doc.items() for k, v in table.items()}


def _differences(old: str, new: str, limit: int = 4) -> str:
    a, b = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    parts = [f"{k}: {a.get(k, '(unset)')} there, {b.get(k, '(unset)')} here" for k in keys[:limit]]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(parts) + more


def _refuse(where: Path, old: str, new: str) -> ExistingResultsError:
    return ExistingResultsError(
        f"{where} holds results of a different sweep ({_differences(old, new)}); "
        "write elsewhere, or pass force=True (--force) to discard them"
    )


def _existing_config(out: Path) -> str:
    try:
        with xr.open_dataset(out, engine=ENGINE) as ds:
            return str(ds.attrs["config_toml"])
    except (OSError, KeyError, ValueError) as e:
        raise ExistingResultsError(
            f"{out} exists and is not a dlnsim results file ({e}); write elsewhere, or pass force=True (--force) to overwrite it"
        ) from None


# ---------------------------------------------------------------- the sweep


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def _attrs(cfg: SweepConfig, chunks: list[Chunk], stored: list[_Stored]) -> dict[str, Any]:
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
      force: discard existing results or partial chunks of a *different* config
        (otherwise :class:`ExistingResultsError`), and recompute even if ``out_path``
        already holds this very sweep.
      progress: called with a :class:`Progress` after every chunk (computed or loaded).
      shard: ``(i, n)``: compute only slice i of n of the sweep's chunks (0-based), for
        one job of an array of jobs; :func:`merge_shards` combines the n files into the
        file a single run writes. The other runs are NaN in a shard's file.

    Returns:
      ``(dataset, skipped)``: the dataset written to the file (read back from it when
      the file was already complete), and how many chunks
      were loaded from an earlier run instead of computed (all of them when the file
      was already complete).

    Raises:
      ExistingResultsError: ``out_path`` or its chunk directory belongs to another config.
    """
    out = Path(out_path)
    side = chunk_dir(out)
    text = dumps_config(cfg) + (_SHARD_LINE.format(*shard) if shard else "")
    all_chunks = plan(cfg)
    # Padding comes from the whole plan, so a shard runs the very programs a single run does.
    pad = batch_shape(cfg, all_chunks)
    chunks = [c for c in all_chunks if shard is None or c.index % shard[1] == shard[0]]
    if force:
        shutil.rmtree(side, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
    elif out.exists():
        old = _existing_config(out)
        if old != text:
            raise _refuse(out, old, text)
        return open_results(out)[0], len(chunks)
    elif (side / "config.toml").exists():
        old = (side / "config.toml").read_text(encoding="utf-8")
        if old != text:
            raise _refuse(side, old, text)
    side.mkdir(parents=True, exist_ok=True)
    for junk in side.glob(".*.tmp"):  # temporaries of a killed write: never complete
        junk.unlink()
    with _atomic(side / "config.toml") as f:
        f.write(text.encode())

    stored: list[_Stored] = []
    skipped = runs_done = 0
    for chunk in chunks:
        s = _load_chunk(side, chunk)
        loaded = s is not None
        if s is None:
            started = time.time()
            res = run_chunk(cfg, chunk, pad)
            s = _Stored(res, started, time.time())
            _save_chunk(side, chunk, res, s.started, s.finished)
        skipped += loaded
        stored.append(s)
        runs_done += len(chunk.runs)
        if progress is not None:
            seconds = 0.0 if loaded else s.result.seconds
            n_runs = sum(len(c.runs) for c in chunks)
            progress(Progress(chunk, len(chunks), runs_done, n_runs, loaded, seconds, cfg.train.steps))
    attrs = _attrs(cfg, chunks, stored)
    if shard:
        attrs["config_toml"] = text
        attrs["shard"] = f"{shard[0]}/{shard[1]}"
        attrs["shard_runs"] = np.array(sorted(r for c in chunks for r in c.runs), np.int64)
    ds = assemble(cfg, chunks, [s.result for s in stored], attrs=attrs)
    _write_netcdf(ds, out)
    shutil.rmtree(side, ignore_errors=True)
    return ds, skipped


_SHARD_LINE = "# shard {0}/{1}: this file holds slice {0} of {1} of the sweep's chunks\n"
_SHARD_ATTRS = ("shard", "shard_runs")


def merge_shards(paths: list[str | Path], out_path: str | Path) -> xr.Dataset:
    """Combines the n shard files of one sweep into the file a single run writes.

    Every shard must hold the same config and the slices ``0..n-1`` exactly once. Data,
    coordinates and attributes equal those of an unsharded run, except the volatile
    timing attributes, which are combined (earliest start, latest end, summed walls).

    Raises:
      ValueError: the files are not the complete set of shards of one sweep.
    """
    parts = [(Path(p), *open_results(p)) for p in paths]
    path0, first, cfg = parts[0]
    n = _shard_of(path0, first)[1]
    seen: dict[int, Path] = {}
    for path, ds, c in parts:
        i, n_i = _shard_of(path, ds)
        if c != cfg or n_i != n:
            raise ValueError(f"{path} is a shard of a different sweep than {path0}")
        if i in seen:
            raise ValueError(f"{path} and {seen[i]} are both shard {i}/{n}")
        seen[i] = path
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        raise ValueError(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing: merge needs all {n}")
    merged = first.copy(deep=True)
    axes = list(cfg.grid)
    for _, ds, _ in parts[1:]:
        runs = np.asarray(ds.attrs["shard_runs"])
        for name, var in ds.data_vars.items():
            target = merged[name].values.reshape((cfg.n_runs, *var.shape[len(axes) :]))
            target[runs] = var.values.reshape(target.shape)[runs]
    merged.attrs = {k: v for k, v in first.attrs.items() if k not in _SHARD_ATTRS}
    merged.attrs["config_toml"] = dumps_config(cfg)
    walls = np.sum([json.loads(ds.attrs["group_wall_seconds"]) for _, ds, _ in parts], axis=0)
    merged.attrs["group_wall_seconds"] = json.dumps([round(float(w), 3) for w in walls])
    merged.attrs["start_time"] = min(ds.attrs["start_time"] for _, ds, _ in parts)
    merged.attrs["end_time"] = max(ds.attrs["end_time"] for _, ds, _ in parts)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_netcdf(merged, out)
    return merged


def _shard_of(path: Path, ds: xr.Dataset) -> tuple[int, int]:
    if "shard" not in ds.attrs:
        raise ValueError(f"{path} is not a shard file (no 'shard' attribute): written without --shard")
    i, n = (int(v) for v in str(ds.attrs["shard"]).split("/"))
    return i, n


def open_results(path: str | Path) -> tuple[xr.Dataset, SweepConfig]:
    """Loads a results file into memory with its config (no code is executed).

    Returns:
      ``(dataset, config)``; the config is parsed from the ``config_toml`` attribute.
    """
    with xr.open_dataset(path, engine=ENGINE) as f:
        ds = f.load()
    return ds, load_config_text(ds.attrs["config_toml"], source=f"{path} (config_toml)")
