"""The sidecar directory of a running sweep: one ``.npz`` file per finished chunk.

``RESULTS.nc.chunks/`` holds the sweep's canonical config (``config.toml``) and one file per
finished chunk, named by the runs it holds (``chunk-FIRST-COUNT-CRC.npz``: the first flat run
index, the number of runs and a CRC-32 of the run indices, so files of different run sets
never share a name), each written atomically. A file is only used if it loads with
``allow_pickle=False``, holds the runs its name says and has the sweep's shapes. A sweep
resumed under another chunk plan (another chunk size or memory budget) gathers each chunk's
finished runs from whichever files hold them and computes only the others.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dlnsim.grid import ChunkResult
from dlnsim.plan import Chunk
from dlnsim.metrics import Metrics
from dlnsim.storage.files import atomic


def chunk_dir(out_path: str | Path) -> Path:
    """The sidecar directory holding the finished chunks of an unfinished sweep."""
    out = Path(out_path)
    return out.with_name(out.name + ".chunks")


def has_chunks(out_path: str | Path) -> bool:
    """Whether the sidecar directory of ``out_path`` holds finished chunk files (of any sweep)."""
    return any(chunk_dir(out_path).glob("chunk-*.npz"))


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


def _read(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> tuple[np.ndarray, Stored] | None:
    """A chunk file's runs and contents, or None if unreadable or inconsistent (each metric
    ``shapes[name]`` per run, in floats; flags and steps of divergence per run)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            runs = z["runs"]
            if runs.ndim != 1 or len(runs) == 0 or runs.dtype.kind not in "iu":
                return None
            if _chunk_path(path.parent, Chunk(0, 0, tuple(runs.tolist()))) != path:
                return None  # not the runs its name says (a renamed or foreign file)
            metrics = {k: z[f"metric_{k}"] for k in Metrics._fields}
            if any(v.shape != (len(runs), *shapes[k]) or v.dtype.kind != "f" for k, v in metrics.items()):
                return None
            diverged, diverged_at = z["diverged"], z["diverged_at"]
            if diverged.shape != runs.shape or diverged_at.shape != runs.shape:
                return None
            if diverged.dtype.kind != "b" or diverged_at.dtype.kind != "i":
                return None
            res = ChunkResult(metrics, diverged, diverged_at, float(z["seconds"]))
            return runs, Stored(res, float(z["started"]), float(z["finished"]))
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile):
        return None  # what np.load raises on a damaged or foreign file, float() on a non-number


def finished_runs(side: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[int, tuple[Stored, int]]:
    """Run index -> the contents of a readable chunk file in ``side`` that holds it (any chunk
    plan) and its row there; ``shapes``: each metric's shape per run
    (:func:`dlnsim.results.run_shapes`). Each file is read once."""
    index: dict[int, tuple[Stored, int]] = {}
    for path in sorted(side.glob("chunk-*.npz")):
        read = _read(path, shapes)
        if read is not None:
            add_runs(index, read[0].tolist(), read[1])
    return index


def add_runs(index: dict[int, tuple[Stored, int]], runs: Sequence[int], stored: Stored) -> None:
    """Adds a chunk's runs (rows of ``stored``, in order) to a :func:`finished_runs` index."""
    for row, r in enumerate(runs):
        index.setdefault(r, (stored, row))


def gather(chunk: Chunk, index: dict[int, tuple[Stored, int]]) -> Stored:
    """A chunk's results from the finished runs (every run of the chunk must be in ``index``):
    rows of its own chunk's file or of another plan's files, each file's compute time shared
    out by the runs taken from it."""
    picks = [index[r] for r in chunk.runs]
    whole = picks[0][0]
    if all(s is whole for s, _ in picks) and [row for _, row in picks] == list(range(len(whole.result.diverged))):
        return whole  # its own file, or the result just computed: no copy
    take = lambda get: np.stack([get(s.result)[row] for s, row in picks])  # noqa: E731
    res = ChunkResult(
        {k: take(lambda res, k=k: res.metrics[k]) for k in Metrics._fields},
        take(lambda res: res.diverged),
        take(lambda res: res.diverged_at),
        sum(s.result.seconds / len(s.result.diverged) for s, _ in picks),
    )
    return Stored(res, min(s.started for s, _ in picks), max(s.finished for s, _ in picks))
