"""A lean decode loop for `sampling.generate`: a KV cache written in place, the
shared prompt of a group run and held once.

Why not `model.generate`: on the CPU organism (32 rows x 100 new tokens) its
dynamic cache concatenates every layer's keys and values at every new token,
so the copies grow as rows x length^2 and were 37% of the time; the mask,
cache and logits-processor machinery around each step took most of the rest.
The 8 rollouts of a GRPO group also share their ~130-token prompt, which the
dynamic cache runs, holds and copies 8 times.

Here the loop drives the model's own modules (embedding, norms, the q/k/v/o
and MLP Linears, rotary embedding, lm_head), so LoRA wrappers, routed
forwards and merged weights apply exactly as in `model(...)`; only the
attention over the cache is computed here. The cache holds:

    prompt keys/values   [layers, groups, kv_heads, P, head_dim]   once per group
    new keys/values      [layers, rows, kv_heads, T, head_dim]      written at slot t

Every row of group g attends its group's prompt (left padding masked) and its
own new tokens 0..t. Only Qwen3 is supported; `supports` says when to fall
back to `model.generate` (another architecture, sliding windows, or forward
hooks on modules this loop bypasses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM under any PEFT wrapper (the modules stay the wrapped ones)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _bypassed(lm: nn.Module) -> list[nn.Module]:
    """Modules whose forward this loop does not call (their hooks would not fire)."""
    layers = list(lm.model.layers)
    return [lm, lm.model, *layers, *(layer.self_attn for layer in layers)]


def supports(model: nn.Module) -> bool:
    """True when `decode` computes what `model(...)` computes for this model."""
    lm = causal_lm(model)
    cfg = getattr(lm, "config", None)
    if cfg is None or cfg.model_type != "qwen3":
        return False
    if any(t != "full_attention" for t in cfg.layer_types[: cfg.num_hidden_layers]):
        return False
    rope = lm.model.rotary_emb.rope_type
    if "dynamic" in rope or rope == "longrope":  # frequencies depend on the length seen
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in _bypassed(lm))


@dataclass
class KVCache:
    """Keys and values written in place; rows are grouped as group 0 x n, group 1 x n, ...

    prompt_k, prompt_v: [layers, groups, kv_heads, P, head_dim]
    prompt_bias:        [groups, 1, 1, 1, P]  0 on prompt tokens, -inf on left padding
    new_k, new_v:       [layers, groups, kv_heads, n, T, head_dim]

    The new tokens' rows are [groups, n] with the kv head between the two
    (row g*n + j is [g, :, j]), so that a step's scores over the prompt and
    over the new tokens come out in one layout and need no shuffling.
    """

    prompt_k: Tensor
    prompt_v: Tensor
    prompt_bias: Tensor
    new_k: Tensor
    new_v: Tensor


def empty_cache(lm: nn.Module, valid: Tensor, n: int, steps: int, dtype: torch.dtype) -> KVCache:
    """Preallocate the cache for prompts `valid` [groups, P] and `steps` new tokens per row."""
    cfg = lm.config
    groups, width = valid.shape
    layers, kv = cfg.num_hidden_layers, cfg.num_key_value_heads
    head_dim = lm.model.layers[0].self_attn.head_dim
    dev = valid.device
    prompt = (layers, groups, kv, width, head_dim)
    new = (layers, groups, kv, n, steps, head_dim)
    bias = torch.zeros(groups, 1, 1, 1, width, dtype=dtype, device=dev)
    bias.masked_fill_(~valid[:, None, None, None, :], float("-inf"))
    return KVCache(
        torch.empty(prompt, dtype=dtype, device=dev),
        torch.empty(prompt, dtype=dtype, device=dev),
        bias,
        torch.empty(new, dtype=dtype, device=dev),
        torch.empty(new, dtype=dtype, device=dev),
    )


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of x [batch, heads, pos, head_dim]; cos, sin [batch, pos, head_dim]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin


def project_qkv(attn: nn.Module, x: Tensor, cos: Tensor, sin: Tensor):
    """q [batch, heads, pos, hd], k and v [batch, kv_heads, pos, hd] from x [batch, pos, d]."""
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


def prompt_attention(
    attn: nn.Module, q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int
) -> Tensor:
    """Causal attention within each group's prompt; stores its k, v. Returns [groups, P, heads*hd].

    q [groups, heads, P, hd]; k, v [groups, kv_heads, P, hd]. A padding query
    may attend itself, so that no row of the softmax is empty (an empty one is
    NaN, and NaN values in a padding slot would poison every later row that
    multiplies them by its zero weight).
    """
    g, heads, width, hd = q.shape
    kv = k.shape[1]
    cache.prompt_k[layer] = k
    cache.prompt_v[layer] = v
    pos = torch.arange(width, device=q.device)
    causal = pos[None, :] <= pos[:, None]  # [P, P]: query i sees keys j <= i
    allowed = (causal & (cache.prompt_bias[:, 0] == 0)) | torch.eye(
        width, dtype=torch.bool, device=q.device
    )  # [groups, 1, P, P]
    q5 = q.view(g, kv, heads // kv, width, hd)  # heads grouped by the kv head they read
    scores = q5 @ k.unsqueeze(2).transpose(-1, -2) * attn.scaling  # [groups, kv, rep, P, P]
    scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    out = softmax_like_model(scores, q.dtype) @ v.unsqueeze(2)  # [groups, kv, rep, P, hd]
    return out.view(g, heads, width, hd).transpose(1, 2).reshape(g, width, heads * hd)


def step_attention(
    attn: nn.Module, q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int, t: int
) -> Tensor:
    """One new token per row over its group's prompt and its own slots 0..t. Returns [rows, 1, heads*hd].

    q [rows, heads, 1, hd]; k, v [rows, kv_heads, 1, hd], written to slot t.
    The prompt is read once per group: per kv head, the group's n rows x rep
    query heads form one [n*rep, hd] block, multiplied by the prompt keys once.
    """
    rows, heads, _, hd = q.shape
    _, g, kv, width, _ = cache.prompt_k.shape
    n, rep = cache.new_k.shape[3], heads // kv
    cache.new_k[layer, :, :, :, t] = k.view(g, n, kv, hd).transpose(1, 2)
    cache.new_v[layer, :, :, :, t] = v.view(g, n, kv, hd).transpose(1, 2)
    new_k = cache.new_k[layer, :, :, :, : t + 1]  # [g, kv, n, t+1, hd], a view
    new_v = cache.new_v[layer, :, :, :, : t + 1]
    scaled = q.view(g, n, kv, rep, hd) * attn.scaling
    qg = scaled.transpose(1, 2).contiguous()  # [g, kv, n, rep, hd]
    s_prompt = qg.view(g, kv, n * rep, hd) @ cache.prompt_k[layer].transpose(-1, -2)
    s_prompt = s_prompt.view(g, kv, n, rep, width) + cache.prompt_bias
    s_new = qg @ new_k.transpose(-1, -2)  # [g, kv, n, rep, t+1]
    p = softmax_like_model(torch.cat([s_prompt, s_new], -1), q.dtype)  # [g, kv, n, rep, P+t+1]
    o_prompt = p[..., :width].reshape(g, kv, n * rep, width) @ cache.prompt_v[layer]
    out = o_prompt.view(g, kv, n, rep, hd) + p[..., width:] @ new_v  # [g, kv, n, rep, hd]
    return out.transpose(1, 2).reshape(rows, 1, heads * hd)


def run_layers(lm: nn.Module, ids: Tensor, cos: Tensor, sin: Tensor, attend) -> Tensor:
    """Logits of the last position [batch, vocab] for ids [batch, pos]; cos, sin [batch, pos, hd].

    attend(attn, q, k, v, layer) -> [batch, pos, heads*hd] is the only part
    that differs between the prompt pass and a decode step.
    """
    h = lm.model.embed_tokens(ids)  # [batch, pos, d]
    for i, layer in enumerate(lm.model.layers[: lm.config.num_hidden_layers]):
        attn = layer.self_attn
        q, k, v = project_qkv(attn, layer.input_layernorm(h), cos, sin)
        h = h + attn.o_proj(attend(attn, q, k, v, i))
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return lm.lm_head(lm.model.norm(h[:, -1:]))[:, 0]


def rope_table(lm: nn.Module, length: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    """cos, sin [length, hd] of positions 0..length-1, from the model's rotary module.

    Each entry depends on its position alone (`supports` excludes the rope
    types that rescale with the sequence seen), so looking rows up in one
    table gives the bits a per-step call would, for two index ops a step.
    """
    like = torch.empty(0, dtype=dtype, device=device)
    cos, sin = lm.model.rotary_emb(like, torch.arange(length, device=device)[None])
    return cos[0], sin[0]


def left_pad(prompts: list[list[int]], pad: int, device) -> tuple[Tensor, Tensor]:
    """ids [groups, P] left-padded with `pad`, and valid [groups, P] (True on prompt tokens)."""
    if any(len(p) == 0 for p in prompts):
        raise ValueError("vgrout.lm.decode: an empty prompt has no position to sample from")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        valid[i, width - len(p) :] = True
    return ids.to(device), valid.to(device)


def filter_logits(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Temperature, then top-k, then nucleus cut, as `model.generate` applies them: [rows, vocab].

    The nucleus keeps the smallest set of most likely tokens whose mass
    exceeds top_p (tokens whose cumulative mass from the least likely end is
    <= 1 - top_p are dropped), and always at least the most likely token.
    """
    scores = logits / temperature if temperature != 1.0 else logits
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[:, -1:]  # [rows, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ascending, order = scores.sort(dim=-1)
        drop = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
        drop[:, -1] = False
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return scores


