"""Load a policy: the project's CPU organism or any Hugging Face causal LM."""

from __future__ import annotations

from typing import Any

import torch

from vgrout import paths


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_policy(
    name_or_path: str = "organism",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    """Return (model, tokenizer) ready for sampling and training.

    "organism" is the shipped CPU organism in data/organism (never built
    here: `make organism` rebuilds it); anything else is passed to
    `from_pretrained` (a hub id or a local folder). Defaults: fp32 on CPU,
    bf16 on CUDA. The tokenizer always pads on the left, since batched
    generation appends to the right edge of every row.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    path = name_or_path
    if name_or_path == "organism":
        path = str(paths.ORGANISM)
        if not (paths.ORGANISM / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{paths.ORGANISM}: the shipped organism is missing; restore it from git or "
                "rebuild it with make organism"
            )
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model = model.to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
