"""Checkpoints of the routed adapters, and export of the deployed block.

`save_adapters`/`load_adapters` round-trip all four adapters bit-exactly
(one safetensors file, written atomically, with the routing config in its
metadata so a mismatched model is refused). `export_deployed` writes the
deployed block with its anchor folded in as a standard PEFT LoRA adapter of
rank 2r: A = [A_d; A_d0], B = [B_d, B_d0] (B_d0 = -B_d at init), scaling
unchanged (alpha and r both doubled), so `PeftModel.from_pretrained(base,
path)` on the ORIGINAL base reproduces the ablated training model.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from vgrout.files import atomic_dir, atomic_write

from .layers import ALL_ADAPTERS, ANCHOR, DEPLOYED, lora_layers, routed_info, short_name
from .views import VIEW_ADAPTERS, block_delta, merge_dtype

META_KEY = "vgrout_routed"


def _adapter_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    out = {}
    for name, layer in lora_layers(model):
        for adapter in ALL_ADAPTERS:
            out[f"{short_name(name)}.{adapter}.lora_A"] = layer.lora_A[adapter].weight
            out[f"{short_name(name)}.{adapter}.lora_B"] = layer.lora_B[adapter].weight
    return out


def save_adapters(model: nn.Module, path: str | os.PathLike) -> None:
    """Write both blocks and both anchors to one safetensors file (atomic)."""
    info = routed_info(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: p.detach().cpu().contiguous() for k, p in _adapter_tensors(model).items()}
    atomic_write(
        path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: json.dumps(info.describe())})
    )


@torch.no_grad()
def load_adapters(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy a `save_adapters` file into `model` in place (parameters keep their identity,
    so optimizers stay valid). Raises on any config, key or shape mismatch."""
    info = routed_info(model)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(META_KEY, "null") or "null")
        if meta is None:
            raise ValueError(f"vgrout.adapters.load_adapters: {path} has no '{META_KEY}' metadata")
        want = info.describe()
        for key in ("r", "alpha", "target_modules", "adapters"):
            if meta.get(key) != want[key]:
                raise ValueError(
                    f"vgrout.adapters.load_adapters: {path} has {key}={meta.get(key)!r}, "
                    f"model has {want[key]!r}"
                )
        params = _adapter_tensors(model)
        stored = set(f.keys())
        if stored != set(params):
            raise ValueError(
                f"vgrout.adapters.load_adapters: {path} keys differ from the model: missing "
                f"{sorted(set(params) - stored)[:3]}, unexpected {sorted(stored - set(params))[:3]}"
            )
        loaded = {k: f.get_tensor(k) for k in params}
    for k, p in params.items():
        if loaded[k].shape != p.shape:
            raise ValueError(
                f"vgrout.adapters.load_adapters: {path}:{k} has shape "
                f"{tuple(loaded[k].shape)}, model has {tuple(p.shape)}"
            )
    for k, p in params.items():
        p.copy_(loaded[k])


def _export_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """PEFT-format keys ('<module>.lora_A.weight') of the folded rank-2r deployed adapter."""
    from peft import get_peft_model_state_dict

    anchor = ANCHOR[DEPLOYED]
    sd = {}
    for name, layer in lora_layers(model):
        sd[f"{name}.lora_A.weight"] = (
            torch.cat([layer.lora_A[DEPLOYED].weight, layer.lora_A[anchor].weight], 0)
            .detach()
            .cpu()
            .contiguous()
        )
        sd[f"{name}.lora_B.weight"] = (
            torch.cat([layer.lora_B[DEPLOYED].weight, layer.lora_B[anchor].weight], 1)
            .detach()
            .cpu()
            .contiguous()
        )
    expected = set(get_peft_model_state_dict(model, adapter_name=DEPLOYED))
    if expected != set(sd):
        raise RuntimeError(
            "vgrout.adapters.export_deployed: PEFT key layout changed: expected e.g. "
            f"{sorted(expected)[:2]}, built {sorted(sd)[:2]}"
        )
    return sd


def export_deployed(
    model: nn.Module, path: str | os.PathLike, merged_path: str | os.PathLike | None = None
) -> None:
    """Write the deployed block (anchor folded in) as a plain PEFT adapter folder `path`;
    with `merged_path`, also a full model with the deployed delta merged into W.
    Each folder is built beside its target and swapped in whole (`atomic_dir`)."""
    info = routed_info(model)
    config = copy.deepcopy(model.peft_config[DEPLOYED])
    config.r, config.lora_alpha = 2 * info.r, 2 * info.alpha
    config.init_lora_weights, config.inference_mode = True, True

    def fill(tmp: Path) -> None:
        config.save_pretrained(str(tmp))
        save_file(
            _export_state_dict(model),
            str(tmp / "adapter_model.safetensors"),
            metadata={"format": "pt"},
        )

    atomic_dir(path, fill)
    if merged_path is not None:
        _save_merged(model, Path(merged_path))


@torch.no_grad()
def _save_merged(model: nn.Module, path: Path) -> None:
    """Base model state with W + deployed delta (fp32 merge, base dtype) -> save_pretrained."""
    base = model.get_base_model()
    merged = {}
    for name, layer in lora_layers(model):
        w = layer.base_layer.weight
        merged[name.removeprefix("base_model.model.") + ".weight"] = (
            w.to(merge_dtype(layer)) + block_delta(layer, VIEW_ADAPTERS["deployed"])
        ).to(w.dtype)
    sd = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        sd[key] = merged.pop(key, value).detach().cpu().contiguous()
    if merged:
        raise RuntimeError(
            f"vgrout.adapters.export_deployed: merged weights not placed: {sorted(merged)[:3]}"
        )
    atomic_dir(path, lambda tmp: base.save_pretrained(str(tmp), state_dict=sd))
