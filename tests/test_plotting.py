"""Every picture is written, non-empty, in the format its extension asks for."""

import numpy as np
import pytest

import dlnsim
from dlnsim import plotting
from dlnsim.plotting import diagram

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
    assert _is_png(
        plotting.learning_curves(ds, tmp_path / "lc2.png", metric="off_fro", hue="depth", select={"weight_decay": 0.5})
    )


def test_off_subspace_decay(ds, tmp_path):
    assert _is_png(plotting.off_subspace_decay(ds, tmp_path / "od.png"))


def test_noise_curves(ds, tmp_path):
    assert _is_png(plotting.noise_curves(ds, tmp_path / "nc.png", select={"depth": 2}))


@pytest.mark.parametrize(
    "values, log",
    [
        ([0.0, 1e-3, 1e-2, 1e-1], True),
        ([1e-4, 1e-2], True),
        ([1, 2, 3, 4], False),
        ([0.01, 0.02, 0.03], False),
        ([2, 3], False),
    ],
)
def test_log_grid_detection(values, log):
    assert diagram._is_log_grid(values) is log


def test_boundary_position_on_categorical_log_axis():
    grid = np.array([0.0, 1e-3, 1e-2, 1e-1, 1.0])
    assert diagram._index_position(grid, 1e-2, True) == pytest.approx(2.0)
    assert diagram._index_position(grid, 10**-1.5, True) == pytest.approx(2.5)
    assert diagram._index_position(grid, 10.0, True) is None  # beyond half a cell
    assert diagram._index_position(grid, 1e-9, True) is None


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


@pytest.mark.parametrize("wds, eps1, reached", [([0.0, 1e-2, 0.5], 0.1, True), ([0.0], 1e-12, False)])
def test_learning_curves_legend_says_when_no_line_reaches_a_phase(ds, tmp_path, monkeypatch, wds, eps1, reached):
    """At lr = 0.05, depth 2, some lines end Phase I and some reach Phase III (markers drawn);
    with no weight decay and an unreachable Phase I threshold the legend says neither is reached."""
    figs = []
    monkeypatch.setattr(plotting.curves, "save", lambda fig, path: figs.append(fig) or tmp_path / "x.png")
    plotting.learning_curves(
        ds.sel(weight_decay=wds), metric="on_err", hue="weight_decay", select={"depth": 2, "lr": 0.05}, eps1=eps1
    )
    labels = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    phases = [t for t in labels if t.startswith("Phase")]
    assert len(phases) == 2
    markers = [ln for ln in figs[0].axes[0].get_lines() if ln.get_marker() in ("o", "s") and len(ln.get_xdata())]
    assert bool(markers) == reached
    for text in phases:
        assert text.endswith(": not reached in 200 steps") != reached, text


@pytest.mark.parametrize("kind", ["learning_curves", "off_subspace_decay", "noise_curves"])
def test_a_selection_where_every_run_diverged_is_an_error_not_an_empty_picture(ds, tmp_path, kind):
    """(A phase diagram shows such cells hatched and marked "diverged": a result.)"""
    with pytest.raises(ValueError, match=r"nothing to plot: all [46] selected runs diverged"):
        getattr(plotting, kind)(ds.sel(lr=[20.0]), path=tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_noise_curves_need_two_test_sigmas(ds, tmp_path):
    with pytest.raises(ValueError, match="at least two test noise levels: the results have sigma = 0.5"):
        plotting.noise_curves(ds.isel(sigma=[-1]), tmp_path / "x.png")


def test_off_subspace_prediction_is_drawn_down_to_the_rounding_floor_only(ds, tmp_path, monkeypatch):
    """A predicted (1 - 0.75)^200 ~ 1e-120 must not stretch the axis below the float32 floor."""
    figs = []
    monkeypatch.setattr(plotting.curves, "save", lambda fig, path: figs.append(fig) or tmp_path / "x.png")
    fast = ds.sel(lr=0.05).assign_coords(weight_decay=[0.0, 1e-2, 15.0])
    plotting.off_subspace_decay(fast, select={"depth": 2})
    assert figs[0].axes[0].get_ylim()[0] > 1e-8


def test_selections_are_checked(ds, tmp_path):
    """An axis the picture does not fix, a value the results lack, or seeds as a heatmap axis
    are errors that list what the results have (not xarray's KeyError, not silently ignored)."""
    pd = plotting.phase_diagram
    with pytest.raises(ValueError, match="x = 'seed' is invalid: must be a grid axis .* other than seed"):
        pd(ds, "seed", "depth", "on_err", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"select\['lr'\] = 0.3 is invalid: lr values are 0.05, 20"):
        pd(ds, "weight_decay", "depth", "on_err", tmp_path / "x.png", select={"lr": 0.3})
    with pytest.raises(ValueError, match=r"the axes this picture fixes are lr, sigma, k"):
        pd(ds, "weight_decay", "depth", "on_err", tmp_path / "x.png", select={"depht": 2})
    with pytest.raises(ValueError, match=r"fixes are lr, weight_decay, sigma, k \(seeds are summarised"):
        plotting.learning_curves(ds, tmp_path / "x.png", hue="depth", select={"seed": 0, "weight_decay": 0.0})
    with pytest.raises(ValueError, match="results of dlnsim.sweep"):
        pd(dlnsim.reduce(ds), "weight_decay", "depth", "on_err", tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
    # 1e-2 finds the stored 0.01, as on the command line
    assert _is_png(plotting.learning_curves(ds, tmp_path / "lc.png", hue="depth", select={"weight_decay": 1e-2}))


def test_a_metric_nan_everywhere_is_an_error_with_its_reason(ds, tmp_path):
    """limit_dist needs whitened codes: a heatmap of NaN cells (all "n/a") would say nothing."""
    with pytest.raises(ValueError, match=r"limit_dist is NaN for every run.*whitened codes"):
        plotting.phase_diagram(ds, "weight_decay", "depth", "limit_dist", tmp_path / "x.png")


def test_colour_scale_of_nearly_constant_and_of_many_decades():
    """A ratio of 1 up to rounding is not spread over the colour map; a log scale spans at most
    LOG_DECADES below its top (a collapsed run's distance reaches 1e-140)."""
    cell = np.array([[1.0, 1 + 2e-6], [1 - 1e-6, np.nan]])
    norm, shown, extend = diagram._colour_scale(cell[np.isfinite(cell)], cell)
    assert norm.vmin == pytest.approx(0.95, rel=1e-5) and norm.vmax == pytest.approx(1.05, rel=1e-5)
    assert extend == "neither" and shown is cell
    cell = np.array([[0.27, 0.1], [1e-9, 1e-141], [0.0, np.nan]])
    norm, shown, extend = diagram._colour_scale(cell[np.isfinite(cell)], cell)
    assert norm.vmax == 0.27 and norm.vmin == pytest.approx(0.27 * 10.0**-diagram.LOG_DECADES)
    assert extend == "min" and shown[1, 1] == norm.vmin and shown[0, 1] == 0.1
    assert np.isnan(shown[2, 1])  # a cell without a value stays blank, not the lowest colour
    norm, _, _ = diagram._colour_scale(np.array([0.2, 0.5, 0.9]), np.array([0.2, 0.5, 0.9]))
    assert norm is None  # an ordinary range: matplotlib's own scaling


def test_legend_names_a_value_whose_runs_all_diverged(ds):
    labels = [label for label, _, _ in plotting.curves._lines(ds.sel(depth=2, weight_decay=0.0), "lr")]
    assert labels == ["lr=0.05", "lr=20 (all diverged)"]


def test_title_names_a_relu_network(tmp_path):
    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=16, m=8, s=2, n_train=20),
        model=dlnsim.ModelConfig(depth=2, width=12, activation="relu"),
        train=dlnsim.TrainConfig(steps=40, log_every=20),
        grid={"weight_decay": [0.0, 0.1]},
    )
    relu = dlnsim.sweep(cfg)
    assert plotting._common.context(relu, []).startswith("ReLU network, d=16")
    assert _is_png(plotting.noise_curves(relu, tmp_path / "relu.png"))
    with pytest.raises(ValueError, match="NaN for a ReLU network: try test_err"):
        plotting.phase_diagram(
            relu.expand_dims(depth=[2]).assign(diverged=relu.diverged.expand_dims(depth=[2])),
            "weight_decay",
            "depth",
            "on_err",
            tmp_path / "x.png",
        )


