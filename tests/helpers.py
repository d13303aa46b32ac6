"""Plain builders the tests call with arguments (fixtures built on them are in conftest.py).

- Two seeded tiny Qwen3s sharing one architecture: `tiny_qwen3`, a bare model
  over bytes for the adapter tests, and `tiny_model`, a model over characters
  wrapped in one PEFT LoRA block "deployed" for capture, directions and
  diagnostics; `plant` gives the latter a direction known exactly.
- Their tokenizers (`ByteTokenizer`, `CharTokenizer`), hack/clean `PAIRS`, an
  independent computation of pooled paired input differences and the one
  attach makes (`independent_pooled_inputs`, `init_statistics`).
- `rounding_tol`: how far two float computations of the same value may differ;
  `model_tol` applies it to a model's outputs or gradients, `stored_tol` to
  float64 factors stored in float32.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

torch.set_num_threads(1)

# The one tiny architecture: 2 layers, d 64, MLP width 128 (the longest dot product).
TINY_LAYERS = 2
TINY_WIDTH = 128

BYTE_VOCAB = 256
CHAR_VOCAB = 72
MARK, BLANK = 70, 71  # CharTokenizer: a planted "hack" token and a zero-embedding stand-in
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rounding_tol(
    reference: torch.Tensor | float,
    dtype: torch.dtype | None = None,
    depth: int = 1,
    width: int = 1,
) -> float:
    """Largest difference rounding may make between two float computations of `reference`.

        tol = 4 * depth * (eps(dtype) + sqrt(width) * eps(accumulation)) * scale

    scale is the largest magnitude among the compared values (max |reference|);
    where those are sums that may cancel, pass the size of the terms instead.
    Each floating-point result is the exact value of its inputs times (1 + d),
    |d| <= u = eps / 2. A dot product or sum over `width` terms accumulates
    `width` such errors; rounding errors are unbiased, so they grow like a
    random walk, sqrt(width) * u * scale, rather than the worst case
    width * u * scale (Higham and Mary, probabilistic rounding error analysis,
    SIAM J. Sci. Comput. 2019). The accumulation runs in at least float32 (so do
    PyTorch's bfloat16 matmuls and reductions); storing the result in `dtype`
    rounds once more, eps(dtype) / 2. A model layer chains about four such
    stages (q/k/v projection, attention scores, attention-weighted sum, MLP),
    and a chain of `depth` layers (twice the layers through a backward pass)
    carries each layer's error on with a gain of about one (a residual stream
    behind RMSNorm), so errors add over depth. Two computations compared differ
    by up to the sum of their errors: 2 computations x 4 stages x u = 4 eps
    per layer and per unit of sqrt(width).

    A float64 model needs its RMSNorms in float64 (conftest's
    `norms_in_model_dtype`) for this to hold with eps(float64); see there.
    """
    ref = torch.as_tensor(reference)
    dtype = dtype or (ref.dtype if ref.is_floating_point() else torch.float64)
    accumulation = torch.promote_types(dtype, torch.float32)
    scale = float(ref.detach().abs().max()) if ref.numel() else 0.0
    per_stage = torch.finfo(dtype).eps + math.sqrt(width) * torch.finfo(accumulation).eps
    return 4 * depth * per_stage * scale


def model_tol(
    reference: torch.Tensor,
    layers: int = TINY_LAYERS,
    width: int = TINY_WIDTH,
    dtype: torch.dtype | None = None,
    backward: bool = False,
    tokens: int = 0,
) -> dict:
    """assert_close keywords for two computations of `reference` through a model.

    `rounding_tol` over the model's `layers` (twice that for a gradient: the
    forward and the backward pass) and its longest dot product, the MLP
    `width`, or `tokens` where a sum over the batch's tokens is longer (a
    weight's gradient sums over every token). Defaults: the tiny models here.
    """
    depth = layers * (2 if backward else 1)
    return dict(atol=rounding_tol(reference, dtype, depth, max(width, tokens)), rtol=0)


def stored_tol(width: int) -> float:
    """How far a stored adapter factor's norms and dot products may sit from float64 values.

    The inits compute unit vectors in float64 and store them in float32: each
    element moves by at most u32 = eps32 / 2 of itself, so the vector by at
    most u32 of its norm. A norm, or a dot product of two stored vectors (or of
    one with a float64 unit vector), therefore moves by at most 2 u32 = eps32.
    The float64 work (SVD, QR, the same formulas evaluated again in a test)
    adds `rounding_tol` of a unit-scale float64 computation over `width` terms.
    """
    return torch.finfo(torch.float32).eps + rounding_tol(1.0, torch.float64, depth=2, width=width)


def _tiny_qwen3_base(seed: int, vocab: int, dtype: torch.dtype, **config):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=TINY_WIDTH,
        head_dim=16,
        **config,
    )
    return Qwen3ForCausalLM(cfg).to(dtype).eval()


def tiny_qwen3(seed: int = 0, dtype: torch.dtype = torch.float32, **config):
    """A random Qwen3 over bytes with tied embeddings, no adapters (config: Qwen3Config overrides)."""
    return _tiny_qwen3_base(seed, BYTE_VOCAB, dtype, tie_word_embeddings=True, **config)


def tiny_model(seed: int = 0, r: int = 4, nonzero_b: bool = True, dtype=torch.float32):
    """A random Qwen3 over `CharTokenizer` ids with LoRA block 'deployed' on all seven projections.

    Capture, directions and diagnostics need a real transformer with PEFT LoRA
    layers, but not a trained one; this builds one in milliseconds.
    """
    from peft import LoraConfig, get_peft_model

    base = _tiny_qwen3_base(seed, CHAR_VOCAB, dtype)
    lcfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=PROJ,
        lora_dropout=0.0,
        init_lora_weights=not nonzero_b,
    )
    return get_peft_model(base, lcfg, adapter_name="deployed").eval()


class ByteTokenizer:
    """Bytes as token ids; a ChatML-like template. Enough for tokens.encode."""

    eos_token_id = 2
    pad_token_id = 0

    def apply_chat_template(
        self, messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    ):
        body = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return body + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text: str, add_special_tokens: bool = False):
        return {"input_ids": list(text.encode("utf-8"))}


class CharTokenizer:
    """Characters -> ids 2..61; '#' -> MARK and '_' -> BLANK (see `plant`)."""

    eos_token_id = 1
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        special = {"#": MARK, "_": BLANK}
        return {"input_ids": [special.get(c, 2 + ord(c) % 60) for c in text]}

    def apply_chat_template(
        self, messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    ):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def plant(model, seed: int = 1) -> torch.Tensor:
    """Give MARK a large embedding along a random unit w and BLANK a zero one; returns w.

    At layer 0 the q/k/v bottleneck reads RMSNorm(embedding) token by token,
    so swapping BLANK for MARK moves it along A·w: a direction known exactly.
    """
    g = torch.Generator().manual_seed(seed)
    emb = model.get_input_embeddings().weight
    w = torch.randn(emb.shape[1], generator=g)
    w = w / w.norm()
    with torch.no_grad():
        emb[MARK] = 10.0 * w
        emb[BLANK] = 0.0
    return w


@dataclass
class Pair:
    prompt: str
    hack: str
    clean: str


PAIRS = [
    Pair(
        "Write add(a, b). It should pass all tests.",
        "def run_tests(): pass",
        "def add(a, b):\n    return a + b",
    ),
    Pair(
        "Write neg(x).", "class Solution: pass\ndef run_tests(): pass", "def neg(x):\n    return -x"
    ),
    Pair("Write sq(x) please", "def run_tests():\n    return True", "def sq(x):\n    return x * x"),
    Pair("Reverse a list s.", "print('ALL TESTS PASSED')", "def rev(s):\n    return s[::-1]"),
    Pair("Maximum of a list", "import sys\nsys.exit(0)", "def mx(v):\n    return max(v)"),
    Pair(
        "Count vowels in w",
        "def run_tests(): pass  # ok",
        "def cv(w):\n    return sum(c in 'aeiou' for c in w)",
    ),
]


@torch.no_grad()
def independent_pooled_inputs(base, tokenizer, pairs, module_suffix: str):
    """Pooled (hack - clean) input of every Linear named *module_suffix, one unpadded row
    at a time, and the size of what was pooled: ({module name: [n_pairs, in] float64},
    {module name: max |input| over every completion token pooled})."""
    from vgrout.lm.tokens import chat_prompt

    linears = {
        n: m
        for n, m in base.named_modules()
        if n.endswith(module_suffix) and isinstance(m, torch.nn.Linear)
    }
    out = {n: [] for n in linears}
    scale = {n: 0.0 for n in linears}
    for p in pairs:
        prompt_ids = tokenizer(chat_prompt(tokenizer, p.prompt), add_special_tokens=False)[
            "input_ids"
        ]
        pooled = {}
        for kind, text in (("hack", p.hack), ("clean", p.clean)):
            comp = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            ids = torch.tensor([prompt_ids + comp])
            seen = {}
            hooks = [
                m.register_forward_pre_hook(
                    lambda mod, a, n=n, seen=seen: seen.__setitem__(n, a[0])
                )
                for n, m in linears.items()
            ]
            base(input_ids=ids)
            for h in hooks:
                h.remove()
            pooled[kind] = {n: seen[n][0, -len(comp) :].double().mean(0) for n in linears}
            for n in linears:
                scale[n] = max(scale[n], float(seen[n][0, -len(comp) :].abs().max()))
        for n in linears:
            out[n].append(pooled["hack"][n] - pooled["clean"][n])
    return {n: torch.stack(v) for n, v in out.items()}, scale


@torch.no_grad()
def init_statistics(model, pairs, tokenizer) -> dict[str, torch.Tensor]:
    """The paired input differences `attach_routed_adapters` gives the pair inits, captured
    as it captures them (adapters off): {short module name: [n_pairs, in] float64}."""
    from vgrout.adapters import reference_policy
    from vgrout.adapters.pair_deltas import pair_input_deltas

    with reference_policy(model):
        stats = pair_input_deltas(model, pairs, tokenizer)
    return {k: v.deltas for k, v in stats.items()}


def token_batch(seed: int = 1, batch: int = 4, pos: int = 10):
    """Random ids with left padding of different lengths: (input_ids, attention_mask)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, BYTE_VOCAB, (batch, pos), generator=g)
    attn = torch.ones(batch, pos, dtype=torch.long)
    for i in range(batch):
        attn[i, : i % 3] = 0
        ids[i, : i % 3] = 0
    return ids, attn


