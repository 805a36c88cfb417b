"""The ``dlnsim`` command line, end to end in subprocesses, and its error handling in-process.

The subprocesses share one persistent compilation cache (``DLNSIM_COMPILE_CACHE``) that
starts empty, so each of tiny.toml's two groups compiles once for the whole module.
"""

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim import cli
from dlnsim.cli.progress import ProgressBar
from dlnsim.configfile import dumps_config, load_config
from dlnsim.storage import VOLATILE_ATTRS, Progress, chunk_dir, open_results, run_sweep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = EXAMPLES / "tiny.toml"  # 2 groups (depth 1, 2), 4 chunks of 2 runs
TIMEOUT = 300


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("compile_cache")
    return {**os.environ, "DLNSIM_COMPILE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def _dlnsim(env, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dlnsim", *map(str, args)],
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    """A sweep killed with SIGKILL after its first chunk, the same command rerun, and an uninterrupted run.

    The kill lands once the first chunk's progress line is out (the chunk file is written
    before it), usually while the killed process compiles its second group (seconds on a
    cold cache).
    """
    d = tmp_path_factory.mktemp("cli")
    killed = d / "killed.nc"
    with open(d / "killed.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlnsim", "sweep", str(TINY), "-o", str(killed)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + TIMEOUT
        # The progress line follows the chunk file, so waiting for it means both are out.
        while "[dlnsim] chunk 1/4" not in (d / "killed.err").read_text():
            assert proc.poll() is None, "the sweep ended before reporting a chunk"
            assert time.monotonic() < deadline, "no chunk was reported"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    done_at_kill = len(list(chunk_dir(killed).glob("chunk-*.npz")))
    resumed = _dlnsim(env, "sweep", TINY, "-o", killed)
    whole = d / "whole.nc"
    uninterrupted = _dlnsim(env, "sweep", TINY, "-o", whole, "--quiet")
    return {
        "dir": d,
        "killed": killed,
        "killed_err": (d / "killed.err").read_text(),
        "returncode": proc.returncode,
        "done_at_kill": done_at_kill,
        "resumed": resumed,
        "whole": whole,
        "uninterrupted": uninterrupted,
    }


def _stable(path):
    ds = open_results(path)[0]
    return ds.drop_attrs(deep=False).assign_attrs({k: v for k, v in ds.attrs.items() if k not in VOLATILE_ATTRS})


def test_resume_after_sigkill(runs):
    assert runs["returncode"] == -signal.SIGKILL
    assert 1 <= runs["done_at_kill"] < 4  # killed mid-way: some chunks on disk, not all
    # Progress goes to stderr as plain lines when it is not a terminal.
    assert "[dlnsim] chunk 1/4 (depth=1" in runs["killed_err"] and "net-steps/s, ETA" in runs["killed_err"]
    res = runs["resumed"]
    assert res.returncode == 0, res.stderr
    assert f"{runs['done_at_kill']} of 4 chunks skipped" in res.stdout
    assert res.stderr.count("loaded") == runs["done_at_kill"]
    assert not chunk_dir(runs["killed"]).exists()
    assert runs["uninterrupted"].returncode == 0, runs["uninterrupted"].stderr
    # Identical data, coords and attributes, except when each chunk was computed.
    xr.testing.assert_identical(_stable(runs["killed"]), _stable(runs["whole"]))


def test_sweep_writes_results_picture_and_summary(runs):
    out = runs["uninterrupted"]
    assert "[dlnsim]" not in out.stderr  # --quiet
    assert f"wrote {runs['whole']}: 8 runs" in out.stdout
    assert "depth" in out.stdout and "weight_decay" in out.stdout and "diverged" in out.stdout  # summary table
    png = runs["whole"].with_suffix(".png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    ds, cfg = open_results(runs["whole"])
    assert ds.attrs["config_toml"] and cfg.grid == load_config(TINY).grid


def test_summary_plot_info(runs, capsys):
    # In-process: the same main() as the console script (the sweeps above ran it as
    # `python -m dlnsim`), without a subprocess start-up each.
    d, results = runs["dir"], runs["whole"]
    assert cli.main(["summary", str(results)]) == 0
    out = capsys.readouterr().out
    assert "on_err" in out and "0/2" in out  # medians table, diverged counts
    assert cli.main(["summary", str(results), "--format", "csv", "--eps1", "0.5"]) == 0
    csv_out = capsys.readouterr().out.splitlines()
    assert csv_out[0].startswith("depth,weight_decay,final_on_err_median,") and len(csv_out) == 1 + 4
    assert cli.main(["summary", str(results), "--format", "markdown", "--eps3", "1e-3"]) == 0
    assert "off_fro <= 0.001" in capsys.readouterr().out  # the threshold, in the notes
    for bad in (["--eps1", "-1"], ["--eps1", "0"], ["--eps3", "nan"]):
        with pytest.raises(SystemExit) as e:  # argparse's exit, named after the option
            cli.main(["summary", str(results), *bad])
        assert e.value.code == 2
        _one_error(capsys, f"argument {bad[0]}: {bad[1]!r} is invalid: must be a finite number > 0")

    pics = d / "pics"
    assert cli.main(["plot", str(results), "--metric", "on_err", "--format", "svg", "-o", str(pics)]) == 0
    (svg,) = pics.glob("*.svg")
    assert svg.stat().st_size > 1000 and b"<svg" in svg.read_bytes()[:500]
    for kind in ("heatmap", "curves", "offsubspace", "noise"):
        assert cli.main(["plot", str(results), "--kind", kind, "-o", str(pics)]) == 0
    pngs = list(pics.glob("*.png"))
    assert len(pngs) == 4 and all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert cli.main(["plot", str(results), "--x", "lr"]) == 2
    assert "'lr' is not a grid axis" in capsys.readouterr().err
    # -o as a file name: written there, the format from its suffix; a clash with --format is an error
    assert cli.main(["plot", str(results), "--kind", "noise", "-o", str(d / "new" / "mine.pdf")]) == 0
    assert (d / "new" / "mine.pdf").read_bytes()[
        :4
    ] == b"%PDF" and f"wrote {d / 'new' / 'mine.pdf'}" in capsys.readouterr().out
    assert cli.main(["plot", str(results), "-o", str(d / "x.svg"), "--format", "png"]) == 2
    assert "is a .svg file but --format is png" in capsys.readouterr().err and not (d / "x.svg").exists()
    (d / "notes").write_text("a file")
    assert cli.main(["plot", str(results), "-o", str(d / "notes")]) == 2
    assert "existing file without an image suffix" in capsys.readouterr().err

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("dlnsim", "jax / jaxlib", "devices", "matmul precision", "compilation cache", "off (turn it on"):
        assert word in out


def test_the_sweeps_filled_the_compile_cache(env, runs):
    """Each of tiny.toml's two groups went into the cache once, under the size cap (JAX
    keeps an access time per entry only when a cap is set)."""
    cache = Path(env["DLNSIM_COMPILE_CACHE"])
    entries = {p.name.removesuffix("-cache") for p in cache.glob("*-cache")}
    assert len(entries) >= 2, sorted(cache.iterdir())
    assert entries == {p.name.removesuffix("-atime") for p in cache.glob("*-atime")}


def test_the_default_compile_cache_is_on_and_optional(env, tmp_path):
    """With nothing set the CLI caches under $XDG_CACHE_HOME; a default place that cannot be
    created is a note, not an error (an explicit one is an error: test_unwritable_output_paths...)."""
    plain = {k: v for k, v in env.items() if k != "DLNSIM_COMPILE_CACHE"}
    res = _dlnsim({**plain, "XDG_CACHE_HOME": str(tmp_path / "xdg")}, "info")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("compilation cache"))
    assert str(tmp_path / "xdg" / "dlnsim" / "jax") in line and "at most 1 GiB" in line, line
    assert (tmp_path / "xdg" / "dlnsim" / "jax").is_dir()
    (tmp_path / "file").write_text("not a directory")
    res = _dlnsim({**plain, "XDG_CACHE_HOME": str(tmp_path / "file")}, "info")
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("dlnsim: note: no compilation cache: cannot create"), res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("compilation cache"))
    assert line.split(None, 2)[2].startswith("off (turn it on"), line


