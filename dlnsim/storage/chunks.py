"""The sidecar directory of a running sweep: one ``.npz`` file per finished chunk.

``RESULTS.nc.chunks/`` holds the sweep's canonical config (``config.toml``) and one file per
finished chunk, named by the runs it holds (``chunk-FIRST-COUNT-CRC.npz``: the first flat run
index, the number of runs and a CRC-32 of the run indices, so files of different run sets
never share a name), each written atomically. A file is only used if it loads with
``allow_pickle=False`` and holds the runs its name says. A sweep resumed under another chunk
plan (another chunk size or memory budget) takes each chunk from the file of the same runs,
or gathers its runs from the old plan's files and computes only those none of them holds.
"""

from __future__ import annotations

import zipfile
import zlib
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
    crc = zlib.crc32(np.asarray(chunk.runs, np.int64).tobytes())
    return side / f"chunk-{chunk.runs[0]:07d}-{len(chunk.runs):05d}-{crc:08x}.npz"


def save_chunk(side: Path, chunk: Chunk, res: ChunkResult, started: float, finished: float) -> Path:
    """Writes a computed chunk to the sidecar directory ``side`` (atomically); returns its path."""
    arrays = {f"metric_{k}": v for k, v in res.metrics.items()}
    arrays.update(
        runs=np.asarray(chunk.runs, np.int64),
        diverged=res.diverged,
        diverged_at=res.diverged_at,
        seconds=np.float64(res.seconds),
        started=np.float64(started),
        finished=np.float64(finished),
    )
    path = _chunk_path(side, chunk)
    with atomic(path) as f:
        np.savez(f, **arrays)
    return path


class Stored(NamedTuple):
    """A finished chunk, computed now or loaded, with when it was computed."""

    result: ChunkResult
    started: float  # unix time the chunk's computation began
    finished: float  # unix time it ended


def _read(path: Path) -> tuple[np.ndarray, Stored] | None:
    """A chunk file's runs and contents, or None if unreadable or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as z:
            runs = z["runs"]
            metrics = {k: z[f"metric_{k}"] for k in Metrics._fields}
            if runs.ndim != 1 or any(v.shape[0] != len(runs) for v in metrics.values()):
                return None
            if z["diverged"].shape != runs.shape or z["diverged_at"].shape != runs.shape:
                return None
            res = ChunkResult(metrics, z["diverged"], z["diverged_at"], float(z["seconds"]))
            return runs, Stored(res, float(z["started"]), float(z["finished"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # what np.load raises on a damaged or foreign file


def finished_runs(side: Path) -> dict[int, Path]:
    """Run index -> a readable chunk file in ``side`` that holds it (any chunk plan)."""
    index: dict[int, Path] = {}
    for path in sorted(side.glob("chunk-*.npz")):
        read = _read(path)
        if read is not None:
            for r in read[0].tolist():
                index.setdefault(r, path)
    return index


def load_chunk(side: Path, chunk: Chunk, finished: dict[int, Path] | None = None) -> Stored | None:
    """A finished chunk from disk, or None if some of its runs are not on disk.

    Its own file (the same runs) is used if readable; otherwise, given ``finished``
    (:func:`finished_runs`), its runs are gathered from the files of another chunk plan,
    each file's compute time shared out by the runs taken from it.
    """
    own = _read(_chunk_path(side, chunk))
    if own is not None and np.array_equal(own[0], np.asarray(chunk.runs)):
        return own[1]
    if finished is None or any(r not in finished for r in chunk.runs):
        return None
    files = {path: _read(path) for path in {finished[r] for r in chunk.runs}}
    if any(f is None for f in files.values()):
        return None  # damaged since the index was made
    picks = []  # per run: its source file's runs and contents, and its row there
    for r in chunk.runs:
        runs, stored = files[finished[r]]
        picks.append((runs, stored.result, int(np.flatnonzero(runs == r)[0])))
    take = lambda get: np.stack([get(res)[i] for _, res, i in picks])  # noqa: E731
    res = ChunkResult(
        {k: take(lambda res, k=k: res.metrics[k]) for k in Metrics._fields},
        take(lambda res: res.diverged),
        take(lambda res: res.diverged_at),
        sum(res.seconds / len(runs) for runs, res, _ in picks),
    )
    return Stored(res, min(s.started for _, s in files.values()), max(s.finished for _, s in files.values()))
