"""Results files: NetCDF round trip, atomic per-chunk persistence, resume, config identity."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim
import dlnsim.storage.sweep as storage_sweep
from dlnsim import grid as grid_mod
from dlnsim.configfile import dumps_config, load_config
from dlnsim.storage.chunks import Stored, finished_runs, gather
from dlnsim.results import run_shapes
from dlnsim.storage.identity import same_sweep
from dlnsim.storage import (
    VOLATILE_ATTRS,
    ExistingResultsError,
    OutputPathError,
    check_output,
    chunk_dir,
    merge_shards,
    open_results,
    run_sweep,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = EXAMPLES / "tiny.toml"
# One compiled group (depth 2), 4 runs in 4 chunks: compiles once per test session.
CFG = load_config(TINY, ["grid.depth=[2]", "sweep.chunk_size=1"])
OTHER = load_config(TINY, ["grid.depth=[2]", "sweep.chunk_size=1", "train.steps=20"])  # another sweep


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
    # Every variable says what it is: the metrics in the words of the Metrics docstring.
    assert all(back[name].attrs.get("description") for name in back.data_vars)
    assert back["off_fro"].attrs["description"] == "||E P_perp||_F"
    assert back["sv"].attrs["description"].endswith("NaN beyond min(d, m))")  # a description over two lines
    assert "divergence_cap = 1e+08" in back["diverged"].attrs["description"]
    # Storage adds nothing to and loses nothing from the in-memory sweep.
    xr.testing.assert_identical(back.drop_attrs(), dlnsim.sweep(CFG).drop_attrs())


def test_metric_descriptions_without_docstrings():
    """Under python -OO (docstrings stripped) a sweep's variables simply have no description."""
    import subprocess
    import sys

    code = "from dlnsim.results import metric_descriptions; print(metric_descriptions())"
    out = subprocess.run([sys.executable, "-OO", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "{}", out.stderr


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


def _crash_after(index):
    """A progress callback that stops the sweep once chunk ``index`` is on disk."""

    def progress(ev):
        if ev.chunk.index == index:
            raise _Crash

    return progress


def test_resume_recomputes_only_missing_chunks(tmp_path, reference):
    _, ref, _ = reference
    out = tmp_path / "r.nc"

    def crash_after_first(ev):
        if ev.chunk.index == 1:  # chunks 0 and 1 are on disk when this fires
            raise _Crash

    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=crash_after_first)
    side = chunk_dir(out)
    # Named by their runs: the first run, how many, and a CRC-32 of their indices.
    names = sorted(p.name for p in side.iterdir())
    assert names[2] == "config.toml" and len(names) == 3, names
    assert re.fullmatch(r"chunk-0000000-00001-[0-9a-f]{8}\.npz", names[0]), names
    assert re.fullmatch(r"chunk-0000001-00001-[0-9a-f]{8}\.npz", names[1]), names
    assert not out.exists()
    # A damaged chunk file and a stray temporary from a killed write are never taken as done.
    second = side / names[1]
    second.write_bytes(second.read_bytes()[:100])
    (side / f".{names[1]}.abc.tmp").write_bytes(b"half")
    # Nor is a file whose name does not say the runs it holds (renamed or foreign).
    (tmp_path / "renamed").mkdir()
    (tmp_path / "renamed" / names[1]).write_bytes((side / names[0]).read_bytes())  # run 0 named run 1
    shapes = run_shapes(CFG)
    assert sorted(finished_runs(side, shapes)) == [0] and finished_runs(tmp_path / "renamed", shapes) == {}

    events = []
    ds, skipped = run_sweep(CFG, out, progress=events.append)
    assert skipped == 1
    assert [e.skipped for e in events] == [True, False, False, False]
    assert events[-1].runs_done == events[-1].n_runs == 4
    xr.testing.assert_identical(_stable(ds), _stable(ref))
    xr.testing.assert_identical(_stable(open_results(out)[0]), _stable(ref))
    assert not side.exists()


TAMPERED = {  # a chunk file's arrays -> the same file, damaged in a way np.load does not notice
    "metric of another shape": lambda a: a | {"metric_on_err": a["metric_on_err"][:, :3]},
    "metric as text": lambda a: a | {"metric_on_err": np.full(a["metric_on_err"].shape, "x")},
    "flags as floats": lambda a: a | {"diverged": a["diverged"].astype(float)},
    "time as text": lambda a: a | {"seconds": np.array("soon")},
}


@pytest.mark.parametrize("tamper", TAMPERED)
def test_a_chunk_file_that_does_not_fit_the_sweep_is_recomputed(tmp_path, reference, tamper):
    """As a damaged file is: its runs are computed again, never a crash at the resume."""
    _, ref, _ = reference

    def crash_after_first(ev):
        if ev.chunk.index == 1:
            raise _Crash

    out = tmp_path / "r.nc"
    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=crash_after_first)
    first = sorted(chunk_dir(out).glob("chunk-*.npz"))[0]
    with np.load(first) as z:
        arrays = TAMPERED[tamper](dict(z))
    np.savez(first, **arrays)
    assert sorted(finished_runs(chunk_dir(out), run_shapes(CFG))) == [1]
    ds, skipped = run_sweep(CFG, out)
    assert skipped == 1
    xr.testing.assert_identical(_stable(ds), _stable(ref))


