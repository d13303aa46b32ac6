"""Sample completions from a causal LM, one place for every caller.

GRPO rollouts, evaluation, the organism's measurement and the labelled pools
for diagnostics all sample the same way; doing it in one function keeps their
temperatures, stop tokens and decoding identical.
"""

from __future__ import annotations

from typing import Sequence

import torch

from vgrout.tokens import chat_prompt


@torch.no_grad()
def sample(model, tokenizer, messages: Sequence, n: int = 1, max_new_tokens: int = 128,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           batch_size: int = 64, seed: int | None = None) -> list[list[str]]:
    """Return `n` sampled completions for each chat (list of messages or user text).

    Output[i][j] is the j-th completion of prompt i, decoded without special
    tokens and cut at the first eos. Sampling is batched over prompts x n.
    """
    if seed is not None:
        torch.manual_seed(seed)
    texts = [chat_prompt(tokenizer, m) for m in messages]
    flat = [t for t in texts for _ in range(n)]
    out: list[str] = []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for i in range(0, len(flat), batch_size):
        enc = tokenizer(flat[i:i + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        gen = model.generate(
            **enc, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
            top_k=top_k if temperature > 0 else None, top_p=top_p if temperature > 0 else None,
            max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = gen[:, enc["input_ids"].shape[1]:]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    model.train(was_training)
    return [out[i * n:(i + 1) * n] for i in range(len(texts))]
