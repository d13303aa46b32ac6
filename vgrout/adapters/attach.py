"""Attach the deployed / quarantine blocks (plus frozen anchors) to a model.

Why anchors: both blocks need nonzero A and B at init (so the first gradient
on the bottleneck A·x is nonzero) yet the model must equal the base at init in
every zone. Subtracting the init from W would rewrite the base weights, and
then `disable_adapter()` is no longer the reference model. Instead two frozen
adapters `deployed_0 = (A0d, -B0d)` and `quarantine_0 = (A0q, -B0q)` cancel the
blocks' initial deltas; base weights are never touched.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .forward import install_routed_forward
from .inits import INITS, NEEDS_PAIRS, block_factors
from .layers import (
    ALL_ADAPTERS,
    ANCHOR,
    BLOCKS,
    DEFAULT_TARGETS,
    INFO_ATTR,
    RoutedInfo,
    lora_layers,
    routed_info,
    short_name,
)
from .pair_deltas import pair_input_deltas
from .views import reference_policy


def _lora_config(r: int, alpha: float, target_modules: Sequence[str]):
    from peft import LoraConfig

    # dropout 0: a random training forward would break the PPO ratio.
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(target_modules),
        lora_dropout=0.0,
        bias="none",
        init_lora_weights=False,
    )


def _check_args(model: nn.Module, r: int, init: str, target_modules, pairs, tokenizer) -> None:
    from peft import PeftModel

    if isinstance(model, PeftModel) or INFO_ATTR in model.__dict__:
        raise TypeError(
            "vgrout.adapters.attach_routed_adapters: model already carries adapters; "
            "pass the bare base model"
        )
    if not isinstance(r, int) or r < 1:
        raise ValueError(
            f"vgrout.adapters.attach_routed_adapters: r must be a positive int, got {r!r}"
        )
    if init not in INITS:
        raise ValueError(
            f"vgrout.adapters.attach_routed_adapters: init must be one of {INITS}, got {init!r}"
        )
    if isinstance(target_modules, str) or not target_modules:
        raise ValueError(
            "vgrout.adapters.attach_routed_adapters: target_modules must be a non-empty "
            f"sequence of module names, got {target_modules!r}"
        )
    if init in NEEDS_PAIRS and (not pairs or tokenizer is None):
        raise ValueError(
            f"vgrout.adapters.attach_routed_adapters: init {init!r} needs pairs and tokenizer"
        )


@torch.no_grad()
def _initialise(model: nn.Module, init: str, seed: int, ridge: float, pairs, tokenizer) -> None:
    """Compute each Linear's factors and copy them into blocks and anchors."""
    info = routed_info(model)
    stats = None
    if init in NEEDS_PAIRS:
        with reference_policy(model):
            stats = pair_input_deltas(model, pairs, tokenizer)
    gen = torch.Generator().manual_seed(seed)
    for name, layer in lora_layers(model):
        key = short_name(name)
        factors = block_factors(
            init,
            layer.base_layer.weight.detach().double().cpu(),
            info.r,
            key,
            gen,
            None if stats is None else stats[key],
            ridge,
        )
        for block, f in zip(BLOCKS, factors):
            layer.lora_A[block].weight.copy_(f.A)
            layer.lora_B[block].weight.copy_(f.B)
            layer.lora_A[ANCHOR[block]].weight.copy_(f.A)
            layer.lora_B[ANCHOR[block]].weight.copy_(-f.B)


