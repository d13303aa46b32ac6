"""Checkpoints, export of the deployed block, and per-block accounting."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import model_tol, perturb_blocks, rounding_tol, row_losses, tiny_qwen3, token_batch

from vgrout.adapters import (
    ablate_quarantine,
    attach_routed_adapters,
    block_delta_norms,
    block_grad_norms,
    clip_grad_per_block,
    export_deployed,
    load_adapters,
    quarantine_share,
    route,
    save_adapters,
    trainable_parameters,
)
from vgrout.adapters.views import block_delta


def logits(model):
    ids, attn = token_batch()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=attn).logits


def trained(init="pissa", seed=0):
    model = attach_routed_adapters(tiny_qwen3(), r=4, init=init, seed=seed)
    perturb_blocks(model)
    return model


def lora_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_save_load_round_trips_exactly(tmp_path):
    model = trained()
    path = tmp_path / "ckpt" / "adapters.safetensors"
    save_adapters(model, path)
    assert [p.name for p in path.parent.iterdir()] == ["adapters.safetensors"]  # no temp files left
    other = attach_routed_adapters(tiny_qwen3(), r=4, init="gaussian", seed=9)
    params_before = {id(p) for p in other.parameters()}
    load_adapters(other, path)
    assert {id(p) for p in other.parameters()} == params_before  # loaded in place
    want, got = lora_state(model), lora_state(other)
    assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
    assert torch.equal(logits(other), logits(model))
    assert not any(p.requires_grad for n, p in other.named_parameters() if "_0." in n)


def test_load_refuses_a_different_configuration(tmp_path):
    path = tmp_path / "a.safetensors"
    save_adapters(trained(), path)
    with pytest.raises(ValueError, match="r=4"):
        load_adapters(attach_routed_adapters(tiny_qwen3(), r=2, init="gaussian"), path)
    with pytest.raises(ValueError, match="target_modules"):
        load_adapters(
            attach_routed_adapters(
                tiny_qwen3(), r=4, init="gaussian", target_modules=("q_proj", "v_proj")
            ),
            path,
        )


def test_exported_deployed_block_loads_as_plain_peft_on_original_base(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = trained()
    with ablate_quarantine(model):
        want = logits(model)
    export_deployed(model, tmp_path / "deployed", merged_path=tmp_path / "merged")
    config = json.loads((tmp_path / "deployed" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    loaded = PeftModel.from_pretrained(tiny_qwen3(), str(tmp_path / "deployed")).eval()
    torch.testing.assert_close(logits(loaded), want, **model_tol(want))
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    torch.testing.assert_close(logits(merged), want, **model_tol(want))
    # the deployed view really moved: the test would catch exporting the base
    assert (want - logits(tiny_qwen3())).abs().max() > 1e-3


def test_export_replaces_an_existing_folder(tmp_path):
    model = trained()
    export_deployed(model, tmp_path / "deployed")
    perturb_blocks(model, seed=11)
    export_deployed(model, tmp_path / "deployed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deployed"]
    from peft import PeftModel

    loaded = PeftModel.from_pretrained(tiny_qwen3(), str(tmp_path / "deployed")).eval()
    with ablate_quarantine(model):
        want = logits(model)
    torch.testing.assert_close(logits(loaded), want, **model_tol(want))


def test_block_grad_norms_and_per_block_clipping():
    model = trained()
    ids, attn = token_batch()
    with route(model, torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 0, 0])):
        row_losses(model, ids, attn).sum().backward()
    params = trainable_parameters(model)
    manual = {
        b: math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in ps))
        for b, ps in params.items()
    }
    n = max(sum(p.numel() for p in ps) for ps in params.values())
    norms = block_grad_norms(model)
    # a float64 sum of n squares, in any order, is within n * u64 of itself
    assert norms == pytest.approx(manual, rel=n * torch.finfo(torch.float64).eps)
    assert min(norms.values()) > 1.0
    before = clip_grad_per_block(model, 1.0)
    # torch's clip_grad_norm_ sums the n squares in float32
    rel = rounding_tol(1.0, torch.float32, width=n)
    assert before == pytest.approx(norms, rel=rel)
    after = block_grad_norms(model)
    # grads scaled by 1 / (float32 norm + 1e-6), torch's guard: off by that norm's error,
    # the guard's 1e-6 / norm and one float32 rounding of every element
    rel = rel + 1e-6 / min(norms.values()) + torch.finfo(torch.float32).eps
    assert all(after[b] == pytest.approx(1.0, rel=rel) for b in after)


def test_delta_norms_and_quarantine_share():
    model = attach_routed_adapters(tiny_qwen3(), r=4, init="pissa")
    assert block_delta_norms(model) == {"deployed": 0.0, "quarantine": 0.0}
    assert math.isnan(quarantine_share(model))
    perturb_blocks(model, blocks=("quarantine",))
    assert block_delta_norms(model)["deployed"] == 0.0
    assert quarantine_share(model) == 1.0
    perturb_blocks(model, blocks=("deployed",), seed=4)
    norms = block_delta_norms(model)
    from vgrout.adapters.layers import lora_layers

    for block in ("deployed", "quarantine"):
        pair = (block, block + "_0")
        with torch.no_grad():
            explicit = math.sqrt(
                sum(
                    float(block_delta(layer, pair).double().pow(2).sum())
                    for _, layer in lora_layers(model)
                )
            )
            # block_delta forms s (B A + B0 A0) in float32, where the two products nearly
            # cancel: its rounding is of the products' size, |B|_F |A|_F each, not the delta's
            terms = math.sqrt(
                sum(
                    sum(
                        layer.scaling[n]
                        * float(layer.lora_B[n].weight.norm())
                        * float(layer.lora_A[n].weight.norm())
                        for n in pair
                    )
                    ** 2
                    for _, layer in lora_layers(model)
                )
            )
        _, first = next(lora_layers(model))
        rank = sum(first.lora_A[n].weight.shape[0] for n in pair)  # the inner dimension
        rel = rounding_tol(terms / explicit, torch.float32, width=rank)
        assert norms[block] == pytest.approx(explicit, rel=rel)
    share = quarantine_share(model)
    assert share == pytest.approx(
        norms["quarantine"] ** 2 / (norms["deployed"] ** 2 + norms["quarantine"] ** 2)
    )
    assert 0 < share < 1