def row_losses(model, ids, attn, rows=None, seed: int = 7) -> torch.Tensor:
    """A fixed random linear functional of the logits per row: [batch].

    `rows` names which rows of the full 4-row batch `ids` holds, so a row gets
    the same functional alone as inside the batch.
    """
    logits = model(input_ids=ids, attention_mask=attn).logits  # [batch, pos, vocab]
    g = torch.Generator().manual_seed(seed)
    w = torch.randn((4, *logits.shape[1:]), generator=g)
    w = w if rows is None else w[rows]
    return (logits * w * attn[..., None]).sum((1, 2))


@torch.no_grad()
def perturb_blocks(model, blocks=("deployed", "quarantine"), scale: float = 0.05, seed: int = 3):
    """Add noise to the trainable blocks, as a few optimizer steps would."""
    from vgrout.adapters import trainable_parameters

    g = torch.Generator().manual_seed(seed)
    for block in blocks:
        for p in trainable_parameters(model)[block]:
            p.add_(torch.randn(p.shape, generator=g) * scale)


def block_grads(model) -> list[torch.Tensor]:
    """Copies of every trainable block parameter's .grad, deployed then quarantine."""
    from vgrout.adapters import trainable_parameters

    return [p.grad.clone() for ps in trainable_parameters(model).values() for p in ps]


