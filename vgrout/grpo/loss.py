"""The Dr.GRPO objective: PPO clip + k3 KL over completion tokens."""

from __future__ import annotations

import torch
from torch import Tensor


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    clip_eps: float,
    normaliser: float,
    ref_logp: Tensor | None = None,
    kl_beta: float = 0.0,
):
    """Dr.GRPO token-level loss, summed and divided by a constant.

    logp, old_logp, ref_logp, mask: [batch, pos-1]; adv: [batch].
    Dividing by a constant (not by each row's length) is Dr.GRPO's fix for the
    length bias of per-sequence means. Returns (loss, stats).
    """
    ratio = torch.exp(logp - old_logp)
    a = adv.unsqueeze(1)
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    per_token = -surrogate
    kl = torch.zeros((), device=logp.device)
    if ref_logp is not None and kl_beta > 0:
        d = ref_logp - logp
        k3 = torch.exp(d) - d - 1.0  # unbiased, non-negative KL estimate
        per_token = per_token + kl_beta * k3
        kl = (k3 * mask).sum() / mask.sum().clamp_min(1)
    loss = (per_token * mask).sum() / normaliser
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip_eps).float()
        stats = {
            "clip_frac": ((clipped * mask).sum() / mask.sum().clamp_min(1)).item(),
            "kl": kl.item(),
        }
    return loss, stats
