"""Results on disk: the only package that reads or writes result files.

A sweep writes one self-contained NetCDF file (``RESULTS.nc``, xarray + h5netcdf) at
the end. While it runs, every finished chunk is persisted in a sidecar directory
``RESULTS.nc.chunks/`` next to it::

    RESULTS.nc.chunks/
      config.toml          # the sweep's canonical config (dumps_config)
      forced               # present for a --force run: it replaces the file at RESULTS.nc
      chunk-0000000-00064-5f3a09c1.npz  # one per finished chunk (first run, count, CRC-32 of
                                        # its runs): runs, metrics, diverged, timings

Re-running the same sweep computes only the runs not on disk, also under another chunk size
or memory budget (how runs are batched is not part of a sweep's identity); the sidecar directory is
removed once the final file is in place. Every file is written atomically (a process
killed at any moment leaves a complete file or none), and loading never executes code:
NetCDF through ``xarray.open_dataset`` and ``.npz`` with ``allow_pickle=False``.

Modules: :mod:`~dlnsim.storage.files` (atomic writes, the NetCDF file),
:mod:`~dlnsim.storage.chunks` (the sidecar chunk files), :mod:`~dlnsim.storage.identity`
(which sweep a file holds), :mod:`~dlnsim.storage.sweep` (the resumable sweep),
:mod:`~dlnsim.storage.shards` (merging shard files).
"""

from dlnsim.storage.chunks import chunk_dir, has_chunks
from dlnsim.storage.files import ENGINE, OutputPathError, check_output, make_dirs, open_results
from dlnsim.storage.shards import merge_shards, shard_runs
from dlnsim.storage.identity import ExistingResultsError, holds_sweep, resumes_forced
from dlnsim.storage.sweep import VOLATILE_ATTRS, Progress, run_sweep, runs_on_disk

__all__ = [
    "ENGINE",
    "VOLATILE_ATTRS",
    "ExistingResultsError",
    "OutputPathError",
    "Progress",
    "check_output",
    "chunk_dir",
    "has_chunks",
    "holds_sweep",
    "make_dirs",
    "merge_shards",
    "open_results",
    "resumes_forced",
    "run_sweep",
    "runs_on_disk",
    "shard_runs",
]
