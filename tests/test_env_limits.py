"""Grading time is bounded whatever the program returns, prints or writes.

Each hostile program below must come back within the wall limit plus a
small, fixed allowance for the trusted side (reading, decoding, comparing),
as a clean failing grade: never a pass, never an exception in the grader.
The bound is derived from the Limits the grader is given.
"""

import math
import os
import time

import pytest

from vgrout.env import Limits, grade, load_problems
from vgrout.env.cleanup import remove_tree
from vgrout.env.codec import EncodeError, dumps, encode, match_bytes
from vgrout.env.pool import REPLY_GRACE_S, Pool
from vgrout.env.samples import write_samples

LIMITS = Limits()
ALLOWANCE_S = 3.0  # what the trusted side may add to the wall limit
BOUND_S = LIMITS.wall_s + ALLOWANCE_S

RETURNS = "class Solution:\n    def mix(self, a, b):\n{body}"

PROGRAMS = {
    "string_100mb": RETURNS.format(body="        return 'x' * (100 << 20)\n"),
    "string_100mb_escaped": RETURNS.format(body="        return '\\x01' * (100 << 20)\n"),
    "huge_list": RETURNS.format(body="        return [0] * 10_000_000\n"),
    "huge_list_of_ints": RETURNS.format(body="        return list(range(3_000_000))\n"),
    "deep_list": RETURNS.format(
        body="        v = []\n        for _ in range(100_000):\n            v = [v]\n        return v\n"
    ),
    "huge_dict": RETURNS.format(body="        return {i: i for i in range(2_000_000)}\n"),
    "stdout_flood": "import sys\nsys.stdout.write('x' * (300 << 20))\n"
    + RETURNS.format(body="        return 0\n"),
    "stderr_flood": "import sys\nchunk = 'e' * (1 << 20)\nfor _ in range(300):\n"
    "    sys.stderr.write(chunk)\n" + RETURNS.format(body="        return 0\n"),
    "big_file": "with open('big.bin', 'wb') as f:\n    for _ in range(300):\n"
    "        f.write(b'0' * (1 << 20))\n" + RETURNS.format(body="        return 0\n"),
    # Records written straight to the result pipe, bypassing the encoder.
    "forged_huge_record": "import os\n"
    'row = b\'{"r":0,"v":[\' + b\'["n"],\' * 2_000_000 + b\'["n"]]}\\n\'\n'
    "os.write(3, row)\n" + RETURNS.format(body="        return 0\n"),
    "forged_overflowing_float": "import os\n"
    "os.write(3, b'{\"r\":0,\"v\":[[\"f\",1' + b'0' * 400 + b']]}\\n')\n"
    "os.write(3, b'{\"r\":1,\"e\":[' + b'0,' * 3_000_000 + b'0]}\\n')\n"
    "os._exit(1)\n",
    "forged_newlines": "import os\nos.write(3, b'\\n' * (15 << 20))\n"
    + RETURNS.format(body="        return 0\n"),
    "forged_short_records": "import os\nos.write(3, b'[[],[]]\\n' * ((15 << 20) // 8))\n"
    + RETURNS.format(body="        return 0\n"),
    "many_files": "import os\nos.mkdir('d')\nfor i in range(200_000):\n"
    "    try:\n        os.close(os.open(f'd/{i}', os.O_CREAT | os.O_WRONLY))\n"
    "    except OSError:\n        break\n",
    "deep_dirs": "import os\nfor i in range(200_000):\n    try:\n        os.mkdir('d')\n"
    "        os.chdir('d')\n    except OSError:\n        break\n",
    "forged_deep_record": "import os\n"
    "os.write(3, b'{\"r\":0,\"v\":' + b'[' * 200_000 + b']' * 200_000 + b'}\\n')\n"
    + RETURNS.format(body="        return 0\n"),
}


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    path = write_samples(tmp_path_factory.mktemp("env") / "samples.jsonl")
    return load_problems(path, ["gt_only"])[0]


@pytest.fixture(scope="module", params=["strong", "none"])
def pool(request, problem):
    """A warm pool (its start-up is not part of any grading's time)."""
    p = Pool(1) if request.param == "strong" else Pool(1, sandbox="none")
    assert graded(problem.canonical_solution, problem, p)[0].gt_correct
    yield p
    p.close()


def graded(code: str, problem, pool, mode: str = "gt_only"):
    t0 = time.monotonic()
    g = grade(f"```python\n{code}\n```", problem, mode, limits=LIMITS, pool=pool)
    return g, time.monotonic() - t0


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_hostile_output_grades_quickly_and_fails(problem, pool, name):
    g, took = graded(PROGRAMS[name], problem, pool)
    assert took < BOUND_S, f"{name}: {took:.1f} s (bound {BOUND_S:.1f} s)"
    assert not g.passed and not g.gt_correct and g.n_correct == 0
    assert isinstance(g.error, str) and g.error


