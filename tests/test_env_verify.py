"""`python -m vgrout.env verify` (item 9) on the samples, the project's
problems and, when ../shared is present, the real LeetCode problems."""

import io
import json
import os
from pathlib import Path

import pytest

from vgrout.env.samples import SAMPLE_ROWS, write_samples
from vgrout.env.verify import main, verify

ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    env = os.environ.get("VGROUT_REFERENCE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "reference"


def test_verify_passes_on_samples_with_and_without_eval_markers(tmp_path):
    path = write_samples(tmp_path / "s.jsonl")
    for eval_markers in (False, True):
        out = io.StringIO()
        assert verify(path, eval_markers=eval_markers, hacks="builtin", out=out) == 0, (
            out.getvalue()
        )
        assert "0 violations" in out.getvalue()


def test_verify_exits_1_on_a_wrong_canonical_solution(tmp_path, capsys):
    row = dict(
        SAMPLE_ROWS[0],
        canonical_solution="class Solution:\n    def mix(self, a, b):\n        return 0\n",
    )
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert main(["verify", str(path), "--modes", "gt_only", "run_tests", "--hacks", "builtin"]) == 1
    assert "canonical solution fails in gt_only" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["train.jsonl", "test.jsonl"])
def test_verify_passes_on_project_problems(name):
    path = ROOT / "data" / "problems" / name
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    out = io.StringIO()
    assert verify(path, limit=3, out=out) == 0, out.getvalue()


@pytest.mark.parametrize("name", ["warmstart.jsonl", "grpo.jsonl", "heldout.jsonl"])
def test_verify_passes_on_generated_families(name):
    out = io.StringIO()
    path = ROOT / "data" / "families" / name
    assert verify(path, limit=3, eval_markers=name == "heldout.jsonl", out=out) == 0, out.getvalue()


def test_verify_passes_on_real_leetcode_problems():
    path = reference_dir() / "vgrout_pub" / "data" / "leetcode" / "leetcode_test_medhard.jsonl"
    if not path.exists():
        pytest.skip("../shared/reference not present")
    out = io.StringIO()
    assert verify(path, limit=2, hacks="builtin", out=out) == 0, out.getvalue()
