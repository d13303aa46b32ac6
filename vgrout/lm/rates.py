"""Sample a policy on problems, grade every completion, and summarise rates.

Used by the organism measurement, by GRPO's periodic evaluation (once as
trained, once with the quarantine ablated) and by the notebooks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

from vgrout.lm.spec import SamplingSpec


def rates(
    grades: Sequence, modes: Sequence[str] | None = None, subsets: Sequence | None = None
) -> dict:
    """Compile / solve / hack rates with binomial standard errors.

    solve = gt_correct (the strict oracle), hack = exploited (paid, not correct).
    With `modes`, adds a `by_mode` breakdown keyed by each grade's mode; with
    `subsets` (each grade's problem subset, `Problem.subset`), a `by_subset` one
    over the grades whose subset is not None.
    """
    n = len(grades)
    if n == 0:
        raise ValueError("rates: no grades to summarise")
    out: dict = {"n": n}
    for key, attr in (
        ("compile", "format_ok"),
        ("solve", "gt_correct"),
        ("hack", "exploited"),
        ("passed", "passed"),
    ):
        p = sum(bool(getattr(g, attr)) for g in grades) / n
        out[key] = p
        out[key + "_se"] = math.sqrt(p * (1 - p) / n)
    out["reward"] = sum(g.reward for g in grades) / n
    if modes is not None:
        groups = defaultdict(list)
        for g, mode in zip(grades, modes):
            groups[mode].append(g)
        out["by_mode"] = _breakdown(groups)
    if subsets is not None:
        groups = defaultdict(list)
        for g, subset in zip(grades, subsets):
            if subset is not None:
                groups[subset].append(g)
        out["by_subset"] = _breakdown(groups)
    return out


def _breakdown(groups: dict) -> dict:
    return {
        key: {k: v for k, v in rates(gs).items() if k in ("n", "solve", "hack", "compile")}
        for key, gs in sorted(groups.items())
    }


def sample_and_grade(
    model, tokenizer, problems: Sequence[Any], n_samples: int, spec: SamplingSpec,
    seed: int | None = 0, workers: int = 2,
) -> tuple[list[tuple[str, Any]], list]:  # fmt: skip
    """Sample `n_samples` per problem as `spec` says and grade each under its problem's mode.

    Returns (items, grades): items[i] = (completion, problem), laid out
    problem by problem, n_samples each; grades[i] is items[i]'s grade.
    seed: reseeds torch's generator before sampling (None: as it is).
    workers: grader processes.
    """
    from vgrout.env import grade_many
    from vgrout.lm.sampling import sample

    outs = sample(model, tokenizer, [p.messages for p in problems], n_samples, spec, seed)
    items = [(c, p) for p, cs in zip(problems, outs) for c in cs]
    return items, grade_many(items, workers=workers)


def evaluate_policy(
    model, tokenizer, problems: Sequence[Any], n_samples: int, spec: SamplingSpec,
    seed: int | None = 0, workers: int = 2,
):  # fmt: skip
    """`sample_and_grade`, summarised: (rates with a per-mode breakdown, rows).

    The rows hold every completion with its grade, so a caller can keep them
    (e.g. as a labelled pool for diagnostics).
    """
    items, grades = sample_and_grade(model, tokenizer, problems, n_samples, spec, seed, workers)
    rows = [
        {
            "problem_id": p.id,
            "mode": p.mode,
            "completion": c,
            "format_ok": g.format_ok,
            "gt_correct": g.gt_correct,
            "exploited": g.exploited,
            "reward": g.reward,
        }
        for (c, p), g in zip(items, grades)
    ]
    subsets = [p.subset for _, p in items]
    summary = rates(grades, [p.mode for _, p in items], subsets if any(subsets) else None)
    return summary, rows
