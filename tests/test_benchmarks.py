"""The GPU check runs its steps at toy sizes, and the throughput benchmark writes valid JSON
with every field.

Runs the scripts as subprocesses (as a user would), so the test session's float64 setting
does not leak into them. Torch fields must be numbers when torch is installed and null when
it is not (CI does not install the ``bench`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import touches  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None

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
METHOD_FIELDS = (
    "networks",
    "steps",
    "seconds",
    "compile_s",
    "steady_state",
    "extrapolated",
    "network_steps_per_s",
    "ratio_vs_torch_naive",
    "bound_fraction",
)
LOGGING_FIELDS = (
    "log_every",
    "steps",
    "networks",
    "seconds_log_at_end",
    "seconds_log_every",
    "measured_overhead",
    "seconds_per_log_point",
    "seconds_per_step",
    "overhead_every_50_steps",
    "seconds_log_every_no_balance",
    "overhead_every_50_steps_no_balance",
    "balance_every",
    "seconds_log_every_balance_all",
    "overhead_every_50_steps_balance_all",
)


def _positive(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0


GPU_CHECK_FILES = [
    "environment.txt",
    "gpu_check.log",
    "summary.txt",
    "tests.txt",
    "throughput_tiny.json",
    "throughput_tiny.txt",
    "touches.json",
    "touches.txt",
]


def test_gpu_check_dry_run_writes_complete_json(tmp_path):
    """benchmarks/gpu_check.sh as a lent GPU machine runs it once, at toy sizes on this
    machine (DRY_RUN=1): its tests (the backend's, then the others), the throughput benchmark
    and the touches probe run and write their files, the throughput JSON has every field and the probe every variant.
    Run as subprocesses (as a user would), so the test session's float64 setting does not
    leak into the benchmarks."""
    out = tmp_path / "gpu"
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}  # tests of one file of each part
    proc = subprocess.run(
        ["bash", str(BENCH / "gpu_check.sh"), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert sorted(p.name for p in out.iterdir()) == GPU_CHECK_FILES
    summary = (out / "summary.txt").read_text()
    assert "== tests (rc 0)\n[device] 8 passed" in summary  # tests/test_random.py
    assert "\n[not device] " in summary and summary.count(" passed") == 2
    assert "dlnsim_reduced" in summary and "== touches probe" in summary  # the tables were printed

    touched = json.loads((out / "touches.json").read_text())
    assert touched["bandwidth"]["bytes_per_s"] > 0
    variants = touched["sizes"]["tiny"]["variants"]
    assert set(variants) == set(touches.VARIANTS)
    for name, e in variants.items():
        assert e["network_steps_per_s"] > 0 and e["compile_s"] > 0, name
        assert e["fusions"] > 0 and e["fraction_of_3_touch_bound"] > 0, name
        assert e["max_rel_diff_vs_fused"] < 1e-5, name  # float32: the same step

    res = json.loads((out / "throughput_tiny.json").read_text())

    assert res["schema"] == "dlnsim-throughput/1"
    assert res["dtype"] == "float32" and res["precision"] == "highest"
    for k in ("platform", "device_kind", "n_devices", "cpu_model", "cpu_count"):
        assert k in res["device"]
    for k in ("python", "jax", "jaxlib", "numpy", "dlnsim"):
        assert isinstance(res["versions"][k], str)
    assert (res["versions"]["torch"] is not None) == HAS_TORCH
    assert res["torch"]["available"] == HAS_TORCH
    assert _positive(res["bandwidth"]["bytes_per_s"])
    assert isinstance(res["compiler_options"], dict)

    pre = res["presets"]["tiny"]
    assert pre["complete"] is True  # (False in the file while the size runs: see run_preset)
    assert set(pre["sizes"]) >= {"d", "m", "s", "depth", "width", "n_train", "runs"}
    # Weights of the tiny net: 8x4 + 8x8 + 8x8 floats.
    assert pre["weights_per_network"] == 8 * 4 + 8 * 8 + 8 * 8
    assert pre["weight_bytes_per_network"] == 4 * pre["weights_per_network"]
    assert math.isclose(
        pre["bound_network_steps_per_s"], res["bandwidth"]["bytes_per_s"] / (4 * pre["weight_bytes_per_network"])
    )
    for name in METHODS:
        entry = pre["methods"][name]
        assert set(entry) >= set(METHOD_FIELDS), name
        if name == "dlnsim_fused" and jax.default_backend() != "cpu":  # the default step on GPUs
            assert entry["network_steps_per_s"] is None
            continue
        if name == "dlnsim_blocked" and jax.default_backend() == "cpu":  # the default step at tiny sizes on CPUs
            assert entry["network_steps_per_s"] is None and entry["steady_state"].startswith("the default step")
            continue
        if name == "dlnsim_pallas" and jax.default_backend() != "gpu":  # measured on GPUs only
            assert entry["network_steps_per_s"] is None and entry["steady_state"].startswith("GPU only")
            continue
        is_torch = name.startswith("torch")
        if is_torch and not HAS_TORCH:
            assert entry["network_steps_per_s"] is None and entry["ratio_vs_torch_naive"] is None
            continue
        assert _positive(entry["network_steps_per_s"]), name
        assert _positive(entry["seconds"]) and _positive(entry["bound_fraction"]), name
        if HAS_TORCH:
            assert _positive(entry["ratio_vs_torch_naive"]), name
        else:
            assert entry["ratio_vs_torch_naive"] is None
    for name in ("dlnsim_reduced", "dlnsim_autodiff", "dlnsim_raw", "jax_naive"):
        assert _positive(pre["methods"][name]["compile_s"]), name
    assert pre["methods"]["dlnsim_reduced"]["diverged_runs"] == 0
    assert set(pre["logging"]) >= set(LOGGING_FIELDS)
    for k in LOGGING_FIELDS:
        assert isinstance(pre["logging"][k], int | float), k


def test_scaling_writes_every_point_and_the_picture(tmp_path, monkeypatch):
    """The scaling benchmark's loop, JSON and picture, over its tiny preset, with each
    measurement stubbed (``throughput.time_dlnsim`` is what the test above runs for real)."""
    sys.path.insert(0, str(BENCH))
    try:
        import scaling
    finally:
        sys.path.remove(str(BENCH))
    calls = []

    def measure(sizes, runs, steps, path, repeats):
        calls.append((sizes.width, runs, steps, path, repeats))
        rate = runs * 1e3 / sizes.width * (1 if path == "reduced" else 0.1)
        return dict(steps=steps, seconds=1.0, compile_s=0.5, network_steps_per_s=rate, steady_state="stub")

    monkeypatch.setattr(scaling, "measure", measure)
    out = tmp_path / "scaling.json"
    scaling.main(["--tiny", "--repeats", "1", "--out", str(out)])

    # Each axis value around the base (width 8, 4 runs), on both paths with their own steps.
    assert calls == [
        (8, 1, 20, "reduced", 1),
        (8, 1, 5, "raw", 1),
        (8, 4, 20, "reduced", 1),
        (8, 4, 5, "raw", 1),
        (4, 4, 20, "reduced", 1),
        (4, 4, 5, "raw", 1),
        (8, 4, 20, "reduced", 1),
        (8, 4, 5, "raw", 1),
    ]
    res = json.loads(out.read_text())
    assert res["schema"] == "dlnsim-scaling/1" and _positive(res["bandwidth"]["bytes_per_s"])
    assert res["base"]["width"] == 8 and res["base_runs"] == 4
    width4 = next(p for p in res["points"] if p["axis"] == "width" and p["value"] == 4 and p["path"] == "raw")
    # float32 weights of the d=8, m=4, depth-3, width-4 network: 4x4 + 4x4 + 8x4.
    assert width4["weight_bytes_per_network"] == 4 * (16 + 16 + 32)
    assert width4["network_steps_per_s"] == 100.0 and width4["runs"] == 4 and width4["sizes"]["width"] == 4
    # The picture goes beside the JSON unless --png says otherwise.
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
