"""A random tiny Qwen3 with one LoRA block and a character tokenizer, for tests.

Capture, directions and diagnostics need a real transformer with PEFT LoRA
layers, but not a trained one; this builds one in milliseconds.
"""

from __future__ import annotations

import torch

VOCAB = 72
EOS, PAD = 1, 0
MARK, BLANK = 70, 71  # a planted "hack" token and a zero-embedding stand-in
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class CharTokenizer:
    """Characters -> ids 2..61; '#' -> MARK and '_' -> BLANK (see `plant`)."""

    eos_token_id = EOS
    pad_token_id = PAD

    def __call__(self, text, add_special_tokens=False):
        special = {"#": MARK, "_": BLANK}
        return {"input_ids": [special.get(c, 2 + ord(c) % 60) for c in text]}

    def apply_chat_template(
        self, messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    ):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def tiny_model(seed: int = 0, r: int = 4, nonzero_b: bool = True, dtype=torch.float32):
    """Random Qwen3 (2 layers, d 64) with LoRA block 'deployed' on all seven projections."""
    from peft import LoraConfig, get_peft_model
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
    )
    base = Qwen3ForCausalLM(cfg).to(dtype).eval()
    lcfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=PROJ,
        lora_dropout=0.0,
        init_lora_weights=not nonzero_b,
    )
    return get_peft_model(base, lcfg, adapter_name="deployed").eval()


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
