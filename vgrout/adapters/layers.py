"""Names, bookkeeping and layer lookup shared by every part of the routed adapters.

A routed model is a `PeftModel` carrying four LoRA adapters on the same target
Linears: the trainable `deployed` and `quarantine` blocks and their frozen
anchors `deployed_0` and `quarantine_0` (each anchor holds (A, -B) of its
block's initial factors, so the net delta is zero at init while A and B are
nonzero). `RoutedInfo` is attached to the model so every context manager can
find the shared mask state and the view currently in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from torch import Tensor, nn

from vgrout.names import TARGET_MODULES

DEPLOYED, QUARANTINE = "deployed", "quarantine"
BLOCKS = (DEPLOYED, QUARANTINE)
ANCHOR = {DEPLOYED: "deployed_0", QUARANTINE: "quarantine_0"}
ALL_ADAPTERS = (DEPLOYED, ANCHOR[DEPLOYED], QUARANTINE, ANCHOR[QUARANTINE])
DEFAULT_TARGETS = TARGET_MODULES
INFO_ATTR = "_vgrout_routed"


@dataclass
class RouteState:
    """Per-row masks read by the routed forward of every adapted Linear.

    m: [batch] float 0/1, multiplies the quarantine (and its anchor) output.
    d: [batch] bool, True rows see the deployed output detached.
    ablate: quarantine output replaced by zeros on every row (deployment view).
    one_product: both blocks (and anchors) as one rank-4r product per Linear
        instead of one rank-2r product per block (`forward.py`); set once, at attach.
    """

    m: Tensor | None = None
    d: Tensor | None = None
    ablate: bool = False
    one_product: bool = False

    def any_set(self) -> bool:
        return self.m is not None or self.d is not None or self.ablate


@dataclass
class RoutedInfo:
    """What `attach_routed_adapters` built; stored on the PeftModel."""

    r: int
    alpha: float
    init: str
    target_modules: tuple[str, ...]
    state: RouteState = field(default_factory=RouteState)
    merged_view: str | None = None

    def describe(self) -> dict:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "init": self.init,
            "target_modules": list(self.target_modules),
            "adapters": list(ALL_ADAPTERS),
        }


def routed_info(model: nn.Module) -> RoutedInfo:
    """The routing bookkeeping of `model`; raises if adapters were never attached."""
    info = model.__dict__.get(INFO_ATTR)
    if info is None:
        raise TypeError(
            "vgrout.adapters: model has no routed adapters; call attach_routed_adapters(model) first "
            f"(got {type(model).__name__})"
        )
    return info


def short_name(module_name: str) -> str:
    """'base_model.model.model.layers.0.self_attn.q_proj' -> 'layers.0.self_attn.q_proj'."""
    name = module_name.removeprefix("base_model.model.")
    return name.removeprefix("model.")


def lora_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(full module name, LoRA Linear) for every adapted Linear, in module order.

    Raises on LoRA layers that are not plain Linears: the inits, merges and the
    export all assume `base_layer.weight` is [out, in] and used as x @ W.T.
    """
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    info = model.__dict__.get(INFO_ATTR)
    if info is not None and info.merged_view is not None:
        raise RuntimeError(
            "vgrout.adapters: the LoRA layers are swapped out inside "
            f"merged_for_generation(view={info.merged_view!r}); leave it first"
        )
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            if not isinstance(module, LoraLinear) or getattr(module, "fan_in_fan_out", False):
                raise TypeError(
                    f"vgrout.adapters: {name} is a {type(module).__name__}; "
                    "only nn.Linear targets (fan_in_fan_out=False) are supported"
                )
            yield name, module


def assert_not_merged(model: nn.Module, why: str) -> None:
    """Merged weights bypass the lora_B hooks, so a mask would be silently ignored."""
    info = routed_info(model)
    if info.merged_view is not None:
        raise RuntimeError(
            f"vgrout.adapters: {why} while merged_for_generation(view="
            f"{info.merged_view!r}) is active; merged weights bypass the masks"
        )
    for name, layer in lora_layers(model):
        if layer.merged:
            raise RuntimeError(
                f"vgrout.adapters: {why} but {name} has PEFT-merged adapters "
                f"{layer.merged_adapters}; masks would be ignored"
            )