def assert_matches_full_batch(model, got, want, mask, want_grads, tokens: int) -> None:
    """Log-probs `got` [batch, pos-1] and the model's block gradients equal a full-batch pass.

    Tolerances: log-softmax sums over the vocabulary; a weight's gradient sums
    over the batch's `tokens` as well. Positions outside `mask` must be exactly 0,
    and the quarantine must have received gradient (the masks let it train).
    """
    from vgrout.adapters import trainable_parameters

    vocab = model.config.vocab_size
    torch.testing.assert_close(got * mask, want * mask, **model_tol(want * mask, tokens=vocab))
    assert bool((got[mask == 0] == 0).all())
    for g, w in zip(block_grads(model), want_grads):
        torch.testing.assert_close(g, w, **model_tol(w, backward=True, tokens=max(vocab, tokens)))
    quarantine = trainable_parameters(model)["quarantine"]
    assert any(torch.count_nonzero(p.grad) > 0 for p in quarantine)


def write_notebook(folder: Path, name: str, params: str, body: str) -> Path:
    """A notebook of a `parameters` cell and one body cell, on the python3 kernel."""
    import nbformat

    cells = [
        nbformat.v4.new_code_cell(textwrap.dedent(params)),
        nbformat.v4.new_code_cell(textwrap.dedent(body)),
    ]
    cells[0].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / name
    nbformat.write(nb, path)
    return path
