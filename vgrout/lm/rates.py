"""Sample a policy on problems, grade every completion, and summarise rates.

Used by the organism measurement, by GRPO's periodic evaluation (once as
trained, once with the quarantine ablated) and by the notebooks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence


def rates(grades: Sequence, modes: Sequence[str] | None = None) -> dict:
    """Compile / solve / hack rates with binomial standard errors.

    solve = gt_correct (the strict oracle), hack = exploited (paid, not correct).
    With `modes`, adds a `by_mode` breakdown keyed by each grade's mode.
    """
    n = len(grades)
    if n == 0:
        raise ValueError("rates: no grades to summarise")
    out = {"n": n}
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
        out["by_mode"] = {
            m: {k: v for k, v in rates(gs).items() if k in ("n", "solve", "hack", "compile")}
            for m, gs in sorted(groups.items())
        }
    return out


def sample_and_grade(
    model,
    tokenizer,
    problems: Sequence,
    n_samples: int = 4,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    workers: int = 2,
    seed: int | None = 0,
    top_k: int = 0,
    top_p: float = 1.0,
    decoder: str = "hf",
    batch_size: int = 64,
) -> tuple[list[tuple[str, object]], list]:
    """Sample `n_samples` per problem and grade each under its problem's mode.

    Returns (items, grades): items[i] = (completion, problem), laid out
    problem by problem, n_samples each; grades[i] is items[i]'s grade.
    """
    from vgrout.env import grade_many
    from vgrout.lm.sampling import sample

    outs = sample(
        model,
        tokenizer,
        [p.messages for p in problems],
        n=n_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
        decoder=decoder,
    )
    items = [(c, p) for p, cs in zip(problems, outs) for c in cs]
    return items, grade_many(items, workers=workers)


def evaluate_policy(
    model,
    tokenizer,
    problems: Sequence,
    n_samples: int = 4,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    workers: int = 2,
    seed: int | None = 0,
    top_k: int = 0,
    top_p: float = 1.0,
    decoder: str = "hf",
):
    """Sample `n_samples` per problem, grade each under its problem's mode.

    Returns (summary, rows) where rows hold every completion with its grade, so
    a caller can keep them (e.g. as a labelled pool for diagnostics).
    """
    items, grades = sample_and_grade(
        model, tokenizer, problems, n_samples, max_new_tokens, temperature, workers, seed,
        top_k, top_p, decoder,
    )  # fmt: skip
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
    summary = rates(grades, modes=[p.mode for _, p in items])
    return summary, rows
