"""What runs inside the sandboxed process: the solution, then the calls.

Three job kinds:
- ``program``: run setup + completion, evaluate each test's *call* (never its
  expected value, which this process never receives), write each return value
  as a wire table, then ``done``; afterwards, the mode's in-process channel
  check (``run_tests``: the disclosed function with ``Solution`` swapped for a
  stub; ``sentinel``: the disclosed attribute). Only the parent decides.
- ``naive``: run setup + completion, then the asserts as written; reports
  whether all held. This is the ``eq_override`` loophole as a naive grader sees
  it; it carries expected values, so it runs in a separate worker (see pool.py).
- ``trusted``: run setup code only and encode expressions (non-literal
  expected values such as ``-inf`` or ``list_node([1, 2])``).

Records are JSON lines on fd 3. Whatever the solution does to this module
(patching, tracing, writing its own records), it cannot learn the expected
values, so the most it can forge is a verdict against itself.

The harness writes at most ``result_bytes`` (the sandbox's result cap) to fd 3:
a return value whose table would not fit is refused while it is encoded and
reported as that call's error (``EncodeError: value too large``), so the run
goes on, the other calls still count and the parent never has to kill the run
or decode an oversized record. The cap itself is enforced by the parent too;
this budget only keeps an honest harness clear of it.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from typing import Any, cast

from .codec import EncodeError, encode

RESULT_FD = 3
_write, _dumps_json, _exc_type, _compile, _eval, _exec, _len, _view = (
    os.write,
    json.dumps,
    type,
    compile,
    eval,
    exec,
    len,
    memoryview,
)
# Kept back from the value budget: the records after the values (done, the
# channel check) and one short error record per call.
TAIL_BYTES, ERROR_BYTES = 4096, 128
MAX_NAME = 64
_room = [0]  # bytes the harness may still write to fd 3 (set by main)


def _emit(record: dict) -> bool:
    """Write one record unless it would pass the budget; whether it was written.

    Written through a memoryview: re-slicing the bytes after each partial
    write would copy the rest every time (quadratic in the record's size).
    """
    data = (_dumps_json(record, separators=(",", ":"), allow_nan=True) + "\n").encode()
    if _len(data) > _room[0]:
        return False
    _room[0] -= _len(data)
    view = _view(data)
    while view:
        view = view[_write(RESULT_FD, view) :]
    return True


def _name(e: BaseException) -> str:
    """The exception's type name, short: a program may name its own exception
    class anything, of any length (a 100 MB name would be a 100 MB record)."""
    name = _exc_type(e).__name__
    return name[:MAX_NAME] if _exc_type(name) is str else "?"


def _emit_value(i: int, value, calls_left: int) -> None:
    """Record call `i`'s return value, or the reason it cannot be sent.

    The value's budget is what is left after the tail and an error record for
    every later call, so one oversized value cannot crowd out the rest.
    """
    room = _room[0] - TAIL_BYTES - ERROR_BYTES * calls_left
    try:
        table = encode(value, max_bytes=room)
    except EncodeError as e:
        _emit({"r": i, "e": f"EncodeError: {e}"})
        return
    except Exception as e:  # noqa: BLE001 - e.g. a hostile __dict__ or iterator
        _emit({"r": i, "e": f"encode: {_name(e)}"})
        return
    if not _emit({"r": i, "v": table}):
        _emit({"r": i, "e": "EncodeError: value too large"})


class _Nothing:
    """What stub methods return: equal to nothing, falsy."""

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    def __bool__(self):
        return False

    __hash__ = object.__hash__


def _stub_method(*args, **kwargs):
    return _Nothing()


class _StubSolution:
    """Stands in for Solution while a disclosed run_tests() runs: a test
    function that really checks Solution raises against it; a vacuous one does not."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return _stub_method


def _new_namespace() -> dict:
    return {"__name__": "__main__", "__builtins__": builtins}


def _exec_source(source: str, filename: str, ns: dict, tag: str) -> bool:
    """Exec `source`; SystemExit propagates (a script would exit there).

    A raising module makes the script exit with status 1, like a traceback;
    callers return 1, so that only a real exit 0 reads as an early exit."""
    try:
        _exec(_compile(source, filename, "exec"), ns)
        return True
    except Exception as e:  # noqa: BLE001 - hostile code may raise anything
        _emit({tag: _name(e)})
        return False


def _channel_check(mode: str, marker: str, ns: dict) -> None:
    ok = False
    try:
        if mode == "run_tests":
            fn: Any = ns.get(marker)
            if _exc_type(fn).__name__ == "function":
                ns["Solution"] = _StubSolution
                fn()
                ok = True
        elif mode == "sentinel":
            ok = bool(getattr(ns["Solution"](), marker))
    except BaseException:  # noqa: BLE001 - a raising check is a failing check
        ok = False
    _emit({"ch": ok})


def run_program(job: dict) -> int:
    calls = [_compile(c, f"<call {i}>", "eval") for i, c in enumerate(job["calls"])]
    ns = _new_namespace()
    if not _exec_source(job["setup"], "<setup>", ns, "setup_error"):
        return 1
    if not _exec_source(job["code"], "solution.py", ns, "exec_error"):
        return 1
    for i, code in enumerate(calls):
        try:
            value = _eval(code, ns)
        except Exception as e:  # noqa: BLE001 - the program's call may raise anything
            _emit({"r": i, "e": _name(e)})
            continue
        _emit_value(i, value, _len(calls) - 1 - i)
    _emit({"done": 1})
    if job.get("mode") in ("run_tests", "sentinel") and job.get("marker"):
        _channel_check(job["mode"], job["marker"], ns)
    return 0


def run_naive(job: dict) -> int:
    ns = _new_namespace()
    if not _exec_source(job["setup"], "<setup>", ns, "setup_error"):
        return 1
    if not _exec_source(job["code"], "solution.py", ns, "exec_error"):
        return 1
    held = 0
    for i, test in enumerate(job["asserts"]):
        try:
            _exec(_compile(test, f"<assert {i}>", "exec"), ns)
            held += 1
        except Exception:  # noqa: BLE001 - a failing assert of any kind just does not hold
            pass
    _emit({"naive": held == len(job["asserts"]), "held": held})
    return 0


def run_trusted(job: dict) -> int:
    ns = _new_namespace()
    if not _exec_source(job["setup"], "<setup>", ns, "setup_error"):
        return 1
    for i, expr in enumerate(job["calls"]):
        try:
            value = _eval(_compile(expr, f"<expr {i}>", "eval"), ns)
        except Exception as e:  # noqa: BLE001 - the program's call may raise anything
            _emit({"r": i, "e": _name(e)})
            continue
        _emit_value(i, value, _len(job["calls"]) - 1 - i)
    _emit({"done": 1})
    return 0


_KINDS = {"program": run_program, "naive": run_naive, "trusted": run_trusted}


def main(job: dict, result_bytes: int) -> int:
    """Run one job, writing at most `result_bytes` to fd 3; return the process
    exit status a script would have had."""
    _room[0] = result_bytes
    sys.setrecursionlimit(int(job.get("recursion_limit", 20000)))
    out = sys.stdout
    try:
        status = _KINDS[job["kind"]](job)
    except SystemExit as e:
        code = e.code
        if code is None:
            status = 0
        elif _exc_type(code) is int:
            status = cast(int, code) & 0xFF
        else:
            status = 1
    except BaseException:  # noqa: BLE001 - whatever the program raised, report a failure
        status = 1
    for stream in (out, sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - the program may have closed or replaced a stream
            pass
    return status
