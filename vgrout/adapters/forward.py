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

With `one_product` (set at attach) both pairs run as one rank-4r product,
h = x @ [A; A0; Aq; A0q]^T and out = h @ [B*s, B0*s, Bq*s, B0q*s]^T, with the
same masks on the same columns: two matmuls a Linear instead of four, which
on a small model is most of what a routed step costs over a plain one. Values
then differ from the two products by float rounding (the bit-for-bit
equality above no longer holds for the trained view), so a run keeps one
choice throughout.

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


def _bottleneck(layer: nn.Module, adapters: tuple[str, ...], x: Tensor) -> Tensor:
    """h = x @ [A; A0; ...]^T: [batch, pos, r * len(adapters)]; lora_A forward hooks
    see (and may edit) their adapter's slice."""
    h = F.linear(x, torch.cat([layer.lora_A[a].weight for a in adapters]))
    parts = list(h.split([layer.lora_A[a].weight.shape[0] for a in adapters], dim=-1))
    hooked = False
    for i, adapter in enumerate(adapters):
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


def _product(
    layer: nn.Module, state: RouteState, name: str, pairs: list[tuple[str, str]], x: Tensor
) -> Tensor:
    """The given pairs as one masked product: [batch, pos, d_out].

    With one pair this is the per-block product of the module docstring; with
    both, one rank-4r product (the quarantine's columns scaled by m, the
    deployed block's cut on rows with d = 1), which differs from the sum of
    the two per-block products by float rounding only.
    """
    adapters = tuple(a for pair in pairs for a in pair)
    h = _bottleneck(layer, adapters, x)
    b = torch.cat([layer.lora_B[a].weight * layer.scaling[a] for a in adapters], dim=1)
    r = layer.lora_A[DEPLOYED].weight.shape[0]
    parts, dead, start = [], None, 0
    for pair in pairs:
        part = h[..., start : start + 2 * r]  # [batch, pos, 2r]: block then anchor
        _observe_lora_b(layer, pair, part)
        if pair[0] == QUARANTINE and state.m is not None:
            part = part * _row_mask(state.m, part, name).to(part.dtype)
        elif pair[0] == DEPLOYED and state.d is not None:
            detached = _row_mask(state.d, part, name)  # [batch, 1, 1] bool
            if bool(detached.any()):
                cut = part[..., :r].detach().masked_fill(~detached, 0.0)
                dead = F.linear(cut, b[:, start : start + r].detach())
                part = torch.cat([part[..., :r].masked_fill(detached, 0.0), part[..., r:]], -1)
        parts.append(part)
        start += 2 * r
    live = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    out = F.linear(live, b)
    return out if dead is None else out + dead


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
    if state.one_product:
        return (result + _product(layer, state, name, pairs, x)).to(result.dtype)
    delta = _product(layer, state, name, pairs[:1], x)
    for pair in pairs[1:]:
        delta = delta + _product(layer, state, name, [pair], x)
    return (result + delta).to(result.dtype)
