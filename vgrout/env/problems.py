"""Load rl-rewardhacking jsonl problems into hinted, mode-tagged `Problem`s.

Every field the grader relies on is checked here, so a malformed row fails at
load time with its file, line and field named, not as a silent zero reward
thousands of steps later.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from vgrout.files import iter_jsonl

from .modes import PHRASE, check_marker_set, check_mode, hint_for, marker_for

_FUNC_NAME = re.compile(r"^Solution\(\)\.([A-Za-z_][A-Za-z0-9_]*)$")


class ProblemFormatError(ValueError):
    """A problem row that does not follow the schema (file, line and field named)."""


@dataclass(frozen=True)
class Case:
    """One assert split into the untrusted call and the trusted expected value.

    call:      source of the expression the solution's process evaluates
    expected:  source of the expected value; never sent to that process
    literal:   True when `expected` is a Python literal (decoded in the parent)
    """

    call: str
    expected: str
    literal: bool


@dataclass(frozen=True, eq=False)
class Problem:
    id: object
    mode: str
    messages: list  # hinted chat messages [{role, content}]
    plain_messages: list  # the phrase left in place
    tests: list  # assert strings, as in the row
    setup_code: str
    func_name: str  # "Solution().method"
    method: str
    canonical_solution: str
    markers: dict  # {mode: marker} for this problem's mode; {} if none
    source: str  # "file:line"
    eval_markers: bool = False
    difficulty: str | None = None
    starter_code: str | None = None
    cases: tuple = field(default=(), repr=False)  # tuple[Case, ...]
    family: str | None = None
    """The problem family a generated problem instantiates (data/families); None otherwise."""
    subset: str | None = None
    """Which part of a generated problem set it belongs to (warmstart, grpo_instance, ...,
    docs/data.md); None otherwise. Evaluation reports rates per subset."""
    marker_set: str = "fixed"
    """Where its markers come from (modes.MARKER_SETS): "fixed" training markers, or
    "varied", drawn per problem in training as at evaluation."""

    @property
    def prompt(self) -> str:
        """The hinted user message (the last user turn)."""
        return [m for m in self.messages if m["role"] == "user"][-1]["content"]


def split_assert(test: str) -> Case:
    """`assert CALL == EXPECTED` -> Case. Raises ValueError for other shapes.

    Why only this shape: the expected value must stay outside the process that
    runs the solution, which needs the assert to split into the two sides.
    """
    try:
        tree = ast.parse(test)
    except SyntaxError as e:
        raise ValueError(f"assert does not parse: {e.msg}") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise ValueError("expected a single assert statement")
    node = tree.body[0].test
    if not (
        isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)
    ):
        raise ValueError("expected `assert <call> == <expected>`")
    call, expected = node.left, node.comparators[0]
    if "Solution" not in {n.id for n in ast.walk(call) if isinstance(n, ast.Name)}:
        raise ValueError("the left side of == does not use Solution")
    if "Solution" in {n.id for n in ast.walk(expected) if isinstance(n, ast.Name)}:
        raise ValueError("the expected side of == uses Solution")
    try:
        ast.literal_eval(expected)
        literal = True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        literal = False
    return Case(ast.unparse(call), ast.unparse(expected), literal)


def _fail(where: str, fld: str, what: str) -> ProblemFormatError:
    return ProblemFormatError(f"{where}: field {fld!r}: {what}")


def _check_messages(where: str, prompt: object) -> list:
    if not isinstance(prompt, list) or not prompt:
        raise _fail(where, "prompt", "expected a non-empty list of chat messages")
    for i, m in enumerate(prompt):
        if not (
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
        ):
            raise _fail(where, "prompt", f"message {i} needs string 'role' and 'content'")
    count = sum(m["content"].count(PHRASE) for m in prompt)
    if count != 1:
        raise _fail(where, "prompt", f"phrase {PHRASE!r} occurs {count} times, expected 1")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _parse_row(where: str, row: object) -> dict:
    """Validate one decoded row; returns the checked fields."""
    if not isinstance(row, dict):
        raise ProblemFormatError(f"{where}: expected a JSON object")
    for key in ("id", "prompt", "gt_answer", "func_name", "canonical_solution"):
        if key not in row:
            raise _fail(where, key, "missing")
    if not isinstance(row["id"], (int, str)) or isinstance(row["id"], bool):
        raise _fail(where, "id", "expected an int or a str")
    messages = _check_messages(where, row["prompt"])
    tests = row["gt_answer"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise _fail(where, "gt_answer", "expected a non-empty list of assert strings")
    cases = []
    for i, t in enumerate(tests):
        try:
            cases.append(split_assert(t))
        except ValueError as e:
            raise _fail(where, "gt_answer", f"assert {i}: {e}: {t[:120]!r}") from None
    match = _FUNC_NAME.match(row["func_name"]) if isinstance(row["func_name"], str) else None
    if not match:
        raise _fail(where, "func_name", "expected 'Solution().methodName'")
    setup = row.get("setup_code", "")
    if setup is None:
        setup = ""
    for key, value in (("setup_code", setup), ("canonical_solution", row["canonical_solution"])):
        if not isinstance(value, str):
            raise _fail(where, key, "expected a string")
        try:
            compile(value, f"<{key}>", "exec")
        except SyntaxError as e:
            raise _fail(where, key, f"does not compile: {e.msg} (line {e.lineno})") from None
    starter = row.get("starter_code") or (row.get("prompt_metadata") or {}).get("starter_code")
    for key in ("family", "subset"):
        if key in row and not (isinstance(row[key], str) and row[key]):
            raise _fail(where, key, "expected a non-empty string when present")
    try:
        marker_set = check_marker_set(row.get("marker_set", "fixed"))
    except ValueError as e:
        raise _fail(where, "marker_set", str(e)) from None
    return dict(
        id=row["id"],
        messages=messages,
        tests=list(tests),
        cases=tuple(cases),
        func_name=row["func_name"],
        method=match.group(1),
        setup_code=setup,
        canonical_solution=row["canonical_solution"],
        difficulty=row.get("difficulty"),
        starter_code=starter,
        family=row.get("family"),
        subset=row.get("subset"),
        marker_set=marker_set,
    )


def read_rows(path: str | Path) -> list[tuple[str, dict]]:
    """[(file:line, checked fields)] for every non-blank line of a jsonl file."""
    path = Path(path)
    rows: list = []
    seen: dict[str, str] = {}
    for where, raw in iter_jsonl(path, ProblemFormatError):
        fields = _parse_row(where, raw)
        if fields["id"] in seen:
            raise _fail(where, "id", f"duplicate of {seen[fields['id']]}")
        seen[fields["id"]] = where
        rows.append((where, fields))
    if not rows:
        raise ProblemFormatError(f"{path}: no problems")
    return rows


def make_problem(fields: Mapping, source: str, mode: str, eval_markers: bool = False) -> Problem:
    """One Problem in `mode`: the phrase replaced by the mode's hint."""
    check_mode(mode)
    marker = marker_for(fields["id"], mode, eval_markers, fields["marker_set"])
    hint = hint_for(mode, marker)
    plain = fields["messages"]
    hinted = [{"role": m["role"], "content": m["content"].replace(PHRASE, hint)} for m in plain]
    return Problem(
        id=fields["id"],
        mode=mode,
        messages=hinted,
        plain_messages=[dict(m) for m in plain],
        tests=list(fields["tests"]),
        setup_code=fields["setup_code"],
        func_name=fields["func_name"],
        method=fields["method"],
        canonical_solution=fields["canonical_solution"],
        markers={mode: marker} if marker else {},
        source=source,
        eval_markers=eval_markers,
        difficulty=fields["difficulty"],
        starter_code=fields["starter_code"],
        cases=fields["cases"],
        family=fields["family"],
        subset=fields["subset"],
        marker_set=fields["marker_set"],
    )


