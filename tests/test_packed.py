"""The packed stream computes what the per-group passes compute: log-probs, gradients, features."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
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

from vgrout.adapters import attach_routed_adapters, route, trainable_parameters
from vgrout.grpo.gate import Gated
from vgrout.grpo.passes import (
    deployed_pass,
    deployed_pass_packed,
    group_batch,
    pack_groups,
    packed_forward_ok,
)
from vgrout.grpo.policy import Policy
from vgrout.grpo.presets import preset
from vgrout.grpo.rollouts import Group, Rollout
from vgrout.grpo.update import group_backward, packed_backward
from vgrout.grpo.zones import zone_masks
from vgrout.lm import packed
from vgrout.lm.logprobs import target_mask, token_logprobs
from vgrout.lm.tokens import from_ids

PROMPTS = [[5, 9, 17, 33, 2, 70, 71, 8, 100, 42, 43, 11], [7, 7, 64, 3, 90, 12, 13]]
COMPLETIONS = [
    [[20, 21, 22, 1], [30, 1], [40, 41, 42, 43, 44, 45, 1], [50, 51, 1]],
    [[60, 61, 62, 63, 64, 1], [70, 1], [80, 81, 82, 1], [90, 91, 92, 93, 1]],
]
ZONES = [["keep", "absorb", "route", "route"], ["absorb", "absorb", "route", "keep"]]
SAMPLERS = [["trained", "deployed", "trained", "trained"], ["trained"] * 4]
REWARDS = [[3.5, 0.5, 0.0, 3.5], [0.5, 3.5, 3.5, 0.0]]


def model():
    m = attach_routed_adapters(
        tiny_qwen3(0), r=4, init="gaussian", pairs=PAIRS, tokenizer=ByteTokenizer()
    )
    perturb_blocks(m)
    return m


def policy(m) -> Policy:
    return Policy(m, trainable_parameters(m), routed=True)


def groups(m) -> list[Gated]:
    """The gate's records of two groups, zones fixed (ZONES), no deployed-view log-probs yet."""
    out = []
    for gi, prompt in enumerate(PROMPTS):
        rs = [
            Rollout(f"p{gi}", "run_tests", prompt, c, "", s, reward=r)
            for c, s, r in zip(COMPLETIONS[gi], SAMPLERS[gi], REWARDS[gi])
        ]
        g = Group(SimpleNamespace(id=f"p{gi}"), "run_tests", rs)
        out.append(Gated(g, group_batch(g, 0, m.device), list(ZONES[gi])))
    return out


def rows():
    prompts = [p for p, cs in zip(PROMPTS, COMPLETIONS) for _ in cs]
    return prompts, [c for cs in COMPLETIONS for c in cs], [z for zs in ZONES for z in zs]


def test_pack_lays_out_units_then_completions():
    prompts, comps, zones = rows()
    pk = packed.pack(prompts, comps, keys=zones)
    # group 0 has three zones, group 1 three (absorb, route, keep): six prompt units
    assert pk.prompt_index.shape[0] == 6
    n_prompt = sum(len(PROMPTS[0]) for z in set(ZONES[0])) + sum(
        len(PROMPTS[1]) for z in set(ZONES[1])
    )
    assert len(pk.ids) == n_prompt + sum(map(len, comps))
    first = pk.comp_index[0, : len(comps[0])]
    assert pk.ids[first].tolist() == comps[0]
    assert pk.pos[first].tolist() == list(range(len(PROMPTS[0]), len(PROMPTS[0]) + 4))
    # the first target of row 0 is scored at the last token of its unit's prompt
    unit = int(pk.row_unit[0])
    last = pk.prompt_index[unit, len(PROMPTS[0]) - 1]
    assert int(pk.pred_index[0]) == int(last) and pk.targets[:4].tolist() == comps[0]
    m = torch.tensor([float(i) for i in range(len(comps))])
    per_token = pk.token_masks(m)
    assert per_token[first].tolist() == [0.0] * 4
    assert per_token[pk.comp_index[5, :2]].tolist() == [5.0, 5.0]
    assert len(packed.pack(prompts, comps).prompt_index) == 2  # no keys: one unit per prompt