def test_another_chunk_plan_resumes_from_the_old_chunk_files(reference, tmp_path, monkeypatch):
    """How runs are batched is not part of a sweep's identity (results do not depend on it): a
    finished file is recognised, and an unfinished sweep resumes under another chunk size
    (say, after running out of device memory), taking finished runs from the old plan's files."""
    path, ref, _ = reference
    before = path.read_bytes()
    _, skipped = run_sweep(dataclasses.replace(CFG, chunk_size=None, max_memory="1GB"), path)
    assert skipped == 1 and path.read_bytes() == before  # one chunk in the new plan; nothing rewritten

    out = tmp_path / "r.nc"

    def crash_after_third(ev):
        if ev.chunk.index == 2:  # runs 0, 1 and 2 are on disk, one file each
            raise _Crash

    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=crash_after_third)
    events, computed = [], []
    compute = storage_sweep.run_chunk

    def run_chunk(cfg, chunk, pad):
        computed.append(chunk.runs)
        return compute(cfg, chunk, pad)

    monkeypatch.setattr(storage_sweep, "run_chunk", run_chunk)
    ds, skipped = run_sweep(dataclasses.replace(CFG, chunk_size=2), out, progress=events.append)
    # Runs 0-1 gathered from two files of the old plan; of runs 2-3 only run 3 is computed.
    assert [(e.skipped, e.computed, e.to_compute) for e in events] == [(True, 0, 1), (False, 1, 0)]
    assert skipped == 1
    assert computed == [(3,)]
    flat = lambda d: d.on_err.values.reshape(4, -1)  # noqa: E731
    np.testing.assert_array_equal(flat(ds)[:3], flat(ref)[:3])  # the very values of the old files
    # Run 3 in a batch padded to two instead of alone: equal to float32 rounding.
    np.testing.assert_allclose(flat(ds), flat(ref), rtol=1e-5, atol=1e-7)
    assert not chunk_dir(out).exists()


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
    # The grid's axis order numbers the runs of the chunk files: reordered axes are another sweep.
    reordered = dataclasses.replace(CFG, grid=dict(reversed(CFG.grid.items())))
    assert reordered != CFG and list(reordered.grid) != list(CFG.grid)
    with pytest.raises(ExistingResultsError, match=r"grid axis order: \['depth', 'weight_decay', 'seed'\] there"):
        run_sweep(reordered, out)
    assert len(list(chunk_dir(out).glob("chunk-0000000-00001-*.npz"))) == 1


