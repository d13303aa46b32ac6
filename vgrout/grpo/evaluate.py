"""GRPO's periodic evaluation: every split in both views of the routed policy."""

from __future__ import annotations

from typing import Sequence

from vgrout.lm.rates import evaluate_policy
from vgrout.names import VIEWS


def evaluate_views(
    policy, tokenizer, cfg, step: int, train_set: Sequence, test_set: Sequence
) -> list[dict]:
    """Hack and solve rates per split x view, with a per-mode breakdown.

    Splits: `test` (held-out problems, evaluation markers) and `iid` (the
    training problems with their training markers). Views: `trained` (the
    whole model) and `deployed` (quarantine removed). `ships` marks the view
    a run would ship: the deployed view for routing arms, the whole model for
    vanilla (whose quarantine block is only the second half of its adapter).
    The torch RNG is forked, so evaluating does not change the training run.
    At step 0 the two views are one model (every block starts at zero net
    delta), so one sampling pass serves both rows.
    """
    import torch

    cap = cfg.eval_max_problems or None
    views = list(VIEWS) if policy.routed else ["trained"]
    rows = []
    with torch.random.fork_rng(devices=[]):
        for split, problems in (("test", test_set[:cap]), ("iid", train_set[:cap])):
            summary = None
            for view in views:
                if summary is None or step > 0:  # untrained, the views coincide
                    with policy.sampler(view)():
                        summary, _ = evaluate_policy(
                            policy.model,
                            tokenizer,
                            problems,
                            cfg.eval_samples,
                            cfg.max_new_tokens,
                            cfg.temperature,
                            cfg.workers,
                            seed=cfg.seed * 7919 + step,
                            top_k=cfg.top_k,
                            top_p=cfg.top_p,
                            decoder=cfg.decoder,
                        )
                ships = (view == "deployed") == (cfg.arm != "vanilla") or not policy.routed
                rows.append({"step": step, "split": split, "view": view, "ships": ships, **summary})
    return rows