def attach_routed_adapters(
    model: nn.Module,
    r: int = 8,
    init: str = "gaussian",
    target_modules: Sequence[str] = DEFAULT_TARGETS,
    alpha: float | None = None,
    pairs: Sequence | None = None,
    tokenizer=None,
    seed: int = 0,
    ridge: float = 1e-3,
    one_product: bool = False,
):
    """Wrap `model` in a PeftModel with `deployed`, `quarantine` (trainable) and frozen
    anchors `deployed_0`, `quarantine_0` on every target Linear.

    alpha defaults to 2*r (scaling 2). Adapters are fp32 (autocast) on every
    call, so merges of bf16 bases are computed in fp32. `pairs` (objects with
    .prompt, .hack, .clean) and `tokenizer` are needed by corda/scorda/scorda_rev
    and unused by gaussian/pissa. Returns the PeftModel; the base weights are
    not modified and every zone equals the base model at init. `one_product`
    computes both blocks as one product per Linear (fewer, larger matmuls;
    equal to the default to float rounding, see `forward.py`).
    """
    from peft import get_peft_model

    _check_args(model, r, init, target_modules, pairs, tokenizer)
    alpha = float(2 * r if alpha is None else alpha)
    cfg = _lora_config(r, alpha, target_modules)
    peft_model = get_peft_model(model, cfg, adapter_name=BLOCKS[0], autocast_adapter_dtype=True)
    for name in ALL_ADAPTERS[1:]:
        peft_model.add_adapter(
            name, _lora_config(r, alpha, target_modules), autocast_adapter_dtype=True
        )
    # A list of active adapters is only accepted by the tuner model's set_adapter.
    peft_model.base_model.set_adapter(list(ALL_ADAPTERS))
    info = RoutedInfo(r=r, alpha=alpha, init=init, target_modules=tuple(target_modules))
    info.state.one_product = bool(one_product)
    peft_model.__dict__[INFO_ATTR] = info
    _freeze_anchors(peft_model)
    _set_adapter_dtype(peft_model)
    if not any(True for _ in lora_layers(peft_model)):
        raise ValueError(
            f"vgrout.adapters.attach_routed_adapters: no Linear matched {list(target_modules)}"
        )
    _initialise(peft_model, init, seed, ridge, pairs, tokenizer)
    install_routed_forward(peft_model)
    return peft_model


@torch.no_grad()
def _set_adapter_dtype(model: nn.Module) -> None:
    """Adapters in fp32, or float64 on a float64 base.

    PEFT creates fp32 adapters and casts the input to their dtype, so on a
    float64 base the adapter path (and the anchors' cancellation) would be
    computed in fp32.
    """
    for _, layer in lora_layers(model):
        dtype = torch.promote_types(layer.base_layer.weight.dtype, torch.float32)
        for adapter in ALL_ADAPTERS:
            for lin in (layer.lora_A[adapter], layer.lora_B[adapter]):
                lin.weight.data = lin.weight.data.to(dtype)


def _freeze_anchors(model: nn.Module) -> None:
    for _, layer in lora_layers(model):
        for block in BLOCKS:
            layer.lora_A[ANCHOR[block]].weight.requires_grad_(False)
            layer.lora_B[ANCHOR[block]].weight.requires_grad_(False)
            layer.lora_A[block].weight.requires_grad_(True)
            layer.lora_B[block].weight.requires_grad_(True)


def trainable_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """{"deployed": [...], "quarantine": [...]}: the A and B weights of each block,
    in module order. Build optimizers from these lists, never from
    `model.parameters()`. Raises if an anchor has been unfrozen.
    """
    routed_info(model)
    out: dict[str, list[nn.Parameter]] = {b: [] for b in BLOCKS}
    for name, layer in lora_layers(model):
        for block in BLOCKS:
            anchor = (layer.lora_A[ANCHOR[block]].weight, layer.lora_B[ANCHOR[block]].weight)
            if any(p.requires_grad for p in anchor):
                raise RuntimeError(
                    f"vgrout.adapters: anchor {ANCHOR[block]} at {name} requires grad; "
                    "it must stay frozen"
                )
            out[block] += [layer.lora_A[block].weight, layer.lora_B[block].weight]
    return out


def bottleneck_modules(model: nn.Module, block: str = "deployed") -> dict:
    """{short module name: lora_A[block]}; a forward hook there sees A·x [batch, pos, r].

    Hooks see nothing inside `merged_for_generation` or `reference_policy`
    (the adapters are not called there).
    """
    routed_info(model)
    if block not in ALL_ADAPTERS:
        raise ValueError(
            f"vgrout.adapters.bottleneck_modules: block must be one of {ALL_ADAPTERS}, got {block!r}"
        )
    return {short_name(name): layer.lora_A[block] for name, layer in lora_layers(model)}
