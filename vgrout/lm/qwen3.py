"""What a Qwen3 decoder layer computes, written once for every fast path.

`model(...)` (the Hugging Face forward) is the readable reference. Three fast
paths run the same layer in other layouts, and each calls this module for the
layer and supplies only its attention:

- the lean decode loop (`decode.py`) and the packed forward (`packed.py`) call
  `layer_forward`, which drives the model's own modules (norms, projections,
  rotary embedding, MLP), so PEFT LoRA and the routed forward apply as in
  `model(...)`;
- the fused decode loop (`fused.py`) calls `fused_layer`, the same layer
  computed from the weights `layer_weights` reads once per call, for one token
  per row.

A fix to the layer (a new architecture, a norm, the rotary embedding) is made
here once; `tests/test_decode.py`, `tests/test_fused.py` and
`tests/test_packed.py` pin each path to `model(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgrout.lm.projections import check_projection, projection_weight

Attend = Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]
"""attend(self_attn, q, k, v) -> attention output before o_proj, [batch, pos, heads*hd]."""


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM under any PEFT wrapper (the modules stay the wrapped ones)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The layers the model runs (`num_hidden_layers` of `lm.model.layers`)."""
    return list(lm.model.layers[: lm.config.num_hidden_layers])


def containers(lm: nn.Module) -> list[nn.Module]:
    """Modules whose forward no fast path calls (the model, each layer, each attention):
    a hook on one of them would not fire."""
    layers = list(lm.model.layers)
    return [lm, lm.model, *layers, *(layer.self_attn for layer in layers)]


def supports(model: nn.Module) -> bool:
    """True when `layer_forward` with a correct attention computes what `model(...)` does."""
    lm = causal_lm(model)
    cfg = getattr(lm, "config", None)
    if cfg is None or cfg.model_type != "qwen3":
        return False
    if any(t != "full_attention" for t in cfg.layer_types[: cfg.num_hidden_layers]):
        return False
    rope = lm.model.rotary_emb.rope_type
    if "dynamic" in rope or rope == "longrope":  # frequencies depend on the length seen
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in containers(lm))


