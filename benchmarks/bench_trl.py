"""Seconds per TRL GRPOTrainer step on the organism, with vgrout.env as the reward.

The step has the organism preset's shape and settings (vgrout.grpo.config,
preset "organism"): 4 prompts x 8 generations, at most 100 new tokens,
temperature, top-k/top-p, learning rate, AdamW betas, clip, no KL, unscaled
(Dr. GRPO) advantages and loss, LoRA of the preset's rank and alpha on its
target modules; fp32 without gradient checkpointing, as the project's loop runs
on CPU (TRL defaults to bf16 autocast and checkpointing); the grader uses its
warm pool of 2 workers. Reported: the
median wall time between the ends of consecutive optimizer steps, leaving out
the first step (it pays warm-up costs). Needs the trl extra
(pip install -e '.[trl]').

    python benchmarks/bench_trl.py --steps 8 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def trl_step_seconds(steps: int, threads: int, *, seed: int = 0) -> float:
    """Median seconds per GRPOTrainer step after the first, over `steps` steps."""
    return statistics.median(step_times(steps, threads, seed=seed)["wall"][1:])


def step_times(steps: int, threads: int, *, seed: int = 0, preset_name: str = "organism") -> dict:
    """{"wall": [s per step], "cpu": [this process's CPU s per step]} over `steps` steps.

    The CPU column counts the trainer's process only (not the grader's workers);
    far less CPU than wall time means the machine was busy with other work."""
    if steps < 2:
        raise ValueError(
            f"trl_step_seconds: steps must be >= 2 (the first is not timed), got {steps}"
        )
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from vgrout import paths
    from vgrout.env.trl import CHAT_TEMPLATE_KWARGS, problem_dataset, reward_function
    from vgrout.grpo.config import preset
    from vgrout.lm.load import load_policy

    cfg = preset(preset_name)
    ends: list[tuple[float, float]] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            ends.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, args, state, control, **kw):
            ends.append((time.perf_counter(), time.process_time()))

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, tok = load_policy(cfg.model, device="cpu")
        with tempfile.TemporaryDirectory() as tmp:
            args = GRPOConfig(
                output_dir=tmp,
                per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size,
                num_generations=cfg.group_size,
                max_completion_length=cfg.max_new_tokens,
                max_steps=steps,
                temperature=cfg.temperature,
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                learning_rate=cfg.lr,
                adam_beta1=cfg.betas[0],
                adam_beta2=cfg.betas[1],
                weight_decay=0.0,
                max_grad_norm=cfg.grad_clip,
                warmup_steps=cfg.warmup_steps,
                lr_scheduler_type="cosine_with_min_lr",
                lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_frac},
                epsilon=cfg.clip_eps,
                beta=cfg.kl_beta,
                scale_rewards="group" if cfg.std_normalise else "none",
                loss_type="dr_grpo",
                chat_template_kwargs=CHAT_TEMPLATE_KWARGS,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                use_cpu=True,
                bf16=False,  # TRL's default autocasts to bf16; the project trains fp32 on CPU
                gradient_checkpointing=False,  # TRL's default; the project's loop keeps activations
                seed=seed,
            )
            trainer = GRPOTrainer(
                model=model,
                reward_funcs=reward_function(paths.repo_path(cfg.train_problems)),
                args=args,
                train_dataset=problem_dataset(
                    paths.repo_path(cfg.train_problems), cfg.modes, seed=seed
                ),
                processing_class=tok,
                peft_config=LoraConfig(
                    r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(cfg.target_modules)
                ),
                callbacks=[StepClock()],
            )
            trainer.train()
    finally:
        torch.set_num_threads(before)
    if len(ends) != steps + 1:
        raise RuntimeError(f"trl_step_seconds: timed {len(ends) - 1} steps, expected {steps}")
    return {
        "wall": [b[0] - a[0] for a, b in zip(ends, ends[1:])],
        "cpu": [b[1] - a[1] for a, b in zip(ends, ends[1:])],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t = step_times(a.steps, a.threads, seed=a.seed)
    wall, cpu = (statistics.median(t[k][1:]) for k in ("wall", "cpu"))
    print("per step:", " ".join(f"{w:.2f}" for w in t["wall"]), "s wall")
    print(
        f"TRL GRPOTrainer step (organism preset shape, vgrout.env reward, {a.threads} thread(s)): "
        f"{wall:.2f} s median over steps 2-{a.steps} ({cpu:.2f} s CPU in the trainer's process)"
    )


if __name__ == "__main__":
    main()
