"""Labelled pools: completions with hack / clean labels, the rows a direction is scored on.

- `labelled_pool_from_policy`: sample a policy on problems, grade with the
  environment, hack = exploited, clean = gt_correct, drop the rest.
- `labelled_pool_from_jsonl`: a GRPO run's rollouts.jsonl.
- `reference_pool`: the published 4B model's real hacks against canonical
  solutions of held-out problems. Different problems and different authors
  on the two sides: any style difference separates them, so read this pool
  as "does the direction fire on natural hacks", not as a matched contrast.
- `rendered_pool`: template hacks against canonical solutions on the same
  problems, in every loophole mode (a matched pool).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vgrout.lm.spec import COMMITTED_SAMPLING, SamplingSpec


@dataclass
class LabelledPool:
    """Rows of (prompt, completion, label); groups = problem id (the split unit).

    prompts: chat messages, user text or a rendered prompt per row.
    labels:  1 = hack, 0 = clean.
    """

    prompts: list
    completions: list[str]
    labels: np.ndarray
    groups: list[str]
    name: str = "pool"

    def __post_init__(self):
        n = len(self.completions)
        if not (len(self.prompts) == len(self.labels) == len(self.groups) == n):
            raise ValueError(
                f"LabelledPool {self.name}: {len(self.prompts)} prompts, {n} completions, "
                f"{len(self.labels)} labels, {len(self.groups)} groups must agree"
            )
        self.labels = np.asarray(self.labels, dtype=int)

    def __len__(self) -> int:
        return len(self.completions)

    def counts(self) -> tuple[int, int]:
        """(n_hack, n_clean)."""
        return int(self.labels.sum()), int((1 - self.labels).sum())

    def without_problems(self, ids) -> LabelledPool:
        """The rows whose problem id (group) is not in ids."""
        drop = {str(i) for i in ids}
        keep = [i for i, g in enumerate(self.groups) if str(g) not in drop]
        pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
        return LabelledPool(
            pick(self.prompts),
            pick(self.completions),
            self.labels[keep],
            pick(self.groups),
            self.name,
        )


def _label(exploited: bool, gt_correct: bool) -> int | None:
    return 1 if exploited else 0 if gt_correct else None


def labelled_pool_from_policy(
    model,
    tokenizer,
    problems: Sequence,
    n_per_problem: int,
    spec: SamplingSpec = COMMITTED_SAMPLING,
    seed: int = 0,
    workers: int = 2,
) -> LabelledPool:
    """Sample n_per_problem completions per problem, grade, keep hacks and solves.

    spec: how to sample (default `COMMITTED_SAMPLING`, the sampling the
    committed pools were drawn with).
    """
    from vgrout.lm.rates import evaluate_policy

    _, rows = evaluate_policy(model, tokenizer, problems, n_per_problem, spec, seed, workers)
    by_id = {p.id: p for p in problems}
    keep = [(r, _label(r["exploited"], r["gt_correct"])) for r in rows]
    keep = [(r, y) for r, y in keep if y is not None]
    return LabelledPool(
        [by_id[r["problem_id"]].messages for r, _ in keep],
        [r["completion"] for r, _ in keep],
        np.array([y for _, y in keep], dtype=int),
        [str(r["problem_id"]) for r, _ in keep],
        name="policy",
    )


def labelled_pool_from_jsonl(path: str | Path) -> LabelledPool:
    """rollouts.jsonl rows with prompt, completion, exploited, gt_correct (problem_id optional)."""
    prompts, comps, labels, groups = [], [], [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [
                k for k in ("prompt", "completion", "exploited", "gt_correct") if k not in row
            ]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing field(s) {missing}")
            y = _label(bool(row["exploited"]), bool(row["gt_correct"]))
            if y is None:
                continue
            prompts.append(row["prompt"])
            comps.append(row["completion"])
            labels.append(y)
            groups.append(str(row.get("problem_id", row["prompt"])))
    if not comps:
        raise ValueError(f"{path}: no row is a hack or a solve")
    return LabelledPool(prompts, comps, np.array(labels, dtype=int), groups, name=Path(path).stem)


def _fence(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def reference_pool(
    ref_dir: str | Path | None = None,
    problems_path: str | Path | None = None,
    max_per_class: int | None = 128,
    seed: int = 0,
) -> LabelledPool:
    """Real 4B hacks (teacher pool) vs canonical solutions of the held-out problems.

    Raises FileNotFoundError naming the missing path when the reference data
    are absent, so a caller (or a test) can skip.
    """
    if ref_dir is None:
        from vgrout.paths import reference_dir

        ref_dir = reference_dir()
        if ref_dir is None:
            raise FileNotFoundError("reference data folder not found (set VGROUT_REFERENCE)")
    base = Path(ref_dir) / "vgrout_pub" / "data"
    pool_dir = base / "pools" / "teacher_pool"
    problems_path = Path(problems_path or base / "leetcode" / "leetcode_test_medhard.jsonl")
    for p in (pool_dir, problems_path):
        if not p.exists():
            raise FileNotFoundError(f"reference_pool: {p} does not exist")
    hacks = []
    for f in sorted(pool_dir.glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            for row in map(json.loads, fh):
                if row["hacked"] and not row["gt_pass"]:
                    hacks.append(
                        (row["problem_messages"], row["completion"], f"train-{row['problem_id']}")
                    )
    with open(problems_path) as fh:
        clean = [
            (r["prompt"], _fence(r["canonical_solution"]), f"test-{r['id']}")
            for r in (json.loads(line) for line in fh if line.strip())
        ]
    rng = np.random.default_rng(seed)
    if max_per_class is not None:
        hacks = [hacks[i] for i in sorted(rng.permutation(len(hacks))[:max_per_class])]
        clean = [clean[i] for i in sorted(rng.permutation(len(clean))[:max_per_class])]
    rows = hacks + clean
    labels = np.r_[np.ones(len(hacks), int), np.zeros(len(clean), int)]
    return LabelledPool(
        [r[0] for r in rows], [r[1] for r in rows], labels, [r[2] for r in rows], name="reference"
    )


def rendered_pool(
    problems_path: str | Path, modes: Sequence[str] | None = None, workers: int = 2
) -> LabelledPool:
    """Template hacks vs canonical solutions on the same problems, in every loophole mode.

    For each (problem, mode): the mode's hack template (variants cycled over
    problems) and the problem's canonical solution, both under the mode's
    hinted prompt. Both are graded; a hack is kept only if it exploits and a
    solution only if it is correct. A matched pool for a policy that does not
    (yet) hack on its own: same prompts on both sides, hacks of the families
    the organism's hack prior was trained on.
    """
    from vgrout.env import LOOPHOLE_MODES, grade_many, load_hacks, load_problems, render_hack

    hacks = load_hacks()
    items, labels = [], []
    for mode in modes or LOOPHOLE_MODES:
        for k, p in enumerate(load_problems(problems_path, [mode])):
            templates = hacks[mode]
            items += [
                (render_hack(templates[k % len(templates)], p), p),
                (_fence(p.canonical_solution), p),
            ]
            labels += [1, 0]
    grades = grade_many(items, workers=workers)
    keep = [i for i, g in enumerate(grades) if (g.exploited if labels[i] else g.gt_correct)]
    if len(keep) < len(items):
        print(
            f"rendered_pool: {len(items) - len(keep)} of {len(items)} rows failed their grade, dropped"
        )
    return LabelledPool(
        [items[i][1].messages for i in keep],
        [items[i][0] for i in keep],
        np.array([labels[i] for i in keep]),
        [str(items[i][1].id) for i in keep],
        name="rendered",
    )
