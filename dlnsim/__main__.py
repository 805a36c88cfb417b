"""``python -m dlnsim``: the same command line as ``dlnsim``."""

from dlnsim.cli import entry

if __name__ == "__main__":  # pytest --doctest-modules imports this module
    entry()
