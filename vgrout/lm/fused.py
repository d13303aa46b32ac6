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

import dataclasses

import torch
from torch import Tensor, nn

from vgrout.lm import decode as lean
from vgrout.lm.decode import Decoded
from vgrout.lm.kvcache import KVCache, step_attention
from vgrout.lm.projections import projection_weight
from vgrout.lm.qwen3 import (
    LayerTaps,
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
    tapped: list[Tensor] | None = None,
) -> Tensor:
    """fp32 logits [R, vocab] of the next token for tok [R] in the cache's layout [g, n].

    cs: [R, 2, 1, hd] cos and sin at each row's position; head: lm_head weight;
    tapped: where the layers' tapped products go (`qwen3.fused_layer`).
    """
    h = lm.model.embed_tokens(tok)  # [R, d]
    kv = cache.prompt_k.shape[2]
    for i, w in enumerate(weights):

        def attend(q: Tensor, k: Tensor, v: Tensor, i: int = i) -> Tensor:
            return step_attention(q, k, v, cache, i, t, None)  # q is scaled in qk_scale

        h = fused_layer(w, h, cs, kv, attend, tapped)
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


class TapPool:
    """Sums of the tapped products over each batch row's completion tokens (eos included)."""

    def __init__(self, rows: int, device):
        self.sums: Tensor | None = None  # [rows, k], at least fp32
        self.count = torch.zeros(rows, device=device)

    def add(self, tapped: list[Tensor], flat: Tensor, fed: Tensor) -> None:
        """tapped: [R, k_i] per slot; flat [R]: each slot's batch row (-1: none); fed [rows]:
        the row's token at this step is a completion token."""
        x = torch.cat(tapped, 1)
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        ok = (flat >= 0) & fed[flat.clamp(min=0)]
        if self.sums is None:
            self.sums = x.new_zeros(len(self.count), x.shape[1])
        self.sums.index_add_(0, flat[ok], x[ok])
        self.count.index_add_(0, flat[ok], torch.ones_like(flat[ok], dtype=self.count.dtype))

    def mean(self) -> Tensor:
        """[rows, k]; a row with no token gives 0."""
        if self.sums is None:
            raise RuntimeError("TapPool: no decode step fed a token")
        return self.sums / self.count.clamp_min(1.0)[:, None].to(self.sums.dtype)


def _by_row(values: Tensor, flat: Tensor, rows: int, fill) -> Tensor:
    """Per-slot values [R, ...] -> per batch row [rows, ...] (`fill` for a row without a slot)."""
    held = flat >= 0
    out = torch.full((rows, *values.shape[1:]), fill, dtype=values.dtype, device=values.device)
    out[flat[held]] = values[held]
    return out


def _pick(logits: Tensor, flat: Tensor, rows: int, spec: SamplingSpec, pad: int) -> Tensor:
    """Each batch row's next token [rows] from its slot's logits; every row takes its uniform
    from one [rows] draw per step, so the random stream is the lean loop's whatever the layout."""
    dev = logits.device
    u = torch.rand((rows, 1), dtype=torch.float64, device=dev) if spec.temperature > 0 else None
    picked = lean.choose(logits, spec.temperature, spec.top_k, spec.top_p,
                         None if u is None else u[flat.clamp(min=0)])  # fmt: skip
    return _by_row(picked, flat, rows, pad)


@torch.no_grad()
def decode(
    model: nn.Module,
    prompts: list[list[int]],
    n: int,
    spec: SamplingSpec,
    eos: int,
    pad: int,
    keep_logits: bool = False,
    taps: list[LayerTaps] | None = None,
) -> Decoded:
    """`decode.decode` with the fused step and finished rows dropped; same arguments and result.

    taps: per layer, products to compute beside the projections (`qwen3.LayerTaps`);
    their mean over each row's completion tokens comes back as `Decoded.features`.
    To see every completion token as input, a row stays in the batch for one step
    after its last token (eos, or the length cap), whose sampled token is dropped.
    """
    lm = causal_lm(model)
    weights = [layer_weights(layer, f"layers.{i}") for i, layer in enumerate(decoder_layers(lm))]
    if taps is not None:
        weights = [dataclasses.replace(w, taps=tp) for w, tp in zip(weights, taps, strict=True)]
    head = projection_weight(lm.lm_head, "lm_head")
    rows = len(prompts) * n
    pool = None if taps is None else TapPool(rows, head.device)
    pre = lean.prefill(lm, prompts, n, spec.max_new_tokens + (pool is not None), pad)
    cache, lengths, logits = pre.cache, pre.lengths, pre.logits  # logits [R, vocab], R = slots
    cs = torch.stack([pre.cos, pre.sin], 1)[:, :, None]  # [P+steps, 2, 1, hd]
    slots = torch.arange(rows, device=logits.device).view(len(prompts), n)  # [g, n] batch rows
    done = torch.zeros(rows, dtype=torch.bool, device=logits.device)
    tokens, kept = [], []
    for t in range(spec.max_new_tokens):
        flat = slots.reshape(-1)
        tok = _pick(logits, flat, rows, spec, pad).masked_fill(done, pad)
        tokens.append(tok)
        if keep_logits:
            kept.append(_by_row(logits, flat, rows, 0.0))
        fed = ~done  # rows whose token t is a completion token
        done |= tok == eos
        last = t == spec.max_new_tokens - 1 or bool(done.all())
        if last and pool is None:
            break
        live = (slots >= 0) & (fed if pool is not None else ~done)[slots.clamp(min=0)]
        smaller = shrink(cache, slots, live, t - 1) if t > 0 else None
        if smaller is not None:
            cache, slots = smaller
            flat = slots.reshape(-1)
        ids = tok[flat.clamp(min=0)].masked_fill(flat < 0, pad)
        at = lengths[flat.clamp(min=0)] + t  # [R]
        tapped: list[Tensor] | None = None if pool is None else []
        logits = step(lm, weights, head, ids, cs[at], cache, t, tapped)
        if pool is not None:
            pool.add(tapped or [], flat, fed)
        if last:
            break
    features = None if pool is None else pool.mean()
    return Decoded(torch.stack(tokens, 1), torch.stack(kept, 1) if keep_logits else None, features)
