"""Reductions of a sweep's results: per-run summaries, then statistics over seeds.

:func:`per_run` (:mod:`~dlnsim.reduce.runs`) turns the metric histories of
:func:`dlnsim.sweep` into numbers per run (phase durations, fitted decay rates, final
values) next to their theoretical predictions (SCIENCE.md section 3); :func:`reduce`
(:mod:`~dlnsim.reduce.seeds`) then summarises them over the ``seed`` axis with diverged
runs masked and counted; :func:`summary_table` (:mod:`~dlnsim.reduce.table`) prints the
result. The package itself is callable, so ``dlnsim.reduce(ds)`` is :func:`reduce`
while ``dlnsim.reduce.summary_table`` stays reachable.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import xarray as xr

from dlnsim.reduce.runs import EPS3_REL, config_of, first_step, fit_rate, grid_dims, hparam, per_run
from dlnsim.reduce.seeds import STATS, reduce, t975
from dlnsim.reduce.table import summary_table

__all__ = [
    "EPS3_REL",
    "STATS",
    "config_of",
    "first_step",
    "fit_rate",
    "grid_dims",
    "hparam",
    "per_run",
    "reduce",
    "summary_table",
    "t975",
]


class _CallableModule(types.ModuleType):
    """``dlnsim.reduce`` is both this package and, when called, :func:`reduce`.

    The API promises ``dlnsim.reduce(ds)`` and ``dlnsim.reduce.summary_table(ds)``; a
    function export would shadow the package, so the package is made callable instead.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> xr.Dataset:
        return reduce(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
