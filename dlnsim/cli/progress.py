"""Progress of a running sweep: a tqdm bar on a terminal or in a notebook, one log line per
chunk otherwise. The ``dlnsim`` command shows it; notebooks pass it to a sweep themselves
(``dlnsim.sweep(cfg, progress=dlnsim.ProgressBar(cfg))``), so the library never prints."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _draws_bars(stream: Any) -> bool:
    """A terminal, or a Jupyter cell's output (ipykernel's stream says it is no terminal,
    yet renders the carriage returns a bar redraws itself with)."""
    return stream.isatty() or type(stream).__module__.startswith("ipykernel.")


class ProgressBar:
    """Shows the :class:`~dlnsim.grid.Progress` of a sweep, one event per chunk.

    The rate is network-steps (runs x optimiser steps) per second of computing, compile
    included; the ETA extrapolates it to the runs still to compute (runs already on disk
    cost nothing). The bar closes itself after the last chunk, or on leaving a ``with``
    block (a sweep that raised).

    Example:
      >>> cfg = dlnsim.SweepConfig(
      ...     problem=dlnsim.ProblemConfig(d=20, m=10, s=2, n_train=30),
      ...     model=dlnsim.ModelConfig(depth=2, width=16),
      ...     train=dlnsim.TrainConfig(steps=100, log_every=50),
      ...     grid={"seed": [0, 1]})
      >>> import sys
      >>> with dlnsim.ProgressBar(cfg, stream=sys.stdout) as bar:
      ...     ds = dlnsim.sweep(cfg, progress=bar)  # doctest: +ELLIPSIS
      [dlnsim] chunk 1/1 (one group, ... s): 2/2 runs, ... net-steps/s, ETA 0:00
    """

    def __init__(self, cfg: Any, chunks: Sequence[Any] | None = None, stream: Any = None):
        """Args:
        cfg: the sweep (:class:`~dlnsim.SweepConfig`).
        chunks: the chunks this process runs: the whole plan (the default), or a shard's
          slice under ``--shard``.
        stream: where to write; standard error by default.
        """
        from dlnsim.config import static_combinations
        from dlnsim.plan import plan

        chunks = plan(cfg) if chunks is None else chunks
        self.stream = stream or sys.stderr
        self.groups = static_combinations(cfg)
        self.n_chunks = len(chunks)
        self.done = 0  # chunks reported so far
        self.computed = 0  # runs computed in this process
        self.seconds = 0.0  # their chunks' compute time
        self.bar = None
        if _draws_bars(self.stream):
            from tqdm import tqdm

            fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} runs [{elapsed}{postfix}]"
            total = sum(len(c.runs) for c in chunks)
            self.bar = tqdm(total=total, unit="run", file=self.stream, bar_format=fmt, dynamic_ncols=True)

    def __call__(self, ev: Any) -> None:
        n = len(ev.chunk.runs)
        self.done += 1
        self.computed += ev.computed  # a chunk's runs on disk from another chunk plan cost nothing
        self.seconds += ev.seconds
        rate = self.computed * ev.steps / self.seconds if self.computed else float("nan")
        left = ev.to_compute * ev.steps  # runs on disk, even inside a later chunk, cost nothing
        eta = _clock(left / rate) if self.computed else "?"
        group = " ".join(f"{k}={v}" for k, v in self.groups[ev.chunk.group].items()) or "one group"
        what = "loaded" if ev.skipped else f"{ev.seconds:.1f} s"
        # Before the first computed chunk (all loaded so far) there is no rate to show.
        stats = f"{rate:.3g} net-steps/s, ETA {eta}" if self.computed else "rate and ETA from the first computed chunk"
        if self.bar is not None:
            self.bar.set_postfix_str(f"chunk {self.done}/{self.n_chunks}, {stats}", refresh=False)
            self.bar.update(n)
        else:
            print(
                f"[dlnsim] chunk {self.done}/{self.n_chunks} ({group}, {what}): "
                f"{ev.runs_done}/{ev.n_runs} runs, {stats}",
                file=self.stream,
                flush=True,
            )
        if ev.runs_done == ev.n_runs:
            self.close()  # drawn in full: the last update may fall inside tqdm's redraw interval

    def close(self) -> None:
        """Closes the bar (nothing to do for log lines); closing again does nothing."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
