"""Forward passes that compute a group's shared prompt once.

All G rollouts of a GRPO group answer the same prompt, and on the organism the
prompt is ~130 of a row's ~230 tokens, so a left-padded batch of the group
spends most of its compute on G identical copies of it. Here the prompt runs
once with a KV cache, the cache is handed to every row, and only the
completions run batched (right-padded). Results come back in the left-padded
layout of `loss.token_logprobs` ([batch, pos-1]; positions that are not
completion targets hold 0), so the loss code reads them unchanged; measured
against the full batch they agree to float rounding (tests/test_prefix.py).

Route masks: a row's prompt activations depend on its zone (quarantine on or
off, deployed block live or detached), so the prompt runs once per distinct
(m, d) of the group — at most three — each under its own one-row mask; the
gradient through the shared prompt is then the sum over that zone's rows, as
in the full batch.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import Tensor

from vgrout.lm.logprobs import next_token_logprobs
from vgrout.lm.packed import to_left_padded
from vgrout.lm.tokens import Batch

ZoneContext = Callable[[list[int]], ContextManager]
"""Rows of the group -> the context to run a forward of just those rows in."""


@dataclass
class SharedPrompt:
    """One group as its prompt plus right-padded completions.

    prompt:          [1, P]        the shared prompt ids
    completion:      [batch, C]    completion ids, right-padded
    completion_mask: [batch, C]    1 on completion tokens
    width:           pos of the left-padded Batch it came from
    """

    prompt: Tensor
    completion: Tensor
    completion_mask: Tensor
    width: int


def split_shared_prompt(batch: Batch) -> SharedPrompt | None:
    """The group's shared prompt and its completions, or None if the rows' prompts differ."""
    plen = batch.prompt_len
    if not bool((plen == plen[0]).all()):
        return None
    n_comp = batch.completion_mask.sum(1)  # [batch]
    width, p = batch.input_ids.shape[1], int(plen[0])
    starts = width - n_comp - p
    prompts = torch.stack([batch.input_ids[i, s : s + p] for i, s in enumerate(starts.tolist())])
    if not bool((prompts == prompts[:1]).all()):
        return None
    c = int(n_comp.max())
    completion = torch.zeros((len(batch), c), dtype=batch.input_ids.dtype, device=prompts.device)
    mask = torch.zeros_like(completion)
    for i, k in enumerate(n_comp.tolist()):
        completion[i, :k] = batch.input_ids[i, width - k :]
        mask[i, :k] = 1
    return SharedPrompt(prompts[:1], completion, mask, width)


def _cache_name(model) -> str:
    """The forward's KV-cache argument: `cache` (transformers 5) or `past_key_values`."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def _rows_cache(caches: list, row_zone: Tensor):
    """One DynamicCache whose row i holds the prompt cache of zone row_zone[i]."""
    from transformers import DynamicCache

    out = DynamicCache()
    for layer in range(len(caches[0].layers)):
        keys = torch.cat([c.layers[layer].keys for c in caches])[row_zone]
        values = torch.cat([c.layers[layer].values for c in caches])[row_zone]
        out.update(keys, values, layer)
    return out


def _to_left_padded(lp: Tensor, sp: SharedPrompt) -> Tensor:
    """[batch, C] log-probs of completion tokens -> [batch, width-1] in the Batch layout."""
    return to_left_padded(lp, sp.completion_mask.sum(1), sp.width)


@dataclass
class PromptCache:
    """The prompt's KV cache per distinct zone, and its last-position logits.

    caches:  one KV cache per zone, each for a batch of 1
    first:   [zones, vocab] logits that score every row's first completion token
    row_zone: [batch] which zone each row belongs to
    """

    caches: list
    first: Tensor
    row_zone: Tensor


def prompt_cache(
    model, sp: SharedPrompt, zones: list | None = None, zone_context: ZoneContext | None = None
) -> PromptCache:
    """Run the prompt once per distinct zone (a hashable per row; None: one pass).

    zone_context(rows) is the context a forward over those rows runs in (the
    route masks of one row of that zone).
    """
    n = sp.completion.shape[0]
    zones = [None] * n if zones is None else list(zones)
    distinct = list(dict.fromkeys(zones))
    caches, first = [], []
    for z in distinct:
        row = [zones.index(z)]
        with zone_context(row) if zone_context else contextlib.nullcontext():
            out = model(input_ids=sp.prompt, use_cache=True, logits_to_keep=1)
        caches.append(out[_cache_name(model)])
        first.append(out.logits[:, -1])
    row_zone = torch.tensor([distinct.index(z) for z in zones], device=sp.prompt.device)
    return PromptCache(caches, torch.cat(first), row_zone)


def completion_logprobs(
    model, sp: SharedPrompt, pc: PromptCache, logits: bool = True
) -> Tensor | None:
    """Run the completions on the cached prompt: log-probs [batch, width-1] (Batch layout).

    With logits=False only the hidden states are computed (for forward hooks
    such as a feature capture over `sp.completion_mask`) and None is returned.
    """
    n = sp.completion.shape[0]
    ones = torch.ones(
        n, sp.prompt.shape[1], dtype=sp.completion_mask.dtype, device=sp.prompt.device
    )
    attn = torch.cat([ones, sp.completion_mask], 1)
    head = {} if logits else {"logits_to_keep": 1}
    out = model(
        input_ids=sp.completion,
        attention_mask=attn,
        **{_cache_name(model): _rows_cache(pc.caches, pc.row_zone)},
        **head,
    )
    if not logits:
        return None
    every = torch.cat([pc.first[pc.row_zone].unsqueeze(1), out.logits], 1)  # [batch, C+1, vocab]
    ids = torch.cat([sp.prompt[:, -1:].expand(n, 1), sp.completion], 1)  # last prompt token first
    return _to_left_padded(next_token_logprobs(every, ids), sp)
