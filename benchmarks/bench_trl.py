"""Seconds per TRL GRPOTrainer step on the organism, with vgrout.env as the reward.

With --arm, the step of vgrout.grpo.trl's RoutedGRPOTrainer (the routed
two-block adapter, the gate, zones) on the same shape instead of a plain LoRA.

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
    python benchmarks/bench_trl.py --steps 8 --threads 1 --arm routeA
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def trl_step_seconds(steps: int, threads: int, *, seed: int = 0, arm: str | None = None) -> float:
    """Median seconds per GRPOTrainer step after the first, over `steps` steps."""
    return statistics.median(step_times(steps, threads, seed=seed, arm=arm)["wall"][1:])


def step_times(
    steps: int,
    threads: int,
    *,
    seed: int = 0,
    preset_name: str = "organism",
    arm: str | None = None,
) -> dict:
    """{"wall": [s per step], "cpu": [this process's CPU s per step]} over `steps` steps.

    arm: None times GRPOTrainer with a plain PEFT LoRA; an arm times
    RoutedGRPOTrainer on that arm (its evaluations cut to one problem and one
    completion: they run before the first step and after the last, outside the
    timed steps). The CPU column counts the trainer's process only (not the
    grader's workers); far less CPU than wall time means the machine was busy
    with other work."""
    if steps < 2:
        raise ValueError(
            f"trl_step_seconds: steps must be >= 2 (the first is not timed), got {steps}"
        )
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from vgrout import paths
    from vgrout.env.trl import problem_dataset, reward_function
    from vgrout.grpo.presets import preset
    from vgrout.grpo.trl import RoutedGRPOTrainer, trl_args
    from vgrout.lm.load import load_policy

    routed = {} if arm is None else dict(arm=arm, eval_max_problems=1, final_eval_samples=1)
    cfg = preset(preset_name, steps=steps, seed=seed, **routed)
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
        train = paths.repo_path(cfg.train_problems)
        with tempfile.TemporaryDirectory() as tmp:
            common = dict(
                reward_funcs=reward_function(train),
                # the organism preset's shape and settings, fp32 without checkpointing
                args=trl_args(cfg, tmp, use_cpu=True),
                train_dataset=problem_dataset(train, cfg.modes, seed=seed),
                processing_class=tok,
                callbacks=[StepClock()],
            )
            if arm is None:
                lora = LoraConfig(
                    r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(cfg.target_modules)
                )
                trainer = GRPOTrainer(model=model, peft_config=lora, **common)
            else:
                trainer = RoutedGRPOTrainer(model, routing=cfg, **common)
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
    ap.add_argument("--arm", help="time RoutedGRPOTrainer on this arm instead of a plain LoRA")
    a = ap.parse_args()
    t = step_times(a.steps, a.threads, seed=a.seed, arm=a.arm)
    wall, cpu = (statistics.median(t[k][1:]) for k in ("wall", "cpu"))
    print("per step:", " ".join(f"{w:.2f}" for w in t["wall"]), "s wall")
    name = "TRL GRPOTrainer" if a.arm is None else f"RoutedGRPOTrainer ({a.arm})"
    print(
        f"{name} step (organism preset shape, vgrout.env reward, {a.threads} thread(s)): "
        f"{wall:.2f} s median over steps 2-{a.steps} ({cpu:.2f} s CPU in the trainer's process)"
    )


if __name__ == "__main__":
    main()
