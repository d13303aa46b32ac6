"""The map a projection applies, read as one weight: what the fused decode step multiplies by.

A bias-free `nn.Linear` is its weight. A PEFT LoRA Linear is its base weight
plus each active adapter's delta (PEFT's `get_delta_weight`), which is what
its forward adds. Anything else (a bias, DoRA, a LoRA bias, a forward replaced
on the instance, as the routed adapters do) is refused, and the fused decoder
falls back to the lean loop, which calls the module.

Why PEFT is read here and not in `vgrout.adapters`: `lm` sits below
`adapters` and may not import it, and the fused decoder must sample a plain
PEFT LoRA model unmerged (the plain-LoRA baseline of the GRPO trainer) exactly
as its forward computes it. Only PEFT's public LoRA attributes are read
(`base_layer`, `merged`, `disable_adapters`, `active_adapters`, `use_dora`,
`lora_bias`, `fan_in_fan_out`, `get_delta_weight`); the routed pair's layout
stays in `vgrout.adapters`, whose `merged_for_generation` hands the decoder
plain Linears.
"""

from __future__ import annotations

from torch import Tensor, nn


def check_projection(m: nn.Module, where: str) -> None:
    """Raise TypeError naming `where` unless m is a bias-free projection whose map is its
    (merged) weight: a plain Linear or a PEFT LoRA Linear of plain LoRA adapters."""
    if "forward" in m.__dict__:
        raise TypeError(f"fused decoder: {where} has a forward replaced on the instance")
    if type(m) is nn.Linear:
        if m.bias is not None:
            raise TypeError(f"fused decoder: {where} has a bias")
        return
    if not hasattr(m, "get_delta_weight") or not hasattr(m, "base_layer"):
        raise TypeError(f"fused decoder: {where} is a {type(m).__name__}, not a Linear")
    check_projection(m.base_layer, where + ".base_layer")
    if m.merged or m.disable_adapters:  # the base weight (merged or alone) is the map
        return
    for a in m.active_adapters:
        if m.use_dora.get(a) or m.lora_bias.get(a) or getattr(m, "fan_in_fan_out", False):
            raise TypeError(f"fused decoder: {where} adapter {a!r} is not a plain LoRA")


def projection_weight(m: nn.Module, where: str) -> Tensor:
    """The [out, in] weight a projection applies (raises as `check_projection` does)."""
    check_projection(m, where)
    if type(m) is nn.Linear:
        return m.weight
    weight = projection_weight(m.base_layer, where + ".base_layer")
    if m.merged or m.disable_adapters:
        return weight
    for a in m.active_adapters:
        weight = weight + m.get_delta_weight(a).to(weight.dtype)
    return weight
