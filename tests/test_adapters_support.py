"""Shared builders for the adapter tests (no tests here): a seeded tiny Qwen3,
a byte-level tokenizer, hack/clean pairs, and an independent computation of
pooled paired input differences (unpadded, one row at a time)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

torch.set_num_threads(1)

VOCAB = 256


def tiny_qwen3(seed: int = 0, dtype: torch.dtype = torch.float32):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        head_dim=16,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(cfg).to(dtype).eval()


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
def independent_deltas(base, tokenizer, pairs, module_suffix: str) -> torch.Tensor:
    """Pooled (hack - clean) input of every Linear named *module_suffix, one unpadded row
    at a time: {module name: [n_pairs, in]} float64."""
    from vgrout.lm.tokens import chat_prompt

    linears = {
        n: m
        for n, m in base.named_modules()
        if n.endswith(module_suffix) and isinstance(m, torch.nn.Linear)
    }
    out = {n: [] for n in linears}
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
            out[n].append(pooled["hack"][n] - pooled["clean"][n])
    return {n: torch.stack(v) for n, v in out.items()}


def token_batch(seed: int = 1, batch: int = 4, pos: int = 10):
    """Random ids with left padding of different lengths: (input_ids, attention_mask)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, pos), generator=g)
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