def draw(probs: Tensor, u: Tensor | None = None) -> Tensor:
    """One index per row [rows] of probs [rows, vocab], by inverting the cumulative mass.

    `torch.multinomial` draws an exponential per vocabulary entry (on the
    organism 32 x 1000 a step, 12% of the loop); this draws one uniform per
    row. The mass is summed in float64 and the point is kept strictly below
    the total, so the chosen index is always one where the mass rises: a
    token of probability 0 is never drawn. u [rows, 1] float64 in [0, 1):
    the uniforms to use (default: drawn here from torch's global generator).
    """
    cdf = probs.double().cumsum(-1)  # [rows, vocab]
    total = cdf[:, -1:]
    if u is None:
        u = torch.rand(total.shape, dtype=cdf.dtype, device=cdf.device)
    u = u * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True)[:, 0]  # first index with cdf > u


def choose(
    logits: Tensor, temperature: float, top_k: int, top_p: float, u: Tensor | None = None
) -> Tensor:
    """Next token per row [rows] from fp32 logits [rows, vocab]; temperature 0 is greedy.

    u: [rows, 1] uniforms for `draw` (default: drawn there, one per row)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return draw(filter_logits(logits, temperature, top_k, top_p).softmax(-1), u)


@dataclass
class Decoded:
    tokens: Tensor
    """[rows, steps] new ids; after a row's eos, `pad`."""
    logits: Tensor | None
    """[rows, steps, vocab] fp32 logits each token was chosen from (keep_logits only)."""


