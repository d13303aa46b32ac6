"""The parts of a routed run that TRL's callbacks suffice for.

`RoutedRun` evaluates in both views at the project loop's moments (step 0,
every `routing.eval_every` steps, and at the end with `final_eval_samples`),
decays both blocks toward their init after each optimizer step (decoupled
weight decay, as the project's loop does; TRL's AdamW would decay toward
zero), and at the end exports the deployed block as a plain PEFT adapter.
"""

from __future__ import annotations

from transformers import TrainerCallback

from vgrout.grpo.update import decay_toward_init


class RoutedRun(TrainerCallback):
    """Evaluation, decay toward init and export for a `RoutedGRPOTrainer`."""

    def __init__(self, trainer):
        self.trainer = trainer
        cfg = trainer.routing
        self.eval_every, self.weight_decay = cfg.eval_every, cfg.weight_decay
        self.init_values = (
            [p.detach().clone() for p in trainer.policy.all_params()] if self.weight_decay else None
        )

    def _main(self) -> bool:
        return self.trainer.accelerator.is_main_process

    def on_train_begin(self, args, state, control, **kwargs):
        if self.eval_every and state.global_step == 0 and self._main():
            self.trainer.evaluate_views(0)

    def on_optimizer_step(self, args, state, control, lr_scheduler=None, **kwargs):
        """Runs after optimizer.step() and before the schedule advances: the lr read
        here is the one this step used, as in the project's loop."""
        if self.init_values is None:
            return
        lr = lr_scheduler.get_last_lr()[0]
        decay_toward_init(
            self.trainer.policy.all_params(), self.init_values, self.weight_decay * lr
        )

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if self.eval_every and step % self.eval_every == 0 and step < state.max_steps:
            if self._main():
                self.trainer.evaluate_views(step)

    def on_train_end(self, args, state, control, **kwargs):
        if self._main():
            self.trainer.evaluate_views(state.global_step, final=True)
            self.trainer.export_deployed()
