"""Every picture is written, non-empty, in the format its extension asks for."""

import numpy as np
import pytest

import dlnsim
from dlnsim import plotting

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ds():
    """Two depths x (a stable and a diverging step size) x weight decays x seeds."""
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=16, m=8, s=2, n_train=20),
        model=dlnsim.ModelConfig(depth=2, width=12),
        train=dlnsim.TrainConfig(steps=200, log_every=20, balance_every=3),  # balance at steps 0, 60, ..., 180, 200
        grid={"depth": [1, 2], "lr": [0.05, 20.0], "weight_decay": [0.0, 1e-2, 0.5], "seed": [0, 1]},
    )
    out = dlnsim.sweep(cfg)
    assert out.diverged.sel(lr=20.0).all() and not out.diverged.sel(lr=0.05).any()
    return out


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG)


def test_phase_diagram_depth_weight_decay(ds, tmp_path):
    path = plotting.phase_diagram(ds, "weight_decay", "depth", "on_err", tmp_path / "pd.png")
    assert _is_png(path)


def test_phase_diagram_with_diverged_cells_and_formats(ds, tmp_path):
    svg = plotting.phase_diagram(ds, "weight_decay", "lr", "off_fro", tmp_path / "pd.svg", select={"depth": 2})
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "diverged" in text
    pdf = plotting.phase_diagram(ds, "lr", "weight_decay", "noise_err", tmp_path / "pd.pdf", reduce="mean")
    assert pdf.read_bytes().startswith(b"%PDF")
    # A per-run reduction as the metric; no extension means PNG.
    assert _is_png(plotting.phase_diagram(ds, "weight_decay", "depth", "steps_phase1", tmp_path / "steps"))


def test_phase_diagram_rejects_bad_axes(ds, tmp_path):
    with pytest.raises(ValueError, match="x = 'width'"):
        plotting.phase_diagram(ds, "width", "depth", "on_err", tmp_path / "x.png")
    with pytest.raises(ValueError, match="metric = 'nope'"):
        plotting.phase_diagram(ds, "weight_decay", "depth", "nope", tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_learning_curves(ds, tmp_path):
    assert _is_png(plotting.learning_curves(ds, tmp_path / "lc.png", metric="on_err", hue="weight_decay"))
    assert _is_png(plotting.learning_curves(ds, tmp_path / "lc2.png", metric="off_fro", hue="depth", select={"weight_decay": 0.5}))


def test_off_subspace_decay(ds, tmp_path):
    assert _is_png(plotting.off_subspace_decay(ds, tmp_path / "od.png"))


def test_noise_curves(ds, tmp_path):
    assert _is_png(plotting.noise_curves(ds, tmp_path / "nc.png", select={"depth": 2}))


@pytest.mark.parametrize(
    "values, log",
    [([0.0, 1e-3, 1e-2, 1e-1], True), ([1e-4, 1e-2], True), ([1, 2, 3, 4], False), ([0.01, 0.02, 0.03], False), ([2, 3], False)],
)
def test_log_grid_detection(values, log):
    assert plotting._is_log_grid(values) is log


def test_boundary_position_on_categorical_log_axis():
    grid = np.array([0.0, 1e-3, 1e-2, 1e-1, 1.0])
    assert plotting._index_position(grid, 1e-2, True) == pytest.approx(2.0)
    assert plotting._index_position(grid, 10**-1.5, True) == pytest.approx(2.5)
    assert plotting._index_position(grid, 10.0, True) is None  # beyond half a cell
    assert plotting._index_position(grid, 1e-9, True) is None


def test_learning_curves_skip_the_steps_a_metric_was_not_recorded_at(ds, tmp_path, monkeypatch):
    """With TrainConfig.balance_every > 1 the curve joins the recorded points (no gaps)."""
    figs = []
    monkeypatch.setattr(plotting.curves, "save", lambda fig, path: figs.append(fig) or tmp_path / "x.png")
    plotting.learning_curves(ds, metric="balance", hue="weight_decay", select={"depth": 2, "lr": 0.05})
    curves = [ln for ln in figs[0].axes[0].get_lines() if ln.get_label().startswith("weight_decay=")]
    assert len(curves) == 3
    for ln in curves:
        np.testing.assert_array_equal(ln.get_xdata(), [0, 60, 120, 180, 200])
        assert np.isfinite(ln.get_ydata()).all()


@pytest.mark.parametrize("lr, reached", [(0.05, True), (20.0, False)])
def test_learning_curves_legend_says_when_no_line_reaches_a_phase(ds, tmp_path, monkeypatch, lr, reached):
    """At lr = 0.05, depth 2, some lines end Phase I and some reach Phase III (markers drawn);
    at lr = 20 every run diverges and the legend says neither phase is reached."""
    figs = []
    monkeypatch.setattr(plotting.curves, "save", lambda fig, path: figs.append(fig) or tmp_path / "x.png")
    plotting.learning_curves(ds, metric="on_err", hue="weight_decay", select={"depth": 2, "lr": lr})
    labels = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    phases = [t for t in labels if t.startswith("Phase")]
    assert len(phases) == 2
    markers = [ln for ln in figs[0].axes[0].get_lines() if ln.get_marker() in ("o", "s") and len(ln.get_xdata())]
    assert bool(markers) == reached
    for text in phases:
        assert text.endswith(": not reached in 200 steps") != reached, text