def test_force_replaces_results(tmp_path):
    out = tmp_path / "f.nc"
    out.write_text("not a results file")
    with pytest.raises(ExistingResultsError, match="not a dlnsim results file"):
        run_sweep(CFG, out)
    _ds, skipped = run_sweep(CFG, out, force=True)
    assert skipped == 0 and open_results(out)[0].attrs["config_toml"] == dumps_config(CFG)


def test_an_interrupted_forced_run_keeps_the_old_file_and_resumes_without_force(reference, tmp_path):
    """--force replaces another sweep's file only when the new one is written; interrupted,
    the old file is still there and a rerun without force resumes from the new chunks."""
    path, ref, _ = reference
    out = tmp_path / "f.nc"
    other = load_config(EXAMPLES / "tiny.toml", ["grid.depth=[2]", "sweep.chunk_size=1", "train.steps=20"])
    run_sweep(other, out)
    before = out.read_bytes()

    def crash_after_second(ev):
        if ev.chunk.index == 1:
            raise _Crash

    with pytest.raises(_Crash):
        run_sweep(CFG, out, force=True, progress=crash_after_second)
    assert out.read_bytes() == before  # nothing lost yet
    events = []
    ds, skipped = run_sweep(CFG, out, progress=events.append)
    assert skipped == 2 and [e.skipped for e in events] == [True, True, False, False]
    xr.testing.assert_identical(_stable(open_results(out)[0]), _stable(ref))
    # ... while the old sweep, run again into the path, is refused as usual.
    with pytest.raises(ExistingResultsError, match="different sweep"):
        run_sweep(other, out)


def test_a_forced_recompute_of_the_same_sweep_resumes_without_force(reference, tmp_path, monkeypatch):
    """--force over a file of this very sweep (say after a code change), interrupted: the rerun
    without --force resumes the recompute and replaces the file; it does not hand back the old
    file and drop the new chunks."""
    path, ref, _ = reference
    out = tmp_path / "r.nc"
    stale = open_results(path)[0]
    stale["on_err"] = stale["on_err"] + 1.0  # results of older code
    stale.to_netcdf(out, engine="h5netcdf")

    def crash_after_second(ev):
        if ev.chunk.index == 1:
            raise _Crash

    with pytest.raises(_Crash):
        run_sweep(CFG, out, force=True, progress=crash_after_second)
    _, skipped = run_sweep(CFG, out)
    assert skipped == 2 and not chunk_dir(out).exists()
    xr.testing.assert_identical(_stable(open_results(out)[0]), _stable(ref))


def test_chunks_of_a_plain_run_never_overwrite_another_sweeps_file(reference, tmp_path):
    """A plain run of this sweep interrupted, then another sweep's file put at the path (copied,
    merged): the rerun refuses it, as without the chunks (only a --force run replaces it)."""
    path, _, _ = reference
    out = tmp_path / "r.nc"
    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=lambda ev: (_ for _ in ()).throw(_Crash()))
    other = load_config(EXAMPLES / "tiny.toml", ["grid.depth=[2]", "sweep.chunk_size=1", "train.steps=20"])
    run_sweep(other, tmp_path / "other.nc")
    (tmp_path / "other.nc").rename(out)
    before = out.read_bytes()
    with pytest.raises(ExistingResultsError, match="different sweep"):
        run_sweep(CFG, out)
    assert out.read_bytes() == before and any(chunk_dir(out).glob("chunk-*.npz"))


def test_a_stale_forced_marker_does_not_make_a_plain_run_forced(reference, tmp_path):
    """A --force run killed before its first chunk leaves its marker; a later plain run of
    another sweep at the path is a plain run: it refuses another sweep's file."""
    path, _, _ = reference
    out = tmp_path / "r.nc"
    other = load_config(EXAMPLES / "tiny.toml", ["grid.depth=[2]", "sweep.chunk_size=1", "train.steps=20"])
    with pytest.raises(_Crash):  # forced, stopped before its first chunk finished
        run_sweep(other, out, force=True, progress=lambda ev: (_ for _ in ()).throw(_Crash()))
    for p in chunk_dir(out).glob("chunk-*.npz"):
        p.unlink()
    assert (chunk_dir(out) / "forced").exists()
    with pytest.raises(_Crash):  # a plain run of CFG takes the directory over
        run_sweep(CFG, out, progress=lambda ev: (_ for _ in ()).throw(_Crash()))
    assert not (chunk_dir(out) / "forced").exists()
    run_sweep(other, tmp_path / "o.nc")
    (tmp_path / "o.nc").rename(out)  # another sweep's file lands at the path (merge, copy)
    with pytest.raises(ExistingResultsError, match="different sweep"):
        run_sweep(CFG, out)


