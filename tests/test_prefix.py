"""Shared-prompt passes equal the full left-padded batch: log-probs, gradients, features."""

from __future__ import annotations

import torch
from helpers import (
    PAIRS,
    ByteTokenizer,
    assert_matches_full_batch,
    block_grads,
    model_tol,
    perturb_blocks,
    tiny_qwen3,
)

from vgrout.adapters import ablate_quarantine, attach_routed_adapters, route
from vgrout.directions.capture import capture_in_forward
from vgrout.lm.logprobs import target_mask, token_logprobs
from vgrout.lm.prefix import completion_logprobs, prompt_cache, split_shared_prompt
from vgrout.lm.tokens import from_ids

PROMPT = [5, 9, 17, 33, 2, 70, 71, 8, 100, 42, 43, 11]
COMPLETIONS = [[20, 21, 22, 1], [30, 1], [40, 41, 42, 43, 44, 45, 1], [50, 51, 1]]
M, D = [0, 1, 1, 1], [0, 0, 1, 1]  # keep, absorb, route, route


def model():
    m = attach_routed_adapters(
        tiny_qwen3(0), r=4, init="gaussian", pairs=PAIRS, tokenizer=ByteTokenizer()
    )
    perturb_blocks(m)
    return m


def group():
    return from_ids([PROMPT] * len(COMPLETIONS), COMPLETIONS, pad=0)


def test_split_finds_the_prompt_and_refuses_mixed_prompts():
    sp = split_shared_prompt(group())
    assert sp.prompt.tolist() == [PROMPT]
    assert sp.completion[2].tolist() == COMPLETIONS[2]
    assert sp.completion[1].tolist() == COMPLETIONS[1] + [0] * 5
    assert sp.completion_mask.sum(1).tolist() == [len(c) for c in COMPLETIONS]
    other = from_ids([PROMPT, PROMPT[:-1] + [99]], COMPLETIONS[:2], pad=0)
    assert split_shared_prompt(other) is None
    assert split_shared_prompt(from_ids([PROMPT, PROMPT[1:]], COMPLETIONS[:2], pad=0)) is None


def test_masked_logprobs_and_gradients_equal_the_full_batch():
    m, batch = model(), group()
    mask = target_mask(batch)
    mt, dt = torch.tensor(M), torch.tensor(D)
    with route(m, mt, dt):
        want = token_logprobs(m, batch)
        (want * mask).sum().backward()
    want_grads = block_grads(m)
    m.zero_grad(set_to_none=True)
    sp = split_shared_prompt(batch)
    pc = prompt_cache(m, sp, list(zip(M, D)), lambda rows: route(m, mt[rows], dt[rows]))
    assert len(pc.caches) == 3  # keep, absorb, route: one prompt pass each
    with route(m, mt, dt):
        got = completion_logprobs(m, sp, pc)
    (got * mask).sum().backward()
    assert_matches_full_batch(m, got, want, mask, want_grads, batch.input_ids.numel())


def test_completion_features_equal_the_full_batch_capture():
    m, batch = model(), group()
    sp = split_shared_prompt(batch)
    with torch.no_grad(), ablate_quarantine(m):
        with capture_in_forward(m, batch.completion_mask) as full:
            m(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        pc = prompt_cache(m, sp)
        with capture_in_forward(m, sp.completion_mask) as shared:
            assert completion_logprobs(m, sp, pc, logits=False) is None
        assert shared.forwards == 1
    torch.testing.assert_close(shared.features, full.features, **model_tol(full.features))
