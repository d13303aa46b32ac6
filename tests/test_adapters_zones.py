"""Routed adapters on a random tiny Qwen3: identity at init, exact zone gradients,
views that restore state, merged generation."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    PAIRS,
    ByteTokenizer,
    model_tol,
    perturb_blocks,
    row_losses,
    tiny_qwen3,
    token_batch,
)

from vgrout.adapters import (
    INITS,
    ablate_quarantine,
    attach_routed_adapters,
    bottleneck_modules,
    merged_for_generation,
    reference_policy,
    route,
    trainable_parameters,
)

ZONES = {"keep": (0, 0), "absorb": (1, 0), "route": (1, 1)}


def routed(init="gaussian", seed=0, **kw):
    return attach_routed_adapters(
        tiny_qwen3(seed), r=4, init=init, pairs=PAIRS, tokenizer=ByteTokenizer(), **kw
    )


@pytest.fixture(scope="module")
def base_logits():
    ids, attn = token_batch()
    with torch.no_grad():
        return tiny_qwen3()(input_ids=ids, attention_mask=attn).logits


def logits(model):
    ids, attn = token_batch()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=attn).logits


def grads(model):
    """{block: [grad or zeros]} of the trainable parameters."""
    return {
        b: [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in ps]
        for b, ps in trainable_parameters(model).items()
    }


def masked_grads(model, m, d, rows=None):
    model.zero_grad(set_to_none=True)
    ids, attn = token_batch()
    if rows is not None:
        ids, attn = ids[rows], attn[rows]
    with route(model, torch.tensor(m), torch.tensor(d)):
        row_losses(model, ids, attn, rows).sum().backward()
    return grads(model)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("one_product", [False, True])
def test_every_zone_and_view_equals_base_at_init(init, one_product, base_logits):
    model = routed(init, one_product=one_product)
    tol = model_tol(base_logits)
    for zone, (m, d) in ZONES.items():
        with torch.no_grad(), route(model, torch.full((4,), m), torch.full((4,), d)):
            got = logits(model)
        torch.testing.assert_close(got, base_logits, **tol, msg=f"{init} zone {zone}")
    torch.testing.assert_close(logits(model), base_logits, **tol)
    with ablate_quarantine(model):
        torch.testing.assert_close(logits(model), base_logits, **tol)
    for view in ("trained", "deployed"):
        with merged_for_generation(model, view=view):
            torch.testing.assert_close(logits(model), base_logits, **tol)


@pytest.mark.parametrize("init", INITS)
def test_attach_leaves_base_weights_untouched_and_factors_nonzero(init):
    bare = tiny_qwen3()
    model = routed(init)
    adapted = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in model.state_dict().items()
        if "lora_" not in k
    }
    assert set(adapted) == set(bare.state_dict())
    for k, v in bare.state_dict().items():
        assert torch.equal(adapted[k], v), k
    for block, params in trainable_parameters(model).items():
        assert len(params) == 2 * 7 * 2, block  # A and B, 7 projections, 2 layers
        assert all(p.norm() > 0.5 for p in params), block


@pytest.mark.parametrize("zone", ["keep", "route"])
@pytest.mark.parametrize("one_product", [False, True])
def test_zone_gradients_exactly_zero_where_forbidden(zone, one_product):
    model = routed("pissa", one_product=one_product)
    perturb_blocks(model)
    m, d = ZONES[zone]
    g = masked_grads(model, [m] * 4, [d] * 4)
    forbidden, allowed = (
        ("quarantine", "deployed") if zone == "keep" else ("deployed", "quarantine")
    )
    assert all(torch.count_nonzero(t) == 0 for t in g[forbidden]), f"{zone} moved {forbidden}"
    assert all(torch.count_nonzero(t) > 0 for t in g[allowed]), f"{zone} gave {allowed} no gradient"


def test_absorb_rows_train_both_blocks():
    model = routed("gaussian")
    g = masked_grads(model, [1] * 4, [0] * 4)
    assert all(torch.count_nonzero(t) > 0 for b in g for t in g[b])


@pytest.mark.parametrize("one_product", [False, True])
def test_mixed_batch_gradient_equals_sum_of_per_row_gradients(one_product):
    model = routed("gaussian", one_product=one_product)
    perturb_blocks(model)
    m, d = [0, 1, 1, 0], [0, 0, 1, 1]
    batched = masked_grads(model, m, d)
    summed = None
    for i in range(4):
        row = masked_grads(model, m[i : i + 1], d[i : i + 1], rows=[i])
        if i == 0 or i == 3:  # keep / (0,1) rows: quarantine exactly untouched
            assert all(torch.count_nonzero(t) == 0 for t in row["quarantine"])
        if d[i]:
            assert all(torch.count_nonzero(t) == 0 for t in row["deployed"])
        summed = (
            row if summed is None else {b: [s + r for s, r in zip(summed[b], row[b])] for b in row}
        )
    for b in batched:
        for got, want in zip(batched[b], summed[b]):
            torch.testing.assert_close(got, want, **model_tol(want, backward=True))


def _per_adapter_forward(layer, m, d):
    """The unfused definition: PEFT's sum over the four adapters, masks on each output."""

    def forward(x, *args, **kwargs):
        out = layer.base_layer(x)
        for name in ("deployed", "deployed_0", "quarantine", "quarantine_0"):
            y = layer.lora_B[name](layer.lora_A[name](x)) * layer.scaling[name]
            if name.startswith("quarantine"):
                y = y * m.view(-1, 1, 1)
            elif name == "deployed":
                y = torch.where(d.view(-1, 1, 1), y.detach(), y)
            out = out + y
        return out

    return forward


