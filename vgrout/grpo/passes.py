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

import warnings
from typing import cast

import torch
from torch import Tensor

from vgrout.directions.capture import capture, capture_in_forward
from vgrout.lm import packed
from vgrout.lm.logprobs import token_logprobs
from vgrout.lm.prefix import SharedPrompt, completion_logprobs, prompt_cache, split_shared_prompt
from vgrout.lm.tokens import Batch, from_ids


def shared_prompt(model, batch: Batch) -> SharedPrompt | None:
    """The group as one prompt plus completions (see prefix.py), or None for the full batch.

    Under gradient checkpointing the backward re-runs each layer's forward with
    the masks set at that time, which the per-zone prompt passes cannot match.
    """
    if not shared_prompt_ok(model):
        return None
    return split_shared_prompt(batch)


def shared_prompt_ok(model) -> bool:
    """False under gradient checkpointing (see `shared_prompt`)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    flag = (
        "is_activation_checkpointing"
        if hasattr(type(inner), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )  # the name before transformers 5
    return not getattr(inner, flag, False)


@torch.no_grad()
def behaviour_logprobs(model, batch: Batch) -> Tensor:
    """Log-probs [batch, pos-1] of every next token in the model's current view."""
    sp = shared_prompt(model, batch)
    if sp is None:
        return token_logprobs(model, batch)
    return cast(Tensor, completion_logprobs(model, sp, prompt_cache(model, sp)))


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


def deployed_pass(policy, group, batch: Batch, site: str | None):
    """(deployed-view log-probs or None, gate features or None) for one group and its batch.

    Runs only when something needs it: the activation gate (features) or rows
    sampled from the deployed view (their behaviour log-probs).
    """
    need_logp = any(r.sampler == "deployed" for r in group.rollouts)
    if site is None and not need_logp:
        return None, None
    with policy.deployed_forward():
        if site == "grad":
            feats = capture(policy.model, batch, sites=("grad",))["grad"]
            return (behaviour_logprobs(policy.model, batch) if need_logp else None), feats
        if site == "bottleneck":
            return _bottleneck_pass(policy.model, batch, need_logp)
        return behaviour_logprobs(policy.model, batch), None


@torch.no_grad()
def trained_features(policy, groups: list, batches: list[Batch], packed_ok: bool) -> list:
    """Trained-view gate features (both blocks, no masks) of each group, [G, modules, r]:
    one packed pass over the groups, or one pass per group."""
    if not groups:
        return []
    if packed_ok:
        pk = pack_groups(groups, policy.model.device)
        pool = lambda a: packed.pool_rows(a, pk)  # noqa: E731
        with capture_in_forward(policy.model, None, pool=pool) as cap:
            packed.forward(policy.model, pk, logits=False)
        return split_rows(cap.features, groups)
    return [_bottleneck_pass(policy.model, b, need_logp=False)[1] for b in batches]


def packed_forward_ok(policy, cfg) -> bool:
    """Whether this run's gate and update run packed (`vgrout.lm.packed`).

    cfg.forward="packed" on a model the packed forward does not support, or
    under gradient checkpointing (whose backward would re-run each layer with
    the masks of that moment), falls back to the per-group passes with a warning.
    """
    if cfg.forward != "packed":
        return False
    if packed.supports(policy.model) and shared_prompt_ok(policy.model):
        return True
    warnings.warn(
        f"forward='packed' does not support {type(packed.causal_lm(policy.model)).__name__} "
        "(or gradient checkpointing is on); using the per-group forward",
        stacklevel=2,
    )
    return False


def group_passes(groups: list, per_pass: int) -> list[list]:
    """Groups in passes of `per_pass` (0: all in one)."""
    n = per_pass or max(len(groups), 1)
    return [groups[i : i + n] for i in range(0, len(groups), n)]


def pack_groups(groups: list, device, keys: list | None = None) -> packed.Packed:
    """The groups' rollouts as one packed stream, rows in group order."""
    rows = [r for g in groups for r in g.rollouts]
    return packed.pack(
        [r.prompt_ids for r in rows], [r.completion_ids for r in rows], keys, device=device
    )


def split_rows(values: torch.Tensor, groups: list) -> list[torch.Tensor]:
    """A per-row tensor of the packed groups -> one slice per group."""
    return list(values.split([len(g.rollouts) for g in groups]))


def batch_layout(lp: torch.Tensor, batch: Batch) -> torch.Tensor:
    """A group's packed log-probs [G, C] -> its Batch layout [G, pos-1]."""
    return packed.to_left_padded(lp, batch.completion_mask.sum(1), batch.input_ids.shape[1])


@torch.no_grad()
def deployed_pass_packed(policy, groups: list, batches: list[Batch], site: str | None) -> list:
    """`deployed_pass` for all groups in one packed forward: (log-probs, features) per group.

    site: None or "bottleneck" (the grad site needs a backward per group).
    """
    need = [any(r.sampler == "deployed" for r in g.rollouts) for g in groups]
    feats: list = [None] * len(groups)
    if site is None and not any(need):
        return [(None, None)] * len(groups)
    pk = pack_groups(groups, policy.model.device)
    with policy.deployed_forward():
        if site == "bottleneck":
            with capture_in_forward(
                policy.model, None, pool=lambda a: packed.pool_rows(a, pk)
            ) as cap:
                lp = packed.forward(policy.model, pk, logits=any(need))
            feats = split_rows(cap.features, groups)
        else:
            lp = packed.forward(policy.model, pk)
    logps: list = [None] * len(groups)
    if lp is not None:
        for i, (n, rows, b) in enumerate(zip(need, split_rows(lp, groups), batches)):
            logps[i] = batch_layout(rows, b) if n else None
    return list(zip(logps, feats))
