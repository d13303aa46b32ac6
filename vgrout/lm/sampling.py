"""Sample completions from a causal LM, one place for every caller.

GRPO rollouts, evaluation, the organism's measurement and the labelled pools
for diagnostics all sample the same way; doing it in one function keeps their
temperatures, stop tokens and decoding identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from vgrout.lm.tokens import chat_prompt


@dataclass
class Samples:
    """Sampled rows, in the order prompt 0 x n, prompt 1 x n, ..."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    """Sampled ids up to and including the first eos (none if cut at the limit)."""
    texts: list[str]
    """Completions decoded without special tokens."""


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int = 1,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 64,
) -> Samples:
    """Sample `n` completions of each rendered prompt string; keep the exact ids."""
    flat = [t for t in prompts for _ in range(n)]
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = Samples([], [], [])
    for i in range(0, len(flat), batch_size):
        enc = tokenizer(
            flat[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(device)
        sampling = (
            dict(do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p)
            if temperature > 0
            else dict(do_sample=False)
        )
        gen = model.generate(
            **enc,
            **sampling,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
        )
        width = enc["input_ids"].shape[1]
        for row, mask in zip(gen.tolist(), enc["attention_mask"].tolist()):
            prompt = [t for t, m in zip(row[:width], mask) if m]
            comp = row[width:]
            if eos in comp:
                comp = comp[: comp.index(eos) + 1]
            out.prompt_ids.append(prompt)
            out.completion_ids.append(comp)
        out.texts.extend(
            tokenizer.batch_decode(
                [c for c in out.completion_ids[-len(gen) :]], skip_special_tokens=True
            )
        )
    model.train(was_training)
    return out


def sample(
    model,
    tokenizer,
    messages: Sequence,
    n: int = 1,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int | None = None,
) -> list[list[str]]:
    """Return `n` completions for each chat (list of messages or user text).

    Output[i][j] is the j-th completion of prompt i, cut at the first eos.
    """
    if seed is not None:
        torch.manual_seed(seed)
    texts = [chat_prompt(tokenizer, m) for m in messages]
    s = generate(model, tokenizer, texts, n, max_new_tokens, temperature, top_k, top_p, batch_size)
    return [s.texts[i * n : (i + 1) * n] for i in range(len(texts))]
