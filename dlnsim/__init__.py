"""dlnsim: vectorised simulation of deep linear networks solving subspace inverse problems.

The public API: configs, one-network training, sweeps, theory and metrics.
"""

from dlnsim import theory
from dlnsim import reduce  # callable module: dlnsim.reduce(ds); dlnsim.reduce.summary_table
from dlnsim.reduce import summary_table
from dlnsim.config import GRID_AXES, ModelConfig, ProblemConfig, SweepConfig, TrainConfig
from dlnsim.hparams import HParams
from dlnsim.metrics import Metrics
from dlnsim.model import end_to_end, forward, init_params
from dlnsim.problem import Data, Problem, make_problem, raw_data, reduce_data
from dlnsim.grid import sweep
from dlnsim.configfile import ConfigError, dumps_config, load_config
from dlnsim.storage import open_results, run_sweep
from dlnsim.train import Run, TrainState, simulate, train

__version__ = "0.1.0"

__all__ = [
    "GRID_AXES",
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
    "end_to_end",
    "forward",
    "init_params",
    "make_problem",
    "raw_data",
    "reduce",
    "reduce_data",
    "simulate",
    "summary_table",
    "sweep",
    "ConfigError",
    "dumps_config",
    "load_config",
    "open_results",
    "run_sweep",
    "theory",
    "train",
]
