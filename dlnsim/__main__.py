"""``python -m dlnsim``: the same command line as ``dlnsim``."""

from dlnsim.cli import main

if __name__ == "__main__":  # pytest --doctest-modules imports this module
    raise SystemExit(main())
