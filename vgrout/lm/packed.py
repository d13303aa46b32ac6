"""One forward over every rollout of a step, packed into a single token stream.

Why: on the CPU organism a GRPO step's forward passes are many small calls (per
group a prompt pass per zone, then the right-padded completions), so per-call
overhead and padding cost as much as the arithmetic. Here every token of every
live group runs through each Linear once per layer, with no padding:

    stream  [N]      unit prompts (unit 0's tokens, unit 1's, ...), then the
                     completions (row 0's tokens, row 1's, ...)

A *unit* is one distinct (prompt, route masks) pair: rows of a group that
train in the same zone share their prompt's activations, as in `prefix.py`,
and rows of different zones do not (their prompt sees other adapters). The
stream runs as a batch of N one-token rows, so the routed forward's per-row
masks become per-token masks. Attention is the only part that needs the
sequence layout; it gathers the stream into right-padded tensors:

    prompts      [units, heads, P, head_dim]   causal within the unit
    completions  [rows, heads, C, head_dim]    attend their unit's whole prompt
                                               and their own tokens 0..k

Only completion targets reach the lm head. Log-probs come back per row,
right-padded: logp[i, k] scores completion token k of row i (0 beyond its
length). Each layer is `qwen3.layer_forward` with the attention below;
agreement with `model(...)` to float rounding is checked in tests/test_packed.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgrout.lm import qwen3
from vgrout.lm.qwen3 import causal_lm, decoder_layers, layer_forward, rope_table


@dataclass
class Packed:
    """Index tensors of one packed stream (all on one device).

    ids:          [N]           token ids, unit prompts first, then completions
    pos:          [N]           rotary positions (a completion continues its prompt)
    prompt_index: [U, P]        stream index of each unit's prompt token (0 on padding)
    prompt_valid: [U, P]        True on real prompt tokens (right-padded)
    comp_index:   [R, C]        stream index of each row's completion token (0 on padding)
    comp_valid:   [R, C]        True on real completion tokens
    row_unit:     [R]           the unit whose prompt row i continues
    pred_index:   [T]           stream position whose logits score each target
    targets:      [T]           the target ids (T = number of completion tokens)
    token_row:    [N]           the row whose route masks each token takes: its own
                                (completion) or its unit's first row (prompt)
    """

    ids: Tensor
    pos: Tensor
    prompt_index: Tensor
    prompt_valid: Tensor
    comp_index: Tensor
    comp_valid: Tensor
    row_unit: Tensor
    pred_index: Tensor
    targets: Tensor
    token_row: Tensor

    @property
    def n_rows(self) -> int:
        return self.comp_index.shape[0]

    def token_masks(self, row_values: Tensor) -> Tensor:
        """A per-row value [R] -> per token [N] (a prompt token takes its unit's first row's)."""
        return row_values[self.token_row.to(row_values.device)]

    @functools.cached_property
    def buckets(self) -> Buckets:
        """The rows in length buckets for completion attention (computed once per stream)."""
        return length_buckets(self.comp_valid, self.comp_index, BUCKETS)


BUCKETS = 4
"""Completion attention runs in at most this many calls, rows grouped by length."""


@dataclass
class Buckets:
    """Rows grouped by completion length, so that attention pads each row only to the
    longest row of its bucket, not of the whole stream.

    Why: the SDPA mask makes every query and key position of a call cost the
    same, and GRPO completions vary in length, so one call for all rows spends
    a good part of its attention on padding (docs/grpo.md, "Packed forward",
    has the measurements).

    rows:    per bucket, the row indices [R_b], shortest rows first
    widths:  per bucket, its longest completion C_b
    order:   [T] permutation taking the buckets' valid tokens, concatenated
             bucket by bucket, to stream order
    """

    rows: list[Tensor]
    widths: list[int]
    order: Tensor


def length_buckets(comp_valid: Tensor, comp_index: Tensor, count: int) -> Buckets:
    """Split rows [R] into <= `count` buckets of equal row count by completion length."""
    lengths = comp_valid.sum(1)  # [R]
    by_length = torch.argsort(lengths, stable=True)
    rows = [r for r in by_length.tensor_split(min(count, len(by_length))) if len(r)]
    widths = [max(1, int(lengths[r].max())) for r in rows]
    positions = torch.cat(
        [comp_index[r, :w][comp_valid[r, :w]] for r, w in zip(rows, widths)]
    )  # stream position of each bucket token
    return Buckets(rows, widths, torch.argsort(positions))


def pack(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    keys: Sequence | None = None,
    device=None,
) -> Packed:
    """Pack rows (prompt ids, completion ids); rows with equal (prompt, key) share one unit.

    keys: a hashable per row that must also match for rows to share their
    prompt's activations (the row's route masks); None: prompts alone decide.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"pack: {len(prompts)} prompts but {len(completions)} completions")
    if not prompts:
        raise ValueError("pack: no rows")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("pack: an empty prompt has no position to score a first token from")
    keys = [None] * len(prompts) if keys is None else list(keys)
    unit_of: dict = {}
    row_unit = [unit_of.setdefault((tuple(p), k), len(unit_of)) for p, k in zip(prompts, keys)]
    units = list(unit_of)  # in first-seen order
    first_row = {u: i for i, u in reversed(list(enumerate(row_unit)))}  # unit -> its first row
    ids: list[int] = []
    pos: list[int] = []
    token_row: list[int] = []
    prompt_rows, start = [], 0
    for u, (p, _) in enumerate(units):
        prompt_rows.append(list(range(start, start + len(p))))
        ids += p
        pos += range(len(p))
        token_row += [first_row[u]] * len(p)
        start += len(p)
    comp_rows, pred, targets = [], [], []
    for i, c in enumerate(completions):
        u = row_unit[i]
        plen = len(units[u][0])
        here = list(range(start, start + len(c)))
        comp_rows.append(here)
        pred += [prompt_rows[u][-1]] + here[:-1] if c else []
        targets += list(c)
        ids += list(c)
        pos += range(plen, plen + len(c))
        token_row += [i] * len(c)
        start += len(c)
    pi, pv = _right_padded(prompt_rows)
    ci, cv = _right_padded(comp_rows)
    t = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    out = Packed(t(ids), t(pos), pi, pv, ci, cv, t(row_unit), t(pred), t(targets), t(token_row))
    return out if device is None else Packed(*(x.to(device) for x in vars(out).values()))


