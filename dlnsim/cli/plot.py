"""``dlnsim plot``: its arguments checked against the results file, then one picture drawn.

Every option is validated here, before :mod:`dlnsim.plotting` runs, so a wrong axis,
metric, noise level or output path is one line naming what the file or the command
allows (the library's own errors name its arguments, not the command's options).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


from dlnsim.cli._common import IMAGE_FORMATS, PLOT_FUNCS, SWEEP_METRIC, Fail, read_results_to_reduce

# The options each kind uses; any other given is refused rather than silently ignored.
_OPTIONS = {"heatmap": ("x", "y", "metric", "sigma"), "curves": ("metric", "sigma"), "offsubspace": (), "noise": ()}


def pick_axes(ds: Any, x: str | None, y: str | None) -> tuple[str, str]:
    """Heatmap axes: the given ones, else weight decay x depth, else the first two non-seed axes."""
    axes = [d for d in ds["diverged"].dims if d != "seed"]  # seeds are reduced (median) in every cell
    for name, axis in (("--x", x), ("--y", y)):
        if axis is not None and axis not in axes:
            what = "a grid axis of this results file"
            if axis == "seed":
                what = "a heatmap axis (seeds are reduced in every cell)"
            raise Fail(f"{name} {axis!r} is not {what}: heatmap axes are {', '.join(axes) or 'none'}")
    if x is not None and x == y:
        raise Fail(f"--x and --y are both {x!r}: give two different axes of {', '.join(axes)}")
    several = [d for d in axes if ds.sizes[d] > 1]
    prefer = [a for a in ("weight_decay", "depth") if a in several] + [
        a for a in several if a not in ("weight_decay", "depth")
    ]
    x = x or next((a for a in prefer if a != y), None)
    y = y or next((a for a in prefer if a != x), None)
    if x is None or y is None:
        raise Fail(
            f"a heatmap needs two grid axes with several values (this sweep has {', '.join(several) or 'none'}); "
            "use --kind curves"
        )
    return x, y


def _metric(ds: Any, kind: str, metric: str) -> tuple[str, ...]:
    """Checks ``metric`` for a picture of ``kind``; returns its dims beyond the runs and steps."""
    from dlnsim import reduce

    runs = reduce.grid_dims(ds)
    histories = [n for n, v in ds.data_vars.items() if "step" in v.dims]
    if metric in histories:
        return tuple(d for d in ds[metric].dims if d not in runs and d != "step")
    per_run = reduce.per_run(ds)
    if kind == "curves":
        what = "has no step history" if metric in per_run or metric in ds else "is not a metric of this file"
        raise Fail(f"--metric {metric!r} {what}: curves take one of {', '.join(histories)}")
    if metric not in per_run:
        stats = [n for n in per_run.data_vars if n.removeprefix("final_") not in histories]
        raise Fail(
            f"--metric {metric!r} is not a metric of this file: give a data variable ({', '.join(histories)}; "
            "the final value is shown), final_<one of them>, or a statistic of dlnsim.reduce.per_run "
            f"({', '.join(stats)})"
        )
    extra = tuple(d for d in per_run[metric].dims if d not in runs)
    if "k" in extra:  # only a data variable gets a k selected (k = 0, the largest)
        base = metric.removeprefix("final_")
        hint = f"; --metric {base} shows its final value at k = 0" if base in histories else ""
        raise Fail(f"--metric {metric!r} is not a scalar (one value per k): a heatmap needs one number per run{hint}")
    return extra


def _sigma(ds: Any, metric: str, extra: tuple[str, ...], sigma: float | None) -> dict[str, float] | None:
    """The ``select`` of a metric over test noise: ``--sigma`` (a level of the file) or the largest."""
    from dlnsim.plotting._common import stored

    levels = ds["sigma"].values
    if "sigma" not in extra:
        if sigma is not None:
            raise Fail(f"--sigma applies to a metric over test noise (e.g. noise_err), not to {metric}")
        return None
    if sigma is None:
        return {"sigma": float(levels.max())}
    match = stored(levels, sigma)
    if match is None:
        shown = ", ".join(f"{v:g}" for v in levels)
        raise Fail(f"--sigma {sigma:g} is not a test noise level of this file: levels are {shown}")
    return {"sigma": float(match)}


def _selection(ds: Any, given: list[str], shown: tuple[str, ...]) -> dict[str, Any]:
    """``--select AXIS=VALUE`` options: each a grid axis the picture does not show, at a value
    of the file (matched as a number, so ``weight_decay=1e-2`` finds 0.01)."""
    from dlnsim.plotting._common import stored

    axes = [d for d in ds["diverged"].dims if d != "seed" and d not in shown]
    out: dict[str, Any] = {}
    for item in given:
        axis, sep, text = item.partition("=")
        if axis in out:
            raise Fail(f"--select {item!r}: {axis} is selected twice")
        if not sep or axis not in axes:
            raise Fail(
                f"--select {item!r}: give AXIS=VALUE with AXIS one of the axes this picture fixes "
                f"({', '.join(axes) or 'none'})"
            )
        values = ds[axis].values
        out[axis] = stored(values, text)
        if out[axis] is None:
            raise Fail(f"--select {item!r}: {axis} values are {', '.join(f'{v:g}' for v in values)}")
    return out


def plot_target(args: argparse.Namespace) -> Callable[[str], Path]:
    """Where a picture goes: ``-o`` as a file name (with an image suffix), else a
    directory (default: next to RESULTS) with the file named from ``name``."""
    from dlnsim.storage import OutputPathError, check_output, make_dirs

    allowed = ", ".join("." + f for f in IMAGE_FORMATS)
    out = Path(args.output) if args.output else None
    try:
        if out is not None and not out.is_dir() and out.suffix:
            fmt = out.suffix.lower().lstrip(".")
            if fmt not in IMAGE_FORMATS:
                raise Fail(f"-o {out}: {out.suffix} is not an image format dlnsim writes: give a name ending "
                           f"{allowed}, or a directory")  # fmt: skip
            if args.format not in (None, fmt):
                raise Fail(f"-o {out} is a .{fmt} file but --format is {args.format}; give one of them, or the same")
            make_dirs(check_output(out), out.parent)
            return lambda name: out
        outdir = out or Path(args.results).parent
        if outdir.exists() and not outdir.is_dir():
            raise Fail(f"-o {outdir}: an existing file without an image suffix; give a directory or a name ending "
                       f"{allowed}")  # fmt: skip
        make_dirs(check_output(outdir, directory=True), outdir)
    except OutputPathError as e:
        raise Fail(f"-o: {e}") from None
    return lambda name: outdir / f"{name}.{args.format or 'png'}"


def cmd_plot(args: argparse.Namespace) -> int:
    unused = [o for o in ("x", "y", "metric", "sigma") if getattr(args, o) is not None and o not in _OPTIONS[args.kind]]
    if unused:
        takes = ", ".join(k for k, v in _OPTIONS.items() if unused[0] in v)
        raise Fail(f"--{unused[0]} does not apply to --kind {args.kind} (it does to {takes})")
    ds = read_results_to_reduce(args)
    stem = Path(args.results).stem
    plotting = _plotting()
    if args.kind == "heatmap":
        metric = args.metric or SWEEP_METRIC
        x, y = pick_axes(ds, args.x, args.y)
        select = _sigma(ds, metric, _metric(ds, "heatmap", metric), args.sigma)
        shown: tuple[str, ...] = (x, y)
        name = f"{stem}_{metric}_{y}_{x}"
    elif args.kind == "curves":
        metric = args.metric or "on_err"
        select = _sigma(ds, metric, _metric(ds, "curves", metric), args.sigma)
        shown = tuple(a for a in [plotting.hue_axis(ds, None)] if a)
        name = f"{stem}_curves_{metric}"
    else:
        select = None
        shown = tuple(a for a in [plotting.hue_axis(ds, None, prefer="weight_decay")] if a)
        name = f"{stem}_{args.kind}"
    chosen = _selection(ds, args.select, shown)
    if chosen:
        name += "_" + "_".join(f"{a}{v:g}" if isinstance(v, float) else f"{a}{v}" for a, v in chosen.items())
    select = {**(select or {}), **chosen}
    target = plot_target(args)(name)
    func = getattr(plotting, PLOT_FUNCS[args.kind])
    try:
        if args.kind == "heatmap":
            written = func(ds, x, y, metric, target, select=select)
        elif args.kind == "curves":
            written = func(ds, target, metric=metric, select=select)
        else:
            written = func(ds, target, select=select)
    except (KeyError, ValueError) as e:  # what the checks above do not foresee, named by plotting
        raise Fail(f"cannot plot {args.kind}: {str(e).strip(chr(39))}") from None
    print(f"wrote {written}")
    return 0


def _plotting() -> Any:
    from dlnsim import plotting  # lazily: matplotlib only for the commands that draw

    return plotting
