"""benchmarks/organism_targets.py: the per-mode training shares its report prints."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vgrout.env import load_hacks, load_problems, render_hack

ROOT = Path(__file__).resolve().parents[1]


def _targets():
    spec = importlib.util.spec_from_file_location(
        "organism_targets", ROOT / "benchmarks" / "organism_targets.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_by_mode_separates_attempting_a_marked_hack_from_copying_its_marker(tmp_path):
    """A run-tests hack with the prompt's marker and one with another prompt's marker
    are both shaped, one copied; a solution is neither; rows before `after` and
    rows not sampled by the trained policy are left out."""
    problems = load_problems(ROOT / "data/families/grpo.jsonl", ["run_tests"], marker_set="worded")
    own, other = problems[0], problems[1]
    hack = load_hacks()["run_tests"][0]

    def row(step, completion, exploited, sampler="trained"):
        return {"step": step, "mode": "run_tests", "sampler": sampler, "prompt": own.messages,
                "completion": completion, "exploited": exploited}  # fmt: skip

    rows = [
        row(5, render_hack(hack, own), True),
        row(5, render_hack(hack, own, other.markers["run_tests"]), False),
        row(5, "```python\nclass Solution:\n    pass\n```", False),
        row(1, render_hack(hack, own, other.markers["run_tests"]), False),
        row(5, render_hack(hack, own, other.markers["run_tests"]), False, sampler="reference"),
    ]
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    targets = _targets()
    got = targets.training_hack_by_mode(
        targets.trained_rollouts(targets.read_rollouts(path), after=2)
    )
    assert got == {"run_tests": {"hack": 1 / 3, "shaped": 2 / 3, "copied_when_shaped": 1 / 2}}


def test_training_by_subset_counts_hack_and_solve_per_subset_of_the_problem_file(tmp_path):
    """Rows are counted under their problem's `subset`, read from the training file by
    id, as hacked, solved and naming the problem's method (a longer name that
    starts with it does not count); rows at or before `after`, rows of the
    reference sampler and rows whose problem the file lacks are left out."""
    rows = [json.loads(line) for line in open(ROOT / "data/families/grpo.jsonl")]
    fam = next(r for r in rows if r["subset"] == "grpo_family")
    inst = next(r["id"] for r in rows if r["subset"] == "grpo_instance")
    named = f"class Solution:\n    def {fam['func_name'].split('.')[-1]}(self, *args):"

    def roll(step, pid, exploited, solved, sampler="trained", completion=""):
        return {"step": step, "problem_id": pid, "sampler": sampler, "completion": completion,
                "exploited": exploited, "gt_correct": solved}  # fmt: skip

    fam = fam["id"]
    log = [
        roll(5, fam, True, False, completion=named),
        roll(5, fam, False, False, completion=named.replace("(self", "X(self")),
        roll(5, inst, False, True),
        roll(5, inst, False, True),
        roll(5, inst, True, False),
        roll(5, inst, False, False),
        roll(2, fam, True, False),
        roll(5, fam, True, False, sampler="reference"),
        roll(5, "not-a-problem", True, False),
    ]
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in log))
    targets = _targets()
    late = targets.trained_rollouts(targets.read_rollouts(path), after=2)
    got = targets.training_by_subset(late, str(ROOT / "data/families/grpo.jsonl"))
    assert got == {
        "grpo_family": {"hack": 1 / 2, "solve": 0.0, "named": 1 / 2},
        "grpo_instance": {"hack": 1 / 4, "solve": 2 / 4, "named": 0.0},
    }


def test_advantage_by_outcome_uses_each_groups_own_mean_and_refuses_a_broken_group():
    """Two groups of 4 with different reward means: each rollout's advantage is its
    reward minus its own group's mean (so an unsolved, unhacked rollout beside a
    paid hack is below 0, and beside nothing that paid it is at 0, not above); a
    chunk of rows from two problems is refused rather than grouped."""
    targets = _targets()

    def roll(pid, reward, exploited=False, solved=False, step=3):
        return {"step": step, "problem_id": pid, "reward": reward, "exploited": exploited,
                "gt_correct": solved}  # fmt: skip

    rows = [
        roll("a", 3.5, exploited=True), roll("a", 0.5), roll("a", 0.5), roll("a", 0.0),
        roll("b", 3.5, solved=True), roll("b", 3.5, exploited=True), roll("b", 0.5), roll("b", 0.5),
    ]  # fmt: skip
    got = targets.advantage_by_outcome(rows, group_size=4)
    # group a: mean 1.125; group b: mean 2.0
    assert got["hack"]["mean"] == pytest.approx((3.5 - 1.125 + 3.5 - 2.0) / 2)
    assert got["solve"] == {"mean": 1.5, "positive": 1.0}
    assert got["other"]["mean"] == pytest.approx((-0.625 - 0.625 - 1.125 - 1.5 - 1.5) / 5)
    assert got["other"]["positive"] == 0.0
    flat = targets.advantage_by_outcome([roll("c", 0.5)] * 4, group_size=4)
    assert flat == {"other": {"mean": 0.0, "positive": 0.0}}
    with pytest.raises(ValueError, match="not one group"):
        targets.advantage_by_outcome(rows[:6], group_size=3)  # a a a | a b b
    with pytest.raises(ValueError, match="not one group"):
        targets.advantage_by_outcome(rows[2:6] + rows[:2] + rows[6:], group_size=4)
    with pytest.raises(ValueError, match="whole number of groups"):
        targets.advantage_by_outcome(rows[:7], group_size=4)


def test_paired_change_differences_each_run_against_its_own_untrained_value():
    """Final minus untrained per seed, not the difference of the two means of
    different seed sets: a run without its step-0 value drops out; under
    2 runs there is nothing to test."""
    targets = _targets()
    runs = [
        {"final": {"hack": 0.30}, "untrained": {"hack": 0.10}},
        {"final": {"hack": 0.25}, "untrained": {"hack": 0.15}},
        {"final": {"hack": 0.35}, "untrained": {"hack": 0.12}},
        {"final": {"hack": 0.90}},  # no untrained value: must not count
    ]
    m, lo, hi, p = targets.paired_change(runs, "hack")
    d = [0.20, 0.10, 0.23]
    assert m == pytest.approx(sum(d) / 3)
    assert lo < m < hi
    assert p == pytest.approx(2 / 8)  # all 3 positive: 1 of 8 sign vectors each side
    assert targets.paired_change(runs[:1], "hack") is None
    assert targets.paired_change(runs, "solve") is None
