"""The "fused" decoder: the lean loop's cache and prompt pass, a decode step of
fewer tensor ops, and finished rows dropped from the batch.

Why: on the CPU organism a lean decode step for 32 rows dispatches ~460 aten
ops (~115 per layer, sampling included: each norm, each rotary embedding and
each projection several), so dispatch, not arithmetic, took much of its time;
this step dispatches ~280 (benchmarks/profile_step.py ops). Here each layer
reads its weights once per call, concatenated:

    qkv rows    [q; k; rotate_half(q); rotate_half(k); v]   one matmul
    gate_up     [gate; up]                                  one matmul

`rotate_half` is a signed permutation of a head's features, so it commutes
with the per-head RMS factor and moves into the weights; q_norm/k_norm's
weight (and, for q, the attention scaling) fold into the cos/sin tables.
q and k then come out of one matmul, one rms_norm and two multiplies.

Rows that have emitted eos stop costing work: the cache keeps its layout
[groups, n] (every row of a group attends the group's prompt, stored once),
and whenever the finished rows would free a quarter of it, the live rows of
each group move to the front and the layout shrinks to the groups still
running x the most rows any of them has left. Organism completions average
~45 of their 100 allowed tokens, so most of a full batch's row-steps would be
spent on rows that have ended.

Every row draws its uniform from one [rows] draw per step, as the lean loop
does, so the RNG stream is the lean loop's whatever the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgrout.lm import decode as lean
from vgrout.lm.decode import Decoded, KVCache

SHRINK_AT = 0.75
"""Re-layout the cache once the live layout would be <= this share of the current one."""


def check_projection(m: nn.Module, where: str) -> None:
    """Raise unless m is a bias-free projection whose map is its (merged) weight: a plain
    Linear or a PEFT LoRA Linear. Refused: a bias, DoRA, a LoRA bias, or a forward
    replaced on the instance, as routed adapters do."""
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


def linear_weight(m: nn.Module, where: str) -> Tensor:
    """The [out, in] weight a projection applies: plain, or a PEFT LoRA Linear's merged one
    (raises as `check_projection` does for anything else)."""
    check_projection(m, where)
    if type(m) is nn.Linear:
        return m.weight
    weight = linear_weight(m.base_layer, where + ".base_layer")
    if m.merged or m.disable_adapters:
        return weight
    for a in m.active_adapters:
        weight = weight + m.get_delta_weight(a).to(weight.dtype)
    return weight


def _projections(layer: nn.Module) -> list[tuple[str, nn.Module]]:
    """A decoder layer's Linears by their path under the layer."""
    names = [f"self_attn.{p}_proj" for p in "qkvo"] + [
        f"mlp.{p}_proj" for p in ("gate", "up", "down")
    ]
    return [(name, layer.get_submodule(name)) for name in names]


def _rotated_rows(w: Tensor, head_dim: int) -> Tensor:
    """Rows of W' with x W'^T = rotate_half(x W^T) per head: [-second half; first half]."""
    per_head = w.view(-1, head_dim, w.shape[1])
    half = head_dim // 2
    return torch.cat((-per_head[:, half:], per_head[:, :half]), 1).reshape_as(w)


@dataclass
class LayerWeights:
    """One decoder layer's weights as the fused step uses them (d = hidden size)."""

    norm_in: Tensor
    """[d] input_layernorm weight."""
    qkv: Tensor
    """[(2 (H + KV) + KV) hd, d]: q, k, rotate_half(q), rotate_half(k), v rows."""
    qk_scale: Tensor
    """[2, H + KV, hd]: q_norm / k_norm weight (q's times the attention scaling), then half-swapped."""
    o_t: Tensor
    """[H hd, d] o_proj weight, transposed for addmm."""
    norm_post: Tensor
    """[d] post_attention_layernorm weight."""
    gate_up: Tensor
    """[2 I, d]: gate then up rows."""
    down_t: Tensor
    """[I, d] down_proj weight, transposed for addmm."""
    eps: tuple[float, float, float]
    """Epsilons of the input, q/k and post-attention norms."""


def layer_weights(layer: nn.Module, where: str) -> LayerWeights:
    attn, mlp = layer.self_attn, layer.mlp
    hd = attn.head_dim
    wq = linear_weight(attn.q_proj, f"{where}.self_attn.q_proj")
    wk = linear_weight(attn.k_proj, f"{where}.self_attn.k_proj")
    wv = linear_weight(attn.v_proj, f"{where}.self_attn.v_proj")
    heads, kv = wq.shape[0] // hd, wk.shape[0] // hd
    g = torch.cat([attn.q_norm.weight.expand(heads, hd), attn.k_norm.weight.expand(kv, hd)])
    g = (
        g
        * torch.tensor([attn.scaling] * heads + [1.0] * kv, dtype=g.dtype, device=g.device)[:, None]
    )
    half = hd // 2
    return LayerWeights(
        norm_in=layer.input_layernorm.weight,
        qkv=torch.cat([wq, wk, _rotated_rows(wq, hd), _rotated_rows(wk, hd), wv]),
        qk_scale=torch.stack([g, torch.cat((g[:, half:], g[:, :half]), -1)]),
        o_t=linear_weight(attn.o_proj, f"{where}.self_attn.o_proj").t(),
        norm_post=layer.post_attention_layernorm.weight,
        gate_up=torch.cat(
            [
                linear_weight(mlp.gate_proj, f"{where}.mlp.gate_proj"),
                linear_weight(mlp.up_proj, f"{where}.mlp.up_proj"),
            ]
        ),
        down_t=linear_weight(mlp.down_proj, f"{where}.mlp.down_proj").t(),
        eps=(
            layer.input_layernorm.variance_epsilon,
            attn.q_norm.variance_epsilon,
            layer.post_attention_layernorm.variance_epsilon,
        ),
    )