def test_summary_of_a_float64_file_has_its_theory_columns(env, tmp_path):
    """The teachers of a float64 sweep are redrawn in float64 for the theory columns: a
    `dlnsim summary` process turns x64 on for such a file (its columns were NaN, "-")."""
    cfg = load_config(TINY, ["train.dtype='float64'"])
    ds, _ = run_sweep(cfg, tmp_path / "r64.nc")  # this process has x64 (conftest.py)
    expected = dlnsim.reduce(ds).pred_on_err_limit.sel(stat="median").values  # (depth, weight_decay)
    assert np.isfinite(expected).all()
    res = _dlnsim(env, "summary", tmp_path / "r64.nc", "--format", "csv")
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    col = header.split(",").index("pred_on_err_limit_median")
    got = np.array([float(r.split(",")[col]) for r in rows]).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_bad_config_subprocess(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text().replace("[model]", "[model]\ndepht = 3"))
    res = _dlnsim(env, "sweep", bad, "-o", tmp_path / "out" / "r.nc")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "dlnsim: error: model.depht is an unknown key: [model] allows depth, width, init, activation"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_a_cpu_device_count_that_cannot_apply_is_noted(env):
    """XLA_FLAGS's device count is kept over --cpu-devices, and the user is told so."""
    flags = "--xla_force_host_platform_device_count=3"
    res = _dlnsim({**env, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}, "info", "--cpu-devices", "2")
    assert res.returncode == 0, res.stderr
    assert "3 x cpu" in res.stdout
    assert res.stderr.startswith("dlnsim: note: --cpu-devices 2 not applied"), res.stderr


