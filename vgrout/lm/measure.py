"""Measure a policy's compile / solve / hack rates: the organism's acceptance check."""

from __future__ import annotations

from vgrout.lm.rates import evaluate_policy
from vgrout.lm.spec import COMMITTED_SAMPLING, SamplingSpec


def measure_organism(
    split: str = "train",
    mode: str = "run_tests",
    n_samples: int = 8,
    spec: SamplingSpec = COMMITTED_SAMPLING,
    seed: int = 0,
    recipe=None,
) -> dict:
    """The organism's compile / solve / hack rates on one split and mode, sampled as `spec` says.

    recipe: an `OrganismRecipe` variant to build (if its cache lacks it) and
    measure instead of the shipped organism; the recipe's `unseen_every`
    splits the training rates into memorised and unseen problems.
    """
    import torch

    from vgrout import paths
    from vgrout.env import load_problems
    from vgrout.lm.load import load_policy
    from vgrout.lm.organism import OrganismRecipe, ensure_organism, unseen_problem_ids

    torch.manual_seed(seed)
    if recipe is None:
        model, tok = load_policy("organism")
        recipe = OrganismRecipe()
    else:
        model, tok = load_policy(str(ensure_organism(recipe)))
    path = paths.TRAIN_PROBLEMS if split == "train" else paths.TEST_PROBLEMS
    problems = load_problems(path, [mode])
    summary, rows = evaluate_policy(model, tok, problems, n_samples, spec, seed=seed)
    summary.pop("by_mode", None)
    out = {"split": split, "mode": mode, "temperature": spec.temperature, **summary}
    if split == "train":
        unseen = set(unseen_problem_ids(recipe))
        for name, keep in (
            ("memorised", lambda r: r["problem_id"] not in unseen),
            ("unseen", lambda r: r["problem_id"] in unseen),
        ):
            part = [r for r in rows if keep(r)]
            if part:
                out[name] = {
                    k: sum(r[a] for r in part) / len(part)
                    for k, a in (
                        ("compile", "format_ok"),
                        ("solve", "gt_correct"),
                        ("hack", "exploited"),
                    )
                } | {"n": len(part)}
    return out
