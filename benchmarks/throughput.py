"""Throughput of dlnsim against what researchers write by hand, in one process on one machine.

Measures network-steps per second (one GD step of one network = one network-step) for:

  * ``dlnsim_reduced``: ``dlnsim.sweep`` over seeds, ``TrainConfig(data="reduced")``, the
    default step: on CPUs at the small sizes the block step (``dlnsim.blocked``), elsewhere
    the hand-written backward with the rank-r update fused into the decay (``dlnsim.backward``)
  * ``dlnsim_fused``: the same with ``TrainConfig(backward="fused")``, where that is not
    already the default step (null otherwise)
  * ``dlnsim_blocked``: the same with ``TrainConfig(backward="blocked")``, the block step
    (run axis last) that is the CPU's default at the small sizes, where that is not already
    the default step and the networks are small (``dlnsim.blocked.MAX_WIDTH``; null
    otherwise): on a GPU at the small sizes, a candidate against the fused step
  * ``dlnsim_pallas``: the same with ``TrainConfig(backward="pallas")``, the Pallas kernel
    that keeps each network on chip across steps (``dlnsim.onchip``), on at most 500 steps
    and timed last; GPUs and small networks only (null otherwise, or with the error if the
    kernel fails there)
  * ``dlnsim_autodiff``: the same with ``TrainConfig(backward="autodiff")`` (``jax.grad``)
  * ``dlnsim_raw``: the same on all N raw samples, ``TrainConfig(data="raw")``
  * ``torch_naive``: the textbook PyTorch loop (``nn.Sequential``, ``optim.SGD``), one network
    after another (``peers.torch_naive``); the CPU targets are ratios to it
  * ``torch_tuned``: the same loop hand-tuned (bare tensors, in-place update;
    ``peers.torch_tuned``), timed on the same budget as ``torch_naive``
  * ``torch_vmap``: a torch.func ensemble (``peers.torch_vmap``)
  * ``jax_naive``: jit of one network's step, Python loops (``peers.jax_naive``)

at the paper's sizes (d=200, m=100, s=5, L=5, width 400, N=1000) and small ones (d=20, m=10,
s=2, L=5, width 40, N=200), float32 with full-precision matmuls. dlnsim is timed through
its public API only (``dlnsim.sweep``), so whatever the library does is what is measured,
metrics at step 0 and at the end included (``log_every = steps``). On a CPU the benchmark
splits the CPU into one JAX device per core as the ``dlnsim`` commands do
(``dlnsim.use_cpu_cores``; ``--cpu-devices 1`` for one device): the sweeps shard their runs
over them, the naive JAX loop runs on the first.

Compile time is reported separately from steady state: a JAX monitoring listener sums
tracing, lowering and backend compile time during the first call. With one call per
measurement (the CPU default at the paper's sizes) steady state is the first call minus
that compile time; with more (``--repeats``; 4 for the CPU's small sizes, 2 on GPUs) it is
the fastest call after the first.

The naive loops are slow, so they are timed on a subset of networks and steps and the
rate is extrapolated per network-step (their cost is linear in both); the table marks them.

A device copy bandwidth (``x * c`` of a large float32 array: bytes read + written per
second) is measured in the same run. The memory-bandwidth bound of the reduced path is
``bandwidth / (4 * weight bytes per network)``: each weight read and written about four
times per step (issue 5). On a CPU, small networks fit in cache and can beat that bound.

Usage:
  python benchmarks/throughput.py                  # both sizes, defaults for this device
  python benchmarks/throughput.py --sizes paper --out results/throughput.json
  python benchmarks/throughput.py --tiny --out /tmp/t.json   # seconds; used by the tests
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_devices
import peers

import dlnsim
from dlnsim import onchip
from dlnsim.blocked import MAX_WIDTH, compiler_options
from dlnsim.step import block_step_fits, step_kind

SCHEMA = "dlnsim-throughput/1"
METHODS = (
    "dlnsim_reduced",
    "dlnsim_fused",
    "dlnsim_blocked",
    "dlnsim_pallas",
    "dlnsim_autodiff",
    "dlnsim_raw",
    "torch_naive",
    "torch_tuned",
    "torch_vmap",
    "jax_naive",
)
TORCH_METHODS = ("torch_naive", "torch_tuned", "torch_vmap")
HPARAMS = {"lr": 0.02, "weight_decay": 1e-3}  # stable for every size here (SCIENCE.md section 2)


@dataclasses.dataclass(frozen=True)
class Sizes:
    d: int
    m: int
    s: int
    depth: int
    width: int
    n_train: int


SIZES = {
    "paper": Sizes(d=200, m=100, s=5, depth=5, width=400, n_train=1000),
    "small": Sizes(d=20, m=10, s=2, depth=5, width=40, n_train=200),
    "tiny": Sizes(d=8, m=4, s=2, depth=3, width=8, n_train=16),
}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much of each method to time: (networks, steps) per method."""

    runs: int  # dlnsim reduced: runs of the sweep
    steps: int  # dlnsim reduced: steps (a multiple of 50 for the logging line)
    raw: tuple[int, int]  # dlnsim raw
    torch_naive: tuple[int, int]  # also used for torch_tuned
    torch_vmap: tuple[int, int]
    jax_naive: tuple[int, int]
    repeats: int = 1  # dlnsim calls per measurement (see the module docstring)


