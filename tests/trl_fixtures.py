"""Builders shared by the tests of vgrout.grpo.trl (tests/test_grpo_trl*.py).

The shipped organism, both blocks' gradients, four fixed completions of a
problem, and a routed organism whose blocks were moved off their init.
"""

from __future__ import annotations

import torch
from helpers import perturb_blocks

from vgrout.env import render_hack
from vgrout.grpo.presets import preset


def organism():
    from vgrout.lm.load import load_policy

    torch.set_num_threads(1)
    return load_policy("organism", device="cpu")


def grads_of(model) -> list[torch.Tensor]:
    """Copies of both blocks' gradients, deployed then quarantine (zeros where None)."""
    from vgrout.adapters import trainable_parameters

    return [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for ps in trainable_parameters(model).values()
        for p in ps
    ]


def completions_for(problem, hacks, tok, dead: bool) -> list[list[int]]:
    """Four completions of a problem: solved, hacked twice (two templates), prose (ids +
    eos); a dead group's four are prose (equal rewards: nothing to learn)."""
    texts = [
        f"```python\n{problem.canonical_solution}\n```",
        render_hack(hacks[problem.mode][0], problem),
        render_hack(hacks[problem.mode][1], problem),
        "I am not sure how to solve this.",
    ]
    if dead:
        texts = [texts[3]] * 4
    return [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]


def routed_organism(arm: str = "routeA", **fields):
    from vgrout.grpo.loop import load_run_pairs
    from vgrout.grpo.policy import build_policy

    routing = preset("smoke", arm=arm, group_size=4, **fields)
    model, tok = organism()
    policy = build_policy(routing, model, tok, load_run_pairs(routing))
    perturb_blocks(policy.model)
    return routing, policy, tok
