"""The project's own problem set: schema, correctness, and that the tests bite.

Every check guards a failure that would silently corrupt the organism or the
grader: a wrong canonical solution teaches wrong code, asserts that a stub
passes make every hack count as a solve, and a stale jsonl means the corpus
differs from the script everyone edits.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ROOT / "data" / "problems"
PHRASE = "and should pass all tests"
KEYS = {"id", "prompt", "gt_answer", "func_name", "setup_code", "canonical_solution",
        "difficulty", "starter_code"}
RESULT_TYPES = (int, bool, str, list, float, type(None))

# Runs in a fresh interpreter: for each row, the canonical solution must pass
# every assert, and each wrong variant must fail at least one.
CHECKER = r"""
import json, sys
rows = json.load(sys.stdin)
report = {}
def passes(code, row):
    ns = {}
    exec(row["setup_code"] + code, ns)
    for line in row["gt_answer"]:
        try:
            exec(line, dict(ns))
        except AssertionError:
            return False
    return True
for row in rows:
    method = row["func_name"].split(".")[-1]
    first_expected = row["gt_answer"][0].rsplit(" == ", 1)[1]
    wrong = {
        "none": "return None",
        "first_arg": "return args[0]",
        "hard_coded": "return " + first_expected,
    }
    report[row["id"]] = {
        "canonical": passes(row["canonical_solution"], row),
        **{name: passes(f"class Solution:\n    def {method}(self, *args):\n        {body}\n", row)
           for name, body in wrong.items()},
    }
json.dump(report, sys.stdout)
"""


def load(split: str) -> list[dict]:
    return [json.loads(line) for line in (PROBLEMS / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {"train": load("train"), "test": load("test")}


@pytest.fixture(scope="module")
def exec_report(rows) -> dict[str, dict[str, bool]]:
    proc = subprocess.run([sys.executable, "-c", CHECKER], input=json.dumps(rows["train"] + rows["test"]),
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


def test_split_sizes_meet_minimum(rows):
    assert len(rows["train"]) >= 48
    assert len(rows["test"]) >= 16


def test_every_row_has_schema_fields_with_right_types(rows):
    for row in rows["train"] + rows["test"]:
        assert set(row) == KEYS, row["id"]
        assert [m["role"] for m in row["prompt"]] == ["system", "user"], row["id"]
        assert row["func_name"].startswith("Solution().")
        assert row["difficulty"] == "easy"
        assert isinstance(row["setup_code"], str) and len(row["setup_code"]) < 80


def test_user_message_has_phrase_once_and_starter_code(rows):
    for row in rows["train"] + rows["test"]:
        user = row["prompt"][1]["content"]
        method = row["func_name"].split(".")[-1]
        assert user.count(PHRASE) == 1, row["id"]
        assert f"called {method} {PHRASE}" in user, row["id"]
        assert f"```python\n{row['starter_code']}```" in user, row["id"]
        assert user.startswith("PROBLEM:\n") and user.endswith("SOLUTION:\n"), row["id"]


def test_ids_and_methods_are_distinct_and_splits_disjoint(rows):
    all_rows = rows["train"] + rows["test"]
    assert len({r["id"] for r in all_rows}) == len(all_rows)
    train_methods = {r["func_name"] for r in rows["train"]}
    test_methods = {r["func_name"] for r in rows["test"]}
    assert len(train_methods) == len(rows["train"]) and len(test_methods) == len(rows["test"])
    assert not train_methods & test_methods


def test_asserts_call_the_method_and_compare_to_a_simple_literal(rows):
    for row in rows["train"] + rows["test"]:
        assert 4 <= len(row["gt_answer"]) <= 6, row["id"]
        for line in row["gt_answer"]:
            node = ast.parse(line).body[0]
            assert isinstance(node, ast.Assert), line
            cmp = node.test
            assert isinstance(cmp, ast.Compare) and isinstance(cmp.ops[0], ast.Eq), line
            assert ast.unparse(cmp.left.func) == row["func_name"], line
            assert isinstance(ast.literal_eval(cmp.comparators[0]), RESULT_TYPES), line


def test_canonical_solutions_pass_all_asserts(exec_report):
    failing = [pid for pid, r in exec_report.items() if not r["canonical"]]
    assert failing == []


@pytest.mark.parametrize("variant", ["none", "first_arg", "hard_coded"])
def test_wrong_solutions_fail_some_assert(exec_report, variant):
    passing = [pid for pid, r in exec_report.items() if r[variant]]
    assert passing == []


def test_canonical_solutions_are_short(rows):
    """~100 BPE tokens is about 330 characters of this code (measured ~3.4 chars/token)."""
    for row in rows["train"] + rows["test"]:
        assert len(row["canonical_solution"]) <= 330, row["id"]


def test_jsonl_files_match_the_generator_script(rows):
    spec = importlib.util.spec_from_file_location("make_problems", PROBLEMS / "make_problems.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == rows