# Defaults per (size, device class). CPU budgets keep the whole benchmark to a few minutes
# on 2 cores (about 6 minutes at the paper's sizes, where the dlnsim paths time all 256
# runs of the issue: fewer runs leave first-call costs unamortised; --runs overrides).
# A CPU call at the small sizes lasts about a second, too short for "first call minus
# compile time" (it read 184k-332k for one build whose steady state is about 300k), so
# those take the fastest of 3 calls after a warm-up; a paper-size call lasts over a minute.
BUDGETS = {
    ("paper", "cpu"): Budget(256, 200, raw=(16, 10), torch_naive=(1, 10), torch_vmap=(8, 2), jax_naive=(1, 10)),
    ("small", "cpu"): Budget(
        256, 1000, raw=(64, 20), torch_naive=(1, 200), torch_vmap=(256, 20), jax_naive=(1, 200), repeats=4
    ),
    ("paper", "gpu"): Budget(
        256, 2000, raw=(256, 100), torch_naive=(2, 50), torch_vmap=(256, 10), jax_naive=(2, 50), repeats=2
    ),
    ("small", "gpu"): Budget(
        4096, 2000, raw=(4096, 200), torch_naive=(2, 200), torch_vmap=(4096, 50), jax_naive=(2, 200), repeats=2
    ),
    ("tiny", "cpu"): Budget(4, 100, raw=(4, 50), torch_naive=(1, 5), torch_vmap=(4, 5), jax_naive=(1, 5)),
    ("tiny", "gpu"): Budget(4, 100, raw=(4, 50), torch_naive=(1, 5), torch_vmap=(4, 5), jax_naive=(1, 5)),
}

# Issue 5 targets: CPU as same-run ratios to the naive PyTorch loop, GPU as absolute rates.
TARGETS = {
    ("paper", "cpu"): {"ratio_vs_torch_naive": 15.0},
    ("small", "cpu"): {"ratio_vs_torch_naive": 250.0},
    ("paper", "gpu"): {"network_steps_per_s": 280_000.0},
    ("small", "gpu"): {"network_steps_per_s": 25_000_000.0},
}
LOGGING_TARGET = 0.15  # logging every 50 steps costs < 15% of run time (paper sizes)
COMPILE_TARGET_CPU_S = 10.0  # per static group, 2 CPU cores
LOG_EVERY = 50


# ---------------------------------------------------------------- timing helpers

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class _CompileClock:
    seconds = 0.0


_CLOCKS: list[_CompileClock] = []  # the clocks of the open compile_clock blocks


def _on_event(event: str, duration: float, **_: Any) -> None:
    if event in _COMPILE_EVENTS:
        for clock in _CLOCKS:
            clock.seconds += duration


# One listener for the whole process (jax 0.5 cannot unregister one).
jax.monitoring.register_event_duration_secs_listener(_on_event)


@contextlib.contextmanager
def compile_clock():
    """Sums JAX's tracing + lowering + backend compile durations inside the block."""
    clock = _CompileClock()
    _CLOCKS.append(clock)
    try:
        yield clock
    finally:
        _CLOCKS.remove(clock)


