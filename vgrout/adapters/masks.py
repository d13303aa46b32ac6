"""Per-row route masks, read by the routed forward of every adapted Linear.

`forward.py` applies them on each block's bottleneck: `m` scales the
quarantine (and its anchor) row by row, `d` cuts the deployed block's gradient
on the chosen rows; every other row and block is untouched. Measured: a keep
row gives the quarantine a gradient of exactly 0.0, a route row gives the
deployed block exactly 0.0, and a batched gradient equals the sum of per-row
gradients.

The masks stay set for as long as the `route` context is open. Gradient
checkpointing re-runs the forward inside `backward()`, so `backward()` must be
called inside the context (with reentrant checkpointing, leaving it early is
silently wrong).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from .layers import DEPLOYED, assert_not_merged, lora_layers, routed_info


def _as_mask(x, name: str) -> Tensor:
    t = torch.as_tensor(x)
    if t.dim() != 1:
        raise ValueError(
            f"vgrout.adapters.route: {name} must be 1-D [batch], got shape {tuple(t.shape)}"
        )
    if t.dtype.is_floating_point or t.dtype.is_complex:
        bad = (t != 0) & (t != 1)
    else:
        bad = (t.long() != 0) & (t.long() != 1)
    if bad.any():
        raise ValueError(f"vgrout.adapters.route: {name} must hold only 0/1, got {t.tolist()}")
    return t


@contextmanager
def route(model: nn.Module, m, d) -> Iterator[None]:
    """Set per-row masks for forward AND backward: `m` quarantine on (1) / off (0),
    `d` deployed output detached (1) or live (0). Zones: keep (0,0), absorb
    (1,0), route (1,1). Call `backward()` inside the block.
    """
    info = routed_info(model)
    m_t, d_t = _as_mask(m, "m"), _as_mask(d, "d")
    if m_t.shape != d_t.shape:
        raise ValueError(f"vgrout.adapters.route: m has {m_t.shape[0]} rows, d has {d_t.shape[0]}")
    if info.state.m is not None or info.state.d is not None:
        raise RuntimeError(
            "vgrout.adapters.route: a route mask is already set; nested route() is not supported"
        )
    assert_not_merged(model, "route() called")
    device = next(layer.lora_B[DEPLOYED].weight.device for _, layer in lora_layers(model))
    info.state.m, info.state.d = m_t.to(device, torch.float32), d_t.to(device, torch.bool)
    try:
        yield
    finally:
        info.state.m, info.state.d = None, None
    assert_not_merged(model, "route() exited")  # merged inside the block: masks were bypassed
