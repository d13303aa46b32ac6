"""The TRL versions the routed trainer was tested with, and the TRL internals it hooks.

`RoutedGRPOTrainer` subclasses TRL's `GRPOTrainer` and overrides or reads
methods that TRL does not promise to keep (their names start with an
underscore). A TRL release that renames one of them, changes its arguments,
or changes what its output dict holds would make a routed run train without
its masks, or gate the wrong rows, without any error. So the trainer refuses
to start on a TRL outside the tested range (`check_trl_version`), and checks
at start that every hooked method still exists with the arguments it expects
(`check_hooks`). The hooks themselves are listed in the package docstring
(`vgrout/grpo/trl/__init__.py`).
"""

from __future__ import annotations

import inspect
from importlib import metadata

TESTED_TRL = (">=1.16.0", "<1.17")
"""The range of trl versions the routed trainer was built and tested against."""

INSTALL = f"pip install 'trl{','.join(TESTED_TRL)}'"

HOOKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "_generate_single_turn": (
        "GRPOTrainer",
        ("self", "prompt_ids", "images", "multimodal_fields", "num_generations"),
    ),
    "_calculate_rewards": (
        "GRPOTrainer",
        ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    ),
    "_generate_and_score_completions": ("GRPOTrainer", ("self", "inputs")),
    "_get_per_token_logps_and_entropies": (
        "GRPOTrainer",
        ("self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size"),
    ),
    "_compute_loss": ("GRPOTrainer", ("self", "model", "inputs")),
    "training_step": ("GRPOTrainer", ("self", "model", "inputs", "num_items_in_batch")),
    "_clip_grad_norm": ("Trainer", ("self", "model")),
    "_iter_named_params": ("VLLMGeneration", ("self",)),
    "sync_weights": ("VLLMGeneration", ("self",)),
    "_fix_param_name_to_vllm": ("VLLMGeneration", ("self", "name")),
}
"""method -> (the TRL or transformers class defining it, its leading parameters)."""


def installed_trl() -> str:
    return metadata.version("trl")


def check_trl_version(version: str | None = None) -> None:
    """Raise ImportError unless the installed trl (or `version`) is in TESTED_TRL."""
    from packaging.specifiers import SpecifierSet

    version = version or installed_trl()
    if version not in SpecifierSet(",".join(TESTED_TRL)):
        raise ImportError(
            f"vgrout.grpo.trl: trl {version} is installed, but RoutedGRPOTrainer was built and "
            f"tested with trl {','.join(TESTED_TRL)}: it hooks into TRL internals (listed in "
            f"vgrout/grpo/trl/__init__.py) that another release may change silently. "
            f"Install a tested release: {INSTALL}"
        )


def hook_owners() -> dict[str, type]:
    from transformers import Trainer
    from trl import GRPOTrainer
    from trl.generation.vllm_generation import VLLMGeneration

    return {"GRPOTrainer": GRPOTrainer, "Trainer": Trainer, "VLLMGeneration": VLLMGeneration}


def check_hooks(owners: dict[str, type] | None = None) -> None:
    """Raise RuntimeError naming every hooked method that is missing or takes other arguments."""
    owners = owners or hook_owners()
    bad = []
    for name, (owner, params) in HOOKS.items():
        method = getattr(owners[owner], name, None)
        if method is None:
            bad.append(f"{owner}.{name} is missing")
            continue
        got = tuple(inspect.signature(method).parameters)[: len(params)]
        if got != params:
            bad.append(f"{owner}.{name} takes {got}, expected {params}")
    if bad:
        raise RuntimeError(
            "vgrout.grpo.trl: the installed TRL changed internals RoutedGRPOTrainer hooks:\n  "
            + "\n  ".join(bad)
            + f"\nInstall a tested release: {INSTALL}"
        )
