"""The lean decode loop of `sampling.generate`: a KV cache written in place, the
shared prompt of a group run and held once (`kvcache.py`).

Why not `model.generate`: its dynamic cache copies every layer's keys and values
at every new token and holds a group's shared prompt once per rollout
(docs/grpo.md, "Generation", has the measurements). The loop drives the model's
own modules through `qwen3.layer_forward` (embedding, norms, the q/k/v/o and MLP
Linears, rotary embedding, lm_head), so LoRA wrappers, routed forwards and
merged weights apply exactly as in `model(...)`; only the attention over the
cache is computed here. Every row of group g attends its group's prompt (left
padding masked) and its own new tokens 0..t. `supports` says when to fall back
to `model.generate` (another architecture, sliding windows, or forward hooks on
modules this loop bypasses): `qwen3.supports`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from vgrout.lm.kvcache import KVCache, empty_cache, prompt_attention, step_attention
from vgrout.lm.qwen3 import Attend, causal_lm, decoder_layers, layer_forward, rope_table
from vgrout.lm.spec import SamplingSpec


def run_layers(
    lm: nn.Module, ids: Tensor, cos: Tensor, sin: Tensor, attend: Callable[[int], Attend]
) -> Tensor:
    """Logits of the last position [batch, vocab] for ids [batch, pos]; cos, sin [batch, pos, hd].

    attend(layer index) -> the layer's attention: the only part that differs
    between the prompt pass and a decode step.
    """
    h = lm.model.embed_tokens(ids)  # [batch, pos, d]
    for i, layer in enumerate(decoder_layers(lm)):
        h = layer_forward(layer, h, cos, sin, attend(i))
    return lm.lm_head(lm.model.norm(h[:, -1:]))[:, 0]


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

    `torch.multinomial` draws an exponential per vocabulary entry (on a
    small model, a visible share of a decode step); this draws one uniform per
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
    features: Tensor | None = None
    """[rows, k] the fused loop's tapped products pooled over each row's completion
    tokens (taps only; see `fused.decode`)."""


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

    def attend_prompt(layer: int) -> Attend:
        return lambda attn, q, k, v: prompt_attention(attn, q, k, v, cache, layer)

    logits = run_layers(lm, ids, cos[positions], sin[positions], attend_prompt)
    lengths = valid.sum(1).repeat_interleave(n)  # [rows]
    return Prefill(cache, cos, sin, lengths, logits.float().repeat_interleave(n, 0))


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
    """Continue each prompt n times (rows: prompt 0 x n, prompt 1 x n, ...), drawing as
    `spec` says (its length, temperature, top-k and top-p; the decoder and batch size
    are the caller's).

    Stops when every row has emitted eos or after spec.max_new_tokens. Draws from
    torch's global generator, so `torch.manual_seed` fixes the result.
    """
    max_new_tokens, temperature = spec.max_new_tokens, spec.temperature
    top_k, top_p = spec.top_k, spec.top_p
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

        def attend_step(layer: int, t: int = t) -> Attend:
            def attend(attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
                out = step_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0], cache, layer, t,
                                     attn.scaling)  # fmt: skip
                return out[:, None]  # [rows, 1, heads*hd]

            return attend

        at = (lengths + t)[:, None]  # [rows, 1]
        logits = run_layers(lm, tok[:, None], cos[at], sin[at], attend_step).float()
    return Decoded(torch.stack(tokens, 1), torch.stack(kept, 1) if keep_logits else None)