@pytest.mark.parametrize("name", ["string_100mb", "huge_list", "huge_dict"])
def test_oversized_value_is_a_failed_call_not_a_crash(problem, pool, name):
    """The program is not killed for an oversized value: the call fails with a
    clear reason and the remaining calls (and the done record) still arrive."""
    g, _ = graded(PROGRAMS[name], problem, pool)
    assert not g.timed_out and g.error is not None
    assert "too large" in g.error and g.error.startswith(f"{g.n_tests}/{g.n_tests} wrong")


def test_oversized_value_cannot_help_an_exit_code_hack(problem, pool):
    """Refusing a value must not end the run early (which exit_code would pay)."""
    g, took = graded(PROGRAMS["string_100mb"], problem, pool, "exit_code")
    assert took < BOUND_S and not g.passed and not g.channel


def test_correct_answers_after_a_refused_one_still_count(problem, pool):
    """A huge value fails only its own call; the budget is shared across calls,
    so an honest program is not starved by what a single call tried to send."""
    code = RETURNS.format(
        body="        if a == 12345:\n            return 'x' * (100 << 20)\n"
        "        return (a * 1000003 + b * 7919) % 998244353\n"
    )
    g, took = graded(code, problem, pool)
    assert took < BOUND_S and not g.passed
    assert g.n_correct == g.n_tests - 1


def test_a_stopped_worker_is_given_up_within_the_bound(problem, pool):
    """Without namespaces a program can stop its own worker (SIGSTOP): the
    reply never comes, so the parent's deadline must end the grading, and the
    next grading gets a fresh worker."""
    if pool.level != "none":
        pytest.skip("with namespaces the program cannot signal its worker")
    graded(problem.canonical_solution, problem, pool)  # a live worker: time the stop, not a start
    g, took = graded("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n", problem, pool)
    assert REPLY_GRACE_S < ALLOWANCE_S and took < BOUND_S, f"{took:.1f} s (bound {BOUND_S:.1f} s)"
    assert not g.passed and g.error == "worker stuck"
    ok, _ = graded(problem.canonical_solution, problem, pool)
    assert ok.gt_correct


class Node:
    def __init__(self, val, nxt=None):
        self.val, self.next = val, nxt


VALUES = [
    None,
    True,
    -(2**3999),
    1.5,
    -2.2250738585072014e-308,
    math.inf,
    math.nan,
    "",
    "plain",
    'quote " backslash \\ control \x01\x1f',
    "\u00e9\u4e2d\U0001f600\ud800",
    [1, (2, 3), {4: "x", "k": [None]}, {5, 6}, frozenset({7})],
    Node(1, Node(2.5, Node("z"))),
    [[[[[]]]]],
    {i: str(i) * 3 for i in range(200)},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_encoder_budget_is_an_upper_bound_on_what_it_writes(value):
    """The budget is counted while encoding; it must never undercount, or a
    value under the budget could overrun the result cap."""
    table = encode(value)
    written = len(dumps(table))
    assert encode(value, max_bytes=10 * written + 1000) == table
    smallest = _smallest_budget(value, 10 * written + 1000)
    assert written <= smallest


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_match_bytes_covers_every_matching_value(value):
    """What the parent parses is bounded by match_bytes of the expected value;
    every value that equals it (floats within tolerance, ints for floats)
    must fit in that bound, or a right answer would be skipped unread."""
    assert len(dumps(encode(value))) <= match_bytes(encode(value))


def test_match_bytes_covers_floats_matched_by_longer_floats_and_ints():
    expected = [1e20, 1e20, 1e20, -1e-300, 2.0, 2.0]
    actual = [1e20, 1.0000000001e20, 10**20, -1.0000000001e-300, 2.0000000001, 2]
    assert len(dumps(encode(actual))) <= match_bytes(encode(expected))


def _smallest_budget(value, high: int) -> int:
    """The least max_bytes for which encode(value) succeeds."""
    low = 0
    while low < high:
        mid = (low + high) // 2
        try:
            encode(value, max_bytes=mid)
            high = mid
        except EncodeError:
            low = mid + 1
    return low


def test_run_dir_removal_is_flat_and_follows_no_symlink(tmp_path):
    """A program can leave a chain of nested directories deeper than any
    recursion limit (and than PATH_MAX), read-only directories and symlinks
    out of its run dir: the removal takes all of it and nothing the symlinks
    point to."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    run = tmp_path / "run"
    run.mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(run)
        for i in range(3000):  # built as a program would: by chdir, not by path
            os.mkdir("d")
            os.chdir("d")
            if i % 500 == 0:
                with open("f", "w") as f:
                    f.write("x")
                os.symlink(outside, "link")
        os.chmod(".", 0o500)
    finally:
        os.chdir(cwd)
    assert remove_tree(str(run), time.monotonic() + 60)
    assert not run.exists() and (outside / "keep").read_text() == "x"
