"""Routed GRPO inside TRL: `RoutedGRPOTrainer`, a GRPOTrainer with the gate, zones and quarantine.

    from vgrout.env.trl import problem_dataset, reward_function
    from vgrout.grpo.presets import preset
    from vgrout.grpo.trl import RoutedGRPOTrainer, trl_args

    routing = preset("organism", arm="routeA", seed=0)
    trainer = RoutedGRPOTrainer(
        model, reward_funcs=reward_function(routing.train_problems),
        args=trl_args(routing, "out/routeA"), routing=routing,
        train_dataset=problem_dataset(routing.train_problems, routing.modes),
        processing_class=tokenizer,
    )
    trainer.train()

See docs/trl.md. This package imports trl; the rest of vgrout never does.

Hooks into TRL's internals (each can change between TRL releases; the trainer
refuses a TRL outside `compat.TESTED_TRL` and checks each method's arguments
at start, `compat.check_hooks`):

1. `GRPOTrainer.__init__` adds a "ref" copy of an adapter named "default" to a
   PeftModel when `args.beta != 0`. The routed model has no such adapter, so
   the trainer constructs TRL with beta 0 and sets `self.beta` afterwards; TRL
   then takes the KL reference from `use_adapter(model, None)`, i.e.
   `PeftModel.disable_adapter()` (the base model, as in the project's loop).
2. `disable_adapter()` makes every active adapter trainable on exit, frozen
   anchors included; `_generate_and_score_completions` runs TRL's part inside
   `preserved_requires_grad`.
3. `_generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
   ...)` runs inside `merged_for_generation(model, "trained")` (transformers'
   generate on merged weights).
4. `_calculate_rewards(...)` returns every process's rewards [rows, functions];
   the trainer keeps them (with TRL's `self.reward_weights`) for the gate.
5. `_generate_and_score_completions(inputs)` returns the batch dict; the trainer
   reads `prompt_ids`, `prompt_mask`, `completion_ids`, `completion_mask` and
   `old_per_token_logps`, adds the per-row `route_m`, `route_d` (and
   `old_per_token_logps` when keep rows need the sampler's log-probs), and
   relies on TRL's `shuffle_sequence_dict` / `split_tensor_dict` carrying 1-D
   per-row tensors with their rows. Its process slice is rows
   `process_index * n ...` of the gathered batch.
6. `_get_per_token_logps_and_entropies(model, input_ids, attention_mask,
   logits_to_keep, batch_size)` computes the keep rows' sampler log-probs.
7. `_compute_loss(model, inputs)` runs under the rows' masks; `training_step`
   keeps them set until the backward (checkpointing re-runs the forward there).
8. `Trainer._clip_grad_norm(model)` clips each block separately.
9. `self._metrics["train"]` (lists of floats averaged per logging step, NaN
   left out) receives the routing metrics; `self._logs["extra"]` a per-row
   `routing/zone` column of the completions table.
10. `VLLMGeneration._iter_named_params` is replaced (vllm.py) so that TRL's
    `sync_weights` pushes a view's whole weights; `_fix_param_name_to_vllm`
    names them; `self._last_loaded_step = -1` makes TRL re-sync.
"""

from .compat import TESTED_TRL, check_hooks, check_trl_version
from .config import RoutedGRPOConfig, routing_for, trl_args
from .gate import GateRecord
from .trainer import RoutedGRPOTrainer
from .vllm import ViewSync, view_weights

__all__ = [
    "TESTED_TRL",
    "GateRecord",
    "RoutedGRPOConfig",
    "RoutedGRPOTrainer",
    "ViewSync",
    "check_hooks",
    "check_trl_version",
    "routing_for",
    "trl_args",
    "view_weights",
]
