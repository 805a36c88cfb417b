"""Shared plumbing of the reproduce experiments: configs, resumable sweeps, Markdown."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from dlnsim.config import SweepConfig
from dlnsim.configfile import load_config
from dlnsim.plan import run_teacher
from dlnsim.problem import make_problem
from dlnsim.storage import run_sweep

# The experiment configs ship inside the package (package data), so any install has them.
EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"


@dataclasses.dataclass(frozen=True)
class Context:
    """Where and at which size an experiment runs.

    Attributes:
      out: output directory.
      full: the paper's sizes (``NAME_full.toml``, for a GPU).
      smoke: tiny sizes and few steps (tests); overrides the config's sizes.
      log: progress messages (the CLI passes ``print``; silent by default).
    """

    out: Path
    full: bool = False
    smoke: bool = False
    log: Callable[[str], None] = lambda msg: None

    @property
    def suffix(self) -> str:
        return "_smoke" if self.smoke else "_full" if self.full else ""


class Outcome(NamedTuple):
    """What an experiment returns: its report and the data behind it (for tests and notebooks)."""

    report: Path  # the Markdown report
    pictures: tuple[Path, ...]  # PNGs written
    data: dict[str, Any]  # datasets and derived numbers


def config(ctx: Context, name: str, smoke: Iterable[str] = (), extra: Iterable[str] = ()) -> SweepConfig:
    """``dlnsim/reproduce/experiments/NAME[_full].toml`` with the smoke overrides (in smoke mode) and ``extra``."""
    path = EXPERIMENTS_DIR / f"{name}_full.toml"
    if not (ctx.full and not ctx.smoke and path.is_file()):  # no _full variant: same sizes in both
        path = EXPERIMENTS_DIR / f"{name}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"experiment config {path} is missing (a broken install: reinstall dlnsim)")
    return load_config(path, [*(smoke if ctx.smoke else ()), *extra])


def sweep(ctx: Context, cfg: SweepConfig, stem: str) -> xr.Dataset:
    """Runs (or resumes, or reloads) ``cfg`` into ``OUT/STEM[_full|_smoke].nc``."""
    path = ctx.out / f"{stem}{ctx.suffix}.nc"
    ctx.log(f"[reproduce] {stem}: {cfg.n_runs} runs x {cfg.train.steps} steps -> {path}")
    ds, skipped = run_sweep(cfg, path)
    if skipped:
        ctx.log(f"[reproduce] {stem}: {skipped} chunks reused from {path}")
    return ds


def b_singular_values(cfg: SweepConfig, run: Mapping[str, Any]) -> np.ndarray:
    """Singular values of ``B = A U`` of the teacher a run of ``cfg`` trained on, from the
    run's grid values (axes it lacks at their base values, as :func:`dlnsim.plan.run_teacher`)."""
    t = run_teacher(cfg, run)
    b = make_problem(t.problem, key=t.key(), dtype=cfg.train.dtype).b
    return np.linalg.svd(np.asarray(b, float), compute_uv=False)


def fmt(v: Any, digits: int = 3) -> str:
    """A number for a report table ("-" for NaN)."""
    if isinstance(v, str):
        return v
    v = float(v)
    if not math.isfinite(v):
        return "-" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sizes(cfg: SweepConfig) -> str:
    """One line: problem, model and training sizes of a config (a swept value is in the grid part only).

    Example:
      >>> cfg = SweepConfig(grid={"depth": [2, 3], "weight_decay": [0.0, 0.1]}, hparams={"lr": 0.05})
      >>> sizes(cfg).split("; ")[1:3]
      ['width 100, linear', '2000 steps of gd, float32, lr=0.05, init_scale=1, train_noise=0']
    """
    p, m, t = cfg.problem, cfg.model, cfg.train
    fixed = lambda items: ", ".join(text for name, text in items if name not in cfg.grid)  # noqa: E731
    grid = ", ".join(f"{a} {list(v)}" for a, v in cfg.grid.items())
    problem = [("d", f"d={p.d}"), ("m", f"m={p.m}"), ("s", f"s={p.s}"), ("n_train", f"N={p.n_train}")]
    model = [("depth", f"L={m.depth}"), ("width", f"width {m.width}"), ("", m.activation)]
    hps = {k: v for k, v in cfg.hparams.items() if not (k == "momentum" and t.optimizer == "gd")}  # gd has none
    train = [("", f"{t.steps} steps of {t.optimizer}"), ("", t.dtype)] + [(k, f"{k}={v:g}") for k, v in hps.items()]
    return (
        f"{fixed(problem)}, T={p.n_test} test signals, whitened={p.whiten}; {fixed(model)}; {fixed(train)}; "
        f"grid: {grid}; teacher per seed: {cfg.teacher_per_seed}"
    )


def seed_stats(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """Median, min and max over the ``seed`` axis."""
    return da.median("seed"), da.min("seed"), da.max("seed")


def write_report(ctx: Context, name: str, text: str) -> Path:
    path = ctx.out / f"{name}{ctx.suffix}.md"
    path.write_text(text.rstrip() + "\n", encoding="utf-8")
    return path