def copy_bandwidth(n_bytes: int, repeats: int = 5) -> dict[str, float]:
    """Device bandwidth of ``y = x * c`` on a float32 array (read + write bytes / s, best of)."""
    x = jnp.ones(n_bytes // 4, jnp.float32)
    f = jax.jit(lambda a: a * 1.0001)
    jax.block_until_ready(f(x))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        best = min(best, time.perf_counter() - t0)
    return {"array_bytes": int(x.nbytes), "seconds": best, "bytes_per_s": 2 * x.nbytes / best}


def _sweep_cfg(
    sz: Sizes, runs: int, steps: int, log_every: int, data: str, backward: str, **train: Any
) -> dlnsim.SweepConfig:
    """The benchmark's sweep; ``train`` overrides further TrainConfig fields (else defaults)."""
    return dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=sz.d, m=sz.m, s=sz.s, n_train=sz.n_train),
        model=dlnsim.ModelConfig(depth=sz.depth, width=sz.width),
        train=dlnsim.TrainConfig(
            steps=steps,
            log_every=log_every,
            data=data,
            backward=backward,
            dtype="float32",
            precision="highest",
            **train,
        ),
        hparams=HPARAMS,
        grid={"seed": range(runs)},
    )


def time_dlnsim(
    sz: Sizes,
    runs: int,
    steps: int,
    *,
    data: str,
    log_every: int | None = None,
    repeats: int = 1,
    backward: str = "auto",
    **train: Any,
) -> dict:
    """Times ``dlnsim.sweep`` over ``runs`` seeds of ``steps`` steps (public API only)."""
    cfg = _sweep_cfg(sz, runs, steps, log_every or steps, data, backward, **train)
    with compile_clock() as clock:
        t0 = time.perf_counter()
        ds = dlnsim.sweep(cfg)
        first = time.perf_counter() - t0
    diverged = int(np.asarray(ds["diverged"]).sum())
    calls = []
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        dlnsim.sweep(cfg)
        calls.append(time.perf_counter() - t0)
    if calls:
        seconds, how = min(calls), f"fastest of {len(calls)} calls after a warm-up call"
    else:
        seconds, how = max(first - clock.seconds, 1e-9), "first call minus measured compile time"
    return {
        "networks": runs,
        "steps": steps,
        "log_every": log_every or steps,
        "seconds": seconds,
        "first_call_s": first,
        "compile_s": clock.seconds,
        "steady_state": how,
        "extrapolated": False,
        "diverged_runs": diverged,
        "network_steps_per_s": runs * steps / seconds,
    }


def _peer_entry(t: peers.Timing, *, extrapolated: bool, compile_s: float | None, note: str) -> dict:
    return {
        "networks": t.networks,
        "steps": t.steps,
        "seconds": t.seconds,
        "warmup_s": t.warmup_s,
        "compile_s": compile_s,
        "steady_state": note,
        "extrapolated": extrapolated,
        "network_steps_per_s": t.network_steps_per_s,
    }


def _null_entry(reason: str) -> dict:
    keys = ("networks", "steps", "seconds", "warmup_s", "compile_s", "extrapolated", "network_steps_per_s")
    return {**{k: None for k in keys}, "steady_state": reason}


# ---------------------------------------------------------------- one size preset


def _sizes_entry(sz: Sizes, budget: Budget) -> dict:
    return {**dataclasses.asdict(sz), "runs": budget.runs, "repeats": budget.repeats}


