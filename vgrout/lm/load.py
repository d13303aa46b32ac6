"""Load a policy: the project's CPU organism or any Hugging Face causal LM."""

from __future__ import annotations

from typing import Any

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_policy(
    name_or_path: str = "organism",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    """Return (model, tokenizer) ready for sampling and training.

    "organism" is the shipped CPU organism in data/organism, "organism_v2" and
    "organism_v3" the ones in data/organism_v2 and data/organism_v3 (a name of
    `organism.RECIPES`; never built here:
    `python -m vgrout.lm build` rebuilds them); anything else is passed to
    `from_pretrained` (a hub id or a local folder). Defaults: fp32 on CPU,
    bf16 on CUDA. The tokenizer always pads on the left, since batched
    generation appends to the right edge of every row.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vgrout.lm.organism import RECIPES
    from vgrout.lm.shipped import rebuild_command, shipped_dir

    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    path = name_or_path
    if name_or_path in RECIPES:
        folder = shipped_dir(name_or_path)
        path = str(folder)
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{folder}: the shipped organism is missing; restore it from git or "
                f"rebuild it with {rebuild_command(name_or_path)}"
            )
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model = model.to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
