"""Retraining a committed grid: resumable, into its own folder, with an agreement table.

A two-arm smoke grid stands in for a committed one: trained once and stored as
the committed results, then trained again into another folder. On the same
machine the same configs give the same runs, so every arm mean must equal the
committed one and every verdict must be the same; and the committed results
must be left untouched unless asked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from vgrout.figures import results, retrain
from vgrout.figures.sets import FigureSet

TRAIN = """\
model: organism
preset: smoke
arms:
  vanilla: {arm: vanilla}
  oracle: {arm: oracle}
overrides: {}
seeds: [0, 1]
steps: 2
jobs: 1
results: COMMITTED
"""
ANALYSIS = """\
results: COMMITTED
comparisons:
  - {id: X1, a: oracle, b: vanilla, metric: hack, sided: less, family: f}
"""


def _toy_set(tmp_path, overrides: str = "{}") -> tuple[FigureSet, Path]:
    """A two-arm smoke figure set in tmp_path, and the folder of its committed results."""
    params = tmp_path / "params"
    params.mkdir(exist_ok=True)
    committed = tmp_path / "committed"
    train = TRAIN.replace("COMMITTED", str(committed)).replace(
        "overrides: {}", f"overrides: {overrides}"
    )
    (params / "03_grpo_training.yaml").write_text(train)
    (params / "04_ablation_figures.yaml").write_text(ANALYSIS.replace("COMMITTED", str(committed)))
    return FigureSet("toy", str(params), str(tmp_path / "figs"), ("03", "04")), committed


@pytest.mark.slow
def test_a_retrained_grid_agrees_with_itself_and_leaves_the_committed_results(tmp_path):
    fs, committed = _toy_set(tmp_path)
    first = retrain.retrain(fs, tmp_path / "a" / "runs", committed)
    assert sorted(first.records) == [("oracle", 0), ("oracle", 1), ("vanilla", 0), ("vanilla", 1)]
    stored = (committed / "runs.jsonl.gz").read_bytes()
    again = retrain.retrain(fs, tmp_path / "b" / "runs", tmp_path / "b" / "results")
    same = "same configs, same machine: the same runs (wall times and run folders aside)"
    pd.testing.assert_frame_equal(again.evals(), first.evals(), obj=same)
    pd.testing.assert_frame_equal(_untimed(again.steps()), _untimed(first.steps()), obj=same)
    _, analysis = retrain.set_params(fs)
    new, old = retrain.ablation.grid_seeds(again), retrain.ablation.grid_seeds(first)
    retrain.report(new, old, analysis["comparisons"], tmp_path / "b")
    arms = retrain.arm_agreement(new, old)
    assert (arms["new"] == arms["committed"]).all()
    tests = retrain.verdict_agreement(new, old, analysis["comparisons"])
    assert tests["same_verdict"].all() and list(tests["id"]) == ["X1"]
    assert (committed / "runs.jsonl.gz").read_bytes() == stored
    meta = results.open_results(tmp_path / "b" / "results").meta
    assert meta["wall_s"] > 0 and meta["machine"]["torch"] and meta["finished_before"] == []
    resumed = retrain.retrain(fs, tmp_path / "b" / "runs", tmp_path / "b" / "results")
    assert (
        results.open_results(tmp_path / "b" / "results").meta["finished_before"]
        == ["oracle/s0", "oracle/s1", "vanilla/s0", "vanilla/s1"]
        and resumed.records == again.records
    )


def test_an_arm_outside_the_committed_interval_is_flagged():
    def seeds(vals):
        return pd.DataFrame([dict(arm="a", seed=s, split="iid", view="deployed", ships=True,
                                  step=1, hack=v, solve=0.5, n=10) for s, v in enumerate(vals)])  # fmt: skip

    arms = retrain.arm_agreement(seeds([0.9, 0.8, 0.85]), seeds([0.1, 0.2, 0.15]))
    hack = arms.set_index("metric").loc["hack"]
    assert not hack["within_ci"] and hack["committed_ci_high"] < hack["new"]
    assert arms.set_index("metric").loc["solve", "within_ci"]


def _untimed(steps: pd.DataFrame) -> pd.DataFrame:
    return steps.drop(columns=[c for c in steps.columns if c.startswith("time_")])


@pytest.mark.slow
def test_a_grid_stored_part_way_is_marked_partial_and_not_replotted(tmp_path):
    from vgrout.figures import runner

    fs, committed = _toy_set(tmp_path)
    runs = tmp_path / "runs"
    retrain.retrain(fs, runs, tmp_path / "all")
    assert runner.not_ready(fs).endswith("not committed yet (the grid has not run)")
    (runs / "oracle" / "s1" / "result.json").unlink()  # seed 1 unfinished in one arm
    grid = retrain.store_finished(fs, runs, committed)
    assert grid is not None and grid.seeds == [0] and sorted(grid.arms) == ["oracle", "vanilla"]
    meta = results.open_results(committed).meta
    assert meta["partial"] and meta["seeds_planned"] == [0, 1] and meta["seeds"] == [0]
    assert runner.not_ready(fs) == f"{committed} is partial (1 of 2 seeds)"
    shutil.rmtree(runs)  # the run folders are gone (a later session): continue from the store
    later = tmp_path / "later"
    retrain.continue_grid(fs, committed, later / "runs", later, jobs=None, replace=True)
    assert sorted(p.name for p in later.glob("runs/*/s*")) == ["s1", "s1"]  # seed 1 only
    whole = results.open_results(committed)
    assert whole.seeds == [0, 1]
    assert whole.records[("oracle", 0)] == grid.records[("oracle", 0)]
    assert not whole.meta["partial"] and [p["seeds"] for p in whole.meta["parts"]] == [[0], [1]]
    assert whole.meta["parts"][1]["wall_s"] > 0  # the continued part's training time
    assert runner.not_ready(fs) == ""
    stored = (committed / "runs.jsonl.gz").read_bytes()
    retrain.continue_grid(fs, committed, later / "runs", later, jobs=None, replace=True)
    retrain.store_finished(fs, later / "runs", committed)  # stored again: still one part a seed
    assert (committed / "runs.jsonl.gz").read_bytes() == stored
    assert [p["seeds"] for p in results.open_results(committed).meta["parts"]] == [[0], [1]]


@pytest.mark.slow
def test_a_stored_seed_keeps_its_part_and_its_run_folder_must_not_change(tmp_path):
    """Storing from another checkout once relabelled seeds trained earlier with the
    storing revision; a seed is stored once, and a folder trained again is refused."""
    from vgrout.machine import git_revision

    fs, committed = _toy_set(tmp_path)
    runs = tmp_path / "runs"
    retrain.retrain(fs, runs, tmp_path / "all")
    (runs / "oracle" / "s1" / "result.json").rename(runs / "oracle" / "s1" / "held.json")
    retrain.store_finished(fs, runs, committed)
    first = results.open_results(committed).meta["parts"][0]
    assert first["run_revisions"] == [git_revision()["commit"]]  # what trained the runs
    assert first["run_machines"][0]["torch"]
    meta = results.open_results(committed).meta
    meta["parts"][0]["revision"] = "an-earlier-revision"  # as if stored by an older checkout
    results.save_results(results.open_results(committed), committed, meta)
    (runs / "oracle" / "s1" / "held.json").rename(runs / "oracle" / "s1" / "result.json")
    retrain.store_finished(fs, runs, committed)
    parts = results.open_results(committed).meta["parts"]
    assert [(p["seeds"], p["revision"]) for p in parts][0] == ([0], "an-earlier-revision")
    assert [p["seeds"] for p in parts] == [[0], [1]]
    steps = runs / "vanilla" / "s0" / "steps.jsonl"
    edited = [json.loads(r) for r in steps.read_text().splitlines()]
    edited[-1]["loss"] = 123.0  # the folder now holds another run than the stored seed 0
    steps.write_text("".join(json.dumps(r) + "\n" for r in edited))
    with pytest.raises(ValueError, match="arm 'vanilla' seed 0 is stored, and its run folder"):
        retrain.store_finished(fs, runs, committed)


@pytest.mark.slow
def test_a_grid_continued_under_another_config_is_refused(tmp_path):
    fs, committed = _toy_set(tmp_path)
    retrain.retrain(fs, tmp_path / "runs", tmp_path / "all")
    (tmp_path / "runs" / "oracle" / "s1" / "result.json").unlink()
    retrain.store_finished(fs, tmp_path / "runs", committed)
    _toy_set(tmp_path, overrides="{lr: 0.0123}")  # the yaml edited between sessions
    with pytest.raises(ValueError, match=r"arm 'vanilla' seed 0 .*lr: 0.001 -> 0.0123"):
        retrain.continue_grid(fs, committed, tmp_path / "later", tmp_path, jobs=None, replace=True)