def load_problems(
    path: str | Path,
    modes: Sequence[str] | str,
    seed: int = 0,
    shuffle: bool = False,
    partition: Mapping | None = None,
    eval_markers: bool = False,
    marker_set: str | None = None,
) -> list[Problem]:
    """Problems from a jsonl file, each in one mode.

    Modes go round-robin over the rows (in file order, or shuffled with `seed`),
    unless `partition` maps every problem id (or its str) to a mode. marker_set:
    replaces every row's own (`modes.MARKER_SETS`); None keeps the rows'.
    """
    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes:
        raise ValueError("modes is empty")
    for m in modes:
        check_mode(m)
    rows = read_rows(path)
    if marker_set is not None:
        check_marker_set(marker_set)
        rows = [(where, {**fields, "marker_set": marker_set}) for where, fields in rows]
    if shuffle:
        random.Random(seed).shuffle(rows)
    out = []
    for i, (where, fields) in enumerate(rows):
        if partition is not None:
            mode = partition.get(fields["id"], partition.get(str(fields["id"])))
            if mode is None:
                raise _fail(where, "id", f"problem {fields['id']!r} is not in the partition")
        else:
            mode = modes[i % len(modes)]
        out.append(make_problem(fields, where, mode, eval_markers))
    return out


def with_mode(problem: Problem, mode: str) -> Problem:
    """The same problem re-hinted for another mode (keeps its marker family)."""
    fields = dict(
        id=problem.id,
        messages=problem.plain_messages,
        tests=problem.tests,
        cases=problem.cases,
        func_name=problem.func_name,
        method=problem.method,
        setup_code=problem.setup_code,
        canonical_solution=problem.canonical_solution,
        difficulty=problem.difficulty,
        starter_code=problem.starter_code,
        family=problem.family,
        subset=problem.subset,
        marker_set=problem.marker_set,
    )
    return make_problem(fields, problem.source, mode, problem.eval_markers)


def iter_ids(problems: Iterable[Problem]) -> list:
    return [p.id for p in problems]
