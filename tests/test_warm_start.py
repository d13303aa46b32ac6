"""The warm start's micro-batched, prefix-shared loss is the padded batch's loss."""

import random

import pytest
import torch

from vgrout import organism, warm_start
from vgrout.models import load_policy
from vgrout.tokens import chat_prompt, encode, pad_id


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return load_policy("organism")


@pytest.fixture(scope="module")
def examples(policy):
    data = organism.corpus(organism.OrganismRecipe())
    return data, warm_start.tokenize_corpus(policy[1], data)


def _padded_mean_nll(model, tok, pairs):
    """Reference: one left-padded batch, full LM head, mean over completion tokens."""
    b = encode(tok, [chat_prompt(tok, p) for p, _ in pairs], [c for _, c in pairs])
    logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, :-1]
    scored = b.completion_mask[:, 1:].bool()
    return torch.nn.functional.cross_entropy(logits[scored], b.input_ids[:, 1:][scored])


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_accumulated_step_equals_the_padded_batch(policy, examples):
    model, tok = policy
    data, ex = examples
    # clean and hack rows share the system prefix, pair rows do not; a row drawn
    # twice shares its whole prompt, which must still leave its last token to score.
    picks = [("clean", i) for i in (0, 5, 9, 40, 77)] + [("hack", 3), ("hack", 3), ("pair", 0),
                                                          ("pair", 1)] + [("clean", 100 + i) for i in range(9)]
    pairs = [data[k][i] for k, i in picks]
    rows = [ex[k][i] for k, i in picks]
    model.zero_grad()
    loss = warm_start.accumulate_step(model, rows, pad_id(tok))
    ours = _grads(model)
    model.zero_grad()
    ref = _padded_mean_nll(model, tok, pairs)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(ours, _grads(model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    model.zero_grad()


def test_micro_batches_share_a_prefix_and_keep_every_row(examples):
    _, ex = examples
    rng = random.Random(0)
    rows = [rng.choice(ex["clean"]) for _ in range(32)]
    groups = warm_start.micro_batches(rows)
    assert sorted(map(id, rows)) == sorted(id(r) for g in groups for r in g)
    assert all(len(g) <= warm_start.MICRO_BATCH for g in groups)
    # the chat template's system turn is common to every problem prompt
    assert all(warm_start.shared_prefix_len(g) >= 20 for g in groups)
    twice = [ex["hack"][3], ex["hack"][3]]
    assert warm_start.shared_prefix_len(twice) == len(ex["hack"][3].prompt) - 1
