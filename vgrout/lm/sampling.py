"""Sample completions from a causal LM, one place for every caller.

GRPO rollouts, evaluation, the organism's measurement and the labelled pools
for diagnostics all sample the same way; doing it in one function keeps their
temperatures, stop tokens and decoding identical.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from vgrout.lm import decode, fused, qwen3
from vgrout.lm.spec import DEFAULT_SAMPLING, SamplingSpec
from vgrout.lm.tokens import chat_prompt, pad_id


@dataclass
class Samples:
    """Sampled rows, in the order prompt 0 x n, prompt 1 x n, ..."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    """Sampled ids up to and including the first eos (none if cut at the limit)."""
    texts: list[str]
    """Completions decoded without special tokens."""
    features: Tensor | None = None
    """[rows, k] the fused decoder's tapped products pooled over each completion (see
    `fused.decode`); None without taps or when another decoder sampled."""


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int = 1,
    spec: SamplingSpec = DEFAULT_SAMPLING,
    taps: list | None = None,
) -> Samples:
    """Sample `n` completions of each rendered prompt string as `spec` says; keep the exact ids.

    spec.decoder (vgrout.names.DECODERS): "hf" samples with `model.generate`;
    "lean" decodes Qwen3 models through `decode` (in-place cache, each prompt
    run once for its n rows); "fused" through `fused` (the lean loop with a
    step of few ops, finished rows dropped). A model a decoder does not
    support falls back, with a warning, to the next one that does (fused ->
    lean -> hf). "hf" and "lean" draw different tokens for one seed, so a run
    keeps one decoder throughout; "fused" draws the lean loop's random numbers
    and differs from it by rounding only.

    taps: per layer `qwen3.LayerTaps` for the fused decoder to compute beside the
    projections; their pooled products come back in `Samples.features` (only the
    fused decoder computes them: after a fallback they are None).
    """
    run = _runner(model, spec.decoder, taps)
    was_training = model.training
    model.eval()
    try:
        return run(model, tokenizer, prompts, n, spec)
    finally:
        model.train(was_training)


FALLBACK = ("fused", "lean", "hf")
"""Each decoder falls back to the next one that supports the model (hf supports all)."""


def _runner(model, decoder: str, taps: list | None = None):
    """The sampling function for `decoder`, or for the first one after it that supports the model."""
    loops = {"fused": fused.decode, "lean": decode.decode}
    supports = {"fused": fused.supports, "lean": qwen3.supports, "hf": lambda _: True}
    chosen = next(d for d in FALLBACK[FALLBACK.index(decoder) :] if supports[d](model))
    if chosen != decoder:
        warnings.warn(
            f"decoder={decoder!r} does not support {type(model).__name__}; using {chosen!r}",
            stacklevel=3,
        )
    if chosen == "hf":
        return _generate_hf
    loop = (
        functools.partial(fused.decode, taps=taps) if chosen == "fused" and taps else loops[chosen]
    )
    return functools.partial(_generate_lean, loop=loop)


def cut_at_eos(ids: list[int], eos: int) -> list[int]:
    """Ids up to and including the first eos (all of them if there is none)."""
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def chunks(n_prompts: int, n: int, batch_size: int) -> list[tuple[int, int, int]]:
    """(first prompt, prompts, rows per prompt) per batch of at most batch_size rows.

    A batch holds whole groups (batch_size // n prompts of n rows) so that
    each prompt is run once for all its rows; a group larger than
    batch_size is split into batches of one prompt.
    """
    if n <= batch_size:
        per = batch_size // n
        return [(i, min(per, n_prompts - i), n) for i in range(0, n_prompts, per)]
    return [
        (i, 1, min(batch_size, n - r)) for i in range(n_prompts) for r in range(0, n, batch_size)
    ]


def _generate_lean(model, tokenizer, prompts, n: int, spec: SamplingSpec, loop) -> Samples:
    """`generate` through `loop` (`decode.decode` or `fused.decode`); prompts are tokenised one
    by one and padded there."""
    eos = tokenizer.eos_token_id
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    out = Samples([], [], [])
    features = []
    for first, count, rows in chunks(len(ids), n, spec.batch_size):
        group = ids[first : first + count]
        decoded = loop(model, group, rows, spec, eos, pad_id(tokenizer))
        out.prompt_ids.extend(list(p) for p in group for _ in range(rows))
        out.completion_ids.extend(cut_at_eos(row, eos) for row in decoded.tokens.tolist())
        features.append(decoded.features)
    out.texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    if features and all(f is not None for f in features):
        out.features = torch.cat(features)
    return out


def _generate_hf(model, tokenizer, prompts, n: int, spec: SamplingSpec) -> Samples:
    """`generate` through `model.generate`, for models `decode` does not support."""
    flat = [t for t in prompts for _ in range(n)]
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    out = Samples([], [], [])
    sampling = (
        dict(do_sample=True, temperature=spec.temperature, top_k=spec.top_k or None,
             top_p=spec.top_p)
        if spec.temperature > 0
        else dict(do_sample=False)
    )  # fmt: skip
    for i in range(0, len(flat), spec.batch_size):
        enc = tokenizer(
            flat[i : i + spec.batch_size], return_tensors="pt", padding=True,
            add_special_tokens=False,
        ).to(device)  # fmt: skip
        gen = model.generate(
            **enc,
            **sampling,
            max_new_tokens=spec.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
        )
        width = enc["input_ids"].shape[1]
        for row, mask in zip(gen.tolist(), enc["attention_mask"].tolist()):
            out.prompt_ids.append([t for t, m in zip(row[:width], mask) if m])
            out.completion_ids.append(cut_at_eos(row[width:], eos))
        out.texts.extend(
            tokenizer.batch_decode(out.completion_ids[-len(gen) :], skip_special_tokens=True)
        )
    return out


def sample(
    model,
    tokenizer,
    messages: Sequence,
    n: int = 1,
    spec: SamplingSpec = DEFAULT_SAMPLING,
    seed: int | None = None,
) -> list[list[str]]:
    """Return `n` completions for each chat (list of messages or user text).

    Output[i][j] is the j-th completion of prompt i, cut at the first eos.
    seed: reseeds torch's global generator first (None: draw from it as it is).
    """
    if seed is not None:
        torch.manual_seed(seed)
    texts = [chat_prompt(tokenizer, m) for m in messages]
    s = generate(model, tokenizer, texts, n, spec)
    return [s.texts[i * n : (i + 1) * n] for i in range(len(texts))]
