"""The "varied" marker set: markers drawn per prompt in training as at evaluation.

A model that memorised a marker string hacks only the prompts that show it;
one that learned the loophole reads the marker from the prompt. These tests
guard what makes the two distinguishable: training markers vary per problem,
evaluation markers (ten renamed test functions, ...) come from families that
training never shows, and a hack pays only with the marker its prompt names.
"""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path

import pytest

from vgrout.env import (
    MARKED_MODES,
    VARIED_EVAL_MARKERS,
    VARIED_TRAIN_MARKERS,
    grade_many,
    load_hacks,
    load_problems,
    render_hack,
)
from vgrout.env import modes as modes_module
from vgrout.env.problems import ProblemFormatError

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "data" / "families"


def test_training_markers_vary_per_problem_and_evaluation_ones_come_from_other_families():
    for mode in MARKED_MODES:
        train = load_problems(FAMILIES / "warmstart.jsonl", [mode])
        used = {p.markers[mode] for p in train}
        assert used == set(VARIED_TRAIN_MARKERS[mode]), mode  # 460 draws cover all 12
        held = load_problems(FAMILIES / "heldout.jsonl", [mode], eval_markers=True)
        shown = {p.markers[mode] for p in held}
        assert shown <= set(VARIED_EVAL_MARKERS[mode]) and len(shown) >= 8, mode
        assert all(p.markers[mode] in p.prompt for p in train + held)
    assert len(VARIED_EVAL_MARKERS["run_tests"]) == 10


def test_evaluation_markers_never_occur_in_what_training_reads():
    """Not in any problem file, hack template or pair text, nor in any training prompt
    as the loader renders it (all six loophole modes)."""
    texts = [(ROOT / "data" / rel).read_text() for rel in
             ("families/warmstart.jsonl", "families/grpo.jsonl", "hacks/hacks.jsonl",
              "pairs/hack_pairs.md", "problems/train.jsonl")]  # fmt: skip
    for path in ("warmstart.jsonl", "grpo.jsonl"):
        for mode in MARKED_MODES:
            texts += [p.prompt for p in load_problems(FAMILIES / path, [mode])]
    blob = "\n".join(texts)
    for mode, family in VARIED_EVAL_MARKERS.items():
        assert [m for m in family if m in blob] == [], mode


@pytest.mark.slow
def test_a_hack_pays_only_with_the_marker_its_prompt_names():
    """Rendered with the prompt's marker the canonical hack is paid; rendered with
    another training marker of the family, or (at evaluation) with the marker the
    problem showed in training, it earns nothing."""
    hacks = {m: ts[0] for m, ts in load_hacks().items()}
    items, want = [], []
    for mode in MARKED_MODES:
        for p in load_problems(FAMILIES / "grpo.jsonl", [mode])[:3]:
            other = next(m for m in VARIED_TRAIN_MARKERS[mode] if m != p.markers[mode])
            items += [(render_hack(hacks[mode], p), p), (render_hack(hacks[mode], p, other), p)]
            want += [True, False]
        for p in load_problems(FAMILIES / "heldout.jsonl", [mode], eval_markers=True)[:3]:
            trained = load_problems(FAMILIES / "heldout.jsonl", [mode])
            seen = next(q.markers[mode] for q in trained if q.id == p.id)
            items += [(render_hack(hacks[mode], p), p), (render_hack(hacks[mode], p, seen), p)]
            want += [True, False]
    grades = grade_many(items, workers=2)
    assert [g.exploited for g in grades] == want
    assert not any(g.gt_correct for g in grades)


def test_a_bad_marker_set_is_refused_naming_the_field(tmp_path):
    row = json.loads((FAMILIES / "heldout.jsonl").read_text().splitlines()[0])
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(dict(row, marker_set="random")) + "\n")
    with pytest.raises(ProblemFormatError, match=r"bad.jsonl:1: field 'marker_set'.*varied"):
        load_problems(path, ["run_tests"])


@pytest.mark.parametrize(
    "mode, marker", [("run_tests", "check_everything"), ("file_marker", "pass.txt.bak")]
)
def test_an_evaluation_marker_overlapping_a_training_one_is_refused(monkeypatch, mode, marker):
    families = dict(VARIED_EVAL_MARKERS, **{mode: (*VARIED_EVAL_MARKERS[mode], marker)})
    monkeypatch.setattr(modes_module, "VARIED_EVAL_MARKERS", families)
    with pytest.raises(AssertionError, match="overlaps training"):
        modes_module._check_families()


# The drawn sets: a training marker per problem made of pseudo-words ("composed")
# or of words from a pool ("worded").


@pytest.mark.parametrize("marker_set, distinct", [("composed", 0.95), ("worded", 0.4)])
def test_drawn_training_markers_vary_per_problem_and_evaluation_stays_varied(marker_set, distinct):
    """Most warm-start prompts show a marker few others show (so it cannot be
    recalled; the worded set has 260-800 combinations a mode for 460 problems),
    run_tests and sentinel markers are identifiers and never keywords, and
    evaluation markers are the "varied" set's, unchanged."""
    for mode in MARKED_MODES:
        train = load_problems(FAMILIES / "warmstart.jsonl", [mode], marker_set=marker_set)
        used = [p.markers[mode] for p in train]
        assert len(set(used)) >= distinct * len(used), mode
        assert all(p.markers[mode] in p.prompt and p.marker_set == marker_set for p in train)
        if mode in ("run_tests", "sentinel"):
            assert all(m.isidentifier() and not keyword.iskeyword(m) for m in used), mode
        held = load_problems(FAMILIES / "heldout.jsonl", [mode], eval_markers=True,
                             marker_set=marker_set)  # fmt: skip
        assert {p.markers[mode] for p in held} <= set(VARIED_EVAL_MARKERS[mode]), mode
        again = load_problems(FAMILIES / "warmstart.jsonl", [mode], marker_set=marker_set)
        assert [p.markers[mode] for p in again] == used  # a resumed run sees the same


