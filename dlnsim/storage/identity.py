"""Which sweep a results file or a chunk directory holds, and the refusal of another's.

A sweep's identity is its canonical config text (:func:`dlnsim.configfile.dumps_config`)
without how its runs are batched (chunk size, memory budget: results never depend on them),
plus the slice of a shard. A file or chunk directory of another sweep at the output is
refused with the settings that differ, so no run overwrites results it did not compute.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import xarray as xr

from dlnsim.storage.chunks import chunk_dir, has_chunks
from dlnsim.storage.files import ENGINE

# Marks the chunk directory of a --force run: resumed without force, it still replaces the file.
FORCED = "forced"
# Appended to a shard's config text: its chunks and file are told apart from other slices'
# (:func:`_slice` reads it back).
SHARD_LINE = "# shard {0}/{1}: this file holds slice {0} of {1} of the sweep's chunks\n"


class ExistingResultsError(ValueError):
    """The output path already holds results (or a partial sweep) of a different config."""


def _flatten(text: str) -> dict[str, Any]:
    doc = tomllib.loads(text)
    return {f"{s}.{k}": v for s, table in doc.items() for k, v in table.items()}


# How runs are batched: results never depend on it, so a sweep resumes, and a finished file
# is recognised, under another chunk size or memory budget (the new plan's chunks take their
# finished runs from the old plan's files).
_BATCHING = ("sweep.chunk_size", "sweep.max_memory")


def _settings(text: str) -> dict[str, Any]:
    settings = {k: v for k, v in _flatten(text).items() if k not in _BATCHING}
    # The grid's axis order fixes the run numbering of the chunk files and the dims' order.
    settings["grid axis order"] = [k.removeprefix("grid.") for k in settings if k.startswith("grid.")]
    return settings


def differences(old: str, new: str, where: tuple[str, str] = ("there", "here"), limit: int = 4) -> str:
    """The settings in which two config texts differ, in words (``where`` names the two)."""
    a, b = _settings(old), _settings(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    parts = [f"{k}: {a.get(k, '(unset)')} {where[0]}, {b.get(k, '(unset)')} {where[1]}" for k in keys[:limit]]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(parts) + more


def _slice(text: str) -> str:
    """What part of its sweep a config text describes: a shard's slice or the whole sweep."""
    match = re.search(r"^# shard (\d+/\d+):", text, re.MULTILINE)
    return f"shard {match.group(1)}" if match else "the whole sweep"


def same_settings(old: str, new: str) -> bool:
    """Whether two config texts hold the same settings, how runs are batched aside."""
    return _settings(old) == _settings(new)


def same_sweep(old: str, new: str) -> bool:
    """Whether two config texts describe the same results (the same slice, batching aside)."""
    return same_settings(old, new) and _slice(old) == _slice(new)


def refuse(where: Path, old: str, new: str) -> ExistingResultsError:
    # Equal settings: the texts differ in the shard line only (a shard file vs the whole sweep).
    diff = differences(old, new) or f"{_slice(old)} there, {_slice(new)} here"
    return ExistingResultsError(
        f"{where} holds results of a different sweep ({diff}); "
        "write elsewhere, or pass force=True (--force) to discard them"
    )


def holds_sweep(out: str | Path, text: str) -> bool:
    """Whether the file ``out`` holds the results of config text ``text`` (False: no file).

    Raises:
      ExistingResultsError: ``out`` holds a different sweep, or is no results file.
    """
    out = Path(out)
    if not out.exists():
        return False
    old = _existing_config(out)
    if not same_sweep(old, text):
        raise refuse(out, old, text)
    return True


def resumes_forced(out: str | Path, text: str) -> bool:
    """Whether an interrupted ``force`` run of the sweep ``text`` left chunks beside ``out``:
    a rerun without ``force`` resumes it and replaces whatever file ``out`` holds."""
    partial = partial_config(Path(out))
    return partial is not None and same_sweep(partial, text) and (chunk_dir(out) / FORCED).exists()


def not_results(out: Path, reason: str) -> ExistingResultsError:
    return ExistingResultsError(
        f"{out} exists and is not a dlnsim results file ({reason}); write elsewhere, "
        "or pass force=True (--force) to overwrite it"
    )


def _existing_config(out: Path) -> str:
    """The config text of the results file ``out`` (checked to parse)."""
    try:
        with xr.open_dataset(out, engine=ENGINE) as ds:
            text = str(ds.attrs["config_toml"])
    except (OSError, KeyError, ValueError) as e:
        raise not_results(out, " ".join(str(e).split())) from None  # HDF5 messages span lines
    try:
        _flatten(text)
    except tomllib.TOMLDecodeError as e:
        raise not_results(out, f"its config_toml attribute is not TOML: {e}") from None
    return text


def partial_config(out: Path) -> str | None:
    """The config text of an interrupted run's chunk directory, None where it holds no finished
    chunk (a run that stopped before its first chunk: nothing to keep, so nothing to refuse)."""
    side = chunk_dir(out)
    if not has_chunks(out):
        return None
    try:
        text = (side / "config.toml").read_text(encoding="utf-8")
        _flatten(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ExistingResultsError(
            f"{side} holds chunks of a sweep whose config.toml cannot be read ({' '.join(str(e).split())}); "
            "write elsewhere, or pass force=True (--force) to discard them"
        ) from None
    return text
