"""RoutedGRPOTrainer: TRL's GRPOTrainer training the routed two-block adapter.

What each override adds to TRL's step (the hooks are listed in
vgrout/grpo/trl/__init__.py):

    generation     the merged trained view (`merged_for_generation`), or for vLLM
                   the trained view's whole weights pushed by TRL's own sync (vllm.py)
    rewards        kept, for the gate's live-group test
    after scoring  the gate (gate.py): zones for every row, as per-row masks
                   `route_m`, `route_d` in TRL's batch dict, so they travel with
                   their rows through TRL's buffering, shuffling and accumulation
    loss           TRL's loss as configured (dr_grpo by default, the one compared
                   with the loop) computed under the rows' masks, which stay set
                   through the backward
    clipping       each block clipped separately (`update.clip_and_measure`)

The reference policy for TRL's KL term is the base model with every adapter
disabled, as in the project's loop.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import deque
from pathlib import Path

import torch
from trl import GRPOTrainer

from vgrout.adapters import export_deployed, merged_for_generation, route
from vgrout.adapters.views import preserved_requires_grad
from vgrout.env.trl import Reward
from vgrout.grpo.config import GRPOConfig
from vgrout.grpo.evaluate import evaluate_views
from vgrout.grpo.loop import load_run_pairs
from vgrout.grpo.passes import packed_forward_ok
from vgrout.grpo.policy import build_policy
from vgrout.grpo.router import Router
from vgrout.grpo.update import clip_and_measure
from vgrout.grpo.zones import zone_masks
from vgrout.paths import repo_path

from .callbacks import RoutedRun
from .compat import check_hooks, check_trl_version
from .config import RoutedGRPOConfig, refusals, routing_for
from .gate import (
    UNGATED,
    GateRecord,
    batch_rows,
    live_groups,
    local_features,
    route_groups,
)
from .vllm import ViewSync

MASK_KEYS = ("route_m", "route_d")
"""Per-row keys the gate adds to TRL's batch dict: (m, d) of each row's zone."""


class RoutedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with the routed two-block adapter, the gate, zones and quarantine.

    model: a bare causal LM (not a PeftModel; the routed adapter is attached here).
    routing: the project's `vgrout.grpo.config.GRPOConfig`; its arm, adapter,
        gate, evaluation and weight-decay fields are read, and the fields TRL's
        config owns must agree with `args` (`config.routing_for`).
    args: TRL's config; `RoutedGRPOConfig` has the project loop's defaults
        (dr_grpo loss, unscaled advantages, the plain k3 KL gradient). Other
        arguments are GRPOTrainer's.
    The oracle arm, and the gate-quality metrics, read the true hack labels
    from a `vgrout.env.trl` reward function among `reward_funcs`.
    """

    def __init__(
        self,
        model,
        reward_funcs=None,
        args=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        routing: GRPOConfig | None = None,
        callbacks=None,
        **kwargs,
    ):
        check_trl_version()
        check_hooks()
        args = args if args is not None else RoutedGRPOConfig("routed-grpo")
        routing = routing if routing is not None else GRPOConfig()
        funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
        self.label_source = next((f for f in funcs if isinstance(f, Reward)), None)
        _refuse(model, routing, args, processing_class, self.label_source, kwargs)
        cfg = routing_for(routing, args)
        pairs = load_run_pairs(cfg)
        policy = build_policy(cfg, model, processing_class, pairs)
        beta, args.beta = args.beta, 0.0  # TRL adds a "ref" adapter for beta != 0 (hook 1)
        try:
            super().__init__(
                model=policy.model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                callbacks=callbacks,
                **kwargs,
            )
        finally:
            args.beta = beta
        self.beta = beta
        self.policy, self.routing, self.router = policy, cfg, Router(cfg, pairs)
        self.gate_records: deque[GateRecord] = deque(maxlen=64)
        self.eval_rows: list[dict] = []
        self._batch_rewards: torch.Tensor | None = None  # [rows, reward functions], every process's
        self._mask_stack: list | None = None
        self._packed: bool | None = None  # whether the gate's pass runs packed, found once
        self.vllm_views = ViewSync(self.vllm_generation, policy.model) if self.use_vllm else None
        self.add_callback(RoutedRun(self))

    # --- generation and scoring -------------------------------------------------

    def _generate_single_turn(self, *args, **kwargs):
        if self.use_vllm:  # the engine holds the trained view (vllm.py)
            return super()._generate_single_turn(*args, **kwargs)
        with merged_for_generation(self.policy.model, "trained"):
            return super()._generate_single_turn(*args, **kwargs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._batch_rewards = rewards  # [every process's rows, reward functions]
        return rewards

    def _generate_and_score_completions(self, inputs):
        # TRL's reference pass uses PeftModel.disable_adapter(), which on exit makes
        # every active adapter trainable, frozen anchors included
        with preserved_requires_grad(self.policy.model):
            out = super()._generate_and_score_completions(inputs)
        n = len(out["prompt_ids"])
        zones = [UNGATED] * n  # evaluation batches train nothing: the trained view
        if self.model.training:
            record = self._gate(out)
            first = self.accelerator.process_index * n
            zones = record.zones[first : first + n]
            self.gate_records.append(record)
            for key, value in record.metrics.items():
                self._metrics["train"][key].append(value)
            self._logs["extra"]["routing/zone"].extend(record.zones)
            if "keep" in zones and "old_per_token_logps" not in out:
                out["old_per_token_logps"] = self._sampler_logps(out)
        for key, mask in zip(MASK_KEYS, zone_masks(zones)):
            out[key] = mask.to(self.accelerator.device)
        return out

    def _gate(self, out: dict) -> GateRecord:
        """Zones of every row of this generation batch (gate.py), the same on every process."""
        acc, cfg = self.accelerator, self.routing
        n = len(out["prompt_ids"])
        assert self._batch_rewards is not None, "set by _calculate_rewards before the gate runs"
        rewards = self._batch_rewards * self.reward_weights.to(self._batch_rewards.device)
        rewards = rewards.nansum(dim=1).cpu()  # TRL's weighted sum, every process's rows
        features = None
        if self.router.site == "bottleneck":
            if self._packed is None:
                self._packed = packed_forward_ok(self.policy, cfg)
            live = live_groups(rewards, cfg.group_size)
            rows = batch_rows(out)
            local = local_features(
                self.policy, self.processing_class, rows, acc.process_index * n, live, cfg,
                self._packed,
            )  # fmt: skip
            features = acc.gather(local.to(acc.device)).cpu()
        return route_groups(
            self.router,
            self.policy,
            self.processing_class,
            self.state.global_step + 1,
            rewards,
            self._hack_labels(n),
            features,
            self._share_direction if acc.num_processes > 1 else None,
        )

    def _hack_labels(self, n: int) -> list[bool] | None:
        """Every process's true hack labels, from the vgrout reward's call on this batch."""
        if self.label_source is None:
            return None
        call = self.label_source.calls[-1] if self.label_source.calls else None
        if call is None or call.step != self.state.global_step or len(call.grades) != n:
            raise RuntimeError(
                f"RoutedGRPOTrainer: the vgrout reward's last call (step "
                f"{getattr(call, 'step', None)}, {len(getattr(call, 'grades', []))} rows) is not "
                f"this batch (step {self.state.global_step}, {n} rows)"
            )
        local = torch.tensor(
            [bool(g.exploited) for g in call.grades], device=self.accelerator.device
        )
        return [bool(x) for x in self.accelerator.gather(local).cpu()]

    def _share_direction(self, direction: torch.Tensor) -> torch.Tensor:
        from accelerate.utils import broadcast

        return broadcast(direction.to(self.accelerator.device), from_process=0).to(direction.device)

    @torch.no_grad()
    def _sampler_logps(self, out: dict) -> torch.Tensor:
        """Trained-view log-probs of every row: the sampler's, for keep rows' PPO ratio
        (a keep row trains in the deployed view but was sampled as trained)."""
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attn = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(
            self.accelerator.unwrap_model(self.model),
            ids,
            attn,
            out["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size,
        )
        return logps

    # --- loss and update ----------------------------------------------------------

    def training_step(self, model, inputs, num_items_in_batch=None):
        # the masks set in _compute_loss stay set until the backward has run:
        # gradient checkpointing re-runs the forward inside it
        with contextlib.ExitStack() as stack:
            self._mask_stack = stack
            try:
                return super().training_step(model, inputs, num_items_in_batch)
            finally:
                self._mask_stack = None

    def _compute_loss(self, model, inputs):
        masks = route(self.policy.model, *(inputs[key] for key in MASK_KEYS))
        if self._mask_stack is None:  # evaluation: no backward follows
            with masks:
                return super()._compute_loss(model, inputs)
        self._mask_stack.enter_context(masks)
        return super()._compute_loss(model, inputs)

    def _clip_grad_norm(self, model):
        """Clip each block's gradient separately (the project loop's rule); returns the
        norm of both blocks' gradients before clipping, which TRL logs as grad_norm."""
        grad = clip_and_measure(self.policy, self.args.max_grad_norm)
        for key, value in grad.items():
            self._metrics["train"][f"routing/{key}"].append(
                float("nan") if value is None else float(value)
            )
        return torch.tensor(math.hypot(grad["grad_norm_deployed"], grad["grad_norm_quarantine"]))

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint:
            raise ValueError(
                "RoutedGRPOTrainer.train(resume_from_checkpoint=...): not built; TRL's "
                "checkpoints do not hold the gate's score buffer, direction and RNG"
            )
        return super().train(None, *args, **kwargs)

    # --- evaluation, export, vLLM ---------------------------------------------------

    def evaluate_views(self, step: int, final: bool = False) -> list[dict]:
        """Hack and solve rates per split and view (`vgrout.grpo.evaluate`), logged and kept.

        Rows go to `eval_rows`, `<output_dir>/routed_eval.jsonl` and TRL's log
        history (and report_to backends) as routed_eval/<split>/<view>/<rate>.
        """
        from vgrout.env import load_problems

        cfg = self.routing
        marker_set = cfg.marker_set or None
        train_set = load_problems(repo_path(cfg.train_problems), list(cfg.modes),
                                  marker_set=marker_set)  # fmt: skip
        test_set = load_problems(repo_path(cfg.test_problems), list(cfg.modes), eval_markers=True,
                                 marker_set=marker_set)  # fmt: skip
        model = self.policy.model
        was_training = model.training
        model.eval()
        try:
            rows = evaluate_views(self.policy, self.processing_class, cfg, step, train_set,
                                  test_set, final=final)  # fmt: skip
        finally:
            model.train(was_training)
        self.eval_rows += rows
        path = Path(str(self.args.output_dir)) / "routed_eval.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        logs = {
            f"routed_eval/{r['split']}/{r['view']}/{k}": r[k]
            for r in rows
            for k in ("hack", "solve", "compile")
        }
        self.state.log_history.append({**logs, "step": step})
        should_log = self.control.should_log  # on_log clears it: the step's own log is still due
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)
        self.control.should_log = should_log
        return rows

    def export_deployed(self, path: str | None = None) -> Path:
        """Write the deployed block as a plain PEFT adapter (default <output_dir>/deployed_adapter)."""
        out = Path(path) if path else Path(str(self.args.output_dir)) / "deployed_adapter"
        export_deployed(self.policy.model, out)
        return out

    def sync_vllm(self, view: str) -> None:
        """Push `view` to TRL's vLLM engine now (e.g. "deployed" to evaluate with it);
        the next rollout generation pushes the trained view back."""
        if self.vllm_views is None:
            raise ValueError(
                "RoutedGRPOTrainer.sync_vllm: the trainer runs without vLLM (use_vllm)"
            )
        self.vllm_views.push(view)
        if view != "trained":
            self._last_loaded_step = -1  # TRL re-syncs before the next generation


def _refuse(model, routing: GRPOConfig, args, processing_class, labels, kwargs) -> None:
    """Raise ValueError listing every setting the routed trainer cannot run."""
    from peft import PeftModel

    bad = refusals(routing, args, **kwargs)
    if isinstance(model, str):
        bad.append(
            "model: pass a loaded model (vgrout.lm.load.load_policy or "
            "AutoModelForCausalLM.from_pretrained), not a name"
        )
    elif isinstance(model, PeftModel):
        bad.append("model: pass the bare base model; the routed adapter is attached here")
    if processing_class is None:
        bad.append("processing_class: the tokenizer is needed (the gate's pairs, the evaluation)")
    if routing.arm == "oracle" and labels is None:
        bad.append(
            "arm='oracle' routes on the true hack labels, read from a vgrout.env.trl reward "
            "function: pass reward_function(...) among reward_funcs"
        )
    if bad:
        raise ValueError("RoutedGRPOTrainer cannot run this:\n  " + "\n  ".join(bad))
