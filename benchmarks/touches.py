"""Probe: fewer weight touches per step, by fusing each layer's update with the next forward.

The fused step (``dlnsim.backward.gd_step``, the default on GPUs) touches every weight about
four times per step: the forward product reads it, the backward product reads it, the
update reads and writes it. Issue 5's H100 target at the paper's sizes needs fewer than
four. This probe times, on the same device and in the same harness, the fused step and
steps that carry the forward activations ``h_l`` from one step to the next:

  * ``fused``: :func:`dlnsim.backward.gd_step`, the default step on GPUs.
  * ``ahead_dot``: the backward pass first (``W_l^T delta_l``: one read), then bottom-up
    each layer's update ``W_l' = (1 - eta lambda) W_l - delta_l h_{l-1}^T`` followed at once
    by the *next* step's forward product ``h_l' = W_l' h_{l-1}'`` (a matmul), so the
    activations the next step needs are ready when it starts
    (:func:`dlnsim.backward.descend_ahead`).
  * ``ahead_rows``: the same with the forward product written as r row reductions over
    the weight's minor axis (r = rank Y data columns): reductions of the same shape as the
    update's elementwise expression, which XLA's GPU compiler can fuse with it into one
    multi-output kernel (update written, forward reduced, the weight read once): three
    touches per step. XLA's CPU compiler does not fuse them (measured slower there).
  * ``blocked`` and ``blocked_ahead``: the block step (:mod:`dlnsim.blocked`, run axis
    last; small networks only) plain and with the activations carried; the latter is what
    dlnsim runs on CPUs at the small sizes since 2026-12-02.

All compute the same step (SCIENCE.md section 2); the probe reports each variant's final
weights against ``fused``'s (float32 rounding) and counts the fusions, dots and library
calls in its compiled program. A per-network variant that wins on a GPU is the candidate
for dlnsim's fused step there (issue 5: "measure, profile, keep what helps").

On 2 AMD EPYC cores (2026-12-02, one device): at the paper's sizes (128 runs x 30 steps)
``ahead_dot`` ran 0.93-1.06x the fused step in three runs (one a prototype's medians of 7
alternating calls) and ``ahead_rows`` 0.57x, so dlnsim's fused step is unchanged; at the small sizes
(256 runs x 200-1000 steps) ``blocked_ahead`` ran 1.15-1.3x ``blocked`` (the per-network
variants 0.86-0.88x the fused step). On a GPU it has not run yet.

Usage:
  python benchmarks/touches.py                         # paper and small sizes, this device
  python benchmarks/touches.py --sizes paper --out results/touches.json
  python benchmarks/touches.py --tiny --out /tmp/t.json  # seconds; used by the tests
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp

import dlnsim
from dlnsim.backward import descend_ahead, forward_pass, gd_step, per_network_products
from dlnsim import blocked
from dlnsim.model import Params, init_params
from dlnsim.problem import reduce_data
from dlnsim.step import block_step_fits

Array = jax.Array
VARIANTS = ("fused", "ahead_dot", "ahead_rows", "blocked", "blocked_ahead")
BLOCKED = ("blocked", "blocked_ahead")  # run axis last: small networks only (dlnsim.step.block_step_fits)
# (runs, steps, calls) per (size, device class): calls after the compile, the fastest counts
BUDGETS = {
    ("paper", "gpu"): (256, 1000, 3),
    ("small", "gpu"): (4096, 2000, 3),
    ("paper", "cpu"): (64, 20, 3),
    ("small", "cpu"): (256, 200, 3),
    ("tiny", "cpu"): (4, 10, 2),
    ("tiny", "gpu"): (4, 10, 2),
}


def matmul_rows(w: Array, h: Array) -> Array:
    """``w @ h`` as one reduction over ``w``'s minor axis per column of ``h`` (few columns;
    a sum of products in the working dtype: no matrix unit, no TF32)."""
    return jnp.stack([jnp.sum(w * h[None, :, c], axis=1) for c in range(h.shape[1])], axis=1)


class Layout(NamedTuple):
    """How a step's products are computed (the arguments of :func:`dlnsim.backward.descend`)."""

    matmul: Callable[[Array, Array], Array]  # (w, h) -> w @ h
    matmul_t: Callable[[Array, Array], Array]  # (w, h) -> w.T @ h
    update: Callable[[Array, Array, Array, Array], Array]  # (w, decay, delta, h) -> decay w - delta h^T


