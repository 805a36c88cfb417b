"""Pictures of sweep results: the only package that imports matplotlib.

Every function takes a results dataset of :func:`dlnsim.sweep` (or one opened from a
results file) and a path, writes one figure (PNG by default; SVG or PDF by the path's
extension) and returns the path. Figures are built on ``matplotlib.figure.Figure``
directly: no pyplot, no global state, no display backend needed.

Grid axes that a picture does not show are fixed at their first value unless
``select={"axis": value}`` says otherwise; the title states the fixed values.

Modules: :mod:`~dlnsim.plotting.diagram` (phase diagrams), :mod:`~dlnsim.plotting.curves`
(learning, decay and noise curves), :mod:`~dlnsim.plotting.display` (``show``: a picture
inline in a notebook), ``_common`` (labels, slicing, saving).
"""

from dlnsim.plotting._common import AXIS_LABELS, LABELS
from dlnsim.plotting.curves import hue_axis, learning_curves, noise_curves, off_subspace_decay
from dlnsim.plotting.diagram import phase_diagram
from dlnsim.plotting.display import show

__all__ = [
    "AXIS_LABELS",
    "LABELS",
    "hue_axis",
    "learning_curves",
    "noise_curves",
    "off_subspace_decay",
    "phase_diagram",
    "show",
]
