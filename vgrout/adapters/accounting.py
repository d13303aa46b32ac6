"""Per-block diagnostics: gradient norms, learned-delta norms, quarantine share,
and gradient clipping per block (one block's large gradient must not shrink
the other block's step, as a global clip would).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attach import trainable_parameters
from .layers import ANCHOR, BLOCKS, lora_layers, routed_info


def block_grad_norms(model: nn.Module) -> dict[str, float]:
    """{"deployed": ||grad||_2, "quarantine": ||grad||_2} over each block's A and B (None grads count 0)."""
    out = {}
    for block, params in trainable_parameters(model).items():
        sq = sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None)
        out[block] = math.sqrt(sq)
    return out


@torch.no_grad()
def block_delta_norms(model: nn.Module) -> dict[str, float]:
    """{block: sqrt(sum over modules ||scaling (B A - B0 A0)||_F^2)}: the learned weight change.

    Uses ||Bc Ac||_F^2 = tr(Bc^T Bc Ac Ac^T) with Bc = [B, -B0], Ac = [A; A0]
    ([2r, 2r] products, float64), so no [out, in] matrix is formed.
    """
    routed_info(model)
    sq = {b: 0.0 for b in BLOCKS}
    for _, layer in lora_layers(model):
        for block in BLOCKS:
            names = (block, ANCHOR[block])
            a = torch.cat([layer.lora_A[n].weight.double() for n in names], 0)  # [2r, in]
            b = torch.cat([layer.lora_B[n].weight.double() for n in names], 1)  # [out, 2r]
            gram = (b.T @ b) * (a @ a.T)  # elementwise; sum = tr(B^T B A A^T)
            sq[block] += max(float(gram.sum()), 0.0) * float(layer.scaling[block]) ** 2
    return {b: math.sqrt(v) for b, v in sq.items()}


def quarantine_share(model: nn.Module) -> float:
    """||dQ||^2 / (||dD||^2 + ||dQ||^2) of the learned deltas; NaN before any update."""
    norms = block_delta_norms(model)
    total = norms["deployed"] ** 2 + norms["quarantine"] ** 2
    return norms["quarantine"] ** 2 / total if total > 0 else float("nan")


def clip_grad_per_block(model: nn.Module, max_norm: float) -> dict[str, float]:
    """Clip each block's gradient to `max_norm` separately; return the norms before clipping."""
    if not max_norm > 0:
        raise ValueError(
            f"vgrout.adapters.clip_grad_per_block: max_norm must be > 0, got {max_norm!r}"
        )
    out = {}
    for block, params in trainable_parameters(model).items():
        with_grad = [p for p in params if p.grad is not None]
        out[block] = (
            float(torch.nn.utils.clip_grad_norm_(with_grad, max_norm)) if with_grad else 0.0
        )
    return out
