"""Every notebook in notebooks/ executes without error in smoke mode (DLNSIM_SMOKE=1).

The notebooks run concurrently (one kernel each, as many at a time as there are CPU
cores, at most 4): their time is dominated by single-threaded XLA compiles, so two
cores run two notebooks in about the time of one. Each kernel is started from a
kernel spec written to a temporary directory that launches *this* interpreter
(``sys.executable``), so the test does not depend on which "python3" kernel spec a
machine has installed (a stale user-level one could point at another environment).
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402 (after the skips above)
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
KERNEL = "dlnsim-test-python"
CELL_TIMEOUT = 300  # seconds per cell
KERNEL_ENV = {
    "DLNSIM_SMOKE": "1",
    # Toy sizes: compile time dominates; the suite's fast-compile flags (conftest.py).
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    "MPLBACKEND": "Agg",  # the notebooks display PNGs themselves; no GUI backend anywhere
}


def _kernel_dir(root: Path) -> Path:
    """A kernel spec that runs ipykernel in the current interpreter."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "dlnsim test (current interpreter)", "language": "python"})
    )
    return spec.parent


def _execute(path: Path, kernel_dirs: Path, workdir: Path) -> str | None:
    """Runs one notebook; returns None on success, else the failing cell's report."""
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)]))
    env = {**os.environ, **KERNEL_ENV, "TMPDIR": str(workdir)}  # pictures the notebooks write land here
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        return str(err)
    return None


@pytest.fixture(scope="session")
def notebook_results(tmp_path_factory) -> dict[str, str | None]:
    """Executes every notebook once, concurrently; name -> None or the error report."""
    root = tmp_path_factory.mktemp("notebooks")
    kernel_dirs = _kernel_dir(root)
    workers = max(1, min(4, os.cpu_count() or 1, len(NOTEBOOKS)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {p.name: pool.submit(_execute, p, kernel_dirs, root) for p in NOTEBOOKS}
        return {name: f.result() for name, f in futures.items()}


def test_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_quickstart", "02_phase_diagrams", "03_figure1", "04_theory_vs_simulation"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path: Path, notebook_results):
    error = notebook_results[path.name]
    assert error is None, f"{path.name} failed in smoke mode:\n{error}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_executed_and_small(path: Path):
    """Users see outputs on GitHub: committed executed, with pictures, and small."""
    assert path.stat().st_size < 500_000
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert 'os.environ.get("DLNSIM_SMOKE", "0") == "1"' in code[0].source
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no picture in the stored notebook"