MINIMAL = TINY.read_text()
BAD = [
    # (case, file text, extra arguments, key path the message must name)
    ("missing section", MINIMAL.replace("[train]", "[trian]"), [], "trian"),
    ("missing grid", MINIMAL.split("[grid]")[0], [], "grid"),
    ("unknown key", MINIMAL, ["--set", "problem.dim=3"], "problem.dim"),
    ("wrong type", MINIMAL, ["--set", 'train.steps="many"'], "train.steps"),
    ("override not TOML", MINIMAL, ["--set", "grid.depth=[2,3"], "grid.depth = '[2,3' is invalid: not a TOML value"),
    ("budget and a chunk size", MINIMAL, ["--set", "sweep.chunk_size=4", "--max-memory", "1GB"], "exclude each other"),
    ("out of range", MINIMAL, ["--set", "hparams.lr=0"], "hparams.lr"),
    ("out of range static", MINIMAL, ["--set", "problem.s=6"], "problem.s"),
    ("unknown grid axis", MINIMAL, ["--set", "grid.colour=[1]"], "grid.colour"),
    ("empty grid axis", MINIMAL, ["--set", "grid.seed=[]"], "grid.seed"),
    ("empty grid", MINIMAL.split("[grid]")[0] + "[grid]\n[sweep]\n", [], "grid"),
    ("bad chunk size", MINIMAL, ["--chunk-size", "0"], "sweep.chunk_size"),
    ("bad memory budget", MINIMAL, ["--max-memory", "lots"], "max_memory"),
    (
        "memory budget below one run",
        MINIMAL.replace("chunk_size = 2", ""),
        ["--max-memory", "1KB"],
        "max_memory = '1KB' is too small",
    ),
    ("step too small", MINIMAL, ["--set", 'train.backward="pallas"', "--set", "model.width=100"], "backward"),
    ("no CPU devices", MINIMAL, ["--cpu-devices", "0"], "--cpu-devices"),
    ("negative seed", MINIMAL, ["--set", "grid.seed=[-1]"], "grid.seed"),
    ("cluster option without --distributed", MINIMAL, ["--coordinator", "127.0.0.1:1234"], "--distributed"),
    ("--shard with --distributed", MINIMAL, ["--shard", "0/2", "--distributed"], "--shard"),
]