def rope_table(lm: nn.Module, length: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    """cos, sin [length, hd] of positions 0..length-1, from the model's rotary module.

    Each entry depends on its position alone (`supports` excludes the rope
    types that rescale with the sequence seen), so looking rows up in one
    table gives the bits a per-call computation would.
    """
    like = torch.empty(0, dtype=dtype, device=device)
    cos, sin = lm.model.rotary_emb(like, torch.arange(length, device=device)[None])
    return cos[0], sin[0]


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of x [batch, heads, pos, head_dim]; cos, sin [batch, pos, head_dim]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin


def project_qkv(attn: nn.Module, x: Tensor, cos: Tensor, sin: Tensor):
    """q [batch, heads, pos, hd], k and v [batch, kv_heads, pos, hd] from x [batch, pos, d]:
    the projections, q/k norms and rotary embedding."""
    b, s, _ = x.shape
    shape = (b, s, -1, attn.head_dim)
    q = attn.q_norm(attn.q_proj(x).view(shape)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(shape)).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    return rotate(q, cos, sin), rotate(k, cos, sin), v


def softmax_like_model(scores: Tensor, dtype: torch.dtype) -> Tensor:
    """Softmax in fp32 (or wider), cast back to the compute dtype, as the model's eager attention."""
    wide = torch.promote_types(scores.dtype, torch.float32)
    return F.softmax(scores, dim=-1, dtype=wide).to(dtype)


def layer_forward(layer: nn.Module, h: Tensor, cos: Tensor, sin: Tensor, attend: Attend) -> Tensor:
    """One decoder layer through its own modules: h [batch, pos, d] -> [batch, pos, d].

    cos, sin [batch, pos, hd] at each token's position; `attend` is the only
    part a layout supplies (a KV cache, a packed stream).
    """
    attn = layer.self_attn
    q, k, v = project_qkv(attn, layer.input_layernorm(h), cos, sin)
    h = h + attn.o_proj(attend(attn, q, k, v))
    return h + layer.mlp(layer.post_attention_layernorm(h))


# --- the fused step: the same layer from weights read once per call ---

PROJECTIONS = tuple(f"self_attn.{p}_proj" for p in "qkvo") + tuple(
    f"mlp.{p}_proj" for p in ("gate", "up", "down")
)
"""A decoder layer's Linears by their path under the layer."""


def weight_modules(lm: nn.Module) -> list:
    """Modules the fused step reads as weights instead of calling (their hooks would not fire)."""
    out = []
    for layer in decoder_layers(lm):
        a = layer.self_attn
        out += [layer.input_layernorm, layer.post_attention_layernorm, a.q_norm, a.k_norm]
        out += [layer.mlp] + [layer.get_submodule(p) for p in PROJECTIONS]
    return out + [lm.model.norm, lm.lm_head]


def fused_supports(model: nn.Module) -> bool:
    """True when `fused_layer` computes what `model(...)` does: `supports`, a SiLU MLP, no
    hook on a module the step reads as weights, and every projection a readable weight.

    Checks every projection without reading its weight (`layer_weights` reads them once).
    """
    if not supports(model):
        return False
    lm = causal_lm(model)
    if lm.config.hidden_act != "silu":
        return False
    if any(m._forward_hooks or m._forward_pre_hooks for m in weight_modules(lm)):
        return False
    try:
        for i, layer in enumerate(decoder_layers(lm)):
            for name in PROJECTIONS:
                check_projection(layer.get_submodule(name), f"layers.{i}.{name}")
        check_projection(lm.lm_head, "lm_head")
    except TypeError:
        return False
    return True


def _rotated_rows(w: Tensor, head_dim: int) -> Tensor:
    """Rows of W' with x W'^T = rotate_half(x W^T) per head: [-second half; first half]."""
    per_head = w.view(-1, head_dim, w.shape[1])
    half = head_dim // 2
    return torch.cat((-per_head[:, half:], per_head[:, :half]), 1).reshape_as(w)


@dataclass
class LayerTaps:
    """Extra rows multiplied beside a layer's projections in the fused step: for each group
    of projections that share an input, the stacked rows [k, in] of the products wanted
    (None: none). `adapters.bottleneck_taps` fills them with a LoRA block's A matrices,
    so that sampling also yields that block's bottleneck A·x."""

    qkv: Tensor | None = None
    """Rows on the q/k/v input (the normed hidden state) [k, d]."""
    o: Tensor | None = None
    """Rows on o_proj's input (the attention output) [k, H hd]."""
    gate_up: Tensor | None = None
    """Rows on the gate/up input (the normed hidden state after attention) [k, d]."""
    down: Tensor | None = None
    """Rows on down_proj's input (silu(gate) * up) [k, I]."""


@dataclass
class LayerWeights:
    """One decoder layer's weights as the fused step uses them (d = hidden size).

    `rotate_half` is a signed permutation of a head's features, so it commutes
    with the per-head RMS factor and moves into the weights; q_norm/k_norm's
    weight (and, for q, the attention scaling) fold into `qk_scale`, which
    multiplies the cos/sin tables. q and k then come out of one matmul, one
    rms_norm and two multiplies.
    """

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
    taps: LayerTaps | None = None
    """Products to compute beside the projections (see `LayerTaps`)."""


def layer_weights(layer: nn.Module, where: str) -> LayerWeights:
    """Read one layer's weights (a LoRA projection's merged one) into the fused layout."""
    attn = layer.self_attn
    hd = attn.head_dim

    def weight(name: str) -> Tensor:
        return projection_weight(layer.get_submodule(name), f"{where}.{name}")

    wq, wk, wv = weight("self_attn.q_proj"), weight("self_attn.k_proj"), weight("self_attn.v_proj")
    heads, kv = wq.shape[0] // hd, wk.shape[0] // hd
    g = torch.cat([attn.q_norm.weight.expand(heads, hd), attn.k_norm.weight.expand(kv, hd)])
    scale = [attn.scaling] * heads + [1.0] * kv
    g = g * torch.tensor(scale, dtype=g.dtype, device=g.device)[:, None]
    half = hd // 2
    return LayerWeights(
        norm_in=layer.input_layernorm.weight,
        qkv=torch.cat([wq, wk, _rotated_rows(wq, hd), _rotated_rows(wk, hd), wv]),
        qk_scale=torch.stack([g, torch.cat((g[:, half:], g[:, :half]), -1)]),
        o_t=weight("self_attn.o_proj").t(),
        norm_post=layer.post_attention_layernorm.weight,
        gate_up=torch.cat([weight("mlp.gate_proj"), weight("mlp.up_proj")]),
        down_t=weight("mlp.down_proj").t(),
        eps=(
            layer.input_layernorm.variance_epsilon,
            attn.q_norm.variance_epsilon,
            layer.post_attention_layernorm.variance_epsilon,
        ),
    )


FusedAttend = Callable[[Tensor, Tensor, Tensor], Tensor]
"""attend(q [R, H, hd] rotated and scaled, k [R, KV, hd] rotated, v [R, KV, hd]) -> [R, H hd]."""


def fused_layer(
    w: LayerWeights, h: Tensor, cs: Tensor, kv: int, attend: FusedAttend,
    tapped: list[Tensor] | None = None,
) -> Tensor:  # fmt: skip
    """`layer_forward` for one token per row from its weights: h [R, d] -> [R, d].

    cs: [R, 2, 1, hd] cos and sin at each row's position; kv: key/value heads.
    tapped: where the products of `w.taps` go ([R, k] each, in projection order).
    """
    rows, d = h.shape
    hd = cs.shape[-1]
    x = F.rms_norm(h, (d,), w.norm_in, w.eps[0])
    y = F.linear(x, w.qkv)
    nqk = w.qk_scale.shape[1]
    heads = nqk - kv
    both = F.rms_norm(y[:, : 2 * nqk * hd].view(rows, 2, nqk, hd), (hd,), None, w.eps[1])
    qk = (both * (w.qk_scale * cs)).sum(1)  # [R, H+KV, hd], rotated, scaled
    v = y[:, 2 * nqk * hd :].view(rows, kv, hd)
    att = attend(qk[:, :heads], qk[:, heads:], v)
    h = torch.addmm(h, att, w.o_t)
    x_post = F.rms_norm(h, (d,), w.norm_post, w.eps[2])
    gu = F.linear(x_post, w.gate_up)
    half = gu.shape[1] // 2
    act = F.silu(gu[:, :half]) * gu[:, half:]
    if w.taps is not None and tapped is not None:
        for rows_in, inp in ((w.taps.qkv, x), (w.taps.o, att), (w.taps.gate_up, x_post),
                             (w.taps.down, act)):  # fmt: skip
            if rows_in is not None:
                tapped.append(F.linear(inp, rows_in))
    return torch.addmm(h, act, w.down_t)


def final_logits(lm: nn.Module, h: Tensor, head: Tensor) -> Tensor:
    """fp32 logits [R, vocab] of hidden states h [R, d] from the final norm's and the head's weights."""
    norm = lm.model.norm
    return F.linear(F.rms_norm(h, (h.shape[-1],), norm.weight, norm.variance_epsilon), head).float()
