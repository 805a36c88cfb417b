"""Configs back to text: a :class:`SweepConfig` as plain data and as canonical TOML."""

from __future__ import annotations

import dataclasses
from typing import Any

from dlnsim.config import SweepConfig
from dlnsim.configfile.schema import SCHEMA, SECTIONS, toml_value
from dlnsim.hparams import HParams


def config_to_dict(cfg: SweepConfig) -> dict[str, Any]:
    """Plain-data form of a sweep config, one table per section."""
    return {
        "problem": dataclasses.asdict(cfg.problem),
        "model": dataclasses.asdict(cfg.model),
        "train": dataclasses.asdict(cfg.train),
        "hparams": dict(cfg.hparams),
        "grid": {k: list(v) for k, v in cfg.grid.items()},
        "sweep": {"teacher_per_seed": cfg.teacher_per_seed, "chunk_size": cfg.chunk_size, "max_memory": cfg.max_memory},
    }


def dumps_config(cfg: SweepConfig) -> str:
    """The full config as canonical TOML text (every field written, defaults included).

    Two configs describe the same sweep exactly when their texts are equal, and
    ``load_config_text(dumps_config(cfg))`` rebuilds an equivalent config.

    Example:
      >>> from dlnsim.configfile import default_config, load_config_text
      >>> cfg = default_config()
      >>> dumps_config(load_config_text(dumps_config(cfg))) == dumps_config(cfg)
      True
    """
    d = config_to_dict(cfg)
    d["hparams"] = HParams(**cfg.hparams)._asdict()  # explicit: defaults may change
    axes = d["grid"]
    d["grid"] = {a: [float(x) if SCHEMA["grid"][a] == "floats" else x for x in vals] for a, vals in axes.items()}
    lines = []
    for section in SECTIONS:
        table = {k: v for k, v in d[section].items() if v is not None}
        lines.append(f"[{section}]")
        for key, value in table.items():
            if SCHEMA[section].get(key) == "float":
                value = float(value)
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
