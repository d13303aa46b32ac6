"""Paired input differences at every target Linear, for the pair-based inits.

For each pair the prompt is rendered once and completed twice (hack, clean);
the input x of each adapted Linear is pooled over completion tokens and the
difference hack - clean is kept. Captured with forward pre-hooks on each LoRA
layer's `base_layer` while the adapters are disabled, so the statistics are
those of the unmodified base model.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from vgrout.lm.tokens import Batch, chat_prompt, encode, pool_completion

from .inits import PairStats
from .layers import lora_layers, short_name


def _check_pairs(pairs: Sequence) -> None:
    if not pairs:
        raise ValueError("vgrout.adapters: this init needs a non-empty list of pairs")
    for i, p in enumerate(pairs):
        for field in ("prompt", "hack", "clean"):
            if not isinstance(getattr(p, field, None), str):
                raise ValueError(
                    f"vgrout.adapters: pairs[{i}].{field} must be a str, "
                    f"got {type(getattr(p, field, None)).__name__}"
                )


@torch.no_grad()
def _pooled_inputs(
    model: nn.Module, layers: dict[str, nn.Module], batch: Batch
) -> dict[str, Tensor]:
    """Run one batch; return {short name: pooled input [batch, in] float64}."""
    pooled: dict[str, Tensor] = {}
    device = next(model.parameters()).device
    batch = batch.to(device)

    def make_hook(key: str):
        def hook(module, args):
            x = args[0]  # [batch, pos, in]
            pooled[key] = pool_completion(x.double(), batch.completion_mask).cpu()

        return hook

    handles = [
        layer.base_layer.register_forward_pre_hook(make_hook(key)) for key, layer in layers.items()
    ]
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    finally:
        for h in handles:
            h.remove()
    missing = set(layers) - set(pooled)
    if missing:
        raise RuntimeError(f"vgrout.adapters: no input captured at {sorted(missing)[:3]}")
    return pooled


def pair_input_deltas(
    model: nn.Module, pairs: Sequence, tokenizer, chunk: int = 16
) -> dict[str, PairStats]:
    """{short module name: PairStats(deltas [n_pairs, in])}. Call with adapters disabled."""
    _check_pairs(pairs)
    if tokenizer is None:
        raise ValueError("vgrout.adapters: pair-based inits need the tokenizer")
    layers = {short_name(name): layer for name, layer in lora_layers(model)}
    chunks: dict[str, list[Tensor]] = {k: [] for k in layers}
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        prompts = [chat_prompt(tokenizer, p.prompt) for p in part]
        hack = _pooled_inputs(model, layers, encode(tokenizer, prompts, [p.hack for p in part]))
        clean = _pooled_inputs(model, layers, encode(tokenizer, prompts, [p.clean for p in part]))
        for k in layers:
            chunks[k].append(hack[k] - clean[k])
    return {k: PairStats(torch.cat(v)) for k, v in chunks.items()}
