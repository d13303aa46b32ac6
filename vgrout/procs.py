"""Stopping a long command stops everything it started (no torch).

A grid, the figures driver and a notebook kernel start processes of their own
(runs, grader workers, kernels). Ctrl-C reaches a terminal's whole foreground
group, but a SIGTERM (a `kill`, a scheduler's time limit) or a SIGHUP (a closed
terminal) reaches only the processes it is sent to, and Python's default
action for both is to die at once, without running a single `finally`: the
children it started keep running, orphaned, at full CPU. Two guards:

- `stop_on_signals()` in a parent turns SIGTERM and SIGHUP into the same
  KeyboardInterrupt Ctrl-C raises, so the parent's `finally` blocks and
  context managers tear its children down, whichever way it was told to stop.
- `die_with_parent()` in a child asks the kernel to send it SIGTERM when its
  parent dies (Linux's PR_SET_PDEATHSIG; a watcher thread elsewhere), for the
  case no handler can cover: a parent killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from typing import Iterator

STOP_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s
)
PR_SET_PDEATHSIG = 1


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt (as Ctrl-C does).

    Only the main thread may install handlers; elsewhere (a worker thread) the
    block runs unguarded, which is the caller's to know.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupt) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have this process receive `sig` when its parent process dies, however it died."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os.kill(os.getpid(), sig)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent, sig), daemon=True).start()


def _watch_parent(parent: int, sig: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os.kill(os.getpid(), sig)