def test_a_chunk_directory_is_removed_as_a_whole(reference, tmp_path, monkeypatch):
    """Killed while removing the chunks after the final write: either the whole directory is
    still there (the rerun finds the file complete) or none of it; a half-removed copy left
    under another name is cleaned up by the next run."""
    path, _, _ = reference
    out = tmp_path / "r.nc"
    out.write_bytes(path.read_bytes())
    half = tmp_path / ".r.nc.chunks.12345.removed"
    half.mkdir()
    (half / "chunk-0000000-00001-00000000.npz").write_bytes(b"junk")  # config.toml already gone
    seen = []
    monkeypatch.setattr(storage_sweep.shutil, "rmtree", lambda p, **kw: seen.append(Path(p).name))
    run_sweep(CFG, out)
    assert seen == [half.name]  # only the renamed leftover; no chunk directory of this run
    assert not chunk_dir(out).exists()


def test_a_run_stopped_before_its_first_chunk_does_not_block_its_path(tmp_path):
    """A chunk directory with a config but no finished chunk holds nothing to keep: another
    config may take the path (a failed start with a typo, then the corrected run)."""
    out = tmp_path / "r.nc"
    chunk_dir(out).mkdir()
    (chunk_dir(out) / "config.toml").write_text("[train]\nsteps = 99\n")
    run_sweep(CFG, out)
    assert open_results(out)[0].attrs["config_toml"] == dumps_config(CFG)


def test_damaged_configs_at_the_output_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "b.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}, attrs={"config_toml": "this is = not toml ="}).to_netcdf(
        bad, engine="h5netcdf"
    )
    with pytest.raises(ExistingResultsError, match="not a dlnsim results file .its config_toml attribute is not TOML"):
        run_sweep(CFG, bad)
    out = tmp_path / "g.nc"
    chunk_dir(out).mkdir()
    (chunk_dir(out) / "config.toml").write_bytes(b"x = = \xff")
    (chunk_dir(out) / "chunk-0000000-00001-00000000.npz").write_bytes(b"junk")
    with pytest.raises(ExistingResultsError, match="config.toml cannot be read"):
        run_sweep(CFG, out)


def test_leftovers_of_a_run_killed_after_writing_its_file_are_removed(reference, tmp_path):
    """Killed between writing the file and removing the chunks, or inside the final write:
    the rerun finds the file complete and removes the chunk directory and the temporary."""
    path, ref, _ = reference
    out = tmp_path / "r.nc"
    out.write_bytes(path.read_bytes())
    chunk_dir(out).mkdir()
    (chunk_dir(out) / "config.toml").write_text(dumps_config(CFG))
    (chunk_dir(out) / "chunk-0000000-00001-00000000.npz").write_bytes(b"junk")
    (tmp_path / ".r.nc.ab_12xyz.tmp").write_bytes(b"half")
    (tmp_path / ".other.nc.ab_12xyz.tmp").write_bytes(b"another file's")
    (tmp_path / ".r.nc.bak.ab_12xyz.tmp").write_bytes(b"r.nc.bak's")  # not r.nc's
    _, skipped = run_sweep(CFG, out)
    assert skipped == 4 and not chunk_dir(out).exists() and not (tmp_path / ".r.nc.ab_12xyz.tmp").exists()
    assert (tmp_path / ".other.nc.ab_12xyz.tmp").exists() and (tmp_path / ".r.nc.bak.ab_12xyz.tmp").exists()


