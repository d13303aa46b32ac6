"""The decode loops' KV cache and the attention over it (shared by the lean and fused loops).

The G rollouts of a GRPO group share their prompt, so the cache holds each
group's prompt once and every row of the group attends it:

    prompt keys/values   [layers, groups, kv_heads, P, head_dim]      once per group
    new keys/values      [layers, groups, kv_heads, n, T, head_dim]   written at slot t

Keys and values are written in place (a dynamic cache that concatenates every
layer's keys and values at every new token copies rows x length^2 values).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vgrout.lm.qwen3 import softmax_like_model


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
    q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int, t: int, scaling: float | None
) -> Tensor:
    """One new token per row over its group's prompt and its own slots 0..t. Returns [rows, heads*hd].

    q [rows, heads, hd]; k, v [rows, kv_heads, hd], written to slot t. scaling:
    the attention scaling to apply to q (None: q is already scaled, as the
    fused step's is). The prompt is read once per group: per kv head, the
    group's n rows x rep query heads form one [n*rep, hd] block, multiplied
    by the prompt keys once.
    """
    rows, heads, hd = q.shape
    _, g, kv, width, _ = cache.prompt_k.shape
    n, rep = cache.new_k.shape[3], heads // kv
    cache.new_k[layer, :, :, :, t] = k.view(g, n, kv, hd).transpose(1, 2)
    cache.new_v[layer, :, :, :, t] = v.view(g, n, kv, hd).transpose(1, 2)
    new_k = cache.new_k[layer, :, :, :, : t + 1]  # [g, kv, n, t+1, hd], a view
    new_v = cache.new_v[layer, :, :, :, : t + 1]
    grouped = q.reshape(g, n, kv, rep, hd)
    scaled = grouped if scaling is None else grouped * scaling
    qg = scaled.transpose(1, 2).contiguous()  # [g, kv, n, rep, hd]
    s_prompt = qg.view(g, kv, n * rep, hd) @ cache.prompt_k[layer].transpose(-1, -2)
    s_prompt = s_prompt.view(g, kv, n, rep, width) + cache.prompt_bias
    s_new = qg @ new_k.transpose(-1, -2)  # [g, kv, n, rep, t+1]
    p = softmax_like_model(torch.cat([s_prompt, s_new], -1), q.dtype)  # [g, kv, n, rep, P+t+1]
    o_prompt = p[..., :width].reshape(g, kv, n * rep, width) @ cache.prompt_v[layer]
    out = o_prompt.view(g, kv, n, rep, hd) + p[..., width:] @ new_v  # [g, kv, n, rep, hd]
    return out.transpose(1, 2).reshape(rows, heads * hd)
