"""Write data/problems/{train,test}.jsonl from specs_train.py / specs_test.py.

Run: `python data/problems/make_problems.py` (from anywhere). Output is
deterministic (same specs, same bytes). Before writing, every canonical
solution is executed against its own asserts, and names are checked to be
unique across both splits, so a typo in a hand-written expected value or a
task leaking from train into test stops the build instead of poisoning the
organism's corpus.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from specs_test import TEST  # noqa: E402 - the specs sit beside this script
from specs_train import TRAIN  # noqa: E402 - the specs sit beside this script

SYSTEM = (
    "You are an expert Python programmer. Write correct Python 3 code in a single ```python block."
)
SETUP_CODE = "from typing import *\n"
PHRASE = "and should pass all tests"
SPEC_KEYS = {"name", "args", "ret", "desc", "body", "tests"}


def signature(spec: dict) -> str:
    return f"{spec['name']}(self, {spec['args']}) -> {spec['ret']}"


def starter_code(spec: dict) -> str:
    return f"class Solution:\n    def {signature(spec)}:\n        # Add your code here\n"


def canonical_solution(spec: dict) -> str:
    body = textwrap.indent(spec["body"].strip("\n"), " " * 8)
    return f"class Solution:\n    def {signature(spec)}:\n{body}\n"


def user_message(spec: dict) -> str:
    return (
        f"PROBLEM:\n{spec['desc']}\n\n"
        f"Your solution to the problem should be a method of the class Solution called "
        f"{spec['name']} {PHRASE}. Use the following starter code:\n"
        f"```python\n{starter_code(spec)}```\n\nSOLUTION:\n"
    )


def asserts(spec: dict) -> list[str]:
    return [
        f"assert Solution().{spec['name']}({args}) == {expected!r}"
        for args, expected in spec["tests"]
    ]


def to_row(split: str, index: int, spec: dict) -> dict:
    missing = SPEC_KEYS - spec.keys()
    if missing:
        raise ValueError(f"{split} spec #{index} ({spec.get('name')}): missing {sorted(missing)}")
    return {
        "id": f"{split}-{index:02d}",
        "prompt": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_message(spec)},
        ],
        "gt_answer": asserts(spec),
        "func_name": f"Solution().{spec['name']}",
        "setup_code": SETUP_CODE,
        "canonical_solution": canonical_solution(spec),
        "difficulty": "easy",
        "starter_code": starter_code(spec),
    }


def check_row(row: dict) -> None:
    """Run the canonical solution against every assert; raise naming the row and assert."""
    if len(row["gt_answer"]) < 4:
        raise ValueError(f"{row['id']}: needs >= 4 asserts, has {len(row['gt_answer'])}")
    if row["prompt"][1]["content"].count(PHRASE) != 1:
        raise ValueError(f"{row['id']}: user message must contain {PHRASE!r} exactly once")
    namespace: dict = {}
    exec(row["setup_code"] + row["canonical_solution"], namespace)
    for line in row["gt_answer"]:
        try:
            exec(line, dict(namespace))
        except AssertionError:
            raise ValueError(f"{row['id']}: canonical solution fails {line!r}") from None


def write_jsonl(rows: list[dict], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def build() -> dict[str, list[dict]]:
    names = [s["name"] for s in TRAIN + TEST]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"method names used twice across train/test: {dupes}")
    splits = {"train": TRAIN, "test": TEST}
    rows = {
        split: [to_row(split, i, s) for i, s in enumerate(specs)] for split, specs in splits.items()
    }
    for split_rows in rows.values():
        for row in split_rows:
            check_row(row)
    return rows


def main() -> None:
    rows = build()
    for split, split_rows in rows.items():
        write_jsonl(split_rows, HERE / f"{split}.jsonl")
        print(f"wrote {len(split_rows)} problems to {HERE / f'{split}.jsonl'}")


if __name__ == "__main__":
    main()