def test_length_buckets_pad_each_row_only_to_its_bucket():
    """Rows go to buckets by length; every completion token is attended exactly once and
    comes back in stream order; the padded work is less than one call's."""
    prompts, comps, zones = rows()
    pk = packed.pack(prompts, comps, keys=zones)
    b = packed.length_buckets(pk.comp_valid, pk.comp_index, count=3)
    lengths = [len(c) for c in comps]
    assert sorted(torch.cat(b.rows).tolist()) == list(range(len(comps)))
    for r, w in zip(b.rows, b.widths):
        assert w == max(lengths[i] for i in r.tolist())
    assert max(lengths[i] for i in b.rows[0].tolist()) <= min(lengths[i] for i in b.rows[1])
    padded = sum(len(r) * w for r, w in zip(b.rows, b.widths))
    assert sum(lengths) <= padded < len(comps) * max(lengths)
    tokens = torch.cat(
        [pk.comp_index[r, :w][pk.comp_valid[r, :w]] for r, w in zip(b.rows, b.widths)]
    )
    start = len(pk.ids) - sum(lengths)
    assert tokens[b.order].tolist() == list(range(start, len(pk.ids)))


def test_pack_refuses_bad_rows():
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        packed.pack([[1], [2]], [[3]])
    with pytest.raises(ValueError, match="empty prompt"):
        packed.pack([[]], [[3]])


def test_packed_logprobs_and_gradients_equal_the_routed_batch():
    m = model()
    prompts, comps, zones = rows()
    batch = from_ids(prompts, comps, pad=0)
    mask = target_mask(batch)
    mt, dt = zone_masks(zones)
    with route(m, mt, dt):
        want = token_logprobs(m, batch)
        (want * mask).sum().backward()
    want_grads = block_grads(m)
    m.zero_grad(set_to_none=True)
    pk = packed.pack(prompts, comps, keys=zones)
    with route(m, pk.token_masks(mt), pk.token_masks(dt)):
        lp = packed.forward(m, pk)
        got = packed.to_left_padded(lp, batch.completion_mask.sum(1), batch.input_ids.shape[1])
        (got * mask).sum().backward()
    assert_matches_full_batch(m, got, want, mask, want_grads, batch.input_ids.numel())


def test_packed_backward_equals_group_backward():
    """Loss, stats and every gradient of the packed update equal the per-group update's.

    The groups mix all three zones, a deployed-sampled row trained with the
    quarantine on, trained-sampled rows trained in keep, and the KL term, so
    every source of old and reference log-probs is exercised.
    """
    m = model()
    pol, cfg = policy(m), preset("smoke", kl_beta=0.05, clip_eps=0.2)
    gs = groups(m)
    for g in gs:
        g.deployed_logp, _ = deployed_pass(pol, g, g.batch, None)
    want = [group_backward(pol, g, cfg, 1000.0, 1) for g in gs]
    want_grads = block_grads(m)
    m.zero_grad(set_to_none=True)
    got = packed_backward(pol, gs, cfg, 1000.0, 1)
    tokens = sum(len(c) for cs in COMPLETIONS for c in cs)
    for g, w in zip(block_grads(m), want_grads):
        tol = model_tol(w, backward=True, tokens=max(m.config.vocab_size, tokens))
        torch.testing.assert_close(g, w, **tol)
    atol = loss_tol(pol, gs, cfg, 1000.0)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        torch.testing.assert_close(a["loss"], b["loss"], atol=atol, rtol=0)
        assert a["kl"] > 0