def _shard_copy(src: Path, dst: Path, config_toml: str | None = None) -> Path:
    """``src`` rewritten as shard 0/1 (all runs; a complete set on its own), or, given
    ``config_toml``, as the results of that other sweep: files without computing them."""
    ds = open_results(src)[0]
    if config_toml is None:
        ds.attrs.update(shard="0/1", shard_runs=np.arange(ds["diverged"].size))
        ds.attrs["config_toml"] += "# shard 0/1: this file holds slice 0 of 1 of the sweep's chunks\n"  # as run_sweep
    else:
        ds.attrs["config_toml"] = config_toml
    ds.to_netcdf(dst, engine="h5netcdf")
    return dst


def test_merge_refuses_to_overwrite_another_sweep(reference, tmp_path):
    path, ref, _ = reference
    part = _shard_copy(path, tmp_path / "part-0.nc")
    other = load_config(EXAMPLES / "tiny.toml", ["grid.depth=[2]", "sweep.chunk_size=1", "train.steps=20"])
    out = _shard_copy(path, tmp_path / "other.nc", dumps_config(other))
    before = out.read_bytes()
    with pytest.raises(ExistingResultsError, match=r"train\.steps: 20 there, 40 here.*--force"):
        merge_shards([part], out)
    assert out.read_bytes() == before
    # Onto a shard itself: the same settings, a different slice.
    with pytest.raises(ExistingResultsError, match=r"\(shard 0/1 there, the whole sweep here\)"):
        merge_shards([part], part)
    # Forced, or onto a file of the same sweep: written.
    merge_shards([part], out, force=True)
    assert open_results(out)[1] == CFG
    same = tmp_path / "same.nc"
    same.write_bytes(path.read_bytes())
    merged = merge_shards([part], same)
    xr.testing.assert_identical(_stable(open_results(same)[0]), _stable(merged))


def test_merge_names_a_missing_or_damaged_part(tmp_path):
    (tmp_path / "corrupt.nc").write_text("not netcdf")
    with pytest.raises(ValueError, match=f"no results file at {tmp_path / 'nope.nc'}"):
        merge_shards([tmp_path / "nope.nc"], tmp_path / "m.nc")
    with pytest.raises(ValueError, match=f"{tmp_path / 'corrupt.nc'} is not a dlnsim results file"):
        merge_shards([tmp_path / "corrupt.nc"], tmp_path / "m.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.nc"]


def test_output_path_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("a file")

    def never(ev):
        raise AssertionError("a chunk was computed")

    for out, match in (
        (tmp_path / "dir", "is a directory"),
        (tmp_path / "file" / "r.nc", "file is a file, not a directory"),
        (tmp_path / "file" / "sub" / "r.nc", "file is a file, not a directory"),
    ):
        for force in (False, True):
            with pytest.raises(OutputPathError, match=match):
                run_sweep(CFG, out, force=force, progress=never)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"] and not any((tmp_path / "dir").iterdir())
    assert check_output(tmp_path / "new" / "deeper" / "r.nc") == tmp_path / "new" / "deeper" / "r.nc"
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_an_existing_directory_that_is_not_writable_is_refused(tmp_path, monkeypatch):
    """(os.access is patched: as root every directory is writable.)"""
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputPathError, match="cannot be written: it is not writable"):
        check_output(tmp_path, directory=True)