def test_a_picture_that_cannot_be_written_leaves_nothing_and_names_its_file(ds, tmp_path, monkeypatch):
    """Written like the results (a temporary renamed over the name): a full disk leaves no
    partial picture behind, and the error names the picture."""
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "pics" / "d.svg"
    with pytest.raises(OSError, match="No space left on device") as err:
        plotting.phase_diagram(ds, "weight_decay", "depth", "on_err", out)
    assert err.value.filename == str(out) and list(out.parent.iterdir()) == []
    monkeypatch.undo()
    assert plotting.phase_diagram(ds, "weight_decay", "depth", "on_err", out).read_text().startswith("<?xml")


def test_the_slice_a_picture_shows(ds):
    """Axes a picture does not show sit at their first value, a vector metric at the noisiest
    sigma and the top singular value, and a selection names only what the metric has; a
    stored value is matched up to rounding and returned as stored (what .sel needs); only a
    selection whose runs all diverged has nothing to show."""
    from dlnsim.plotting import _common

    assert _common.default_select(ds, "noise_err", None) == {"sigma": 0.5}
    assert _common.default_select(ds, "sv", None) == {"k": 0}
    sub, fixed = _common.fix(ds, ("weight_decay", "depth"), {"sigma": 0.5}, metric="on_err")
    assert fixed == ["lr=0.05"] and float(sub.lr) == 0.05 and float(sub.sigma) == 0.5
    _, fixed = _common.fix(ds, ("weight_decay", "depth"), {"sigma": 0.1}, metric="noise_err")
    assert fixed == ["lr=0.05", "sigma=0.1"]
    assert _common.stored(np.array([0.0, 0.1 + 0.2]), 0.3) == 0.1 + 0.2
    assert _common.metric_label("final_on_err") == _common.LABELS["on_err"]
    _common.require_runs(ds.sel(depth=2))  # half of these runs diverged (lr = 20): still a picture
    with pytest.raises(ValueError, match="nothing to plot"):
        _common.require_runs(ds.sel(lr=20.0))


def test_title_leaves_out_the_sizes_and_settings_a_sweep_varies():
    """m_over_d sets m (s stays fixed), a swept depth is no base value: neither is in the title."""
    import xarray as xr

    from dlnsim.plotting import _common

    cfg = dlnsim.SweepConfig(
        problem=dlnsim.ProblemConfig(d=40, m=20, s=2, n_train=30),
        model=dlnsim.ModelConfig(depth=3, width=12),
        grid={"m_over_d": [0.25, 0.5], "depth": [2, 4]},
    )
    runs = xr.Dataset(
        {"diverged": (("m_over_d", "depth"), np.zeros((2, 2), bool))},
        coords={"m_over_d": [0.25, 0.5], "depth": [2, 4]},
        attrs={"config_toml": dlnsim.dumps_config(cfg)},
    )
    assert _common.context(runs, []).split(", ")[:4] == ["d=40", "s=2", "N=30", "w=12"]
