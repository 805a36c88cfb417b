"""Sharded sweeps: n slices merged equal the unsharded sweep's file (multi-machine runs)."""

import dataclasses

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim.storage import VOLATILE_ATTRS, merge_shards, open_results, run_sweep

CFG = dlnsim.SweepConfig(
    problem=dlnsim.ProblemConfig(d=12, m=6, s=2, n_train=12, n_test=16),
    model=dlnsim.ModelConfig(depth=2, width=8),
    train=dlnsim.TrainConfig(steps=40, log_every=10),
    hparams={"lr": 0.05},
    grid={"depth": [1, 2], "weight_decay": [0.0, 0.01], "seed": [0, 1, 2]},
    chunk_size=2,
)
# Size-ratio axes: m = 6, 9 and s = round(0.34 m) = 2, 3, stored as coordinates m and s.
RATIOS = dataclasses.replace(CFG, grid={"m_over_d": [0.5, 0.75], "s_over_m": [0.34], "seed": [0, 1, 2]})


@pytest.mark.parametrize("config", [CFG, RATIOS], ids=["sizes", "ratios"])
def test_merge_of_three_shards_equals_unsharded_sweep(tmp_path, config):
    whole, _ = run_sweep(config, tmp_path / "whole.nc")
    parts = [tmp_path / f"part{i}.nc" for i in range(3)]
    for i, part in enumerate(parts):
        ds, _ = run_sweep(config, part, shard=(i, 3))
        assert ds.attrs["shard"] == f"{i}/3"
        assert np.isnan(ds.on_err.values).any()  # a shard holds only its slice
        red = dlnsim.reduce(ds)  # counts only the runs the shard computed
        assert int(red.n_runs.sum()) == len(ds.attrs["shard_runs"]) < config.n_runs
    merge_shards(parts[::-1], tmp_path / "merged.nc")
    merged, cfg = open_results(tmp_path / "merged.nc")
    reread, _ = open_results(tmp_path / "whole.nc")
    assert cfg == config
    xr.testing.assert_identical(merged.drop_attrs(), reread.drop_attrs())
    for key, value in reread.attrs.items():
        if key not in VOLATILE_ATTRS:
            assert merged.attrs[key] == value, key
    assert set(merged.attrs) == set(reread.attrs)
    np.testing.assert_array_equal(merged.on_err.values, whole.on_err.values)
    if config is RATIOS:  # the sizes each cell used, through the file and the merge
        assert merged.m.dims == ("m_over_d",) and merged.m.values.tolist() == [6, 9]
        assert merged.s.dims == ("m_over_d", "s_over_m") and merged.s.values.tolist() == [[2], [3]]


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path):
    parts = [tmp_path / f"part{i}.nc" for i in range(2)]
    for i, part in enumerate(parts):
        run_sweep(CFG, part, shard=(i, 2))
    with pytest.raises(ValueError, match="shards 1/2 are missing"):
        merge_shards(parts[:1], tmp_path / "merged.nc")
    with pytest.raises(ValueError, match="both shard 0/2"):
        merge_shards([parts[0], parts[0]], tmp_path / "merged.nc")
    assert not (tmp_path / "merged.nc").exists()
    # 6 chunks: a seventh slice would be empty, and every slice says so before any work.
    for i in (0, 6):
        with pytest.raises(ValueError, match="shard = .*/7 is invalid: the sweep has 6 chunks, so 1 of 7 shards"):
            run_sweep(CFG, tmp_path / f"seventh{i}.nc", shard=(i, 7))
    assert not list(tmp_path.glob("seventh*"))
    for bad in ((2, 2), (-1, 2), (0, 0), (0.5, 2)):  # before any work or file, not deep in the run
        with pytest.raises(ValueError, match=r"is invalid: must be \(i, n\) with integers 0 <= i < n"):
            run_sweep(CFG, tmp_path / "bad.nc", shard=bad)
    assert not list(tmp_path.glob("bad*"))


def test_merge_refuses_shards_cut_from_different_chunk_plans(tmp_path):
    """Jobs on devices of other memory cut other chunks: shard i/n of each plan then overlap and
    leave gaps, which merge must name instead of writing NaN runs."""
    parts = [tmp_path / f"part{i}.nc" for i in range(2)]
    run_sweep(CFG, parts[0], shard=(0, 2))
    run_sweep(dataclasses.replace(CFG, chunk_size=3), parts[1], shard=(1, 2))
    with pytest.raises(ValueError, match=r"do not split the sweep's 12 runs: \d+ runs are in more than one shard"):
        merge_shards(parts, tmp_path / "merged.nc")
    assert not (tmp_path / "merged.nc").exists()


@pytest.mark.slow  # two JAX processes with a coordinator: ~30 s on 2 cores; run with -m slow
def test_two_process_distributed_sweep_equals_single_run(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "tiny.toml"
    config.write_text(dlnsim.dumps_config(CFG))
    # The single run is the same command with the same flags: float32 results change in the
    # last bit (~1e-7 relative, measured) with the XLA optimisation level and with the runs
    # per device (an in-process sweep on one device against the command's one per core).
    env = dict(os.environ)  # the suite's XLA_FLAGS (conftest.py), in both commands
    sweep = [sys.executable, "-m", "dlnsim", "sweep", str(config), "-q"]
    cmd = [
        *sweep,
        "-o",
        str(tmp_path / "dist.nc"),
        "--distributed",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
    ]
    procs = [subprocess.Popen([*cmd, "--process-id", str(i)], env=env) for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    subprocess.run([*sweep, "-o", str(tmp_path / "whole.nc")], env=env, check=True, timeout=300)
    dist, _ = open_results(tmp_path / "dist.nc")
    whole, _ = open_results(tmp_path / "whole.nc")
    xr.testing.assert_identical(dist.drop_attrs(), whole.drop_attrs())
    assert not list(tmp_path.glob("dist.part*"))
