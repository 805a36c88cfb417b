"""dlnsim: vectorised simulation of deep linear networks solving subspace inverse problems.

The public API: configs, one-network training, sweeps, results files, reductions, theory.
``dlnsim.plotting`` (matplotlib) is imported on first use.
"""

from dlnsim import metrics, theory
from dlnsim import reduce  # callable module: dlnsim.reduce(ds); dlnsim.reduce.summary_table
from dlnsim.config import GRID_AXES, ModelConfig, ProblemConfig, SweepConfig, TrainConfig
from dlnsim.configfile import ConfigError, dumps_config, load_config
from dlnsim.devices import use_cpu_cores
from dlnsim.grid import sweep
from dlnsim.hparams import HParams
from dlnsim.metrics import Metrics
from dlnsim.model import end_to_end, forward, init_params
from dlnsim.problem import Data, Problem, make_problem, raw_data, reduce_data
from dlnsim.reduce import summary_table
from dlnsim.storage import open_results, run_sweep
from dlnsim.train import Run, TrainState, simulate, train

__version__ = "0.1.0"

__all__ = [
    "GRID_AXES",
    "ConfigError",
    "Data",
    "HParams",
    "Metrics",
    "ModelConfig",
    "Problem",
    "ProblemConfig",
    "Run",
    "SweepConfig",
    "TrainConfig",
    "TrainState",
    "dumps_config",
    "end_to_end",
    "forward",
    "init_params",
    "load_config",
    "make_problem",
    "metrics",
    "open_results",
    "plotting",
    "raw_data",
    "reduce",
    "reduce_data",
    "run_sweep",
    "simulate",
    "summary_table",
    "sweep",
    "theory",
    "train",
    "use_cpu_cores",
]


def __getattr__(name: str):
    if name == "plotting":  # matplotlib is heavy: import it only when pictures are asked for
        import importlib

        return importlib.import_module("dlnsim.plotting")
    raise AttributeError(f"module 'dlnsim' has no attribute {name!r}")
