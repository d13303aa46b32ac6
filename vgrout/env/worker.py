"""A warm fork server: ``python -m vgrout.env.worker`` reads harness jobs as
JSON lines and answers each with the sandbox's raw outputs.

Why a separate interpreter: it is started with exec (never forked from the
trainer), so the process a solution is forked from holds no expected values,
no model and no other problem's tests; and forking a small warm interpreter
costs a few ms where a fresh ``python -c`` costs ~14 ms.

Reply framing: a JSON header line (status, timings, and ``sizes``: the byte
lengths of the raw results, stdout and marker file, -1 for no file), then
those bytes as they were read. Sending them raw, rather than as JSON strings,
keeps a reply as long as the capped outputs: escaping could make them up to
six times longer, and encoding and decoding them would cost time that grows
with what the program wrote.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from .sandbox import GUARANTEES, OUTPUTS, Limits, probe, run_job

# Imported once here so that forked programs find them already loaded: the
# LeetCode setup code imports all of these, and importing them afresh in every
# program would cost more than the fork.
PRELOAD = (
    "random",
    "functools",
    "collections",
    "string",
    "math",
    "datetime",
    "typing",
    "itertools",
    "heapq",
    "bisect",
    "operator",
    "re",
    "fractions",
    "decimal",
    "statistics",
    "copy",
    "array",
    "dataclasses",
    "enum",
    "types",
)


def _serve(inp, out_fd: int) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    forced = os.environ.get("VGROUT_SANDBOX", "")
    why: str | None
    if forced == "none":
        level, why = "none", "VGROUT_SANDBOX=none"
    else:
        level, why = probe()
    from . import isolation

    hello = {
        "hello": 1,
        "level": level,
        "why": why,
        "guarantees": GUARANTEES[level],
        "base": isolation.BASE,
    }
    os.write(out_fd, (json.dumps(hello) + "\n").encode())
    for line in inp:
        msg = json.loads(line)
        limits = Limits(**msg.get("limits", {}))
        try:
            reply = run_job(msg["job"], limits, level)
        except Exception as e:  # noqa: BLE001 - a worker fault must not end the worker
            reply = {
                "status": None,
                "timed_out": False,
                "cap": None,
                "results": b"",
                "stdout": b"",
                "file": None,
                "seconds": 0.0,
                "ns_error": None,
                "worker_error": repr(e)[:200],
            }
        _send(out_fd, reply)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data`; through a memoryview, so that a partial write costs
    no copy of the rest (re-slicing bytes is quadratic in their length)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _send(out_fd: int, reply: dict) -> None:
    """One framed reply: the header line, then the raw outputs it sizes."""
    blobs = [reply.get(key) for key in OUTPUTS]
    head = {k: v for k, v in reply.items() if k not in OUTPUTS}
    head["sizes"] = [-1 if b is None else len(b) for b in blobs]
    _write_all(out_fd, (json.dumps(head) + "\n").encode())
    for blob in blobs:
        if blob:
            _write_all(out_fd, blob)


def _exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """End the worker once its parent is gone.

    End of input on the job pipe is not enough: a process the parent forked
    after starting the worker (a notebook kernel's helper, a fork-based data
    loader) inherits the pipe's write end, keeps it open after the parent is
    killed, and the worker would then wait forever as an orphan.
    """
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(0)


def main() -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    # A Ctrl-C (or a notebook kernel's shutdown) reaches the whole process
    # group; the worker ends when its parent closes the job pipe, so it needs
    # no SIGINT of its own and should not print a traceback for one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Private copies of the protocol pipes; fds 0/1 then point elsewhere, so
    # nothing a forked program inherits by default reaches the parent.
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with os.fdopen(in_fd, "rb", buffering=0) as raw:
        import io

        _serve(io.BufferedReader(raw), out_fd)


if __name__ == "__main__":
    main()
