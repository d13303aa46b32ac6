"""Three routed TRL steps on each process of an `accelerate launch` (tests/test_grpo_trl.py).

    accelerate launch --multi_gpu --num_processes 2 tests/trl_two_ranks.py OUT

(on a machine without GPUs accelerate runs the processes on the CPU, gloo).
Each process writes OUT/rank<r>.pt: its adapters, the router's state, the
gate's zones and the process count, for the test to compare across ranks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(out: Path) -> None:
    from vgrout import paths
    from vgrout.adapters import trainable_parameters
    from vgrout.env.trl import problem_dataset, reward_function
    from vgrout.grpo.presets import preset
    from vgrout.grpo.trl import RoutedGRPOTrainer, trl_args
    from vgrout.lm.load import load_policy

    torch.set_num_threads(1)
    # 3 prompts x 4 generations over 2 processes of 6 rows: the second group is split
    routing = preset(
        "smoke", arm="routeA", steps=3, group_size=4, prompts_per_step=3, max_new_tokens=100,
        gate_warmup=4, eval_every=0, eval_samples=1, eval_max_problems=1,
    )  # fmt: skip
    model, tok = load_policy("organism", device="cpu")
    train = paths.repo_path(routing.train_problems)
    trainer = RoutedGRPOTrainer(
        model,
        reward_funcs=reward_function(train),
        args=trl_args(routing, str(out / "run"), per_device_train_batch_size=6, use_cpu=True),
        routing=routing,
        train_dataset=problem_dataset(train, routing.modes),
        processing_class=tok,
    )
    trainer.train()
    rank = trainer.accelerator.process_index
    torch.save(
        {
            "processes": trainer.accelerator.num_processes,
            "adapters": {
                b: [p.detach().cpu() for p in ps]
                for b, ps in trainable_parameters(trainer.policy.model).items()
            },
            "router": trainer.router.state_dict(),
            "zones": [r.zones for r in trainer.gate_records],
            "gated": [r.gated for r in trainer.gate_records],
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
