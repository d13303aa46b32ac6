"""The gradient side of a GRPO step: the masked backward, then the optimizer.

A group's rows train in the view their zone selects; the masks (m, d) of
`zones.zone_masks` pick it per row inside one forward: per group
(`group_backward`) or for several groups packed into one stream, where the
masks act per token (`packed_backward`). Behaviour log-probs for
the PPO ratio come from the sampler's view (see passes.py).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor

from vgrout.grpo.gate import Gated
from vgrout.grpo.loss import grpo_loss
from vgrout.grpo.passes import (
    batch_layout,
    behaviour_logprobs,
    pack_groups,
    shared_prompt,
    split_rows,
)
from vgrout.grpo.zones import zone_masks
from vgrout.lm import packed
from vgrout.lm.logprobs import target_mask, token_logprobs
from vgrout.lm.prefix import completion_logprobs, prompt_cache
from vgrout.lm.schedule import warmup_cosine


def advantages(rewards: Tensor, std_normalise: bool, in_update: Tensor | None = None) -> Tensor:
    """Group-relative advantages [G]; rows not in the update (screened) get 0 and take no
    part in the baseline. Fewer than two rows left: all 0 (no baseline to learn against)."""
    if in_update is None:
        adv = rewards - rewards.mean()
        return adv / (rewards.std() + 1e-6) if std_normalise else adv
    keep = in_update.to(rewards.device)
    adv = torch.zeros_like(rewards)
    if int(keep.sum()) >= 2:
        adv[keep] = advantages(rewards[keep], std_normalise)
    return adv


def group_backward(policy, group: Gated, cfg, normaliser: float, step: int) -> dict:
    """One masked forward/backward for a gated group; gradients accumulate in .grad.

    group: the gate's record of a live group (batch, zones, deployed-view
    log-probs). normaliser: Dr.GRPO's constant divisor.
    """
    model, batch, zones = policy.model, group.batch, group.zones
    m, d = (t.to(batch.input_ids.device) for t in zone_masks(zones))
    full_logp = behaviour_logprobs(model, batch) if _needs_full(group) else None
    ref_logp = None
    if cfg.kl_beta > 0:
        with policy.reference():
            ref_logp = behaviour_logprobs(model, batch)
    sp = shared_prompt(model, batch)
    if sp is not None:  # the prompt once per zone, each under that zone's masks
        pc = prompt_cache(
            model,
            sp,
            list(zip(m.tolist(), d.tolist())),
            lambda rows: policy.masked(m[rows], d[rows]),
        )
    with policy.masked(m, d):
        logp = token_logprobs(model, batch) if sp is None else completion_logprobs(model, sp, pc)
        loss, stats = group_loss(group, logp, full_logp, ref_logp, cfg, normaliser, step)
        loss.backward()
    return stats


def packed_backward(policy, groups: list[Gated], cfg, normaliser: float, step: int) -> list[dict]:
    """`group_backward` for several groups in one packed forward and one backward.

    Rows of one zone share their prompt's activations (one unit per group and
    zone, see `vgrout.lm.packed`); the summed loss's gradient is the sum of the
    per-group gradients `group_backward` accumulates.
    """
    model, device = policy.model, policy.model.device
    zones = [z for g in groups for z in g.zones]
    m, d = (t.to(device) for t in zone_masks(zones))
    full = ref = None
    if any(_needs_full(g) for g in groups) or cfg.kl_beta > 0:
        unmasked = pack_groups(groups, device)  # one unit per prompt: no masks in these passes
    if any(_needs_full(g) for g in groups):
        with torch.no_grad():
            full = split_rows(_logprobs(model, unmasked), groups)
    if cfg.kl_beta > 0:
        with torch.no_grad(), policy.reference():
            ref = split_rows(_logprobs(model, unmasked), groups)
    pk = pack_groups(groups, device, keys=zones)
    stats: list[dict] = []
    total: Any = 0.0
    with policy.masked(pk.token_masks(m), pk.token_masks(d)):
        rows = split_rows(_logprobs(model, pk), groups)
        for i, g in enumerate(groups):
            loss, st = group_loss(
                g,
                batch_layout(rows[i], g.batch),
                batch_layout(full[i], g.batch) if full and _needs_full(g) else None,
                batch_layout(ref[i], g.batch) if ref else None,
                cfg,
                normaliser,
                step,
            )
            total, stats = total + loss, stats + [st]
        total.backward()
    return stats


def _logprobs(model, pk: packed.Packed) -> Tensor:
    """`packed.forward` with its lm head: log-probs [rows, C]."""
    return cast(Tensor, packed.forward(model, pk))


def _needs_full(group: Gated) -> bool:
    """Rows sampled as trained but trained in keep need their sampler's log-probs."""
    return any(r.sampler == "trained" and z == "keep" for r, z in zip(group.rollouts, group.zones))


