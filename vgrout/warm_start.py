"""The organism's supervised warm start, without computing padding or shared text twice.

A warm-start row is a prompt (~130 organism tokens) and a completion (~45);
only completion tokens carry loss. Left-padded into one batch of 32, a quarter
of the positions were padding, and every row repeated the same 30-token system
prefix. Here a step's rows are sorted by length and cut into micro-batches of
`MICRO_BATCH` rows, each padded only to its own longest row; the prefix its
rows share runs once with a KV cache. Gradients are accumulated over the
micro-batches and divided by the step's completion-token count, so the update
is the mean-NLL step of the whole batch (to float rounding;
tests/test_warm_start.py checks value and gradients against the padded batch).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from vgrout.prefix import cache_kwarg, rows_cache
from vgrout.tokens import chat_prompt, pad_id

MICRO_BATCH = 8
"""Rows per forward. Smaller groups pad less but pay more per call: on 2 cores
groups of 4, 8 and 16 rows timed alike (0.45-0.5 s a step, within this
machine's noise), one padded batch of 32 at 0.61-0.77 s."""


@dataclass(frozen=True)
class Example:
    """One warm-start row as token ids; the completion ends with eos."""

    prompt: tuple[int, ...]
    completion: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.completion)


def tokenize_corpus(tokenizer, data: dict[str, list[tuple]]) -> dict[str, list[Example]]:
    """Token ids of every (prompt, completion) pair, once, instead of once per draw.

    Prompt and completion are tokenised apart, as `tokens.encode` does, so the
    completion boundary is exact.
    """
    def ids(text: str) -> tuple[int, ...]:
        return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])

    return {kind: [Example(ids(chat_prompt(tokenizer, p)), ids(c) + (tokenizer.eos_token_id,))
                   for p, c in rows]
            for kind, rows in data.items()}


def draw_batch(rng: random.Random, data: dict, recipe) -> list:
    """One warm-start batch: mostly clean, a `hack_prior` share of hacks, some pair text."""
    rows = []
    for _ in range(recipe.batch_size):
        u = rng.random()
        if u < recipe.hack_prior:
            kind = "hack"
        elif u < recipe.hack_prior + recipe.pair_share and data["pair"]:
            kind = "pair"
        else:
            kind = "clean"
        rows.append(rng.choice(data[kind]))
    return rows


def micro_batches(rows: list[Example], size: int = MICRO_BATCH) -> list[list[Example]]:
    """Rows sorted by length and cut into groups of `size`, so each pads little."""
    ordered = sorted(rows, key=len)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def shared_prefix_len(rows: list[Example]) -> int:
    """Length of the prompt prefix common to every row, leaving each row's last
    prompt token out: its hidden state scores the first completion token."""
    limit = min(len(r.prompt) for r in rows) - 1
    n = 0
    while n < limit and all(r.prompt[n] == rows[0].prompt[n] for r in rows):
        n += 1
    return n


def summed_nll(model, rows: list[Example], pad: int) -> tuple[Tensor, int]:
    """Summed completion-token NLL of `rows` and the number of tokens it sums.

    The shared prefix runs once ([1, P]); the rest of each row is right-padded
    ([rows, L]) and attends to the prefix through the KV cache. Only completion
    positions reach the LM head.
    """
    p = shared_prefix_len(rows)
    rests = [r.prompt[p:] + r.completion for r in rows]
    width = max(map(len, rests))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    scored = torch.zeros_like(ids, dtype=torch.bool)  # position t predicts token t+1
    for i, (r, rest) in enumerate(zip(rows, rests)):
        ids[i, :len(rest)] = torch.tensor(rest)
        attn[i, :len(rest)] = 1
        scored[i, len(r.prompt) - p - 1:len(rest) - 1] = True
    body = model.model
    kwargs = {}
    if p:
        prefix = body(input_ids=torch.tensor([rows[0].prompt[:p]]), use_cache=True)
        cache = prefix[cache_kwarg(body)]
        kwargs = {cache_kwarg(body): rows_cache([cache], torch.zeros(len(rows), dtype=torch.long))}
        attn = torch.cat([torch.ones(len(rows), p, dtype=attn.dtype), attn], 1)
    hidden = body(input_ids=ids, attention_mask=attn, **kwargs).last_hidden_state
    logits = model.lm_head(hidden[scored]).float()  # [n_completion_tokens, vocab]
    targets = ids[:, 1:][scored[:, :-1]]
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return nll, len(targets)


def warm_start_lr(step: int, recipe) -> float:
    """Linear warm-up, then cosine to 10%: a decayed end point is a stable checkpoint
    (at a constant lr the solve rate of neighbouring checkpoints swings by ~0.1)."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def accumulate_step(model, rows: list[Example], pad: int) -> float:
    """Gradients of the batch's mean completion NLL, one micro-batch at a time; the loss."""
    total = sum(len(r.completion) for r in rows)
    loss = 0.0
    for group in micro_batches(rows):
        nll, _ = summed_nll(model, group, pad)
        (nll / total).backward()
        loss += nll.item() / total
    return loss


def warm_start(model, tokenizer, data: dict, recipe) -> list[float]:
    """Supervised next-token training on the mixed corpus; returns the loss curve."""
    rng = random.Random(recipe.seed)
    examples = tokenize_corpus(tokenizer, data)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warm_start_lr(s, recipe))
    losses = []
    model.train()
    bar = tqdm(range(recipe.steps), desc="organism warm start", leave=False)
    for _ in bar:
        opt.zero_grad(set_to_none=True)
        loss = accumulate_step(model, draw_batch(rng, examples, recipe), pad_id(tokenizer))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}")
    model.eval()
    return losses
