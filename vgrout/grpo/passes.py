"""No-grad forward passes of a step: behaviour log-probs and gate features.

Why behaviour log-probs need care: a rollout is trained in the view its zone
selects (keep = deployed only, absorb/route = both blocks), which need not be
the view that sampled it. The PPO ratio must compare against the sampler's
probability; when sampler view and training view coincide the ratio is
exactly 1 within a step (no parameter has moved yet), so no extra pass is
spent. The gate's features come from the same deployed-view pass as the
deployed-sampled rows' log-probs, so routing adds no forward of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vgrout.directions.capture import capture, capture_in_forward
from vgrout.lm.logprobs import token_logprobs
from vgrout.lm.prefix import SharedPrompt, completion_logprobs, prompt_cache, split_shared_prompt
from vgrout.lm.tokens import Batch, from_ids


def shared_prompt(model, batch: Batch) -> SharedPrompt | None:
    """The group as one prompt plus completions (see prefix.py), or None for the full batch.

    Under gradient checkpointing the backward re-runs each layer's forward with
    the masks set at that time, which the per-zone prompt passes cannot match.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    flag = (
        "is_activation_checkpointing"
        if hasattr(type(inner), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )  # the name before transformers 5
    if getattr(inner, flag, False):
        return None
    return split_shared_prompt(batch)


@torch.no_grad()
def behaviour_logprobs(model, batch: Batch) -> Tensor:
    """Log-probs [batch, pos-1] of every next token in the model's current view."""
    sp = shared_prompt(model, batch)
    if sp is None:
        return token_logprobs(model, batch)
    return completion_logprobs(model, sp, prompt_cache(model, sp))


@torch.no_grad()
def _bottleneck_pass(model, batch: Batch, need_logp: bool) -> tuple[Tensor | None, Tensor]:
    """(log-probs or None, pooled deployed-bottleneck features) in the current view."""
    sp = shared_prompt(model, batch)
    if sp is not None:
        pc = prompt_cache(model, sp)
        with capture_in_forward(model, sp.completion_mask) as cap:
            logp = completion_logprobs(model, sp, pc, logits=need_logp)
        return logp, cap.features
    with capture_in_forward(model, batch.completion_mask) as cap:
        if need_logp:
            logp = token_logprobs(model, batch)
        else:  # features only: skip the lm head (logits for one position)
            logp = None
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=1)
    return logp, cap.features


def group_batch(group, pad: int, device) -> Batch:
    """The group's rollouts as one batch: [G, prompt + completion] ids, on `device`."""
    rs = group.rollouts
    return from_ids([r.prompt_ids for r in rs], [r.completion_ids for r in rs], pad).to(device)


def deployed_pass(policy, group, site: str | None):
    """(deployed-view log-probs or None, gate features or None) for one group.

    Runs only when something needs it: the activation gate (features) or rows
    sampled from the deployed view (their behaviour log-probs).
    """
    need_logp = any(r.sampler == "deployed" for r in group.rollouts)
    if site is None and not need_logp:
        return None, None
    with policy.deployed_forward():
        if site == "grad":
            feats = capture(policy.model, group.batch, sites=("grad",))["grad"]
            return (behaviour_logprobs(policy.model, group.batch) if need_logp else None), feats
        if site == "bottleneck":
            return _bottleneck_pass(policy.model, group.batch, need_logp)
        return behaviour_logprobs(policy.model, group.batch), None
