"""Ctrl-C as a KeyboardInterrupt, also where Python would drop one.

Python drops an exception raised inside a garbage-collector callback, a weakref callback or
a ``__del__`` method (it hands it to :func:`sys.unraisablehook`, which prints "Exception
ignored"). jax runs a callback in every collection (``_xla_gc_callback``, jax-ml/jax#18246),
so a Ctrl-C that landed there, mostly while a sweep started up, was printed and lost, and the
sweep went on.
Within :func:`interrupts`, a dropped KeyboardInterrupt is raised again 10 ms later (SIGALRM),
until it lands where it propagates.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

RETRY_S = 0.01


def _raise(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _retry_dropped(previous: Any) -> Any:
    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is KeyboardInterrupt:
            signal.setitimer(signal.ITIMER_REAL, RETRY_S)  # SIGALRM: raised again, later
        else:
            previous(unraisable)

    return hook


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """Within: Ctrl-C raises a KeyboardInterrupt that reaches the main thread's code.

    Changes nothing off the main thread, where there is no ``setitimer`` (Windows), or where
    SIGINT is not Python's default handler (ignored in a background job, or the caller's own).
    """
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    old_alarm = signal.signal(signal.SIGALRM, _raise)
    old_hook, sys.unraisablehook = sys.unraisablehook, _retry_dropped(sys.unraisablehook)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)  # no SIGALRM after the old handler is back
        signal.signal(signal.SIGALRM, old_alarm)
        sys.unraisablehook = old_hook
