"""Views of a routed model: deployment (quarantine ablated), reference (no
adapters), and merged weights for fast sampling.

Every context manager restores `requires_grad` of every parameter exactly on
exit: PEFT's `disable_adapter()` and `set_adapter()` re-enable gradients on
all active adapters when they exit, frozen anchors included, which would let
an optimizer built from `model.parameters()` train the anchors.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from .layers import (
    ANCHOR,
    DEPLOYED,
    QUARANTINE,
    assert_not_merged,
    lora_layers,
    routed_info,
    short_name,
)

VIEW_ADAPTERS = {
    "trained": (DEPLOYED, ANCHOR[DEPLOYED], QUARANTINE, ANCHOR[QUARANTINE]),
    "deployed": (DEPLOYED, ANCHOR[DEPLOYED]),
}


@contextmanager
def preserved_requires_grad(model: nn.Module) -> Iterator[Callable[[], None]]:
    """Snapshot `requires_grad` of every parameter and restore it on exit.

    Yields the restore function, for re-freezing right after a PEFT call.
    """
    saved = [(p, p.requires_grad) for p in model.parameters()]

    def restore() -> None:
        for p, flag in saved:
            p.requires_grad_(flag)

    try:
        yield restore
    finally:
        restore()


@contextmanager
def ablate_quarantine(model: nn.Module) -> Iterator[None]:
    """Deployment view: the quarantine block and its anchor contribute nothing, on every row.

    Equivalent to m = 0 on every row, for any batch size (bit for bit: the
    hooks would add exact zeros), but cheaper: the quarantine adapters are
    made inactive, so they are not computed at all. The deployed block is
    unaffected. Nests with `route` (the quarantine stays off).
    """
    state = routed_info(model).state
    tuner = model.base_model
    previous_ablate, previous_active = state.ablate, list(tuner.active_adapters)
    with preserved_requires_grad(model) as refreeze:
        state.ablate = True
        tuner.set_adapter([a for a in previous_active if a in VIEW_ADAPTERS["deployed"]])
        refreeze()  # set_adapter made deployed_0 trainable
        try:
            yield
        finally:
            tuner.set_adapter(previous_active)
            state.ablate = previous_ablate


@contextmanager
def reference_policy(model: nn.Module) -> Iterator[None]:
    """All adapters disabled: exactly the frozen starting model (the KL anchor)."""
    routed_info(model)
    assert_not_merged(model, "reference_policy() entered")
    with preserved_requires_grad(model), model.disable_adapter():
        yield


def merge_dtype(layer: nn.Module) -> torch.dtype:
    """fp32 for half-precision and fp32 bases, float64 for float64 bases."""
    return torch.promote_types(layer.base_layer.weight.dtype, torch.float32)


def block_delta(layer: nn.Module, adapters: tuple[str, ...]) -> Tensor:
    """Sum of scaling * B @ A over `adapters` on one LoRA Linear: [out, in] in merge_dtype."""
    dtype = merge_dtype(layer)
    a = torch.cat(
        [layer.lora_A[n].weight.to(dtype) * layer.scaling[n] for n in adapters], 0
    )  # [k*r, in]
    b = torch.cat([layer.lora_B[n].weight.to(dtype) for n in adapters], 1)  # [out, k*r]
    return b @ a


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return model.get_submodule(parent_name), child


@contextmanager
def merged_for_generation(model: nn.Module, view: str = "trained") -> Iterator[None]:
    """Fold the view's adapters into the base weights for sampling; restore bit-exactly.

    The merged weight W + delta is computed in fp32 and installed as a new
    tensor; the original weight tensor is never written, so the exit restores
    it exactly (in-place merge/unmerge drifts: ~4e-7 in fp32, ~1e-2 in bf16).
    Meanwhile each LoRA layer is swapped out of its parent for its plain
    base Linear, so sampling runs at the bare model's speed with no PEFT
    wrapper or hook in the path: route masks must not be set (checked), and
    bottleneck capture sees nothing.
    """
    if view not in VIEW_ADAPTERS:
        raise ValueError(
            f"vgrout.adapters.merged_for_generation: view must be one of {sorted(VIEW_ADAPTERS)}, got {view!r}"
        )
    info = routed_info(model)
    if info.state.m is not None or info.state.d is not None:
        raise RuntimeError(
            "vgrout.adapters.merged_for_generation: a route mask is set; "
            "leave masks unset during generation"
        )
    if info.state.ablate and view == "trained":
        raise RuntimeError(
            "vgrout.adapters.merged_for_generation: view='trained' inside ablate_quarantine()"
        )
    assert_not_merged(model, "merged_for_generation() entered")
    if getattr(model, "_adapters_disabled", False):
        raise RuntimeError(
            "vgrout.adapters.merged_for_generation: adapters are disabled "
            "(inside reference_policy?); the merged view would not be the reference"
        )
    swapped: list[tuple[nn.Module, str, nn.Module, Tensor]] = []
    try:
        with torch.no_grad():
            for name, layer in list(lora_layers(model)):
                weight = layer.base_layer.weight
                merged = (
                    weight.to(merge_dtype(layer)) + block_delta(layer, VIEW_ADAPTERS[view])
                ).to(weight.dtype)
                parent, child = _parent(model, name)
                swapped.append((parent, child, layer, weight.data))
                weight.data = merged
                setattr(parent, child, layer.base_layer)
        info.merged_view = view
        yield
    finally:
        for parent, child, layer, data in swapped:
            layer.base_layer.weight.data = data
            setattr(parent, child, layer)
        info.merged_view = None


TAP_GROUPS = {
    "self_attn.q_proj": "qkv", "self_attn.k_proj": "qkv", "self_attn.v_proj": "qkv",
    "self_attn.o_proj": "o", "mlp.gate_proj": "gate_up", "mlp.up_proj": "gate_up",
    "mlp.down_proj": "down",
}  # fmt: skip
"""Which input each Qwen3 projection reads, as `vgrout.lm.qwen3.LayerTaps` groups them."""


@torch.no_grad()
def bottleneck_taps(model: nn.Module, block: str = DEPLOYED) -> list:
    """Per decoder layer, `qwen3.LayerTaps` holding `block`'s A matrices: the fused decoder
    multiplies them beside each merged projection, so sampling yields A·x at every adapted
    module, pooled as the gate pools it (rows in the order of `lora_layers`, the capture's).

    Read outside `merged_for_generation` (inside it the LoRA layers are swapped out).
    """
    from vgrout.lm.qwen3 import LayerTaps, causal_lm

    rows: dict[int, dict[str, list[Tensor]]] = {}
    order = []
    for name, layer in lora_layers(model):
        short = short_name(name)  # layers.{i}.{path}
        _, index, path = short.split(".", 2)
        if path not in TAP_GROUPS:
            raise ValueError(f"bottleneck_taps: {short} is not a Qwen3 projection")
        group = TAP_GROUPS[path]
        rows.setdefault(int(index), {}).setdefault(group, []).append(
            layer.lora_A[block].weight.detach().clone()
        )
        order.append((int(index), list(TAP_GROUPS.values()).index(group)))
    if order != sorted(order):  # the fused step emits groups in TAP_GROUPS order per layer
        raise ValueError("bottleneck_taps: adapted modules are not in layer and projection order")
    layers = causal_lm(model).config.num_hidden_layers
    return [
        LayerTaps(**{g: torch.cat(ws) for g, ws in rows.get(i, {}).items()}) for i in range(layers)
    ]
