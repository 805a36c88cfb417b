"""Progress of a running sweep: a tqdm bar on a terminal, one log line per chunk otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Reporter:
    """Progress over chunks: a tqdm bar on a terminal, one log line per chunk otherwise.

    The rate is network-steps (runs x optimiser steps) per second of computing, compile
    included; the ETA extrapolates it to the runs still to compute (runs already on disk
    cost nothing).
    """

    def __init__(self, cfg: Any, chunks: Sequence[Any], stream: Any = None):
        """``chunks``: those this process runs (a shard's slice under ``--shard``)."""
        from dlnsim.config import static_combinations

        self.stream = stream or sys.stderr
        self.groups = static_combinations(cfg)
        self.n_chunks = len(chunks)
        self.done = 0  # chunks reported so far
        self.start = time.perf_counter()
        self.computed = 0  # runs computed in this process
        self.loaded = 0  # chunks loaded from an earlier run
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} runs [{elapsed}{postfix}]"
            total = sum(len(c.runs) for c in chunks)
            self.bar = tqdm(total=total, unit="run", file=self.stream, bar_format=fmt, dynamic_ncols=True)

    def __call__(self, ev: Any) -> None:
        elapsed = time.perf_counter() - self.start
        n = len(ev.chunk.runs)
        self.done += 1
        if ev.skipped:
            self.loaded += 1
        self.computed += ev.computed  # a chunk's runs on disk from another chunk plan cost nothing
        rate = self.computed * ev.steps / elapsed if self.computed else float("nan")
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
