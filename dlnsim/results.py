"""A sweep's results as one ``xarray.Dataset``: chunk results placed on the grid.

:func:`assemble` is the last step of the pipeline of :mod:`dlnsim.grid` (and of a resumed or
merged sweep in :mod:`dlnsim.storage`): one dim per grid axis, then ``step`` and the vector
metrics' ``sigma`` / ``k``; the sizes that ratio axes set as coordinates (:func:`ratio_sizes`);
provenance attributes (:func:`run_attrs`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import xarray as xr

from dlnsim.config import RATIO_AXES, SweepConfig, problem_and_model
from dlnsim.metrics import Metrics

if TYPE_CHECKING:
    from dlnsim.grid import ChunkResult
    from dlnsim.plan import Chunk


def _metric_dims(name: str) -> tuple[str, ...]:
    return {"noise_err": ("sigma",), "sv": ("k",)}.get(name, ())


def metric_descriptions() -> dict[str, str]:
    """Each metric's description, read from the Attributes section of the :class:`Metrics`
    docstring (one source for ``help()`` and the results file's ``description`` attributes);
    none under ``python -OO``, which strips docstrings.

    Example:
      >>> metric_descriptions()["off_fro"]
      '||E P_perp||_F'
    """
    out: dict[str, str] = {}
    name = None
    _, _, section = inspect.cleandoc(Metrics.__doc__ or "").partition("Attributes:")
    for line in section.splitlines():
        entry = re.match(r"  (\w+): \([^)]*\) (.*)", line)  # "  name: (shape) what it is"
        if entry:
            name, out[entry[1]] = entry[1], entry[2]
        elif name and line.startswith("    "):  # a continued description
            out[name] += " " + line.strip()
    return out


def assemble(
    cfg: SweepConfig, chunks: Iterable[Chunk], results: Iterable[ChunkResult], attrs: dict[str, Any] | None = None
) -> xr.Dataset:
    """Places chunk results on the grid: an ``xarray.Dataset`` with one dim per axis + step.

    Data variables: every :class:`Metrics` field (dims: grid axes, ``step`` and
    ``sigma`` / ``k`` for the vector metrics), ``diverged`` and ``diverged_at``.
    """
    shape = cfg.shape
    data: dict[str, np.ndarray] = {}
    diverged = np.zeros(shape, bool)
    diverged_at = np.full(shape, -1, np.int32)
    flat = lambda a: a.reshape((cfg.n_runs, *a.shape[len(shape) :]))  # noqa: E731  a view: runs in C order
    for chunk, res in zip(chunks, results):
        runs = np.asarray(chunk.runs)
        for name, values in res.metrics.items():
            if name not in data:
                data[name] = np.full(shape + values.shape[1:], np.nan, values.dtype)
            flat(data[name])[runs] = values
        flat(diverged)[runs] = res.diverged
        flat(diverged_at)[runs] = res.diverged_at
    dims, coords = _layout(cfg)
    data.update(diverged=diverged, diverged_at=diverged_at)
    variables = {name: (dims[name], data[name]) for name in dims}
    coords.update(ratio_sizes(cfg))
    ds = xr.Dataset(variables, coords=coords, attrs=dict(attrs or {}))
    for name, text in metric_descriptions().items():
        ds[name].attrs["description"] = text
    ds["diverged"].attrs["description"] = (
        f"the data loss became non-finite or exceeded divergence_cap = {cfg.train.divergence_cap:g} "
        "times its initial value: the run was frozen there"
    )
    ds["diverged_at"].attrs["description"] = "step at which the run diverged and was frozen, -1 if never"
    for ratio, (size, of) in RATIO_AXES.items():
        if ratio in cfg.grid:
            ds[size].attrs["description"] = f"{size} of each cell: {ratio} x {of}, rounded to the nearest integer"
    return ds


def _layout(cfg: SweepConfig) -> tuple[dict[str, tuple[str, ...]], dict[str, Any]]:
    """The dims of each variable of the sweep ``cfg``'s dataset, and the values of its grid
    axes, ``step``, ``sigma`` and ``k`` (what :func:`assemble` writes and :func:`check_layout` checks)."""
    axes = tuple(cfg.grid)
    dims = {name: (*axes, "step", *_metric_dims(name)) for name in Metrics._fields}
    dims.update(diverged=axes, diverged_at=axes)
    coords: dict[str, Any] = {a: list(v) for a, v in cfg.grid.items()}
    coords.update(
        step=np.arange(cfg.train.n_logs) * cfg.train.log_every,
        sigma=list(cfg.problem.test_sigmas),
        k=np.arange(cfg.train.n_singular),
    )
    return dims, coords


def run_shapes(cfg: SweepConfig) -> dict[str, tuple[int, ...]]:
    """The shape of each metric's values for one run of the sweep ``cfg`` (logged steps, then
    noise levels or singular values).

    Example:
      >>> run_shapes(dlnsim.SweepConfig(train=dlnsim.TrainConfig(steps=100, log_every=50)))["sv"]
      (3, 8)
    """
    extra = {"sigma": len(cfg.problem.test_sigmas), "k": cfg.train.n_singular}
    return {name: (cfg.train.n_logs, *(extra[d] for d in _metric_dims(name))) for name in Metrics._fields}


def check_layout(ds: xr.Dataset, cfg: SweepConfig) -> None:
    """Checks that ``ds`` has the layout :func:`assemble` gives the sweep ``cfg``: every
    variable with its dims and kind of values, the coordinates of the grid axes, ``step``,
    ``sigma`` and ``k``, and a shard's attributes, so a file edited by hand or cut down is
    refused when read rather than summarised wrongly.

    Raises:
      ValueError: naming the first thing that differs.
    """
    expect, coords = _layout(cfg)
    kinds = {"diverged": ("b", "flags"), "diverged_at": ("iu", "integers")}
    for name, dims in expect.items():
        if name not in ds.data_vars:
            raise ValueError(f"no variable {name!r}")
        if ds[name].dims != dims:
            raise ValueError(f"{name} has dims {ds[name].dims} where its config_toml gives {dims}")
        kind, what = kinds.get(name, ("f", "floats"))
        if ds[name].dtype.kind not in kind:
            raise ValueError(f"{name} holds {ds[name].dtype} values, not {what}")
    for name, values in coords.items():
        have, want = ds[name].values, np.asarray(values, float)
        if have.dtype.kind not in "iuf" or have.shape != want.shape or not np.allclose(have, want, rtol=1e-12, atol=0):
            raise ValueError(f"{name} = {_values(have)} where its config_toml gives {name} = {_values(want)}")
    if "shard" in ds.attrs:
        shard = re.fullmatch(r"(\d+)/(\d+)", str(ds.attrs["shard"]))
        runs = np.atleast_1d(np.asarray(ds.attrs.get("shard_runs", [-1])))
        if not shard or int(shard[1]) >= int(shard[2]):
            raise ValueError(f"shard = {ds.attrs['shard']!r} is not I/N with 0 <= I < N")
        if runs.dtype.kind not in "iu" or runs.size == 0 or runs.min() < 0 or runs.max() >= cfg.n_runs:
            raise ValueError(f"a shard file needs shard_runs, run indices in [0, {cfg.n_runs})")


def _values(a: np.ndarray) -> str:
    """A coordinate's values, in short."""
    shown = ", ".join(f"{v:g}" if a.dtype.kind in "iuf" else repr(v) for v in a[:8]) + (", ..." if a.size > 8 else "")
    return shown or "(none)"


