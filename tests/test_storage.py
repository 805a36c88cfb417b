"""Results files: NetCDF round trip, atomic per-chunk persistence, resume, config identity."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim.configfile import dumps_config, load_config
from dlnsim.storage import VOLATILE_ATTRS, ExistingResultsError, chunk_dir, open_results, run_sweep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# One compiled group (depth 2), 4 runs in 4 chunks: compiles once per test session.
CFG = load_config(EXAMPLES / "tiny.toml", ["grid.depth=[2]", "sweep.chunk_size=1"])


def _stable(ds: xr.Dataset) -> xr.Dataset:
    """The dataset without the attributes that record when it was computed."""
    return ds.drop_attrs(deep=False).assign_attrs({k: v for k, v in ds.attrs.items() if k not in VOLATILE_ATTRS})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.nc"
    ds, skipped = run_sweep(CFG, path)
    return path, ds, skipped


def test_round_trip(reference):
    path, ds, skipped = reference
    assert skipped == 0
    assert not chunk_dir(path).exists()  # the sidecar is removed once the file is complete
    with xr.open_dataset(path, engine="h5netcdf") as f:
        back = f.load()
    xr.testing.assert_identical(back, ds)  # values, dims, coords and attributes
    assert back["diverged"].dtype == bool and back["on_err"].dtype == np.float32
    assert dict(back.sizes) == {"depth": 1, "weight_decay": 2, "seed": 2, "step": 5, "sigma": 3, "k": 8}
    # Storage adds nothing to and loses nothing from the in-memory sweep.
    xr.testing.assert_identical(back.drop_attrs(), dlnsim.sweep(CFG).drop_attrs())


def test_provenance_attributes(reference):
    path, _, _ = reference
    ds, cfg = open_results(path)
    assert ds.attrs["config_toml"] == dumps_config(CFG) == dumps_config(cfg)
    for key in ("dlnsim_version", "jax_version", "device_kind", "precision", "dtype", *VOLATILE_ATTRS):
        assert key in ds.attrs, key
    assert ds.attrs["dlnsim_version"] == dlnsim.__version__ and ds.attrs["precision"] == "highest"
    assert ds.attrs["start_time"] <= ds.attrs["end_time"]
    assert json.loads(ds.attrs["groups"]) == [{"depth": 2}]
    (wall,) = json.loads(ds.attrs["group_wall_seconds"])
    assert wall > 0


def test_complete_file_is_not_recomputed(reference):
    path, ds, _ = reference
    before = path.read_bytes()
    again, skipped = run_sweep(CFG, path)
    assert skipped == 4
    xr.testing.assert_identical(again, ds)
    assert path.read_bytes() == before


class _Crash(Exception):
    pass


def test_resume_recomputes_only_missing_chunks(tmp_path, reference):
    _, ref, _ = reference
    out = tmp_path / "r.nc"

    def crash_after_first(ev):
        if ev.chunk.index == 1:  # chunks 0 and 1 are on disk when this fires
            raise _Crash

    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=crash_after_first)
    side = chunk_dir(out)
    assert sorted(p.name for p in side.iterdir()) == ["chunk-00000.npz", "chunk-00001.npz", "config.toml"]
    assert not out.exists()
    # A damaged chunk file and a stray temporary from a killed write are never taken as done.
    (side / "chunk-00001.npz").write_bytes((side / "chunk-00001.npz").read_bytes()[:100])
    (side / ".chunk-00002.npz.abc.tmp").write_bytes(b"half")

    events = []
    ds, skipped = run_sweep(CFG, out, progress=events.append)
    assert skipped == 1
    assert [e.skipped for e in events] == [True, False, False, False]
    assert events[-1].runs_done == events[-1].n_runs == 4
    xr.testing.assert_identical(_stable(ds), _stable(ref))
    xr.testing.assert_identical(_stable(open_results(out)[0]), _stable(ref))
    assert not side.exists()


def test_different_config_is_refused(reference, tmp_path):
    path, _, _ = reference
    before = path.read_bytes()
    other = load_config(EXAMPLES / "tiny.toml", ["grid.depth=[2]", "sweep.chunk_size=1", "train.steps=20"])
    with pytest.raises(ExistingResultsError, match=r"train\.steps: 40 there, 20 here"):
        run_sweep(other, path)
    assert path.read_bytes() == before
    # The same holds for the chunks of an unfinished sweep.
    out = tmp_path / "partial.nc"
    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=lambda ev: (_ for _ in ()).throw(_Crash()))
    with pytest.raises(ExistingResultsError, match="different sweep"):
        run_sweep(other, out)
    assert (chunk_dir(out) / "chunk-00000.npz").exists()


def test_force_replaces_results(tmp_path):
    out = tmp_path / "f.nc"
    out.write_text("not a results file")
    with pytest.raises(ExistingResultsError, match="not a dlnsim results file"):
        run_sweep(CFG, out)
    _ds, skipped = run_sweep(CFG, out, force=True)
    assert skipped == 0 and open_results(out)[0].attrs["config_toml"] == dumps_config(CFG)