def run_preset(
    name: str,
    sz: Sizes,
    budget: Budget,
    *,
    device_class: str,
    bandwidth: float,
    use_torch: bool,
    torch_dev: str | None,
    log: Any = print,
    methods: dict | None = None,
    logging: dict | None = None,
    save: Any = None,
) -> dict:
    """One size: every method, the logging cost and the targets.

    ``methods`` and ``logging`` (dicts, filled as each figure is measured) and ``save``
    (called after each) let the caller keep the figures of a run cut short, such as a GPU
    check at its time limit. The figures the targets need come first: the default step,
    then the cost of logging at the default settings; the two other logging variants last.
    """
    shapes = peers.layer_shapes(sz.d, sz.m, sz.depth, sz.width)
    n_weights = sum(fo * fi for fo, fi in shapes)
    weight_bytes = 4 * n_weights
    bound = bandwidth / (4 * weight_bytes)
    problem = dlnsim.make_problem(dlnsim.ProblemConfig(d=sz.d, m=sz.m, s=sz.s, n_train=sz.n_train), 0)
    y, x = np.array(problem.y, np.float32), np.array(problem.x, np.float32)
    kw = dict(lr=HPARAMS["lr"], weight_decay=HPARAMS["weight_decay"])
    methods = {} if methods is None else methods
    logging = {} if logging is None else logging
    save = save or (lambda: None)

    def record(key: str, entry: dict) -> None:
        """Keeps a method's figures, logs and saves them at once (a run cut short keeps them)."""
        methods[key] = entry
        save()
        rate, comp = entry["network_steps_per_s"], entry.get("compile_s")
        log(
            f"[{name}]   {key}: "
            + ("-" if rate is None else f"{rate:.4g} network-steps/s")
            + (f", compile {comp:.3g} s" if comp else "")
        )

    def record_optional(key: str, what: str, steps: int, backward: str) -> None:
        """Times an opt-in step; its failure (a lowering that differs between jax versions
        on a GPU) is recorded as a finding and the benchmark goes on."""
        log(f"[{name}] dlnsim reduced, {what}: {budget.runs} runs x {steps} steps")
        try:
            entry = time_dlnsim(sz, budget.runs, steps, data="reduced", repeats=budget.repeats, backward=backward)
        except Exception as e:
            log(f"[{name}] {what} failed: {type(e).__name__}: {str(e)[:2000]}")
            entry = _null_entry(f"failed: {type(e).__name__}: {str(e)[:500]}")
        record(key, entry)

    log(f"[{name}] dlnsim reduced: {budget.runs} runs x {budget.steps} steps")
    record("dlnsim_reduced", time_dlnsim(sz, budget.runs, budget.steps, data="reduced", repeats=budget.repeats))

    # Logging cost: the reduced run again with metrics at (at least) 20 points instead of
    # only at the start and the end. A log point costs the same whatever the cadence, so the
    # cost of one is measured over many (a difference of two noisy timings needs a large
    # signal) and reported relative to LOG_EVERY = 50 training steps.
    every = max(1, min(LOG_EVERY, budget.steps // 20))
    base = methods["dlnsim_reduced"]

    def log_point_cost(what: str, **train: Any) -> tuple[dict, float]:
        """The run with metrics every ``every`` steps, and the seconds of one log point."""
        log(f"[{name}] logging cost: reduced path, metrics every {every} steps{what}")
        run = time_dlnsim(
            sz, budget.runs, budget.steps, data="reduced", log_every=every, repeats=budget.repeats, **train
        )
        return run, max(run["seconds"] - base["seconds"], 0.0) / max(budget.steps // every - 1, 1)

    logged, per_log = log_point_cost("")
    per_step = max(base["seconds"] - 2 * per_log, 1e-12) / budget.steps
    logging.update(
        {
            "log_every": every,
            "steps": budget.steps,
            "networks": budget.runs,
            "seconds_log_at_end": base["seconds"],
            "seconds_log_every": logged["seconds"],
            "compile_s": logged["compile_s"],
            # Measured ratio for this run length, and the overhead of one log every 50 steps on
            # a long run (per-log cost over 50 steps of training), which is what the target means.
            "measured_overhead": logged["seconds"] / base["seconds"] - 1.0,
            "seconds_per_log_point": per_log,
            "seconds_per_step": per_step,
            "overhead_every_50_steps": per_log / (LOG_EVERY * per_step),
            "balance_every": dlnsim.TrainConfig().balance_every,  # the default, which the run above used
        }
    )
    log(f"[{name}]   logging: one log point = {100 * logging['overhead_every_50_steps']:.0f}% of 50 steps")
    save()
    model = dlnsim.ModelConfig(depth=sz.depth, width=sz.width)
    default = step_kind(model, dlnsim.TrainConfig(), sz.m, sz.d, sz.s)
    if default == "fused":
        record("dlnsim_fused", _null_entry("the default step here: see dlnsim_reduced"))
    else:
        log(f"[{name}] dlnsim reduced, fused step: {budget.runs} runs x {budget.steps} steps")
        record(
            "dlnsim_fused",
            time_dlnsim(sz, budget.runs, budget.steps, data="reduced", repeats=budget.repeats, backward="fused"),
        )
    if default == "blocked":
        record("dlnsim_blocked", _null_entry("the default step here: see dlnsim_reduced"))
    elif not block_step_fits(model, sz.m, sz.d, sz.s):
        record("dlnsim_blocked", _null_entry(f"small networks only (layers at most {MAX_WIDTH} wide)"))
    else:  # a GPU at the small sizes: the run-axis-last layout against the default fused step
        record_optional("dlnsim_blocked", "block step", budget.steps, "blocked")
    log(f"[{name}] dlnsim reduced, autodiff: {budget.runs} runs x {budget.steps} steps")
    record(
        "dlnsim_autodiff",
        time_dlnsim(sz, budget.runs, budget.steps, data="reduced", repeats=budget.repeats, backward="autodiff"),
    )
    log(f"[{name}] dlnsim raw: {budget.raw[0]} runs x {budget.raw[1]} steps")
    record("dlnsim_raw", time_dlnsim(sz, *budget.raw, data="raw", repeats=budget.repeats))

    if use_torch:
        for key, what in (("torch_naive", "torch naive loop"), ("torch_tuned", "torch hand-tuned loop")):
            nets, steps = budget.torch_naive
            log(f"[{name}] {what}: {nets} networks x {steps} steps ({torch_dev})")
            t = peers.time_loop(getattr(peers, key)(y, x, device=torch_dev, **kw), shapes, networks=nets, steps=steps)
            record(
                key,
                _peer_entry(t, extrapolated=True, compile_s=None, note="timed subset, extrapolated per network-step"),
            )
        log(f"[{name}] torch.func vmap: {budget.torch_vmap[0]} networks x {budget.torch_vmap[1]} steps ({torch_dev})")
        t = peers.time_ensemble(
            peers.torch_vmap(y, x, device=torch_dev, **kw),
            shapes,
            networks=budget.torch_vmap[0],
            steps=budget.torch_vmap[1],
        )
        partial = budget.torch_vmap[0] < budget.runs
        record(
            "torch_vmap",
            _peer_entry(
                t,
                extrapolated=partial,
                compile_s=None,
                note="steps after one untimed step" + (", on a subset of the networks" if partial else ""),
            ),
        )
    else:
        for k in TORCH_METHODS:
            methods[k] = _null_entry(
                "torch not installed (pip install -e .[bench])" if torch_dev is None else "skipped (--no-torch)"
            )

    log(f"[{name}] naive JAX loop: {budget.jax_naive[0]} networks x {budget.jax_naive[1]} steps")
    with compile_clock() as clock:
        t = peers.time_loop(
            peers.jax_naive(y, x, **kw), shapes, networks=budget.jax_naive[0], steps=budget.jax_naive[1]
        )
    record(
        "jax_naive",
        _peer_entry(t, extrapolated=True, compile_s=clock.seconds, note="timed subset, extrapolated per network-step"),
    )
    # Last: the opt-in kernel, slower than the default on an H200, must not cost the figures above.
    if device_class != "gpu":
        record("dlnsim_pallas", _null_entry("GPU only: on other devices Pallas interprets the kernel"))
    elif max(sz.d, sz.m, sz.width, sz.s) > onchip.MAX_SIZE:
        record("dlnsim_pallas", _null_entry("small networks only: a program holds one network's weights on chip"))
    else:
        # At most 500 steps: the check has a time budget.
        record_optional("dlnsim_pallas", "Pallas kernel", min(budget.steps, 500), "pallas")

    ref = methods["torch_naive"]["network_steps_per_s"]
    for entry in methods.values():
        rate = entry["network_steps_per_s"]
        entry["ratio_vs_torch_naive"] = rate / ref if rate is not None and ref else None
        entry["bound_fraction"] = rate / bound if rate is not None else None

    # The two other logging variants last: the targets do not need them.
    for key, what, train in (
        ("no_balance", " without the balancedness metric (TrainConfig.balance = False)", {"balance": False}),
        (
            "balance_all",
            " with the balancedness at every log point (TrainConfig.balance_every = 1)",
            {"balance_every": 1},
        ),
    ):
        run, cost = log_point_cost(what, **train)
        logging[f"seconds_log_every_{key}"] = run["seconds"]
        logging[f"overhead_every_50_steps_{key}"] = cost / (LOG_EVERY * per_step)
        log(
            f"[{name}]   logging, {key.replace('_', ' ')}: one log point = "
            f"{100 * logging[f'overhead_every_50_steps_{key}']:.0f}% of 50 steps"
        )
        save()

    targets: dict[str, Any] = {}
    for key, goal in TARGETS.get((name, device_class), {}).items():
        have = methods["dlnsim_reduced"][key]
        targets[key] = {"goal": goal, "value": have, "met": None if have is None else bool(have >= goal)}
    if name == "paper":
        v = logging["overhead_every_50_steps"]
        targets["logging_overhead"] = {"goal": LOGGING_TARGET, "value": v, "met": bool(v < LOGGING_TARGET)}
    if device_class == "cpu":
        c = max(methods["dlnsim_reduced"]["compile_s"], methods["dlnsim_raw"]["compile_s"])
        targets["compile_s"] = {"goal": COMPILE_TARGET_CPU_S, "value": c, "met": bool(c < COMPILE_TARGET_CPU_S)}

    return {
        "sizes": _sizes_entry(sz, budget),
        "complete": True,
        "hparams": dict(HPARAMS),
        "weights_per_network": n_weights,
        "weight_bytes_per_network": weight_bytes,
        "bound_network_steps_per_s": bound,
        "bound_model": "copy bandwidth / (4 touches per step * weight bytes per network)",
        "methods": methods,
        "logging": logging,
        "targets": targets,
    }


# ---------------------------------------------------------------- environment


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(use_torch: bool, torch_dev: str | None) -> dict:
    dev = jax.devices()[0]
    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", None),
        "numpy": np.__version__,
        "dlnsim": dlnsim.__version__,
        "torch": None,
    }
    torch_info: dict[str, Any] = {"available": peers.torch_available(), "used": use_torch, "device": torch_dev}
    if torch_info["available"]:
        import torch

        versions["torch"] = torch.__version__
        torch_info["threads"] = torch.get_num_threads()
        torch_info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    else:
        torch_info["note"] = "torch not installed: torch fields are null (pip install -e .[bench])"
    return {
        "device": {
            "platform": dev.platform,
            "device_kind": dev.device_kind,
            "n_devices": jax.device_count(),
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "hostname": platform.node(),
        },
        "versions": versions,
        "compiler_options": compiler_options(),  # XLA options of dlnsim's jits on this jaxlib
        "torch": torch_info,
    }


# ---------------------------------------------------------------- output


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.{digits}g}"


def table(result: dict) -> str:
    lines = []
    dev = result["device"]
    lines.append(
        f"device: {dev['n_devices']} x {dev['platform']} {dev['device_kind']} ({dev['cpu_model']}, "
        f"{dev['cpu_count']} cores); "
        f"float32, precision {result['precision']}; copy bandwidth {result['bandwidth']['bytes_per_s'] / 1e9:.1f} GB/s"
    )
    for name, pre in result["presets"].items():
        s = pre["sizes"]
        lines.append("")
        lines.append(
            f"{name}: d={s['d']} m={s['m']} s={s['s']} L={s['depth']} width={s['width']} N={s['n_train']}; "
            f"bound {_fmt(pre['bound_network_steps_per_s'])} network-steps/s "
            f"({pre['weight_bytes_per_network'] / 1e6:.3g} MB weights x 4 touches)"
        )
        lines.append(f"  {'method':<16}{'net-steps/s':>13}{'compile s':>11}{'x torch':>10}{'x bound':>9}  timed")
        for k in METHODS:
            e = pre["methods"][k]
            timed = "-" if e["networks"] is None else f"{e['networks']} nets x {e['steps']} steps"
            if e.get("extrapolated"):
                timed += " (extrapolated)"
            lines.append(
                f"  {k:<16}{_fmt(e['network_steps_per_s']):>13}{_fmt(e['compile_s']):>11}"
                f"{_fmt(e['ratio_vs_torch_naive']):>10}{_fmt(e['bound_fraction'], 2):>9}  {timed}"
            )
        lg = pre["logging"]
        lines.append(
            f"  logging every {lg['log_every']} steps vs at the end: {lg['seconds_log_every']:.3g} s vs "
            f"{lg['seconds_log_at_end']:.3g} s ({100 * lg['measured_overhead']:+.0f}% for {lg['steps']} steps); "
            f"one log point = {lg['seconds_per_log_point']:.3g} s = {100 * lg['overhead_every_50_steps']:.0f}% "
            f"of 50 steps with balance_every = {lg['balance_every']} "
            f"({100 * lg['overhead_every_50_steps_no_balance']:.0f}% with balance = False, "
            f"{100 * lg['overhead_every_50_steps_balance_all']:.0f}% with balance_every = 1)"
        )
        for k, t in pre["targets"].items():
            verdict = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
            lines.append(f"  target {k}: goal {_fmt(t['goal'])}, have {_fmt(t['value'])} -> {verdict}")
    if not result["torch"]["used"]:
        lines.append("")
        lines.append("torch: " + result["torch"].get("note", "skipped"))
    return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


def write_json(path: Path, result: dict) -> None:
    """``result`` as indented JSON (non-finite numbers as null), parent folders created.

    Written beside and renamed into place: a run killed mid-write leaves the last whole file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", nargs="+", choices=["paper", "small"], default=["paper", "small"])
    ap.add_argument("--tiny", action="store_true", help="toy sizes only (seconds; for the tests)")
    ap.add_argument("--runs", type=int, help="runs of the dlnsim sweeps (default: per size and device)")
    ap.add_argument("--steps", type=int, help="steps of the dlnsim reduced run (a multiple of 50)")
    ap.add_argument(
        "--repeats",
        type=int,
        help="dlnsim calls per measurement (default per size and device: 1 for CPU paper sizes, 4 for "
        "CPU small sizes, 2 on GPUs)",
    )
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch peers even if torch is installed")
    ap.add_argument(
        "--bandwidth-mb", type=int, help="array size of the copy-bandwidth probe (default 256 CPU, 2048 GPU)"
    )
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = cpu_devices.parse(ap, argv)  # before any JAX computation, as `dlnsim sweep` does

    platform_name = jax.devices()[0].platform
    device_class = "cpu" if platform_name == "cpu" else "gpu"
    use_torch = peers.torch_available() and not args.no_torch
    torch_dev = peers.torch_device(device_class == "gpu") if peers.torch_available() else None
    names = ["tiny"] if args.tiny else args.sizes

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    result.update(environment(use_torch, torch_dev))
    result.update(dtype="float32", precision="highest", load_average_start=list(os.getloadavg()))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    mb = args.bandwidth_mb or (8 if args.tiny else 256 if device_class == "cpu" else 2048)
    result["bandwidth"] = copy_bandwidth(mb * 2**20)
    log(f"copy bandwidth: {result['bandwidth']['bytes_per_s'] / 1e9:.2f} GB/s")
    result["presets"] = {}
    for name in names:
        budget = BUDGETS[(name, device_class)]
        if args.runs:
            budget = dataclasses.replace(budget, runs=args.runs, raw=(min(args.runs, budget.raw[0]), budget.raw[1]))
        if args.steps:
            budget = dataclasses.replace(budget, steps=args.steps)
        if args.repeats:
            budget = dataclasses.replace(budget, repeats=args.repeats)
        # Until the size is done, its entry holds the methods measured so far (see run_preset).
        partial = {"sizes": _sizes_entry(SIZES[name], budget), "complete": False, "methods": {}, "logging": {}}
        result["presets"][name] = partial
        save = (lambda: write_json(args.out, result)) if args.out else None
        result["presets"][name] = run_preset(
            name,
            SIZES[name],
            budget,
            device_class=device_class,
            bandwidth=result["bandwidth"]["bytes_per_s"],
            use_torch=use_torch,
            torch_dev=torch_dev,
            log=log,
            methods=partial["methods"],
            logging=partial["logging"],
            save=save,
        )
        if args.out:  # after each size, so an interrupted run keeps what it measured
            write_json(args.out, result)
    result["load_average_end"] = list(os.getloadavg())
    result = _jsonable(result)
    print(table(result))
    if args.out:
        write_json(args.out, result)
        print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
