"""Where the compilation cache goes (dlnsim.compile_cache), and that it fills."""

import os
import subprocess
import sys
import zlib

import pytest

from dlnsim.compile_cache import readable, repair, resolve, use_compile_cache


def test_the_choice_of_directory(monkeypatch, tmp_path):
    """``path``, else $DLNSIM_COMPILE_CACHE, else $XDG_CACHE_HOME/dlnsim/jax (else
    ~/.cache/dlnsim/jax); "off" in either place turns it off."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DLNSIM_COMPILE_CACHE")  # conftest.py sets it to off
    assert resolve() == (tmp_path / "xdg" / "dlnsim" / "jax", "default")
    monkeypatch.setenv("DLNSIM_COMPILE_CACHE", "")  # empty: as unset
    assert resolve() == (tmp_path / "xdg" / "dlnsim" / "jax", "default")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve()[0] == tmp_path / "home" / ".cache" / "dlnsim" / "jax"
    monkeypatch.setenv("DLNSIM_COMPILE_CACHE", str(tmp_path / "env"))
    assert resolve() == (tmp_path / "env", f"DLNSIM_COMPILE_CACHE={tmp_path / 'env'}")
    assert resolve(tmp_path / "arg") == (tmp_path / "arg", str(tmp_path / "arg"))  # the argument wins
    assert resolve("Off") == (None, "Off") and resolve("~/c")[0] == tmp_path / "home" / "c"
    monkeypatch.setenv("DLNSIM_COMPILE_CACHE", "off")
    assert resolve() == (None, "DLNSIM_COMPILE_CACHE=off")


def test_a_place_that_cannot_be_created(monkeypatch, tmp_path):
    """Given: an error naming it; the default: a warning, and no cache (both before jax.config
    is touched, so this process keeps its settings)."""
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ValueError, match="cannot be the compilation cache directory"):
        use_compile_cache(tmp_path / "file" / "c")
    monkeypatch.setenv("DLNSIM_COMPILE_CACHE", str(tmp_path / "file"))
    with pytest.raises(ValueError, match="DLNSIM_COMPILE_CACHE="):
        use_compile_cache()
    monkeypatch.delenv("DLNSIM_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    with pytest.warns(UserWarning, match="no compilation cache: cannot create"):
        assert use_compile_cache() is None
    assert use_compile_cache("off") is None


def _entry(directory, key, data, atime=None):
    (directory / f"{key}-cache").write_bytes(data)
    if atime is not None:
        (directory / f"{key}-atime").write_bytes(atime.to_bytes(8, "little"))


def test_repair_mends_what_a_killed_write_leaves(tmp_path):
    """An entry cut short (empty, or a zlib stream that does not end: every read fails and it
    is never rewritten) goes with its access time; an entry without its access time (every
    later write would fail) gets time 0; whole entries, and those of a format it cannot
    check, are left as they are."""
    program = zlib.compress(bytes(range(256)) * 64)
    _entry(tmp_path, "whole", program, atime=7)
    _entry(tmp_path, "no-time", program)  # killed before its time was written
    _entry(tmp_path, "empty", b"", atime=5)  # killed before any byte
    _entry(tmp_path, "cut", program[: len(program) // 2], atime=6)  # killed mid-write
    _entry(tmp_path, "other", b"another format", atime=8)
    assert repair(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.glob("*-cache")) == ["no-time-cache", "other-cache", "whole-cache"]
    assert not (tmp_path / "cut-atime").exists() and not (tmp_path / "empty-atime").exists()
    assert int.from_bytes((tmp_path / "no-time-atime").read_bytes(), "little") == 0
    assert (tmp_path / "whole-cache").read_bytes() == program
    assert int.from_bytes((tmp_path / "whole-atime").read_bytes(), "little") == 7
    assert repair(tmp_path) == 0


def test_repair_reads_each_entry_once(tmp_path):
    """Entries older than the last repair are not read again (a large cache costs its reading
    once); one written since is."""
    program = zlib.compress(b"program" * 100)
    _entry(tmp_path, "old", program, atime=1)
    assert repair(tmp_path) == 0
    stamp = (tmp_path / ".dlnsim-checked").stat().st_mtime_ns
    _entry(tmp_path, "old", program[:20])  # as if damaged long ago: left alone
    os.utime(tmp_path / "old-cache", ns=(stamp - 10**10, stamp - 10**10))
    _entry(tmp_path, "new", program[:20], atime=2)
    assert repair(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.glob("*-cache")) == ["old-cache"]
    (tmp_path / ".dlnsim-checked").unlink()  # no record: every entry is read
    assert repair(tmp_path) == 1 and not list(tmp_path.glob("*-cache"))


def test_readable_checks_zstd_entries(tmp_path):
    """zstd, JAX's compression where Python or the zstandard package has it."""
    zstandard = pytest.importorskip("zstandard")
    program = zstandard.ZstdCompressor().compress(b"program" * 100)
    (tmp_path / "whole").write_bytes(program)
    (tmp_path / "cut").write_bytes(program[: len(program) // 2])
    (tmp_path / "magic").write_bytes(program[:2])
    assert readable(tmp_path / "whole")
    assert not readable(tmp_path / "cut") and not readable(tmp_path / "magic")


def test_use_compile_cache_fills_the_default_place(tmp_path):
    """In a fresh process (jax.config is global): the default place is made, and programs
    compiled after the call land in it, under the size cap (JAX keeps an access time per
    entry only when a cap is set). What a killed write leaves is mended by the next call."""
    env = {k: v for k, v in os.environ.items() if k != "DLNSIM_COMPILE_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    programs = "import dlnsim, jax; print(dlnsim.use_compile_cache()); jax.jit(lambda x: 2 * x + 1)(1.0)"
    programs += "; jax.jit(lambda x: x * x - 1)(1.0)"
    res = subprocess.run([sys.executable, "-c", programs], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cache = tmp_path / "dlnsim" / "jax"
    assert res.stdout.strip() == str(cache)
    entries = sorted(cache.glob("*-cache"), key=lambda p: p.stat().st_size)
    assert len(entries) == 2 and {p.name.removesuffix("-cache") for p in entries} == {
        p.name.removesuffix("-atime") for p in cache.glob("*-atime")
    }
    # Killed mid-write: one entry cut short (JAX would warn and compile at every read, and
    # never write it again), the other without its access time (JAX's eviction, hence
    # every write, would fail: "Error writing persistent compilation cache entry").
    cut, untimed = entries
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    (cache / untimed.name.replace("-cache", "-atime")).unlink()
    res = subprocess.run(
        [sys.executable, "-W", "error", "-c", programs + "; jax.jit(lambda x: 3 * x + 1)(1.0)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "persistent compilation cache" not in res.stderr, res.stderr
    assert len(list(cache.glob("*-cache"))) == 3 and readable(cut) and len(cut.read_bytes()) == len(whole)
