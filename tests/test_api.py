"""The package's public API: every name loads on first use, ``import dlnsim`` stays light."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import dlnsim

HEAVY = ("jax", "xarray", "matplotlib", "numpy")


def _python(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_import_and_cli_start_load_no_heavy_module():
    # `dlnsim --help` and argument errors answer without loading jax (about 1.5 s).
    loaded = _python(
        "import sys, dlnsim\n"
        "from dlnsim.cli.parser import build_parser\n"
        "build_parser()\n"
        f"print(*[m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert loaded == []


@pytest.mark.parametrize("name", dlnsim.__all__)
def test_every_public_name_is_its_home_module_object(name):
    home = dlnsim._API[name]
    expected = (
        importlib.import_module(f"dlnsim.{name}") if home is None else getattr(importlib.import_module(home), name)
    )
    assert getattr(dlnsim, name) is expected
    assert name in dir(dlnsim)


def test_train_is_the_function_after_its_module_was_imported():
    # Importing dlnsim.training first binds that module as an attribute of the package: the
    # function must not be shadowed by it (nor dlnsim.sweep by dlnsim.storage.sweep).
    kinds = _python(
        "import dlnsim.training, dlnsim.grid, dlnsim.storage, dlnsim\n"
        "print(type(dlnsim.train).__name__, type(dlnsim.sweep).__name__, dlnsim.train is dlnsim.training.train)"
    )
    assert kinds == ["function", "function", "True"]


def test_unknown_names_fail_as_usual():
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        dlnsim.nosuch  # noqa: B018
    with pytest.raises(ImportError, match="nosuch"):
        exec("from dlnsim import nosuch")


def test_type_checking_imports_agree_with_the_api():
    # The `if TYPE_CHECKING:` imports (what editors and type checkers see) name the same
    # objects as _API (what the package loads).
    tree = ast.parse(Path(dlnsim.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name  # `X as X`: an explicit re-export
            seen[alias.name] = None if node.module == "dlnsim" else node.module
    assert seen == dlnsim._API
    assert dlnsim.__all__ == list(dlnsim._API)
