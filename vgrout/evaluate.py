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
    for key, attr in (("compile", "format_ok"), ("solve", "gt_correct"),
                      ("hack", "exploited"), ("passed", "passed")):
        p = sum(bool(getattr(g, attr)) for g in grades) / n
        out[key] = p
        out[key + "_se"] = math.sqrt(p * (1 - p) / n)
    out["reward"] = sum(g.reward for g in grades) / n
    if modes is not None:
        groups = defaultdict(list)
        for g, mode in zip(grades, modes):
            groups[mode].append(g)
        out["by_mode"] = {m: {k: v for k, v in rates(gs).items()
                              if k in ("n", "solve", "hack", "compile")}
                          for m, gs in sorted(groups.items())}
    return out


def evaluate_policy(model, tokenizer, problems: Sequence, n_samples: int = 4,
                    max_new_tokens: int = 128, temperature: float = 1.0,
                    workers: int = 2, seed: int | None = 0, top_k: int = 0,
                    top_p: float = 1.0):
    """Sample `n_samples` per problem, grade each under its problem's mode.

    Returns (summary, rows) where rows hold every completion with its grade, so
    a caller can keep them (e.g. as a labelled pool for diagnostics).
    """
    from vgrout.env import grade_many
    from vgrout.sampling import sample

    outs = sample(model, tokenizer, [p.messages for p in problems], n=n_samples,
                  max_new_tokens=max_new_tokens, temperature=temperature,
                  top_k=top_k, top_p=top_p, seed=seed)
    items = [(c, p) for p, cs in zip(problems, outs) for c in cs]
    grades = grade_many(items, workers=workers)
    rows = [{"problem_id": p.id, "mode": p.mode, "completion": c,
             "format_ok": g.format_ok, "gt_correct": g.gt_correct,
             "exploited": g.exploited, "reward": g.reward}
            for (c, p), g in zip(items, grades)]
    summary = rates(grades, modes=[p.mode for _, p in items])
    return summary, rows


def measure_organism(split: str = "train", mode: str = "run_tests", n_samples: int = 8,
                     temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 128,
                     recipe=None) -> dict:
    """The organism's compile / solve / hack rates on one split and mode.

    recipe: an `OrganismRecipe` variant to build (if missing) and measure
    instead of the default one; its `unseen_every` splits the training rates.
    """
    import torch

    from vgrout import paths
    from vgrout.env import load_problems
    from vgrout.models import load_policy
    from vgrout.organism import OrganismRecipe, ensure_organism, unseen_problem_ids

    recipe = recipe or OrganismRecipe()
    torch.manual_seed(seed)
    model, tok = load_policy(str(ensure_organism(recipe)))
    path = paths.TRAIN_PROBLEMS if split == "train" else paths.TEST_PROBLEMS
    problems = load_problems(path, [mode])
    summary, rows = evaluate_policy(model, tok, problems, n_samples, max_new_tokens,
                                    temperature, seed=seed)
    summary.pop("by_mode", None)
    out = {"split": split, "mode": mode, "temperature": temperature, **summary}
    if split == "train":
        unseen = set(unseen_problem_ids(recipe))
        for name, keep in (("memorised", lambda r: r["problem_id"] not in unseen),
                           ("unseen", lambda r: r["problem_id"] in unseen)):
            part = [r for r in rows if keep(r)]
            if part:
                out[name] = {k: sum(r[a] for r in part) / len(part) for k, a in
                             (("compile", "format_ok"), ("solve", "gt_correct"),
                              ("hack", "exploited"))} | {"n": len(part)}
    return out


def evaluate_views(policy, tokenizer, cfg, step: int, train_set: Sequence,
                   test_set: Sequence) -> list[dict]:
    """Hack and solve rates per split x view, with a per-mode breakdown.

    Splits: `test` (held-out problems, evaluation markers) and `iid` (the
    training problems with their training markers). Views: `trained` (the
    whole model) and `ablated` (quarantine removed). `deployed` marks the view
    that ships: ablated for routed arms, the whole model for vanilla.
    The torch RNG is forked, so evaluating does not change the training run.
    At step 0 the two views are one model (every block starts at zero net
    delta), so one sampling pass serves both rows.
    """
    import torch

    cap = cfg.eval_max_problems or None
    views = ["trained", "ablated"] if policy.routed else ["trained"]
    rows = []
    with torch.random.fork_rng(devices=[]):
        for split, problems in (("test", test_set[:cap]), ("iid", train_set[:cap])):
            summary = None
            for view in views:
                if summary is None or step > 0:  # untrained, the views coincide
                    with policy.sampler("full" if view == "trained" else "deployed")():
                        summary, _ = evaluate_policy(
                            policy.model, tokenizer, problems, cfg.eval_samples,
                            cfg.max_new_tokens, cfg.temperature, cfg.workers,
                            seed=cfg.seed * 7919 + step, top_k=cfg.top_k, top_p=cfg.top_p)
                deployed = (view == "ablated") == (cfg.arm != "vanilla") or not policy.routed
                rows.append({"step": step, "split": split, "view": view,
                             "deployed": deployed, **summary})
    return rows
