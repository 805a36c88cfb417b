"""TOML sweep config files: parse, validate and override them into a :class:`SweepConfig`.

A config file has one table per part of :func:`dlnsim.configfile.config_to_dict`::

    [problem]   # ProblemConfig fields (d, m, s, n_train, ...)
    [model]     # ModelConfig fields (depth, width, init, activation)
    [train]     # TrainConfig fields (steps, log_every, optimizer, ...)
    [hparams]   # optional: base values of the traced numbers (lr, weight_decay, ...)
    [grid]      # swept axes: axis = [values, ...]; at least one axis
    [sweep]     # optional: teacher_per_seed, chunk_size, max_memory (how runs are batched)

``[problem]``, ``[model]``, ``[train]`` and ``[grid]`` are required (they may be
empty except ``[grid]``; a missing key takes the engine default), so a file always
states what it sweeps. ``[hparams]`` and ``[sweep]`` are optional. Unknown sections
or keys, wrong types and out-of-range values raise :class:`ConfigError`, whose
message names the key path (``train.lr``), the value and what is allowed.

Overrides (``--set train.steps=500``) are ``section.key=value`` strings whose value
is parsed as a TOML value (``grid.depth=[2,3]``, ``train.optimizer="adam"``); a value
that is not valid TOML is taken as a bare string (``train.optimizer=adam``).

This module only turns text into configs (:mod:`dlnsim.configfile.write` goes back);
reading the file is the one side effect, and only :func:`load_config` does it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dlnsim.config import GRID_AXES, RATIO_AXES, STATIC_AXES, SweepConfig
from dlnsim.configfile.schema import (
    ALLOWED,
    DATACLASS_SECTIONS,
    REQUIRED_SECTIONS,
    SCHEMA,
    SECTIONS,
    ConfigError,
    bad,
    coerce,
    show,
)
from dlnsim.hparams import HParams

# The built-in default phase diagram (``dlnsim sweep`` with no config; also
# examples/default.toml): depth x weight decay x seeds on a small whitened problem,
# sized to finish in well under 3 minutes on 2 CPU cores. Whitened codes make the
# closed-form limit and the collapse thresholds of SCIENCE.md section 3 exact.
DEFAULT_TOML = """\
# dlnsim built-in default: phase diagram over depth x weight decay x 8 seeds.
[problem]
d = 60
m = 30
s = 4
n_train = 60
n_test = 200
operator = "gaussian"
whiten = true
test_sigmas = [0.0, 0.1, 0.5]

[model]
width = 64
init = "lecun"

[train]
steps = 1500
log_every = 50
optimizer = "gd"
dtype = "float32"

[hparams]
lr = 0.05