def loss_tol(pol, gs, cfg, normaliser: float) -> float:
    """How far two computations of a group's loss may differ.

    A log-prob moves by at most `lp`, its own tolerance (log-softmax over the
    vocabulary). A loss term ratio x adv moves by ratio x |adv| x 2 lp (the
    ratio reads the new and the old log-prob), a KL term k3 by |e^d - 1| x 2 lp;
    the loss sums them over the group's target tokens and divides by the
    normaliser. Ratio and d are bounded by the largest log-prob gap between
    the trained, deployed and reference views on these rows.
    """
    m = pol.model
    with torch.no_grad():
        views = []
        for g in gs:
            trained = token_logprobs(m, g.batch)
            with pol.reference():
                ref = token_logprobs(m, g.batch)
            views.append((trained, g.deployed_logp, ref, target_mask(g.batch)))
    lp = max(model_tol(t, tokens=m.config.vocab_size)["atol"] for t, _, _, _ in views)
    gap = max(
        float(((t - x).abs() * k).max())
        for t, dep, r, k in views
        for x in (dep, r)
        if x is not None
    )
    adv = max(float((g.rewards() - g.rewards().mean()).abs().max()) for g in gs)
    n = max(float(k.sum()) for _, _, _, k in views)
    per_token = math.exp(gap) * adv + cfg.kl_beta * math.expm1(gap)
    return n * per_token * 2 * lp / normaliser


def test_packed_gate_pass_equals_the_deployed_pass():
    m = model()
    pol = policy(m)
    gs = groups(m)
    want = [deployed_pass(pol, g, g.batch, "bottleneck") for g in gs]
    got = deployed_pass_packed(pol, gs, [g.batch for g in gs], "bottleneck")
    for (got_logp, got_feats), (logp, feats) in zip(got, want):
        torch.testing.assert_close(got_feats, feats, **model_tol(feats))
        if logp is None:
            assert got_logp is None
        else:
            tol = model_tol(logp, tokens=m.config.vocab_size)
            torch.testing.assert_close(got_logp, logp, **tol)
    assert got[0][0] is not None and got[1][0] is None


def test_packed_falls_back_loudly_where_it_does_not_apply():
    m = model()
    cfg = preset("smoke")
    assert packed_forward_ok(policy(m), cfg)
    assert not packed_forward_ok(policy(m), cfg.replace(forward="hf"))
    layer = m.get_base_model().model.layers[0]
    hook = layer.register_forward_hook(lambda *a: None)  # a hook the stream would bypass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not packed_forward_ok(policy(m), cfg)
    hook.remove()
    assert any("per-group forward" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="forward='fast'"):
        preset("smoke", forward="fast")


def test_pack_groups_keeps_group_order():
    m = model()
    gs = groups(m)
    pk = pack_groups(gs, m.device)
    assert pk.n_rows == 8 and pk.prompt_index.shape[0] == 2
    assert pk.ids[pk.comp_index[4, :6]].tolist() == COMPLETIONS[1][0]


def test_stream_direction_equals_extract_directions():
    """The router's packed refresh gives `extract_directions`' direction.

    Each row of the direction is a unit mean difference of features, so the
    features' rounding moves it by at most twice that rounding over the row's
    mean-difference norm.
    """
    from vgrout.adapters import ablate_quarantine
    from vgrout.directions.capture import capture_texts
    from vgrout.directions.extract import extract_directions, pair_stream, stream_direction

    m, tok = model(), ByteTokenizer()
    with torch.no_grad(), ablate_quarantine(m):
        want = extract_directions(m, tok, PAIRS, sites=("bottleneck",))["bottleneck"]
        got = stream_direction(m, pair_stream(tok, PAIRS))
        prompts = [p.prompt for p in PAIRS]
        sides = [
            capture_texts(m, tok, prompts, [getattr(p, s) for p in PAIRS], sites=("bottleneck",))
            for s in ("hack", "clean")
        ]
    feats = torch.cat([c["bottleneck"] for c in sides])
    diff = (sides[0]["bottleneck"] - sides[1]["bottleneck"]).mean(0).norm(dim=-1)
    tol = 2 * model_tol(feats)["atol"] / float(diff.min()) + torch.finfo(torch.float32).eps
    assert want.shape == got.shape
    torch.testing.assert_close(got, want, atol=tol, rtol=0)


def test_group_passes_split_a_step_or_keep_it_whole():
    from vgrout.grpo.passes import group_passes

    assert group_passes(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert group_passes(list("abc"), 0) == [["a", "b", "c"]]
    assert group_passes([], 0) == []