def ratio_sizes(cfg: SweepConfig) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The sizes that the ratio axes of the grid set (``m`` for ``m_over_d``, ``s`` for
    ``s_over_m``), each over the grid axes it depends on: ``(dims, values)`` per size.

    Example:
      >>> cfg = dlnsim.SweepConfig(problem=dlnsim.ProblemConfig(d=40, m=20, s=2), grid={"m_over_d": [0.25, 0.5]})
      >>> ratio_sizes(cfg)
      {'m': (('m_over_d',), array([10, 20]))}
    """
    m_from = ("d", "m_over_d") if "m_over_d" in cfg.grid else ("m",)
    depends = {"m": m_from, "s": (*m_from, "s_over_m")}
    out = {}
    for ratio, (size, _) in RATIO_AXES.items():
        if ratio in cfg.grid:
            dims = tuple(a for a in cfg.grid if a in depends[size])
            values = np.zeros([len(cfg.grid[a]) for a in dims], np.int64)
            for idx in np.ndindex(values.shape):
                problem, _ = problem_and_model(cfg, {a: cfg.grid[a][i] for a, i in zip(dims, idx)})
                values[idx] = getattr(problem, size)
            out[size] = (dims, values)
    return out


def run_attrs(cfg: SweepConfig) -> dict[str, Any]:
    """Provenance attributes: the full config (TOML text), versions, device, precision."""
    from dlnsim import __version__
    from dlnsim.configfile import dumps_config

    dev = jax.devices()[0]
    return {
        "config_toml": dumps_config(cfg),
        "dlnsim_version": __version__,
        "jax_version": jax.__version__,
        "device_kind": f"{dev.platform}: {dev.device_kind}",
        "dtype": cfg.train.dtype,
        "precision": cfg.train.precision,
    }
