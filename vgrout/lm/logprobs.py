"""Token log-probs of a causal LM: next-token, per-position and completion-only NLL."""

from __future__ import annotations

import torch
from torch import Tensor

from vgrout.lm.tokens import Batch


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


def completion_nll(
    logits: Tensor, input_ids: Tensor, completion_mask: Tensor, per_row: bool = False
) -> Tensor:
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
