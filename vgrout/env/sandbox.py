"""Run one harness job in a fresh, limited process (forked from a warm worker).

Isolation levels, probed once per worker:

``namespaces`` (running as root, Linux): once per worker, private mount and
network namespaces, with a 64 MiB tmpfs holding a minimal root (system dirs, the
interpreter and a few devices, bind-mounted read-only: no project data, no
home dirs, no /proc) and the run dirs; every other mount read-only. Per run,
the worker forks the program with clone() into fresh PID, IPC and UTS
namespaces, where it is PID 1; which chroots into the minimal root,
drops to uid/gid 65534 (65533 for jobs that hold expected values) with
no_new_privs and works in its own run dir. When the program exits (or on
timeout, when the worker SIGKILLs it, or when the worker dies and PDEATHSIG
fires), the kernel kills every process left in its namespace, setsid daemons
included. (As PID 1 it ignores signals it sends itself, and RLIMIT_CPU acts
through the hard limit's SIGKILL.) No network interface is up; only the run dir is writable; other
processes can be neither signalled (other PID namespace) nor read (other uid,
no capabilities, no /proc).

``none`` (fallback, loudly warned): own session/process group, temp cwd and
rlimits only; a setsid daemon can outlive the run and the filesystem is as
writable as the user's.

Both: wall timeout (kill), RLIMIT_CPU/AS/FSIZE/NOFILE/CORE (+NPROC as uid
65534), stdout+stderr and the result channel read through pipes with caps
(exceeding a cap kills the run), environment cleared.

What comes back is bounded too, so that the time after the program's end
(draining, shipping to the parent, decoding) is bounded whatever it did: raw
bytes, at most ``stdout_cap`` + ``result_cap`` + 4 KiB of the marker file,
never decoded or re-encoded here (the worker frames them, the parent decodes).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import tempfile
import time
from dataclasses import dataclass
from typing import cast

from . import harness, isolation
from .cleanup import CLEANUP_S, remove_later, remove_tree, run_dir_prefix
from .isolation import PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, check, libc

MARKER_BYTES = 4096  # read of a file_marker file
NOBODY = 65534  # uid of programs that run solutions (call expressions only)
SECRET_UID = 65533  # uid of jobs that hold expected values (naive, trusted)


@dataclass(frozen=True)
class Limits:
    wall_s: float = 3.0
    cpu_s: int = 3
    address_space: int = 1 << 30
    file_size: int = 16 << 20
    open_files: int = 64
    processes: int = 64
    tmpfs_bytes: int = 64 << 20
    tmpfs_inodes: int = 8192
    stdout_cap: int = 4 << 20
    result_cap: int = 16 << 20

    def reply_bytes(self) -> int:
        """The most a run's raw outputs can hold: what a reader may accept."""
        return self.stdout_cap + self.result_cap + MARKER_BYTES


GUARANTEES = {
    "namespaces": (
        "fresh process",
        "own temp cwd",
        "wall timeout",
        "rlimits cpu/as/fsize/nofile/nproc",
        "output caps",
        "pid namespace (all descendants die, setsid too)",
        "no network",
        "chroot into a minimal read-only root (no project files, no /proc)",
        "only the run dir writable (64 MiB tmpfs)",
        "uid 65534 (65533 for jobs holding expected values) + no_new_privs",
        "other processes unsignalable and unreadable",
    ),
    "none": (
        "fresh process",
        "own temp cwd",
        "wall timeout",
        "rlimits cpu/as/fsize/nofile",
        "output caps",
        "process-group kill",
    ),
}


