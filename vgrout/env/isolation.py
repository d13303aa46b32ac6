"""Linux namespace plumbing for the sandbox: raw syscalls through ctypes.

Why ctypes and no bubblewrap: Python 3.11 has no ``os.unshare``, and a
package would have to be installed on every machine; these few syscalls need
nothing but libc. Used only at the ``namespaces`` level (running as root).
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
_OPT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src, target, fstype, flags, data=None) -> None:
    def enc(s):
        return None if s is None else s.encode()

    check(
        libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def _writable_mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to keep) of the rw mounts the program could write to.

    /proc, /sys and /dev/pts are skipped: a fresh /proc is mounted over the
    first, and uid 65534 without capabilities cannot write the others; each
    remount costs ~0.2 ms, so only the ones that matter are done.
    """
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            point = parts[4].encode().decode("unicode_escape")
            opts = parts[5].split(",")
            if "ro" in opts or any(
                point == p or point.startswith(p + "/") for p in ("/proc", "/sys", "/dev/pts")
            ):
                continue
            keep = 0
            for opt in opts:
                keep |= _OPT_FLAGS.get(opt, 0)
            points.append((point, keep))
    return sorted(points, key=lambda p: p[0].count("/"))


def _remount_readonly(skip: str) -> None:
    """Every writable mount read-only (per mount point, not the superblock) but `skip`."""
    for point, keep in _writable_mount_points():
        if point == skip:
            continue
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | keep)
        except OSError:
            if point == "/":
                raise


BASE: str | None = None  # the worker's writable tmpfs (namespaces level only)
ROOT: str | None = None  # the minimal root programs are chrooted into
_ROOT_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def _bind_into(root: str, path: str) -> None:
    """Make `path` appear at the same place under `root` (a symlink stays one)."""
    target = root + path
    if os.path.islink(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(path, target, None, MS_BIND | MS_REC)


def _build_root(base: str) -> str:
    """A minimal root inside `base`: system dirs, the interpreter, a few
    devices, and /run for the run dirs. Nothing else of the host (the
    project's data files with their expected values, home dirs) is in it."""
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "run"), mode=0o755)
    os.makedirs(os.path.join(root, "tmp"), mode=0o755)
    for path in _ROOT_DIRS + _DEVICES:
        if os.path.lexists(path):
            _bind_into(root, path)
    for d in sorted({os.path.realpath(x) for x in (sys.base_prefix, sys.prefix)}):
        if not any(d == p or d.startswith(p + "/") for p in _ROOT_DIRS):
            _bind_into(root, d)
    return root


def enter_worker_namespace(tmpfs_bytes: int, tmpfs_inodes: int = 8192) -> str:
    """Once per worker: private mount and network namespaces, a size-limited tmpfs
    `base` holding a minimal root and the run dirs; every other mount, and
    every mount in the minimal root, read-only.

    The inode limit bounds what a program can leave for the worker to remove
    after its run: without it, a program creating empty files for its whole
    wall limit leaves ~10^5 of them (tmpfs ``size`` counts data, not inodes),
    and removing them holds the grading for seconds.

    Done once here rather than per run, because mount calls cost several ms
    each on a busy machine; every run's namespaces inherit the result.
    """
    global BASE, ROOT
    # The network namespace is per worker too: creating one per run costs more
    # than the rest of the run's set-up, and a program leaves nothing in it
    # (its sockets close when the PID namespace dies; lo is never up).
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare mount+network namespaces")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    base = tempfile.mkdtemp(prefix="vgrout-ns-")
    options = f"size={tmpfs_bytes},nr_inodes={tmpfs_inodes},mode=0755"
    mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, options)
    BASE = base
    root = _build_root(base)
    _remount_readonly(skip=base)
    ROOT = root
    return base


_SYS_CLONE = {"x86_64": 56, "aarch64": 220}
SIGCHLD = 17


def fork_new_pid_namespace(extra_flags: int = CLONE_NEWIPC | CLONE_NEWUTS) -> int:
    """fork(), but the child is PID 1 of a fresh PID namespace (plus fresh
    IPC/UTS ones). Returns like os.fork.

    Why not unshare + fork: unshare(CLONE_NEWPID) works only once per process,
    so a warm worker would need an extra intermediate process (a fork, ~1-5 ms)
    per run. The raw clone syscall is wrapped in the interpreter's own
    before/after-fork hooks, exactly as os.fork does (the worker is
    single-threaded).
    """
    import platform

    number = _SYS_CLONE.get(platform.machine())
    if number is None:
        raise OSError(f"clone syscall number unknown on {platform.machine()}")
    libc.syscall.restype = ctypes.c_long
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = libc.syscall(
        number, ctypes.c_ulong(CLONE_NEWPID | extra_flags | SIGCHLD), None, None, None, None
    )
    err = ctypes.get_errno()
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
    else:
        ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid
