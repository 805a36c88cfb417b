"""dlnsim: vectorised simulation of deep linear networks solving subspace inverse problems.

The public API: configs, one-network training, sweeps, results files, reductions, theory,
pictures (:mod:`dlnsim.plotting`). Each name is imported on first use: ``import dlnsim``
itself loads neither jax nor xarray, so the ``dlnsim`` command answers ``--help`` and
argument errors at once, and a Ctrl-C while it starts up is an interrupt like any other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module that defines it; None: the name is a module of dlnsim.
_API: dict[str, str | None] = {
    "GRID_AXES": "dlnsim.config",
    "ConfigError": "dlnsim.configfile",
    "Data": "dlnsim.problem",
    "HParams": "dlnsim.hparams",
    "Metrics": "dlnsim.metrics",
    "ModelConfig": "dlnsim.config",
    "Problem": "dlnsim.problem",
    "Progress": "dlnsim.grid",
    "ProgressBar": "dlnsim.cli.progress",
    "ProblemConfig": "dlnsim.config",
    "Run": "dlnsim.training",
    "SweepConfig": "dlnsim.config",
    "TrainConfig": "dlnsim.config",
    "TrainState": "dlnsim.step",
    "dumps_config": "dlnsim.configfile",
    "end_to_end": "dlnsim.model",
    "forward": "dlnsim.model",
    "init_params": "dlnsim.model",
    "load_config": "dlnsim.configfile",
    "make_problem": "dlnsim.problem",
    "metrics": None,
    "open_results": "dlnsim.storage",
    "plotting": None,  # matplotlib
    "raw_data": "dlnsim.problem",
    "reduce": None,  # a callable module: dlnsim.reduce(ds); dlnsim.reduce.summary_table
    "reduce_data": "dlnsim.problem",
    "run_sweep": "dlnsim.storage",
    "simulate": "dlnsim.training",
    "summary_table": "dlnsim.reduce",
    "sweep": "dlnsim.grid",
    "theory": None,
    "train": "dlnsim.training",
    "use_compile_cache": "dlnsim.compile_cache",
    "use_cpu_cores": "dlnsim.devices",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'dlnsim' has no attribute {name!r}")
    home = _API[name]
    value = importlib.import_module(f"dlnsim.{name}") if home is None else getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# The same names for type checkers and editors (`X as X` marks a re-export); tests/test_api.py
# checks that they agree with _API.
if TYPE_CHECKING:
    from dlnsim import metrics as metrics, plotting as plotting, reduce as reduce, theory as theory
    from dlnsim.config import (
        GRID_AXES as GRID_AXES,
        ModelConfig as ModelConfig,
        ProblemConfig as ProblemConfig,
        SweepConfig as SweepConfig,
        TrainConfig as TrainConfig,
    )
    from dlnsim.configfile import ConfigError as ConfigError, dumps_config as dumps_config, load_config as load_config
    from dlnsim.compile_cache import use_compile_cache as use_compile_cache
    from dlnsim.devices import use_cpu_cores as use_cpu_cores
    from dlnsim.cli.progress import ProgressBar as ProgressBar
    from dlnsim.grid import Progress as Progress, sweep as sweep
    from dlnsim.hparams import HParams as HParams
    from dlnsim.metrics import Metrics as Metrics
    from dlnsim.model import end_to_end as end_to_end, forward as forward, init_params as init_params
    from dlnsim.problem import (
        Data as Data,
        Problem as Problem,
        make_problem as make_problem,
        raw_data as raw_data,
        reduce_data as reduce_data,
    )
    from dlnsim.reduce import summary_table as summary_table
    from dlnsim.storage import open_results as open_results, run_sweep as run_sweep
    from dlnsim.step import TrainState as TrainState
    from dlnsim.training import Run as Run, simulate as simulate, train as train