@pytest.mark.parametrize("case, text, extra, key", BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2_naming_the_key(case, text, extra, key, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert cli.main(["sweep", str(cfg), "-o", str(tmp_path / "res" / "r.nc"), *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and key in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]  # nothing written


def test_other_sweep_into_existing_results_is_refused(runs, capsys):
    before = runs["whole"].read_bytes()
    assert cli.main(["sweep", str(TINY), "-o", str(runs["whole"]), "--set", "train.steps=20"]) == 2
    err = _one_error(capsys, "different sweep", "train.steps: 40 there, 20 here", "--force")  # no header first
    assert "[dlnsim]" not in err
    assert runs["whole"].read_bytes() == before


def test_help_on_every_subcommand(capsys):
    for sub in ([], ["sweep"], ["summary"], ["plot"], ["info"]):
        with pytest.raises(SystemExit) as e:
            cli.main([*sub, "--help"])
        assert e.value.code == 0
        assert "usage: dlnsim" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        ([], ["required: COMMAND", "'dlnsim --help'"]),
        (["reproduce", "fig2"], ["invalid choice: 'fig2'", "'dlnsim reproduce --help'"]),
        (["plot", "r.nc", "--kind", "bogus"], ["invalid choice: 'bogus'", "heatmap"]),
        (["sweep", "--chunk-size", "3", "--max-memory", "1GB"], ["--max-memory: not allowed with"]),
        (["sweep", "--chunk-size", "many"], ["--chunk-size: invalid int value: 'many'"]),
    ],
)
def test_usage_errors_are_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    _one_error(capsys, *words)


def test_missing_results_file(tmp_path, capsys):
    assert cli.main(["summary", str(tmp_path / "nope.nc")]) == 2
    assert "no results file" in capsys.readouterr().err


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    from dlnsim.plan import plan

    cfg = load_config(TINY)
    chunks = plan(cfg)
    stream = Tty()
    rep = ProgressBar(cfg, chunks, stream=stream)
    runs = 0
    for i, c in enumerate(chunks):
        runs += len(c.runs)
        n = 0 if i == 0 else len(c.runs)
        left = cfg.n_runs - runs
        rep(Progress(c, len(chunks), runs, cfg.n_runs, i == 0, 0.5, cfg.train.steps, computed=n, to_compute=left))
    rep.close()
    text = stream.getvalue()
    assert "8/8 runs" in text and "net-steps/s" in text and "ETA" in text and "chunk 4/4" in text


def test_progress_of_a_shard_counts_its_own_chunks_and_runs():
    """Under --shard 1/2 the tiny sweep's chunks 2 and 4 are this job's chunks 1/2 and 2/2,
    and its bar ends at the shard's 4 runs, not at 4 of the sweep's 8."""
    from dlnsim.plan import plan, shard_chunks

    class Tty(io.StringIO):
        def isatty(self):
            return True

    cfg = load_config(TINY)
    chunks = shard_chunks(plan(cfg), (1, 2))
    assert [c.index for c in chunks] == [1, 3]
    for stream in (io.StringIO(), Tty()):
        rep = ProgressBar(cfg, chunks, stream=stream)
        done = 0
        for c in chunks:
            done += len(c.runs)
            rep(Progress(c, 2, done, 4, False, 0.5, cfg.train.steps, computed=len(c.runs), to_compute=4 - done))
        rep.close()
        text = stream.getvalue()
        assert "chunk 2/2" in text and "4/4 runs" in text and "chunk 4/2" not in text
        assert "chunk 1/2" in text or stream.isatty()  # the bar shows the latest chunk only


def test_eta_counts_only_the_runs_still_to_compute():
    """After a change of chunk plan, runs on disk inside later chunks cost nothing: 2 runs
    computed in 10 s and 2 of the 6 runs left still to compute make an ETA of 10 s, not 30 s."""
    from dlnsim.plan import plan

    cfg = load_config(TINY)
    chunks = plan(cfg)
    stream = io.StringIO()
    rep = ProgressBar(cfg, chunks, stream=stream)
    c = chunks[0]
    rep(Progress(c, len(chunks), len(c.runs), cfg.n_runs, False, 10.0, cfg.train.steps, computed=2, to_compute=2))
    rate = 2 * cfg.train.steps / 10
    assert f"2/8 runs, {rate:.3g} net-steps/s, ETA 0:10" in stream.getvalue()


def test_rate_is_per_second_of_computing():
    """The rate divides by the chunks' compute time, not by the time since the bar was made
    (a notebook may make it cells earlier) and not counting loaded chunks: 2 chunks of 2 runs
    in 4 s and 6 s, and one loaded, make 4 runs x steps / 10 s."""
    from dlnsim.plan import plan

    cfg = load_config(TINY)
    chunks = plan(cfg)
    stream = io.StringIO()
    rep = ProgressBar(cfg, chunks, stream=stream)
    steps = cfg.train.steps
    for i, (c, secs, computed) in enumerate(zip(chunks[:3], (4.0, 0.0, 6.0), (2, 0, 2))):
        rep(Progress(c, 4, 2 * (i + 1), cfg.n_runs, computed == 0, secs, steps, computed=computed, to_compute=2))
    last = stream.getvalue().splitlines()[-1]
    assert f"6/8 runs, {4 * steps / 10:.3g} net-steps/s, ETA 0:05" in last, last


def test_bar_in_a_notebook_cell_closes_itself_after_the_last_chunk():
    """A Jupyter cell's stream is no terminal but draws bars; the bar is closed (drawn in
    full) after the last chunk without a call of close(), and closing again does nothing."""
    from dlnsim.plan import plan

    class OutStream(io.StringIO):  # ipykernel.iostream.OutStream: isatty() is False
        pass

    OutStream.__module__ = "ipykernel.iostream"
    cfg = load_config(TINY)
    stream = OutStream()
    rep = ProgressBar(cfg, stream=stream)  # the whole plan's chunks by default
    assert rep.bar is not None and rep.n_chunks == 4
    for i, c in enumerate(chunks := plan(cfg)):
        rep(Progress(c, 4, 2 * (i + 1), 8, False, 0.5, cfg.train.steps, computed=2, to_compute=6 - 2 * i))
        assert (rep.bar is None) == (i == len(chunks) - 1)
    rep.close()
    assert "8/8 runs" in stream.getvalue() and "chunk 4/4" in stream.getvalue()


def test_max_memory_flag_sets_the_chunk_budget(tmp_path):
    """--max-memory is sweep.max_memory: without a chunk size, a budget of two runs' estimated
    bytes cuts each of the tiny sweep's two groups (4 runs) into chunks of at most 2 runs."""
    from dlnsim import devices, plan
    from dlnsim.cli.commands import _load

    path = tmp_path / "c.toml"
    path.write_text(MINIMAL.split("[sweep]")[0])  # no chunk_size

    def load(*extra):
        return _load(cli.build_parser().parse_args(["sweep", str(path), *extra]))

    assert load("--max-memory", "512MiB").max_memory == "512MiB"
    assert len(plan.plan(load("--max-memory", "512MiB"))) == 2  # one chunk per group
    cfg = load()
    problem_cfg, model = plan.group_configs(cfg, 1)
    per_run = devices.run_bytes(problem_cfg, model, cfg.train, False)
    chunks = plan.plan(load("--max-memory", f"{2 * per_run}B"))
    assert len(chunks) >= 4 and max(len(c.runs) for c in chunks) <= 2
    # A chunk_size in the file gives way to the flag (else the flag would do nothing).
    path.write_text(MINIMAL.replace("chunk_size = 2", "chunk_size = 1"))
    assert len(plan.plan(load())) == 8
    cfg = load("--max-memory", "512MiB")
    assert cfg.chunk_size is None and len(plan.plan(cfg)) == 2


def _one_error(capsys, *words):
    """The command's only output: one error line naming every word."""
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("dlnsim: error: "), err
    for word in words:
        assert str(word) in err, (word, err)
    return err


def test_merge_refuses_another_sweep_and_names_bad_parts(runs, tmp_path, capsys):
    """The results of another sweep are kept unless --force, as `dlnsim sweep` does; a missing
    or damaged part is named."""
    ds = open_results(runs["whole"])[0]
    part = tmp_path / "part-0.nc"  # the whole sweep as shard 0/1: a complete set on its own
    ds.assign_attrs(shard="0/1", shard_runs=np.arange(ds["diverged"].size)).to_netcdf(part, engine="h5netcdf")
    other = tmp_path / "other.nc"
    steps20 = dumps_config(load_config(TINY, ["train.steps=20"]))
    ds.assign_attrs(config_toml=steps20).to_netcdf(other, engine="h5netcdf")
    before = other.read_bytes()
    assert cli.main(["merge", str(part), "-o", str(other)]) == 2
    _one_error(capsys, other, "different sweep", "train.steps: 20 there, 40 here", "--force")
    assert other.read_bytes() == before
    assert cli.main(["merge", str(part), "-o", str(other), "--force"]) == 0
    assert f"wrote {other}: 1 shards merged, 8 runs" in capsys.readouterr().out
    assert open_results(other)[1] == load_config(TINY)
    same = tmp_path / "same.nc"
    shutil.copy(runs["whole"], same)
    assert cli.main(["merge", str(part), "-o", str(same)]) == 0  # the same sweep: rewritten
    capsys.readouterr()

    # One shard alone: summary says what it holds, plot asks for the merged file.
    half = tmp_path / "half.nc"
    ds.assign_attrs(shard="0/2", shard_runs=np.arange(4)).to_netcdf(half, engine="h5netcdf")
    assert cli.main(["summary", str(half)]) == 0
    assert f"{half} is shard 0/2 of a sweep: 4 of its 8 runs, the others NaN" in capsys.readouterr().out
    assert cli.main(["plot", str(half), "-o", str(tmp_path / "pics")]) == 2
    _one_error(capsys, "shard 0/2", "merge the shards first")
    assert not (tmp_path / "pics").exists()

    # A file cut down by hand: not summarised as if the runs it lacks had not been swept.
    ds.isel(seed=[0]).to_netcdf(tmp_path / "cut.nc", engine="h5netcdf")
    for cmd in ("summary", "plot"):
        assert cli.main([cmd, str(tmp_path / "cut.nc")]) == 2
        _one_error(capsys, "cut.nc is not a dlnsim results file (seed = 0 where its config_toml gives seed = 0, 1)")

    (tmp_path / "corrupt.nc").write_text("not netcdf")
    for bad, words in (
        ("nope.nc", ["no results file at", "nope.nc"]),
        ("corrupt.nc", ["corrupt.nc is not a dlnsim results file"]),
    ):
        assert cli.main(["merge", str(tmp_path / bad), "-o", str(tmp_path / "m.nc")]) == 2
        _one_error(capsys, *words)
    assert not (tmp_path / "m.nc").exists()


def test_unwritable_output_paths_are_one_line_errors(runs, tmp_path, capsys):
    (tmp_path / "notes").write_text("a file")
    (tmp_path / "somedir").mkdir()
    cases = [
        (["sweep", TINY, "-o", tmp_path / "notes" / "x.nc"], ["notes is a file, not a directory"]),
        (["sweep", TINY, "-o", tmp_path / "somedir"], ["somedir is a directory"]),
        (["sweep", TINY, "-o", tmp_path / "somedir", "--force"], ["somedir is a directory"]),
        (["merge", runs["whole"], "-o", tmp_path / "somedir"], ["somedir is a directory"]),
        (["plot", runs["whole"], "-o", tmp_path / "notes" / "x.png"], ["notes is a file, not a directory"]),
        (["plot", runs["whole"], "-o", tmp_path / "notes" / "pics"], ["notes is a file, not a directory"]),
        (["plot", runs["whole"], "-o", tmp_path / "out" / "x.jpg"], [".jpg is not an image", ".png, .svg, .pdf"]),
        # The picture goes to RESULTS with .png: a results file named so would be overwritten.
        (["sweep", TINY, "-o", tmp_path / "r.png"], ["r.png is where the sweep's picture goes", "r.nc"]),
        (["sweep", TINY, "-o", f"{tmp_path / 'newdir'}/"], ["newdir/ names a directory", "newdir/sweep.nc"]),
        (["merge", runs["whole"], "-o", f"{tmp_path / 'newdir'}/"], ["names a directory"]),
        (["sweep", TINY, "-o", tmp_path / "somedir" / "r.nc", "--quiet"], ["r.png is a directory"]),
        (["reproduce", "limit", "-o", tmp_path / "notes"], ["-o:", "notes is a file, not a directory"]),
        (["info", "--compile-cache", tmp_path / "notes"], ["--compile-cache", "cannot be the compilation cache"]),
    ]
    (tmp_path / "somedir" / "r.png").mkdir()
    if Path("/proc/self").is_dir():  # Linux: nothing can be created in /proc, not even by root
        cases.append((["sweep", TINY, "-o", "/proc/x.nc", "--quiet"], ["/proc/x.nc cannot be written"]))
    for args, words in cases:
        assert cli.main([str(a) for a in args]) == 2, args
        _one_error(capsys, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "somedir"]
    assert [p.name for p in (tmp_path / "somedir").iterdir()] == ["r.png"]


def test_unforeseen_os_error_is_one_line(monkeypatch, capsys):
    def denied(args):
        raise PermissionError(13, "Permission denied", "results/sweep.nc")

    monkeypatch.setattr("dlnsim.cli.parser.cmd_summary", denied)
    assert cli.main(["summary", "x.nc"]) == 1
    assert capsys.readouterr().err == "dlnsim: error: results/sweep.nc: Permission denied\n"


def test_interrupts_out_of_memory_and_undecodable_configs_are_one_line(monkeypatch, capsys, tmp_path):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("dlnsim.cli.parser.cmd_summary", interrupted)
    assert cli.main(["summary", "x.nc"]) == 130
    assert capsys.readouterr().err == "dlnsim: error: interrupted\n"

    def exhausted(args):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 64000000000 bytes.\nmore detail")

    monkeypatch.setattr("dlnsim.cli.parser.cmd_summary", exhausted)
    assert cli.main(["summary", "x.nc"]) == 1
    _one_error(capsys, "out of memory: RESOURCE_EXHAUSTED: Out of memory allocating 64000000000 bytes", "--max-memory")

    latin1 = tmp_path / "l.toml"
    latin1.write_bytes(b"[problem]\nd = 12\n# caf\xe9\n")
    assert cli.main(["sweep", str(latin1), "-o", str(tmp_path / "r.nc")]) == 2
    _one_error(capsys, "is not UTF-8 text (byte 0xe9 at offset 22)")
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + TINY.read_bytes())
    assert load_config(bom) == load_config(TINY)  # an editor's byte-order mark is no error


