"""Tokenise (prompt, completion) pairs into one left-padded batch.

Every consumer of completions (direction extraction, adapter inits, the gate,
the GRPO loss) needs the same three tensors, and the same answer to "which
positions are completion tokens?". Getting that wrong by one position silently
pools a prompt token into every activation, so it lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class Batch:
    """A left-padded batch of prompt + completion token ids.

    input_ids:       [batch, pos]  token ids, pad on the left
    attention_mask:  [batch, pos]  1 on real tokens
    completion_mask: [batch, pos]  1 on completion tokens only
    prompt_len:      [batch]       number of real prompt tokens per row
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    prompt_len: Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            *(
                t.to(device)
                for t in (
                    self.input_ids,
                    self.attention_mask,
                    self.completion_mask,
                    self.prompt_len,
                )
            )
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def chat_prompt(tokenizer, messages: Sequence[dict] | str) -> str:
    """Render chat messages (or a bare user string) with the generation prompt."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


def encode(
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    max_completion_tokens: int | None = None,
) -> Batch:
    """Tokenise rendered prompts and raw completions separately, then join.

    Prompt and completion are tokenised apart so the boundary is exact (BPE
    merges across the seam would otherwise move it). An eos token closes each
    completion, as the policy emitted it when sampling.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"encode: {len(prompts)} prompts but {len(completions)} completions")
    p_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    c_ids = [
        tokenizer(c, add_special_tokens=False)["input_ids"][:max_completion_tokens]
        + [tokenizer.eos_token_id]
        for c in completions
    ]
    return from_ids(p_ids, c_ids, pad_id(tokenizer))


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def from_ids(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad: int
) -> Batch:
    """Left-pad token-id rows (prompt then completion) into one Batch.

    Sampled rollouts come here with the exact ids the sampler produced:
    re-tokenising decoded text can give other ids, and the PPO ratio must be
    computed on the tokens that were actually sampled.
    """
    width = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
    n = len(prompt_ids)
    ids = torch.full((n, width), pad, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    comp = torch.zeros((n, width), dtype=torch.long)
    plen = torch.zeros(n, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        start = width - len(p) - len(c)
        ids[i, start:] = torch.tensor(list(p) + list(c), dtype=torch.long)
        attn[i, start:] = 1
        comp[i, width - len(c) :] = 1
        plen[i] = len(p)
    return Batch(ids, attn, comp, plen)


def pool_completion(acts: Tensor, completion_mask: Tensor) -> Tensor:
    """Mean over completion positions, in at least float32.

    acts: [batch, pos, d] -> [batch, d]. Rows with no completion tokens give 0.
    A bf16 model's activations are pooled in float32 (bf16's 8-bit mantissa is
    too coarse for a sum over hundreds of tokens); float32 and float64 keep
    their dtype.
    """
    if acts.shape[:2] != completion_mask.shape:
        raise ValueError(
            f"pool_completion: activations {tuple(acts.shape[:2])} do not match "
            f"completion mask {tuple(completion_mask.shape)}"
        )
    dtype = torch.promote_types(acts.dtype, torch.float32)
    m = completion_mask.to(dtype).unsqueeze(-1)  # [batch, pos, 1]
    return (acts.to(dtype) * m).sum(1) / m.sum(1).clamp_min(1.0)
