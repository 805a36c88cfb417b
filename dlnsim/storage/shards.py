"""Shards of one sweep, computed by separate jobs, merged into the file a single run writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from dlnsim.config import SweepConfig
from dlnsim.configfile import dumps_config
from dlnsim.storage.files import check_output, make_dirs, open_results, write_netcdf
from dlnsim.storage.identity import differences, holds_sweep, same_settings

_SHARD_ATTRS = ("shard", "shard_runs")  # set by run_sweep(shard=...), absent from the merged file


def merge_shards(paths: list[str | Path], out_path: str | Path, *, force: bool = False) -> xr.Dataset:
    """Combines the n shard files of one sweep into the file a single run writes.

    Every shard must hold the same config and the slices ``0..n-1`` exactly once. Data,
    coordinates and attributes equal those of an unsharded run, except the volatile
    timing attributes, which are combined (earliest start, latest end, summed walls).

    Args:
      paths: the shard files.
      out_path: the merged results file; a file there that holds another sweep (or is no
        results file) is refused unless ``force``; one of this very sweep is rewritten.
      force: overwrite whatever ``out_path`` holds.

    Raises:
      ValueError: a file is missing or not a results file, or the files are not the
        complete set of shards of one sweep.
      ExistingResultsError: ``out_path`` holds another sweep (and not ``force``).
      OutputPathError: ``out_path`` is a directory or cannot be created.
    """
    out = check_output(out_path)
    parts = [(Path(p), *_open_part(Path(p))) for p in paths]
    path0, first, cfg = parts[0]
    n = _shard_of(path0, first)[1]
    seen: dict[int, Path] = {}
    for path, ds, _ in parts:
        i, n_i = _shard_of(path, ds)
        old, new = first.attrs["config_toml"], ds.attrs["config_toml"]
        if not same_settings(old, new) or n_i != n:
            where = (f"in {path0.name}", f"in {path.name}")
            diff = differences(old, new, where) or f"{n} shards {where[0]}, {n_i} {where[1]}"
            raise ValueError(f"{path} is a shard of a different sweep than {path0} ({diff})")
        if i in seen:
            raise ValueError(f"{path} and {seen[i]} are both shard {i}/{n}")
        seen[i] = path
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        raise ValueError(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing: merge needs all {n}")
    _check_partition(cfg, parts)
    merged = first.copy(deep=True)
    axes = list(cfg.grid)
    for _, ds, _ in parts[1:]:
        runs = shard_runs(ds)
        for name, var in ds.data_vars.items():
            target = merged[name].values.reshape((cfg.n_runs, *var.shape[len(axes) :]))
            target[runs] = var.values.reshape(target.shape)[runs]
    merged.attrs = {k: v for k, v in first.attrs.items() if k not in _SHARD_ATTRS}
    merged.attrs["config_toml"] = dumps_config(cfg)
    walls = np.sum([json.loads(ds.attrs["group_wall_seconds"]) for _, ds, _ in parts], axis=0)
    merged.attrs["group_wall_seconds"] = json.dumps([round(float(w), 3) for w in walls])
    merged.attrs["start_time"] = min(ds.attrs["start_time"] for _, ds, _ in parts)
    merged.attrs["end_time"] = max(ds.attrs["end_time"] for _, ds, _ in parts)
    if not force:
        holds_sweep(out, merged.attrs["config_toml"])
    make_dirs(out, out.parent)
    write_netcdf(merged, out)
    return merged


def _open_part(path: Path) -> tuple[xr.Dataset, SweepConfig]:
    """A shard file and its config; a missing or unreadable file is a ``ValueError`` naming it."""
    if not path.is_file():
        raise ValueError(f"no results file at {path}")
    try:
        return open_results(path)
    except (OSError, KeyError, ValueError) as e:
        reason = " ".join(str(e).split())  # HDF5 messages span lines
        raise ValueError(f"{path} is not a dlnsim results file ({reason})") from None


def shard_runs(ds: xr.Dataset) -> np.ndarray:
    """The flat run indices a shard computed (NetCDF stores a one-element array as a scalar)."""
    return np.atleast_1d(np.asarray(ds.attrs["shard_runs"], np.int64))


def _check_partition(cfg: SweepConfig, parts: list[tuple[Path, xr.Dataset, SweepConfig]]) -> None:
    """Every run in exactly one shard: jobs whose chunk plans differed split different chunks."""
    count = np.zeros(cfg.n_runs, np.int64)
    for _, ds, _ in parts:
        np.add.at(count, shard_runs(ds), 1)
    twice, never = np.flatnonzero(count > 1), np.flatnonzero(count == 0)
    if len(twice) or len(never):
        raise ValueError(
            f"the shards do not split the sweep's {cfg.n_runs} runs: {len(twice)} runs are in more than one shard "
            f"and {len(never)} in none (e.g. run {int((twice if len(twice) else never)[0])}). Their jobs cut the "
            "grid into chunks of different sizes (devices with other memory or another device count, or another "
            "--max-memory): rerun every shard with the same --chunk-size"
        )


def _shard_of(path: Path, ds: xr.Dataset) -> tuple[int, int]:
    if "shard" not in ds.attrs:
        raise ValueError(f"{path} is not a shard file (no 'shard' attribute): written without --shard")
    i, n = (int(v) for v in str(ds.attrs["shard"]).split("/"))
    return i, n
