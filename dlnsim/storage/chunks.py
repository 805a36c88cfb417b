"""The sidecar directory of a running sweep: one ``.npz`` file per finished chunk.

``RESULTS.nc.chunks/`` holds the sweep's canonical config (``config.toml``) and
``chunk-00000.npz``, ... (runs, metrics, diverged, timings), each written atomically.
A chunk file is only used if it loads with ``allow_pickle=False`` and holds exactly the
runs the plan assigns to that chunk.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dlnsim.grid import Chunk, ChunkResult
from dlnsim.metrics import Metrics
from dlnsim.storage.files import atomic


def chunk_dir(out_path: str | Path) -> Path:
    """The sidecar directory holding the finished chunks of an unfinished sweep."""
    out = Path(out_path)
    return out.with_name(out.name + ".chunks")


def _chunk_path(side: Path, chunk: Chunk) -> Path:
    return side / f"chunk-{chunk.index:05d}.npz"


def save_chunk(side: Path, chunk: Chunk, res: ChunkResult, started: float, finished: float) -> None:
    """Writes a computed chunk to the sidecar directory ``side`` (atomically)."""
    arrays = {f"metric_{k}": v for k, v in res.metrics.items()}
    arrays.update(
        runs=np.asarray(chunk.runs, np.int64),
        diverged=res.diverged,
        diverged_at=res.diverged_at,
        seconds=np.float64(res.seconds),
        started=np.float64(started),
        finished=np.float64(finished),
    )
    with atomic(_chunk_path(side, chunk)) as f:
        np.savez(f, **arrays)


class Stored(NamedTuple):
    """A finished chunk, computed now or loaded, with when it was computed."""

    result: ChunkResult
    started: float  # unix time the chunk's computation began
    finished: float  # unix time it ended


def load_chunk(side: Path, chunk: Chunk) -> Stored | None:
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
            return Stored(res, float(z["started"]), float(z["finished"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # what np.load raises on a damaged or foreign file
