"""``dlnsim sweep --dry-run``: what a sweep would compute, in how many compiled programs and
chunks, with how much memory, and what is already on disk; nothing is computed or written.

For planning a large sweep before it runs: whether its runs fit the device, how many chunks
a ``--shard I/N`` array can split, what a rerun would take from an interrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlnsim.cli._common import Fail


def dry_run(cfg: Any, chunks: list[Any], out: Path, shard: tuple[int, int] | None, force: bool) -> int:
    """Prints the plan of ``chunks`` (the sweep's, or a shard's) into ``out``; exit code 0.
    The refusals of a real run (another sweep's file, a run larger than a device) are
    raised as they would be."""
    from dlnsim.plan import TooLargeError, check_fits_device
    from dlnsim.storage import ExistingResultsError, runs_on_disk

    try:
        check_fits_device(cfg)
        done = runs_on_disk(cfg, out, force=force, shard=shard)
    except (ExistingResultsError, TooLargeError) as e:
        raise Fail(str(e)) from None
    print(describe(cfg, chunks, out, shard, done))
    return 0


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'s' * (count != 1)}"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.3g} MB"


def _batching(cfg: Any) -> str:
    from dlnsim import devices
    from dlnsim._checks import parse_bytes

    if cfg.chunk_size is not None:
        return f"chunks of {cfg.chunk_size} runs (chunk_size)"
    if cfg.max_memory is not None:
        return f"chunks sized to {_mb(parse_bytes(cfg.max_memory))} (max_memory = {cfg.max_memory!r})"
    return f"chunks sized to {_mb(devices.default_budget())} (the default; --max-memory sets it)"


def describe(cfg: Any, chunks: list[Any], out: Path, shard: tuple[int, int] | None, done: set[int] | None) -> str:
    """The plan in words: one row per static group (its step, runs, chunks, memory), the
    totals, and what ``done`` (:func:`dlnsim.storage.runs_on_disk`) says is on disk."""
    import jax

    from dlnsim import devices
    from dlnsim.config import static_combinations
    from dlnsim.plan import batch_shape, group_configs, noisy, plan
    from dlnsim.step import data_columns, step_kind, uses_raw_data
    from dlnsim.storage import chunk_dir

    n_runs = sum(len(c.runs) for c in chunks)
    part = f"shard {shard[0]}/{shard[1]}: {_n(len(chunks), 'chunk')}, {n_runs} of " if shard else ""
    dev, n_dev = jax.local_devices()[0], jax.local_device_count()
    kind = "" if dev.device_kind.lower() == dev.platform else f" ({dev.device_kind})"
    lines = [
        "dry run: nothing is computed or written",
        f"{part}{cfg.n_runs} runs ({' x '.join(f'{len(v)} {a}' for a, v in cfg.grid.items())} values), "
        f"{cfg.train.steps} steps each, {cfg.train.dtype} -> {out}",
        f"{n_dev} {dev.platform.upper()} device{'s' * (n_dev > 1)}{kind}; {_batching(cfg)}",
    ]
    if done is None:
        lines.append(f"{out} already holds this sweep: the command would read it back and compute nothing")
        return "\n".join(lines)

    combos = static_combinations(cfg)
    pad = batch_shape(cfg, plan(cfg))  # each group's compiled batch, the same for every shard
    header = ("group", "step", "runs", "chunks", "runs/chunk", "memory/run", "memory/chunk", "to compute")
    rows = []
    for g in sorted({c.group for c in chunks}):
        mine = [c for c in chunks if c.group == g]
        problem_cfg, model = group_configs(cfg, g)
        raw = uses_raw_data(model, cfg.train)
        columns = data_columns(problem_cfg, raw, noisy(cfg))
        per_run = devices.run_bytes(problem_cfg, model, cfg.train, raw)
        widest = max(len(c.runs) for c in mine)
        rows.append(
            (
                ", ".join(f"{a}={v}" for a, v in combos[g].items()) or "all",
                step_kind(model, cfg.train, problem_cfg.m, problem_cfg.d, columns),
                str(sum(len(c.runs) for c in mine)),
                str(len(mine)),
                str(widest),
                _mb(per_run),
                _mb(per_run * pad[g].runs),
                str(sum(r not in done for c in mine for r in c.runs)),
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        lines.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    todo = sum(r not in done for c in chunks for r in c.runs)
    lines.append(
        f"{_n(len(rows), 'compiled program')}, {_n(len(chunks), 'chunk')}; {todo * cfg.train.steps:,} network-steps to compute"
    )
    if todo < n_runs:
        side = chunk_dir(out)
        lines.append(f"{n_runs - todo} of the {n_runs} runs are in finished chunks in {side}: a run takes them")
    return "\n".join(lines)