def test_resume_under_a_smaller_chunk_size_takes_rows_of_the_old_files(reference, tmp_path):
    """S01 (gather hands back a whole file for a chunk that needs some of its rows): chunks of 2
    interrupted, resumed in chunks of 1, give the uninterrupted results."""
    ref, _ = run_sweep(dataclasses.replace(CFG, chunk_size=2), tmp_path / "ref2.nc")  # the old plan, whole
    out = tmp_path / "r.nc"
    with pytest.raises(_Crash):
        run_sweep(dataclasses.replace(CFG, chunk_size=2), out, progress=_crash_after(0))
    events = []
    ds, skipped = run_sweep(CFG, out, progress=events.append)
    assert skipped == 2 and [e.skipped for e in events] == [True, True, False, False]
    back = open_results(out)[0]
    for name in dlnsim.Metrics._fields:
        flat = lambda d, name=name: d[name].values.reshape(4, -1)  # noqa: E731
        np.testing.assert_array_equal(flat(back)[:2], flat(ref)[:2], err_msg=name)  # rows of the old file
        # Runs 2-3 in batches of one instead of two: equal to float32 rounding (the small singular
        # values, from eigh of E^T E, only to ~eps sigma_max^2 / sigma).
        atol = 1e-4 if name == "sv" else 1e-6
        np.testing.assert_allclose(flat(back), flat(ref), rtol=1e-5, atol=atol, err_msg=name)


def test_gather_shares_out_compute_time_by_rows():
    """S02 (a file's whole time charged for each row taken): one row of each of two 2-run files
    that took 2 s each cost 2 s, not 4 s."""
    from dlnsim.grid import ChunkResult
    from dlnsim.metrics import Metrics

    def stored(first, seconds):
        metrics = {k: np.array([[first], [first + 1]], np.float32) for k in Metrics._fields}
        res = ChunkResult(metrics, np.zeros(2, bool), np.full(2, -1, np.int32), seconds)
        return Stored(res, 10.0 + first, 20.0 + first)

    a, b = stored(0, 2.0), stored(2, 2.0)
    got = gather(grid_mod.Chunk(0, 0, (1, 2)), {0: (a, 0), 1: (a, 1), 2: (b, 0), 3: (b, 1)})
    assert got.result.seconds == pytest.approx(2.0)
    np.testing.assert_array_equal(got.result.metrics["on_err"][:, 0], [1, 2])
    assert (got.started, got.finished) == (10.0, 22.0)


@pytest.mark.parametrize(
    "override",
    ["sweep.teacher_per_seed=true", "hparams.lr=0.06", "problem.n_test=17", "train.balance_every=3", "model.init=he"],
)
def test_every_setting_but_the_batching_is_part_of_a_sweeps_identity(override):
    """S04 (teacher_per_seed treated as batching): a changed setting is another sweep, whose
    chunks must not be resumed; only chunk_size and max_memory are not."""
    text = dumps_config(CFG)
    assert not same_sweep(text, dumps_config(load_config(TINY, ["grid.depth=[2]", "sweep.chunk_size=1", override])))
    assert same_sweep(text, dumps_config(dataclasses.replace(CFG, chunk_size=None, max_memory="1GB")))


def test_teacher_per_seed_does_not_resume_chunks_of_shared_teachers(tmp_path):
    """S04 end to end: chunks of a shared-teacher run are refused to a teacher-per-seed rerun."""
    out = tmp_path / "r.nc"
    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=_crash_after(0))
    with pytest.raises(ExistingResultsError, match="teacher_per_seed"):
        run_sweep(dataclasses.replace(CFG, teacher_per_seed=True), out)


def test_a_finished_file_keeps_another_sweeps_chunks(reference, tmp_path):
    """S08 (leftover cleanup removes every chunk directory): the file at the path is complete
    for this sweep, the chunk directory belongs to another sweep's unfinished run: kept."""
    path, _, _ = reference
    out = tmp_path / "r.nc"
    out.write_bytes(path.read_bytes())
    side = chunk_dir(out)
    side.mkdir()
    (side / "config.toml").write_text(dumps_config(OTHER))
    (side / "chunk-0000000-00001-00000000.npz").write_bytes(b"another sweep's")
    _, skipped = run_sweep(CFG, out)
    assert skipped == 4 and (side / "chunk-0000000-00001-00000000.npz").exists()


def test_force_recomputes_chunks_of_an_unfinished_run_of_the_same_sweep(reference, tmp_path, monkeypatch):
    """S10 (force keeps the chunk directory): --force recomputes every run, also those an
    interrupted run of this very sweep left on disk."""
    out = tmp_path / "r.nc"
    with pytest.raises(_Crash):
        run_sweep(CFG, out, progress=_crash_after(1))
    events = []
    _, skipped = run_sweep(CFG, out, force=True, progress=events.append)
    assert skipped == 0 and not any(e.skipped for e in events)


