"""TOML config files: parsing, overrides, canonical writing, and every rejection naming its key."""

import tomllib
from pathlib import Path

import pytest

from dlnsim import ProblemConfig, SweepConfig, TrainConfig
from dlnsim.configfile import (
    SCHEMA,
    DEFAULT_TOML,
    ConfigError,
    default_config,
    dumps_config,
    load_config,
    load_config_text,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MINIMAL = """
[problem]
d = 12
m = 6
s = 2
[model]
[train]
steps = 40
log_every = 10
[grid]
seed = [0, 1]
"""


def test_default_example_is_the_builtin_default():
    assert dumps_config(load_config(EXAMPLES / "default.toml")) == dumps_config(default_config())


@pytest.mark.parametrize("name", ["default", "tiny", "paper_fig1", "depth_width", "sizes"])
def test_examples_load_and_round_trip(name):
    cfg = load_config(EXAMPLES / f"{name}.toml")
    text = dumps_config(cfg)
    again = load_config_text(text)
    assert dumps_config(again) == text
    assert again.grid == cfg.grid and again.problem == cfg.problem and again.train == cfg.train


def test_paper_sizes():
    cfg = load_config(EXAMPLES / "paper_fig1.toml")
    p, m, t = cfg.problem, cfg.model, cfg.train
    assert (p.d, p.m, p.s, p.n_train, m.depth, m.width, t.steps) == (200, 100, 5, 1000, 5, 400, 3000)
    assert cfg.hparams["lr"] == 0.05 and cfg.grid["weight_decay"] == (0.0, 0.01)


def test_every_option_round_trips():
    cfg = load_config_text(
        MINIMAL,
        [
            'problem.operator="dct"',
            "problem.whiten=true",
            "problem.test_sigmas=[0, 0.25]",
            "model.init=orthogonal",
            "train.optimizer=adamw",
            "train.dtype=float64",
            "train.loss=sum",
            "train.data=raw",
            "train.precision=default",
            "hparams.momentum=0.5",
            "grid.lr=[0.01, 0.02]",
            "sweep.teacher_per_seed=true",
            "sweep.chunk_size=3",
        ],
    )
    assert cfg.problem.operator == "dct" and cfg.problem.test_sigmas == (0.0, 0.25)
    assert cfg.model.init == "orthogonal" and cfg.train.optimizer == "adamw" and cfg.train.dtype == "float64"
    assert cfg.teacher_per_seed is True and cfg.chunk_size == 3 and cfg.hparams["momentum"] == 0.5
    assert list(cfg.grid) == ["seed", "lr"]
    text = dumps_config(cfg)
    assert dumps_config(load_config_text(text)) == text
    assert "chunk_size = 3" in text and "teacher_per_seed = true" in text


def test_overrides_are_toml_values():
    cfg = load_config_text(
        MINIMAL, ["train.steps=500", "grid.depth=[2,3]", "grid.weight_decay=[0, 1e-3]", "model.width = 16"]
    )
    assert cfg.train.steps == 500 and cfg.grid["depth"] == (2, 3) and cfg.model.width == 16
    # Integers are accepted where numbers are wanted and stored as floats (canonical text).
    assert cfg.grid["weight_decay"] == (0.0, 0.001) and all(type(v) is float for v in cfg.grid["weight_decay"])
    # Grid order is dims order: file axes first, then overridden new axes.
    assert list(cfg.grid) == ["seed", "depth", "weight_decay"]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


BAD = [
    # (description, text, overrides, key named, fragment of the message)
    ("missing section", MINIMAL.replace("[model]\n", ""), [], "model", "[model] is missing"),
    ("missing grid", MINIMAL.split("[grid]")[0], [], "grid", "[grid] is missing"),
    ("unknown section", MINIMAL + "[optimizer]\nkind = 1\n", [], "optimizer", "unknown section"),
    ("top-level key", "steps = 3\n" + MINIMAL, [], "steps", "unknown top-level key"),
    ("unknown key", MINIMAL.replace("[model]", "[model]\ndepht = 3"), [], "model.depht", "unknown key"),
    ("unknown key override", MINIMAL, ["train.lr=0.1"], "train.lr", "lr belongs in [hparams] or [grid]"),
    (
        "key of another section",
        MINIMAL.replace("[model]", "[model]\nsteps = 3"),
        [],
        "model.steps",
        "belongs in [train]",
    ),
    ("unknown section override", MINIMAL, ["optim.lr=0.1"], "optim.lr", "unknown key"),
    ("malformed override", MINIMAL, ["train.steps"], "train.steps", "section.key=value"),
    ("wrong type int", MINIMAL, ['problem.d="big"'], "problem.d", 'problem.d = "big"'),
    ("wrong type float", MINIMAL, ["train.steps=40.0"], "train.steps", "must be an integer"),
    ("wrong type bool", MINIMAL, ["problem.whiten=1"], "problem.whiten", "true or false"),
    ("wrong type str", MINIMAL, ["train.optimizer=3"], "train.optimizer", "must be a string"),
    ("wrong type list", MINIMAL, ["problem.test_sigmas=0.1"], "problem.test_sigmas", "list of numbers"),
    ("section not a table", "model = 3\n" + MINIMAL.replace("[model]\n", ""), [], "model", "must be a table"),
    ("out of range", MINIMAL, ["problem.m=20"], "problem.m", "s < m < d"),
    ("out of range hparam", MINIMAL, ["hparams.lr=-0.1"], "hparams.lr", "> 0"),
    ("bad choice", MINIMAL, ["train.optimizer=lbfgs"], "train.optimizer", "'gd'"),
    ("not a multiple", MINIMAL, ["train.steps=45"], "train.steps", "multiple of log_every"),
    (
        "base value float32 cannot hold",
        MINIMAL,
        ["hparams.lr=1e40"],
        "hparams.lr",
        "hparams.lr = 1e+40 is invalid: it is inf",
    ),
    (
        "ratio and its size",
        MINIMAL,
        ["grid.m_over_d=[0.5]", "grid.m=[6]"],
        "grid.m_over_d",
        "grid.m_over_d = [0.5] is invalid",
    ),
    ("log past the end", MINIMAL, ["train.log_every=100"], "train.steps", "at least log_every = 100"),
    (
        "momentum with gd",
        MINIMAL,
        ["grid.momentum=[0.5]"],
        "grid.momentum",
        "grid.momentum = [0.5] is invalid: train.optimizer = 'gd'",
    ),
    ("chunk size", MINIMAL, ["sweep.chunk_size=0"], "sweep.chunk_size", ">= 1"),
    ("unknown grid axis", MINIMAL, ["grid.colour=[1, 2]"], "grid.colour", "unknown key"),
    ("empty grid", MINIMAL.replace("seed = [0, 1]", ""), [], "grid", "[grid] is empty"),
    ("empty grid axis", MINIMAL, ["grid.seed=[]"], "grid.seed", "non-empty list"),
    ("scalar grid axis", MINIMAL, ["grid.seed=3"], "grid.seed", "non-empty list"),
    ("float in int axis", MINIMAL, ["grid.depth=[2, 2.5]"], "grid.depth", "integers"),
    ("grid value out of range", MINIMAL, ["grid.weight_decay=[0, -1e-3]"], "grid.weight_decay", "-0.001"),
    ("grid static value invalid", MINIMAL, ["grid.m=[4, 20]"], "grid.m", "s < m < d"),
    ("grid depth zero", MINIMAL, ["grid.depth=[0]"], "grid.depth", ">= 1"),
    ("grid repeats", MINIMAL, ["grid.seed=[1, 1]"], "grid.seed", "repeat"),
    ("not toml", "[problem\n", [], "", "not valid TOML"),
]


def test_an_unknown_key_names_no_other_section_when_none_has_it():
    with pytest.raises(ConfigError) as info:
        load_config_text(MINIMAL, ["train.stepz=3"])
    assert "belongs" not in str(info.value)


@pytest.mark.parametrize("what, text, overrides, key, fragment", BAD, ids=[b[0] for b in BAD])
def test_rejections_name_the_key(what, text, overrides, key, fragment):
    with pytest.raises(ConfigError) as info:
        load_config_text(text, overrides)
    msg = str(info.value)
    assert info.value.key == key
    assert key in msg and fragment in msg, msg
    assert "\n" not in msg  # one line for the CLI


def test_default_toml_is_documented_default():
    # The built-in default must stay a depth x weight-decay x seeds phase diagram with a zero
    # weight decay (the no-regularisation baseline) and enough seeds for medians.
    cfg = load_config_text(DEFAULT_TOML)
    assert list(cfg.grid) == ["depth", "weight_decay", "seed"]
    assert 0.0 in cfg.grid["weight_decay"] and len(cfg.grid["seed"]) >= 8


def test_config_text_keeps_every_float_exactly():
    """F01 (floats written with 6 significant digits): the TOML text rebuilds the very config."""
    cfg = SweepConfig(
        problem=ProblemConfig(d=20, m=10, s=2, test_sigmas=(0.0, 1 / 3)),
        train=TrainConfig(divergence_cap=123456789.5),
        hparams={"lr": 0.1 + 0.2, "init_scale": 1.0000001},
        grid={"weight_decay": [1e-3 / 3, 2e-9], "seed": [0]},
    )
    again = load_config_text(dumps_config(cfg))
    assert again == cfg and dict(again.hparams) == dict(cfg.hparams)


def test_config_text_writes_every_field():
    """F02 (false, zero and empty values dropped): every field of every section is written,
    defaults and falsy values included, so the text stays right when defaults change."""
    cfg = SweepConfig(problem=ProblemConfig(d=20, m=10, s=2), grid={"seed": [0]}, chunk_size=4)
    doc = tomllib.loads(dumps_config(cfg))
    for section in ("problem", "model", "train", "hparams"):
        assert set(doc[section]) == set(SCHEMA[section]), section
    assert doc["problem"]["whiten"] is False and doc["hparams"]["train_noise"] == 0.0
    assert doc["sweep"] == {"teacher_per_seed": False, "chunk_size": 4}


def test_equal_configs_have_equal_texts():
    """F03 (integers of float axes written as integers): configs that compare equal are one
    sweep, so their canonical texts are equal."""
    a = SweepConfig(grid={"weight_decay": [0, 1], "seed": [0]})
    b = SweepConfig(grid={"weight_decay": [0.0, 1.0], "seed": [0]})
    assert a == b and dumps_config(a) == dumps_config(b)
    assert "weight_decay = [0.0, 1.0]" in dumps_config(a)


# ---------------------------------------------------------------- cli


def _one_error(capsys, *words):
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("dlnsim: error: "), err
    for w in words:
        assert w in err, (w, err)