@pytest.mark.parametrize("one_product", [False, True])
def test_routed_forward_equals_the_per_adapter_definition(one_product):
    """The fused forward, per block or as one product, gives PEFT's per-adapter values
    and gradients on every zone."""
    from vgrout.adapters.layers import lora_layers

    model = routed("gaussian", one_product=one_product)
    perturb_blocks(model)
    m, d = [0, 1, 1, 0], [0, 0, 1, 1]
    fused = masked_grads(model, m, d)
    fused_logits = logits(model)
    layers = [layer for _, layer in lora_layers(model)]
    saved = [layer.forward for layer in layers]
    try:
        for layer in layers:
            layer.forward = _per_adapter_forward(
                layer, torch.tensor(m, dtype=torch.float32), torch.tensor(d, dtype=torch.bool)
            )
        want = masked_grads(model, m, d)
        for layer in layers:
            layer.forward = _per_adapter_forward(
                layer, torch.ones(4), torch.zeros(4, dtype=torch.bool)
            )
        torch.testing.assert_close(fused_logits, logits(model), **model_tol(fused_logits))
    finally:
        for layer, forward in zip(layers, saved):
            layer.forward = forward
    for b in want:
        assert any(torch.count_nonzero(t) > 0 for t in want[b])
        for got, ref in zip(fused[b], want[b]):
            torch.testing.assert_close(got, ref, **model_tol(ref, backward=True))


@pytest.mark.parametrize("reentrant", [True, False])
def test_masks_hold_under_gradient_checkpointing(reentrant):
    m, d = [0, 1, 1, 0], [0, 0, 1, 0]
    plain = routed("gaussian")
    perturb_blocks(plain)
    plain.train()
    want = masked_grads(plain, m, d)
    ckpt = routed("gaussian")
    perturb_blocks(ckpt)
    ckpt.train()
    ckpt.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    ckpt.enable_input_require_grads()
    got = masked_grads(ckpt, m, d)
    for b in want:
        for x, y in zip(got[b], want[b]):
            torch.testing.assert_close(x, y, **model_tol(y, backward=True))


def test_backward_after_leaving_route_is_wrong_under_reentrant_checkpointing():
    """Documents the trap the docstring warns about: the recomputed forward sees no mask."""
    model = routed("gaussian")
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    ids, attn = token_batch()
    with route(model, torch.zeros(4), torch.zeros(4)):
        loss = row_losses(model, ids, attn).sum()
    loss.backward()
    assert any(torch.count_nonzero(t) > 0 for t in grads(model)["quarantine"])


def test_ablation_removes_quarantine_perturbation_and_restores(base_logits):
    model = routed("gaussian")
    perturb_blocks(model, blocks=("quarantine",))
    full = logits(model)
    assert (full - base_logits).abs().max() > 1e-3
    with ablate_quarantine(model):
        torch.testing.assert_close(logits(model), base_logits, **model_tol(base_logits))
        with route(model, torch.ones(4), torch.zeros(4)):  # ablation wins over m=1
            torch.testing.assert_close(logits(model), base_logits, **model_tol(base_logits))
    assert torch.equal(logits(model), full)


