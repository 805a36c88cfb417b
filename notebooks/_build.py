"""Builds the notebooks from their percent-format sources and executes them.

Each ``notebooks/NN_name.py`` is the reviewable source of ``notebooks/NN_name.ipynb``:
cells start at ``# %%`` lines (``# %% [markdown]`` for text, whose lines drop their ``# ``).
No jupytext needed (the format is jupytext's "percent" format, so it can pair them too).

Usage (from the repository root)::

    python notebooks/_build.py              # build and execute every notebook at normal size
    python notebooks/_build.py 03_figure1   # just one
    python notebooks/_build.py --no-execute # build without outputs

Executing at normal size takes a few minutes per notebook on 2 CPU cores; the timings are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def parse(source: str) -> nbformat.NotebookNode:
    """A notebook from percent-format text."""
    cells: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    nb = nbformat.v4.new_notebook()
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            text = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines)))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def build(src: Path, execute: bool) -> float:
    nb = parse(src.read_text())
    start = time.perf_counter()
    if execute:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        for cell in nb.cells:  # execution metadata changes on every run: keep diffs small
            cell.metadata.pop("execution", None)
    seconds = time.perf_counter() - start
    nbformat.write(nb, src.with_suffix(".ipynb"))
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write notebooks without outputs")
    args = parser.parse_args(argv)
    sources = sorted(p for p in HERE.glob("[0-9]*.py"))
    if args.names:
        sources = [p for p in sources if any(p.stem.startswith(n) for n in args.names)]
    for src in sources:
        seconds = build(src, not args.no_execute)
        size = src.with_suffix(".ipynb").stat().st_size
        print(f"{src.with_suffix('.ipynb').name}: {seconds:.0f} s, {size / 1e3:.0f} kB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
