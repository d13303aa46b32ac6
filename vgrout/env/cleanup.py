"""Removing a run's folder, which a hostile program may have made hard to remove.

A program runs in its own folder and may fill it with anything its limits
allow: 10^4 nested directories, read-only modes, names that collide. These
functions remove such a tree within a deadline, iteratively and without a
descriptor per level, and hand what is left to a background reaper; the
worker's folders are swept when the worker ends.
"""

from __future__ import annotations

import glob
import itertools
import os
import subprocess
import tempfile
import time

CLEANUP_S = 1.0  # the most a run dir's removal may take (see remove_tree)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def remove_tree(path: str, deadline: float) -> bool:
    """Remove the directory `path` and all in it, by `deadline`; whether it is gone.

    Not shutil.rmtree: it recurses once per level and keeps a descriptor open
    per level, so a program's chain of 10^4 nested directories makes it raise
    RecursionError and leave the chain (filling the tmpfs for later runs).
    Here each directory's files are unlinked and its subdirectories moved up
    into `path` before it is removed: a flat walk, with two descriptors and a
    few system calls per entry, that needs no new inode (the program may have
    used them all). The deadline guards the fallback level, where the run dir
    is on disk and nothing limits how many files a program makes (with
    namespaces the tmpfs inode limit does).
    """
    try:
        top = os.open(path, _DIR_FLAGS)
    except OSError:
        return not os.path.lexists(path)
    try:
        left = _empty_flat(top, deadline)
    except OSError:  # cleaning up must not lose the run's outputs
        left = 1
    finally:
        os.close(top)
    return not left and _gone(os.rmdir, None, path)


def _empty_flat(top: int, deadline: float) -> int:
    """Empty the directory `top`; how many entries are left in it."""
    entries = _entries(top)
    taken = {name for name, _ in entries}
    fresh = (n for n in map(str, itertools.count()) if n not in taken)  # names for moved dirs
    todo: list[str] = []  # every name in todo is a directory in top
    stuck = 0
    for k, (name, is_dir) in enumerate(entries):
        if time.monotonic() > deadline:
            return len(entries) - k + len(todo) + stuck
        if is_dir:
            todo.append(name)
        elif not _retry_writable(top, lambda n=name: _gone(os.unlink, top, n)):
            stuck += 1
    while todo:
        if time.monotonic() > deadline:
            return len(todo) + stuck
        name = todo.pop()
        if _gone(os.rmdir, top, name):
            continue
        moved = _move_up(top, name, fresh, deadline)
        if moved is None:
            stuck += 1  # neither removable nor emptiable: left in place
            continue
        todo.append(name)  # empty once the moved directories are gone
        todo.extend(moved)
    return stuck


def run_dir_prefix(worker_pid: int) -> str:
    """Run dirs are named after their worker, so that the parent can remove
    the one a killed worker left behind (fallback level: it is on disk)."""
    return f"vgrout-run-{worker_pid}-"


def remove_run_dirs(worker_pid: int) -> None:
    """Remove the fallback-level run dirs of a dead worker (with namespaces
    they were in its private tmpfs, gone with it)."""
    pattern = os.path.join(tempfile.gettempdir(), glob.escape(run_dir_prefix(worker_pid)) + "*")
    for path in glob.glob(pattern):
        if not remove_tree(path, time.monotonic() + CLEANUP_S):
            remove_later(path)


def remove_later(path: str) -> None:
    """Leave the rest of `path` to a detached ``rm -rf``: the grading must not
    wait for it (the deadline passed), and the next run should not find it.
    Nothing is left to wait for: the shell exits at once and its rm is
    re-parented, so the worker collects no zombie."""
    try:
        subprocess.run(
            ["/bin/sh", "-c", 'nice -n 19 rm -rf -- "$1" </dev/null >/dev/null 2>&1 &', "sh", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        pass


def _entries(fd: int) -> list[tuple[str, bool]]:
    """(name, is a directory, not following symlinks) for each entry of `fd`."""
    with os.scandir(fd) as it:
        return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]


def _gone(remove, dir_fd: int | None, name: str) -> bool:
    """`remove(name, dir_fd=dir_fd)` (unlink or rmdir); whether `name` is gone."""
    try:
        remove(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _move_up(top: int, name: str, fresh, deadline: float) -> list[str] | None:
    """Empty the directory `name` in `top` (until `deadline`): unlink what is
    not a directory, move the directories into `top` (under names from
    `fresh`, which no entry of `top` has). Their new names; None if nothing
    could be done."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=top)
    except OSError:
        return None
    moved, removed = [], 0
    try:
        for entry, is_dir in _entries(fd):
            if time.monotonic() > deadline:
                break
            if not is_dir:
                removed += _retry_writable(fd, lambda e=entry: _gone(os.unlink, fd, e))
                continue
            new = next(fresh)
            if _retry_writable(fd, lambda e=entry, n=new: _renamed(fd, e, top, n)):
                moved.append(new)
    except OSError:
        pass
    finally:
        os.close(fd)
    return moved if moved or removed else None


def _renamed(src_fd: int, name: str, dst_fd: int, new: str) -> bool:
    try:
        os.rename(name, new, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return True
    except OSError:
        return False


def _retry_writable(fd: int, step) -> bool:
    """`step()`, and once more after making the directory `fd` writable (a
    program may have made its own directory read-only; root needs no retry)."""
    if step():
        return True
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        return False
    return step()
