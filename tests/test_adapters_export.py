"""Checkpoints, export of the deployed block, and per-block accounting."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_adapters_support import perturb_blocks, row_losses, tiny_qwen3, token_batch

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
    torch.testing.assert_close(logits(loaded), want, atol=1e-5, rtol=0)
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    torch.testing.assert_close(logits(merged), want, atol=1e-5, rtol=0)
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
        torch.testing.assert_close(logits(loaded), logits(model), atol=1e-5, rtol=0)


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
    norms = block_grad_norms(model)
    assert norms == pytest.approx(manual, rel=1e-9)
    assert min(norms.values()) > 1.0
    before = clip_grad_per_block(model, 1.0)
    assert before == pytest.approx(norms, rel=1e-5)
    after = block_grad_norms(model)
    assert all(after[b] == pytest.approx(1.0, rel=1e-4) for b in after)


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
        with torch.no_grad():
            explicit = math.sqrt(
                sum(
                    float(block_delta(layer, (block, block + "_0")).double().pow(2).sum())
                    for _, layer in lora_layers(model)
                )
            )
        assert norms[block] == pytest.approx(explicit, rel=1e-5)
    share = quarantine_share(model)
    assert share == pytest.approx(
        norms["quarantine"] ** 2 / (norms["deployed"] ** 2 + norms["quarantine"] ** 2)
    )
    assert 0 < share < 1