def group_loss(group: Gated, logp, full_logp, ref_logp, cfg, normaliser: float, step: int):
    """(loss, stats) of one group from its log-probs [G, pos-1] in the training view.

    The PPO ratio's old log-probs are the sampler's: the training pass itself
    where sampler and training view coincide (ratio exactly 1 this step), the
    deployed pass for deployed-sampled rows trained with the quarantine on,
    the trained view's for trained-sampled rows trained in keep.
    """
    batch, zones, dep_logp = group.batch, group.zones, group.deployed_logp
    device = batch.input_ids.device
    samplers = [r.sampler for r in group.rollouts]
    use_dep = torch.tensor(
        [s == "deployed" and z != "keep" for s, z in zip(samplers, zones)], device=device
    )
    use_trained = torch.tensor(
        [s == "trained" and z == "keep" for s, z in zip(samplers, zones)], device=device
    )
    old = logp.detach()
    if dep_logp is not None:
        old = torch.where(use_dep[:, None], dep_logp, old)
    if full_logp is not None:
        old = torch.where(use_trained[:, None], full_logp, old)
    adv = advantages(group.rewards().to(device), cfg.std_normalise, group.in_update)
    mask = target_mask(batch)
    loss, stats = grpo_loss(logp, old, adv, mask, cfg.clip_eps, normaliser, ref_logp, cfg.kl_beta)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"non-finite GRPO loss at step {step}, problem "
            f"{group.group.problem.id} (rewards {group.rewards().tolist()})"
        )
    teacher = torch.tensor([s == "teacher" for s in samplers], device=device)
    if teacher.any():
        tok_lp = (logp.detach() * mask).sum(1) / mask.sum(1).clamp_min(1)
        stats["teacher_logp"] = tok_lp[teacher].mean().item()
    stats["loss"] = loss.item()
    return loss, stats


def clip_and_measure(policy, max_norm: float) -> dict:
    """Clip each block's gradient separately; report pre-clip norms and the quarantine share.

    Per-block clipping keeps a large routed gradient from shrinking the
    deployed block's update (and vice versa), so each block learns at its own
    pace. `quarantine_share` is the quarantine's share of the
    squared gradient norm this step; `delta_share` its share of the learned
    weight change so far.
    """
    if policy.routed:
        from vgrout.adapters import clip_grad_per_block, quarantine_share

        norms = clip_grad_per_block(policy.model, max_norm)
        delta_share = quarantine_share(policy.model)
    else:
        grads = [p for p in policy.params["deployed"] if p.grad is not None]
        norms = {
            "deployed": float(torch.nn.utils.clip_grad_norm_(grads, max_norm)),
            "quarantine": 0.0,
        }
        delta_share = 0.0
    dq, dd = norms["quarantine"], norms["deployed"]
    share = dq**2 / (dq**2 + dd**2) if dq + dd > 0 else None
    return {
        "grad_norm_deployed": dd,
        "grad_norm_quarantine": dq,
        "quarantine_share": share,
        "delta_share": delta_share if delta_share == delta_share else None,
    }


@torch.no_grad()
def decay_toward_init(params, init_values, amount: float) -> None:
    """Decoupled weight decay toward the init (not toward zero).

    Pulling adapters to zero would pull a nonzero-init block away from the
    zero-net-delta starting point; decaying toward init keeps it anchored.
    """
    if amount <= 0:
        return
    for p, p0 in zip(params, init_values):
        p.sub_(amount * (p - p0))


def lr_factor(step: int, cfg) -> float:
    """Linear warm-up over `warmup_steps`, then cosine down to `min_lr_frac`."""
    return warmup_cosine(step, cfg.warmup_steps, cfg.steps, cfg.min_lr_frac)
