"""Parent side of the warm workers: dispatch jobs, survive dying workers.

Two groups: ``oracle`` workers run solutions with call expressions only;
one ``secret`` worker runs jobs that carry expected values (the naive
``eq_override`` check and trusted evaluation of non-literal expected values).
Keeping them apart means no process a program is forked from has ever held an
expected value, so scanning its own memory finds none.
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

from .sandbox import Limits

log = logging.getLogger("vgrout.env")
_announced = False


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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vgrout.env.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            bufsize=0,
            close_fds=True,
            env=env,
        )
        self.buf = b""
        self.hello = json.loads(self._readline_blocking(60.0))
        _announce(self.hello)
        self.job = None  # (index, sent at) of the job in flight

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
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def send(self, index: int, job: dict, limits: Limits) -> None:
        self.job = (index, time.monotonic())
        self.proc.stdin.write((json.dumps({"job": job, "limits": asdict(limits)}) + "\n").encode())

    def poll(self) -> dict | None:
        """Read what is available; the finished reply, if any. Raises EOFError."""
        chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
        if not chunk:
            raise EOFError
        self.buf += chunk
        if b"\n" not in self.buf:
            return None
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - closing a dead or stuck worker must not raise
            pass
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
        """Run (group, job) pairs; replies in order. Never raises on job content."""
        replies: list = [None] * len(jobs)
        queues = {g: [i for i, (grp, _) in enumerate(jobs) if grp == g] for g in self.groups}
        for g, q in queues.items():
            if q:
                self._ensure(g, self.size if g == "oracle" else 1)
        pending = sum(len(q) for q in queues.values())
        while pending:
            for g, q in queues.items():
                for w in self.groups[g]:
                    if w.job is None and q:
                        i = q.pop(0)
                        w.send(i, jobs[i][1], limits)
            busy = [w for ws in self.groups.values() for w in ws if w.job is not None]
            ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], 1.0)
            for w in busy:
                if w.proc.stdout in ready:
                    try:
                        reply = w.poll()
                    except (EOFError, OSError, ValueError):
                        reply = _dead_reply("worker died")
                        self._replace(w)
                elif time.monotonic() - w.job[1] > limits.wall_s + 30:
                    reply = _dead_reply("worker stuck")
                    self._replace(w)
                else:
                    continue
                if reply is not None:
                    replies[w.job[0]] = reply
                    w.job = None
                    pending -= 1
        return replies

    def _replace(self, dead: _Worker) -> None:
        index = dead.job
        dead.close()
        for ws in self.groups.values():
            if dead in ws:
                ws[ws.index(dead)] = fresh = _Worker(self.sandbox)
                fresh.job = None
        dead.job = index

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
