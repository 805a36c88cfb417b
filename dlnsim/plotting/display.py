"""Showing a picture inline in a notebook: a figure or a PNG file as a compact PNG.

IPython is imported only when :func:`show` is called, so the package imports without it.
"""

from __future__ import annotations

import io
import os

import PIL.Image
from matplotlib.figure import Figure


def show(picture: Figure | str | os.PathLike, width: int | None = None) -> None:
    """Displays a matplotlib figure or a PNG file inline as a compact 256-colour PNG (no pyplot needed)."""
    from IPython.display import Image, display

    buf = io.BytesIO()
    if isinstance(picture, Figure):
        picture.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        picture = buf
    out = io.BytesIO()
    PIL.Image.open(picture).convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
    display(Image(out.getvalue(), width=width))