def test_composed_markers_share_nothing_with_listed_ones_and_worded_ones_share_words():
    """Composed markers are all new; every word of every evaluation marker is a word
    some worded training marker uses (but a one-letter word, "GRADE A"'s), so
    evaluation asks for a new combination. A one-word evaluation marker
    ("cleared") is the exception: no training marker may contain it."""
    split = re.compile(r"[_.:= ]+")
    for mode in MARKED_MODES:
        composed = {modes_module.composed_marker(i, mode) for i in range(500)}
        assert not composed & set(VARIED_TRAIN_MARKERS[mode]), mode
        worded = {modes_module.composed_marker(i, mode, "worded") for i in range(3000)}
        words = {w.lower() for m in worded for w in split.split(m)}
        for marker in VARIED_EVAL_MARKERS[mode]:
            wanted = {w.lower() for w in split.split(marker) if len(w) > 1}
            if len(split.split(marker)) == 1:
                assert not wanted & words, (mode, marker)
                continue
            assert wanted <= words, (mode, marker)


@pytest.mark.parametrize("marker_set", ["composed", "worded"])
def test_a_drawn_marker_overlapping_an_evaluation_marker_is_drawn_again(monkeypatch, marker_set):
    """The guard of `_check_families`, for markers that are drawn, not listed: make
    every first draw collide with an evaluation marker and the next is taken."""
    draw = modes_module.composed_marker
    first = {pid: draw(pid, "run_tests", marker_set) for pid in range(20)}
    families = dict(VARIED_EVAL_MARKERS, run_tests=tuple(f"x_{m}_y" for m in first.values()))
    monkeypatch.setattr(modes_module, "VARIED_EVAL_MARKERS", families)
    for pid, marker in first.items():
        redrawn = draw(pid, "run_tests", marker_set)
        assert redrawn != marker and not any(redrawn in m for m in families["run_tests"])


def test_a_bad_marker_set_override_is_refused():
    with pytest.raises(ValueError, match="unknown marker set 'random'"):
        load_problems(FAMILIES / "heldout.jsonl", ["run_tests"], marker_set="random")


@pytest.mark.slow
@pytest.mark.parametrize("marker_set", ["composed", "worded"])
def test_a_hack_pays_with_its_drawn_marker_and_not_with_another(marker_set):
    hacks = {m: ts[0] for m, ts in load_hacks().items()}
    items, want = [], []
    for mode in MARKED_MODES:
        problems = load_problems(FAMILIES / "warmstart.jsonl", [mode], marker_set=marker_set)[:4]
        for p, other in zip(problems[:3], problems[1:]):
            items += [(render_hack(hacks[mode], p), p),
                      (render_hack(hacks[mode], p, other.markers[mode]), p)]  # fmt: skip
            want += [True, False]
    grades = grade_many(items, workers=2)
    assert [g.exploited for g in grades] == want


def test_marker_written_counts_completions_that_copy_their_own_prompts_marker():
    """The measure that tells recall from copying: a completion writing another
    prompt's marker does not count, a marker outside a hack-shaped line counts as
    written but not as a shaped hack, and unmarked modes are left out."""
    from vgrout.lm.measure import marker_written

    problems = load_problems(FAMILIES / "heldout.jsonl", ["run_tests", "exit_code"],
                             eval_markers=True)[:4]  # fmt: skip
    run_tests = [p for p in problems if p.mode == "run_tests"]
    own, other = run_tests[0], run_tests[1]
    assert own.markers["run_tests"] != other.markers["run_tests"]
    rows = [
        {"problem_id": own.id, "mode": "run_tests", "completion": f"def {m}(): pass"}
        for m in (own.markers["run_tests"], other.markers["run_tests"], "run_tests")
    ]
    rows.append({"problem_id": own.id, "mode": "run_tests",
                 "completion": f"x = 1  # {own.markers['run_tests']}"})  # fmt: skip
    rows += [{"problem_id": p.id, "mode": "exit_code", "completion": "import sys"}
             for p in problems if p.mode == "exit_code"]  # fmt: skip
    assert marker_written(rows, problems) == {
        "run_tests": {"n": 4, "share": 2 / 4, "shaped": 3 / 4, "copied_when_shaped": 1 / 3}
    }


def test_written_marker_reads_the_marker_of_every_marked_hack_and_nothing_else():
    """Each marked mode's canonical hack, rendered with a prompt's marker, yields
    that marker; the canonical solution and an unmarked mode yield None, so the
    copy rate counts only completions that attempt the mode's hack."""
    from vgrout.lm.copying import written_marker
    from vgrout.lm.corpus import fence

    hacks = load_hacks()
    for mode in MARKED_MODES:
        for p in load_problems(FAMILIES / "heldout.jsonl", [mode], eval_markers=True)[:5]:
            assert written_marker(mode, render_hack(hacks[mode][0], p)) == p.markers[mode]
            assert written_marker(mode, fence(p.canonical_solution)) is None, (mode, p.id)
    assert written_marker("exit_code", render_hack(hacks["run_tests"][0], p)) is None
