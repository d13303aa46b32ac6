"""The "fused" decoder: the lean loop's cache and prompt pass, a decode step of
fewer tensor ops, and finished rows dropped from the batch.

Why: on the CPU organism a lean decode step is many small tensor ops (each
norm, rotary embedding and projection several), so dispatch, not arithmetic,
takes much of its time (docs/grpo.md, "Generation"). Here each layer runs
`qwen3.fused_layer` from weights read once per call (`qwen3.LayerWeights`: q, k,
their half-rotated copies and v in one matrix, gate and up in another) and the
attention over the cache is `kvcache.step_attention`, the lean loop's.

Rows that have emitted eos stop costing work: the cache keeps its layout
[groups, n] (every row of a group attends the group's prompt, stored once),
and whenever the finished rows would free a quarter of it, the live rows of
each group move to the front and the layout shrinks to the groups still
running x the most rows any of them has left.

Every row draws its uniform from one [rows] draw per step, as the lean loop
does, so the RNG stream is the lean loop's whatever the layout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vgrout.lm import decode as lean
from vgrout.lm.decode import Decoded
from vgrout.lm.kvcache import KVCache, step_attention
from vgrout.lm.projections import projection_weight
from vgrout.lm.qwen3 import (
    LayerWeights,
    causal_lm,
    decoder_layers,
    final_logits,
    fused_layer,
    fused_supports,
    layer_weights,
)
from vgrout.lm.spec import SamplingSpec

SHRINK_AT = 0.75
"""Re-layout the cache once the live layout would be <= this share of the current one."""


def supports(model: nn.Module) -> bool:
    """True when the fused step computes what `model(...)` computes (`qwen3.fused_supports`)."""
    return fused_supports(model)


def step(
    lm: nn.Module,
    weights: list[LayerWeights],
    head: Tensor,
    tok: Tensor,
    cs: Tensor,
    cache: KVCache,
    t: int,
) -> Tensor:
    """fp32 logits [R, vocab] of the next token for tok [R] in the cache's layout [g, n].

    cs: [R, 2, 1, hd] cos and sin at each row's position; head: lm_head weight.
    """
    h = lm.model.embed_tokens(tok)  # [R, d]
    kv = cache.prompt_k.shape[2]
    for i, w in enumerate(weights):

        def attend(q: Tensor, k: Tensor, v: Tensor, i: int = i) -> Tensor:
            return step_attention(q, k, v, cache, i, t, None)  # q is scaled in qk_scale

        h = fused_layer(w, h, cs, kv, attend)
    return final_logits(lm, h, head)


def shrink(cache: KVCache, slots: Tensor, live: Tensor, t: int) -> tuple[KVCache, Tensor] | None:
    """The cache and slots [g', n'] holding only the live rows, or None when too little is freed.

    slots [g, n]: the batch row each slot decodes (-1: none); live [g, n]: the
    slot's row is still running. Live rows move to the front of their group;
    a group with none left is dropped. Slots 0..t of each kept row are copied.
    """
    count = live.sum(1)  # [g]
    keep = (count > 0).nonzero()[:, 0]
    width = int(count.max())
    if len(keep) * width > SHRINK_AT * slots.numel():
        return None
    order = torch.sort((~live[keep]).to(torch.int8), dim=1, stable=True).indices[:, :width]
    kept_live = live[keep].gather(1, order)
    new_slots = torch.where(kept_live, slots[keep].gather(1, order), -1)
    gi = keep[:, None].expand_as(order)  # [g', n'] group index of each slot

    def rows_of(x: Tensor) -> Tensor:  # [L, g, kv, n, T, hd] -> [L, g', kv, n', T, hd]
        out = torch.empty(
            x.shape[0], len(keep), x.shape[2], width, *x.shape[4:], dtype=x.dtype, device=x.device
        )
        out[..., : t + 1, :] = x[:, gi, :, order, : t + 1].permute(2, 0, 3, 1, 4, 5)
        return out

    new = KVCache(
        cache.prompt_k[:, keep],
        cache.prompt_v[:, keep],
        cache.prompt_bias[keep],
        rows_of(cache.new_k),
        rows_of(cache.new_v),
    )
    return new, new_slots


@torch.no_grad()
def decode(
    model: nn.Module,
    prompts: list[list[int]],
    n: int,
    spec: SamplingSpec,
    eos: int,
    pad: int,
    keep_logits: bool = False,
) -> Decoded:
    """`decode.decode` with the fused step and finished rows dropped; same arguments and result."""
    max_new_tokens, temperature = spec.max_new_tokens, spec.temperature
    top_k, top_p = spec.top_k, spec.top_p
    lm = causal_lm(model)
    layers = decoder_layers(lm)
    weights = [layer_weights(layer, f"layers.{i}") for i, layer in enumerate(layers)]
    head = projection_weight(lm.lm_head, "lm_head")
    pre = lean.prefill(lm, prompts, n, max_new_tokens, pad)
    cache, lengths, logits = pre.cache, pre.lengths, pre.logits  # logits [R, vocab], R = slots
    cs = torch.stack([pre.cos, pre.sin], 1)[:, :, None]  # [P+steps, 2, 1, hd]
    rows, dev = len(prompts) * n, logits.device
    slots = torch.arange(rows, device=dev).view(len(prompts), n)  # [g, n] batch row per slot
    done = torch.zeros(rows, dtype=torch.bool, device=dev)
    tokens, kept = [], []
    for t in range(max_new_tokens):
        flat = slots.reshape(-1)
        held = flat >= 0
        u = torch.rand((rows, 1), dtype=torch.float64, device=dev) if temperature > 0 else None
        picked = lean.choose(
            logits, temperature, top_k, top_p, None if u is None else u[flat.clamp(min=0)]
        )
        tok = torch.full((rows,), pad, dtype=torch.long, device=dev)
        tok[flat[held]] = picked[held]
        tok = tok.masked_fill(done, pad)
        tokens.append(tok)
        if keep_logits:
            full = torch.zeros(rows, logits.shape[1], device=dev)
            full[flat[held]] = logits[held]
            kept.append(full)
        done |= tok == eos
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        live = (slots >= 0) & ~done[slots.clamp(min=0)]
        smaller = shrink(cache, slots, live, t - 1) if t > 0 else None
        if smaller is not None:
            cache, slots = smaller
            flat = slots.reshape(-1)
        fed = tok[flat.clamp(min=0)].masked_fill(flat < 0, pad)
        at = lengths[flat.clamp(min=0)] + t  # [R]
        logits = step(lm, weights, head, fed, cs[at], cache, t)
    return Decoded(torch.stack(tokens, 1), torch.stack(kept, 1) if keep_logits else None)