def _bypassed(lm: nn.Module) -> list[nn.Module]:
    """Modules whose forward the fused step does not call (their hooks would not fire)."""
    out = []
    for layer in lm.model.layers[: lm.config.num_hidden_layers]:
        a = layer.self_attn
        out += [layer.input_layernorm, layer.post_attention_layernorm, a.q_norm, a.k_norm]
        out += [layer.mlp] + [m for _, m in _projections(layer)]
    return out + [lm.model.norm, lm.lm_head]


def supports(model: nn.Module) -> bool:
    """True when the fused step computes what `model(...)` computes for this model.

    Checks every projection without reading its weight: `decode` reads them once.
    """
    if not lean.supports(model):
        return False
    lm = lean.causal_lm(model)
    if lm.config.hidden_act != "silu":
        return False
    if any(m._forward_hooks or m._forward_pre_hooks for m in _bypassed(lm)):
        return False
    try:
        for i, layer in enumerate(lm.model.layers[: lm.config.num_hidden_layers]):
            for name, m in _projections(layer):
                check_projection(m, f"layers.{i}.{name}")
        check_projection(lm.lm_head, "lm_head")
    except TypeError:
        return False
    return True


def step(lm, weights, head: Tensor, tok: Tensor, cs: Tensor, cache: KVCache, t: int) -> Tensor:
    """fp32 logits [R, vocab] of the next token for tok [R] in the cache's layout [g, n].

    cs: [R, 2, 1, hd] cos and sin at each row's position; head: lm_head weight.
    """
    h = lm.model.embed_tokens(tok)  # [R, d]
    rows, d = h.shape
    _, g, kv, width, hd = cache.prompt_k.shape
    n = cache.new_k.shape[3]
    for i, w in enumerate(weights):
        y = F.linear(F.rms_norm(h, (d,), w.norm_in, w.eps[0]), w.qkv)
        nqk = w.qk_scale.shape[1]
        heads, rep = nqk - kv, (nqk - kv) // kv
        both = F.rms_norm(y[:, : 2 * nqk * hd].view(rows, 2, nqk, hd), (hd,), None, w.eps[1])
        qk = (both * (w.qk_scale * cs)).sum(1)  # [R, H+KV, hd], rotated, scaled
        q, k = qk[:, :heads], qk[:, heads:]
        v = y[:, 2 * nqk * hd :].view(rows, kv, hd)
        cache.new_k[i, :, :, :, t] = k.view(g, n, kv, hd).transpose(1, 2)
        cache.new_v[i, :, :, :, t] = v.view(g, n, kv, hd).transpose(1, 2)
        qg = q.reshape(g, n, kv, rep, hd).transpose(1, 2).contiguous()  # [g, kv, n, rep, hd]
        s_prompt = qg.view(g, kv, n * rep, hd) @ cache.prompt_k[i].transpose(-1, -2)
        s_prompt = s_prompt.view(g, kv, n, rep, width) + cache.prompt_bias
        s_new = qg @ cache.new_k[i, :, :, :, : t + 1].transpose(-1, -2)  # [g, kv, n, rep, t+1]
        p = lean.softmax_like_model(torch.cat([s_prompt, s_new], -1), h.dtype)
        out = (p[..., :width].reshape(g, kv, n * rep, width) @ cache.prompt_v[i]).view(
            g, kv, n, rep, hd
        ) + p[..., width:] @ cache.new_v[i, :, :, :, : t + 1]
        h = torch.addmm(h, out.transpose(1, 2).reshape(rows, heads * hd), w.o_t)
        gu = F.linear(F.rms_norm(h, (d,), w.norm_post, w.eps[2]), w.gate_up)
        half = gu.shape[1] // 2
        h = torch.addmm(h, F.silu(gu[:, :half]) * gu[:, half:], w.down_t)
    norm = lm.model.norm
    return F.linear(F.rms_norm(h, (d,), norm.weight, norm.variance_epsilon), head).float()


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
    max_new_tokens: int,
    eos: int,
    pad: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    keep_logits: bool = False,
) -> Decoded:
    """`decode.decode` with the fused step and finished rows dropped; same arguments and result."""
    lm = lean.causal_lm(model)
    layers = lm.model.layers[: lm.config.num_hidden_layers]
    weights = [layer_weights(layer, f"layers.{i}") for i, layer in enumerate(layers)]
    head = linear_weight(lm.lm_head, "lm_head")
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
