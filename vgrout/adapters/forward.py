"""The routed forward of one adapted Linear: both blocks, their anchors and the masks.

PEFT's LoRA forward adds `lora_B(lora_A(x)) * scaling` once per active
adapter. With four adapters (two blocks, two frozen anchors) plus per-row mask
hooks that is eight small matmuls and a dozen full-width elementwise ops per
Linear, which on a small model costs more than the base matmul itself
(measured: a routed train step at ~1.3-1.8x a plain one-LoRA step). Here each
block is computed together with its anchor, as one rank-2r LoRA:

    h   = x @ [A; A0]^T                      [batch, pos, 2r]
    out = h @ [B*s, B0*s]^T                  B0 is stored negated, so the pair's
                                             net delta is s(BA - B0A0)

and the masks act on the rank-2r bottleneck, not on the [batch, pos, d_out]
output:

- quarantine pair: h * m[row]. A row with m = 0 contributes exactly zero and
  gives the quarantine exactly zero gradient (its bottleneck row is zero).
- deployed block on rows with d = 1: its r columns of h leave the live
  product and are added back through detached weights, so the value is
  unchanged and neither A, B nor x receives gradient through that block on
  those rows (the anchor stays live, as it does with output hooks).

The deployed pair is computed in the same way whether or not the quarantine
is active, so the deployment view (quarantine inactive) equals m = 0 on every
row bit for bit: the quarantine pair then adds exact zeros.

Capture hooks keep working: forward hooks registered on `lora_A[adapter]`
are called with that adapter's slice of h (and may replace it, which the
gradient-site capture does); hooks on `lora_B[adapter]` are called with
`lora_B(lora_A(x))` for observation.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ANCHOR, DEPLOYED, QUARANTINE, RouteState, lora_layers, routed_info

PAIRS = ((DEPLOYED, ANCHOR[DEPLOYED]), (QUARANTINE, ANCHOR[QUARANTINE]))


def install_routed_forward(model: nn.Module) -> None:
    """Replace the forward of every adapted Linear of a routed model by `routed_forward`."""
    state = routed_info(model).state
    for name, layer in lora_layers(model):
        if not isinstance(layer.lora_dropout[DEPLOYED], nn.Identity):
            raise ValueError(
                f"vgrout.adapters: {name} has LoRA dropout; the routed forward "
                "assumes lora_dropout=0 (a random forward breaks the PPO ratio)"
            )
        layer.forward = functools.partial(routed_forward, layer, state, name)


def _row_mask(mask: Tensor, x: Tensor, name: str) -> Tensor:
    """A [batch] mask as [batch, 1, ..., 1] broadcasting over x [batch, ..., features]."""
    if mask.shape[0] != x.shape[0]:
        raise RuntimeError(
            f"vgrout.adapters.route: mask has {mask.shape[0]} rows but {name} "
            f"sees a batch of {x.shape[0]} (input shape {tuple(x.shape)})"
        )
    return mask.to(x.device).view(-1, *([1] * (x.dim() - 1)))


def _active_pairs(layer: nn.Module, state: RouteState, name: str) -> list[tuple[str, str]]:
    active = set(layer.active_adapters)
    pairs = []
    for block, anchor in PAIRS:
        if (block in active) != (anchor in active):
            raise RuntimeError(
                f"vgrout.adapters: {name} has {block!r} and its anchor {anchor!r} "
                f"active apart ({sorted(active)}); activate them together"
            )
        if block in active and not (block == QUARANTINE and state.ablate):
            pairs.append((block, anchor))
    unknown = active - {a for pair in PAIRS for a in pair}
    if unknown:
        raise RuntimeError(f"vgrout.adapters: {name} has unknown active adapters {sorted(unknown)}")
    return pairs


def _bottleneck(layer: nn.Module, pair: tuple[str, str], x: Tensor) -> Tensor:
    """h = x @ [A; A0]^T: [batch, pos, 2r]; lora_A forward hooks see (and may edit) their slice."""
    h = F.linear(x, torch.cat([layer.lora_A[a].weight for a in pair]))
    parts = list(h.split([layer.lora_A[a].weight.shape[0] for a in pair], dim=-1))
    hooked = False
    for i, adapter in enumerate(pair):
        module = layer.lora_A[adapter]
        if module._forward_pre_hooks:
            raise RuntimeError(
                f"vgrout.adapters: forward pre-hooks on lora_A[{adapter!r}] are "
                "not supported by the routed forward; use a forward hook"
            )
        for hook in module._forward_hooks.values():
            out = hook(module, (x,), parts[i])
            if out is not None:
                parts[i], hooked = out, True
    return torch.cat(parts, dim=-1) if hooked else h


def _observe_lora_b(layer: nn.Module, pair: tuple[str, str], h: Tensor) -> None:
    r = layer.lora_A[pair[0]].weight.shape[0]
    for adapter, part in zip(pair, (h[..., :r], h[..., r:])):
        module = layer.lora_B[adapter]
        for hook in module._forward_hooks.values():
            if hook(module, (part,), F.linear(part, module.weight).detach()) is not None:
                raise RuntimeError(
                    f"vgrout.adapters: a forward hook on lora_B[{adapter!r}] "
                    "returned a value; the routed forward lets them observe only"
                )


def _pair_output(
    layer: nn.Module, state: RouteState, name: str, pair: tuple[str, str], x: Tensor
) -> Tensor:
    """One block plus its anchor, masked: [batch, pos, d_out]."""
    block = pair[0]
    h = _bottleneck(layer, pair, x)
    _observe_lora_b(layer, pair, h)
    b = torch.cat([layer.lora_B[a].weight * layer.scaling[a] for a in pair], dim=1)  # [out, 2r]
    if block == QUARANTINE:
        if state.m is not None:
            h = h * _row_mask(state.m, h, name).to(h.dtype)
        return F.linear(h, b)
    if state.d is None:
        return F.linear(h, b)
    detached = _row_mask(state.d, h, name)  # [batch, 1, 1] bool
    if not bool(detached.any()):
        return F.linear(h, b)
    r = layer.lora_A[block].weight.shape[0]
    live = torch.cat([h[..., :r].masked_fill(detached, 0.0), h[..., r:]], dim=-1)
    dead = h[..., :r].detach().masked_fill(~detached, 0.0)
    return F.linear(live, b) + F.linear(dead, b[:, :r].detach())


def routed_forward(
    layer: nn.Module, state: RouteState, name: str, x: Tensor, *args, **kwargs
) -> Tensor:
    """base(x) + the active pairs' masked deltas; x: [batch, pos, d_in]."""
    if kwargs.pop("adapter_names", None) is not None:
        raise ValueError(
            "vgrout.adapters: adapter_names= mixed batches are not supported on a "
            "routed model; use route() masks"
        )
    if layer.disable_adapters and layer.merged:
        layer.unmerge()
    result = layer.base_layer(x, *args, **kwargs)
    if layer.disable_adapters or layer.merged:
        return result
    pairs = _active_pairs(layer, state, name)
    if not pairs:
        return result
    x = x.to(layer.lora_A[DEPLOYED].weight.dtype)
    delta = _pair_output(layer, state, name, pairs[0], x)
    for pair in pairs[1:]:
        delta = delta + _pair_output(layer, state, name, pair, x)
    return (result + delta).to(result.dtype)
