"""TOML sweep config files: parse, validate, override and write a :class:`SweepConfig`.

:mod:`~dlnsim.configfile.schema` says what a file may hold, :mod:`~dlnsim.configfile.parse`
turns text (or a file, the one side effect) into a validated config and
:mod:`~dlnsim.configfile.write` turns a config back into canonical TOML. The file format
is described in :mod:`dlnsim.configfile.parse`.
"""

from dlnsim.configfile.parse import DEFAULT_TOML, default_config, load_config, load_config_text
from dlnsim.configfile.schema import REQUIRED_SECTIONS, SCHEMA, SECTIONS, ConfigError
from dlnsim.configfile.write import config_to_dict, dumps_config

__all__ = [
    "DEFAULT_TOML",
    "REQUIRED_SECTIONS",
    "SCHEMA",
    "SECTIONS",
    "ConfigError",
    "config_to_dict",
    "default_config",
    "dumps_config",
    "load_config",
    "load_config_text",
]
