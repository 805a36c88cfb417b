"""Where the compilation cache goes (dlnsim.compile_cache), and that it fills."""

import os
import subprocess
import sys

import pytest

from dlnsim.compile_cache import repair, resolve, use_compile_cache


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


def test_repair_mends_what_a_killed_write_leaves(tmp_path):
    """An entry without its access time (every later write would fail) gets time 0; an empty
    entry (never rewritten, unreadable) goes; whole entries are left as they are."""
    (tmp_path / "a-cache").write_bytes(b"program")  # killed before its time was written
    (tmp_path / "b-cache").write_bytes(b"")  # killed before any byte
    (tmp_path / "b-atime").write_bytes((5).to_bytes(8, "little"))
    (tmp_path / "c-cache").write_bytes(b"program")
    (tmp_path / "c-atime").write_bytes((7).to_bytes(8, "little"))
    assert repair(tmp_path) == 2
    assert int.from_bytes((tmp_path / "a-atime").read_bytes(), "little") == 0
    assert not (tmp_path / "b-cache").exists() and not (tmp_path / "b-atime").exists()
    assert (tmp_path / "c-cache").read_bytes() == b"program"
    assert int.from_bytes((tmp_path / "c-atime").read_bytes(), "little") == 7
    assert repair(tmp_path) == 0


def test_use_compile_cache_fills_the_default_place(tmp_path):
    """In a fresh process (jax.config is global): the default place is made, and a program
    compiled after the call lands in it, under the size cap (JAX keeps an access time per
    entry only when a cap is set)."""
    env = {k: v for k, v in os.environ.items() if k != "DLNSIM_COMPILE_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = "import dlnsim, jax; print(dlnsim.use_compile_cache()); jax.jit(lambda x: 2 * x + 1)(1.0)"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cache = tmp_path / "dlnsim" / "jax"
    assert res.stdout.strip() == str(cache)
    entries = {p.name.removesuffix("-cache") for p in cache.glob("*-cache")}
    assert entries and entries == {p.name.removesuffix("-atime") for p in cache.glob("*-atime")}
    # A process killed between an entry and its access time: JAX's eviction, hence every
    # write, would fail ("Error writing persistent compilation cache entry", a warning per
    # compile) but for the repair when the cache is turned on.
    for atime in cache.glob("*-atime"):
        atime.unlink()
    code = code.replace("2 * x + 1", "3 * x + 1")
    res = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "persistent compilation cache" not in res.stderr, res.stderr
    assert len(list(cache.glob("*-cache"))) == len(entries) + 1