@dataclass
class Prefill:
    """What the prompt pass leaves for the decode steps (rows: prompt 0 x n, prompt 1 x n, ...)."""

    cache: KVCache
    """The prompts' keys and values, and room for max_new_tokens - 1 new ones per row."""
    cos: Tensor
    """[P + steps, hd] rotary table (sin likewise)."""
    sin: Tensor
    lengths: Tensor
    """[rows] each row's prompt length: new token t sits at position lengths + t."""
    logits: Tensor
    """[rows, vocab] fp32 logits of the first new token."""


def prefill(lm: nn.Module, prompts: list[list[int]], n: int, max_new_tokens: int, pad: int):
    """Run each prompt once into a fresh cache shared by its n rows; see `Prefill`."""
    dev, dtype = lm.model.embed_tokens.weight.device, lm.model.embed_tokens.weight.dtype
    ids, valid = left_pad(prompts, pad, dev)  # [groups, P]
    steps = max(max_new_tokens - 1, 1)
    cache = empty_cache(lm, valid, n, steps, dtype)
    cos, sin = rope_table(lm, ids.shape[1] + steps, dtype, dev)  # [P+steps, hd]
    positions = (valid.cumsum(1) - 1).clamp(min=0)  # [groups, P]

    def attend_prompt(attn, q, k, v, layer):
        return prompt_attention(attn, q, k, v, cache, layer)

    logits = run_layers(lm, ids, cos[positions], sin[positions], attend_prompt)
    lengths = valid.sum(1).repeat_interleave(n)  # [rows]
    return Prefill(cache, cos, sin, lengths, logits.float().repeat_interleave(n, 0))


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
    """Continue each prompt n times (rows: prompt 0 x n, prompt 1 x n, ...).

    Stops when every row has emitted eos or after max_new_tokens. Draws from
    torch's global generator, so `torch.manual_seed` fixes the result.
    """
    lm = causal_lm(model)
    pre = prefill(lm, prompts, n, max_new_tokens, pad)
    cache, cos, sin, lengths, logits = pre.cache, pre.cos, pre.sin, pre.lengths, pre.logits
    rows = len(prompts) * n
    done = torch.zeros(rows, dtype=torch.bool, device=logits.device)
    tokens, kept = [], []
    for t in range(max_new_tokens):
        tok = choose(logits, temperature, top_k, top_p).masked_fill(done, pad)  # [rows]
        tokens.append(tok)
        if keep_logits:
            kept.append(logits)
        done |= tok == eos
        if t == max_new_tokens - 1 or bool(done.all()):
            break

        def attend_step(attn, q, k, v, layer, t=t):
            return step_attention(attn, q, k, v, cache, layer, t)

        at = (lengths + t)[:, None]  # [rows, 1]
        logits = run_layers(lm, tok[:, None], cos[at], sin[at], attend_step).float()
    return Decoded(torch.stack(tokens, 1), torch.stack(kept, 1) if keep_logits else None)
