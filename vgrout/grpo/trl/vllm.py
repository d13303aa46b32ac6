"""What TRL's vLLM weight sync needs for a routed model: whole weights of one view.

TRL pushes a PEFT model to its vLLM engine by merging the adapters into the
base weights in place (`merge_adapter`), reading every base weight, and
unmerging. On a routed model that would push W + every active adapter (the
trained view, by luck of which adapters are active) and drift the base
weights by each merge/unmerge round trip (~1e-2 in bf16). The engine must
instead receive, for the view it is to sample:

    trained    W + both blocks' deltas with their anchors    (rollouts)
    deployed   W + the deployed block's delta with its anchor (evaluation)

computed in fp32 and cast to W's dtype, as `merged_for_generation` computes
them, without writing W. `view_weights` yields exactly that, one weight at a
time, under the names vLLM loads (the base checkpoint's); `ViewSync` puts it in
place of TRL's reader (`VLLMGeneration._iter_named_params`), so TRL's own sync
(colocate `load_weights`, or the server's NCCL broadcast) sends it.

The engine samples; the trainer still computes its own log-probs, so TRL's
`vllm_importance_sampling_correction` corrects for the engine's kernels as it
does for any model.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from vgrout.adapters.layers import lora_layers, routed_info
from vgrout.adapters.views import VIEW_ADAPTERS, block_delta, merge_dtype


def vllm_name(name: str) -> str:
    """A routed model's parameter name -> the base checkpoint's (what vLLM loads)."""
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


@torch.no_grad()
def view_weights(model: nn.Module, view: str) -> Iterator[tuple[str, Tensor]]:
    """(checkpoint name, weight) of every base parameter, the view's adapters merged in.

    Adapted Linears yield W + delta(view) (fp32 merge, W's dtype; W is not
    written); every other base parameter is yielded as it is; adapter factors
    are not yielded (the engine holds a plain model).
    """
    if view not in VIEW_ADAPTERS:
        raise ValueError(f"view_weights: view must be one of {sorted(VIEW_ADAPTERS)}, got {view!r}")
    routed_info(model)
    adapted = {f"{name}.base_layer.weight": layer for name, layer in lora_layers(model)}
    for name, param in model.named_parameters():
        if ".lora_" in name:
            continue
        layer = adapted.get(name)
        if layer is None:
            yield vllm_name(name), param.data
            continue
        delta = block_delta(layer, VIEW_ADAPTERS[view])
        yield vllm_name(name), (param.to(merge_dtype(layer)) + delta).to(param.dtype)


class ViewSync:
    """Makes TRL's vLLM sync push one view of the routed model (the trained one by default).

    generation: TRL's `VLLMGeneration` (`trainer.vllm_generation`); its
    `_iter_named_params` is replaced, and its `sync_weights` then sends the view.
    """

    def __init__(self, generation, model: nn.Module):
        routed_info(model)
        self.generation, self.model, self.view = generation, model, "trained"
        generation._iter_named_params = self.named_weights

    def named_weights(self) -> Iterator[tuple[str, Tensor]]:
        for name, weight in view_weights(self.model, self.view):
            yield self.generation._fix_param_name_to_vllm(name), weight

    def push(self, view: str) -> None:
        """Send `view` to the engine now; later syncs send the trained view again."""
        if view not in VIEW_ADAPTERS:
            raise ValueError(f"ViewSync.push: view must be one of {sorted(VIEW_ADAPTERS)}")
        self.view = view
        try:
            self.generation.sync_weights()
        finally:
            self.view = "trained"
