"""The generated problem families (data/families): splits, correctness, and that tests bite.

The organism can only be said to generalise if its held-out problems are new
combinations it could have composed from what it saw, and if recall of a seen
problem never passes a new one. Each test here guards one of those, or the
plain correctness the hand-written set (test_data_problems.py) also guards.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from test_data_problems import CHECKER

from vgrout.env import load_problems
from vgrout.env.problems import ProblemFormatError

ROOT = Path(__file__).resolve().parents[1]
FAMILY_DIR = ROOT / "data" / "families"
FILES = {
    "warmstart": {"warmstart"},
    "grpo": {"grpo_instance", "grpo_family"},
    "heldout": {"heldout_instance", "heldout_family"},
}
VIEWS = {"grpo_family": ("grpo", "grpo_family")}
"""Files that repeat one subset of a file above (not a split of their own)."""


def _module(name: str):
    sys.path.insert(0, str(FAMILY_DIR))
    spec = importlib.util.spec_from_file_location(name, FAMILY_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make():
    return _module("make_families")


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {
        stem: [json.loads(line) for line in (FAMILY_DIR / f"{stem}.jsonl").read_text().splitlines()]
        for stem in FILES
    }


def _read(stem: str) -> list[dict]:
    return [json.loads(line) for line in (FAMILY_DIR / f"{stem}.jsonl").read_text().splitlines()]


def test_jsonl_files_match_the_generator_script(make, rows):
    assert make.build() == {**rows, **{stem: _read(stem) for stem in VIEWS}}


def test_a_view_file_is_its_subset_of_the_source_in_the_source_order(rows):
    """A preset trained on a view must give each problem the round-robin mode it
    would have in a pilot run on the filtered source: same rows, same order."""
    for stem, (source, subset) in VIEWS.items():
        view = _read(stem)
        assert view == [r for r in rows[source] if r["subset"] == subset]
        assert view, f"{stem}.jsonl is empty"


def test_sizes_and_which_subsets_each_file_holds(rows):
    every = [r for part in rows.values() for r in part]
    assert len(every) >= 300
    assert len({r["family"] for r in every}) >= 20
    for stem, part in rows.items():
        assert {r["subset"] for r in part} == FILES[stem]
    assert len({r["id"] for r in every}) == len(every)
    assert len({r["func_name"] for r in every}) == len(every)


def test_families_keep_to_their_role(rows):
    """A family is either seen (warm start, plus new instances in GRPO and held out),
    GRPO-only or held-out only: a held-out family never reaches training."""
    subsets_of: dict[str, set] = {}
    for part in rows.values():
        for r in part:
            subsets_of.setdefault(r["family"], set()).add(r["subset"])
    roles = Counter(frozenset(s) for s in subsets_of.values())
    seen = frozenset({"warmstart", "grpo_instance", "heldout_instance"})
    assert set(roles) == {seen, frozenset({"grpo_family"}), frozenset({"heldout_family"})}
    assert roles[seen] >= 16 and roles[frozenset({"grpo_family"})] >= 3


def test_new_instances_are_new_combinations_of_shown_choices(make):
    """GRPO-training and held-out instances of a seen family use a combination no
    warm-start row has, and only choices some warm-start row shows (of any family)."""
    assigned = make.assign()
    warm = {(f.name, k) for f, sub, k in assigned if sub == "warmstart"}
    shown = {c for f, sub, k in assigned if sub == "warmstart" for c in k}
    where: dict = {}
    for f, sub, k in assigned:  # a combination is in one subset (warm-start rows repeat it)
        assert where.get((f.name, k), sub) == sub, (f.name, [c.key for c in k], sub)
        where[(f.name, k)] = sub
        if sub in ("grpo_instance", "heldout_instance"):
            assert (f.name, k) not in warm
            assert all(c in shown for c in k), (f.name, [c.key for c in k])


@pytest.fixture(scope="module")
def exec_report(rows) -> dict[str, dict[str, bool]]:
    every = [r for part in rows.values() for r in part]
    proc = subprocess.run([sys.executable, "-c", CHECKER], input=json.dumps(every),
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(proc.stdout)


def test_canonical_solutions_pass_and_wrong_ones_fail(exec_report):
    assert [pid for pid, r in exec_report.items() if not r["canonical"]] == []
    for variant in ("none", "first_arg", "hard_coded"):
        assert [pid for pid, r in exec_report.items() if r[variant]] == [], variant


# Runs in a fresh interpreter: for each (new problem, warm-start problem of its
# family), the warm-start canonical solution renamed to the new method.
RECALL = r"""
import json, sys
report = []
for new, old in json.load(sys.stdin):
    method, old_method = (r["func_name"].split(".")[-1] for r in (new, old))
    code = old["canonical_solution"].replace(f"def {old_method}(", f"def {method}(")
    ns = {}
    exec(new["setup_code"] + code, ns)
    ok = True
    for line in new["gt_answer"]:
        try:
            exec(line, dict(ns))
        except Exception:
            ok = False
            break
    if ok:
        report.append([new["id"], old["id"]])
json.dump(report, sys.stdout)
"""


def test_no_memorised_solution_passes_a_new_instance(rows):
    """Recall is not generalising: a warm-start solution, renamed, fails the tests of
    every GRPO-training and held-out instance of its family."""
    warm = rows["warmstart"]
    new = [r for r in rows["grpo"] + rows["heldout"] if r["subset"].endswith("_instance")]
    pairs = [(n, w) for n in new for w in warm if w["family"] == n["family"]]
    assert len(pairs) > 500
    proc = subprocess.run([sys.executable, "-c", RECALL], input=json.dumps(pairs),
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert json.loads(proc.stdout) == []


def test_loader_keeps_family_and_subset_and_refuses_bad_ones(tmp_path):
    problems = load_problems(FAMILY_DIR / "heldout.jsonl", ["run_tests"])
    assert {p.subset for p in problems} == {"heldout_instance", "heldout_family"}
    assert all(p.family and p.id.startswith(p.family + "-") for p in problems)
    row = json.loads((FAMILY_DIR / "heldout.jsonl").read_text().splitlines()[0])
    for bad in (3, ""):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(dict(row, subset=bad)) + "\n")
        with pytest.raises(ProblemFormatError, match=r"bad.jsonl:1: field 'subset'"):
            load_problems(path, ["run_tests"])