def _right_padded(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    width = max(1, max(len(r) for r in rows))
    index = torch.zeros((len(rows), width), dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        index[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        valid[i, : len(r)] = True
    return index, valid


def supports(model: nn.Module) -> bool:
    """True when `forward` computes what `model(...)` computes (the lean decoder's
    conditions, and an lm head that carries no adapter: only targets reach it)."""
    lm = causal_lm(model)
    return qwen3.supports(model) and isinstance(lm.lm_head, nn.Linear)


def _heads_first(x: Tensor, index: Tensor) -> Tensor:
    """x [N, heads, hd] gathered at index [B, L] -> [B, heads, L, hd]."""
    return x[index].permute(0, 2, 1, 3)


def attend(attn: nn.Module, q: Tensor, k: Tensor, v: Tensor, pk: Packed) -> Tensor:
    """Attention over the packed stream: q [N, heads, 1, hd], k, v [N, kv, 1, hd] -> [N, 1, heads*hd]."""
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
    n, heads, hd = q.shape
    width = pk.prompt_index.shape[1]
    kp, vp = _heads_first(k, pk.prompt_index), _heads_first(v, pk.prompt_index)
    causal_p = torch.ones(width, width, dtype=torch.bool, device=q.device).tril()
    mask_p = causal_p & pk.prompt_valid[:, None, :]  # [U, P, P]; a padded query sees key 0
    out_p = F.scaled_dot_product_attention(
        _heads_first(q, pk.prompt_index), kp, vp, attn_mask=mask_p[:, None],
        scale=attn.scaling, enable_gqa=True,
    )  # fmt: skip
    b = pk.buckets
    out_c = [_attend_rows(q, k, v, (kp, vp), pk, rows, c, attn.scaling)
             for rows, c in zip(b.rows, b.widths)]  # fmt: skip
    out = torch.cat(
        [out_p.transpose(1, 2)[pk.prompt_valid], torch.cat(out_c)[b.order]]
    )  # [N, heads, hd], stream order
    return out.reshape(n, 1, heads * hd)


def _attend_rows(
    q: Tensor, k: Tensor, v: Tensor, prompt_kv: tuple[Tensor, Tensor], pk: Packed, rows: Tensor,
    c: int, scale: float,
) -> Tensor:  # fmt: skip
    """Attention of the completion tokens of `rows` (all <= c long): [valid tokens, heads, hd].

    Each row attends its unit's whole prompt (prompt_kv: keys, values [U, kv, P, hd])
    and its own tokens 0..k; tokens come out row by row, in the order of `rows`.
    """
    kp, vp = prompt_kv
    index, valid = pk.comp_index[rows, :c], pk.comp_valid[rows, :c]  # [R_b, c]
    unit = pk.row_unit[rows]
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    see_prompt = pk.prompt_valid[unit][:, None, :].expand(-1, c, -1)  # [R_b, c, P]
    mask = torch.cat([see_prompt, causal & valid[:, None, :]], -1)
    kc = torch.cat([kp[unit], _heads_first(k, index)], 2)  # [R_b, kv, P+c, hd]
    vc = torch.cat([vp[unit], _heads_first(v, index)], 2)
    out = F.scaled_dot_product_attention(
        _heads_first(q, index), kc, vc, attn_mask=mask[:, None],
        scale=scale, enable_gqa=True,
    )  # fmt: skip
    return out.transpose(1, 2)[valid]


def forward(model: nn.Module, pk: Packed, logits: bool = True) -> Tensor | None:
    """Log-prob of every completion token [R, C] (right-padded with 0), or None.

    With logits=False the layers run (for forward hooks such as a feature
    capture over `pk.comp_index`) and the lm head is skipped. Route masks set
    with `route()` must be per token ([N], see `Packed.token_masks`).
    """
    lm = causal_lm(model)
    emb = lm.model.embed_tokens
    cos, sin = rope_table(lm, int(pk.pos.max()) + 1, emb.weight.dtype, pk.ids.device)
    cos, sin = cos[pk.pos][:, None], sin[pk.pos][:, None]  # [N, 1, hd]
    h = emb(pk.ids)[:, None]  # [N, 1, d]: the stream as N one-token rows
    for layer in decoder_layers(lm):
        h = layer_forward(layer, h, cos, sin, lambda attn, q, k, v: attend(attn, q, k, v, pk))
    if not logits:
        return None
    out = lm.lm_head(lm.model.norm(h[pk.pred_index, 0]))  # [T, vocab]
    out = out.to(torch.promote_types(out.dtype, torch.float32))
    lp = out.gather(-1, pk.targets[:, None])[:, 0] - torch.logsumexp(out, -1)  # [T]
    per_row = lp.new_zeros(pk.comp_index.shape)
    return per_row.masked_scatter(pk.comp_valid, lp)


def pool_rows(acts: Tensor, pk: Packed) -> Tensor:
    """Mean of stream activations [N, 1, w] over each row's completion tokens: [R, w] (>= fp32)."""
    a = acts[:, 0].to(torch.promote_types(acts.dtype, torch.float32))
    valid = pk.comp_valid[..., None].to(a.dtype)
    total = (a[pk.comp_index] * valid).sum(1)  # [R, w]
    return total / valid.sum(1).clamp_min(1.0)


def to_left_padded(lp: Tensor, lengths: Tensor, width: int) -> Tensor:
    """Per-row completion log-probs [rows, C] -> the left-padded Batch layout [rows, width-1].

    Row i's completion fills the last lengths[i] positions of a Batch of
    `width`; position t scores token t+1, so completion token k is scored at
    t = width - lengths[i] + k - 1. Positions that score no completion token hold 0.
    """
    n_comp = lengths.to(lp.device)[:, None]  # [rows, 1]
    t = torch.arange(width - 1, device=lp.device)[None]
    k = t + 1 - (width - n_comp)  # index of the scored token within the completion
    valid = (k >= 0) & (k < n_comp)
    picked = lp.gather(1, k.clamp(0, max(lp.shape[1] - 1, 0)))
    return torch.where(valid, picked, torch.zeros_like(picked))
