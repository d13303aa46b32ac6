"""GRPO's periodic evaluation: every split in both views of the routed policy."""

from __future__ import annotations

from typing import Sequence

from vgrout.lm.rates import rates, sample_and_grade
from vgrout.names import VIEWS


def evaluate_views(
    policy,
    tokenizer,
    cfg,
    step: int,
    train_set: Sequence,
    test_set: Sequence,
    final: bool = False,
) -> list[dict]:
    """Hack and solve rates per split x view, with a per-mode breakdown.

    Splits: `test` (held-out problems, evaluation markers) and `iid` (the
    training problems with their training markers). Views: `trained` (the
    whole model) and `deployed` (quarantine removed). `ships` marks the view
    a run would ship: the deployed view for routing arms, the whole model for
    vanilla (whose quarantine block is only the second half of its adapter).

    Both splits are sampled in one call per view (larger batches, one prompt
    pass per problem), with the same seed in each view, so the two views of a
    step are compared on common random numbers. The final evaluation
    (`final=True`) draws `cfg.final_eval_samples` completions per problem, the
    periodic ones `cfg.eval_samples`. The torch RNG is forked, so evaluating
    does not change the training run. At step 0 the two views are one model
    (every block starts at zero net delta), so one sampling pass serves both.
    """
    import torch

    cap = cfg.eval_max_problems or None
    splits = {"test": list(test_set[:cap]), "iid": list(train_set[:cap])}
    problems = [p for ps in splits.values() for p in ps]
    n = cfg.final_eval_samples if final and cfg.final_eval_samples else cfg.eval_samples
    views = list(VIEWS) if policy.routed else ["trained"]
    rows, per_split = [], None
    with torch.random.fork_rng(devices=[]):
        for view in views:
            if per_split is None or step > 0:  # untrained, the views coincide
                with policy.sampler(view)():
                    spec = cfg.sampling(cfg.eval_batch_size)
                    _, grades = sample_and_grade(policy.model, tokenizer, problems, n, spec,
                                                 cfg.seed * 7919 + step, cfg.workers)  # fmt: skip
                per_split = split_rates(grades, splits, n)
            ships = view == cfg.ships() or not policy.routed
            for split, summary in per_split.items():
                rows.append(
                    {
                        "step": step,
                        "split": split,
                        "view": view,
                        "ships": ships,
                        "samples": n,
                        **summary,
                    }  # fmt: skip
                )
    return rows


def split_rates(grades: Sequence, splits: dict, n: int) -> dict:
    """{split: rates} from grades laid out split by split, problem by problem, n per problem.

    Problems of a generated set (data/families) carry a subset, and their rates a
    per-subset breakdown (`by_subset`: held-out instances apart from held-out families).
    """
    out, start = {}, 0
    for split, problems in splits.items():
        stop = start + len(problems) * n
        modes = [p.mode for p in problems for _ in range(n)]
        subsets = [p.subset for p in problems for _ in range(n)]
        out[split] = rates(grades[start:stop], modes, subsets if any(subsets) else None)
        start = stop
    if start != len(grades):
        raise ValueError(f"split_rates: {len(grades)} grades for {start} sampled completions")
    return out
