"""The fused decode loop: what it adds to the lean one.

Rows that finish leave the batch (the cache shrinks to the live rows), the
uniforms are the lean loop's, the projections are read as weights, and a
model whose projections cannot be read falls back to the lean loop loudly.
The shared checks against `model.generate` and the full-sequence forward run
on both loops in test_decode.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers import model_tol
from test_decode import (
    PAD,
    full_sequence_logits,
    logit_tolerance,
    routed_tiny,
    tiny_prompts,
    tiny_qwen3,
)
from torch import nn

from vgrout.lm import decode, fused, kvcache, projections, qwen3, sampling
from vgrout.lm.spec import SamplingSpec

torch.set_num_threads(1)


def stopping_token(model, prompts, n: int, steps: int, seed: int) -> int:
    """The token that, as eos, frees the most of the [groups, n] layout while leaving a row
    running: the rows that sample it (eos off) end at different steps, and the layout shrinks."""
    torch.manual_seed(seed)
    free = decode.decode(model, prompts, n, SamplingSpec(steps), -1, PAD).tokens
    vocab = model.config.vocab_size
    has = torch.stack([(free == tok).any(1) for tok in range(vocab)]).view(vocab, -1, n)
    left = (~has).sum(2)  # [vocab, groups]: rows of each group still running at the end
    area = (left > 0).sum(1) * left.max(1).values
    area[left.sum(1) == 0] = free.numel()  # it would end every row
    return int(area.argmin())


@pytest.fixture
def shrinks(monkeypatch):
    """How many times a decode call shrank its cache."""
    seen = []
    real = fused.shrink

    def spy(*args):
        out = real(*args)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(fused, "shrink", spy)
    return seen


def test_rows_that_finish_leave_and_the_rest_keep_their_tokens_and_logits(shrinks):
    """Same seed, same uniforms: the lean loop's tokens, with rows finishing at different steps.

    The two loops differ by rounding only (~1e-6 of the logits), so a token
    differs only if a uniform falls that close to a boundary of the
    cumulative mass: for these ~1000 draws, odds of order 1e-3.
    """
    model, prompts, n, steps = tiny_qwen3(), tiny_prompts((5, 11, 3, 8, 6, 9)), 2, 30
    eos = stopping_token(model, prompts, n, steps, seed=0)
    torch.manual_seed(0)
    want = decode.decode(model, prompts, n, SamplingSpec(steps), eos, PAD).tokens
    torch.manual_seed(0)
    got = fused.decode(model, prompts, n, SamplingSpec(steps), eos, PAD, keep_logits=True)
    assert any(shrinks), "no row finished early enough for the layout to shrink"
    ended = (want == eos).any(1)
    assert ended.any() and not ended.all()
    assert torch.equal(got.tokens, want)
    live = torch.ones(want.shape, dtype=torch.bool)
    live[:, 1:] = (want[:, :-1] == eos).cumsum(1) == 0
    full = full_sequence_logits(model, prompts, n, got.tokens)
    err = (got.logits - full).abs().amax(-1)[live].max()
    assert err <= logit_tolerance(full, torch.float32, model.config.num_hidden_layers)


def test_shrink_moves_live_rows_with_their_cache_and_drops_empty_groups():
    g, n, steps, filled = 3, 4, 6, 3
    layers, kv, width, hd = 2, 2, 5, 4
    gen = torch.Generator().manual_seed(0)
    cache = kvcache.KVCache(
        torch.randn(layers, g, kv, width, hd, generator=gen),
        torch.randn(layers, g, kv, width, hd, generator=gen),
        torch.randn(g, 1, 1, 1, width, generator=gen),
        torch.randn(layers, g, kv, n, steps, hd, generator=gen),
        torch.randn(layers, g, kv, n, steps, hd, generator=gen),
    )
    slots = torch.arange(g * n).view(g, n)
    live = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    small, new_slots = fused.shrink(cache, slots, live, filled - 1)
    assert new_slots.tolist() == [[1, -1], [8, 10]]  # group 1 dropped, live rows first
    assert torch.equal(small.prompt_k, cache.prompt_k[:, [0, 2]])
    assert torch.equal(small.prompt_bias, cache.prompt_bias[[0, 2]])
    for gi, old_g in enumerate([0, 2]):
        for j, row in enumerate(new_slots[gi].tolist()):
            if row >= 0:
                want = cache.new_v[:, old_g, :, row % n, :filled]
                assert torch.equal(small.new_v[:, gi, :, j, :filled], want)
    nearly_all = torch.ones(g, n, dtype=torch.bool)
    nearly_all[0, 0] = False
    assert fused.shrink(cache, slots, nearly_all, filled - 1) is None, "1/12 freed: keep the layout"


def test_projection_weights_are_read_or_refused():
    lin = nn.Linear(4, 3, bias=False)
    assert projections.projection_weight(lin, "x") is lin.weight
    with pytest.raises(TypeError, match="x has a bias"):
        projections.projection_weight(nn.Linear(4, 3), "x")
    lin.forward = lambda x: x
    with pytest.raises(TypeError, match="forward replaced"):
        projections.projection_weight(lin, "x")
    model = tiny_qwen3()
    assert fused.supports(model)
    handle = model.model.layers[0].mlp.register_forward_hook(lambda *a: None)
    assert qwen3.supports(model) and not fused.supports(model), "a hook the step bypasses"
    handle.remove()


def test_a_routed_model_outside_a_merged_view_falls_back_to_the_lean_loop(monkeypatch):
    from helpers import ByteTokenizer

    model = routed_tiny()
    calls = []
    monkeypatch.setattr(sampling, "_generate_lean", lambda *a, loop: calls.append(loop))
    with pytest.warns(UserWarning, match="decoder='fused' does not support .*; using 'lean'"):
        sampling.generate(model, ByteTokenizer(), ["ab"], 2, SamplingSpec(3, decoder="fused"))
    assert calls == [decode.decode]


def test_taps_pool_the_bottleneck_a_trained_view_capture_pools(shrinks):
    """Sampling with the deployed block's A beside each merged projection yields, per row,
    the deployed bottleneck A·x pooled over its completion tokens (eos included) as a
    capture of the trained view pools it, for rows ended by eos and by the length cap."""
    from test_decode import routed_tiny

    from vgrout.adapters import bottleneck_taps, merged_for_generation
    from vgrout.directions.capture import capture_in_forward
    from vgrout.lm.sampling import cut_at_eos
    from vgrout.lm.tokens import from_ids

    model, prompts, n, steps = routed_tiny(), tiny_prompts((5, 11, 3, 8, 6, 9)), 2, 30
    eos = stopping_token(model, prompts, n, steps, seed=0)
    taps = bottleneck_taps(model)
    torch.manual_seed(0)
    with merged_for_generation(model, "trained"):
        got = fused.decode(model, prompts, n, SamplingSpec(steps), eos, PAD, taps=taps)
    comps = [cut_at_eos(row, eos) for row in got.tokens.tolist()]
    ended = [c[-1] == eos for c in comps]
    assert any(ended) and not all(ended), "rows must end both ways"
    assert any(shrinks), "finished rows must leave the batch (after their eos is read)"
    batch = from_ids([p for p in prompts for _ in range(n)], comps, PAD)
    with torch.no_grad(), capture_in_forward(model, batch.completion_mask) as cap:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    want = cap.features  # [rows, modules, r], the trained view (both blocks, unmerged)
    assert got.features is not None
    torch.testing.assert_close(got.features.view(want.shape), want, **model_tol(want))