PER_NETWORK_DOT = Layout(**per_network_products("highest"))  # dlnsim.backward.gd_step's products
PER_NETWORK_ROWS = PER_NETWORK_DOT._replace(matmul=matmul_rows)
RUN_AXIS_LAST = Layout(blocked.matmul, blocked.matmul_t, blocked._update)  # dlnsim.blocked's step


def forward_all(params: Params, y: Array, layout: Layout = PER_NETWORK_DOT) -> list[Array]:
    """``[y, W_1 y, W_2 W_1 y, ...]`` (:func:`dlnsim.backward.forward_pass`)."""
    return forward_pass(params, y, layout.matmul)


def ahead_step(
    params: Params,
    hs: list[Array],
    y: Array,
    x: Array,
    c0: Array,
    n: int,
    lr: Array,
    weight_decay: Array,
    layout: Layout = PER_NETWORK_DOT,
) -> tuple[Array, Params, list[Array]]:
    """One GD step given the forward activations of ``params``; returns the new params and
    their activations (:func:`dlnsim.backward.descend_ahead` in the given layout; ``y`` is
    ``hs[0]``, taken for the signature of the other steps).

    Example:
      >>> ws = (jnp.eye(2), 2.0 * jnp.eye(2))
      >>> y = x = jnp.eye(2)
      >>> loss, new, hs = ahead_step(ws, forward_all(ws, y), y, x, jnp.zeros(()), 1, 0.1, 0.0)
      >>> float(loss), round(float(new[1][0, 0]), 6)  # as dlnsim.backward.gd_step's example
      (1.0, 1.9)
    """
    del y
    return descend_ahead(params, hs, x, c0, n, lr, weight_decay, **layout._asdict())


def _scan_ahead(layout: Layout, steps: int, n: int) -> Callable:
    def run(params, y, x, c0, lr, wd):
        def body(carry, _):
            loss, new, hs = ahead_step(*carry, y, x, c0, n, lr, wd, layout)
            return (new, hs), loss

        (p, _), losses = jax.lax.scan(body, (params, forward_all(params, y, layout)), None, length=steps)
        return p, losses

    return run


def _scan_step(step: Callable, steps: int, n: int) -> Callable:
    def run(params, y, x, c0, lr, wd):
        def body(p, _):
            loss, new = step(p, y, x, c0, n, lr, wd)
            return new, loss

        return jax.lax.scan(body, params, None, length=steps)

    return run


def trainer(variant: str, data: Any, n: int, steps: int, lr: float, wd: float) -> Callable[[Params], tuple]:
    """``params -> (final params, data losses)`` of one network after ``steps`` steps of
    ``variant`` (the ``blocked*`` ones take the run-axis-last layout under ``vmap``)."""
    run = {
        "fused": lambda: _scan_step(gd_step, steps, n),
        "ahead_dot": lambda: _scan_ahead(PER_NETWORK_DOT, steps, n),
        "ahead_rows": lambda: _scan_ahead(PER_NETWORK_ROWS, steps, n),
        "blocked": lambda: blocked.run_axis_last(_scan_step(blocked.gd_step_block, steps, n)),
        "blocked_ahead": lambda: blocked.run_axis_last(_scan_ahead(RUN_AXIS_LAST, steps, n)),
    }[variant]()
    # Data and step sizes are arguments, so that the run-axis-last variants see them with a run axis.
    args = (data.y, data.x, data.c0, jnp.asarray(lr, data.y.dtype), jnp.asarray(wd, data.y.dtype))
    return lambda params: run(params, *args)


def hlo_counts(text: str) -> dict[str, int]:
    """Fusions, dots (CPU) and library calls (GPU GEMMs) in a compiled program's text."""
    return {
        "fusions": len(re.findall(r"= [^=]*\bfusion\(", text)),
        "dots": len(re.findall(r"= [^=]*\bdot\(", text)),
        "custom_calls": len(re.findall(r"\bcustom-call\(", text)),
    }