def test_wall_time_is_recorded_per_group(tmp_path):
    """S12 (all wall time booked to group 0): each of two groups records its own compute time."""
    ds, _ = run_sweep(load_config(TINY), tmp_path / "r.nc")
    walls = json.loads(ds.attrs["group_wall_seconds"])
    assert json.loads(ds.attrs["groups"]) == [{"depth": 1}, {"depth": 2}] and len(walls) == 2 and min(walls) > 0


def test_merge_refuses_shards_of_different_sweeps(reference, tmp_path):
    """H01 (merge compares slice counts only): two halves whose configs differ are refused."""
    path, _, _ = reference
    ds = open_results(path)[0]
    parts = []
    for i, cfg in enumerate((CFG, load_config(TINY, ["grid.depth=[2]", "sweep.chunk_size=1", "hparams.lr=0.04"]))):
        part = ds.assign_attrs(
            shard=f"{i}/2",
            shard_runs=np.arange(2 * i, 2 * i + 2),
            config_toml=dumps_config(cfg) + f"# shard {i}/2: this file holds slice {i} of 2 of the sweep's chunks\n",
        )
        part.to_netcdf(tmp_path / f"part{i}.nc", engine="h5netcdf")
        parts.append(tmp_path / f"part{i}.nc")
    with pytest.raises(
        ValueError,
        match=r"part1.nc is a shard of a different sweep .*\(hparams.lr: 0.05 in part0.nc, 0.04 in part1.nc\)",
    ):
        merge_shards(parts, tmp_path / "m.nc")
    assert not (tmp_path / "m.nc").exists()


# An edit of a results file (ds, its config's text) -> what the refusal names.
EDITS = {
    "variable dropped": (lambda ds, t: (ds.drop_vars("on_err"), t), "no variable 'on_err'"),
    "seeds cut down": (lambda ds, t: (ds.isel(seed=[0]), t), "seed = 0 where its config_toml gives seed = 0, 1"),
    "axis renamed": (lambda ds, t: (ds.rename(seed="sd"), t), "has dims"),
    "axes transposed": (lambda ds, t: (ds.transpose("seed", ...), t), "has dims"),
    "flags as floats": (lambda ds, t: (ds.assign(diverged=ds.diverged.astype(float)), t), "diverged holds float64"),
    "no noise levels": (lambda ds, t: (ds.isel(sigma=[]), t), "sigma = (none)"),
    "config edited": (lambda ds, t: (ds, t.replace("steps = 40", "steps = 80")), "step = 0, 10, 20, 30, 40 where"),
    "shard without its runs": (lambda ds, t: (ds.assign_attrs(shard="0/2"), t), "needs shard_runs"),
    "shard not I/N": (lambda ds, t: (ds.assign_attrs(shard="2/2", shard_runs=[0]), t), "not I/N"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_file_whose_data_does_not_fit_its_config_is_refused(reference, tmp_path, edit):
    """Edited by hand or cut down, a results file is refused when read (summarising it would
    report on runs it lacks or misread its axes), and at a sweep's output, which it does not
    hold, although its config says so (nothing is recomputed or overwritten without --force)."""
    path, _, _ = reference
    assert "steps = 40" in dumps_config(CFG)
    ds, text = EDITS[edit][0](open_results(path)[0], dumps_config(CFG))
    bad = tmp_path / "bad.nc"
    ds.assign_attrs(config_toml=text).to_netcdf(bad, engine="h5netcdf")
    with pytest.raises(ValueError, match=re.escape(EDITS[edit][1])):
        open_results(bad)
    if edit != "config edited":  # (that file holds another sweep: refused as such)
        with pytest.raises(ExistingResultsError, match="is not a dlnsim results file .*" + re.escape(EDITS[edit][1])):
            run_sweep(CFG, bad)
