"""Sandbox limits (issue item 7): each hostile program is contained, the
grade comes back, and nothing it started or wrote outlives it."""

import glob
import os
import secrets
import socket
import tempfile
import time
import warnings

import pytest

from vgrout.env import Limits, grade, load_problems
from vgrout.env import pool as pool_module
from vgrout.env.pool import Pool
from vgrout.env.samples import write_samples

FAST = Limits(wall_s=1.5, cpu_s=1)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    path = write_samples(tmp_path_factory.mktemp("env") / "samples.jsonl")
    return load_problems(path, ["gt_only"])[0]


@pytest.fixture(scope="module")
def pools():
    """The strongest level this machine allows, and the forced fallback."""
    strong, weak = Pool(1), Pool(1, sandbox="none")
    yield {"strong": strong, "none": weak}
    strong.close()
    weak.close()


def isolated(pools) -> bool:
    return pools["strong"].level == "namespaces"


def run(code, problem, pool, limits=FAST):
    t0 = time.monotonic()
    g = grade(f"```python\n{code}\n```", problem, "gt_only", limits=limits, pool=pool)
    return g, time.monotonic() - t0


def processes_with(token: str) -> list[int]:
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as fh:
                if token.encode() in fh.read():
                    found.append(int(path.split("/")[2]))
        except OSError:
            pass
    return found


def wait_gone(token: str, seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_with(token)


@pytest.mark.parametrize("level", ["strong", "none"])
@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_infinite_loop_and_sleep_time_out(problem, pools, level, code):
    g, took = run(code, problem, pools[level])
    assert g.timed_out and g.error == "timeout" and not g.passed
    assert took < FAST.wall_s + 2.0


@pytest.mark.parametrize("level", ["strong", "none"])
def test_memory_bomb_is_refused(problem, pools, level):
    g, _ = run("x = bytearray(4 << 30)", problem, pools[level])
    assert not g.passed and g.error == "exec_error: MemoryError"


@pytest.mark.parametrize("level", ["strong", "none"])
def test_stdout_flood_hits_the_cap(problem, pools, level):
    g, took = run(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        problem,
        pools[level],
        Limits(wall_s=10, cpu_s=10),
    )
    assert g.error == "output cap" and not g.passed and took < 8


@pytest.mark.parametrize("level", ["strong", "none"])
def test_large_file_is_stopped_and_removed(problem, pools, level):
    name = f"big-{secrets.token_hex(4)}.bin"
    g, _ = run(
        f"with open({name!r}, 'wb') as f:\n    for _ in range(100):\n"
        "        f.write(b'0' * (1 << 20))",
        problem,
        pools[level],
    )
    assert not g.passed and (g.error or "").startswith(("exec_error", "exited early"))
    assert glob.glob(os.path.join(tempfile.gettempdir(), "vgrout-run-*", name)) == []


@pytest.mark.parametrize("level", ["strong", "none"])
def test_children_are_killed(problem, pools, level):
    token = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6) + 1}"
    code = f"import subprocess\nsubprocess.Popen(['/bin/sleep', '{token}'])\nimport time\ntime.sleep(0.2)"
    run(code, problem, pools[level])
    assert wait_gone(token) == []


def test_setsid_daemon_dies_with_the_program(problem, pools):
    if not isolated(pools):
        pytest.skip("no PID namespace here: a setsid daemon can escape (warned at start-up)")
    token = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6) + 1}"
    code = (
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['/bin/sleep', '{token}'])\n    os._exit(0)\n"
        "import time\ntime.sleep(0.3)"
    )
    g, _ = run(code, problem, pools["strong"])
    assert g.error is not None
    assert wait_gone(token) == []


def test_fork_bomb_is_limited_and_cleaned_up(problem, pools):
    if not isolated(pools):
        pytest.skip("no PID namespace here")
    token = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6) + 1}"
    code = (
        "import os\nfor _ in range(500):\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n"
        f"        os.execv('/bin/sleep', ['/bin/sleep', '{token}'])\n"
    )
    g, _ = run(code, problem, pools["strong"])
    assert not g.passed
    assert wait_gone(token) == []


def test_write_outside_temp_dir_fails(problem, pools):
    if not isolated(pools):
        pytest.skip("no mount namespace here: the filesystem is as writable as the user's")
    target = os.path.join(tempfile.gettempdir(), f"vgrout-escape-{secrets.token_hex(4)}")
    home = os.path.join(
        os.path.dirname(os.path.dirname(pool_module.__file__)), f"escape-{secrets.token_hex(4)}"
    )
    g, _ = run(
        f"for p in ({target!r}, {home!r}):\n    try:\n        open(p, 'w').write('x')\n"
        "    except OSError:\n        pass",
        problem,
        pools["strong"],
    )
    assert g.error is not None
    assert not os.path.exists(target) and not os.path.exists(home)


def test_network_connect_fails(problem, pools):
    if not isolated(pools):
        pytest.skip("no network namespace here")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    code = (
        f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\n"
        "s.sendall(b'leak')"
    )
    g, _ = run(code, problem, pools["strong"])
    assert g.error == "exec_error: OSError" or g.error.startswith("exec_error")
    with pytest.raises(socket.timeout):
        srv.accept()
    srv.close()


def test_killing_the_parent_does_not_break_grading(problem, pools):
    for level in ("strong", "none"):
        g, _ = run(
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", problem, pools[level]
        )
        assert not g.passed
        ok, _ = run(problem.canonical_solution, problem, pools[level])
        assert ok.gt_correct


def test_start_up_says_which_guarantees_hold(pools):
    assert pools["none"].groups["oracle"] or pools["none"].level == "none"
    hello = pools["none"].groups["oracle"][0].hello
    assert hello["level"] == "none" and "wall timeout" in hello["guarantees"]
    pool_module._announced = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extra = Pool(1, sandbox="none")
        assert extra.level == "none"
        extra.close()
    assert any("without OS isolation" in str(w.message) for w in caught)


ORPHAN_PARENT = r"""
import os, sys, time
from vgrout.env.pool import Pool
pool = Pool(1, sandbox="none")
pool.level                      # starts the worker
pid = pool.groups["oracle"][0].proc.pid
if os.fork() == 0:      # a forked helper inherits the job pipe's write end
    time.sleep(30)
    os._exit(0)
print(pid, flush=True)
time.sleep(30)
"""


def test_worker_exits_when_its_parent_is_killed():
    """A helper forked after the pool started keeps the job pipe open; the
    worker must still notice that its parent died instead of idling forever."""
    import signal
    import subprocess
    import sys

    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        worker = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(worker):
            time.sleep(0.2)
        assert not _running(worker), "grader worker outlived its killed parent"
    finally:
        os.killpg(parent.pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_models_syntax_warnings_stay_out_of_the_console(problem, pools):
    """Code such as `1(2)` compiles with a SyntaxWarning; grading it must not print
    one (a training run grades thousands of odd completions)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g, _ = run("x = 1(2)", problem, pools["none"])
    assert g.format_ok  # it compiles: the warning is the model's, not an error
    assert not [w for w in caught if issubclass(w.category, SyntaxWarning)]
