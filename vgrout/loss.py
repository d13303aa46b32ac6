"""Token log-probs and the Dr.GRPO objective (PPO clip + k3 KL)."""

from __future__ import annotations

import torch
from torch import Tensor

from vgrout.tokens import Batch


def next_token_logprobs(logits: Tensor, input_ids: Tensor) -> Tensor:
    """Log-prob of each next token, [batch, pos-1], from logits [batch, pos, vocab]
    (position t scores token t+1), computed in at least fp32."""
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
    tgt = input_ids[:, 1:].unsqueeze(-1)
    return logits.gather(-1, tgt).squeeze(-1) - torch.logsumexp(logits, -1)


def token_logprobs(model, batch: Batch) -> Tensor:
    """Log-prob of each next token under `model`: [batch, pos-1]."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return next_token_logprobs(logits, batch.input_ids)


def completion_nll(logits: Tensor, input_ids: Tensor, completion_mask: Tensor,
                   per_row: bool = False) -> Tensor:
    """NLL of completion tokens only (the prompt is context): the mean over all
    completion tokens of the batch, or with `per_row` each row's mean, [batch]."""
    nll = -next_token_logprobs(logits, input_ids)  # [batch, pos-1]
    m = completion_mask[:, 1:].to(nll.dtype)
    if per_row:
        return (nll * m).sum(1) / m.sum(1).clamp_min(1.0)
    return (nll * m).sum() / m.sum()


def target_mask(batch: Batch) -> Tensor:
    """Which next-token positions are completion tokens: [batch, pos-1] float."""
    return batch.completion_mask[:, 1:].float()


def grpo_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, clip_eps: float,
              normaliser: float, ref_logp: Tensor | None = None, kl_beta: float = 0.0):
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
        stats = {"clip_frac": ((clipped * mask).sum() / mask.sum().clamp_min(1)).item(),
                 "kl": kl.item()}
    return loss, stats
