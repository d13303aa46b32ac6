"""The key adapter guarantees again on the project's pre-trained organism and its
authored hack/clean pairs: identity at init, exact zone gradients, seed
placement, reference and export equality."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    independent_pooled_inputs,
    init_statistics,
    model_tol,
    perturb_blocks,
    stored_tol,
)

from vgrout.adapters import (
    INITS,
    ablate_quarantine,
    attach_routed_adapters,
    export_deployed,
    merged_for_generation,
    reference_policy,
    route,
    trainable_parameters,
)

N_PAIRS = 8
# Each equality holds exactly in exact arithmetic; the only slack is rounding,
# bounded by `rounding_tol` from the compared logits' magnitude (~15), the dtype,
# the organism's depth and its MLP width. Each is asserted in float32 and again
# in float64, where the same bound is ~1e-12: the RMSNorms then run in float64
# too (`norms_in_model_dtype`), or float32 rounding inside them would set the
# float64 slack instead.
DTYPES = [torch.float32, torch.float64]

pytestmark = pytest.mark.usefixtures("norms_in_model_dtype")


@pytest.fixture(scope="module")
def organism():
    """(loader of fresh organism copies, tokenizer, pairs, batch of pair texts)."""
    from vgrout import paths
    from vgrout.env.pairs import load_pairs
    from vgrout.lm.load import load_policy
    from vgrout.lm.tokens import chat_prompt, encode

    model, tok = load_policy("organism", device="cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def fresh(dtype=torch.float32):
        m, _ = load_policy("organism", device="cpu")
        m.load_state_dict(state)
        return m.to(dtype).eval()

    pairs = load_pairs(str(paths.PAIRS))[:N_PAIRS]
    prompts = [chat_prompt(tok, p.prompt) for p in pairs[:2]]
    batch = encode(tok, prompts * 2, [p.hack for p in pairs[:2]] + [p.clean for p in pairs[:2]])
    return fresh, tok, pairs, batch


def attach(organism, init, r=8, dtype=torch.float32):
    fresh, tok, pairs, _ = organism
    return attach_routed_adapters(fresh(dtype), r=r, init=init, pairs=pairs, tokenizer=tok)


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def tol(reference, model, **kw):
    """`model_tol` for two computations of `reference` through the organism."""
    return model_tol(
        reference, model.config.num_hidden_layers, model.config.intermediate_size, **kw
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("init", INITS)
def test_organism_identity_at_init_in_every_zone_and_view(organism, init, dtype):
    model, batch = attach(organism, init, dtype=dtype), organism[3]
    base_logits = logits(organism[0](dtype), batch)
    bound = tol(base_logits, model)
    for m, d in ((0, 0), (1, 0), (1, 1)):
        with route(model, torch.full((4,), m), torch.full((4,), d)):
            torch.testing.assert_close(logits(model, batch), base_logits, **bound)
    with ablate_quarantine(model):
        torch.testing.assert_close(logits(model, batch), base_logits, **bound)
    for view in ("trained", "deployed"):
        with merged_for_generation(model, view):
            torch.testing.assert_close(logits(model, batch), base_logits, **bound)
    with reference_policy(model):
        assert torch.equal(logits(model, batch), base_logits)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "_0." in n)


def test_organism_zone_gradients_exact_and_additive(organism):
    model, batch = attach(organism, "scorda"), organism[3]
    perturb_blocks(model, scale=0.02)
    m, d = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 0])

    def grads(rows):
        model.zero_grad(set_to_none=True)
        with route(model, m[rows], d[rows]):
            out = model(
                input_ids=batch.input_ids[rows], attention_mask=batch.attention_mask[rows]
            ).logits
            logp = torch.log_softmax(out[:, :-1], -1).gather(-1, batch.input_ids[rows, 1:, None])[
                ..., 0
            ]
            (logp * batch.completion_mask[rows, 1:]).sum().backward()
        return {
            b: [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in ps]
            for b, ps in trainable_parameters(model).items()
        }

    batched = grads([0, 1, 2, 3])
    rows = [grads([i]) for i in range(4)]
    assert all(
        torch.count_nonzero(t) == 0 for i in (0, 3) for t in rows[i]["quarantine"]
    )  # keep rows
    assert all(torch.count_nonzero(t) == 0 for t in rows[2]["deployed"])  # route row
    assert all(
        torch.count_nonzero(t) > 0 for t in rows[1]["quarantine"] + rows[1]["deployed"]
    )  # absorb
    for b in batched:
        for i, got in enumerate(batched[b]):
            want = sum(r[b][i] for r in rows)
            bound = tol(want, model, backward=True, tokens=batch.input_ids.numel())
            torch.testing.assert_close(got, want, **bound)


@pytest.mark.parametrize(
    "init,seeded,other",
    [("scorda", "quarantine", "deployed"), ("scorda_rev", "deployed", "quarantine")],
)
def test_organism_scorda_seed_placement(organism, init, seeded, other):
    """The statistics attach captures match an unpadded capture; the seed is their mean."""
    fresh, tok, pairs, _ = organism
    model = attach(organism, init)
    deltas, scale = independent_pooled_inputs(fresh(), tok, pairs, "mlp.down_proj")
    stats = {f"model.{k}": v for k, v in init_statistics(model, pairs, tok).items()}
    for name, dlt in deltas.items():
        # hack - clean: two pooled inputs, each a float32 computation through the model
        bound = 2 * tol(torch.tensor(scale[name]), model)["atol"]
        torch.testing.assert_close(stats[name], dlt, atol=bound, rtol=0, msg=name)
        layer = model.get_submodule(f"base_model.model.{name}")
        mean = stats[name].mean(0)
        u_in = mean / mean.norm()
        w = layer.base_layer.weight.detach().double()
        u_out = w @ u_in / (w @ u_in).norm()
        a_s = layer.lora_A[seeded].weight.detach().double()
        b_s = layer.lora_B[seeded].weight.detach().double()
        a_o = layer.lora_A[other].weight.detach().double()
        b_o = layer.lora_B[other].weight.detach().double()
        t = stored_tol(max(w.shape))  # float64 unit vectors stored in float32
        assert float(a_s[0] @ u_in) > 1 - t and float(b_s[:, 0] @ u_out) > 1 - t, name
        assert (a_o @ u_in).abs().max() < t and (u_out @ b_o).abs().max() < t, name


@pytest.mark.parametrize("dtype", DTYPES)
def test_organism_export_matches_deployed_view(organism, tmp_path, dtype):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    fresh, _, _, batch = organism
    model = attach(organism, "corda", dtype=dtype)
    perturb_blocks(model, scale=0.02)
    with ablate_quarantine(model):
        want = logits(model, batch)
    assert (want - logits(fresh(dtype), batch)).abs().max() > 1e-2  # the deployed block moved
    export_deployed(model, tmp_path / "deployed", merged_path=tmp_path / "merged")
    loaded = PeftModel.from_pretrained(fresh(dtype), str(tmp_path / "deployed")).eval()
    torch.testing.assert_close(logits(loaded, batch), want, **tol(want, model))
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=dtype).eval()
    torch.testing.assert_close(logits(merged, batch), want, **tol(want, model))