@pytest.mark.parametrize("force, chunks, says", [
    (False, True, "finished chunks are kept in {side}: rerun the same command to resume"),
    (True, True, "finished chunks are kept in {side}: rerun without --force to resume"),
    (False, False, "interrupted before any chunk finished"),
])  # fmt: skip
def test_an_interrupted_sweep_says_how_to_resume(tmp_path, capsys, monkeypatch, force, chunks, says):
    out = tmp_path / "r.nc"

    def interrupted(cfg, path, **kw):
        chunk_dir(path).mkdir()
        if chunks:
            (chunk_dir(path) / "chunk-0000000-00002-00000000.npz").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr("dlnsim.storage.run_sweep", interrupted)
    args = ["sweep", str(TINY), "-o", str(out), "--quiet"] + ["--force"] * force
    assert cli.main(args) == 130
    _one_error(capsys, says.format(side=chunk_dir(out)))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names an open file through /proc (Linux)")
def test_a_full_disk_at_the_final_write_is_one_line_and_keeps_the_chunks(tmp_path, capsys, monkeypatch):
    """The disk fills up as the results file is written: the message names the file, the
    chunks stay, no temporary is left (and no segfault: HDF5 writes in memory)."""
    fsync = os.fsync

    def full(fd):  # the results file's temporary, .r.nc.*.tmp, hits a full disk
        if "/.r.nc." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "r.nc"
    assert cli.main(["sweep", str(TINY), "-o", str(out), "--quiet", "--set", "grid.depth=[1]"]) == 1
    _one_error(capsys, f"{out}: cannot write the results: No space left on device")
    assert not out.exists() and any(chunk_dir(out).glob("chunk-*.npz"))
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc.chunks"]  # no temporary left


