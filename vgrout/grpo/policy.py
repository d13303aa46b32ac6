"""The trainable policy of a run: routed adapters (or one plain LoRA) and its views.

The loop asks for views by name (`vgrout.names.VIEWS`), so that the plain-LoRA
speed baseline and the routed pair run through the same code:
  sampler("trained")   sample as trained (both blocks; merged when possible)
  sampler("deployed")  sample with the quarantine ablated (merged)
  deployed_forward()   forward in the deployed view, unmerged (log-probs, capture)
  reference()          the frozen starting model (adapters disabled), for the KL anchor
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Policy:
    model: Any
    params: dict[str, list[torch.nn.Parameter]]
    """Trainable parameters by block: "deployed", "quarantine" (empty for plain LoRA)."""
    routed: bool

    def sampler(self, view: str):
        """A context factory that puts the model in `view` for fast generation."""
        if not self.routed:
            return contextlib.nullcontext
        from vgrout.adapters import merged_for_generation

        return lambda: merged_for_generation(self.model, view)

    def deployed_forward(self):
        if not self.routed:
            return contextlib.nullcontext()
        from vgrout.adapters import ablate_quarantine

        return ablate_quarantine(self.model)

    def reference(self):
        if not self.routed:
            return self.model.disable_adapter()
        from vgrout.adapters import reference_policy

        return reference_policy(self.model)

    def masked(self, m: torch.Tensor, d: torch.Tensor):
        if not self.routed:
            return contextlib.nullcontext()
        from vgrout.adapters import route

        return route(self.model, m, d)

    def all_params(self) -> list[torch.nn.Parameter]:
        return [p for ps in self.params.values() for p in ps]


def build_policy(cfg, base, tokenizer, pairs) -> Policy:
    """Attach the run's adapters to `base` (a freshly loaded model)."""
    for p in base.parameters():
        p.requires_grad_(False)
    if cfg.plain_lora:
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=0.0,
            target_modules=list(cfg.target_modules),
        )
        model = get_peft_model(base, lcfg, adapter_name="deployed")
        params = [p for n, p in model.named_parameters() if p.requires_grad]
        return Policy(model, {"deployed": params, "quarantine": []}, routed=False)
    from vgrout.adapters import attach_routed_adapters, trainable_parameters

    model = attach_routed_adapters(
        base,
        r=cfg.rank,
        init=cfg.init,
        target_modules=tuple(cfg.target_modules),
        alpha=cfg.alpha,
        pairs=pairs,
        tokenizer=tokenizer,
        seed=cfg.seed,
        one_product=cfg.one_product,
    )
    return Policy(model, trainable_parameters(model), routed=True)