def test_ablation_equals_m_zero_on_every_row():
    model = routed("pissa")
    perturb_blocks(model)
    with ablate_quarantine(model):
        ablated = logits(model)
    with route(model, torch.zeros(4), torch.zeros(4)):
        assert torch.equal(logits(model), ablated)


def test_reference_policy_is_exactly_the_model_before_adapters(base_logits):
    model = routed("scorda")
    perturb_blocks(model)
    with reference_policy(model):
        assert torch.equal(logits(model), base_logits)


def test_requires_grad_restored_after_every_context_manager():
    model = routed("gaussian")
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    anchors = [n for n in before if "_0." in n]
    assert anchors and not any(before[n] for n in anchors)
    assert sum(before.values()) == 2 * 2 * 14
    for cm in (
        lambda: ablate_quarantine(model),
        lambda: reference_policy(model),
        lambda: merged_for_generation(model, "trained"),
        lambda: merged_for_generation(model, "deployed"),
        lambda: route(model, torch.ones(4), torch.ones(4)),
    ):
        with cm():
            logits(model)
            inside = {n: p.requires_grad for n, p in model.named_parameters()}
            assert not any(inside.get(n, False) for n in anchors)
        assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    trainable_parameters(model)  # raises if an anchor were unfrozen


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merged_view_matches_unmerged_and_restores_weights_bit_exactly(dtype):
    model = attach_routed_adapters(tiny_qwen3(dtype=dtype), r=4, init="pissa")
    perturb_blocks(model)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    for view in ("trained", "deployed"):
        if view == "trained":
            want = logits(model)
        else:
            with ablate_quarantine(model):
                want = logits(model)
        tol = model_tol(want.float(), dtype=dtype)
        for _ in range(3):
            with merged_for_generation(model, view=view):
                torch.testing.assert_close(logits(model).float(), want.float(), **tol)
    for n, p in model.named_parameters():
        assert torch.equal(p, weights[n]), n


def test_masks_refused_while_merged_and_merge_refused_while_masked():
    model = routed("gaussian")
    with merged_for_generation(model):
        with pytest.raises(RuntimeError, match="merged"):
            with route(model, torch.ones(4), torch.zeros(4)):
                pass
    with route(model, torch.ones(4), torch.zeros(4)):
        with pytest.raises(RuntimeError, match="mask"):
            with merged_for_generation(model):
                pass
    with reference_policy(model):
        with pytest.raises(RuntimeError, match="disabled"):
            with merged_for_generation(model):
                pass
    with pytest.raises(RuntimeError, match="exited"):
        with route(model, torch.ones(4), torch.zeros(4)):
            model.merge_adapter()  # a PEFT merge inside the block bypasses the masks
    model.unmerge_adapter()


def test_route_rejects_bad_masks():
    model = routed("gaussian")
    with pytest.raises(ValueError, match="0/1"):
        with route(model, torch.tensor([0.5, 1.0]), torch.tensor([0, 0])):
            pass
    with pytest.raises(ValueError, match="rows"):
        with route(model, torch.ones(3), torch.ones(2)):
            pass
    with pytest.raises(RuntimeError, match="batch of 4"):
        with route(model, torch.ones(3), torch.ones(3)):
            logits(model)
    with route(model, torch.ones(4), torch.ones(4)):
        with pytest.raises(RuntimeError, match="nested"):
            with route(model, torch.ones(4), torch.ones(4)):
                pass


def test_generation_inside_merged_view_runs_without_hooks():
    model = routed("pissa")
    perturb_blocks(model)
    ids, attn = token_batch()
    seen = []
    handles = [
        mod.register_forward_hook(lambda *a: seen.append(1))
        for mod in bottleneck_modules(model).values()
    ]
    with merged_for_generation(model, view="deployed"):
        out = model.generate(
            input_ids=ids, attention_mask=attn, max_new_tokens=5, do_sample=False, pad_token_id=0
        )
    assert out.shape == (4, 15) and not seen
    for h in handles:
        h.remove()


def test_bottleneck_modules_expose_A_x():
    model = routed("pissa")
    mods = bottleneck_modules(model)
    assert len(mods) == 14 and "layers.0.self_attn.q_proj" in mods
    got = {}
    mods["layers.1.mlp.down_proj"].register_forward_hook(
        lambda m, a, out: got.setdefault("out", out)
    )
    logits(model)
    assert got["out"].shape == (4, 10, 4)