[grid]
depth = [1, 2, 3, 4]
# 0 leaves E P_perp at its random init (noise amplified, D1/D4); 1.0 is past the collapse
# threshold to E = 0 for depth >= 3 (SCIENCE.md section 3).
weight_decay = [0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""


def _unknown_key(section: str, key: str) -> ConfigError:
    """The error for a key its section does not have, naming the sections that do have it
    (``train.lr``: the step size is a traced number, set in [hparams] or swept in [grid])."""
    message = f"{section}.{key} is an unknown key: [{section}] allows {', '.join(SCHEMA[section])}"
    elsewhere = [f"[{s}]" for s in SECTIONS if s != section and key in SCHEMA[s]]
    if elsewhere:
        message += f"; {key} belongs in {' or '.join(elsewhere)}"
    return ConfigError(f"{section}.{key}", message)


def _check_structure(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, table in doc.items():
        if section not in SCHEMA:
            allowed = ", ".join(f"[{s}]" for s in SECTIONS)
            if isinstance(table, dict):
                raise ConfigError(section, f"[{section}] is an unknown section: allowed sections are {allowed}")
            raise ConfigError(
                section, f"{section} = {show(table)} is an unknown top-level key: keys belong in a section ({allowed})"
            )
        if not isinstance(table, dict):
            raise ConfigError(section, f"{section} = {show(table)} is invalid: [{section}] must be a table (section)")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise _unknown_key(section, key)
            if isinstance(value, dict):
                raise bad(f"{section}.{key}", value, ALLOWED[SCHEMA[section][key]])
        out[section] = dict(table)
    for section in REQUIRED_SECTIONS:
        if section not in out:
            need = ", ".join(f"[{s}]" for s in REQUIRED_SECTIONS)
            raise ConfigError(section, f"[{section}] is missing: a config file must have the sections {need}")
    if not out["grid"]:
        raise ConfigError(
            "grid", "[grid] is empty: it must sweep at least one axis (e.g. seed = [0]); axes: " + ", ".join(GRID_AXES)
        )
    return out


_CLASS_PREFIX = re.compile(
    r"\b(ProblemConfig|ModelConfig|TrainConfig|HParams|SweepConfig\.grid|SweepConfig\.hparams|SweepConfig)\."
)
_SECTION_OF = {
    "ProblemConfig": "problem",
    "ModelConfig": "model",
    "TrainConfig": "train",
    "HParams": "hparams",
    "SweepConfig.grid": "grid",
    "SweepConfig.hparams": "hparams",
    "SweepConfig": "sweep",
}


def _reraise(key: str, err: ValueError) -> ConfigError:
    """Rewrites an engine ValueError in config-file terms (``ProblemConfig.m`` -> ``problem.m``)."""
    msg = _CLASS_PREFIX.sub(lambda m: _SECTION_OF[m.group(1)] + ".", str(err))
    if key.startswith("grid."):  # "hparams.lr = -1.0 is invalid" came from a grid value
        axis = key[len("grid.") :]
        msg = re.sub(rf"^(?!grid\.)\w+\.{axis} = ", f"{key} value ", msg)
    return ConfigError(key, msg if msg.startswith(key) else f"{key}: {msg}")


def _build(doc: dict[str, dict[str, Any]]) -> SweepConfig:
    """Typed, validated :class:`SweepConfig` from the checked section tables."""
    typed = {s: {k: coerce(f"{s}.{k}", SCHEMA[s][k], v) for k, v in t.items()} for s, t in doc.items()}
    parts: dict[str, Any] = {}
    for section, cls in DATACLASS_SECTIONS.items():
        table = typed.get(section, {})
        if "test_sigmas" in table:
            table["test_sigmas"] = tuple(table["test_sigmas"])
        try:
            parts[section] = cls(**table)
        except ValueError as e:
            field = re.search(r"\w+Config\.(\w+)", str(e))
            raise _reraise(f"{section}.{field.group(1)}" if field else section, e) from None
    hparams = typed.get("hparams", {})
    for k, v in hparams.items():
        try:
            HParams(**{k: v})
        except ValueError as e:
            raise _reraise(f"hparams.{k}", e) from None
    sweep = typed.get("sweep", {})
    base = dict(**parts, hparams=hparams, **sweep)
    try:
        SweepConfig(**base)
    except ValueError as e:
        field = re.search(r"SweepConfig\.(hparams\.\w+|\w+)", str(e))  # hparams.lr: a base value's dtype
        key = field.group(1) if field else ""
        raise _reraise(key if key.startswith("hparams.") else f"sweep.{key}".rstrip("."), e) from None
    # One axis at a time first, so an error names the axis it comes from; not the problem sizes
    # when a ratio axis sets some of them (a size is valid or not with the cell's other sizes).
    ratios = any(a in RATIO_AXES for a in typed["grid"])
    for axis, values in typed["grid"].items():
        if ratios and STATIC_AXES.get(axis) == "problem":
            continue
        try:
            SweepConfig(**base, grid={axis: values})
        except ValueError as e:
            raise _reraise(f"grid.{axis}", e) from None
    try:
        return SweepConfig(**base, grid=typed["grid"])
    except ValueError as e:  # axes valid alone, not together
        field = re.search(r"SweepConfig\.grid\.(\w+)", str(e))
        raise _reraise(f"grid.{field.group(1)}" if field else "grid", e) from None


# An override value that is not TOML but a plain word is that word: --set train.optimizer=adam.
_BARE_WORD = re.compile(r"[A-Za-z0-9_.+-]+")  # adam, float64, 2GB


def _apply_overrides(doc: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items()}
    for item in overrides:
        path, eq, text = item.partition("=")
        path, text = path.strip(), text.strip()
        section, dot, key = path.partition(".")
        if not eq or not dot or not key or "." in key:
            raise ConfigError(
                path or item, f"override {item!r} is invalid: must look like section.key=value (e.g. train.steps=500)"
            )
        if section not in SCHEMA:
            allowed = ", ".join(SECTIONS)
            raise ConfigError(path, f"{path} is an unknown key: sections are {allowed}")
        if key not in SCHEMA[section]:
            raise _unknown_key(section, key)
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as e:
            if not _BARE_WORD.fullmatch(text):
                why = re.sub(r" \(at line \d+, column \d+\)$", "", str(e))  # positions in "v = ..."
                raise ConfigError(
                    path, f"{path} = {text!r} is invalid: not a TOML value ({why}); quote strings or write a bare word"
                ) from None
            value = text  # a bare word: train.optimizer=adam
        table = doc.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(section, f"{section} = {show(table)} is invalid: [{section}] must be a table (section)")
        table[key] = value
    return doc


def load_config_text(text: str, overrides: Iterable[str] = (), *, source: str = "<config>") -> SweepConfig:
    """Parses and validates TOML config text, after applying ``section.key=value`` overrides.

    Args:
      text: the TOML document.
      overrides: ``"section.key=value"`` strings; values are TOML values.
      source: name used in syntax-error messages (the file path).

    Returns:
      The validated :class:`SweepConfig`.

    Raises:
      ConfigError: naming the key path, the value and what is allowed.

    Example:
      >>> cfg = load_config_text(DEFAULT_TOML, ["train.steps=100", "grid.depth=[2, 3]"])
      >>> cfg.train.steps, cfg.grid["depth"]
      (100, (2, 3))
      >>> load_config_text(DEFAULT_TOML, ["train.lr=0.1"])
      Traceback (most recent call last):
      ...
      dlnsim.configfile.ConfigError: train.lr is an unknown key: [train] allows steps, log_every, optimizer, loss, dtype, precision, data, backward, divergence_cap, n_singular, balance, balance_every; lr belongs in [hparams] or [grid]
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"{source}: not valid TOML: {e}") from None
    return _build(_check_structure(_apply_overrides(doc, overrides)))


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> SweepConfig:
    """Reads a TOML config file (see the module docstring for its sections).

    Args:
      path: the ``.toml`` file.
      overrides: ``"section.key=value"`` strings applied after reading.

    Raises:
      ConfigError: the file cannot be read, is not TOML, or is invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except OSError as e:
        raise ConfigError("", f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            "", f"config file {str(path)!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})"
        ) from None
    return load_config_text(text, overrides, source=str(path))


def default_config(overrides: Iterable[str] = ()) -> SweepConfig:
    """The built-in default phase diagram (:data:`DEFAULT_TOML`)."""
    return load_config_text(DEFAULT_TOML, overrides, source="<built-in default>")