def _set_limits(limits: Limits, nproc: bool) -> None:
    cpu = max(1, int(limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def _program(job: dict, limits: Limits, tmp: str, out_w: int, res_w: int, drop: bool) -> None:
    """The untrusted program's process. Never returns."""
    status = 70
    try:
        os.setsid()
        if drop:
            os.chroot(cast(str, isolation.ROOT))
            tmp = "/run/" + os.path.basename(tmp)
        os.chdir(tmp)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.dup2(res_w, harness.RESULT_FD)
        os.closerange(harness.RESULT_FD + 1, 1 << 16)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(PATH="/usr/bin:/bin", HOME=tmp, LANG="C.UTF-8", TMPDIR=tmp)
        _set_limits(limits, nproc=drop)
        if drop:
            uid = job_uid(job)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        status = harness.main(job, limits.result_cap)
    finally:
        os._exit(status)


def job_uid(job: dict) -> int:
    """Solutions and secret-holding jobs run as different uids, so a program
    cannot read the memory of a concurrent job that holds expected values."""
    return NOBODY if job.get("kind") == "program" else SECRET_UID


def _read_marker_file(name: str) -> bytes | None:
    """Up to 4 KiB of the regular file `name` (no symlinks followed)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, MARKER_BYTES)
    finally:
        os.close(fd)


def _exit_code(st: int) -> int:
    return os.waitstatus_to_exitcode(st)


class _Capped:
    """Bytes read from one pipe, up to `cap` (beyond it: `over` is set, and
    `name` is the reason the run is killed)."""

    def __init__(self, fd: int, cap: int, name: str):
        self.fd, self.cap, self.name = fd, cap, name
        self.buf, self.over, self.open = bytearray(), False, True

    def read(self) -> None:
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.open = False
            return
        if len(self.buf) + len(chunk) > self.cap:
            self.over = True
            chunk = chunk[: max(0, self.cap - len(self.buf))]
        self.buf += chunk


def _kill(pid: int, level: str) -> None:
    try:
        if level == "namespaces":
            os.kill(pid, signal.SIGKILL)  # PDEATHSIG takes PID 1, the kernel the rest
        else:
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _supervise(
    pid: int, level: str, pipes: list[_Capped], wall_s: float
) -> tuple[int, bool, str | None]:
    """Read pipes until the program exits or the deadline; (wait status, timed_out, cap hit).

    With namespaces the program is PID 1 of its namespace: by the time its
    exit is visible, the kernel has killed every other process in it. Without,
    its process group is killed afterwards (a setsid daemon escapes).
    """
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + wall_s
    timed_out, cap_hit, exited = False, None, False
    try:
        while not exited:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                _kill(pid, level)
                break
            ready, _, _ = select.select([p.fd for p in pipes if p.open] + [pidfd], [], [], left)
            for p in pipes:
                if p.fd in ready:
                    p.read()
                    if p.over and cap_hit is None:
                        cap_hit = p.name
                        _kill(pid, level)
            exited = pidfd in ready
    finally:
        os.close(pidfd)
    _, st = os.waitpid(pid, 0)
    if not timed_out and os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGXCPU:
        timed_out = True  # the CPU limit is a time limit too: on an idle machine it fires first
    if level == "none":
        _kill(pid, level)  # anything left in its process group
    for p in pipes:  # drain what is already written
        os.set_blocking(p.fd, False)
        while p.open and not p.over:
            before = len(p.buf)
            p.read()
            if len(p.buf) == before:
                break
    return st, timed_out, cap_hit


def run_job(job: dict, limits: Limits, level: str) -> dict:
    """Run `job` (a harness job) isolated at `level`; raw outputs for the parent.

    ``results``, ``stdout`` and ``file`` are the capped bytes as read (see
    ``decode_outputs``); the rest is small.
    """
    t0 = time.perf_counter()
    if level == "namespaces" and isolation.ROOT is None:
        raise RuntimeError("namespaces level needs enter_worker_namespace() first")
    # (A worker whose namespace set-up half worked has a read-only /tmp: its
    # fallback runs then live in the writable BASE.)
    tmp = tempfile.mkdtemp(
        prefix=run_dir_prefix(os.getpid()),
        dir=os.path.join(cast(str, isolation.ROOT), "run")
        if level == "namespaces"
        else isolation.BASE,
    )
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    try:
        if level == "namespaces":
            os.chown(tmp, job_uid(job), job_uid(job))
        # With namespaces the child is PID 1 of a fresh PID namespace: one fork per run.
        pid = isolation.fork_new_pid_namespace() if level == "namespaces" else os.fork()
        if pid == 0:
            try:
                os.close(out_r)
                os.close(res_r)
                if level == "namespaces":
                    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                _program(job, limits, tmp, out_w, res_w, drop=level == "namespaces")
            finally:
                os._exit(70)
        os.close(out_w)
        os.close(res_w)
        out = _Capped(out_r, limits.stdout_cap, "output cap")
        res = _Capped(res_r, limits.result_cap, "result cap")
        st, timed_out, cap_hit = _supervise(pid, level, [out, res], limits.wall_s)
        marker = job.get("file_marker")
        file = _read_marker_file(os.path.join(tmp, marker)) if marker else None
    finally:
        os.close(out_r)
        os.close(res_r)
        if not remove_tree(tmp, time.monotonic() + CLEANUP_S):
            remove_later(tmp)
    return {
        "status": None if timed_out or cap_hit else _exit_code(st),
        "timed_out": timed_out,
        "cap": cap_hit,
        "ns_error": None,
        "results": bytes(res.buf),
        "stdout": bytes(out.buf),
        "file": file,
        "seconds": time.perf_counter() - t0,
    }


OUTPUTS = ("results", "stdout", "file")


def decode_outputs(reply: dict) -> dict:
    """`reply` with its raw outputs as text (invalid UTF-8 replaced), for grading."""
    text = dict(reply)
    for key in OUTPUTS:
        if isinstance(text.get(key), bytes):
            text[key] = text[key].decode("utf-8", "replace")
    return text


def probe(limits: Limits | None = None) -> tuple[str, str | None]:
    """The strongest level that really works here, and why a stronger one does not."""
    job = {"kind": "trusted", "setup": "import os", "calls": ["os.getuid()", "os.getpid()"]}
    why = None
    if hasattr(os, "fork"):
        try:
            if isolation.ROOT is None:
                lim = limits or Limits()
                isolation.enter_worker_namespace(lim.tmpfs_bytes, lim.tmpfs_inodes)
            out = decode_outputs(run_job(job, limits or Limits(), "namespaces"))
            if (
                f'"v":[["i",{job_uid(job)}]]' in out["results"]
                and '"v":[["i",1]]' in out["results"]
            ):
                return "namespaces", None
            else:
                why = f"probe gave {out['results'][:200]!r} status {out['status']}"
        except OSError as e:
            why = repr(e)
    return "none", why or "no fork"