def measure(variant: str, sz: tp.Sizes, runs: int, steps: int, calls: int) -> tuple[dict, tuple]:
    problem = dlnsim.make_problem(dlnsim.ProblemConfig(d=sz.d, m=sz.m, s=sz.s, n_train=sz.n_train), 0)
    data = reduce_data(problem)
    model = dlnsim.ModelConfig(depth=sz.depth, width=sz.width)
    keys = jax.random.split(jax.random.key(1), runs)
    params = jax.vmap(lambda k: init_params(k, model, sz.m, sz.d))(keys)
    fn = jax.jit(
        jax.vmap(trainer(variant, data, sz.n_train, steps, tp.HPARAMS["lr"], tp.HPARAMS["weight_decay"])),
        compiler_options=blocked.compiler_options(),
    )  # as dlnsim compiles (512-bit vectors on CPUs)
    t0 = time.perf_counter()
    compiled = fn.lower(params).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(params))  # warm-up
    best = np.inf
    for _ in range(calls):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(params))
        best = min(best, time.perf_counter() - t0)
    entry = {
        "networks": runs,
        "steps": steps,
        "seconds": best,
        "compile_s": compile_s,
        "network_steps_per_s": runs * steps / best,
        **hlo_counts(compiled.as_text()),
    }
    return entry, out


def run_size(
    name: str,
    runs: int,
    steps: int,
    calls: int,
    bandwidth: float,
    result: dict,
    log: Any = print,
    save: Callable[[], None] = lambda: None,
) -> None:
    """Fills ``result`` variant by variant, calling ``save`` after each (a probe cut short keeps them)."""
    sz = tp.SIZES[name]
    weight_bytes = 4 * sum(fo * fi for fo, fi in tp.peers.layer_shapes(sz.d, sz.m, sz.depth, sz.width))
    result.update({"sizes": vars(sz), "weight_bytes_per_network": weight_bytes, "variants": {}})
    ref = None
    for v in VARIANTS:
        if v in BLOCKED and not block_step_fits(dlnsim.ModelConfig(depth=sz.depth, width=sz.width), sz.m, sz.d, sz.s):
            result["variants"][v] = {"error": "not run: too wide for the block step (dlnsim.step.block_step_fits)"}
            continue
        try:
            entry, (params, losses) = measure(v, sz, runs, steps, calls)
        except Exception as e:  # a variant a compiler refuses is a finding
            result["variants"][v] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
            log(f"[{name}] {v}: failed: {type(e).__name__}: {str(e)[:300]}")
            save()
            continue
        if ref is None and v == "fused":
            ref = (params, losses)
        if ref is not None:
            entry["max_rel_diff_vs_fused"] = max(
                float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(params, ref[0])
            )
        for touches in (4, 3):
            entry[f"fraction_of_{touches}_touch_bound"] = (
                entry["network_steps_per_s"] * touches * weight_bytes / bandwidth
            )
        result["variants"][v] = entry
        log(
            f"[{name}] {v}: {entry['network_steps_per_s']:.4g} network-steps/s, compile {entry['compile_s']:.3g} s, "
            f"{entry['fusions']} fusions, {entry['dots']} dots, {entry['custom_calls']} library calls, "
            f"{entry['fraction_of_4_touch_bound']:.2f} of the 4-touch bound"
        )
        save()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", choices=["paper", "small"], default=["paper", "small"])
    ap.add_argument("--tiny", action="store_true", help="toy sizes only (seconds; for the tests)")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    device_class = "cpu" if jax.devices()[0].platform == "cpu" else "gpu"
    bw = tp.copy_bandwidth((8 if args.tiny else 256 if device_class == "cpu" else 2048) * 2**20)
    result: dict[str, Any] = {
        "device": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
        "jax": jax.__version__,
        "bandwidth": bw,
        "dtype": "float32",
        "sizes": {},
    }
    print(f"copy bandwidth {bw['bytes_per_s'] / 1e9:.1f} GB/s", flush=True)
    for name in ["tiny"] if args.tiny else args.sizes:
        runs, steps, calls = BUDGETS[(name, device_class)]
        result["sizes"][name] = {}
        run_size(
            name,
            args.runs or runs,
            args.steps or steps,
            calls,
            bw["bytes_per_s"],
            result["sizes"][name],
            log=lambda msg: print(msg, flush=True),
            save=(lambda: tp.write_json(args.out, result)) if args.out else (lambda: None),
        )
    if args.out:
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
