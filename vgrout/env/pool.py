"""Parent side of the warm workers: dispatch jobs, survive dying workers.

Two groups: ``oracle`` workers run solutions with call expressions only;
one ``secret`` worker runs jobs that carry expected values (the naive
``eq_override`` check and trusted evaluation of non-literal expected values).
Keeping them apart means no process a program is forked from has ever held an
expected value, so scanning its own memory finds none.

Every reply is read with a byte cap and a deadline: a worker may send no more
than its job's outputs can hold (``Limits.reply_bytes``) and must answer
within the wall limit plus ``REPLY_GRACE_S``; otherwise its job fails and the
worker is retired (a fresh one is started when there is work for it). So a
grading returns in bounded time whatever the program did, and never raises.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from typing import Any

from .cleanup import remove_run_dirs
from .sandbox import OUTPUTS, Limits, decode_outputs

log = logging.getLogger("vgrout.env")
_announced = False
# Past the wall limit: killing the program, draining its outputs, removing its run dir
# (at most sandbox.CLEANUP_S = 1 s) and sending the reply. 1.5 s leaves the trusted side
# the other 1.5 s of its ~3 s allowance, for a parent that is scheduled late on a loaded
# machine (at 2 s, a stopped worker was given up 6.0 s after its start once).
REPLY_GRACE_S = 1.5
HEADER_BYTES = 1 << 16  # a reply's header line is small; a longer one is a broken worker


def _announce(hello: dict) -> None:
    """Say once per process which sandbox guarantees hold (item 7)."""
    global _announced
    if _announced:
        return
    _announced = True
    log.info("sandbox level %s: %s", hello["level"], "; ".join(hello["guarantees"]))
    if hello["level"] != "namespaces":
        warnings.warn(
            f"vgrout.env sandbox without OS isolation ({hello.get('why')}): programs run "
            "with rlimits and a process-group kill only; a setsid daemon can outlive its "
            "run, the network is reachable and files outside the temp dir are writable. "
            "Run as root on Linux (namespaces) for full isolation.",
            RuntimeWarning,
            stacklevel=3,
        )


class _Worker:
    def __init__(self, sandbox: str | None = None):
        env = dict(os.environ)
        if sandbox:
            env["VGROUT_SANDBOX"] = sandbox
        # stdin and stdout are pipes (never None), which Popen's type does not say
        self.proc: Any = subprocess.Popen(
            [sys.executable, "-m", "vgrout.env.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            bufsize=0,
            close_fds=True,
            env=env,
        )
        self.buf = bytearray()
        self.hello = json.loads(self._readline_blocking(60.0))
        _announce(self.hello)
        # (index, deadline, most bytes its reply may have) of the job in flight
        self.job: Any = None
        self.head: Any = None  # the header of the reply being read

    def _readline_blocking(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError("vgrout.env worker did not start")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError("vgrout.env worker exited at start-up")
            self.buf += chunk
        line, _, rest = self.buf.partition(b"\n")
        self.buf = bytearray(rest)
        return bytes(line)

    def send(self, index: int, job: dict, limits: Limits) -> None:
        """Start `job`; its reply is due by the wall limit plus REPLY_GRACE_S."""
        self.job = (index, time.monotonic() + limits.wall_s + REPLY_GRACE_S, limits.reply_bytes())
        self.head = None
        self.proc.stdin.write((json.dumps({"job": job, "limits": asdict(limits)}) + "\n").encode())

    def overdue(self) -> bool:
        return self.job is not None and time.monotonic() > self.job[1]

    def poll(self) -> dict | None:
        """Read what is available; the finished reply, if any.

        Raises EOFError when the worker is gone and ValueError when its reply
        breaks the framing or would pass the job's byte cap (see worker.py).
        """
        chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
        if not chunk:
            raise EOFError
        self.buf += chunk
        if self.head is None:
            self.head = self._header()
            if self.head is None:
                return None
        sizes = self.head["sizes"]
        total = sum(max(0, n) for n in sizes)
        if len(self.buf) < total:
            return None
        reply, offset = dict(self.head), 0
        for key, n in zip(OUTPUTS, sizes):
            reply[key] = None if n < 0 else bytes(self.buf[offset : offset + n])
            offset += max(0, n)
        del self.buf[:total]
        self.head = None
        return decode_outputs(reply)

    def _header(self) -> dict | None:
        """The reply's header once its line is complete, checked against the caps."""
        end = self.buf.find(b"\n", 0, HEADER_BYTES)
        if end < 0:
            if len(self.buf) >= HEADER_BYTES:
                raise ValueError("reply header too long")
            return None
        head = json.loads(bytes(self.buf[:end]))
        del self.buf[: end + 1]
        sizes = head.get("sizes") if isinstance(head, dict) else None
        if not (
            isinstance(sizes, list)
            and len(sizes) == len(OUTPUTS)
            and all(type(n) is int and n >= -1 for n in sizes)
            and sum(max(0, n) for n in sizes) <= self.job[2]
        ):
            raise ValueError("reply over its cap or malformed")
        return head

    def close(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - closing a dead or stuck worker must not raise
            pass
        remove_run_dirs(self.proc.pid)
        self._remove_base()

    def _remove_base(self) -> None:
        """The worker's tmpfs lived in its own mount namespace; on the host its
        mount point is an empty dir (with empty staging dirs) left to remove."""
        base = self.hello.get("base") if isinstance(getattr(self, "hello", None), dict) else None
        if not base or not os.path.basename(base).startswith("vgrout-ns-"):
            return
        for dirpath, _subdirs, _ in sorted(os.walk(base), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def _dead_reply(why: str) -> dict:
    """The reply of a job whose worker died, broke the protocol or was too slow."""
    return {
        "status": None,
        "timed_out": False,
        "cap": None,
        "results": "",
        "stdout": "",
        "file": None,
        "seconds": 0.0,
        "ns_error": None,
        "worker_error": why,
    }


class Pool:
    """`workers` oracle workers and one secret worker, started lazily."""

    def __init__(self, workers: int = 2, sandbox: str | None = None):
        """`sandbox="none"` forces the fallback level (tests, or machines where
        the namespace set-up is unwanted); default: the strongest that works."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.size, self.sandbox = workers, sandbox
        self.groups: dict[str, list[_Worker]] = {"oracle": [], "secret": []}

    @property
    def level(self) -> str:
        self._ensure("oracle", 1)
        return self.groups["oracle"][0].hello["level"]

    def _ensure(self, group: str, n: int) -> None:
        while len(self.groups[group]) < n:
            self.groups[group].append(_Worker(self.sandbox))

    def run(self, jobs: list[tuple[str, dict]], limits: Limits) -> list[dict]:
        """Run (group, job) pairs; replies in order. Never raises on job content.

        Each reply comes back within the wall limit plus REPLY_GRACE_S of its
        job's start, or as a failed reply (and its worker is retired).
        """
        replies: list = [None] * len(jobs)
        queues = {g: [i for i, (grp, _) in enumerate(jobs) if grp == g] for g in self.groups}
        pending = len(jobs)
        while pending:
            pending -= self._dispatch(queues, jobs, limits, replies)
            busy = [w for ws in self.groups.values() for w in ws if w.job is not None]
            if not busy:
                continue
            wait = min(1.0, max(0.0, min(w.job[1] for w in busy) - time.monotonic()))
            ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], wait)
            for w in busy:
                reply, broken = self._collect(w, w.proc.stdout in ready)
                if reply is None:
                    continue
                replies[w.job[0]] = reply
                w.job = None
                pending -= 1
                if broken:
                    self._retire(w)
        return replies

    def _dispatch(self, queues: dict, jobs: list, limits: Limits, replies: list) -> int:
        """Give each idle worker its group's next job, starting workers where
        jobs wait. A worker that cannot take its job fails it and is retired;
        returns how many jobs failed so."""
        failed = 0
        for g, q in queues.items():
            if not q:
                continue
            self._ensure(g, self.size if g == "oracle" else 1)
            for w in list(self.groups[g]):
                if w.job is None and q:
                    i = q.pop(0)
                    try:
                        w.send(i, jobs[i][1], limits)
                    except OSError:
                        replies[i] = _dead_reply("worker died")
                        failed += 1
                        self._retire(w)
        return failed

    @staticmethod
    def _collect(w: _Worker, readable: bool) -> tuple[dict | None, bool]:
        """(`w`'s reply if it is complete, whether `w` is broken). A worker that
        died, broke the framing or its byte cap, or is past its deadline gives
        a failed reply and is broken."""
        try:
            reply = w.poll() if readable else None
        except (EOFError, OSError):
            return _dead_reply("worker died"), True
        except ValueError:
            return _dead_reply("worker reply malformed or over its cap"), True
        if reply is None and w.overdue():
            return _dead_reply("worker stuck"), True
        return reply, False

    def _retire(self, dead: _Worker) -> None:
        """Kill `dead` and drop it from its group. A fresh worker is started
        when a job needs one, so the grading that found it broken does not
        also wait for its replacement to start."""
        dead.close()
        for ws in self.groups.values():
            if dead in ws:
                ws.remove(dead)

    def close(self) -> None:
        for ws in self.groups.values():
            for w in ws:
                w.close()
            ws.clear()


_pools: dict[int, Pool] = {}


def get_pool(workers: int) -> Pool:
    """A process-wide pool per size (warm across calls), closed at exit."""
    if workers not in _pools:
        _pools[workers] = Pool(workers)
    return _pools[workers]


def any_pool() -> Pool:
    """A warm pool of any size (for one-off grades), else a new one of 1."""
    return next(iter(_pools.values())) if _pools else get_pool(1)


@atexit.register
def _close_all() -> None:
    for p in _pools.values():
        p.close()
