"""Stopping a long command stops everything it started.

A grid (and the figures driver running a notebook that trains one) is started
in a session of its own; once its runs and their grader workers are up, it is
sent SIGTERM, to its process group as `kill -- -PGID` does or to the parent
alone as a scheduler does, and afterwards no process it started may be left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GRID = """
    from vgrout.grpo.presets import preset
    from vgrout.grpo.sweep import run_grid

    if __name__ == "__main__":
        base = preset("smoke", steps=400, eval_every=0)
        run_grid(base, {"vanilla": {"arm": "vanilla"}, "routeA": {"arm": "routeA"}}, [0],
                 r"ROOT", jobs=2)
"""


def _children() -> dict[int, int]:
    """{pid: parent pid} of every live process (zombies left out: they hold no CPU)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            out[int(d.name)] = int(fields[1])
    return out


def _descendants(root: int) -> set[int]:
    tree, found, todo = _children(), set(), [root]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in tree.items() if pp == parent]
        found.update(kids)
        todo += kids
    return found


def _wait_for(cond, timeout: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = cond()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_children())


def _start(script: str, tmp_path: Path) -> subprocess.Popen:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(script).replace("ROOT", str(tmp_path / "runs")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, str(path)], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def _stop_and_check(proc: subprocess.Popen, whole_group: bool, grand: int) -> None:
    """Wait for `grand` levels of processes under proc, SIGTERM it, and find none left."""

    def started():
        below = _descendants(proc.pid)
        deep = [p for p in below if _depth(p, proc.pid) >= grand]
        return below if deep else None

    started_pids = _wait_for(started, 120, f"processes {grand} levels below the job")
    time.sleep(1.0)  # let the runs get into their steps
    everyone = started_pids | _descendants(proc.pid)
    if whole_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    _wait_for(lambda: not _alive(everyone), 30, f"{sorted(_alive(everyone))} to exit")


def _depth(pid: int, root: int) -> int:
    tree, d = _children(), 0
    while pid in tree and pid != root:
        pid, d = tree[pid], d + 1
    return d if pid == root else -1


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [False, True], ids=["parent-only", "process-group"])
def test_sigterm_stops_every_run_of_a_grid_and_their_workers(tmp_path, whole_group):
    proc = _start(GRID, tmp_path)
    try:
        # runs are the job's children; their grader workers its grandchildren
        _stop_and_check(proc, whole_group, grand=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


DRIVER = """
    from vgrout.figures.runner import run_all

    if __name__ == "__main__":
        run_all("NB", "NB", "FIGS", "EXEC", quick=True)
"""


@pytest.mark.slow
def test_sigterm_to_the_figures_driver_stops_the_kernel_and_its_grid(tmp_path):
    from helpers import write_notebook

    nbs = tmp_path / "nb"
    nbs.mkdir()
    body = textwrap.dedent(GRID).replace("ROOT", str(tmp_path / "runs"))
    write_notebook(nbs, "00_grid.ipynb", "figures_dir = 'x'", body.replace(
        'if __name__ == "__main__":\n', "if True:\n"))  # fmt: skip
    script = DRIVER.replace("NB", str(nbs)).replace("FIGS", str(tmp_path / "figs"))
    proc = _start(script.replace("EXEC", str(tmp_path / "exec")), tmp_path)
    try:
        # driver -> kernel -> runs -> grader workers
        _stop_and_check(proc, whole_group=False, grand=3)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
