"""Routed two-block adapters on PEFT: a deployed and a quarantine LoRA block per
target Linear, per-row route masks, deployment/reference/merged views, inits,
checkpoints, export and per-block accounting. See docs/adapters.md.
"""

from .accounting import block_delta_norms, block_grad_norms, clip_grad_per_block, quarantine_share
from .attach import attach_routed_adapters, bottleneck_modules, trainable_parameters
from .export import export_deployed, load_adapters, save_adapters
from .inits import INITS
from .layers import ALL_ADAPTERS, ANCHOR, BLOCKS, DEFAULT_TARGETS
from .masks import route
from .views import ablate_quarantine, bottleneck_taps, merged_for_generation, reference_policy

__all__ = [
    "ALL_ADAPTERS",
    "ANCHOR",
    "BLOCKS",
    "DEFAULT_TARGETS",
    "INITS",
    "ablate_quarantine",
    "attach_routed_adapters",
    "block_delta_norms",
    "block_grad_norms",
    "bottleneck_taps",
    "bottleneck_modules",
    "clip_grad_per_block",
    "export_deployed",
    "load_adapters",
    "merged_for_generation",
    "quarantine_share",
    "reference_policy",
    "route",
    "save_adapters",
    "trainable_parameters",
]