def test_plot_options_are_checked_against_the_file(runs, tmp_path, capsys):
    results = str(runs["whole"])
    bad = [
        (["--sigma", "0.3"], ["--sigma 0.3", "levels are 0, 0.1, 0.5"]),
        (["--x", "seed", "--y", "depth"], ["--x 'seed' is not a heatmap axis", "axes are depth, weight_decay"]),
        (["--x", "depth", "--y", "depth"], ["both 'depth'"]),
        (["--metric", "final_sv"], ["'final_sv' is not a scalar", "--metric sv"]),
        (["--metric", "foo"], ["'foo' is not a metric", "on_err", "noise_err", "steps_phase1", "final_<"]),
        (["--kind", "curves", "--metric", "steps_phase1"], ["no step history", "on_err"]),
        (["--metric", "on_err", "--sigma", "0.1"], ["--sigma applies to a metric over test noise"]),
        (["--kind", "noise", "--metric", "on_err"], ["--metric does not apply to --kind noise"]),
    ]
    for args, words in bad:
        assert cli.main(["plot", results, *args, "-o", str(tmp_path)]) == 2, args
        _one_error(capsys, *words)
    assert list(tmp_path.iterdir()) == []
    # A level of the file, given as typed (the file's values are what selection matches).
    assert cli.main(["plot", results, "--sigma", "0.1", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_select_picks_the_slice_of_the_axes_a_picture_fixes(runs, tmp_path, capsys):
    """Curves of tiny.toml tell depths apart and fix weight decay (default: its first value, 0)."""
    results = str(runs["whole"])
    bad = [
        (["--kind", "curves", "--select", "depth=1"], ["--select 'depth=1'", "axes this picture fixes (weight_decay)"]),
        (["--kind", "noise", "--select", "depth=7"], ["depth values are 1, 2"]),
        (["--select", "depth=1"], ["axes this picture fixes (none)"]),  # the heatmap shows both axes
        (["--kind", "offsubspace", "--select", "depth"], ["give AXIS=VALUE"]),
        (["--kind", "noise", "--select", "depth=1", "--select", "depth=2"], ["depth is selected twice"]),
    ]
    for args, words in bad:
        assert cli.main(["plot", results, *args, "-o", str(tmp_path)]) == 2, args
        _one_error(capsys, *words)
    assert cli.main(["plot", results, "--kind", "curves", "--select", "weight_decay=1e-2", "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().endswith("whole_curves_on_err_weight_decay0.01.png")


def test_closed_stdout_ends_quietly(runs, env):
    """`dlnsim summary R | head -1`: the reader goes away; no traceback (Python docs' SIGPIPE recipe)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlnsim", "summary", str(runs["whole"])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # before the summary is printed: Python takes a second to start
    err = proc.stderr.read()
    assert proc.wait(timeout=TIMEOUT) == 1
    assert err == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"dlnsim {dlnsim.__version__}\n"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_seed_out_of_range_names_seed(seed):
    """make_problem and train fold the seed into a key as a uint32: say so, not OverflowError."""
    pc = dlnsim.ProblemConfig(d=6, m=4, s=2, n_train=8)
    msg = rf"seed = {seed!r} is invalid: must be an integer in \[0, 2\*\*32\)"
    with pytest.raises(ValueError, match=msg):
        dlnsim.make_problem(pc, seed=seed)
    problem = dlnsim.make_problem(pc, seed=2**32 - 1)
    with pytest.raises(ValueError, match=msg):
        dlnsim.train(problem, dlnsim.ModelConfig(depth=2, width=4), dlnsim.TrainConfig(steps=2, log_every=1),
                     dlnsim.HParams(lr=0.05), seed=seed)  # fmt: skip


def test_distributed_merge_gives_up_on_a_missing_process_shard(tmp_path, monkeypatch, capsys):
    """Process 0 of --distributed waits for the others' shards, but not forever: without a new
    shard for `patience` seconds it stops with an error naming the missing ones (exit 1)."""
    from dlnsim.cli import commands

    monkeypatch.setattr(commands, "_POLL_S", 0.01)
    final = tmp_path / "r.nc"
    commands._part_path(final, 0, 2).write_bytes(b"")  # process 0's own shard; process 1's never comes
    with pytest.raises(commands.Fail) as e:
        commands._merge_distributed(final, (0, 2), force=False, patience=0.2)
    assert e.value.code == 1 and "r.part1of2.nc" in str(e.value) and "rerun the same command" in str(e.value)
    assert capsys.readouterr().err.count("waiting for 1 of 2 process shards") == 1  # once a minute, not per poll
    assert commands._merge_distributed(final, (1, 2), force=False, patience=0.2) == 0  # the others just exit


def test_ctrl_c_in_a_gc_callback_still_interrupts():
    # Python drops an exception raised in a gc callback (jax runs one in every collection) or
    # in a weakref callback: within interrupts(), the KeyboardInterrupt arrives all the same.
    import gc

    from dlnsim.cli.interrupt import interrupts

    calls, hook = [], sys.unraisablehook

    def callback(phase, info):
        if phase == "start" and not calls:
            calls.append(phase)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # bytecodes: Python runs the signal handler in here
                pass

    gc.callbacks.append(callback)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # also if the suite runs in the background
    try:
        with interrupts(), pytest.raises(KeyboardInterrupt):
            gc.collect()
            time.sleep(5)  # dropped: no KeyboardInterrupt ever comes, and the test fails
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        gc.callbacks.remove(callback)
        signal.signal(signal.SIGINT, before)
    assert calls
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert sys.unraisablehook is hook


def test_interrupts_keep_an_ignored_sigint_ignored():
    from dlnsim.cli.interrupt import interrupts

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's SIGINT
    try:
        with interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


# `python -m dlnsim ARGS` as a foreground command, whose Ctrl-C is Python's KeyboardInterrupt, also
# where the suite runs as a background job (children inherit its ignored SIGINT, which Python keeps).
_FOREGROUND = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'dlnsim', *sys.argv[1:]])"
)


def test_ctrl_c_while_xla_compiles_exits_130(tmp_path):
    # A KeyboardInterrupt out of XLA's compiler left jaxlib in a state in which the
    # interpreter's clean-up segfaulted (exit 139): the script now ends at once (cli.entry).
    env = {**os.environ, "DLNSIM_COMPILE_CACHE": "off"}  # a cold compile: seconds
    env["PYTHONUNBUFFERED"] = "1"
    err_path = tmp_path / "err.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _FOREGROUND, "sweep", str(TINY), "-o", str(tmp_path / "r.nc")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + TIMEOUT
        while "runs (" not in err_path.read_text():  # the header: the first compile starts now
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.01)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 130, err_path.read_text()
    assert err_path.read_text().splitlines()[-1].startswith("dlnsim: error: interrupted")


def test_force_skips_the_check_of_another_sweeps_file(tmp_path, capsys, monkeypatch):
    """L01 (the CLI checks the output's sweep also under --force): --force over another sweep's
    file goes on to run the sweep (stubbed: interrupted at once, exit 130), not exit 2."""
    out = tmp_path / "r.nc"
    other = load_config(TINY, ["train.steps=20"])
    xr.Dataset(attrs={"config_toml": dumps_config(other)}).to_netcdf(out, engine="h5netcdf")

    def interrupted(cfg, path, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("dlnsim.storage.run_sweep", interrupted)
    assert cli.main(["sweep", str(TINY), "-o", str(out), "--quiet"]) == 2
    _one_error(capsys, "different sweep")
    assert cli.main(["sweep", str(TINY), "-o", str(out), "--quiet", "--force"]) == 130
    _one_error(capsys, "interrupted before any chunk finished")


def test_an_interrupted_forced_sweep_resumes_without_force(tmp_path, capsys):
    """As the interrupt message says: over another sweep's file, a --force run stopped after a
    chunk resumes without --force (not refused as another sweep's file) and replaces the file."""
    out = tmp_path / "r.nc"
    other = load_config(TINY, ["train.steps=20"])
    xr.Dataset(attrs={"config_toml": dumps_config(other)}).to_netcdf(out, engine="h5netcdf")
    cfg = load_config(TINY)

    def stop_after_first(ev):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, force=True, progress=stop_after_first)
    assert cli.main(["sweep", str(TINY), "-o", str(out)]) == 0
    assert "1 of 4 chunks skipped" in capsys.readouterr().out  # the first, as computed before
    assert open_results(out)[1] == cfg and not chunk_dir(out).exists()


def test_a_run_larger_than_a_device_exits_2_in_one_line(tmp_path, capsys):
    """L02 (TooLargeError not turned into a Fail): a traceback instead of the one-line error."""
    args = ["sweep", str(TINY), "-o", str(tmp_path / "r.nc"), "--quiet", "--set", "model.width=10000000"]
    assert cli.main(args) == 2
    _one_error(capsys, "one run (depth=2) needs about", "more than a device's")
    assert list(tmp_path.iterdir()) == []


def test_dry_run_plans_without_computing_or_writing(tmp_path, capsys):
    """--dry-run: a row per compiled program (its step, runs, chunks, memory estimate, runs
    still to compute), the totals, a shard's slice and what an interrupted run left; nothing
    is written, and a real run's refusal (another sweep's chunks) is its error."""
    from dlnsim import devices
    from dlnsim.plan import group_configs

    out = tmp_path / "sub" / "r.nc"
    cfg = load_config(TINY)  # 2 groups (depth 1, 2), 4 chunks of 2 runs, 40 steps

    def rows(*extra):
        assert cli.main(["sweep", str(TINY), "-o", str(out), "--dry-run", *extra]) == 0
        text = capsys.readouterr().out
        return text, [line.split() for line in text.splitlines() if line.startswith("depth=")]

    def mb(group, runs=1):
        per_run = devices.run_bytes(*group_configs(cfg, group), cfg.train, raw=False)
        return f"{per_run * runs / 1e6:.3g}"

    text, table = rows()
    assert text.startswith("dry run: nothing is computed or written\n8 runs (2 depth x 2 weight_decay x 2 seed values)")
    assert table == [
        ["depth=1", "blocked", "4", "2", "2", mb(0), "MB", mb(0, 2), "MB", "4"],
        ["depth=2", "blocked", "4", "2", "2", mb(1), "MB", mb(1, 2), "MB", "4"],
    ]
    assert "2 compiled programs, 4 chunks; 320 network-steps to compute" in text
    assert list(tmp_path.iterdir()) == []

    text, table = rows("--shard", "1/2")  # chunks 1 and 3: one of each group
    assert text.splitlines()[1].startswith("shard 1/2: 2 chunks, 4 of 8 runs")
    assert [r[2] for r in table] == ["2", "2"] and "2 compiled programs, 2 chunks; 160 network-steps" in text

    def stop_after_first(ev):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, progress=stop_after_first)
    text, table = rows()
    assert [r[-1] for r in table] == ["2", "4"] and "; 240 network-steps to compute" in text
    assert f"2 of the 8 runs are in finished chunks in {chunk_dir(out)}: a run takes them" in text
    text, table = rows("--force")  # recomputes them
    assert [r[-1] for r in table] == ["4", "4"] and "finished chunks" not in text

    assert cli.main(["sweep", str(TINY), "-o", str(out), "--dry-run", "--set", "train.steps=50"]) == 2
    _one_error(capsys, f"{chunk_dir(out)} holds results of a different sweep", "train.steps: 40 there, 50 here")
    assert cli.main(["sweep", str(TINY), "-o", str(out), "--quiet"]) == 0
    capsys.readouterr()
    text, table = rows()
    assert table == [] and text.endswith(
        f"{out} already holds this sweep: the command would read it back and compute nothing\n"
    )
